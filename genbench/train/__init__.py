"""Training: the loop, checkpoints, schedules and device selection."""

from genbench.train.device import select_device
from genbench.train.loop import TrainConfig, TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "select_device", "train"]
