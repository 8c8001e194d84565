"""Suites: TOML files of data set x models x hyperparameters x budgets x seeds.

A budget sets both training (epochs) and evaluation (an ``EvalSettings``: importance samples
``k``, test points ``n_test`` ...). Every suite may use the four named budgets: ``BUDGET_DEFAULTS``
holds them, built on ``EvalSettings``' defaults (the one table of evaluation defaults), and a
suite's ``[budgets.NAME]`` section overrides their fields by the same names.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields, replace
from importlib.resources import files
from typing import Any

from genbench.core.errors import GenbenchError
from genbench.core.registry import Registry
from genbench.metrics.registry import METRICS, EvalSettings
from genbench.train.loop import TrainConfig

#: the training fields of a budget; every other field a budget may set is an EvalSettings field
TRAINING_FIELDS = ("epochs", "max_kl_warmup_epochs")
#: EvalSettings fields a budget may not set: where files live is not part of a budget
NOT_BUDGET_FIELDS = ("cache_root",)


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

    def describe(self) -> str:
        """One line: the training, the test protocol, then what each metric's settings are."""
        s = self.eval
        n = "all test points" if s.n_test is None else f"a seeded random {s.n_test} test points"
        parts = [f"{self.name}: {self.epochs:g} epochs", f"NLL k={s.k} on {n}"]
        if self.max_kl_warmup_epochs is not None:
            parts.append(f"KL warm-up at most {self.max_kl_warmup_epochs:g} epochs")
        for spec in METRICS.in_order():
            text = spec.budget_text(s) if spec.budget_text else None
            if text and text not in parts:
                parts.append(text)
        return "; ".join(parts)


BUDGET_DEFAULTS = {
    "smoke": Budget("smoke", epochs=1, eval=EvalSettings(k=10, n_test=200, surgery_points=500,
                                                         disentanglement_train=100, disentanglement_eval=50)),
    "short": Budget("short", epochs=2, eval=EvalSettings(k=1000, n_test=1000)),
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
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise GenbenchError(f"suite {source}: invalid TOML ({exc})") from None
    try:
        budgets = dict(BUDGET_DEFAULTS)
        allowed = set(Budget.fields())
        overrides = [(f"budget {name!r}", o) for name, o in raw.get("budgets", {}).items()] + [
            (f"run {r.get('name')!r} budget {b!r}", o)
            for r in raw["runs"] for b, o in r.get("budgets", {}).items()]
        for where, override in overrides:
            bad = set(override) - allowed
            if bad:
                raise GenbenchError(f"suite {source}: {where} has unknown field {sorted(bad)[0]!r}; "
                                    f"valid: {', '.join(Budget.fields())}")
        for name, override in raw.get("budgets", {}).items():
            budgets[name] = budgets.get(name, replace(NEW_BUDGET, name=name)).override(override)
        train_fields = {f.name for f in fields(TrainConfig)} - {"epochs", "seed"}
        for where, train in [("[train]", raw.get("train", {}))] + [
                (f"run {r.get('name')!r}", r.get("train", {})) for r in raw["runs"]]:
            bad = set(train) - train_fields
            if bad:
                raise GenbenchError(f"suite {source}: {where} has unknown field {sorted(bad)[0]!r}")
        runs = [RunEntry(r["name"], r["model"], dict(r.get("config", {})), r.get("dataset"),
                         dict(r.get("train", {})), {b: dict(o) for b, o in r.get("budgets", {}).items()})
                for r in raw["runs"]]
        return Suite(
            name=raw["name"], description=raw.get("description", ""), dataset=raw["dataset"],
            seeds=int(raw.get("seeds", 1)), train=dict(raw.get("train", {})), budgets=budgets,
            runs=runs, notes=list(raw.get("notes", [])),
        )
    except KeyError as exc:
        raise GenbenchError(f"suite {source}: missing field {exc.args[0]!r}") from None


def _load_builtin(registry: Registry[Suite]) -> None:
    for path in sorted(files(__package__).iterdir(), key=lambda p: p.name):
        if path.name.endswith(".toml"):
            suite = parse_suite(path.read_text(), path.name)
            registry.register(suite.name, suite)


SUITES: Registry[Suite] = Registry("suite", loader=_load_builtin)
