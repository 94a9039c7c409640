"""DDSP's ``RnnFcDecoder``: (loudness, f0[, z]) -> synthesizer controls at frame rate."""

from __future__ import annotations

import torch
from torch import nn

from ..functional._checks import check_same_leading, check_single_channel, check_tensor
from ..functional.core import scale_db, scale_f0_hz

LEAKY_SLOPE = 0.2  # tf.nn.leaky_relu's default, which DDSP's fc layers use


def fc_stack(in_features: int, units: int, n_layers: int) -> nn.Sequential:
    """DDSP's ``FcStack``: ``n_layers`` x (Linear -> LayerNorm -> LeakyReLU).

    With ``n_layers=0`` it is the identity (DDSP's tiny model).
    Shape: [..., in_features] -> [..., units] ([..., in_features] when n_layers=0).
    """
    layers = []
    for index in range(n_layers):
        layers += [
            nn.Linear(in_features if index == 0 else units, units),
            nn.LayerNorm(units),
            nn.LeakyReLU(LEAKY_SLOPE, inplace=True),  # LayerNorm backward never reads its output
        ]
    return nn.Sequential(*layers)


def gru_steps(
    x: torch.Tensor, hidden: torch.Tensor, weights: list[torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """A one-layer GRU run cell by cell: each step computes alike however a stream is cut
    into blocks (a whole-sequence call batches the input products by length, which rounds
    differently), and a few frames cost less than the GRU's own per-call work.
    ``weights``: the GRU's ``[weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0]``
    (TorchScript takes no module as an argument).
    TorchScript-compatible.

    Shape: x [batch, n_steps, in_features], hidden [1, batch, units] -> ([batch, n_steps,
    units], [1, batch, units]).
    """
    state = hidden[0]
    steps: list[torch.Tensor] = []
    for index in range(x.shape[1]):
        state = torch.gru_cell(x[:, index], state, weights[0], weights[1], weights[2], weights[3])
        steps.append(state)
    return torch.stack(steps, 1), state[None]


class RnnFcDecoder(nn.Module):
    """Decoder of DDSP's solo-instrument model.

    Each input (``ld_scaled = scale_db(loudness_db)``, ``f0_scaled =
    scale_f0_hz(f0_hz)`` and optionally ``z``) goes through its own
    :func:`fc_stack`; their concatenation through a GRU; the GRU output,
    concatenated again with the input stacks' outputs, through a final stack and
    one linear layer split into the raw (unscaled) synthesizer controls.
    ``mlp_layers=0`` drops the stacks (DDSP's tiny model). ``outputs`` names
    the controls and their sizes (default: the harmonic-plus-noise model's);
    ``hears_f0=False`` leaves f0 out of the inputs (a vocal tract that does not
    follow the pitch; f0 is still checked and still drives the synthesizers).
    Offline calls start from a zero hidden state; streaming calls pass the
    returned ``hidden`` back in, so consecutive blocks equal one long call.

    Shape: f0_hz [batch, n_frames, 1], loudness_db [batch, n_frames, 1], z
    [batch, n_frames, z_dims], hidden [1, batch, gru_units] ->
    ({amplitudes [batch, n_frames, 1], harmonic_distribution
    [batch, n_frames, n_harmonics], noise_magnitudes [batch, n_frames,
    n_noise_bands]}, hidden [1, batch, gru_units]).
    """

    def __init__(
        self,
        n_harmonics: int = 60,
        n_noise_bands: int = 65,
        mlp_units: int = 512,
        mlp_layers: int = 3,
        gru_units: int = 512,
        z_dims: int = 0,
        outputs: dict[str, int] | None = None,
        hears_f0: bool = True,
    ):
        super().__init__()
        self.z_dims = z_dims
        self.hears_f0 = hears_f0
        input_sizes = [1] + ([1] if hears_f0 else []) + ([z_dims] if z_dims > 0 else [])
        self.input_stacks = nn.ModuleList(
            fc_stack(size, mlp_units, mlp_layers) for size in input_sizes
        )
        stacked_units = sum(mlp_units if mlp_layers else size for size in input_sizes)
        self.gru = nn.GRU(stacked_units, gru_units, batch_first=True)
        self.output_stack = fc_stack(stacked_units + gru_units, mlp_units, mlp_layers)
        out_features = mlp_units if mlp_layers else stacked_units + gru_units
        self.output_sizes = outputs or {
            "amplitudes": 1,
            "harmonic_distribution": n_harmonics,
            "noise_magnitudes": n_noise_bands,
        }
        self.dense_out = nn.Linear(out_features, sum(self.output_sizes.values()))

    def forward(
        self,
        f0_hz: torch.Tensor,
        loudness_db: torch.Tensor,
        z: torch.Tensor | None = None,
        hidden: torch.Tensor | None = None,
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Raw controls for the synthesizers, and the GRU's last hidden state.

        Shape: see the class.
        """
        stacked = self._input_stacks(self._scaled_inputs(f0_hz, loudness_db, z))
        rnn_out, hidden = self.gru(torch.cat(stacked, dim=-1), hidden)
        return self._controls(stacked, rnn_out), hidden

    def _input_stacks(self, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        stacked: list[torch.Tensor] = []
        for index, stack in enumerate(self.input_stacks):
            stacked.append(stack(inputs[index]))
        return stacked

    def _controls(
        self, stacked: list[torch.Tensor], rnn_out: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        x = self.output_stack(torch.cat(stacked + [rnn_out], dim=-1))
        parts = self.dense_out(x).split(list(self.output_sizes.values()), dim=-1)
        controls: dict[str, torch.Tensor] = {}
        for index, name in enumerate(self.output_sizes.keys()):
            controls[name] = parts[index]
        return controls

    @torch.jit.export
    def init_state(
        self,
        batch_size: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | None = None,
    ) -> dict[str, torch.Tensor]:
        """The GRU's hidden state before the first frame.

        Shape: -> {hidden [1, batch, gru_units]}.
        """
        hidden = torch.zeros(1, batch_size, self.gru.hidden_size, dtype=dtype, device=device)
        return {"hidden": hidden}

    @torch.jit.export
    def forward_stream(
        self,
        f0_hz: torch.Tensor,
        loudness_db: torch.Tensor,
        state: dict[str, torch.Tensor],
        z: torch.Tensor | None = None,
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Raw controls of new frames, the hidden state carried.

        Shape: f0_hz, loudness_db [batch, n_new_frames, 1], z [batch,
        n_new_frames, z_dims] -> {control [batch, n_new_frames, channels]}.
        """
        if f0_hz.shape[1] == 0:  # a GRU takes no empty sequence
            empty = f0_hz.new_zeros(f0_hz.shape[0], 0, 1)
            controls: dict[str, torch.Tensor] = {}
            for name, size in self.output_sizes.items():
                controls[name] = empty.expand(-1, -1, size)
            return controls, state
        stacked = self._input_stacks(self._scaled_inputs(f0_hz, loudness_db, z))
        x = torch.cat(stacked, dim=-1)
        gru = self.gru
        weights = [gru.weight_ih_l0, gru.weight_hh_l0, gru.bias_ih_l0, gru.bias_hh_l0]
        steps, hidden = gru_steps(x, state["hidden"], weights)
        return self._controls(stacked, steps), {"hidden": hidden}

    def _scaled_inputs(
        self, f0_hz: torch.Tensor, loudness_db: torch.Tensor, z: torch.Tensor | None
    ) -> list[torch.Tensor]:
        """DDSP's preprocessing (``ld_scaled``, ``f0_scaled``) and z, shapes checked."""
        if not torch.jit.is_scripting():
            self._check_inputs(f0_hz, loudness_db, z)
        inputs = [scale_db(loudness_db)]
        if self.hears_f0:
            inputs.append(scale_f0_hz(f0_hz))
        if z is not None:
            inputs.append(z)
        return inputs

    @torch.jit.unused
    def _check_inputs(self, f0_hz, loudness_db, z) -> None:
        check_single_channel(f0_hz, "f0_hz")
        check_single_channel(loudness_db, "loudness_db")
        check_same_leading(f0_hz, loudness_db, "f0_hz", "loudness_db", 2)
        if self.z_dims == 0:
            if z is not None:
                raise ValueError("z was given but this decoder has z_dims=0; build it with z_dims")
            return
        shape = f"[batch, n_frames, z_dims={self.z_dims}]"
        check_tensor(z, "z", 3, shape)
        if z.shape[-1] != self.z_dims or z.shape[:2] != f0_hz.shape[:2]:
            raise ValueError(f"z must have shape {shape} like f0_hz, found {tuple(z.shape)}")
