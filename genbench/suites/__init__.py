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

    def describe(self) -> str:
        n = "all" if self.eval_n is None else str(self.eval_n)
        return f"{self.name}: {self.epochs:g} epochs; NLL k={self.eval_k} on {n} test points"

    def eval_settings(self) -> EvalSettings:
        return EvalSettings(k=self.eval_k, n_test=self.eval_n)


BUDGET_DEFAULTS = {
    "smoke": Budget("smoke", epochs=1, eval_k=10, eval_n=200),
    "short": Budget("short", epochs=2, eval_k=1000, eval_n=1000),
    "paper": Budget("paper", epochs=3280, eval_k=5000, eval_n=None),
}


@dataclass(frozen=True)
class RunEntry:
    name: str
    model: str
    config: dict[str, Any] = field(default_factory=dict)


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

    def train_config(self, budget: Budget, seed: int) -> TrainConfig:
        return TrainConfig(**{**self.train, "epochs": budget.epochs, "seed": seed})

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
        for name, override in raw.get("budgets", {}).items():
            bad = set(override) - allowed
            if bad:
                raise GenbenchError(f"suite {source}: budget {name!r} has unknown field {sorted(bad)[0]!r}")
            base = budgets.get(name, Budget(name, epochs=1, eval_k=100))
            budgets[name] = replace(base, **override)
        train_fields = {f.name for f in fields(TrainConfig)} - {"epochs", "seed"}
        bad = set(raw.get("train", {})) - train_fields
        if bad:
            raise GenbenchError(f"suite {source}: [train] has unknown field {sorted(bad)[0]!r}")
        runs = [RunEntry(r["name"], r["model"], dict(r.get("config", {}))) for r in raw["runs"]]
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
