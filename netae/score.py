"""Score flows with a trained autoencoder: per-packet error, per-flow worst-window score.

On the CPU the model runs in netae's compiled kernel (``infer.py``, NOTE [cpu engine]) and this
module never imports torch: that import alone costs more than featurizing a million packets.
With torch (CUDA, or ``engine="torch"``: ``netae score --engine torch``) scoring runs under ``torch.inference_mode()``
on large batches of equal-length windows (no padding at all), collects every result on the
device with index writes (no ``.item()`` per batch) and copies back once. Both run in float32 so
that scores, and the threshold fitted on them, do not depend on the hardware's reduced-precision
paths.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from netae.config import Settings
from netae.errors import ConfigError
from netae.extras import available, require
from netae.features import Scaler
from netae.tables import Features
from netae.windows import Windows, make_windows

if TYPE_CHECKING:
    import torch

    from netae.model import FlowAutoencoder

__all__ = [
    "FlowScores",
    "WindowErrors",
    "cpu_engine",
    "ENGINES",
    "cpu_threads",
    "engine_for",
    "fit_feature_weights",
    "resolve_device",
    "score_features",
    "score_windows",
    "torch_threads",
]

ENGINES = ("auto", "numba", "torch")

log = logging.getLogger(__name__)

# Inference batches: at most this many windows and this many packets (B * T) each.
SCORE_MAX_SEQUENCES = 8192
SCORE_MAX_PACKETS = 1 << 18


# NOTE [feature weights]
# A flow's score is the mean over packets and features of the squared reconstruction error, each
# feature's error times its weight. Weights are fitted after training on the validation flows
# (``fit_feature_weights``): 1 / max(mean validation error of the feature, the 75th
# percentile of those means), normalised to mean 1. A feature the model cannot reconstruct well
# even on normal traffic (e.g. the exact length of a DNS name) then weighs less, and no feature
# weighs more than the typical one: a rare flag that is reconstructed almost perfectly on
# validation flows is not amplified.


@dataclass(frozen=True, slots=True)
class FlowScores:
    """Per-flow scores and the per-packet and per-feature errors behind them (NOTE [windows]).

    ``score`` (n_flows,) is the worst window's mean per-packet error; ``packet_error``
    (n_packets,) is aligned with ``Features.values``; ``feature_error`` (n_flows, n_features) is
    the mean squared error of each feature over the flow's worst window (times its feature
    weight, when the model has weights: NOTE [feature weights]); ``worst_window``
    (n_flows,) is the first packet, within its flow, of that window. A flow without packets
    scores 0. ``engine`` says what ran the model: ``numba`` or ``torch``.
    """

    score: npt.NDArray[np.float32]
    packet_error: npt.NDArray[np.float32]
    feature_error: npt.NDArray[np.float32]
    worst_window: npt.NDArray[np.int64]
    engine: str = "torch"


@dataclass(frozen=True, slots=True)
class WindowErrors:
    """Per-window results: mean per-packet error (n_windows,), per-feature MSE (n_windows, F)."""

    score: npt.NDArray[np.float32]
    feature_error: npt.NDArray[np.float32]
    packet_error: npt.NDArray[np.float32] | None


def _cuda_possible() -> bool:
    """False when this machine surely has no CUDA GPU, told without importing torch.

    A CUDA GPU needs NVIDIA's driver, whose device nodes Linux containers and hosts show
    (``/dev/nvidiactl``; ``/dev/dxg`` under WSL2); macOS has no CUDA. Elsewhere, ask torch.
    """
    if sys.platform == "darwin":
        return False
    if sys.platform.startswith("linux"):
        return any(os.path.exists(p) for p in ("/dev/nvidiactl", "/proc/driver/nvidia", "/dev/dxg"))
    return True


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` if available else ``cpu``; ``cuda`` without a GPU is a ConfigError."""
    if device == "cpu":
        return "cpu"
    if device not in ("auto", "cuda"):
        raise ConfigError(f"device must be one of auto, cpu, cuda; got {device!r}")
    if device == "auto" and (not _cuda_possible() or not available("torch")):
        return "cpu"
    torch = require("torch", "--device cuda")

    if torch.cuda.is_available():
        return "cuda"
    if device == "auto":
        return "cpu"
    raise ConfigError(
        "device 'cuda' was requested but no CUDA GPU is usable here "
        f"(torch {torch.__version__}, built with CUDA {torch.version.cuda}); use --device cpu or auto"
    )


def cpu_engine(choice: str = "auto") -> str:
    """What runs the model on the CPU: ``numba`` (netae's kernel) or ``torch`` (NOTE [cpu engine]).

    ``choice`` is ``netae score --engine``: ``auto`` (numba, or torch where numba cannot be
    imported), ``numba`` or ``torch``; a choice that cannot run here is a ``ConfigError``.
    """
    if choice not in ENGINES:
        raise ConfigError(f"engine must be one of {', '.join(ENGINES)}; got {choice!r}")
    if choice == "torch":
        require("torch", "--engine torch")
        return "torch"
    try:
        import netae.infer  # noqa: F401
    except ImportError as exc:
        if choice == "numba" or not available("torch"):
            raise ConfigError(f"the numba engine cannot run here: {exc}") from exc
        return "torch"
    return "numba"


def engine_for(device: str, choice: str = "auto") -> str:
    """What runs the model on ``device`` (``cpu`` or ``cuda``) for the engine ``choice``."""
    return cpu_engine(choice) if device == "cpu" else "torch"


def cpu_threads(threads: int) -> int:
    """``threads``, or with 0 the usable cores up to 8.

    The LSTMs are small (hidden 32): beyond a few cores per process the fork/join cost of each
    time step outweighs the split matrix products.
    """
    if threads > 0:
        return threads
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 8))


def set_threads(threads: int) -> int:
    """Set torch's CPU threads to ``cpu_threads(threads)`` for the whole process (scripts); returns it.

    netae itself scopes its thread settings with ``torch_threads``.
    """
    import torch

    threads = cpu_threads(threads)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[int]:
    """torch's CPU threads set to ``cpu_threads(threads)`` inside the block, restored after."""
    import torch

    before = torch.get_num_threads()
    threads = cpu_threads(threads)
    if before != threads:
        torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def to_device(array: npt.NDArray[np.generic], device: str) -> torch.Tensor:
    """A CPU array as a tensor on ``device``; pinned and copied without blocking on CUDA."""
    import torch

    tensor = torch.from_numpy(array)
    if device == "cpu":
        return tensor
    return tensor.pin_memory().to(device, non_blocking=True)


def padded_values(values: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """``values`` plus one row of zeros: the row padded steps gather (see ``gather_batch``).

    ``Scaler.transform`` returns a view of the first rows of such a buffer; that buffer is used
    as it is instead of copying every row again.
    """
    base = values.base
    if (
        isinstance(base, np.ndarray)
        and base.dtype == np.float32
        and base.ndim == 2
        and base.shape == (len(values) + 1, values.shape[1])
        and base.flags.c_contiguous
        and values.__array_interface__["data"][0] == base.__array_interface__["data"][0]
        and not base[-1].any()
    ):
        return base
    out = np.empty((len(values) + 1, values.shape[1]), np.float32)
    out[:-1] = values
    out[-1] = 0.0
    return out


def score_windows(
    model: FlowAutoencoder,
    values_z: npt.NDArray[np.float32],
    windows: Windows,
    *,
    device: str,
    input_path: str,
    per_packet: bool,
    feature_weights: npt.NDArray[np.float32] | None = None,
    max_sequences: int = SCORE_MAX_SEQUENCES,
    max_packets: int = SCORE_MAX_PACKETS,
) -> WindowErrors:
    """Errors of every window; with ``per_packet`` also each packet's error (NOTE [windows]).

    ``feature_weights`` (n_features,) scale each feature's squared error (NOTE [feature weights]).
    """
    import torch

    from netae.model import scoring_batches

    n_win = windows.n_windows
    n_features = values_z.shape[1]
    n_packets = len(values_z) - 1
    win_score = torch.zeros(n_win, device=device)
    win_feat = torch.zeros((n_win, n_features), device=device)
    # One spare slot at the end receives the writes of padded and skipped steps.
    packet_error = torch.zeros(n_packets + 1, device=device) if per_packet else None
    weights = None if feature_weights is None else to_device(np.asarray(feature_weights, np.float32), device)
    order, bounds = scoring_batches(windows.length, max_sequences=max_sequences, max_packets=max_packets)
    was_training = model.training
    model.eval()
    try:
        _score_batches(model, values_z, windows, order, bounds, device=device, input_path=input_path,
                       weights=weights, win_score=win_score, win_feat=win_feat, packet_error=packet_error)  # fmt: skip
    finally:
        model.train(was_training)
    return WindowErrors(
        score=win_score.cpu().numpy(),
        feature_error=win_feat.cpu().numpy(),
        packet_error=None if packet_error is None else packet_error[:-1].cpu().numpy(),
    )


def _score_batches(
    model: FlowAutoencoder,
    values_z: npt.NDArray[np.float32],
    windows: Windows,
    order: npt.NDArray[np.int64],
    bounds: npt.NDArray[np.int64],
    *,
    device: str,
    input_path: str,
    weights: torch.Tensor | None,
    win_score: torch.Tensor,
    win_feat: torch.Tensor,
    packet_error: torch.Tensor | None,
) -> None:
    """The batches of ``score_windows``, written into its result tensors."""
    import torch

    from netae.model import gather_batch, squared_error, step_mask

    n_packets = len(values_z) - 1
    with torch.inference_mode():
        for b in range(len(bounds) - 1):
            sel = order[bounds[b] : bounds[b + 1]]
            starts, lengths = windows.start[sel], windows.length[sel]
            x = to_device(gather_batch(values_z, starts, lengths), device)
            lengths_cpu = torch.from_numpy(lengths)
            lengths_dev = to_device(lengths, device)
            recon = model(x, lengths_cpu, lengths_dev, input_path=input_path)
            mask = step_mask(lengths_dev, x.shape[1])
            sq = squared_error(x, recon, mask)  # (B, T, F)
            if weights is not None:
                sq = sq * weights
            n_real = lengths_dev.to(torch.float32).unsqueeze(1)
            feat = sq.sum(1) / n_real  # (B, F)
            sel_dev = to_device(sel, device)
            win_feat[sel_dev] = feat
            win_score[sel_dev] = feat.mean(1)
            if packet_error is not None:
                steps = int(lengths.max())
                local = np.arange(steps, dtype=np.int64)[None, :]
                owned = (local >= windows.skip[sel][:, None]) & (local < lengths[:, None])
                target = np.where(owned, starts[:, None] + local, n_packets)
                packet_error[to_device(target, device).reshape(-1)] = sq.mean(2).reshape(-1)


FEATURE_WEIGHT_FLOOR_QUANTILE = 0.75


def fit_feature_weights(
    feature_error: npt.NDArray[np.float32],
    *,
    names: tuple[str, ...] = (),
    context_weight: float = 1.0,
) -> npt.NDArray[np.float32]:
    """Per-feature error weights from validation flows' errors (n_val_flows, n_features).

    NOTE [feature weights]: 1 / max(mean error, its 75th percentile over features),
    times ``context_weight`` for the cross-flow context columns (``ctx_*`` in ``names``: a flow
    that is unusual only in what its host or pair did around it must not be drowned by its many
    ordinary per-packet columns), normalised to mean 1; all ones without validation flows.
    """
    n_features = feature_error.shape[1] if feature_error.ndim == 2 else 0
    if feature_error.ndim != 2 or len(feature_error) == 0:
        return np.ones(n_features, np.float32)
    mean = feature_error.astype(np.float64).mean(axis=0)
    floor = max(float(np.quantile(mean, FEATURE_WEIGHT_FLOOR_QUANTILE)), 1e-9)
    w = 1.0 / np.maximum(mean, floor)
    if names:
        is_ctx = np.array([n.startswith("ctx_") for n in names], dtype=bool)
        w = np.where(is_ctx, w * context_weight, w)
    out: npt.NDArray[np.float32] = (w / w.mean()).astype(np.float32)
    return out


def flow_scores(windows: Windows, errors: WindowErrors, n_flows: int, *, engine: str = "torch") -> FlowScores:
    """Each flow takes its worst window (the first one on ties)."""
    if errors.packet_error is None:
        raise ValueError("flow_scores needs per-packet errors")
    n_features = errors.feature_error.shape[1]
    score = np.zeros(n_flows, np.float32)
    feature_error = np.zeros((n_flows, n_features), np.float32)
    worst_window = np.zeros(n_flows, np.int64)
    if windows.n_windows:
        # Windows are in flow order (NOTE [windows]): sort by (flow, -score, window) and take firsts.
        idx = np.lexsort((np.arange(windows.n_windows), -errors.score, windows.flow))
        is_first = np.r_[True, windows.flow[idx][1:] != windows.flow[idx][:-1]]
        best = idx[is_first]
        flows = windows.flow[best]
        score[flows] = errors.score[best]
        feature_error[flows] = errors.feature_error[best]
        worst_window[flows] = windows.local_start[best]
    return FlowScores(
        score=score,
        packet_error=errors.packet_error,
        feature_error=feature_error,
        worst_window=worst_window,
        engine=engine,
    )


def score_features(
    weights: dict[str, np.ndarray],
    features: Features,
    *,
    settings: Settings,
    device: str = "auto",
    batch_size: int | None = None,
    feature_weights: npt.NDArray[np.float32] | None = None,
    scaler: Scaler | None = None,
    engine: str = "auto",
) -> FlowScores:
    """Score every flow of ``features`` with the model in ``weights``.

    ``features`` are already scaled, or raw with the model's ``scaler`` given: the CPU engine
    then scales each window as it reads it and the scaled matrix is never stored (on 1.2M
    packets ``Scaler.transform`` took 0.3 s and 220 MB).

    ``batch_size`` caps the windows per inference batch (default 8192; batches also hold at most
    262,144 packets). Windows come from ``settings.flows.max_packets``, the input path from
    ``settings.model.input_path``. ``feature_weights`` (n_features,) scale each feature's squared
    error (NOTE [feature weights]); None weighs every feature 1. ``engine`` picks what runs the
    model on the CPU (``cpu_engine``); CUDA always runs torch.
    """
    n_features = int(np.shape(weights["encoder.weight_ih_l0"])[1])
    if n_features != features.values.shape[1]:
        raise ConfigError(
            f"the model expects {n_features} features per packet but the input has {features.values.shape[1]}"
        )
    dev = resolve_device(device)
    windows = make_windows(features.offsets, settings.flows.max_packets)
    if dev == "cpu" and cpu_engine(engine) == "numba":
        from netae.infer import score_windows_cpu

        if scaler is not None:
            scaler.check(features)
        win_score, win_feat, packet_error = score_windows_cpu(
            weights,
            features.values,
            windows.start,
            windows.length,
            windows.skip,
            feature_weights=feature_weights,
            threads=cpu_threads(settings.train.threads),
            mean=None if scaler is None else scaler.mean_,
            scale=None if scaler is None else scaler.scale_,
        )
        errors = WindowErrors(score=win_score, feature_error=win_feat, packet_error=packet_error)
        return flow_scores(windows, errors, features.n_flows, engine="numba")
    require("torch", "scoring with PyTorch")
    from netae.model import model_from_weights, resolve_input_path

    if scaler is not None:
        features = scaler.transform(features)
    model = model_from_weights(weights, settings.model).to(dev)
    with torch_threads(settings.train.threads) if dev == "cpu" else contextlib.nullcontext(0):
        errors = score_windows(
            model,
            padded_values(features.values),
            windows,
            device=dev,
            input_path=resolve_input_path(settings.model.input_path, dev),
            per_packet=True,
            max_sequences=batch_size or SCORE_MAX_SEQUENCES,
            feature_weights=feature_weights,
        )
    return flow_scores(windows, errors, features.n_flows, engine="torch")
