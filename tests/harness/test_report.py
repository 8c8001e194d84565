"""``genbench report``: the static HTML page of the smoke suite, read as a file and seen in headless
Chromium as a person would see it (no console error, every image loaded, sortable tables, a
screenshot whose pixels show the tables and the images)."""

from __future__ import annotations

import base64
import io
import json
import os
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from genbench.cli import main
from genbench.metrics.lenet import SHIPPED_RECORD
from genbench.report.markdown import to_html
from genbench.results.db import ResultsDB
from genbench.train.identity import RunIdentity
from tests.chromium import Browser, find_chromium

#: set to a path to keep the browser test's screenshot there
SCREENSHOT_ENV = "GENBENCH_REPORT_SCREENSHOT"
WIDTH = 1280


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """The smoke suite trained (seconds), one sample-quality row added by hand, and the report."""
    base = tmp_path_factory.mktemp("report")
    db_path = str(base / "db.sqlite")
    assert main(["run", "--suite", "smoke", "--budget", "smoke", "--db", db_path, "--runs-dir",
                 str(base / "runs"), "--leaderboards", str(base / "lb"), "--no-progress"]) == 0
    db = ResultsDB(db_path)
    gan = RunIdentity("smoke", "gan", "gan", {}, "toy", (1, 8, 8), "smoke", {"epochs": 1, "seed": 0},
                      {"k": 20, "n_test": 200, "quality_samples": 500})
    db.finish_run(db.start_run(gan, str(base / "nowhere"), "cpu"), {"fid_lenet": 12.5, "is_lenet": 4.0},
                  3.0, 1.0)
    db.finish_run(db.start_run(replace(gan, train={"epochs": 1, "seed": 1}), str(base / "nowhere"),
                               "cpu"), {"fid_lenet": 14.5, "is_lenet": 4.5}, 3.0, 1.0)
    assert main(["report", "--db", db_path, "--out", str(base / "report")]) == 0
    return base / "report" / "index.html", db


def test_the_page_is_self_contained_and_says_where_every_number_came_from(report):
    page, db = report
    text = page.read_text()
    for attribute in re.findall(r'(?:src|href)="([^"]*)"', text):
        assert attribute.startswith(("data:image/png;base64,", "#")), attribute  # nothing to fetch
    assert "<link" not in text and "@import" not in text and "url(" not in text
    assert "default-src 'none'" in text  # the page may not load anything, even by mistake
    for title in ("Leaderboard: smoke", "Likelihood", "Sample quality", "Latent diagnostics", "Bookkeeping",
                  "Runs", "Paper tables", "IWAE paper, Table 1", "Provenance"):
        assert f">{title}" in text, title
    for run in db.runs():  # each run's key, seed, budget and versions
        assert run["run_key"] in text
        assert f"genbench {run['versions']['genbench']}, numpy {run['versions']['numpy']}" in text
    shipped = json.loads(SHIPPED_RECORD.read_text())["sha256"]
    assert f"sha256 {shipped}" in text  # the feature network of the FID cells
    assert text.count("<table class=\"sortable\">") >= 4
    assert len(re.findall(r"<img ", text)) == 8  # 3 grids of samples, 3 of reconstructions, 2 curves


def test_markdown_becomes_escaped_html_with_sortable_tables_and_resolved_images():
    markdown = ("# Title\n\nSome `code <x>` and **bold** & more\ntext.\n\n- one ![pic](a.png)\n- two\n\n"
                "| run | NLL ↓ |\n|-----|------|\n| <b>x</b> | 1.5 |\n")
    html = to_html(markdown, lambda src, alt: f"[{alt}:{src}]", shift=1)
    assert "<h2>Title</h2>" in html
    assert "<p>Some <code>code &lt;x&gt;</code> and <strong>bold</strong> &amp; more text.</p>" in html
    assert "<ul><li>one [pic:a.png]</li><li>two</li></ul>" in html
    assert '<table class="sortable"><thead><tr><th scope="col">run</th><th scope="col">NLL ↓</th>' in html
    assert "<td>&lt;b&gt;x&lt;/b&gt;</td><td>1.5</td>" in html and "---" not in html


def test_report_refuses_a_missing_database_in_one_line(tmp_path, capsys):
    assert main(["report", "--db", str(tmp_path / "none.sqlite"), "--out", str(tmp_path / "r")]) == 2
    missing = tmp_path / "none.sqlite"
    expected = f"genbench: --db {missing}: no results database there (genbench run writes one)"
    assert capsys.readouterr().err.strip() == expected


CHROMIUM = find_chromium()


def _column(browser: Browser, table: int, column: int) -> list[str]:
    return browser.evaluate(f"Array.from(document.querySelectorAll('table.sortable')[{table}].tBodies[0]"
                            f".rows).map(r => r.cells[{column}].textContent.trim())")


def _click_header(browser: Browser, table: int, column: int) -> None:
    """Scroll the header into view and click its middle with the mouse."""
    x, y = browser.evaluate(f"(() => {{ const th = document.querySelectorAll('table.sortable')[{table}]"
                            f".tHead.rows[0].cells[{column}]; th.scrollIntoView({{block: 'center'}}); "
                            "const r = th.getBoundingClientRect(); "
                            "return [r.x + r.width / 2, r.y + r.height / 2]; })()")
    browser.click(x, y)


def _number(text: str) -> float:
    return float(re.match(r"[-+]?\d+(\.\d+)?", text).group(0))


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (Debian: apt-get install -y chromium; "
                    "or set GENBENCH_CHROMIUM=/path/to/chrome)")
def test_the_report_in_headless_chromium(report, tmp_path):
    page, _ = report
    with Browser(CHROMIUM, tmp_path / "profile", width=WIDTH, height=900) as browser:
        browser.open(page.as_uri())
        assert browser.problems() == []  # no console error, exception or failed request
        urls = browser.requested_urls()
        assert urls and all(url.startswith(("file:", "data:")) for url in urls), urls
        images = browser.evaluate("Array.from(document.images).map(i => ({alt: i.alt, complete: i.complete, "
                                  "width: i.naturalWidth, height: i.naturalHeight}))")
        assert len(images) == 8 and all(i["complete"] and i["width"] > 0 and i["height"] > 0 for i in images)

        # the likelihood table (the first): click "run", then the NLL column twice
        headers = browser.evaluate("Array.from(document.querySelectorAll('table.sortable')[0].tHead.rows[0]"
                                   ".cells).map(c => c.textContent.trim())")
        assert headers[:3] == ["run", "budget", "NLL (nats) ↓"]
        before = _column(browser, 0, 0)
        assert before == ["ppca", "vae-L1-k1", "iwae-L2-k5"]  # the suite's order
        _click_header(browser, 0, 0)
        assert _column(browser, 0, 0) == sorted(before) != before
        _click_header(browser, 0, 2)
        nll = [_number(v) for v in _column(browser, 0, 2) if v not in ("", "–")]
        assert nll == sorted(nll) and len(nll) == 2  # ppca's is a density NLL, in a column of its own
        _click_header(browser, 0, 2)
        assert [_number(v) for v in _column(browser, 0, 2) if v not in ("", "–")] == sorted(nll, reverse=True)
        assert browser.evaluate("document.querySelectorAll('table.sortable')[0].tHead.rows[0].cells[2]"
                                ".getAttribute('aria-sort')") == "descending"
        assert browser.problems() == []

        browser.evaluate("window.scrollTo(0, 0)")
        height = min(browser.evaluate("document.documentElement.scrollHeight"), 8000)
        shot = browser.screenshot(WIDTH, height)
        boxes = browser.evaluate(
            "(() => { const box = e => { const r = e.getBoundingClientRect(); return [r.left + scrollX, "
            "r.top + scrollY, r.width, r.height]; }; return {tables: Array.from(document.querySelectorAll("
            "'table.sortable')).map(box), images: Array.from(document.images).map(i => [box(i), i.src])}; "
            "})()")
    if os.environ.get(SCREENSHOT_ENV):
        Path(os.environ[SCREENSHOT_ENV]).write_bytes(shot)
    pixels = np.asarray(Image.open(io.BytesIO(shot)).convert("RGB")).astype(int)
    assert pixels.shape == (height, WIDTH, 3)
    white = (pixels == 255).all(axis=2)
    assert 0.03 < 1 - white.mean() < 0.6  # a page of text, tables and pictures on white, not blank
    header_fill = (np.abs(pixels - [0xEE, 0xF1, 0xF4]).sum(axis=2) <= 3)
    for left, top, w, h in boxes["tables"]:
        if top + h > height:
            continue
        region = pixels[int(top):int(top + h), int(left):int(left + w)]
        dark = (region.sum(axis=2) < 3 * 110).mean()  # text and borders
        assert 0.01 < dark < 0.5, (left, top, dark)
        assert header_fill[int(top):int(top + h), int(left):int(left + w)].mean() > 0.05  # header row
    shown = 0
    for (left, top, w, h), src in boxes["images"]:
        if top + h > height:
            continue
        original = np.asarray(Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("RGB"))
        y, x = round(top), round(left)
        region = pixels[y:y + original.shape[0], x:x + original.shape[1]]
        assert (w, h) == (original.shape[1], original.shape[0])
        assert np.abs(region - original.astype(int)).mean() < 2, (src[:40], left, top)  # the image itself
        assert region.std() > 10  # not a blank box
        shown += 1
    assert shown >= 3

