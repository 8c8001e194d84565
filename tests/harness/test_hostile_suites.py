"""Hostile suite files: names are identifiers, not paths, and every value is checked as its flag is.

``genbench run --suite FILE.toml`` with a suite whose names would put run folders or leaderboards
outside ``--runs-dir`` and ``--leaderboards``, or whose keys and values are unknown, of the wrong
type, out of range or huge: each gives one line and exit 2 before anything is trained or written
(through ``tests/hostile_driver.py``, as ``tests/harness/test_hostile_inputs.py``'s cases), and so do
``genbench status --sweep ../x`` and ``genbench tables --paper ../suites/smoke``. Hypothesis
checks that any value of any suite key is accepted in range or refused in one line, and every numeric flag
of the CLI whose name is a suite key refuses a value in the suite file's words.
"""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from genbench.cli import build_parser
from genbench.core.errors import GenbenchError
from genbench.core.names import MAX_NAME_CHARS, check_name, inside, is_name
from genbench.results.db import ResultsDB
from genbench.results.leaderboard import render_leaderboard
from genbench.suites import RANGES, SUITES, TRAIN_KEYS, Budget, parse_suite
from genbench.train.identity import RunIdentity
from tests.harness.test_hostile_inputs import FEW, Case, problems, run_driver

#: a suite that trains a toy PPCA in a second; each case changes one thing of it
BASE = {"name": "s", "dataset": "toy", "seeds": 1, "train": {"batch_size": 20},
        "budgets": {"smoke": {"epochs": 0.05, "k": 2, "n_test": 20}},
        "runs": [{"name": "r", "model": "ppca", "config": {"latent": 2}}]}
#: a value that a case's change removes
DROP = object()


def toml_value(value) -> str:
    """``value`` as TOML, tables inline (one line): names and strings quoted as JSON strings are."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)  # TOML writes nan, inf and -inf as Python does
    if isinstance(value, int | str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(map(toml_value, value)) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


def changed(where: tuple[str, ...], value) -> dict:
    """``BASE`` with the key at path ``where`` (tables, or a run's index) set to ``value`` (or left out)."""
    suite = json.loads(json.dumps(BASE))
    inner = suite
    for step in where[:-1]:
        inner = inner[int(step)] if isinstance(inner, list) else inner.setdefault(step, {})
    if value is DROP:
        del inner[where[-1]]
    else:
        inner[where[-1]] = value
    return suite


def suite_text(suite: dict) -> str:
    return "".join(f"{json.dumps(key)} = {toml_value(value)}\n" for key, value in suite.items())


# --- through the CLI: one line, exit 2, nothing trained, nothing written ------------------------------
#: (case, where, value, what the line must say): names that are paths, unknown keys, wrong types,
#: bools as integers, floats as integers, values out of range and huge
SMOKE, RUN = ("budgets", "smoke"), ("runs", "0")
SUITE_CASES = [
    ("suite_name_up", ("name",), "../../escaped", ": name '../../escaped': a name is letters"),
    ("suite_name_dots", ("name",), "..", ": name '..'"),
    ("suite_name_empty", ("name",), "", ": name ''"),
    ("suite_name_long", ("name",), "a" * (MAX_NAME_CHARS + 1), ": name 'aaaaaaaaaa"),
    ("suite_name_5", ("name",), 5, ": name 5: a name is"),
    ("run_name_up", (*RUN, "name"), "../../../../escaped", ": a run's name '../../../../escaped'"),
    ("run_name_slash", (*RUN, "name"), "a/b", ": a run's name 'a/b'"),
    ("run_name_flag", (*RUN, "name"), "-x", ": a run's name '-x'"),
    ("budget_name_up", ("budgets", "../up"), {"epochs": 1}, ": budgets: name '../up'"),
    ("unknown_top_key", ("bogus",), 1, " has unknown field 'bogus'"),
    ("unknown_run_key", (*RUN, "bogus"), 1, ": run 'r' has unknown field 'bogus'"),
    ("unknown_train_key", ("train", "bogus"), 1, ": [train] has unknown field 'bogus'"),
    ("unknown_budget_key", (*SMOKE, "bogus"), 1, ": budget 'smoke' has unknown field 'bogus'"),
    ("seeds_abc", ("seeds",), "abc", ": seeds must be an integer >= 1, got 'abc'"),
    ("seeds_1e12", ("seeds",), 1e12, ": seeds must be an integer >= 1, got 1000000000000.0"),
    ("seeds_10_12", ("seeds",), 10**12, ": seeds must be at most 1,000, got 1000000000000"),
    ("seeds_true", ("seeds",), True, ": seeds must be an integer >= 1, got True"),
    ("seeds_0", ("seeds",), 0, ": seeds must be an integer >= 1, got 0"),
    ("epochs_abc", (*SMOKE, "epochs"), "abc", ": budget 'smoke': epochs must be a number >= 0, got 'abc'"),
    ("epochs_1e300", (*SMOKE, "epochs"), 1e300, ": budget 'smoke': epochs must be at most 100,000"),
    ("epochs_inf", (*SMOKE, "epochs"), math.inf, ": budget 'smoke': epochs must be a number >= 0, got inf"),
    ("epochs_nan", (*SMOKE, "epochs"), math.nan, ": budget 'smoke': epochs must be a number >= 0, got nan"),
    ("k_0", (*SMOKE, "k"), 0, ": budget 'smoke': k must be an integer >= 1, got 0"),
    ("k_2_0", (*SMOKE, "k"), 2.0, ": budget 'smoke': k must be an integer >= 1, got 2.0"),
    ("k_true", (*SMOKE, "k"), True, ": budget 'smoke': k must be an integer >= 1, got True"),
    ("k_huge", (*SMOKE, "k"), 2**62, ": budget 'smoke': k must be at most 1,000,000"),
    ("n_test_minus_5", (*SMOKE, "n_test"), -5, ": budget 'smoke': n_test must be an integer >= 1, got -5"),
    ("quality_samples_3", (*SMOKE, "quality_samples"), 3,
     ": budget 'smoke': quality_samples must be 0 or an integer >= 10, got 3"),
    ("split_5", (*SMOKE, "split"), 5, ": budget 'smoke': split must be a string, got 5"),
    ("run_budget_k_0", (*RUN, "budgets"), {"smoke": {"k": 0}}, ": run 'r' budget 'smoke': k must be"),
    ("run_budget_typo", (*RUN, "budgets"), {"smoek": {}}, ": run 'r' budgets has unknown field 'smoek'"),
    ("lr_0", ("train", "lr"), 0, ": [train]: lr must be a number > 0, got 0"),
    ("batch_size_false", ("train", "batch_size"), False, ": [train]: batch_size must be an integer >= 1"),
    ("run_batch_size_0", (*RUN, "train"), {"batch_size": 0}, ": run 'r': batch_size must be"),
    ("schedule_5", ("train", "schedule"), 5, ": [train]: schedule must be a string, got 5"),
    ("schedule_unknown", ("train", "schedule"), "fast", ": run 'r': unknown schedule 'fast'"),
    ("train_5", ("train",), 5, ": [train] must be a table, got 5"),
    ("budget_5", SMOKE, 5, ": budgets: smoke must be a table, got 5"),
    ("runs_5", ("runs",), 5, ": runs must be an array, got 5"),
    ("notes_5", ("notes",), [5], ": notes must be a string, got 5"),
    ("dataset_5", ("dataset",), 5, ": dataset must be a string, got 5"),
    ("dataset_unknown", ("dataset",), "imagenet", ": run 'r': unknown dataset 'imagenet'"),
    ("model_unknown", (*RUN, "model"), "gpt", ": run 'r': unknown model 'gpt'"),
    ("config_latent_0", (*RUN, "config"), {"latent": 0}, ": run 'r': model 'ppca'"),
    ("no_runs", ("runs",), DROP, ": missing field 'runs'"),
]


@pytest.mark.slow
def test_every_hostile_suite_file_is_one_line_before_anything_is_trained_or_written(tmp_path):
    assert parse_suite(suite_text(BASE), "base.toml").budget("smoke").eval.k == 2  # each case changes it once
    inputs, box = tmp_path / "inputs", tmp_path / "box" / "a" / "b"
    inputs.mkdir()
    cases = []
    for name, where, value, fragment in SUITE_CASES:
        path = inputs / f"{name}.toml"
        path.write_text(suite_text(changed(where, value)))
        argv = ["run", "--suite", str(path), "--budget", "smoke", "--runs-dir", str(box / "runs"),
                "--leaderboards", str(box / "lb"), "--db", str(box / "db.sqlite"), "--no-progress"]
        cases.append(Case(name, argv, f"suite {path}{fragment}"))  # the file, the run and the key named
    cases += [Case("status_sweep_up", ["status", "--runs-dir", str(box / "runs"), "--sweep", "../x"],
                   "--sweep '../x': a name is letters"),
              Case("tables_paper_up", ["tables", "--paper", "../suites/smoke", "--db", str(box / "x.sqlite")],
                   "--paper '../suites/smoke': a name is letters")]
    results = zip(cases, run_driver(cases, tmp_path), strict=True)
    failures = {case.name: [*problems(case, result), result["stderr"].strip()[-400:]]
                for case, result in results if problems(case, result)}
    assert not failures, json.dumps(failures, indent=1)
    written = [str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")
               if p.is_file() and not p.is_relative_to(inputs) and not p.is_relative_to(tmp_path / "driver")]
    assert written == [], "written outside the inputs: nothing may be, nothing trains"


# --- names ------------------------------------------------------------------------------------------
def test_every_built_in_name_is_a_name_and_names_are_not_paths():
    suites = [suite for _, suite in SUITES.items()]
    names = [s.name for s in suites] + [r.name for s in suites for r in s.runs]
    names += [b for s in suites for b in s.budgets]
    assert all(is_name(name) for name in names), [n for n in names if not is_name(n)]
    too_long = "a" * (MAX_NAME_CHARS + 1)
    for bad in ("..", "../x", "/tmp/x", "a/b", "a\\b", "a..b", ".hidden", "-x", "", "a b", too_long, None):
        with pytest.raises(GenbenchError, match="a name is letters"):
            check_name(bad, "name")


def test_a_name_that_reached_a_path_another_way_is_refused_where_the_folder_is_made(tmp_path):
    """The second line: a run folder or a leaderboard that would lie outside its folder is refused
    (a name from a database row or a job's spec, not from a suite file), before anything is written."""
    box = tmp_path / "box"
    run = RunIdentity("../../up", "r", "ppca", {}, "toy", (1, 8, 8), "smoke", {"seed": 0})
    with pytest.raises(GenbenchError, match="is not inside"):
        run.run_dir(box / "runs")
    suite = parse_suite(suite_text(BASE), "base.toml")
    for name in ("../up", "figures/../../up", str(tmp_path / "abs")):
        object.__setattr__(suite, "name", name)  # as a Suite made in Python, unchecked, could be
        with pytest.raises(GenbenchError, match="is not inside"):
            render_leaderboard(ResultsDB(tmp_path / "db.sqlite"), suite, box / "lb")
    assert not box.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["db.sqlite"]
    assert inside(box, box / "s" / "x.md") == box / "s" / "x.md"


# --- values: any value is in range or one clear line ---------------------------------------------------
#: every key a suite sets values of, where it sets it
PLACES = ([("seeds",), ("name",), ("runs", "0", "name")] + [("train", key) for key in TRAIN_KEYS]
          + [("budgets", "smoke", key) for key in Budget.fields()]
          + [("runs", "0", "budgets", "smoke", key) for key in Budget.fields()])
VALUES = (st.integers(-2**63, 2**63 - 1) | st.integers(-3, 20) | st.floats() | st.booleans()
          | st.text(max_size=6) | st.text("a./-_+ \\", max_size=6) | st.sampled_from(["iwae", "test", ""])
          | st.lists(st.integers(0, 3), max_size=2)
          | st.dictionaries(st.sampled_from("ab"), st.integers(), max_size=1))


def in_range(key: str, value) -> bool:
    """Whether a value a suite accepted for ``key`` keeps its range (said here apart from the checker)."""
    r = RANGES[key]
    number = type(value) is int or (r.real and type(value) is float and math.isfinite(value))
    if not number:
        return False
    least = value > r.least if r.open else value >= r.least
    return (least or (r.zero and value == 0)) and value <= r.most


@FEW
@given(where=st.sampled_from(PLACES), value=VALUES)
def test_any_value_of_any_suite_key_is_in_range_or_one_clear_error(where, value):
    key = where[-1]
    try:
        parse_suite(suite_text(changed(where, value)), "h.toml")
    except GenbenchError as exc:
        message = str(exc)
        assert "\n" not in message and message.startswith("suite h.toml: "), message
        assert key in message or "invalid TOML" in message, message
        return
    if key == "name":  # a name accepted is no path: one folder or file name, neither hidden nor a flag
        assert isinstance(value, str) and value and not value.startswith((".", "-")), value
        assert ".." not in value and not set(value) & set("/\\ \0"), value
    else:
        assert in_range(key, value) if key in RANGES else isinstance(value, str), (key, value)


def _numeric_flags() -> list[tuple[str, str, str]]:
    """(command, flag, suite key) of every flag whose value is a suite key's."""
    parser = build_parser()
    [commands] = [a for a in parser._actions if a.dest == "command"]
    return [(command, "/".join(action.option_strings), action.dest)
            for command, sub in commands.choices.items()
            for action in sub._actions if action.dest in RANGES and action.option_strings]


@pytest.mark.parametrize("command, flag, key", _numeric_flags())
@pytest.mark.parametrize("value", [-1, 2.5, 10**13])
def test_a_flag_and_a_suite_key_refuse_a_value_in_the_same_words(command, flag, key, value):
    positional = {"score": ["x"], "compare": ["x", "y"]}.get(command, [])
    argv = [command, *positional, flag.split("/")[0], str(value)]
    with pytest.raises(GenbenchError) as from_flag:
        build_parser().parse_args(argv)
    place = ("seeds",) if key == "seeds" else ("budgets", "smoke", key)
    with pytest.raises(GenbenchError) as from_suite:
        parse_suite(suite_text(changed(place, value)), "h.toml")
    flag_words = str(from_flag.value).split(f"argument {flag}: ")[1].split(", got ")[0]
    suite_words = str(from_suite.value).split(f": {key} ")[1].split(", got ")[0]
    assert flag_words == suite_words and flag_words.startswith("must be")


def test_every_numeric_training_and_evaluation_field_has_a_range():
    """A new numeric field of TrainConfig or EvalSettings without a range would be refused as not a string."""
    import dataclasses
    import typing

    from genbench.metrics.registry import EvalSettings
    from genbench.train.loop import TrainConfig

    for cls, keys in ((TrainConfig, TRAIN_KEYS), (EvalSettings, Budget.fields())):
        hints = typing.get_type_hints(cls)
        numeric = {f.name for f in dataclasses.fields(cls) if f.name in keys
                   and set(typing.get_args(hints[f.name]) or [hints[f.name]]) & {int, float}}
        assert numeric <= set(RANGES), numeric - set(RANGES)
