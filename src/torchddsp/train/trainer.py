"""The training loop: Adam with DDSP's exponential decay, clipping, AMP, resume, stop.

Deterministic on CPU: the same config and seed give the same loss sequence,
and a run resumed from a checkpoint continues exactly as if never stopped
(model, optimizer, scheduler, scaler, RNG states and the position in the
(seed, epoch)-shuffled data order are all restored).
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..config import ExperimentConfig, config_from_dict, config_to_dict
from ..data.dataset import DDSPDataset, check_dataset_matches, read_manifest
from ..errors import UserError
from ..models.saved import build_model
from .checkpoint import capture_rng_state, read_run, restore_rng_state, save_checkpoint
from .distributed import (
    DistributedContext,
    ResumableSampler,
    average_across_ranks,
    init_distributed,
    shutdown_distributed,
    wrap_model,
)
from .log_window import LogWindow
from .logging import TrainLogger
from .precision import amp_dtype
from .stopping import (
    FINISHED,
    INTERRUPTED,
    TIME_LIMIT,
    StopSignals,
    agreed_stop,
    monotonic_deadline,
)


@dataclass
class TrainResult:
    """Outcome of :func:`train` in this process."""

    run_dir: Path
    step: int  # steps done in total, including those before a resume
    stopped: str  # "finished", "time_limit" or "interrupted"
    checkpoint: Path | None  # the newest checkpoint (rank 0 writes; others may not know it)
    losses: list[float] = field(default_factory=list)  # total loss of each step of this call


def train(
    config: ExperimentConfig,
    resume: bool = True,
    on_step: Callable[[int], None] | None = None,
) -> TrainResult:
    """Train the autoencoder ``config`` describes on its prepared dataset.

    With ``resume``, a run directory that already holds checkpoints continues
    from its newest readable one; without, such a directory is refused.
    SIGINT/SIGTERM (or a ``KeyboardInterrupt`` from ``on_step``, called after
    every step) and ``train.max_minutes`` stop after the current step with a
    checkpoint. Raises :class:`UserError` for a missing or mismatched dataset.
    """
    manifest = _open_manifest(config)
    context = init_distributed()
    try:
        return _Run(config, manifest, context).run(resume, on_step)
    finally:
        shutdown_distributed(context)


def _open_manifest(config: ExperimentConfig) -> dict:
    if not config.data.path:
        raise UserError("no dataset given: add data=DIR, a folder made by `torchddsp prepare`")
    manifest = read_manifest(config.data.path)
    check_dataset_matches(manifest, config.data.sample_rate, config.data.frame_rate)
    return manifest


class _Run:
    """One process's share of a training run and everything a checkpoint restores."""

    def __init__(self, config: ExperimentConfig, manifest: dict, context: DistributedContext):
        self.config, self.manifest, self.context = config, manifest, context
        self.settings = config.train
        self.run_dir = Path(self.settings.run_dir)
        self.train_set = DDSPDataset(config.data.path, "train")
        self.val_set = DDSPDataset(config.data.path, "val")
        self._check_enough_examples()
        _seed_everything(self.settings.seed)
        self.model = build_model(config).to(context.device)
        self.trained_model = wrap_model(self.model, context)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.settings.learning_rate)
        rate, decay_steps = self.settings.lr_decay_rate, self.settings.lr_decay_steps
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: rate ** (step / decay_steps)
        )
        self.amp_dtype = amp_dtype(self.settings.amp, context.device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.step = self.epoch = self.batch_index = 0
        self.saved_step, self.checkpoint = -1, None
        _seed_everything(self.settings.seed + context.rank)  # each process its own noise

    def run(self, resume: bool, on_step: Callable[[int], None] | None) -> TrainResult:
        self._restore(resume)
        result = TrainResult(self.run_dir, self.step, FINISHED, self.checkpoint)
        if self.step >= self.settings.steps:
            if self.context.is_main:
                print(
                    f"{self.run_dir} is already trained to step {self.step}: "
                    "raise train.steps to train further",
                    file=sys.stderr,
                )
            return result
        logger = self._logger()
        self._announce()
        window = LogWindow(self.step)
        batches = self._batches()
        progress = tqdm(
            total=self.settings.steps,
            initial=self.step,
            desc="train",
            unit="step",
            disable=not self.context.is_main,
            dynamic_ncols=True,
        )
        deadline = monotonic_deadline(self.settings.max_minutes)
        with StopSignals(announce=self.context.is_main) as signals, progress:
            try:
                while self.step < self.settings.steps:
                    window.add(*self._train_step(next(batches)))
                    self.step += 1
                    progress.update()
                    if on_step is not None:
                        on_step(self.step)
                    self._periodic(logger, window, result, progress)
                    reason = INTERRUPTED if signals.requested else None
                    reason = reason or (TIME_LIMIT if time.monotonic() > deadline else None)
                    result.stopped = agreed_stop(reason, self.context) or FINISHED
                    if result.stopped != FINISHED:
                        break
            except KeyboardInterrupt:
                if signals.aborted:  # a second Ctrl-C: leave now, keep the last checkpoint
                    raise
                result.stopped = INTERRUPTED
        result.losses += window.take_totals()
        self._finish(logger)
        result.step, result.checkpoint = self.step, self.checkpoint
        return result

    # Data ---------------------------------------------------------------------------------------
    def _check_enough_examples(self) -> None:
        needed = self.settings.batch_size * self.context.world_size
        if len(self.train_set) < needed:
            processes = f" x {self.context.world_size} processes" if self.context.enabled else ""
            raise UserError(
                f"dataset {self.config.data.path} has {len(self.train_set)} training examples, "
                f"fewer than train.batch_size={self.settings.batch_size}{processes}: "
                "lower train.batch_size or add recordings"
            )

    def _batches(self) -> Iterator[dict[str, torch.Tensor]]:
        """Training batches forever; (epoch, batch_index) always names the next one."""
        while True:
            for batch in self._epoch_loader():
                self.batch_index += 1
                yield batch
            self.epoch, self.batch_index = self.epoch + 1, 0

    def _epoch_loader(self) -> DataLoader:
        seed = self.settings.seed
        sampler = ResumableSampler(self.train_set, self.context, seed, self.epoch)
        sampler.skip = self.batch_index * self.settings.batch_size
        # Seeds the workers (their base seed) from (seed, epoch), so resume reproduces them.
        generator = torch.Generator().manual_seed(seed * 1_000_003 + self.epoch)
        return DataLoader(
            self.train_set,
            batch_size=self.settings.batch_size,
            sampler=sampler,
            drop_last=True,
            num_workers=self.settings.num_workers,
            pin_memory=self.context.device.type == "cuda",
            generator=generator,
        )

    # Steps --------------------------------------------------------------------------------------
    def _train_step(self, batch: dict) -> tuple[dict[str, torch.Tensor], torch.Tensor, float]:
        """One optimisation step; returns (detached losses, grad norm before clipping, lr)."""
        batch = _to_device(batch, self.context.device)
        self.model.train()
        losses = self._losses(self.trained_model, batch)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(losses["total"]).backward()
        self.scaler.unscale_(self.optimizer)
        clip = self.settings.grad_clip_norm
        max_norm = clip if clip > 0 else float("inf")  # 0 = measure the norm, do not clip
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        learning_rate = self.scheduler.get_last_lr()[0]
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return {name: loss.detach() for name, loss in losses.items()}, grad_norm, learning_rate

    def _losses(self, model: torch.nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        with self._autocast():  # the model keeps its synthesis and loss in float32
            outputs = model(batch)
        return self.model.loss(batch, outputs)

    def _autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.context.device.type, dtype=self.amp_dtype)

    # Logs, evaluation, checkpoints --------------------------------------------------------------
    def _logger(self) -> TrainLogger | None:
        if not self.context.is_main:
            return None
        settings, data = self.manifest["settings"], self.config.data
        return TrainLogger(self.run_dir, data.sample_rate, data.frame_rate, settings["f0_method"])

    def _announce(self) -> None:
        if self.context.is_main:
            processes = f" x {self.context.world_size} processes" if self.context.enabled else ""
            print(
                f"training on {self.context.device}{processes}; checkpoints and logs in "
                f"{self.run_dir}; watch with: tensorboard --logdir {self.run_dir}",
                file=sys.stderr,
            )

    def _periodic(self, logger, window: LogWindow, result: TrainResult, progress) -> None:
        step, settings = self.step, self.settings
        if step % settings.log_every == 0:
            result.losses += window.take_totals()
            self._log_window(logger, window, progress)
        if logger is not None and step % settings.eval_every == 0 and len(self.val_set):
            logger.scalars(step, "validation", self._evaluate())
        if logger is not None and step % settings.audio_every == 0:
            logger.examples(step, *self._example())
        if step % settings.checkpoint_every == 0:
            self._save(logger)

    def _log_window(self, logger, window: LogWindow, progress) -> None:
        """Mean of every logged value since the last log, averaged over processes."""
        names, values = window.summary(self.step)
        values = average_across_ranks(values, self.context).tolist()
        if logger is None:
            return
        means = dict(zip(names, values, strict=True))
        logger.scalars(self.step, "train", means)
        progress.set_postfix(loss=f"{means['total']:.4f}", lr=f"{means['learning_rate']:.2e}")

    @torch.no_grad()
    def _evaluate(self) -> dict[str, float]:
        """Mean validation losses, the same noise every time so that curves compare."""
        loader = DataLoader(self.val_set, batch_size=self.settings.batch_size)
        sums: dict[str, float] = {}
        self.model.eval()
        with _fixed_rng(self.settings.seed, self.context.device):
            for batch in loader:
                losses = self._losses(self.model, _to_device(batch, self.context.device))
                for name, loss in losses.items():
                    sums[name] = sums.get(name, 0.0) + loss.item() * len(batch["audio"])
        return {name: total / len(self.val_set) for name, total in sums.items()}

    @torch.no_grad()
    def _example(self) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The first validation example (training, without one) and its resynthesis."""
        target = (self.val_set if len(self.val_set) else self.train_set)[0]
        batch = {name: value[None] for name, value in target.items()}
        batch = _to_device(batch, self.context.device)
        self.model.eval()
        with _fixed_rng(self.settings.seed, self.context.device), self._autocast():
            synth = self.model(batch)["audio_synth"][0]
        return target, synth

    def _save(self, logger) -> None:
        if logger is None or self.saved_step == self.step:
            return
        self.checkpoint = save_checkpoint(self.run_dir, self._state())
        self.saved_step = self.step
        logger.flush()

    def _finish(self, logger) -> None:
        self._save(logger)
        if logger is not None:
            logger.close()

    def _state(self) -> dict:
        return {
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "grad_scaler": self.scaler.state_dict(),
            "rng": capture_rng_state(),
            "data_position": {"epoch": self.epoch, "batch_index": self.batch_index},
            "config": config_to_dict(self.config),
            "dataset": {
                "settings": self.manifest["settings"],
                "statistics": self.manifest["statistics"],
            },
        }

    def _restore(self, resume: bool) -> None:
        found = read_run(self.run_dir)
        if found is None:
            return
        contents, path = found
        if not resume:
            raise UserError(
                f"{self.run_dir} already holds checkpoints: resume it or set another train.run_dir"
            )
        self._check_same_model(contents["config"], path)
        self.model.load_state_dict(contents["model"])
        self.optimizer.load_state_dict(contents["optimizer"])
        self.scheduler.load_state_dict(contents["scheduler"])
        self.scaler.load_state_dict(contents["grad_scaler"])
        restore_rng_state(contents["rng"])
        if self.context.rank:  # only rank 0's generators were saved
            _seed_everything(self.settings.seed + self.context.rank + contents["step"])
        self.step = self.saved_step = contents["step"]
        self.epoch = contents["data_position"]["epoch"]
        self.batch_index = contents["data_position"]["batch_index"]
        self.checkpoint = path
        if self.context.is_main:
            print(f"resuming from step {self.step} ({path})", file=sys.stderr)

    def _check_same_model(self, saved: dict, path: Path) -> None:
        current = config_to_dict(self.config)
        saved = config_to_dict(config_from_dict(saved, str(path)))  # a later field: its default
        keys = [("model", key) for key in current["model"]]
        keys += [("data", "sample_rate"), ("data", "frame_rate")]
        differ = [f"{sec}.{key}" for sec, key in keys if saved[sec].get(key) != current[sec][key]]
        if differ:
            raise UserError(
                f"{path} was trained with other {', '.join(differ)}: "
                "use the run's config or set another train.run_dir"
            )


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (the global generator others may use)
    torch.manual_seed(seed)


@contextmanager
def _fixed_rng(seed: int, device: torch.device):
    """Draw from a fixed seed inside, leave the training generators untouched."""
    devices = [device.index] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _to_device(batch: dict, device: torch.device) -> dict[str, torch.Tensor]:
    return {name: value.to(device, non_blocking=True) for name, value in batch.items()}
