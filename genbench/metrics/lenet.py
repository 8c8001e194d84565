"""The domain classifiers of 28x28 gray data: a LeNet trained once per labelled data set and shipped.

Inception-v3 features say little about 28x28 gray digits, so MNIST-like data sets are scored
with a small classifier of their domain: its logits give the Inception Score and its penultimate
layer the FID/KID/precision-recall features. Retraining per machine gave another network (and
another FID) on every CPU, so the weights ship in the package (``weights/``, safetensors) with
a JSON record of their sha256, config, data hash and test accuracy, checked at every load.
``SHIPPED`` lists them, one per labelled data set (8-bit MNIST, Fashion-MNIST), all made by one
recipe (``LeNetConfig()``, one thread); a data set's ``feature_source`` picks its network.

``python -m genbench.metrics.lenet --retrain [--dataset NAME] --data-root DIR --out FILE`` is how
they were made: it retrains with the same seed, config and thread count and says whether the
result is the shipped file, bit for bit.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from genbench.core.errors import GenbenchError, log
from genbench.core.rng import seeded_rng
from genbench.core.weights import atomic_write, file_sha256, read_weights, save_weights

#: image shape the classifier reads
LENET_SHAPE = (1, 28, 28)
#: torch CPU threads of the retraining: a reduction split over other thread counts rounds otherwise
RETRAIN_THREADS = 1
#: the folder of the shipped weights and their records, inside the installed package
WEIGHTS_DIR = Path(str(resources.files(__package__ or "genbench.metrics") / "weights"))
#: the shipped networks: the labelled data set each was trained on -> its weights (its record is the
#: same path with ``.json``). A data set's ``feature_source`` (or its own name) picks one.
SHIPPED: dict[str, Path] = {source: WEIGHTS_DIR / f"lenet-{source}.safetensors"
                            for source in ("mnist8", "fashion_mnist")}
#: the network of data whose feature source has none of its own (every MNIST variant names it)
SHIPPED_SOURCE = "mnist8"
#: the shipped weights of 8-bit MNIST and their record
SHIPPED_WEIGHTS = SHIPPED[SHIPPED_SOURCE]
SHIPPED_RECORD = SHIPPED_WEIGHTS.with_suffix(".json")


@dataclass(frozen=True)
class LeNetConfig:
    epochs: int = 4
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0
    n_classes: int = 10
    hidden: int = 128
    """Width of the penultimate layer: the FID features."""


class LeNet(nn.Module):
    """conv5-pool-conv5-pool-fc-fc (LeCun et al. 1998, with ReLU and max pooling)."""

    def __init__(self, config: LeNetConfig):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 20, 5)
        self.conv2 = nn.Conv2d(20, 50, 5)
        self.fc1 = nn.Linear(50 * 4 * 4, config.hidden)
        self.fc2 = nn.Linear(config.hidden, config.n_classes)

    def features_and_logits(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x: floats in [0, 1], ``[B, 1, 28, 28]``."""
        h = F.max_pool2d(F.relu(self.conv1(x)), 2)
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)
        features = F.relu(self.fc1(h.flatten(1)))
        return features, self.fc2(features)

    def forward(self, x: Tensor) -> Tensor:
        return self.features_and_logits(x)[1]


@dataclass(frozen=True)
class TrainedLeNet:
    model: LeNet
    test_accuracy: float
    train_seconds: float
    weights_path: Path
    key: str


@dataclass(frozen=True)
class ShippedLeNet:
    weights_path: Path
    sha256: str
    record: dict

    @property
    def test_accuracy(self) -> float:
        return self.record["test_accuracy"]


def data_hash(*tensors: Tensor) -> str:
    """sha256 of the tensors' bytes (shape and dtype included)."""
    digest = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        digest.update(f"{tuple(t.shape)}{t.dtype}".encode())
        digest.update(t.numpy().tobytes())
    return digest.hexdigest()


def _labelled_splits(dataset) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(train x, train y, test x, test y) as the classifier sees them (CPU floats / longs)."""
    return (dataset.eval_tensor("train").cpu(), dataset.labels["train"].cpu().long(),
            dataset.eval_tensor("test").cpu(), dataset.labels["test"].cpu().long())


def shipped_source(dataset) -> str:
    """The labelled data set whose shipped LeNet scores ``dataset``: its ``feature_source`` (or its own
    name) where a network of that data set ships, else 8-bit MNIST's."""
    source = getattr(dataset, "feature_source", None) or dataset.name
    return source if source in SHIPPED else SHIPPED_SOURCE


def lenet_fits(dataset) -> str | None:
    """None where the classifier applies to this data set, else why not.

    Gray 28x28 images: a data set with labels of its own, or one naming a ``feature_source``
    (every MNIST variant names 8-bit MNIST, every Fashion-MNIST variant Fashion-MNIST)."""
    if tuple(dataset.shape) != LENET_SHAPE:
        return f"the LeNet reads 1x28x28 gray images, {dataset.name} has {list(dataset.shape)}"
    if getattr(dataset, "feature_source", None) not in (None, dataset.name):
        return None
    if not {"train", "test"} <= set(getattr(dataset, "labels", {})):
        return f"the LeNet is trained on labels and {dataset.name} has none for train and test"
    return None


@torch.no_grad()
def accuracy(model: LeNet, x: Tensor, y: Tensor, batch_size: int = 1000) -> float:
    model.eval()
    correct = sum(int((model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum())
                  for i in range(0, len(x), batch_size))
    return correct / len(x)


def train_lenet(x: Tensor, y: Tensor, config: LeNetConfig) -> LeNet:
    """Adam, seeded initialisation and shuffling; the global RNG state is left as it was.

    Gradients are switched on here: the first caller is often ``evaluate``, under no_grad.
    """
    with seeded_rng(config.seed, "cpu"), torch.enable_grad():
        model = LeNet(config)
        gen = torch.Generator().manual_seed(config.seed)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        steps = config.epochs * -(-len(x) // config.batch_size)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.lr * 3, total_steps=steps)
        model.train()
        for _ in range(config.epochs):
            order = torch.randperm(len(x), generator=gen)
            for i in range(0, len(x), config.batch_size):
                idx = order[i:i + config.batch_size]
                loss = F.cross_entropy(model(x[idx]), y[idx])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
    return model.eval()


def load_or_train_lenet(dataset, cache_dir: Path, config: LeNetConfig = LeNetConfig(),
                        log=log) -> TrainedLeNet:
    """The cached classifier of this config and data, training (and caching) it if absent.

    Scoring never calls this (it uses the shipped network); it is for a LeNet of other labelled data.
    """
    reason = lenet_fits(dataset)
    if reason:
        raise ValueError(reason)
    x_train, y_train, x_test, y_test = _labelled_splits(dataset)
    ident = {"config": asdict(config), "data": data_hash(x_train, y_train, x_test, y_test)}
    key = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]
    weights_path = cache_dir / f"lenet-{key}.safetensors"
    record_path = cache_dir / f"lenet-{key}.json"
    if weights_path.exists() and record_path.exists():
        record = json.loads(record_path.read_text())
        model = LeNet(config)
        model.load_state_dict(read_weights(weights_path))
        return TrainedLeNet(model.eval(), record["test_accuracy"], record["train_seconds"],
                            weights_path, key)
    log(f"training the LeNet feature classifier on {dataset.name} ({config.epochs} epochs, "
        f"cached as {weights_path})")
    started = time.perf_counter()
    model = train_lenet(x_train, y_train, config)
    seconds = time.perf_counter() - started
    test_accuracy = accuracy(model, x_test, y_test)
    save_weights(weights_path, model)
    record = {**ident, "dataset": dataset.name, "test_accuracy": test_accuracy, "train_seconds": seconds,
              "key": key}
    atomic_write(record_path, lambda tmp: tmp.write_text(json.dumps(record, indent=2, sort_keys=True)))
    log(f"LeNet test accuracy {test_accuracy:.4f} after {seconds:.0f} s")
    return TrainedLeNet(model, test_accuracy, seconds, weights_path, key)


def shipped_lenet(source: str = SHIPPED_SOURCE) -> ShippedLeNet:
    """The shipped weights of ``source``, their sha256 checked against their record: a damaged or
    altered file would silently change every FID-LeNet, so it is one error instead."""
    if source not in SHIPPED:
        raise GenbenchError(f"no LeNet ships for {source!r}; shipped: {', '.join(SHIPPED)}")
    weights = SHIPPED[source]
    record_path = weights.with_suffix(".json")
    hint = f"reinstall genbench, or rebuild the file with `{_retrain_command(source)}`"
    try:
        record = json.loads(Path(record_path).read_text())
        sha256 = file_sha256(Path(weights))
    except (OSError, ValueError) as exc:
        raise GenbenchError(f"the shipped LeNet weights are unreadable ({exc}); {hint}") from None
    if sha256 != record.get("sha256"):
        raise GenbenchError(f"{weights}: sha256 {sha256[:16]}... is not the recorded {record.get('sha256')} "
                            f"of {Path(record_path).name}: the shipped LeNet weights were altered; {hint}")
    return ShippedLeNet(Path(weights), sha256, record)


def load_shipped_lenet(source: str = SHIPPED_SOURCE) -> LeNet:
    """The shipped network of ``source``, verified, in eval mode."""
    shipped = shipped_lenet(source)
    model = LeNet(LeNetConfig(**shipped.record["config"]))
    model.load_state_dict(read_weights(shipped.weights_path))
    return model.eval()


def retrain(data_root: str | None, out: Path, threads: int = RETRAIN_THREADS, log=log,
            source: str = SHIPPED_SOURCE) -> dict:
    """Train the LeNet of ``source`` exactly as the shipped ones were made; write ``out`` and its
    record (``out`` with ``.json``); return the record, with ``matches_shipped``."""
    from genbench.data import load_dataset

    if source not in SHIPPED:
        raise GenbenchError(f"no LeNet ships for {source!r}; shipped: {', '.join(SHIPPED)}")
    torch.set_num_threads(threads)
    config = LeNetConfig()
    dataset = load_dataset(source, data_root, download=False)
    x_train, y_train, x_test, y_test = _labelled_splits(dataset)
    try:
        shipped = json.loads(SHIPPED[source].with_suffix(".json").read_text())
    except (OSError, ValueError):
        shipped = {}
    log(f"training the LeNet of {source} ({config.epochs} epochs, {threads} thread(s), "
        f"torch {torch.__version__})")
    started = time.perf_counter()
    model = train_lenet(x_train, y_train, config)
    seconds = time.perf_counter() - started
    out = Path(out)
    save_weights(out, model)
    record = {
        "file": out.name, "sha256": file_sha256(out), "config": asdict(config), "dataset": source,
        "data_sha256": data_hash(x_train, y_train, x_test, y_test),
        "n_train": len(x_train), "n_test": len(x_test),
        "test_accuracy": accuracy(model, x_test, y_test),
        "torch": torch.__version__, "threads": threads, "device": "cpu",
        "python": platform.python_version(), "machine": f"{platform.system()} {platform.machine()}",
        "train_seconds": round(seconds, 1), "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "made_by": f"{_retrain_command(source)} (train_lenet with LeNetConfig(), "
                   f"torch.set_num_threads({threads}))",
    }
    atomic_write(out.with_suffix(".json"),
                 lambda tmp: tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n"))
    record["matches_shipped"] = record["sha256"] == shipped.get("sha256")
    record["same_data_as_shipped"] = record["data_sha256"] == shipped.get("data_sha256")
    return record


def _retrain_command(source: str) -> str:
    """The command that rebuilds the shipped LeNet of ``source``."""
    dataset = "" if source == SHIPPED_SOURCE else f" --dataset {source}"
    return f"python -m genbench.metrics.lenet --retrain{dataset} --data-root DIR --out FILE"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m genbench.metrics.lenet",
                                     description="Rebuild a shipped LeNet and compare it.")
    parser.add_argument("--retrain", action="store_true", required=True,
                        help="train the LeNet of --dataset with the shipped seed and config")
    parser.add_argument("--dataset", choices=sorted(SHIPPED), default=SHIPPED_SOURCE,
                        help=f"the labelled data set (default {SHIPPED_SOURCE})")
    parser.add_argument("--data-root", help="folder holding the data set's files (default: $GENBENCH_DATA)")
    parser.add_argument("--out", type=Path, required=True, help="the safetensors file to write")
    parser.add_argument("--threads", type=int, default=RETRAIN_THREADS,
                        help=f"torch CPU threads (default {RETRAIN_THREADS}, as the shipped weights)")
    args = parser.parse_args(argv)
    try:
        record = retrain(args.data_root, args.out, args.threads, source=args.dataset)
    except GenbenchError as exc:
        print(f"genbench: {exc}", file=sys.stderr)
        return 2
    log(f"wrote {args.out} ({record['train_seconds']:.0f} s)")
    log(f"sha256 {record['sha256']}")
    log(f"test accuracy {record['test_accuracy']:.4f}")
    log(f"same data as the shipped weights: {record['same_data_as_shipped']}")
    log(f"identical to the shipped weights: {record['matches_shipped']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
