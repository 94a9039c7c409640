"""Measures for voice resynthesis and conversion: mel-cepstral distortion, f0 and voicing
errors, and small utterance-level attribute models (gender, age) for the conversion claims.

Frames follow :mod:`torchddsp.features`: with ``hop = sample_rate / frame_rate``, frame ``i``
is centred on sample ``i * hop``, so a mel cepstrum lines up with ``compute_features``' f0,
confidence and loudness. A frame is voiced when its f0 confidence is at least
:data:`VOICED_CONFIDENCE` (``features.CONFIDENT``: YIN's ``1 - d'``, near 1 on a periodic
tone, near 0 on noise and silence).

The mel cepstrum here is MFCC-style, not SPTK's ``mcep``: ``mcep`` fits a cepstrum to the
log spectral envelope on an all-pass-warped frequency axis (``alpha ~ 0.42`` at 16 kHz
approximates the mel scale); here the warping is a triangular mel filterbank and the cepstrum
a DCT of the log mel spectrum (librosa's MFCC), rescaled to the same units (natural-log
amplitude, cosine-series coefficients), so :func:`cepstral_distortion` is the usual MCD
formula with the usual meaning: half the RMS distance in dB between the two smoothed log
spectra, mean (c0) removed. Absolute values differ from WORLD+SPTK toolchains by the smoothing;
compare systems with this one measure, not with numbers from papers.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.signal
import torch

from ..features import CONFIDENT, compute_features, pad_to_hop
from ..functional._checks import (
    check_positive,
    check_positive_int,
    check_same_leading,
    check_tensor,
)
from ..functional.core import cents_apart
from ..functional.spectral import compute_loudness, frame_hop_size, mfcc

VOICED_CONFIDENCE = CONFIDENT  # f0 confidence at or above which a frame is voiced
LOUD_RANGE_DB = 40.0  # default MCD frames: loudness within this of the utterance's loudest
MCD_SCALE = 10.0 / math.log(10.0)  # natural-log cepstra -> dB, as in Kubichek's MCD
DB_TO_NEPER = math.log(10.0) / 20.0


def mel_cepstrum(
    audio: torch.Tensor,
    sample_rate: int,
    frame_rate: int = 100,
    n_coefficients: int = 25,
    n_mels: int = 40,
    n_fft: int | None = None,
) -> torch.Tensor:
    """Mel cepstrum c0..c{n_coefficients - 1} per frame (MFCC-style, see the module notes).

    ``c_d = mfcc_d * (ln 10 / 20) / sqrt(2 n_mels)`` with ``mfcc`` = librosa's MFCC
    (orthonormal DCT-II of ``10 log10`` mel power, HTK mel, no ``top_db``): the coefficients
    of ``ln|mel amplitude|(w) = c0 + 2 sum_d c_d cos(d w)`` over the mel bands, as SPTK's
    cepstra are for the warped spectrum. ``n_fft`` defaults to the power of two nearest
    40 ms. Frame i is centred on sample ``i * hop``; every frame centred inside the signal is
    kept, ``ceil(n_samples / hop)`` (= ``compute_features``' count on whole hops).
    Shape: audio [batch, n_samples] -> [batch, n_frames, n_coefficients].
    """
    check_tensor(audio, "audio", 2, "[batch, n_samples]")
    hop = frame_hop_size(sample_rate, frame_rate)
    n_fft = 2 ** round(math.log(0.04 * sample_rate) / math.log(2.0)) if n_fft is None else n_fft
    coefficients = mfcc(audio, sample_rate, n_coefficients, n_fft, hop, n_mels)
    n_frames = -(-audio.shape[-1] // hop)
    return coefficients[:, :n_frames] * (DB_TO_NEPER / math.sqrt(2.0 * n_mels))


def loud_frames(
    audio: torch.Tensor, sample_rate: int, frame_rate: int = 100, range_db: float = LOUD_RANGE_DB
) -> torch.Tensor:
    """Frames whose A-weighted loudness is within ``range_db`` of the example's loudest.

    Shape: audio [batch, n_samples] -> bool [batch, ceil(n_samples / hop)].
    """
    n_frames = -(-audio.shape[-1] // frame_hop_size(sample_rate, frame_rate))
    loudness = compute_loudness(audio, sample_rate, frame_rate)[:, :n_frames]
    return loudness >= loudness.amax(dim=1, keepdim=True) - range_db


def voiced_frames(
    f0_confidence: torch.Tensor, threshold: float = VOICED_CONFIDENCE
) -> torch.Tensor:
    """Voicing decision from ``compute_features``' ``f0_confidence``: ``>= threshold``.

    Shape: [batch, n_frames] -> bool [batch, n_frames].
    """
    return f0_confidence >= threshold


def frame_distortion_db(reference: torch.Tensor, estimate: torch.Tensor) -> torch.Tensor:
    """Per-frame MCD, ``10 / ln 10 * sqrt(2 sum_{d >= 1} (c_d - c'_d)^2)``; c0 is ignored.

    Shape: cepstra [..., n_coefficients] (broadcastable) -> [...].
    """
    difference = reference[..., 1:] - estimate[..., 1:]
    return MCD_SCALE * (2.0 * difference.square().sum(-1)).sqrt()


def cepstral_distortion(
    reference: torch.Tensor, estimate: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """MCD in dB of time-aligned cepstra, averaged over the frames of ``mask`` (all if None).

    NaN for an example with no frame in the mask.
    Shape: reference, estimate [batch, n_frames, n_coefficients], mask bool [batch, n_frames]
    -> [batch].
    """
    if reference.shape != estimate.shape:
        raise ValueError(
            f"reference and estimate cepstra must have the same shape, found "
            f"{tuple(reference.shape)} and {tuple(estimate.shape)}; align them (dtw=True)"
        )
    return _masked_mean(frame_distortion_db(reference, estimate), mask)


def mel_cepstral_distortion(
    reference: torch.Tensor,
    estimate: torch.Tensor,
    sample_rate: int,
    frame_rate: int = 100,
    mask: torch.Tensor | None = None,
    dtw: bool = False,
    n_coefficients: int = 25,
    n_mels: int = 40,
) -> torch.Tensor:
    """MCD in dB (c1..c{n_coefficients - 1}) of ``estimate`` against ``reference`` audio.

    Averaged over the reference frames in ``mask`` (default :func:`loud_frames`; pass
    ``voiced_frames(...)`` to score voiced speech only). Frames are compared at equal times
    (a resynthesis keeps the timing); ``dtw=True`` pairs them along the cheapest
    :func:`dtw_path` instead (a conversion whose timing drifts; lengths may then differ)
    and averages over the path's pairs whose reference frame is in ``mask``.
    Shape: reference [batch, n_samples], estimate [batch, n_samples'], mask bool
    [batch, n_frames] -> [batch].
    """
    check_same_leading(reference, estimate, "reference", "estimate", 1)
    ref = mel_cepstrum(reference, sample_rate, frame_rate, n_coefficients, n_mels)
    est = mel_cepstrum(estimate, sample_rate, frame_rate, n_coefficients, n_mels)
    mask = loud_frames(reference, sample_rate, frame_rate) if mask is None else mask
    _check_mask(mask, "mask", ref.shape[:2])
    if not dtw:
        return cepstral_distortion(ref, est, mask)
    scores = []
    for ref_i, est_i, mask_i in zip(ref, est, mask, strict=True):
        rows, cols = dtw_path(torch.cdist(ref_i[:, 1:], est_i[:, 1:]).double().numpy())
        distortion = frame_distortion_db(ref_i[rows], est_i[cols])
        scores.append(_masked_mean(distortion[None], mask_i[rows][None]))
    return torch.cat(scores)


def dtw_path(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cheapest monotonic path from (0, 0) to (n - 1, m - 1) with steps (1,1), (1,0), (0,1).

    Dynamic program in O(n m): within a row, ``D[i, j] = min(entry_j, D[i, j - 1] + C[i, j])``
    is a running minimum of ``entry - cumsum(C[i])``, so each row is one numpy pass.
    Shape: cost [n, m] -> (rows [n_steps], cols [n_steps]).
    """
    n, m = cost.shape
    total = np.empty((n, m))
    total[0] = np.cumsum(cost[0])
    for i in range(1, n):
        diagonal = np.concatenate(([np.inf], total[i - 1, :-1]))
        entry = cost[i] + np.minimum(total[i - 1], diagonal)
        run = np.cumsum(cost[i])
        total[i] = run + np.minimum.accumulate(entry - run)
    path = [(n - 1, m - 1)]
    i, j = n - 1, m - 1
    while i > 0 or j > 0:
        if i == 0 or j == 0:
            i, j = max(i - 1, 0), max(j - 1, 0)
        else:
            step = np.argmin((total[i - 1, j - 1], total[i - 1, j], total[i, j - 1]))
            i, j = (i - 1, j - 1) if step == 0 else (i - 1, j) if step == 1 else (i, j - 1)
        path.append((i, j))
    rows, cols = np.array(path[::-1]).T
    return rows, cols


def f0_rmse_cents(
    reference_f0_hz: torch.Tensor, estimate_f0_hz: torch.Tensor, voiced_mask: torch.Tensor
) -> torch.Tensor:
    """Root mean square f0 error in cents over ``voiced_mask`` (NaN where it is empty).

    Use frames voiced in both signals; :func:`voicing_error_rate` counts the others.
    Shape: [batch, n_frames] each -> [batch].
    """
    check_tensor(reference_f0_hz, "reference_f0_hz", 2, "[batch, n_frames]")
    _check_mask(voiced_mask, "voiced_mask", reference_f0_hz.shape)
    cents = cents_apart(estimate_f0_hz, reference_f0_hz)
    return _masked_mean(cents.square(), voiced_mask).sqrt()


def voicing_error_rate(
    reference_voiced: torch.Tensor, estimate_voiced: torch.Tensor
) -> torch.Tensor:
    """Share of frames whose voiced/unvoiced decisions differ.

    Shape: bool [batch, n_frames] each -> [batch].
    """
    _check_mask(reference_voiced, "reference_voiced", estimate_voiced.shape)
    return (reference_voiced != estimate_voiced).double().mean(dim=1)


def long_term_envelope(
    audio: np.ndarray, sample_rate: int, n_fft: int = 512, smoothing_hz: float = 120.0
) -> tuple[np.ndarray, np.ndarray]:
    """The log spectral envelope of an utterance: the power spectrum averaged over its louder
    half of frames, smoothed across frequency (Gaussian, ``smoothing_hz``) so that no single
    harmonic of the pitch remains.

    Shape: audio [n_samples] -> (frequencies_hz [n_bins], log power [n_bins]).
    """
    hz, _, power = scipy.signal.spectrogram(
        audio, sample_rate, nperseg=n_fft, noverlap=3 * n_fft // 4
    )
    loud = power.sum(0) >= np.median(power.sum(0))
    reach = math.ceil(3 * smoothing_hz / hz[1])  # three deviations each side
    offsets = np.arange(-reach, reach + 1) * hz[1]
    kernel = np.exp(-0.5 * (offsets / smoothing_hz) ** 2)
    smooth = np.convolve(power[:, loud].mean(1), kernel / kernel.sum(), mode="same")
    return hz, np.log(smooth + 1e-12)


def envelope_scale(
    reference: np.ndarray,
    output: np.ndarray,
    sample_rate: int,
    band_hz: tuple[float, float] = (300.0, 3500.0),
) -> float:
    """The frequency scale that best maps ``reference``'s envelope onto ``output``'s (within
    ``band_hz``, the formant region; scales 0.7 .. 1.5 by 0.01, best correlation): above 1,
    the output's formants lie higher, as a shorter vocal tract's do.

    Shape: reference, output [n_samples] -> float.
    """
    hz, before = long_term_envelope(reference, sample_rate)
    _, after = long_term_envelope(output, sample_rate)
    band = (hz >= band_hz[0]) & (hz <= band_hz[1])
    scales = np.round(np.arange(0.7, 1.505, 0.01), 2)
    scores = [np.corrcoef(np.interp(hz / k, hz, before)[band], after[band])[0, 1] for k in scales]
    return float(scales[int(np.argmax(scores))])


class UtteranceFeatures:
    """Spectral-envelope statistics of an utterance: mean and standard deviation of the mel
    cepstrum c1..c{n_coefficients - 1} over its voiced frames.

    Without c0 the level does not count; the low quefrencies of a mel-smoothed spectrum
    describe the vocal tract (formants, tilt) rather than the harmonics, so the statistics
    change little with f0 (see the tests). Compare utterances at one sample rate.
    """

    def __init__(
        self, sample_rate: int, frame_rate: int = 100, n_coefficients: int = 25, n_mels: int = 40
    ) -> None:
        check_positive_int(n_coefficients, "n_coefficients")
        self.sample_rate, self.frame_rate = sample_rate, frame_rate
        self.n_coefficients, self.n_mels = n_coefficients, n_mels
        self.hop = frame_hop_size(sample_rate, frame_rate)

    @property
    def n_features(self) -> int:
        return 2 * (self.n_coefficients - 1)

    def __call__(self, audio: torch.Tensor, voiced: torch.Tensor | None = None) -> torch.Tensor:
        """``voiced`` defaults to :func:`voiced_frames` of ``compute_features`` (YIN).

        Shape: audio [batch, n_samples], voiced bool [batch, ceil(n_samples / hop)]
        -> [batch, n_features].
        """
        audio = pad_to_hop(audio, self.hop)
        cepstrum = mel_cepstrum(
            audio, self.sample_rate, self.frame_rate, self.n_coefficients, self.n_mels
        )[..., 1:]
        if voiced is None:
            confidence = compute_features(audio, self.sample_rate, self.frame_rate)["f0_confidence"]
            voiced = voiced_frames(confidence)
        _check_mask(voiced, "voiced", cepstrum.shape[:2])
        stats = []
        for frames, keep in zip(cepstrum, voiced, strict=True):
            if not keep.any():
                raise ValueError("an utterance has no voiced frame; drop silent or unvoiced clips")
            stats.append(torch.cat([frames[keep].mean(0), frames[keep].std(0, correction=0)]))
        return torch.stack(stats)


class _StandardisedLinear:
    """A linear score on standardised features (training mean and std), in float64."""

    def __init__(self, l2: float = 1.0) -> None:
        check_positive(l2, "l2")
        self.l2 = l2
        self.mean: torch.Tensor | None = None

    def _design(self, features: torch.Tensor, fit: bool = False) -> torch.Tensor:
        check_tensor(features, "features", 2, "[n_utterances, n_features]")
        x = features.double()
        if fit:
            self.mean, self.scale = x.mean(0), x.std(0, correction=0).clamp_min(1e-12)
        elif self.mean is None:
            raise ValueError(f"{type(self).__name__} is not fitted; call fit(features, ...) first")
        z = (x - self.mean) / self.scale
        return torch.cat([z, torch.ones_like(z[:, :1])], dim=1)  # last column: the bias

    def _penalty(self, n_columns: int) -> torch.Tensor:
        penalty = torch.full((n_columns,), self.l2, dtype=torch.float64)
        penalty[-1] = 0.0  # the bias is not shrunk
        return torch.diag(penalty)

    def _score(self, features: torch.Tensor) -> torch.Tensor:
        return self._design(features) @ self.weights


class GenderClassifier(_StandardisedLinear):
    """L2-regularised logistic regression, fitted by Newton's method (deterministic, exact).

    Minimises ``sum log-loss + l2 / 2 |w|^2`` on standardised features. :meth:`logit` is
    the 1-D gender axis: a conversion toward label 1 should move it up, monotonically.
    """

    def fit(self, features: torch.Tensor, labels: torch.Tensor) -> GenderClassifier:
        """Shape: features [n_utterances, n_features], labels {0, 1} [n_utterances]."""
        check_same_leading(features, labels, "features", "labels", 1)
        z, y = self._design(features, fit=True), labels.double()
        if not bool(((y == 0) | (y == 1)).all()):
            raise ValueError("labels must be 0 or 1 (e.g. 1 = female)")
        penalty = self._penalty(z.shape[1])
        self.weights = torch.zeros(z.shape[1], dtype=torch.float64)
        for _ in range(100):
            p = torch.sigmoid(z @ self.weights)
            gradient = z.T @ (p - y) + penalty @ self.weights
            hessian = z.T @ (z * (p * (1 - p))[:, None]) + penalty
            step = torch.linalg.solve(hessian, gradient)
            self.weights = self.weights - step
            if step.abs().max() < 1e-10:
                break
        return self

    def logit(self, features: torch.Tensor) -> torch.Tensor:
        """Shape: [n_utterances, n_features] -> [n_utterances]."""
        return self._score(features)

    def predict_proba(self, features: torch.Tensor) -> torch.Tensor:
        """Probability of label 1. Shape: [n_utterances, n_features] -> [n_utterances]."""
        return torch.sigmoid(self.logit(features))

    def accuracy(self, features: torch.Tensor, labels: torch.Tensor) -> float:
        """Share of utterances whose label is predicted (probability 0.5 as the boundary)."""
        predicted = self.predict_proba(features) >= 0.5
        return (predicted == labels.bool()).double().mean().item()


class AgeRegressor(_StandardisedLinear):
    """Ridge regression onto the scalar age, closed form on standardised features."""

    def fit(self, features: torch.Tensor, ages: torch.Tensor) -> AgeRegressor:
        """Shape: features [n_utterances, n_features], ages [n_utterances]."""
        check_same_leading(features, ages, "features", "ages", 1)
        z, y = self._design(features, fit=True), ages.double()
        self.weights = torch.linalg.solve(z.T @ z + self._penalty(z.shape[1]), z.T @ y)
        return self

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        """Shape: [n_utterances, n_features] -> [n_utterances]."""
        return self._score(features)


def _masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return values.double().mean(dim=1)
    return (values.double() * mask).sum(dim=1) / mask.sum(dim=1)


def _check_mask(mask: object, name: str, shape: torch.Size) -> None:
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or mask.shape != shape:
        found = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise ValueError(f"{name} must be a bool tensor of shape {tuple(shape)}, found {found}")
