"""Models: DDSP's RNN decoder, MFCC z encoder, the autoencoder that joins them to the synth,
the voice autoencoder, and trained models by name or path."""

from .autoencoder import Autoencoder, synthesis_config
from .decoder import RnnFcDecoder, fc_stack
from .encoder import MfccEncoder
from .saved import export_model, load_checkpoint
from .trained import (
    DatasetStatistics,
    TrainedModel,
    available_models,
    example_input,
    example_voice,
    is_voice_model,
    load_model,
    user_models_dir,
)
from .voice import VoiceAutoencoder

__all__ = [
    "Autoencoder",
    "DatasetStatistics",
    "MfccEncoder",
    "RnnFcDecoder",
    "TrainedModel",
    "VoiceAutoencoder",
    "available_models",
    "example_input",
    "example_voice",
    "export_model",
    "fc_stack",
    "is_voice_model",
    "load_checkpoint",
    "load_model",
    "synthesis_config",
    "user_models_dir",
]
