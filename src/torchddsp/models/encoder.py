"""DDSP's MFCC -> GRU z encoder (``MfccTimeDistributedRnnEncoder``), at the frame rate."""

from __future__ import annotations

import torch
from torch import nn

from ..functional._checks import check_tensor
from ..functional.spectral import (
    dct_matrix,
    frame,
    frame_hop_size,
    frames_mfcc,
    frames_power,
    hann_window,
    mel_filterbank,
    power_mfcc,
    take_ready_frames,
    warp_frequencies,
)
from .decoder import gru_steps

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
    later audio and blocks stream (:meth:`forward_stream`); the MFCCs are
    librosa's (dB of mel power, orthonormal DCT) rather than TensorFlow's (log
    of mel magnitude): they differ by one scale factor, which the norm removes,
    and by the weight of coefficient 0.

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
        self.hop_size = frame_hop_size(sample_rate, frame_rate)
        self.n_fft = n_fft
        fmax = min(MFCC_FMAX_HZ, sample_rate / 2)
        # Derived from the arguments, so not saved with a model's weights.
        self.register_buffer("window", hann_window(n_fft), persistent=False)
        mel_basis = mel_filterbank(sample_rate, n_fft, N_MELS, MFCC_FMIN_HZ, fmax)
        self.register_buffer("mel_basis", mel_basis, persistent=False)
        self.register_buffer("dct_basis", dct_matrix(N_MELS, n_mfcc), persistent=False)
        self.norm = nn.LayerNorm(n_mfcc)
        self.gru = nn.GRU(n_mfcc, gru_units, batch_first=True)
        self.dense_out = nn.Linear(gru_units, z_dims)

    @torch.jit.unused
    def forward(
        self, audio: torch.Tensor, n_frames: int, warp: torch.Tensor | None = None
    ) -> torch.Tensor:
        """z for the first ``n_frames`` frames of ``audio``; ``warp`` (training) scales each
        example's frequencies first (:func:`warp_frequencies`).

        Shape: audio [batch, n_samples], warp [batch] -> [batch, n_frames, z_dims].
        """
        check_tensor(audio, "audio", 2, "[batch, n_samples]")
        if audio.shape[1] < n_frames * self.hop_size:
            raise ValueError(
                f"audio must hold n_frames * hop = {n_frames * self.hop_size} samples, "
                f"found {audio.shape[1]}"
            )
        z, _ = self.gru(self.norm(self.mfccs(audio, warp)[:, :n_frames]))
        return self.dense_out(z)

    @torch.jit.unused
    def mfccs(self, audio: torch.Tensor, warp: torch.Tensor | None = None) -> torch.Tensor:
        """MFCCs in the module's dtype even under autocast: mel power overflows float16.

        Shape: audio [batch, n_samples], warp [batch] -> [batch, n_samples // hop + 1, n_mfcc].
        """
        with torch.autocast(audio.device.type, enabled=False):
            frames = frame(audio.to(self.window.dtype), self.n_fft, self.hop_size, "center")
            power = frames_power(frames, self.window)
            if warp is not None:
                power = warp_frequencies(power, warp.to(power.dtype))
            return power_mfcc(power, self.mel_basis, self.dct_basis)

    @torch.jit.export
    def init_state(
        self,
        batch_size: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | None = None,
    ) -> dict[str, torch.Tensor]:
        """The left zero padding of frame 0 and the GRU's hidden state before it.

        Shape: -> {buffer [batch, n_fft // 2], hidden [1, batch, gru_units]}.
        """
        return {
            "buffer": torch.zeros(batch_size, self.n_fft // 2, dtype=dtype, device=device),
            "hidden": torch.zeros(1, batch_size, self.gru.hidden_size, dtype=dtype, device=device),
        }

    @torch.jit.export
    def forward_stream(
        self, audio_block: torch.Tensor, state: dict[str, torch.Tensor], final: bool = False
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """z of the frames a block of any length completes (``final``: of every frame left,
        zeros past the end), so the blocks join into :meth:`forward`'s frames.

        Shape: audio_block [batch, n_block_samples] -> z [batch, n_new_frames, z_dims].
        """
        buffer = torch.cat([state["buffer"], audio_block], dim=1)
        frames, rest = take_ready_frames(buffer, self.n_fft, self.hop_size, final)
        if frames.shape[1] == 0:  # a GRU takes no empty sequence
            z = audio_block.new_zeros(audio_block.shape[0], 0, self.dense_out.out_features)
            return z, {"buffer": rest, "hidden": state["hidden"]}
        mfccs = frames_mfcc(frames, self.window, self.mel_basis, self.dct_basis)
        gru = self.gru
        weights = [gru.weight_ih_l0, gru.weight_hh_l0, gru.bias_ih_l0, gru.bias_hh_l0]
        z, hidden = gru_steps(self.norm(mfccs), state["hidden"], weights)
        return self.dense_out(z), {"buffer": rest, "hidden": hidden}
