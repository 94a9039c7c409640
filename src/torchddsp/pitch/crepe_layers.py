"""CREPE's architecture (Kim, Salamon, Li & Bello, ICASSP 2018) as data.

The network reads 1024-sample frames of 16 kHz audio and gives 360 sigmoid
activations (:mod:`torchddsp.pitch.crepe_decode` maps bins to Hz). Six blocks
of conv (kernel 512 stride 4, then kernel 64; Keras 'same' padding) -> ReLU ->
BatchNorm -> max-pool 2 -> dropout 0.25, then a dense layer over the
time-major flattened features. Capacities: ``full`` (filters 1024, 128, 128,
128, 256, 512) and ``tiny`` (a multiplier of 4 instead of 32).
"""

SAMPLE_RATE = 16000
FRAME_SIZE = 1024
N_BINS = 360
CAPACITIES = {"full": 32, "tiny": 4}

FILTER_FACTORS = (32, 4, 4, 4, 8, 16)
KERNEL_SIZES = (512, 64, 64, 64, 64, 64)
STRIDES = (4, 1, 1, 1, 1, 1)
PADDINGS = ((254, 254),) + ((31, 32),) * 5  # Keras 'same' for a 1024-sample input
BATCHNORM_EPS = 0.0010000000474974513  # Keras' 1e-3 as stored in float32
DROPOUT = 0.25
