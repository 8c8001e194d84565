"""Data-parallel training and sharded evaluation across two CPU processes (gloo): the loop's
lockstep, and the CLI under torchrun (``run`` and ``score``)."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as tmp_mp

from genbench.metrics import nll
from genbench.train.loop import TrainConfig, train
from tests.helpers import fitted_ppca, low_rank_data
from zoo import MODELS

META = {"name": "ddp", "model": "iwae", "config": {"layers": 1, "k": 2, "objective": "iwae"},
        "dataset": "toy", "data_shape": [1, 8, 8]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    from genbench.data.toy import make_toy

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        toy = make_toy(n_train=200, n_test=100)
        torch.manual_seed(0)
        model = MODELS["iwae"].build({"layers": 1, "k": 2}, toy.shape)
        train(model, toy, TrainConfig(epochs=1, batch_size=20), Path(out_dir),
              META, progress=False)
        data = low_rank_data(n=101)
        ppca = fitted_ppca(data)
        torch.save({"params": model.state_dict(), "nll": nll(ppca, data), "averaged": _averaged(rank)},
                   f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _gradients(rank: int) -> list[torch.Tensor]:
    """Parameters with rank-dependent gradients: two dtypes, a transposed (non-contiguous) gradient,
    and one parameter without a gradient."""
    base = torch.arange(12, dtype=torch.float64).reshape(3, 4)
    params = [torch.zeros(3, 4), torch.zeros(4, 3), torch.zeros(5, dtype=torch.float64), torch.zeros(2)]
    params[0].grad = (base * (rank + 1)).float()
    params[1].grad = (base * (rank + 1)).float().t()
    params[2].grad = torch.full((5,), 1.0 + rank, dtype=torch.float64)
    return params


def _averaged(rank: int) -> list[torch.Tensor | None]:
    from genbench.core.distributed import average_gradients

    params = _gradients(rank)
    average_gradients(params)
    return [p.grad for p in params]


@pytest.mark.slow
@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not available")
def test_two_ranks_train_in_lockstep_and_shard_evaluation(tmp_path):
    tmp_mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for key, value in ranks[0]["params"].items():
        torch.testing.assert_close(ranks[1]["params"][key], value, rtol=0, atol=0)
    # the gradients moved the weights away from their initial values
    torch.manual_seed(0)
    initial = MODELS["iwae"].build({"layers": 1, "k": 2}, (1, 8, 8)).state_dict()
    assert not torch.equal(initial["encoders.0.mean.weight"], ranks[0]["params"]["encoders.0.mean.weight"])
    # sharded evaluation (ranks take alternate items of 101) equals the one-process mean
    data = low_rank_data(n=101)
    expected = nll(fitted_ppca(data), data)
    assert ranks[0]["nll"] == pytest.approx(expected, rel=1e-12) == ranks[1]["nll"]
    assert (tmp_path / "checkpoint.safetensors").exists()  # written by rank 0
    # average_gradients: one flat all-reduce per dtype, each gradient back in place and in its layout
    ones, twos = _gradients(0), _gradients(1)
    for rank in ranks:
        for averaged, one, two in zip(rank["averaged"], ones, twos, strict=True):
            if one.grad is None:
                assert averaged is None
                continue
            assert averaged.dtype == one.grad.dtype and averaged.stride() == one.grad.stride()
            torch.testing.assert_close(averaged, (one.grad + two.grad) / 2, rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------
# torchrun -m genbench run | score: the CLI data-parallel

#: one deterministic run (a PixelCNN trains without sampling noise, on toy data that are not
#: re-binarized), so that two ranks sharing each batch of 20 must end where one process does;
#: lr 3e-3 keeps training out of the chaotic regime where float rounding alone (1 vs 2 threads)
#: moves the weights visibly
DDP_SUITE = """
name = "ddp"
dataset = "toy"
[train]
batch_size = 20
lr = 3e-3
checkpoint_every = 50
[budgets.smoke]
epochs = 3
n_test = 200
[[runs]]
name = "pixelcnn"
model = "pixelcnn"
config = { channels = 8, layers = 2, first_kernel_size = 5 }
"""
#: float tolerance of the weights (and Adam's moments) against one process: each rank's loss is the
#: mean over its 10 points and the two gradients are averaged, another summation order than one
#: mean over 20 (observed: 2e-6 after 300 steps)
WEIGHTS_ATOL = 1e-4


def _children(pid: int) -> list[int]:
    """The processes ``pid`` started (torchrun's ranks run in sessions of their own)."""
    tasks = Path(f"/proc/{pid}/task").iterdir()
    return [int(child) for task in tasks for child in (task / "children").read_text().split()]


#: the environment of every torchrun the tests start: one thread per rank; faulthandler, so a rank
#: that dies of a signal (SIGABRT from C++, SIGSEGV) prints every thread's Python stack first
RANK_ENV = {"OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}


def _torchrun(tmp_path, suite: Path) -> tuple[list[str], dict]:
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
            "-m", "genbench", "run", "--suite", str(suite), "--budget", "smoke", "--device", "cpu",
            "--no-progress", "--db", str(tmp_path / "two.sqlite"), "--runs-dir", str(tmp_path / "two"),
            "--leaderboards", str(tmp_path / "lb")]
    return argv, {**os.environ, **RANK_ENV}


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads a process's children from /proc")
def test_torchrun_two_gloo_ranks_train_a_suite_as_one_process_would_and_resume_after_a_kill(tmp_path):
    from genbench.context import RunContext, SuiteRequest
    from genbench.results.db import ResultsDB
    from genbench.runner import load_suite, run_suite
    from genbench.train.checkpoint import read_checkpoint

    suite_file = tmp_path / "ddp.toml"
    suite_file.write_text(DDP_SUITE)
    argv, env = _torchrun(tmp_path, suite_file)
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 120
        while not list((tmp_path / "two").glob("ddp/smoke/*/checkpoint.safetensors")):
            assert first.poll() is None and time.time() < deadline, (tmp_path / "first.log").read_text()
            time.sleep(0.02)
        for rank in _children(first.pid):  # both ranks die at once, as on a crashed node
            os.kill(rank, signal.SIGKILL)
        first.wait(timeout=60)
    [checkpoint] = (tmp_path / "two").glob("ddp/smoke/*/checkpoint.safetensors")
    killed_at = read_checkpoint(checkpoint)[0]["step"]
    assert 0 < killed_at < 300 and first.returncode != 0

    second = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    stdout, stderr = second.stdout, second.stderr
    assert second.returncode == 0, f"stdout:\n{stdout}\nstderr:\n{stderr}"
    assert "on cpu, 2 ranks (gloo)" in stdout and "[done] pixelcnn seed 0" in stdout
    assert "[takeover] pixelcnn seed 0" in stderr and "resuming its checkpoint" in stderr

    suite = load_suite(str(suite_file))  # the same run in this one process
    [one] = run_suite(SuiteRequest(suite, suite.budget("smoke")),
                      RunContext(ResultsDB(tmp_path / "one.sqlite"), tmp_path / "one", torch.device("cpu"),
                                 progress=False, log=lambda *_: None))
    meta, two_weights, _ = read_checkpoint(checkpoint)
    _, one_weights, _ = read_checkpoint(one.run_dir / "checkpoint.safetensors")
    assert (meta["step"], meta["world_size"], meta["backend"]) == (300, 2, "gloo")
    assert two_weights.keys() == one_weights.keys()
    for key, value in one_weights.items():
        torch.testing.assert_close(two_weights[key], value, rtol=0, atol=WEIGHTS_ATOL, msg=key)
    [row] = ResultsDB(tmp_path / "two.sqlite").runs(status=None)  # one row, the killed try's, taken over
    assert (row["status"], row["world_size"], row["backend"]) == ("done", 2, "gloo")
    assert row["metrics"]["nll"] == pytest.approx(one.metrics["nll"], rel=1e-4)  # exact likelihood, sharded
    assert one.metrics["nll"] < 64 * math.log(2) - 10  # it learned: well below a coin per pixel
    result = json.loads((checkpoint.parent / "result.json").read_text())
    assert (result["status"], result["world_size"], result["backend"]) == ("done", 2, "gloo")


@pytest.mark.slow
def test_two_torchrun_agents_as_two_nodes_then_collect_as_readmes_cluster_recipe(tmp_path):
    """docs/clusters.md's multi-node recipe, two agents on this machine standing in for two nodes: a c10d
    rendezvous, the run directory shared, each node's own database; then ``genbench collect``
    brings the result into another database, once."""
    from genbench.cli import main
    from genbench.results.db import ResultsDB

    runs, port = tmp_path / "shared" / "runs", _free_port()
    env = {**os.environ, **RANK_ENV}
    agent = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
             "--rdzv-id", "job42", "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}",
             "-m", "genbench", "run", "--suite", "smoke", "--budget", "smoke", "--models", "vae-L1-k1",
             "--device", "cpu", "--no-progress", "--runs-dir", str(runs)]
    agents = [subprocess.Popen([*agent, "--db", str(tmp_path / f"node{n}.sqlite"), "--leaderboards",
                                str(tmp_path / f"lb{n}")], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True) for n in range(2)]
    output = "\n".join(a.communicate(timeout=300)[0] for a in agents)
    assert [a.returncode for a in agents] == [0, 0], output
    # rank 0 alone prints the suite's header (rank 1's stdout is silenced), once, as its own log
    assert output.count("on cpu, 2 ranks (gloo)") == output.count("torchrun: 2 ranks, backend gloo") == 1
    home = tmp_path / "home.sqlite"
    for _ in range(2):  # collecting twice adds nothing
        assert main(["collect", str(runs), "--db", str(home), "--leaderboards", str(tmp_path / "lb")]) == 0
    [row] = ResultsDB(home).runs(status=None)
    assert (row["name"], row["status"], row["world_size"], row["backend"]) == ("vae-L1-k1", "done", 2, "gloo")
    assert math.isfinite(row["metrics"]["nll"])


def _native_threads() -> list[str]:
    """The names of this process's threads, native ones included (gloo's: pt_gloo_runloop, gloo_tcp_loop)."""
    return [(task / "comm").read_text().strip() for task in Path("/proc/self/task").iterdir()]


def _rank_leaving_its_group(rank: int, world: int, port: int, out_dir: str) -> None:
    """One rank as torchrun starts it: inside genbench's process group it imports torch._dynamo (as a
    model's first tensor ``//`` does) and all-reduces; after the group, the names of its threads."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    from genbench.launch.torchrun import process_group

    assert "torch.distributed.nn" not in sys.modules  # first imported in the group, as in a rank
    with process_group("cpu"):
        import torch._dynamo  # noqa: F401 (imports torch.distributed.nn)

        dist.all_reduce(torch.ones(3))
    Path(out_dir, f"threads{rank}.json").write_text(json.dumps(_native_threads()))


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads a process's threads from /proc")
def test_leaving_the_process_group_stops_gloos_threads_though_torch_dynamo_was_imported_in_it(tmp_path):
    """The root of a rank's rare SIGABRT at exit (``_import_before_the_group``): gloo threads alive at
    interpreter shutdown. Leaving the group must stop them, whatever was imported inside it."""
    tmp_mp.spawn(_rank_leaving_its_group, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        threads = json.loads((tmp_path / f"threads{rank}.json").read_text())
        assert not [name for name in threads if "gloo" in name], threads


def _score_rank(rank: int, world: int, port: int, run_dir: str, out_dir: str) -> None:
    """One rank of ``genbench score`` as torchrun starts it (its environment variables)."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from genbench.cli import main

    with open(f"{out_dir}/rank{rank}.json", "w") as out, contextlib.redirect_stdout(out):
        assert main(["score", run_dir, "--json", "--device", "cpu"]) == 0


@pytest.mark.slow
@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not available")
def test_genbench_score_on_two_ranks_evaluates_shards_and_agrees_with_one_process(tmp_path, capsys):
    from genbench.cli import main

    runs = tmp_path / "runs"
    assert main(["run", "--suite", "smoke", "--budget", "smoke", "--models", "ppca", "--no-progress",
                 "--db", str(tmp_path / "db.sqlite"), "--runs-dir", str(runs), "--leaderboards",
                 str(tmp_path / "lb")]) == 0
    [run_dir] = runs.glob("smoke/smoke/ppca-*")
    capsys.readouterr()
    assert main(["score", str(run_dir), "--json", "--device", "cpu"]) == 0
    alone = json.loads(capsys.readouterr().out)["metrics"]
    tmp_mp.spawn(_score_rank, args=(2, _free_port(), str(run_dir), str(tmp_path)), nprocs=2, join=True)
    assert (tmp_path / "rank1.json").read_text() == ""  # rank 1 prints nothing
    shared = json.loads((tmp_path / "rank0.json").read_text())["metrics"]
    assert shared.keys() == alone.keys()
    # exact: the halves' sums, all-reduced
    assert shared["density_nll"] == pytest.approx(alone["density_nll"], rel=1e-9)
    assert shared["active_units"] == alone["active_units"]  # not sharded: the same on every rank
    # the ELBO's one posterior sample per point is drawn per shard: the same in distribution
    assert abs(shared["elbo"] - alone["elbo"]) < 4 * alone["elbo_se"]
