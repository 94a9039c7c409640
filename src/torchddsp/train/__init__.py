"""Training: the loop, checkpoints, TensorBoard logs and multi-process runs."""

from .checkpoint import load_checkpoint
from .trainer import TrainResult, train

__all__ = ["TrainResult", "load_checkpoint", "train"]
