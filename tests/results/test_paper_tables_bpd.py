"""The bits/dim paper tables (VLAE on CIFAR-10, PixelVAE): published numbers and measured cells."""

from __future__ import annotations

from genbench.cli import main
from genbench.results.db import ResultsDB
from genbench.results.paper_tables import load_paper, render_paper_table
from genbench.train.identity import RunIdentity

VLAE_CIFAR = {
    "Uniform distribution": "8.00", "Multivariate Gaussian": "4.70", "NICE": "4.48", "Deep GMMs": "4.00",
    "Real NVP": "3.49", "PixelCNN": "3.14", "Gated PixelCNN": "3.03", "PixelRNN": "3.00",
    "PixelCNN++": "2.92", "Deep Diffusion (variational)": "<= 5.40",
    "Convolutional DRAW (variational)": "<= 3.58", "ResNet VAE with IAF (variational)": "<= 3.11",
    "ResNet VLAE (variational)": "<= 3.04", "DenseNet VLAE (variational)": "<= 2.95",
}
PIXELVAE = {
    "Convolutional DRAW": "<= 4.10 (4.04)", "Real NVP": "= 4.01 (3.93)", "PixelRNN": "= 3.63 (3.57)",
    "Gated PixelCNN": "= 3.57 (3.48)",
    "Hierarchical PixelVAE (measured: genbench's one-level pixelvae)": "<= 3.66 (3.59)",
}


def table_rows(text: str) -> dict[str, list[str]]:
    """A rendered github table as {row label: [cells]}."""
    rows = {}
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith("| model"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


def add_run(db: ResultsDB, key: str, model: str, dataset: str, bpd: float) -> None:
    run = RunIdentity("cifar10", model, model, {"test_key": key}, dataset, (3, 32, 32), "short",
                      {"epochs": 1, "seed": 0}, {"k": 100, "n_test": 1000})
    run_id = db.start_run(run, "/tmp/x", "cpu")
    db.finish_run(run_id, {"nll": bpd * 3072 * 0.6931471805599453, "bits_per_dim": bpd}, 1.0, 1.0)


def test_vlae_cifar_table_has_every_published_number(tmp_path):
    text = render_paper_table("vlae-cifar", ResultsDB(tmp_path / "db.sqlite"))
    rows = table_rows(text)
    assert {label: cells[0] for label, cells in rows.items()} == {
        label: f"{value} / –" for label, value in VLAE_CIFAR.items()}
    assert "arXiv:1611.02731" in text and "No measured cells yet" in text and "--suite cifar10" in text


def test_pixelvae_table_keeps_the_validation_train_pairs(tmp_path):
    text = render_paper_table("pixelvae", ResultsDB(tmp_path / "db.sqlite"))
    rows = table_rows(text)
    assert rows == {
        label: [f"{value} / –", "– / –"] for label, value in PIXELVAE.items()}
    assert "64x64 ImageNet" in text and "arXiv:1611.05013" in text


def test_measured_bits_per_dim_fill_the_cifar10_rows_of_their_models(tmp_path):
    db = ResultsDB(tmp_path / "db.sqlite")
    add_run(db, "a", "realnvp", "cifar10", 4.25)
    add_run(db, "b", "pixelcnn", "cifar10", 3.9)
    add_run(db, "c", "pixelvae", "cifar10", 4.5)
    add_run(db, "d", "realnvp", "mnist8", 1.5)  # another data set: never in these tables
    vlae = table_rows(render_paper_table("vlae-cifar", db))
    assert vlae["Real NVP"] == ["3.49 / 4.25"] and vlae["Gated PixelCNN"] == ["3.03 / 3.90"]
    assert vlae["PixelCNN"] == ["3.14 / –"] and vlae["ResNet VLAE (variational)"] == ["<= 3.04 / –"]
    pixelvae = table_rows(render_paper_table("pixelvae", db))
    assert pixelvae["Real NVP"] == ["= 4.01 (3.93) / –", "– / 4.25"]
    assert pixelvae["Hierarchical PixelVAE (measured: genbench's one-level pixelvae)"] == [
        "<= 3.66 (3.59) / –", "– / 4.50"]
    assert "1.50" not in render_paper_table("vlae-cifar", db)


def test_paper_tables_measure_bits_per_dim_on_cifar10():
    for key in ("vlae-cifar", "pixelvae"):
        paper = load_paper(key)
        assert paper["suites"] == ["cifar10"]
        assert {(c["dataset"], c["metric"]) for c in paper["columns"]} >= {("cifar10", "bits_per_dim")}


def test_tables_command_renders_both_papers(tmp_path, capsys):
    for key, number in (("vlae-cifar", "<= 2.95"), ("pixelvae", "= 3.57 (3.48)")):
        out_file = tmp_path / f"{key}.md"
        code = main(["tables", "--paper", key, "--db", str(tmp_path / "db.sqlite"), "--out", str(out_file)])
        out = capsys.readouterr().out
        assert code == 0 and number in out and out_file.read_text().strip() == out.strip()
