"""Training: the loop, checkpoints, TensorBoard logs and multi-process runs."""

from .trainer import TrainResult, train

__all__ = ["TrainResult", "train"]
