"""The realtime engine of a trained model (see the package notes).

Rates. The model runs at its own sample rate (16 kHz for the bundled ones):
the host's audio is resampled to it, and the model's output back to the
host's rate, by zero-phase windowed-sinc filters whose stopband starts at the
lower Nyquist. So a 16 kHz model played at 44.1 or 48 kHz sounds like itself:
its harmonics and noise bands sit at the same frequencies in Hz, nothing
aliases, and nothing is added above 8 kHz, the highest frequency the model
was trained on.

Latency. Every stage emits what its inputs determine as soon as they have
arrived, aligned with the input's timeline; the output is that aligned signal
delayed by a fixed number of host samples, ``latency_samples``, the sum of
the stages' look-ahead rounded up: the resampler to the model rate, the
features' half window (the A-weighted loudness's 512-sample window at 16 kHz),
one frame of the synthesizer (a frame's samples blend it with the next), and
the resampler back. It does not depend on the block size; the host adds its
own buffer on top.
"""

import copy
import math

import torch
from torch import nn

from ..adjust import Adjuster
from ..features import FeatureStream
from ..functional.core import hz_to_midi, midi_to_hz
from ..functional.resample import (
    LIVE_BETA,
    LIVE_HALF_WIDTH,
    LIVE_ROLLOFF,
    init_resampler_state,
    resample_stream,
    resampler_inputs_needed,
    resampler_lookahead,
    resampling_filter,
)
from .repair import CausalPitchRepair

HOST_RATES = (16000, 22050, 24000, 32000, 44100, 48000, 88200, 96000)
LIVE_F0_MIN_HZ = 65.0  # C2: YIN's window is two periods of it, which sets the latency
MIX_RANGE = (0.0, 2.0)
MIXES = {"harmonic_mix": "harmonic", "noise_mix": "noise", "reverb_mix": "reverb"}
States = dict[str, dict[str, torch.Tensor]]


class LiveStreams(nn.Module):
    """What the live models share: a trained model's copy, the features stream with
    causal pitch repair, the resamplers to and from the host's rate, and the latency
    (see the module notes). Subclasses keep their streams' states and ``reset`` them.
    """

    def __init__(
        self,
        trained,
        host_rate: int,
        f0_min_hz: float,
        host_rates: tuple[int, ...],
        model_lookahead: int = 0,
    ):
        super().__init__()
        if host_rate not in host_rates:
            raise ValueError(f"host_rate must be one of {host_rates}, found {host_rate}")
        self.model = copy.deepcopy(trained.model).eval()
        self.model_rate = trained.sample_rate
        self.frame_rate = trained.frame_rate
        self.hop_size = trained.sample_rate // trained.frame_rate
        self.features_stream = FeatureStream(trained.sample_rate, trained.frame_rate, f0_min_hz)
        self.repair = CausalPitchRepair()
        live = {"rolloff": LIVE_ROLLOFF, "half_width": LIVE_HALF_WIDTH, "beta": LIVE_BETA}
        self.to_model: dict[int, dict[str, torch.Tensor]] = {
            rate: resampling_filter(rate, self.model_rate, **live) for rate in host_rates
        }
        self.to_host: dict[int, dict[str, torch.Tensor]] = {
            rate: resampling_filter(self.model_rate, rate, **live) for rate in host_rates
        }
        lag = self.model.stream_latency
        lookahead = max(self.features_stream.latency_samples, self.hop_size, model_lookahead)
        self.latencies: dict[int, int] = {
            rate: self._latency(rate, lookahead + lag, True, True) for rate in host_rates
        }
        self.render_latencies: dict[int, int] = {
            rate: self._latency(rate, self.hop_size + lag, False, True) for rate in host_rates
        }
        self.features_latencies: dict[int, int] = {
            rate: self._latency(rate, lookahead, True, False) for rate in host_rates
        }
        clashes = {
            "to_model",
            "features",
            "repair",
            "adjuster",
            "to_host",
            "fifo",
            "frames",
            "controls",
        }
        clashes &= set(self.model.synth.processors)
        if clashes:
            raise ValueError(f"synthesis node names clash with the live streams: {sorted(clashes)}")
        self.host_rate = host_rate

    def _latency(self, host_rate: int, model_lookahead: int, into: bool, back: bool) -> int:
        """Host samples of the fixed delay: the stages' look-ahead, rounded up (see notes).

        ``model_lookahead`` is in model samples; ``into`` and ``back`` say whether
        the stream passes the resamplers to and from the model rate. One more
        sample of each rate covers a frame or output waiting for its last input.
        """
        seconds = (model_lookahead + 1) / self.model_rate
        if into:
            seconds += (resampler_lookahead(self.to_model[host_rate]) + 1) / host_rate
        if back:
            seconds += resampler_lookahead(self.to_host[host_rate]) / self.model_rate
        return math.ceil(seconds * host_rate)

    # ---- settings --------------------------------------------------------------------------
    @torch.jit.export
    def latency_samples(self) -> int:
        """Host samples from an input sample to its output in :meth:`forward`."""
        return self.latencies[self.host_rate]

    @torch.jit.export
    def set_host_rate(self, host_rate: int) -> bool:
        """Run at another host rate (one of those built in); the streams restart."""
        if host_rate not in self.to_model:
            return False
        self.host_rate = host_rate
        self.reset()
        return True

    # ---- the stages ------------------------------------------------------------------------
    def _tracking_start(self, batch_size: int) -> dict[str, dict[str, torch.Tensor]]:
        to_model = init_resampler_state(self.to_model[self.host_rate], batch_size)
        to_model["pending"] = torch.zeros(batch_size, 0)
        return {
            "to_model": to_model,
            "features": self.features_stream.init_state(batch_size),
            "repair": self.repair.init_state(batch_size),
        }

    def _track(
        self, audio: torch.Tensor, state: dict[str, dict[str, torch.Tensor]]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Host audio -> new frames of repaired f0, confidence and loudness, and the new
        audio at the model's rate (state updated).

        Host samples wait, unprocessed, until they complete a frame: most small
        blocks complete none, and cost next to nothing.
        """
        to_model = state["to_model"]
        pending = torch.cat([to_model["pending"], audio], 1)
        filter = self.to_model[self.host_rate]
        needed = resampler_inputs_needed(
            filter, to_model, self.features_stream.samples_needed(state["features"])
        )
        if pending.shape[1] < max(needed, 1):
            to_model["pending"] = pending
            empty = pending.new_zeros(pending.shape[0], 0)
            return empty, empty, empty, empty
        at_model_rate, to_model = resample_stream(pending, to_model, filter)
        to_model["pending"] = pending[:, :0]
        state["to_model"] = to_model
        f0_hz, confidence, loudness_db, state["features"] = self.features_stream.forward_stream(
            at_model_rate, state["features"]
        )
        f0_hz, state["repair"] = self.repair.forward_stream(f0_hz, confidence, state["repair"])
        return f0_hz, confidence, loudness_db, at_model_rate

    def _output_start(self, batch_size: int, latency: int) -> States:
        """The resampler back to the host's rate, and the FIFO primed with the latency."""
        return {
            "to_host": init_resampler_state(self.to_host[self.host_rate], batch_size),
            "fifo": {"audio": torch.zeros(batch_size, latency)},
        }

    def _queue_output(self, audio: torch.Tensor, state: dict[str, dict[str, torch.Tensor]]):
        """New model-rate audio -> the host audio it completes, queued in the state's FIFO."""
        at_host_rate, state["to_host"] = resample_stream(
            audio, state["to_host"], self.to_host[self.host_rate]
        )
        state["fifo"] = {"audio": torch.cat([state["fifo"]["audio"], at_host_rate], dim=1)}

    def _sample_frames(
        self, controls: torch.Tensor, state: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The controls at the frame times that fall within the block.

        Frame ``i`` sits at host sample ``i * host_rate // frame_rate``.
        Shape: controls [batch, channels, n_samples] -> [batch, channels, n_frames].
        """
        start = int(state["received"].item())
        stop = start + controls.shape[2]
        first = -(-start * self.frame_rate // self.host_rate)
        last = -(-stop * self.frame_rate // self.host_rate)
        index = torch.arange(first, last) * self.host_rate // self.frame_rate - start
        return controls.index_select(2, index), {"received": state["received"] + controls.shape[2]}


class LiveModel(LiveStreams):
    """A trained model (:class:`~torchddsp.models.TrainedModel`) as a live instrument.

    - :meth:`forward`: timbre transfer of host audio, with the adjustments of
      offline transfer as live settings (``adjuster``'s attributes) and the
      mixes ``harmonic_mix``, ``noise_mix``, ``reverb_mix`` (0..2, 1 as trained);
    - :meth:`render`: f0 in Hz and loudness in dB as audio-rate controls
      (MIDI, sliders) -> audio, with the manual shifts applied;
    - :meth:`features`: host audio -> f0 (repaired), confidence and loudness,
      held from frame to frame.

    Each method keeps its own stream; a new batch size or host rate restarts
    them. Non-finite input samples are taken as silence, so they leave no
    trace in the state. Shape: [batch, n_samples] at the host rate.
    """

    transfer_state: dict[str, dict[str, torch.Tensor]]
    render_state: dict[str, dict[str, torch.Tensor]]
    features_state: dict[str, dict[str, torch.Tensor]]

    def __init__(
        self,
        trained,
        host_rate: int = 48000,
        f0_min_hz: float = LIVE_F0_MIN_HZ,
        host_rates: tuple[int, ...] = HOST_RATES,
    ):
        super().__init__(trained, host_rate, f0_min_hz, host_rates)
        self.adjuster = Adjuster(trained.frame_rate, trained.statistics)
        self.nodes = [node for node in MIXES.values() if node in self.model.synth.processors]
        self.harmonic_mix = 1.0
        self.noise_mix = 1.0
        self.reverb_mix = 1.0
        self.transfer_state = {}
        self.render_state = {}
        self.features_state = {}

    @torch.jit.export
    def reset(self):
        """Forget every stream: the next block starts anew."""
        empty: dict[str, dict[str, torch.Tensor]] = {}
        self.transfer_state = empty
        self.render_state = empty.copy()
        self.features_state = empty.copy()

    # ---- timbre transfer -------------------------------------------------------------------
    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """Host audio in the model's timbre, ``latency_samples()`` later.

        Shape: audio [batch, n_samples] -> [batch, n_samples].
        """
        audio = _finite(audio)
        state = self.transfer_state
        if not state or state["fifo"]["audio"].shape[0] != audio.shape[0]:
            state = self._transfer_start(audio.shape[0])
        f0_hz, confidence, loudness_db, _ = self._track(audio, state)
        if f0_hz.shape[1] > 0:
            f0_hz, loudness_db, state["adjuster"] = self.adjuster.forward_stream(
                f0_hz, confidence, loudness_db, state["adjuster"]
            )
            self._synthesize(f0_hz, loudness_db, state)
        out = _pop(state, audio.shape[1])
        self.transfer_state = state
        return out

    def _transfer_start(self, batch_size: int) -> dict[str, dict[str, torch.Tensor]]:
        state = self._synthesis_start(batch_size, self.latencies[self.host_rate])
        state.update(self._tracking_start(batch_size))
        state["adjuster"] = self.adjuster.init_state(batch_size)
        return state

    # ---- synthesis, shared by transfer and render -------------------------------------------
    def _synthesis_start(self, batch_size: int, latency: int) -> States:
        state = self.model.init_state(batch_size)
        state.update(self._output_start(batch_size, latency))
        return state

    def _synthesize(
        self,
        f0_hz: torch.Tensor,
        loudness_db: torch.Tensor,
        state: dict[str, dict[str, torch.Tensor]],
    ):
        """New frames -> the host audio they complete, queued in the state's FIFO."""
        synth_state: dict[str, dict[str, torch.Tensor]] = {}
        for name, value in state.items():
            if name in self.model.synth.processors or name == "decoder":
                synth_state[name] = value
        signals, synth_state = self.model.forward_stream(
            f0_hz[..., None].float(),
            loudness_db[..., None].float(),
            synth_state,
            False,
            self._gains(),
        )
        for name, value in synth_state.items():
            state[name] = value
        self._queue_output(signals["audio"], state)

    def _gains(self) -> dict[str, torch.Tensor]:
        mixes = {"harmonic": self.harmonic_mix, "noise": self.noise_mix, "reverb": self.reverb_mix}
        gains: dict[str, torch.Tensor] = {}
        for node in self.nodes:
            gains[node] = torch.tensor(mixes[node])
        return gains

    # ---- rendering from controls -------------------------------------------------------------
    @torch.jit.export
    def render(self, f0_hz: torch.Tensor, loudness_db: torch.Tensor) -> torch.Tensor:
        """Audio from f0 (Hz) and loudness (dB) controls at the host rate.

        Each frame takes the controls' value at its time; the manual shifts
        apply (``adjuster``'s ``octave_shift``, ``pitch_shift``, ``loudness_shift``).
        Shape: f0_hz, loudness_db [batch, n_samples] -> [batch, n_samples].
        """
        controls = _finite(torch.stack([f0_hz, loudness_db], 1))
        state = self.render_state
        if not state or state["fifo"]["audio"].shape[0] != f0_hz.shape[0]:
            state = self._synthesis_start(f0_hz.shape[0], self.render_latencies[self.host_rate])
            state["frames"] = {"received": torch.zeros(1, dtype=torch.int64)}
        frames, state["frames"] = self._sample_frames(controls, state["frames"])
        midi = hz_to_midi(frames[:, 0].clamp_min(1.0).double())
        shift = self.adjuster.pitch_shift + 12.0 * self.adjuster.octave_shift
        f0 = midi_to_hz((midi + shift).clamp_max(self.adjuster.max_midi))
        loudness = frames[:, 1] + self.adjuster.loudness_shift
        if f0.shape[1] > 0:
            self._synthesize(f0, loudness, state)
        out = _pop(state, f0_hz.shape[1])
        self.render_state = state
        return out

    # ---- features ---------------------------------------------------------------------------
    @torch.jit.export
    def features(self, audio: torch.Tensor) -> torch.Tensor:
        """Repaired f0 (Hz), confidence and loudness (dB) of host audio, each frame held
        until the next, ``features_latency()`` samples after its time.

        Shape: audio [batch, n_samples] -> [batch, 3, n_samples].
        """
        audio = _finite(audio)
        state = self.features_state
        if not state or state["held"]["frames"].shape[0] != audio.shape[0]:
            state = self._tracking_start(audio.shape[0])
            state["held"] = {
                "frames": torch.zeros(audio.shape[0], 3, 0),
                "first": torch.zeros(1, dtype=torch.int64),
                "emitted": torch.zeros(1, dtype=torch.int64),
            }
        f0_hz, confidence, loudness_db, _ = self._track(audio, state)
        new = torch.stack([f0_hz, confidence, loudness_db], 1).float()
        out, state["held"] = self._hold(new, state["held"], audio.shape[1])
        self.features_state = state
        return out

    @torch.jit.export
    def features_latency(self) -> int:
        """Host samples from a frame's time to the first output sample showing it."""
        return self.features_latencies[self.host_rate]

    def _hold(
        self, new: torch.Tensor, state: dict[str, torch.Tensor], n_samples: int
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Host sample ``s`` shows frame ``(s - latency) * frame_rate // host_rate`` (zeros
        before the first). Shape: new [batch, 3, n_new_frames] -> [batch, 3, n_samples]."""
        frames = torch.cat([state["frames"], new], 2)
        first, start = int(state["first"].item()), int(state["emitted"].item())
        shown = torch.arange(start, start + n_samples) - self.features_latency()
        index = torch.div(shown * self.frame_rate, self.host_rate, rounding_mode="floor")
        before = frames.new_zeros(frames.shape[0], frames.shape[1], 1)  # before frame 0
        padded = torch.cat([before, frames], 2)
        out = padded.index_select(2, (index - first + 1).clamp(0, padded.shape[2] - 1))
        # Later samples show the last frame shown here or later ones.
        spent = 0 if n_samples == 0 else int(index[-1].item()) - first
        spent = max(0, min(spent, frames.shape[2]))
        return out, {
            "frames": frames[:, :, spent:],
            "first": state["first"] + spent,
            "emitted": state["emitted"] + n_samples,
        }


def _pop(state: dict[str, dict[str, torch.Tensor]], n_samples: int) -> torch.Tensor:
    """The next ``n_samples`` of the output FIFO (its latency covers every stage, so it never
    runs dry; zeros if it ever did)."""
    fifo = state["fifo"]["audio"]
    if fifo.shape[1] < n_samples:
        fifo = torch.cat([fifo, fifo.new_zeros(fifo.shape[0], n_samples - fifo.shape[1])], 1)
    state["fifo"] = {"audio": fifo[:, n_samples:]}
    return fifo[:, :n_samples]


def _finite(x: torch.Tensor) -> torch.Tensor:
    """NaN and infinite samples as silence: one would poison every filter after it."""
    return torch.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
