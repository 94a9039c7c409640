"""Models: DDSP's RNN decoder, MFCC z encoder and the autoencoder that joins them to the synth."""

from .autoencoder import Autoencoder, synthesis_config
from .decoder import RnnFcDecoder, fc_stack
from .encoder import MfccEncoder

__all__ = ["Autoencoder", "MfccEncoder", "RnnFcDecoder", "fc_stack", "synthesis_config"]
