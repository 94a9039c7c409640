"""TensorBoard logs of a training run: scalars, audio examples and feature figures.

Tags: ``train/<loss term>``, ``train/learning_rate``, ``train/grad_norm``,
``train/steps_per_second``, ``validation/<loss term>``, ``audio/target``,
``audio/resynthesis``, ``figures/target``, ``figures/resynthesis``. The
figures are also kept as PNG files in ``<run_dir>/figures``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..features import compute_features


class TrainLogger:
    """Writes one run's TensorBoard event file into ``run_dir``.

    ``f0_method`` is the dataset's tracker, so the resynthesis's f0 in the
    figures is measured the way the target's was.
    """

    def __init__(self, run_dir: str | Path, sample_rate: int, frame_rate: int, f0_method: str):
        from torch.utils.tensorboard import SummaryWriter

        self.run_dir = Path(run_dir)
        self.sample_rate, self.frame_rate, self.f0_method = sample_rate, frame_rate, f0_method
        self.writer = SummaryWriter(log_dir=str(self.run_dir))

    def scalars(self, step: int, group: str, values: dict[str, float]) -> None:
        for name, value in values.items():
            self.writer.add_scalar(f"{group}/{name}", value, step)

    def examples(self, step: int, target: dict[str, torch.Tensor], synth: torch.Tensor) -> None:
        """Target and resynthesised audio, and a figure of each with its features.

        Shape: target["audio"] [n_samples], target features [n_frames]; synth [n_samples].
        """
        synth = synth.detach().float().cpu()
        measured = compute_features(synth[None], self.sample_rate, self.frame_rate, self.f0_method)
        synth_features = {name: values[0] for name, values in measured.items()}
        for name, audio, tracks in (
            ("target", target["audio"], {"target": target}),
            ("resynthesis", synth, {"target": target, "resynthesis": synth_features}),
        ):
            self.writer.add_audio(f"audio/{name}", audio.clamp(-1, 1), step, self.sample_rate)
            self._figure(step, name, audio, tracks)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()

    def _figure(self, step: int, name: str, audio: torch.Tensor, tracks: dict) -> None:
        import matplotlib.image

        from ..plots import plot_features

        path = self.run_dir / "figures" / f"{name}_step_{step:08d}.png"
        plot_features(path, audio, self.sample_rate, self.frame_rate, tracks)
        image = matplotlib.image.imread(path)[..., :3]  # RGBA PNG; TensorBoard wants RGB
        self.writer.add_image(f"figures/{name}", image, step, dataformats="HWC")
