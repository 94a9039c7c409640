"""Exports of a trained model for live use: TorchScript for nn~ (Pure Data, Max) and Neutone."""

from .nn import NNModel, export_nn

__all__ = ["NNModel", "export_nn"]
