"""DDSP's MFCC -> GRU z encoder (``MfccTimeDistributedRnnEncoder``), at the frame rate."""

from __future__ import annotations

import torch
from torch import nn

from ..functional._checks import check_tensor
from ..functional.spectral import frame_hop_size, hann_window, mfcc

MFCC_FMIN_HZ = 20.0  # DDSP's lo_hz
MFCC_FMAX_HZ = 8000.0  # DDSP's hi_hz (capped at Nyquist)
N_MELS = 128


class MfccEncoder(nn.Module):
    """Timbre latent ``z`` per frame: MFCC -> LayerNorm -> GRU -> Linear.

    MFCCs (``n_fft`` window, hop ``sample_rate / frame_rate``, ``center``
    padding, so frame i is centred on sample ``i * hop`` like the f0 and
    loudness features) are cropped to ``n_frames``. Differences from DDSP:
    LayerNorm over each frame's coefficients replaces DDSP's instance norm
    (statistics over the whole example), so ``z`` at a frame never depends on
    later audio and blocks can stream; the MFCCs are librosa's (dB of mel power,
    orthonormal DCT) rather than TensorFlow's (log of mel magnitude): they differ
    by one scale factor, which the norm removes, and by the weight of coefficient 0.

    Shape: audio [batch, n_samples] -> z [batch, n_frames, z_dims].
    """

    def __init__(
        self,
        sample_rate: int,
        frame_rate: int,
        z_dims: int,
        n_mfcc: int = 30,
        gru_units: int = 512,
        n_fft: int = 1024,
    ):
        super().__init__()
        self.sample_rate = sample_rate
        self.hop_size = frame_hop_size(sample_rate, frame_rate)
        self.n_mfcc = n_mfcc
        self.register_buffer("window", hann_window(n_fft), persistent=False)
        self.norm = nn.LayerNorm(n_mfcc)
        self.gru = nn.GRU(n_mfcc, gru_units, batch_first=True)
        self.dense_out = nn.Linear(gru_units, z_dims)

    def forward(self, audio: torch.Tensor, n_frames: int) -> torch.Tensor:
        """z for the first ``n_frames`` frames of ``audio``.

        Shape: audio [batch, n_samples] -> [batch, n_frames, z_dims].
        """
        check_tensor(audio, "audio", 2, "[batch, n_samples]")
        if audio.shape[1] < n_frames * self.hop_size:
            raise ValueError(
                f"audio must hold n_frames * hop = {n_frames * self.hop_size} samples, "
                f"found {audio.shape[1]}"
            )
        z, _ = self.gru(self.norm(self.mfccs(audio)[:, :n_frames]))
        return self.dense_out(z)

    def mfccs(self, audio: torch.Tensor) -> torch.Tensor:
        """MFCCs in the module's dtype even under autocast: mel power overflows float16.

        Shape: audio [batch, n_samples] -> [batch, n_samples // hop + 1, n_mfcc].
        """
        with torch.autocast(audio.device.type, enabled=False):
            return mfcc(
                audio.to(self.window.dtype),
                self.sample_rate,
                n_mfcc=self.n_mfcc,
                n_fft=self.window.shape[0],
                hop_size=self.hop_size,
                n_mels=N_MELS,
                fmin=MFCC_FMIN_HZ,
                fmax=min(MFCC_FMAX_HZ, self.sample_rate / 2),
                window=self.window,
            )
