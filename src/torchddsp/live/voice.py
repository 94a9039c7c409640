"""A voice model live: host audio and three control signals in, the converted voice out.

The controls are audio-rate signals (so a patch can modulate them): pitch
shift in semitones, gender (0 male .. 1 female) and age (years / 100). Each
frame takes their values at its time, as :meth:`LiveModel.render` does, and
waits for its features (f0, voicing, loudness), which come later: the
features need audio after the frame. Pitch shift multiplies the tracked f0;
gender and age are clamped to the range the model was trained on. The
content code streams from the same model-rate audio as the features.
"""

import torch

from ..voice.convert import CONTROL_RANGES, shifted_f0
from .engine import HOST_RATES, LIVE_F0_MIN_HZ, LiveStreams, _finite, _pop


class LiveVoice(LiveStreams):
    """A trained :class:`~torchddsp.models.VoiceAutoencoder` as a live voice converter.

    Non-finite samples are taken as silence; a new batch size or host rate
    restarts the stream. Shape: audio, pitch_shift, gender, age [batch,
    n_samples] at the host rate -> [batch, n_samples], ``latency_samples()`` late.
    """

    voice_state: dict[str, dict[str, torch.Tensor]]

    def __init__(
        self,
        trained,
        host_rate: int = 48000,
        f0_min_hz: float = LIVE_F0_MIN_HZ,
        host_rates: tuple[int, ...] = HOST_RATES,
    ):
        lookahead = trained.model.encoder.n_fft - trained.model.encoder.n_fft // 2
        super().__init__(trained, host_rate, f0_min_hz, host_rates, lookahead)
        self.low = torch.tensor([low for low, _ in CONTROL_RANGES.values()])[:, None]
        self.high = torch.tensor([high for _, high in CONTROL_RANGES.values()])[:, None]
        self.voice_state = {}

    @torch.jit.export
    def reset(self):
        """Forget the stream: the next block starts anew."""
        empty: dict[str, dict[str, torch.Tensor]] = {}
        self.voice_state = empty

    def forward(
        self,
        audio: torch.Tensor,
        pitch_shift: torch.Tensor,
        gender: torch.Tensor,
        age: torch.Tensor,
    ) -> torch.Tensor:
        """The voice in ``audio`` with the controls' pitch shift, gender and age.

        Shape: each [batch, n_samples] -> [batch, n_samples].
        """
        audio = _finite(audio)
        controls = _finite(torch.stack([pitch_shift, gender, age], 1))
        controls = torch.minimum(torch.maximum(controls, self.low), self.high)
        state = self.voice_state
        if not state or state["fifo"]["audio"].shape[0] != audio.shape[0]:
            state = self._start(audio.shape[0])
        control_frames, state["frames"] = self._sample_frames(controls, state["frames"])
        f0_hz, confidence, loudness_db, at_model_rate = self._track(audio, state)
        features = torch.stack([f0_hz, loudness_db, confidence], -1).float()
        self._convert(at_model_rate, features, control_frames.transpose(1, 2), state)
        out = _pop(state, audio.shape[1])
        self.voice_state = state
        return out

    def _start(self, batch_size: int) -> dict[str, dict[str, torch.Tensor]]:
        state = self.model.init_state(batch_size)
        state.update(self._output_start(batch_size, self.latencies[self.host_rate]))
        state.update(self._tracking_start(batch_size))
        state["frames"] = {"received": torch.zeros(1, dtype=torch.int64)}
        state["controls"] = {"pending": torch.zeros(batch_size, 0, 3)}
        return state

    def _convert(
        self,
        at_model_rate: torch.Tensor,
        features: torch.Tensor,
        controls: torch.Tensor,
        state: dict[str, dict[str, torch.Tensor]],
    ):
        """New audio, features and control frames -> the host audio they complete (queued).

        A frame's controls arrive before its features; they wait in the state.
        Shape: at_model_rate [batch, n], features [batch, n_new, 3] (f0, loudness,
        voicing), controls [batch, n_controls, 3] (pitch shift, gender, age).
        """
        controls = torch.cat([state["controls"]["pending"], controls], 1)
        n = features.shape[1]
        state["controls"] = {"pending": controls[:, n:]}
        controls = controls[:, :n]
        frames = torch.cat(
            [
                shifted_f0(features[..., :1], controls[..., :1]),
                features[..., 1:],
                controls[..., 1:],
            ],
            -1,
        )
        model_state: dict[str, dict[str, torch.Tensor]] = {}
        for name, value in state.items():
            if name in self.model.synth.processors or name in ("decoder", "encoder", "queue"):
                model_state[name] = value
        signals, model_state = self.model.forward_stream(at_model_rate, frames, model_state)
        for name, value in model_state.items():
            state[name] = value
        self._queue_output(signals["audio"], state)
