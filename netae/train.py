"""Fit the autoencoder on the fit flows, with early stopping on the validation flows.

Batches come straight from the ragged layout: windows (NOTE [windows]) are bucketed by length,
each padded batch is one numpy gather, and the batches are shuffled across buckets each epoch
with a seeded ``np.random.default_rng``. Adam, gradient clipping, a per-step cosine learning-rate
schedule, and early stopping that keeps the best weights. On CUDA the forward pass runs under
bf16 autocast when a probe shows it works (loss in float32); batches are copied from pinned
memory without blocking.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from netae.config import Settings
from netae.errors import InputError
from netae.model import (
    FlowAutoencoder,
    Windows,
    build_model,
    gather_batch,
    length_batches,
    make_windows,
    masked_mse,
    resolve_input_path,
    step_mask,
    weights_to_numpy,
)
from netae.score import padded_values, resolve_device, score_windows, set_threads, to_device
from netae.tables import Features

__all__ = ["EpochStats", "TrainResult", "train_model"]

log = logging.getLogger(__name__)

# The learning rate decays to this fraction of the initial one over ``epochs`` (cosine).
FINAL_LR_FRACTION = 0.05


@dataclass(frozen=True, slots=True)
class EpochStats:
    """One epoch. ``seconds`` is the whole epoch (validation included); ``packets_per_s`` is the
    packets of the fit windows over the seconds spent fitting them."""

    epoch: int
    n_epochs: int
    train_loss: float
    val_loss: float
    seconds: float
    packets_per_s: float
    learning_rate: float
    is_best: bool


@dataclass(frozen=True, slots=True)
class TrainResult:
    """The best weights (float32 numpy, state-dict names), the loss curves and how they were made."""

    weights: dict[str, np.ndarray]
    history: tuple[EpochStats, ...]
    best_epoch: int
    device: str
    input_path: str


def _probe_autocast(
    model: FlowAutoencoder, values_z: npt.NDArray[np.float32], device: str, input_path: str
) -> torch.dtype | None:
    """bf16 if a forward and backward pass under bf16 autocast run on ``device``, else None."""
    if device != "cuda":
        return None
    lengths = np.array([2, 1], np.int64)
    x = to_device(gather_batch(values_z, np.zeros(2, np.int64), lengths), device)
    try:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            recon = model(x, torch.from_numpy(lengths), to_device(lengths, device), input_path=input_path)
        masked_mse(x, recon, step_mask(to_device(lengths, device), x.shape[1])).backward()  # type: ignore[no-untyped-call]
        model.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
    except RuntimeError as exc:
        log.info("bf16 autocast unavailable on this GPU (%s); training in float32", exc)
        model.zero_grad(set_to_none=True)
        return None
    return torch.bfloat16


def train_model(
    features: Features,
    *,
    is_val: npt.NDArray[np.bool_],
    settings: Settings,
    on_epoch: Callable[[EpochStats], None] | None = None,
) -> TrainResult:
    """Fit on the flows not in ``is_val`` (n_flows,), validate on those in it, keep the best.

    Without validation flows, early stopping watches the training loss. ``settings.train.seed``
    fixes initial weights and batch order: on the CPU the same seed (and thread count) gives
    the same weights.
    """
    ts = settings.train
    is_val = np.asarray(is_val, dtype=np.bool_)
    if is_val.shape != (features.n_flows,):
        raise ValueError(f"is_val must have shape ({features.n_flows},), got {is_val.shape}")
    device = resolve_device(ts.device)
    if device == "cpu":
        set_threads(ts.threads)
    input_path = resolve_input_path(settings.model.input_path, device)

    windows = make_windows(features.offsets, settings.flows.max_packets)
    win_val = is_val[windows.flow]
    fit_idx = np.flatnonzero(~win_val)
    val_windows_idx = np.flatnonzero(win_val)
    if len(fit_idx) == 0:
        raise InputError("no training flows to fit the model on (every flow is empty or held out for validation)")
    fit_start, fit_len = windows.start[fit_idx], windows.length[fit_idx]
    n_fit_packets = int(fit_len.sum())
    val_windows = windows.take(val_windows_idx)
    values_z = padded_values(features.values)

    rng = np.random.default_rng(ts.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(ts.seed)
        model = build_model(features.values.shape[1], settings.model)
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=ts.learning_rate)
    n_batches = math.ceil(len(fit_idx) / ts.batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=max(1, ts.epochs * n_batches), eta_min=ts.learning_rate * FINAL_LR_FRACTION
    )
    autocast_dtype = _probe_autocast(model, values_z, device, input_path)
    log.info(
        "training on %s (%s path%s): %d fit windows (%d packets), %d validation windows",
        device,
        input_path,
        ", bf16 autocast" if autocast_dtype is not None else "",
        len(fit_idx),
        n_fit_packets,
        val_windows.n_windows,
    )

    history: list[EpochStats] = []
    best_loss = math.inf
    best_epoch = 0
    best_state: dict[str, torch.Tensor] = {}
    for epoch in range(1, ts.epochs + 1):
        t0 = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        order, bounds = length_batches(fit_len, batch_size=ts.batch_size, rng=rng)
        model.train()
        loss_sum = torch.zeros((), device=device)
        for b in range(len(bounds) - 1):
            sel = order[bounds[b] : bounds[b + 1]]
            lengths = fit_len[sel]
            x = to_device(gather_batch(values_z, fit_start[sel], lengths), device)
            lengths_dev = to_device(lengths, device)
            with torch.autocast(device, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
                recon = model(x, torch.from_numpy(lengths), lengths_dev, input_path=input_path)
            loss = masked_mse(x, recon, step_mask(lengths_dev, x.shape[1]))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            torch.nn.utils.clip_grad_norm_(model.parameters(), ts.grad_clip)
            optimizer.step()
            scheduler.step()
            loss_sum += loss.detach() * float(lengths.sum())
        train_loss = float(loss_sum) / n_fit_packets
        fit_seconds = time.perf_counter() - t0
        val_loss = evaluate_loss(model, values_z, val_windows, device=device, input_path=input_path)
        watched = val_loss if val_windows.n_windows else train_loss
        is_best = watched < best_loss
        if is_best:
            best_loss, best_epoch = watched, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        stats = EpochStats(
            epoch=epoch,
            n_epochs=ts.epochs,
            train_loss=train_loss,
            val_loss=val_loss,
            seconds=time.perf_counter() - t0,
            packets_per_s=n_fit_packets / max(fit_seconds, 1e-9),
            learning_rate=lr,
            is_best=is_best,
        )
        history.append(stats)
        if on_epoch is not None:
            on_epoch(stats)
        if not math.isfinite(train_loss):
            log.warning("training loss is not finite at epoch %d; stopping", epoch)
            break
        if epoch - best_epoch >= ts.patience:
            log.info("no improvement for %d epochs; stopping at epoch %d", ts.patience, epoch)
            break
    if best_state:
        model.load_state_dict(best_state)
    return TrainResult(
        weights=weights_to_numpy(model),
        history=tuple(history),
        best_epoch=best_epoch,
        device=device,
        input_path=input_path,
    )


def evaluate_loss(
    model: FlowAutoencoder, values_z: npt.NDArray[np.float32], windows: Windows, *, device: str, input_path: str
) -> float:
    """Masked MSE over every real packet of ``windows`` (packet-weighted); NaN with no windows."""
    if windows.n_windows == 0:
        return math.nan
    errors = score_windows(model, values_z, windows, device=device, input_path=input_path, per_packet=False)
    weights = windows.length.astype(np.float64)
    return float(np.dot(errors.score.astype(np.float64), weights) / weights.sum())
