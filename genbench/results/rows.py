"""What a results row must hold: checked once where it is written and once where it is read.

Writing (``ResultsDB.finish_run``, ``record_external``, ``ingest``, and ``genbench collect``'s reading
of a ``result.json``) refuses, in one line naming the value, a run that would be done without
numbers: no metric, or one that is not a finite number (a declared uncertainty may be NaN: one
seed, one point; SQLite stores it as NULL). Reading (``ResultsDB.runs`` and ``ResultsDB.done_run``)
decodes each row with ``decode_run`` into a ``RunRecord``, the one shape of a row; a row that cannot
be rendered (a metric NULL or text, config not JSON, versions a list, a field missing) is refused
there, so every renderer (leaderboards, paper tables, figures, the report, status) and the runner
get only well-formed rows and a database holding a bad row still renders.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any

from genbench.core.errors import GenbenchError
from genbench.train.identity import RunIdentity

#: columns of a runs row that hold text, and those that may also be NULL
TEXT = ("run_key", "suite", "name", "model", "dataset", "budget", "status", "started_at")
OPTIONAL_TEXT = ("error", "run_dir", "device", "finished_at", "owner", "backend")
#: columns that hold a finite number or NULL
OPTIONAL_NUMBERS = ("train_seconds", "eval_seconds", "heartbeat", "world_size")
#: columns that hold a JSON object
OBJECTS = ("config", "train", "eval", "versions")
#: what an external result's provenance must name (``genbench.results.external``), as text
EXTERNAL_TEXT = ("code", "weights", "weights_sha256")
#: where a row may be: SCHEMA's CHECK
STATUSES = ("running", "done", "failed")


class BadRow(ValueError):
    """A row of the database that cannot be rendered; its message says why."""


class UnreadableRun(GenbenchError):
    """A done row that cannot be decoded, met where a run would be reused: the run is neither reused
    nor trained again (its row stays as it is, for a person to look at)."""


def is_number(value: object) -> bool:
    """A real number (numpy's included), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def is_uncertainty(key: str) -> bool:
    """Whether metric ``key`` is another value's declared uncertainty (a standard error or std),
    which may be NaN: one seed, one point."""
    from genbench.metrics.registry import METRICS

    for spec in METRICS.in_order():
        column = spec.column_of(key)
        if column is not None:
            return any(c.error == column.key for c in spec.columns)
    return False


# --- writing ----------------------------------------------------------------------------------
def check_metrics(metrics: object, what: str = "run") -> dict[str, float]:
    """The metric values of a run about to be recorded as done, as floats; refused (the metric
    named) where there are none or one is not a finite number."""
    if not isinstance(metrics, dict) or not metrics:
        raise GenbenchError(f"{what} has no metric values; not recorded as done")
    for key, value in metrics.items():
        if not isinstance(key, str) or not key:
            raise GenbenchError(f"{what} has a metric named {key!r}; not recorded as done")
        if not is_number(value):
            raise GenbenchError(f"metric {key} of the {what} is {value!r}, not a number; "
                                "not recorded as done")
        if not math.isfinite(value) and not is_uncertainty(key):
            raise GenbenchError(f"metric {key} of the {what} is {value}; not recorded as done")
    return {key: float(value) for key, value in metrics.items()}


def check_skipped(skipped: object, what: str = "run") -> dict[str, str]:
    """Why applicable metrics were skipped: metric name to reason, both text."""
    if not isinstance(skipped, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                for k, v in skipped.items()):
        raise GenbenchError(f"{what}: its skipped metrics are not a mapping of names to reasons")
    return skipped


def check_curve(curve: object, what: str = "run") -> list[dict[str, float]]:
    """A learning curve: rows with a finite ``epoch`` each (one row an epoch) and numbers (a NaN
    value, a validation ELBO that diverged, is kept: it is stored as NULL)."""
    if not isinstance(curve, list):
        raise GenbenchError(f"{what}: its learning curve is not a list of rows")
    epochs = set()
    for i, row in enumerate(curve):
        if not isinstance(row, dict) or not is_number(row.get("epoch")) or not math.isfinite(row["epoch"]):
            raise GenbenchError(f"{what}: row {i} of its learning curve has no finite epoch")
        if row["epoch"] in epochs:
            raise GenbenchError(f"{what}: its learning curve has epoch {row['epoch']} twice")
        epochs.add(row["epoch"])
        for key, value in row.items():
            if not isinstance(key, str) or not is_number(value):
                raise GenbenchError(f"{what}: {key!r} at epoch {row['epoch']} of its learning curve is "
                                    f"{value!r}, not a number")
    return curve


def check_fields(record: object, kinds: dict[str, tuple], what: str) -> None:
    """Each named attribute of ``record`` of one of its kinds (``None``: may be None; ``float``: a
    finite number; ``int``: an integer, not a bool)."""
    for name, allowed in kinds.items():
        value = getattr(record, name)
        if not any(_is_kind(value, kind) for kind in allowed):
            kinds = " or ".join(_KIND_NAMES[k] for k in allowed)
            raise GenbenchError(f"{what}: its {name} is {value!r}, not {kinds}")


_KIND_NAMES = {str: "text", int: "an integer", float: "a finite number", None: "null"}


def _is_kind(value: object, kind: type | None) -> bool:
    if kind is None:
        return value is None
    if kind is float:
        return is_number(value) and math.isfinite(value)
    return isinstance(value, kind) and not isinstance(value, bool)


def check_identity(run: RunIdentity, what: str = "run") -> None:
    """A run's identity as rows and run directories need it: text names, a config, a training
    config with an integer seed and a number of epochs, evaluation settings, a data shape."""
    for name in ("suite", "name", "model", "dataset", "budget"):
        if not isinstance(getattr(run, name), str) or not getattr(run, name):
            raise GenbenchError(f"{what}: its {name} is {getattr(run, name)!r}, not a name")
    for name in ("config", "train", "eval"):
        if not isinstance(getattr(run, name), dict):
            raise GenbenchError(f"{what}: its {name} is not a JSON object")
    seed, epochs = run.train.get("seed"), run.train.get("epochs")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise GenbenchError(f"{what}: its training seed is {seed!r}, not an integer")
    if not is_number(epochs) or not math.isfinite(epochs):
        raise GenbenchError(f"{what}: its training epochs are {epochs!r}, not a number")
    if not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in run.data_shape):
        raise GenbenchError(f"{what}: its data shape {list(run.data_shape)} is not a list of positive "
                            "integers")


# --- reading ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunRecord(Mapping):
    """One row of the runs table, decoded: its columns (JSON ones as objects), its metric values
    and why applicable metrics were skipped. Read by attribute; renderers that look fields up by
    name (``run["metrics"]``, ``run.get("external")``) read it as a read-only mapping."""

    id: int
    run_key: str
    suite: str
    name: str
    model: str
    dataset: str
    config: dict[str, Any]
    seed: int
    budget: str
    train: dict[str, Any]
    eval: dict[str, Any]
    status: str
    error: str | None
    run_dir: str | None
    device: str | None
    started_at: str
    finished_at: str | None
    train_seconds: float | None
    eval_seconds: float | None
    versions: dict[str, str]
    owner: str | None
    heartbeat: float | None
    external: dict[str, Any] | None
    """An external result's provenance (``genbench score --name``); None for a zoo run."""
    world_size: int | None
    backend: str | None
    metrics: dict[str, float]
    skipped: dict[str, str]

    def __getitem__(self, key: str) -> Any:
        if key not in _RECORD_FIELDS:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(_RECORD_FIELDS)

    def __len__(self) -> int:
        return len(_RECORD_FIELDS)


_RECORD_FIELDS = tuple(f.name for f in fields(RunRecord))


def decode_run(row: dict[str, Any], metrics: dict[str, Any], skipped: dict[str, Any]) -> RunRecord:
    """A runs row as the runner and renderers read it: JSON columns decoded, its metrics (finite
    numbers; an uncertainty that is NULL left out) and skipped reasons. ``BadRow`` where it cannot
    be rendered."""
    run = dict(row)
    _check_columns(run)
    for key in OBJECTS:
        run[key] = _json_object(run[key], key)
    run["external"] = _external(run.get("external"))
    if not all(isinstance(v, str) for v in run["versions"].values()):
        raise BadRow("its versions are not text")
    if any(isinstance(v, dict | list) for v in run["eval"].values()):
        raise BadRow("its evaluation settings are not plain values")
    if run["external"] is None and not (is_number(run["train"].get("epochs"))
                                        and math.isfinite(run["train"]["epochs"])):
        raise BadRow("its training config has no number of epochs")
    run["metrics"] = _metrics(metrics)
    if run["status"] == "done" and not run["metrics"]:
        raise BadRow("done without metric values")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in skipped.items()):
        raise BadRow("a skipped metric's reason is not text")
    run["skipped"] = dict(skipped)
    return RunRecord(**{name: run.get(name) for name in _RECORD_FIELDS})


def _check_columns(run: dict[str, Any]) -> None:
    missing = [key for key in (*TEXT, *OPTIONAL_TEXT, *OPTIONAL_NUMBERS, *OBJECTS, "seed") if key not in run]
    if missing:
        raise BadRow(f"it lacks {', '.join(missing)}")
    for key in TEXT + OPTIONAL_TEXT:
        if not isinstance(run[key], str) and (key in TEXT or run[key] is not None):
            raise BadRow(f"its {key} is {run[key]!r}, not text")
    for key in OPTIONAL_NUMBERS:
        if run[key] is not None and not (is_number(run[key]) and math.isfinite(run[key])):
            raise BadRow(f"its {key} is {run[key]!r}, not a number")
    if not isinstance(run["seed"], int):
        raise BadRow(f"its seed is {run['seed']!r}, not an integer")
    if run["status"] not in STATUSES:
        raise BadRow(f"its status is {run['status']!r}")


def _json_object(text: object, key: str) -> dict[str, Any]:
    if not isinstance(text, str):
        raise BadRow(f"its {key} is {text!r}, not JSON text")
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        raise BadRow(f"its {key} is not JSON") from None
    if not isinstance(value, dict):
        raise BadRow(f"its {key} is a JSON {type(value).__name__}, not an object")
    return value


def _external(text: object) -> dict[str, Any] | None:
    """An external result's provenance (None: a zoo run)."""
    if text is None or text == "":
        return None
    value = _json_object(text, "external provenance")
    if not all(isinstance(value.get(key), str) for key in EXTERNAL_TEXT):
        raise BadRow(f"its external provenance lacks one of {', '.join(EXTERNAL_TEXT)} as text")
    if "code_sha256" in value and not isinstance(value["code_sha256"], str):
        raise BadRow("its external provenance's code_sha256 is not text")
    init = value.get("init")
    if init is not None and not (isinstance(init, list) and all(isinstance(v, str) for v in init)):
        raise BadRow("its external provenance's init is not a list of text")
    return value


def _metrics(values: dict[str, Any]) -> dict[str, float]:
    """A row's metric values: finite numbers; a NULL or non-finite uncertainty is left out."""
    out = {}
    for key, value in values.items():
        if not isinstance(key, str):
            raise BadRow(f"a metric is named {key!r}")
        if is_number(value) and math.isfinite(value):
            out[key] = float(value)
        elif not ((value is None or is_number(value)) and is_uncertainty(key)):
            shown = "NULL" if value is None else repr(value)
            raise BadRow(f"its metric {key} is {shown}, not a finite number")
    return out
