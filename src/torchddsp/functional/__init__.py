"""Pure tensor functions of DDSP: no modules, no configuration, no I/O.

Audio is ``[batch, n_samples]``; frame-rate controls are
``[batch, n_frames, channels]``; ``sample_rate`` is always an argument.
"""

from .core import (
    DB_RANGE,
    F0_RANGE,
    amplitude_to_db,
    db_to_amplitude,
    db_to_power,
    exp_sigmoid,
    harmonic_frequencies,
    hz_to_mel,
    hz_to_midi,
    interpolation_weights,
    mel_to_hz,
    midi_to_hz,
    normalize_harmonics,
    power_to_db,
    remove_above_nyquist,
    resample_frames,
    safe_divide,
    safe_log,
    scale_db,
    scale_f0_hz,
    unscale_db,
    unscale_f0_hz,
)
from .filters import (
    fft_convolve,
    frequency_filter,
    frequency_impulse_response,
    sinc_filter,
    sinc_impulse_response,
    variable_length_delay,
)
from .oscillators import accumulate_phase, harmonic_synthesis, oscillator_bank
from .resample import init_resampler_state, resample, resample_stream, resampling_filter
from .sources import (
    frequencies_sigmoid,
    glottal_pulse_synthesis,
    sinusoidal_synthesis,
    wavetable_synthesis,
)
from .spectral import (
    a_weighting_db,
    compute_loudness,
    compute_power,
    compute_rms_energy,
    fft_frequencies,
    log_mel_spectrogram,
    magnitude,
    mel_filterbank,
    mel_spectrogram,
    mfcc,
    stft,
)

__all__ = [name for name in dir() if not name.startswith("_")]
