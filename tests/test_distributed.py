"""Data-parallel training and sharded evaluation across two CPU processes (gloo)."""

from __future__ import annotations

import socket
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
        torch.save({"params": model.state_dict(), "nll": nll(ppca, data)}, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


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
