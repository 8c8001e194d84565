"""External results: a model genbench did not train, recorded beside the zoo's runs.

A scored model recorded by ``genbench score ... --db PATH --name NAME [--suite S]`` (the harness's
``genbench.recording``) is a done run of budget ``external``, its provenance in the run's
``external`` column, its run key the suite, data set and name alone. This module holds what the
results layer needs of it: that key, and how tables show an external run.
"""

from __future__ import annotations

#: the suite of an external result recorded without --suite: on no leaderboard, in paper tables
EXTERNAL_SUITE = "external"
#: the budget name of every external row (it was not trained by genbench)
EXTERNAL_BUDGET = "external"


def run_key(suite: str, dataset: str, name: str) -> str:
    """The key of an external result: one per suite, data set and name (no zoo key has a '/')."""
    return f"external/{suite}/{dataset}/{name}"


def is_external(run: dict) -> bool:
    return bool(run.get("external"))


def run_label(run: dict) -> str:
    """A run's name as tables show it: an external one marked."""
    return f"{run['name']} (external)" if is_external(run) else run["name"]


def model_label(run: dict) -> str:
    """A run's model as tables show it: an external one's code reference."""
    return run["external"]["code"] if is_external(run) else run["model"]
