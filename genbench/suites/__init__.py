"""Suites: TOML files of data set x models x hyperparameters x budgets x seeds.

A budget sets both training (epochs) and evaluation (an ``EvalSettings``: importance samples
``k``, test points ``n_test`` ...). Every suite may use the four named budgets: ``BUDGET_DEFAULTS``
holds them, built on ``EvalSettings``' defaults (the one table of evaluation defaults), and a
suite's ``[budgets.NAME]`` section overrides their fields by the same names.

A suite file is checked whole as it is parsed (``parse_suite``), before anything loads or trains:
its names are identifiers, not paths (``genbench.core.names``), its numbers lie in ``RANGES``, the
table the command line's flags of the same names use, and its keys, models, hyperparameters, data
sets and schedules exist; anything else is one line naming the file, the run and the key.
"""

from __future__ import annotations

import tomllib
from collections.abc import Collection
from dataclasses import dataclass, field, fields, replace
from importlib.resources import files
from typing import Any

from genbench.core.errors import GenbenchError
from genbench.core.hyperparameters import Range, shown
from genbench.core.models import MODELS
from genbench.core.names import check_name
from genbench.core.registry import Registry
from genbench.metrics.registry import METRICS, EvalSettings
from genbench.metrics.sample_quality import QualitySettings
from genbench.train.loop import TrainConfig

#: the training fields of a budget; every other field a budget may set is an EvalSettings field
TRAINING_FIELDS = ("epochs", "max_kl_warmup_epochs")
#: EvalSettings fields a budget may not set: where files live is not part of a budget
NOT_BUDGET_FIELDS = ("cache_root",)
#: the keys of a suite file, of one of its ``[[runs]]`` and of a ``[train]`` table: others are refused
SUITE_KEYS = ("name", "description", "dataset", "seeds", "train", "budgets", "runs", "notes")
RUN_KEYS = ("name", "model", "config", "dataset", "train", "budgets")
TRAIN_KEYS = tuple(f.name for f in fields(TrainConfig) if f.name not in ("epochs", "seed"))

#: the most epochs a budget trains (or warms up, or waits for early stopping): 30x the paper's 3280
MAX_EPOCHS = 100_000
#: the most points any count of a budget takes (test points, reference images, samples): 10^7
MAX_POINTS = 10_000_000
#: The one table of the numbers a suite file may set, and of the command-line flags of the same
#: names (``genbench run --seeds``, ``genbench score --k`` ...: ``genbench.cli``): both refuse a
#: value outside its range in the same words. Every other key a suite's ``[train]`` or budget
#: takes is a string. The upper ends keep a typo from allocating or training for ever.
RANGES: dict[str, Range] = {
    "seeds": Range(1, 1000),
    # [train]
    "batch_size": Range(1, 1_000_000),
    "lr": Range(0, 10, real=True, open=True),
    "checkpoint_every": Range(1, 10**9),
    "check_every": Range(1, 10**9),
    "kl_warmup_epochs": Range(0, MAX_EPOCHS, real=True),
    "early_stopping_epochs": Range(0, MAX_EPOCHS),
    # a budget's training
    "epochs": Range(0, MAX_EPOCHS, real=True),
    "max_kl_warmup_epochs": Range(0, MAX_EPOCHS, real=True),
    # a budget's evaluation: EvalSettings
    "k": Range(1, 1_000_000),
    "n_test": Range(1, MAX_POINTS),
    "active_threshold": Range(0, 1_000_000, real=True),
    "seed": Range(0, 2**32 - 1),
    "points_seed": Range(0, 2**32 - 1),
    "surgery_points": Range(1, MAX_POINTS),
    "surgery_samples": Range(1, 10_000),
    "disentanglement_group_size": Range(1, 10_000),
    "disentanglement_train": Range(1, MAX_POINTS),
    "disentanglement_eval": Range(1, MAX_POINTS),
    "quality_samples": Range(QualitySettings().min_samples, MAX_POINTS, zero=True),
    "quality_reference": Range(QualitySettings().min_reference, MAX_POINTS),
    "curve_samples": Range(QualitySettings().min_samples, MAX_POINTS, zero=True),
    "ais_steps": Range(1, 1_000_000, zero=True),
    "ais_chains": Range(1, 10_000),
    "ais_points": Range(1, MAX_POINTS),
    "ais_sigma_points": Range(1, MAX_POINTS),
    "ais_bdmc_points": Range(1, MAX_POINTS, zero=True),
    "memorization_train": Range(2, MAX_POINTS, zero=True),
    "nll_gap_points": Range(2, MAX_POINTS, zero=True),
    "ode_points": Range(1, MAX_POINTS, zero=True),
    "ode_tolerance": Range(0, 1, real=True, open=True),
    "bound_time_samples": Range(1, 100_000),
}


@dataclass(frozen=True)
class Budget:
    """How much a run trains and how it is evaluated: a training part and one EvalSettings."""

    name: str
    epochs: float
    max_kl_warmup_epochs: float | None = None
    """Caps a run's KL warm-up: a 5-epoch budget cannot spend the paper's 100 warming up."""
    eval: EvalSettings = EvalSettings()

    @staticmethod
    def fields() -> list[str]:
        """The names a suite's ``[budgets.NAME]`` (or a run's ``budgets``) may set."""
        return [*TRAINING_FIELDS, *(f.name for f in fields(EvalSettings) if f.name not in NOT_BUDGET_FIELDS)]

    def override(self, values: dict[str, Any]) -> Budget:
        """This budget with ``values`` replaced, each a training or an EvalSettings field."""
        unknown = sorted(set(values) - set(self.fields()))
        if unknown:
            raise GenbenchError(f"budget {self.name!r} has no field {unknown[0]!r}; "
                                f"valid: {', '.join(self.fields())}")
        training = {k: v for k, v in values.items() if k in TRAINING_FIELDS}
        evaluation = {k: v for k, v in values.items() if k not in TRAINING_FIELDS}
        return replace(self, **training, eval=replace(self.eval, **evaluation))

    def describe(self, metrics: Collection[str] | None = None) -> str:
        """One line: the training, the test protocol, then what each metric's settings are; with
        ``metrics`` (metric names), the settings of those metrics alone (a table says what its rows had,
        not what they never computed)."""
        s = self.eval
        parts = [f"{self.name}: {self.epochs:g} epochs"]
        if metrics is None or "nll" in metrics:
            n = "all test points" if s.n_test is None else f"a seeded random {s.n_test} test points"
            parts.append(f"NLL k={s.k} on {n}")
        if self.max_kl_warmup_epochs is not None:
            parts.append(f"KL warm-up at most {self.max_kl_warmup_epochs:g} epochs")
        for spec in METRICS.in_order():
            if metrics is not None and spec.name not in metrics:
                continue
            text = spec.budget_text(s) if spec.budget_text else None
            if text and text not in parts:
                parts.append(text)
        return "; ".join(parts)


    def as_recorded(self, evaluations: list[dict[str, Any]], epochs: list[float]) -> Budget:
        """This budget as its runs recorded it (their ``eval`` settings and trained ``epochs``): each
        setting the value most of them had, so that a table describes its rows even after the suite's
        definition of the budget has changed. A setting no run recorded keeps this budget's value."""
        known = {f.name for f in fields(EvalSettings)}
        recorded = {}
        for name in sorted(known):
            seen = [evaluation[name] for evaluation in evaluations if name in evaluation]
            if seen:
                recorded[name] = _most_common(seen)
        evaluation = replace(self.eval, **{name: tuple(value) if isinstance(value, list) else value
                                           for name, value in recorded.items()})
        return replace(self, epochs=_most_common(epochs) if epochs else self.epochs, eval=evaluation)


def _most_common(values: list[Any]) -> Any:
    """The value most of ``values`` are (the first seen of those tied)."""
    counts: dict[str, list] = {}
    for value in values:
        counts.setdefault(repr(value), [0, value])[0] += 1
    return max(counts.values(), key=lambda entry: entry[0])[1]


BUDGET_DEFAULTS = {
    "smoke": Budget("smoke", epochs=1, eval=EvalSettings(k=10, n_test=200, surgery_points=500,
                                                         disentanglement_train=100, disentanglement_eval=50)),
    "short": Budget("short", epochs=2, eval=EvalSettings(k=1000, n_test=None)),
    # the paper's schedule stopped early: Burda et al.'s first six stages (1 + 3 + ... + 243 epochs)
    "long": Budget("long", epochs=364, eval=EvalSettings(k=5000, n_test=None)),
    "paper": Budget("paper", epochs=3280, eval=EvalSettings(k=5000, n_test=None)),
}
#: a budget a suite names that is none of the built-in ones starts from this
NEW_BUDGET = Budget("new", epochs=1, eval=EvalSettings(k=100))


@dataclass(frozen=True)
class RunEntry:
    name: str
    model: str
    config: dict[str, Any] = field(default_factory=dict)
    dataset: str | None = None
    """The run's data set where it differs from the suite's."""
    train: dict[str, Any] = field(default_factory=dict)
    """Training settings that override the suite's [train] for this run."""
    budgets: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per budget name, fields that differ for this run: its paper trains longer or shorter
    (``epochs``), or its evaluation is costlier (``k``, ``n_test``)."""


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    dataset: str
    seeds: int
    train: dict[str, Any]
    budgets: dict[str, Budget]
    runs: list[RunEntry]
    notes: list[str] = field(default_factory=list)

    def budget(self, name: str) -> Budget:
        if name not in self.budgets:
            raise GenbenchError(f"unknown budget {name!r}; valid: {', '.join(self.budgets)}")
        return self.budgets[name]

    def dataset_of(self, entry: RunEntry) -> str:
        return entry.dataset or self.dataset

    def budget_for(self, entry: RunEntry, budget: Budget) -> Budget:
        """The budget as it applies to one run (with the run's own overrides)."""
        return budget.override(entry.budgets.get(budget.name, {}))

    def train_config(self, budget: Budget, seed: int, entry: RunEntry | None = None) -> TrainConfig:
        epochs = self.budget_for(entry, budget).epochs if entry else budget.epochs
        values = {**self.train, **(entry.train if entry else {}), "epochs": epochs, "seed": seed}
        if budget.max_kl_warmup_epochs is not None and "kl_warmup_epochs" in values:
            values["kl_warmup_epochs"] = min(values["kl_warmup_epochs"], budget.max_kl_warmup_epochs)
        return TrainConfig(**values)

    def with_dataset(self, name: str) -> Suite:
        """Every run on data set ``name`` instead (an offline re-rendering, another split)."""
        from genbench.data import DATASETS

        wanted = DATASETS[name]
        for entry in self.runs:
            current = DATASETS[self.dataset_of(entry)]
            if current.shape != wanted.shape:
                raise GenbenchError(f"run {entry.name!r} of suite {self.name!r} is for {current.name} "
                                    f"{list(current.shape)}; {name} is {list(wanted.shape)}")
        return replace(self, dataset=name, runs=[replace(e, dataset=None) for e in self.runs])

    def select(self, names: list[str] | None) -> list[RunEntry]:
        """Runs whose name or model is in ``names`` (all runs when None)."""
        if not names:
            return self.runs
        valid = {r.name for r in self.runs} | {r.model for r in self.runs}
        unknown = [n for n in names if n not in valid]
        if unknown:
            raise GenbenchError(f"suite {self.name!r} has no run or model {unknown[0]!r}; "
                                f"valid: {', '.join(sorted(valid))}")
        return [r for r in self.runs if r.name in names or r.model in names]


def parse_suite(text: str, source: str) -> Suite:
    """The suite of a TOML text, every key and value checked before anything is built: names are
    identifiers (``check_name``), numbers lie in ``RANGES`` (the flags' ranges and messages), the
    models, their hyperparameters, the data sets and the training configs exist. Bad input is one
    GenbenchError naming ``source``, the run and the key."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise GenbenchError(f"suite {source}: invalid TOML ({exc})") from None
    try:
        suite = _checked_suite(raw, f"suite {source}")
    except KeyError as exc:
        raise GenbenchError(f"suite {source}: missing field {exc.args[0]!r}") from None
    for entry in suite.runs:
        _check_run_builds(suite, entry, f"suite {source}: run {entry.name!r}")
    return suite


def _checked_suite(raw: dict[str, Any], where: str) -> Suite:
    """The Suite of a parsed TOML file, its keys and values checked as they are read."""
    _known_keys(raw, SUITE_KEYS, where)
    name = check_name(raw["name"], f"{where}: name")
    runs = [_checked_run(r, where) for r in _tables(raw["runs"], f"{where}: runs")]
    budgets = dict(BUDGET_DEFAULTS)
    for budget, override in _named_tables(raw.get("budgets", {}), f"{where}: budgets").items():
        budgets[budget] = budgets.get(budget, replace(NEW_BUDGET, name=budget)).override(
            _checked_budget(override, f"{where}: budget {budget!r}"))
    for run in runs:
        _known_keys(run.budgets, tuple(budgets), f"{where}: run {run.name!r} budgets")  # a typo of a budget
    notes = [_string(where, "notes", note) for note in _list(raw.get("notes", []), f"{where}: notes")]
    return Suite(name=name, description=_string(where, "description", raw.get("description", "")),
                 dataset=_string(where, "dataset", raw["dataset"]),
                 seeds=_setting(where, "seeds", raw.get("seeds", 1)),
                 train=_checked_train(raw.get("train", {}), f"{where}: [train]"), budgets=budgets, runs=runs,
                 notes=notes)


def _checked_run(raw: dict[str, Any], suite_where: str) -> RunEntry:
    """One ``[[runs]]`` entry, its name checked first (every later message names the run)."""
    name = check_name(raw["name"], f"{suite_where}: a run's name")
    where = f"{suite_where}: run {name!r}"
    _known_keys(raw, RUN_KEYS, where)
    budgets = {b: _checked_budget(o, f"{where} budget {b!r}")
               for b, o in _named_tables(raw.get("budgets", {}), f"{where}: budgets").items()}
    config = dict(_table(raw.get("config", {}), f"{where}: config"))
    train = _checked_train(raw.get("train", {}), where)
    return RunEntry(name, _string(where, "model", raw["model"]), config,
                    _string(where, "dataset", raw.get("dataset")), train, budgets)


def _checked_train(raw: Any, where: str) -> dict[str, Any]:
    """A ``[train]`` table (the suite's or a run's): TrainConfig fields other than epochs and seed."""
    train = _table(raw, where)
    bad = sorted(set(train) - set(TRAIN_KEYS))
    if bad:
        raise GenbenchError(f"{where} has unknown field {bad[0]!r}")
    return {key: _setting(where, key, value) for key, value in train.items()}


def _checked_budget(raw: Any, where: str) -> dict[str, Any]:
    """A budget's fields (``[budgets.NAME]`` or a run's ``budgets``), known and each in range."""
    override = _table(raw, where)
    bad = sorted(set(override) - set(Budget.fields()))
    if bad:
        raise GenbenchError(f"{where} has unknown field {bad[0]!r}; valid: {', '.join(Budget.fields())}")
    return {key: _setting(where, key, value) for key, value in override.items()}


def _setting(where: str, key: str, value: Any) -> Any:
    """A training or budget value: a number in its ``RANGES`` entry, or else a string."""
    if key not in RANGES:
        return _string(where, key, value)
    try:
        return RANGES[key].check(value)
    except ValueError as exc:
        raise GenbenchError(f"{where}: {key} {exc}") from None


def _string(where: str, key: str, value: Any) -> str | None:
    """``value`` where it is a string (or None: the key was left out)."""
    if value is not None and not isinstance(value, str):
        raise GenbenchError(f"{where}: {key} must be a string, got {shown(value)}")
    return value


def _list(value: Any, where: str) -> list:
    if not isinstance(value, list):
        raise GenbenchError(f"{where} must be an array, got {shown(value)}")
    return value


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise GenbenchError(f"{where} must be a table, got {shown(value)}")
    return value


def _tables(value: Any, where: str) -> list[dict[str, Any]]:
    """An array of tables (``[[runs]]``)."""
    return [_table(item, where) for item in _list(value, where)]


def _named_tables(value: Any, where: str) -> dict[str, dict[str, Any]]:
    """A table of tables keyed by names (``[budgets.NAME]``), the names checked."""
    return {check_name(name, f"{where}: name"): _table(inner, f"{where}: {name}")
            for name, inner in _table(value, where).items()}


def _known_keys(raw: dict[str, Any], valid: tuple[str, ...], where: str) -> None:
    bad = sorted(set(raw) - set(valid))
    if bad:
        raise GenbenchError(f"{where} has unknown field {bad[0]!r}; valid: {', '.join(valid)}")


def _check_run_builds(suite: Suite, entry: RunEntry, where: str) -> None:
    """A run's data set, model and hyperparameters exist, and its training config is one under every
    budget, before anything is loaded or trained."""
    from genbench.data import DATASETS

    try:
        DATASETS[suite.dataset_of(entry)]
        MODELS[entry.model].make_config(entry.config)
        for budget in suite.budgets.values():
            suite.train_config(budget, 0, entry)
    except GenbenchError as exc:
        raise GenbenchError(f"{where}: {exc}") from None


def _load_builtin(registry: Registry[Suite]) -> None:
    for path in sorted(files(__package__).iterdir(), key=lambda p: p.name):
        if path.name.endswith(".toml"):
            suite = parse_suite(path.read_text(), path.name)
            registry.register(suite.name, suite)


SUITES: Registry[Suite] = Registry("suite", loader=_load_builtin)
