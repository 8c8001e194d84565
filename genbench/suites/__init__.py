"""Suites: TOML files of data set x models x hyperparameters x budgets x seeds.

A budget sets both training (epochs) and evaluation (importance samples k, test points).
Every suite may use the three named budgets; ``BUDGET_DEFAULTS`` is the one defaults table
and a suite's ``[budgets.NAME]`` section overrides fields of it.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields, replace
from importlib.resources import files
from typing import Any

from genbench.errors import GenbenchError
from genbench.metrics.registry import EvalSettings
from genbench.registry import Registry
from genbench.train.loop import TrainConfig


@dataclass(frozen=True)
class Budget:
    name: str
    epochs: float
    eval_k: int
    eval_n: int | None = None
    """Test points for evaluation; None is the whole test split."""
    max_kl_warmup_epochs: float | None = None
    """Caps a run's KL warm-up: a 5-epoch budget cannot spend the paper's 100 warming up."""
    surgery_points: int = 10_000
    """Training points whose aggregate posterior ELBO surgery takes (a seeded subset)."""
    disentanglement_train: int = 10_000
    """Training points of the disentanglement classifiers (disentanglement_lib: 10000)."""
    disentanglement_eval: int = 5_000
    quality_samples: int = 0
    """Model samples for IS/FID/KID/PR (0: not computed in this budget). The first use on a
    data set trains and caches its LeNet feature net (minutes on a CPU)."""

    def describe(self) -> str:
        n = "all" if self.eval_n is None else str(self.eval_n)
        text = f"{self.name}: {self.epochs:g} epochs; NLL k={self.eval_k} on {n} test points"
        if self.max_kl_warmup_epochs is not None:
            text += f"; KL warm-up at most {self.max_kl_warmup_epochs:g} epochs"
        text += f"; ELBO surgery over {self.surgery_points} training points"
        text += (f"; disentanglement classifiers on {self.disentanglement_train} training / "
                 f"{self.disentanglement_eval} evaluation points")
        if self.quality_samples:
            text += (f"; IS/FID/KID/precision-recall of {self.quality_samples} samples against the first "
                     f"{EvalSettings.quality_reference} test images")
        return text

    def eval_settings(self) -> EvalSettings:
        return EvalSettings(k=self.eval_k, n_test=self.eval_n, surgery_points=self.surgery_points,
                            disentanglement_train=self.disentanglement_train,
                            disentanglement_eval=self.disentanglement_eval,
                            quality_samples=self.quality_samples)


BUDGET_DEFAULTS = {
    "smoke": Budget("smoke", epochs=1, eval_k=10, eval_n=200, surgery_points=500,
                    disentanglement_train=100, disentanglement_eval=50),
    "short": Budget("short", epochs=2, eval_k=1000, eval_n=1000),
    "paper": Budget("paper", epochs=3280, eval_k=5000, eval_n=None),
}


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
    (``epochs``), or its evaluation is costlier (``eval_k``, ``eval_n``)."""


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
        return replace(budget, **entry.budgets.get(budget.name, {}))

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
        allowed = {f.name for f in fields(Budget)} - {"name"}
        overrides = [(f"budget {name!r}", o) for name, o in raw.get("budgets", {}).items()] + [
            (f"run {r.get('name')!r} budget {b!r}", o)
            for r in raw["runs"] for b, o in r.get("budgets", {}).items()]
        for where, override in overrides:
            bad = set(override) - allowed
            if bad:
                raise GenbenchError(f"suite {source}: {where} has unknown field {sorted(bad)[0]!r}")
        for name, override in raw.get("budgets", {}).items():
            base = budgets.get(name, Budget(name, epochs=1, eval_k=100))
            budgets[name] = replace(base, **override)
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
