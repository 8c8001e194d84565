"""``genbench status``: each run of a sweep queued, running, done or failed, with its job and log.

A run's state comes from its run directory first (a result file: done or failed; a live owner:
running, by the job its owner.json names), then from its job: Slurm's view of the array task
(sacct through submitit: pending is queued), or for local workers whether any of the sweep's
worker processes is still there (queued: waiting for a worker). A run whose job ended without a
result is failed (its log says why).
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from genbench.core.errors import GenbenchError
from genbench.launch.sweep import MANIFEST, sweeps_dir
from genbench.results.rundir import owner_is_live, read_owner, read_result

#: Slurm job states (sacct) of a job that has not started, and of one that runs
QUEUED = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "RESIZING", "SUSPENDED"}
RUNNING = {"RUNNING", "COMPLETING", "STAGE_OUT"}


def find_sweep(runs_dir: Path, sweep_id: str | None = None) -> dict:
    """A sweep's record: ``sweep_id``'s, else the newest under ``runs_dir``."""
    folder = sweeps_dir(runs_dir)
    if sweep_id is not None:
        path = folder / sweep_id / MANIFEST
        if not path.is_file():
            raise GenbenchError(f"no sweep {sweep_id!r} under {folder}")
    else:
        found = sorted(folder.glob(f"*/{MANIFEST}"))
        if not found:
            raise GenbenchError(f"no sweep under {folder} (genbench run --launcher local|slurm makes one)")
        path = found[-1]  # ids begin with the time they were made
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise GenbenchError(f"{path}: unreadable sweep record ({exc})") from None


def sweep_status(manifest: dict) -> list[dict]:
    """One row per run: name, seed, state (queued | running | done | failed | cached | busy | unknown),
    job id, log, run directory and, for a failure, its reason."""
    local_alive = _local_workers_alive(manifest) if manifest["launcher"] == "local" else None
    rows = []
    for run in manifest["runs"]:
        row = {"name": run["name"], "seed": run["seed"], "run_dir": run["run_dir"],
               "job_id": run.get("job_id"), "log": run.get("log"), "error": None}
        row["state"] = _state(manifest, run, row, local_alive)
        rows.append(row)
    return rows


def _state(manifest: dict, run: dict, row: dict, local_alive: bool | None) -> str:
    run_dir = Path(run["run_dir"])
    try:
        owner = read_owner(run_dir)
    except GenbenchError:
        owner = None
    if owner and owner.get("job_id") and _beat_since(owner, manifest.get("created_at", 0)):
        row["job_id"], row["log"] = owner["job_id"], owner.get("log")  # the job that took the run
    try:
        found = read_result(run_dir)
    except GenbenchError as exc:
        found, row["error"] = None, str(exc)
    if found is not None and found[0].key == run["key"]:
        row["error"] = found[1].error
        if run["planned"] == "cached" and found[1].status == "done":
            return "cached"
        return found[1].status
    if run["planned"] in ("cached", "busy"):
        return run["planned"]
    if owner_is_live(owner):
        return "running"
    if manifest["launcher"] == "slurm":
        return _slurm_state(manifest, run, row)
    if local_alive is None:
        return "unknown"
    if local_alive:
        return "queued"
    row["error"] = "its workers ended without a result (see their logs)"
    row["log"] = row["log"] or ", ".join(job["log"] for job in manifest["jobs"])
    return "failed"


def _beat_since(owner: dict, since: float) -> bool:
    """Whether owner.json's heartbeat (a number, where the record is well formed) is from ``since`` on."""
    beat = owner.get("heartbeat")
    return isinstance(beat, int | float) and not isinstance(beat, bool) and beat >= since


def _local_workers_alive(manifest: dict) -> bool | None:
    """Whether any local worker of the sweep still runs (None: it ran on another host)."""
    if manifest.get("host") != socket.gethostname():
        return None
    for job in manifest["jobs"]:
        try:
            os.kill(int(job["job_id"]), 0)  # a local job's id is its process id
        except (ProcessLookupError, ValueError):
            continue
        except OSError:
            return True
        return True
    return False


def _slurm_state(manifest: dict, run: dict, row: dict) -> str:
    if not run.get("job_id"):
        return "unknown"
    try:
        from submitit import SlurmJob

        state = SlurmJob(manifest["jobs_folder"], run["job_id"]).state.split()[0]
    except Exception:  # no sacct here, or Slurm does not answer: say so, do not guess
        return "unknown"
    if state in QUEUED:
        return "queued"
    if state in RUNNING:
        return "running"
    if state == "UNKNOWN":
        return "unknown"
    row["error"] = f"its job ended ({state}) without a result"
    return "failed"
