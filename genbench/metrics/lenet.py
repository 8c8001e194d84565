"""The domain classifier of gray digit data: a LeNet trained by genbench, cached by content.

Inception-v3 features say little about 28x28 gray digits, so MNIST-like data sets are scored
with a small classifier trained on their own training split: its logits give the Inception
Score and its penultimate layer the FID/KID/precision-recall features. Training is seeded,
takes a few epochs on a CPU, and its test accuracy is recorded beside the weights. The
weights are safetensors and the record is JSON (never pickle), in a file named by a hash of
the config and of the data, so another config or other data never reuse a classifier.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from genbench.core.weights import atomic_write, read_weights, save_weights

#: image shape the classifier reads
LENET_SHAPE = (1, 28, 28)


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


def lenet_fits(dataset) -> str | None:
    """None where the classifier applies to this data set, else why not.

    A data set without labels is scored by the LeNet of its ``feature_source`` (static
    binarized MNIST by the one of 8-bit MNIST)."""
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
    with torch.random.fork_rng(devices=[]), torch.enable_grad():
        torch.manual_seed(config.seed)
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
                        log=print) -> TrainedLeNet:
    """The cached classifier of this config and data, training (and caching) it if absent."""
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
