"""Fit the autoencoder on the fit flows, with early stopping on the validation flows.

Batches come straight from the ragged layout: windows (NOTE [windows]) are bucketed by length,
each padded batch is one numpy gather, and the batches are shuffled across buckets each epoch
with a seeded ``np.random.default_rng``. Adam, gradient clipping, a per-step cosine learning-rate
schedule, and early stopping that keeps the best weights. On CUDA the forward pass runs under
bf16 autocast when a probe shows it works (loss in float32); batches are copied from pinned
memory without blocking.

NOTE [streaming]: the training set is a ``PartSource``, pieces (dataset shards) loaded one at a
time. While the scaled values of all of them fit in ``buffer_bytes`` (or there is no cap) they
are loaded once, in order, and training is exactly the in-memory algorithm: same seed, same
weights. Otherwise each epoch visits the shards in a seeded random order, fills the buffer with
as many as fit (at least one), and draws length-bucketed batches from the buffer only; the
validation flows are then scored shard by shard. Results are then close to, not equal to, the
in-memory run: batches mix only the flows of one buffer load.

NOTE [distributed]: under torchrun (WORLD_SIZE > 1) every rank builds the same batch plan from
the same seed and takes a slice of every batch; its loss is its slice's squared error over the
whole batch's count, times the world size, so DistributedDataParallel's gradient mean is the
gradient of the whole batch: one step per batch on every rank (no rank waits on another), the
same updates as one process up to float summation order. Validation errors are summed over
ranks (all_reduce) and the validation scores gathered (all_gather), so every rank takes the same
early-stopping decisions and sees the same threshold input. gloo on CPU, NCCL on CUDA.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
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
    squared_error,
    step_mask,
    weights_to_numpy,
)
from netae.score import padded_values, resolve_device, score_features, score_windows, to_device, torch_threads
from netae.tables import Features

__all__ = [
    "DistInfo",
    "EpochStats",
    "PartSource",
    "TrainPart",
    "TrainResult",
    "dist_info",
    "finish_distributed",
    "held_out",
    "train_model",
    "train_parts",
    "validation_scores",
]

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
    world_size: int = 1
    max_buffer_bytes: int = 0


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


@dataclass(frozen=True, slots=True)
class DistInfo:
    """This process's place in a torchrun job (rank 0 of 1 outside torchrun)."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_info() -> DistInfo:
    """Rank and world size from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, ...)."""
    env = os.environ
    world = int(env.get("WORLD_SIZE", "1"))
    return DistInfo(
        rank=int(env.get("RANK", "0")),
        world_size=world,
        local_rank=int(env.get("LOCAL_RANK", "0")),
        local_world_size=int(env.get("LOCAL_WORLD_SIZE", str(world))),
    )


def _init_distributed(device: str) -> DistInfo:
    """Join the process group once (NCCL on CUDA, gloo on CPU); a no-op in a single process."""
    info = dist_info()
    if info.world_size <= 1:
        return info
    import torch.distributed as dist

    if device == "cuda":
        torch.cuda.set_device(info.local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device == "cuda" else "gloo")
    return info


def finish_distributed() -> None:
    """Wait for every rank (rank 0 has written the model), then leave the process group."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _threads_per_rank(threads: int, info: DistInfo) -> int:
    """``threads``, or with 0 this machine's cores shared among its ranks."""
    if threads > 0 or info.local_world_size <= 1:
        return threads
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores // info.local_world_size)


def _all_sum(values: list[float], device: str, info: DistInfo) -> list[float]:
    if info.world_size <= 1:
        return values
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return [float(v) for v in t.cpu().tolist()]


@dataclass(frozen=True, slots=True)
class TrainPart:
    """One loaded piece of the training set: scaled features and each flow's validation flag."""

    features: Features
    is_val: npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class PartSource:
    """A training set in pieces loaded one at a time (NOTE [streaming]).

    ``n_bytes[i]`` is what piece ``i``'s scaled values take in memory; ``load(i)`` reads it.
    The counts describe the whole set (they size the learning-rate schedule and the logs).
    """

    n_bytes: tuple[int, ...]
    n_features: int
    n_fit_windows: int
    n_fit_packets: int
    n_val_windows: int
    load: Callable[[int], TrainPart]

    @classmethod
    def in_memory(cls, features: Features, is_val: npt.NDArray[np.bool_], *, max_packets: int) -> PartSource:
        windows = make_windows(features.offsets, max_packets)
        win_val = is_val[windows.flow]
        part = TrainPart(features, is_val)
        return cls(
            n_bytes=(features.values.nbytes,),
            n_features=features.values.shape[1],
            n_fit_windows=int((~win_val).sum()),
            n_fit_packets=int(windows.length[~win_val].sum()),
            n_val_windows=int(win_val.sum()),
            load=lambda _i: part,
        )


@dataclass(frozen=True, slots=True)
class _Loaded:
    """A buffer load: the padded values of its pieces, their windows and validation flags."""

    values_z: npt.NDArray[np.float32]
    offsets: npt.NDArray[np.int64]
    is_val: npt.NDArray[np.bool_]
    names: tuple[str, ...]

    @property
    def n_bytes(self) -> int:
        """The loaded pieces' values (as ``PartSource.n_bytes`` counts them), not the padding row."""
        return int(self.values_z[:-1].nbytes)


def _load_group(source: PartSource, group: list[int]) -> _Loaded:
    """Load the pieces of ``group`` into one padded values buffer (NOTE [streaming])."""
    if len(group) == 1:
        part = source.load(group[0])
        return _Loaded(padded_values(part.features.values), part.features.offsets, part.is_val, part.features.names)
    n_rows = sum(source.n_bytes[i] for i in group) // (4 * source.n_features)
    values_z = np.empty((n_rows + 1, source.n_features), np.float32)
    offsets = [np.zeros(1, np.int64)]
    flags = []
    names: tuple[str, ...] = ()
    row = 0
    for i in group:
        part = source.load(i)
        n = len(part.features.values)
        if row + n > n_rows:
            raise ValueError(f"piece {i} holds more rows than its size says")
        values_z[row : row + n] = part.features.values
        offsets.append(part.features.offsets[1:] + row)
        flags.append(part.is_val)
        names = part.features.names
        row += n
    values_z[row] = 0.0
    return _Loaded(values_z[: row + 1], np.concatenate(offsets), np.concatenate(flags), names)


def _plan_groups(
    n_bytes: tuple[int, ...], buffer_bytes: int | None, rng: np.random.Generator | None
) -> list[list[int]]:
    """Pieces grouped into buffer loads of at most ``buffer_bytes`` (at least one piece each).

    With no cap, or when everything fits, one group in the given order; otherwise the order
    is shuffled with ``rng`` (none: kept) and cut greedily.
    """
    n = len(n_bytes)
    if buffer_bytes is None or sum(n_bytes) <= buffer_bytes:
        return [list(range(n))]
    order = rng.permutation(n).tolist() if rng is not None else list(range(n))
    groups: list[list[int]] = []
    used = 0
    for i in order:
        if groups and used + n_bytes[i] <= buffer_bytes:
            groups[-1].append(i)
            used += n_bytes[i]
        else:
            groups.append([i])
            used = n_bytes[i]
    return groups


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
    is_val = np.asarray(is_val, dtype=np.bool_)
    if is_val.shape != (features.n_flows,):
        raise ValueError(f"is_val must have shape ({features.n_flows},), got {is_val.shape}")
    source = PartSource.in_memory(features, is_val, max_packets=settings.flows.max_packets)
    return train_parts(source, settings=settings, on_epoch=on_epoch)


def train_parts(
    source: PartSource,
    *,
    settings: Settings,
    buffer_bytes: int | None = None,
    on_epoch: Callable[[EpochStats], None] | None = None,
) -> TrainResult:
    """``train_model`` over a training set loaded piece by piece within ``buffer_bytes``.

    See NOTE [streaming] for when the result equals the in-memory one, and NOTE [distributed]
    for torchrun. ``on_epoch`` is called on rank 0 only.
    """
    device = resolve_device(settings.train.device)
    info = _init_distributed(device)
    threads = _threads_per_rank(settings.train.threads, info)
    with torch_threads(threads) if device == "cpu" else contextlib.nullcontext(0):
        return _fit(source, settings=settings, device=device, info=info, buffer_bytes=buffer_bytes, on_epoch=on_epoch)


def _fit(
    source: PartSource,
    *,
    settings: Settings,
    device: str,
    info: DistInfo,
    buffer_bytes: int | None,
    on_epoch: Callable[[EpochStats], None] | None,
) -> TrainResult:
    """The body of ``train_parts`` on a resolved device, inside its thread setting: the epoch loop
    with early stopping on the validation loss (the training loss without validation flows)."""
    if source.n_fit_windows == 0:
        raise InputError("no training flows to fit the model on (every flow is empty or held out for validation)")
    ts = settings.train
    run = _Trainer.start(source, settings=settings, device=device, info=info, buffer_bytes=buffer_bytes)
    history: list[EpochStats] = []
    best_loss, best_epoch = math.inf, 0
    best_state: dict[str, torch.Tensor] = {}
    for epoch in range(1, ts.epochs + 1):
        t0 = time.perf_counter()
        lr = run.optimizer.param_groups[0]["lr"]
        train_loss = run.fit_epoch()
        fit_seconds = time.perf_counter() - t0
        val_loss = run.validation_loss()
        watched = val_loss if source.n_val_windows else train_loss
        is_best = watched < best_loss
        if is_best:
            best_loss, best_epoch = watched, epoch
            best_state = {k: v.detach().clone() for k, v in run.model.state_dict().items()}
        stats = EpochStats(
            epoch=epoch,
            n_epochs=ts.epochs,
            train_loss=train_loss,
            val_loss=val_loss,
            seconds=time.perf_counter() - t0,
            packets_per_s=source.n_fit_packets / max(fit_seconds, 1e-9),
            learning_rate=lr,
            is_best=is_best,
        )
        history.append(stats)
        if on_epoch is not None and info.is_main:
            on_epoch(stats)
        if _should_stop(stats, best_epoch=best_epoch, patience=ts.patience, is_main=info.is_main):
            break
    if best_state:
        run.model.load_state_dict(best_state)
    return TrainResult(
        weights=weights_to_numpy(run.model),
        history=tuple(history),
        best_epoch=best_epoch,
        device=device,
        input_path=run.input_path,
        world_size=info.world_size,
        max_buffer_bytes=run.max_buffer,
    )


def _should_stop(stats: EpochStats, *, best_epoch: int, patience: int, is_main: bool) -> bool:
    """Early stopping: a non-finite training loss, or ``patience`` epochs without a new best."""
    if not math.isfinite(stats.train_loss):
        if is_main:
            log.warning("training loss is not finite at epoch %d; stopping", stats.epoch)
        return True
    if stats.epoch - best_epoch >= patience:
        if is_main:
            log.info("no improvement for %d epochs; stopping at epoch %d", patience, stats.epoch)
        return True
    return False


@dataclass(slots=True)
class _Trainer:
    """One training run's model, optimiser and data: the batch plan and the passes of an epoch."""

    source: PartSource
    settings: Settings
    device: str
    info: DistInfo
    buffer_bytes: int | None
    input_path: str
    model: FlowAutoencoder
    net: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    autocast_dtype: torch.dtype | None
    rng: np.random.Generator
    shard_rng: np.random.Generator
    cached: _Loaded | None
    max_buffer: int = 0

    @classmethod
    def start(
        cls, source: PartSource, *, settings: Settings, device: str, info: DistInfo, buffer_bytes: int | None
    ) -> _Trainer:
        """Seeded model and optimiser; the whole training set loaded once when it fits the buffer."""
        ts = settings.train
        input_path = resolve_input_path(settings.model.input_path, device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(ts.seed)
            model = build_model(source.n_features, settings.model)
        model.to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=ts.learning_rate)
        n_batches = math.ceil(source.n_fit_windows / ts.batch_size)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=max(1, ts.epochs * n_batches), eta_min=ts.learning_rate * FINAL_LR_FRACTION
        )
        autocast_dtype = _probe_autocast(model, np.zeros((3, source.n_features), np.float32), device, input_path)
        net: torch.nn.Module = model
        if info.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel

            net = DistributedDataParallel(model, device_ids=[info.local_rank] if device == "cuda" else None)
        if info.is_main:
            log.info(
                "training on %s (%s path%s%s): %d fit windows (%d packets), %d validation windows, %d piece(s)",
                device, input_path, ", bf16 autocast" if autocast_dtype is not None else "",
                f", {info.world_size} ranks" if info.world_size > 1 else "", source.n_fit_windows,
                source.n_fit_packets, source.n_val_windows, len(source.n_bytes),
            )  # fmt: skip
        fits = len(_plan_groups(source.n_bytes, buffer_bytes, None)) == 1
        cached = _load_group(source, list(range(len(source.n_bytes)))) if fits else None
        return cls(
            source=source, settings=settings, device=device, info=info, buffer_bytes=buffer_bytes,
            input_path=input_path, model=model, net=net, optimizer=optimizer, scheduler=scheduler,
            autocast_dtype=autocast_dtype, rng=np.random.default_rng(ts.seed),
            shard_rng=np.random.default_rng([ts.seed, 1]), cached=cached,
            max_buffer=cached.n_bytes if cached is not None else 0,
        )  # fmt: skip

    def loads(self, groups: list[list[int]]) -> Iterator[_Loaded]:
        """The buffer loads of ``groups`` (NOTE [streaming]), or the one cached load."""
        if self.cached is not None:
            yield self.cached
            return
        for group in groups:
            loaded = _load_group(self.source, group)
            self.max_buffer = max(self.max_buffer, loaded.n_bytes)
            yield loaded
            del loaded

    def fit_epoch(self) -> float:
        """One pass over the fit windows in length-bucketed batches; the mean training loss."""
        ts, world = self.settings.train, self.info.world_size
        self.net.train()
        loss_sum = torch.zeros((), device=self.device)
        groups = _plan_groups(self.source.n_bytes, self.buffer_bytes, self.shard_rng) if self.cached is None else [[]]
        for loaded in self.loads(groups):
            windows = make_windows(loaded.offsets, self.settings.flows.max_packets)
            fit_idx = np.flatnonzero(~loaded.is_val[windows.flow])
            fit_start, fit_len = windows.start[fit_idx], windows.length[fit_idx]
            order, bounds = length_batches(fit_len, batch_size=ts.batch_size, rng=self.rng, by=ts.batching)
            for b in range(len(bounds) - 1):
                sel = order[bounds[b] : bounds[b + 1]]
                n_batch_packets = float(fit_len[sel].sum())
                loss = self._step(loaded.values_z, fit_start, fit_len, sel, n_batch_packets)
                loss_sum += loss.detach() * (n_batch_packets / world)
        return _all_sum([float(loss_sum)], self.device, self.info)[0] / self.source.n_fit_packets

    def _step(
        self,
        values_z: npt.NDArray[np.float32],
        fit_start: npt.NDArray[np.int64],
        fit_len: npt.NDArray[np.int64],
        sel: npt.NDArray[np.int64],
        n_batch_packets: float,
    ) -> torch.Tensor:
        """One optimiser step on the batch ``sel`` (this rank's slice of it: NOTE [distributed])."""
        world, rank, device = self.info.world_size, self.info.rank, self.device
        weight = 1.0
        if world > 1:
            mine = sel[rank::world]
            # More ranks than windows in this batch: run one window with weight 0, so
            # that this rank still joins the step's all-reduce.
            sel, weight = (mine, float(world)) if len(mine) else (sel[:1], 0.0)
        lengths = fit_len[sel]
        x = to_device(gather_batch(values_z, fit_start[sel], lengths), device)
        lengths_dev = to_device(lengths, device)
        dtype = self.autocast_dtype
        with torch.autocast(device, dtype=dtype or torch.float32, enabled=dtype is not None):
            recon = self.net(x, torch.from_numpy(lengths), lengths_dev, input_path=self.input_path)
        mask = step_mask(lengths_dev, x.shape[1])
        if world > 1:
            loss = squared_error(x, recon, mask).sum() * (weight / (n_batch_packets * x.shape[2]))
        else:
            loss = masked_mse(x, recon, mask)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.settings.train.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        return loss

    def validation_loss(self) -> float:
        """Masked MSE over every validation packet, summed over ranks; NaN without validation flows."""
        if not self.source.n_val_windows:
            return math.nan
        world, rank = self.info.world_size, self.info.rank
        val_sum, val_n = 0.0, 0.0
        for loaded in self.loads(_plan_groups(self.source.n_bytes, self.buffer_bytes, None)):
            windows = make_windows(loaded.offsets, self.settings.flows.max_packets)
            val_windows = windows.take(np.flatnonzero(loaded.is_val[windows.flow])[rank::world])
            s, n = _window_error_sums(
                self.model, loaded.values_z, val_windows, device=self.device, input_path=self.input_path
            )
            val_sum, val_n = val_sum + s, val_n + n
        val_sum, val_n = _all_sum([val_sum, val_n], self.device, self.info)
        return val_sum / val_n if val_n else math.nan


def validation_scores(
    weights: dict[str, np.ndarray],
    source: PartSource,
    *,
    settings: Settings,
    device: str,
    buffer_bytes: int | None = None,
    feature_weights: npt.NDArray[np.float32] | None = None,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Scores and per-feature errors of every validation flow, in flow order, from all ranks.

    Each rank scores every ``world_size``-th validation flow of a buffer load; all_gather puts
    the results back in flow order, so every rank returns the same arrays (the threshold's and
    the feature weights' input). Returns ``(scores (n_val,), feature_error (n_val, n_features))``.
    """
    info = dist_info()
    out: list[npt.NDArray[np.float32]] = []
    out_feat: list[npt.NDArray[np.float32]] = []
    for group in _plan_groups(source.n_bytes, buffer_bytes, None):
        if len(group) == 1:
            part = source.load(group[0])
            features, is_val = part.features, part.is_val
        else:
            loaded = _load_group(source, group)
            features = Features(loaded.values_z[:-1], loaded.offsets, loaded.names)
            is_val = loaded.is_val
        val_idx = np.flatnonzero(is_val)
        mine = val_idx[info.rank :: info.world_size]
        res = score_features(
            weights, _take_flows(features, mine), settings=settings, device=device, feature_weights=feature_weights
        )
        local, local_feat = res.score, res.feature_error
        if info.world_size > 1:
            import torch.distributed as dist

            gathered: list[tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]] | None] = [None] * info.world_size
            dist.all_gather_object(gathered, (local, local_feat))
            scores = np.empty(len(val_idx), np.float32)
            feat = np.empty((len(val_idx), local_feat.shape[1]), np.float32)
            for r, got in enumerate(gathered):
                assert got is not None
                scores[r :: info.world_size] = got[0]
                feat[r :: info.world_size] = got[1]
            out.append(scores)
            out_feat.append(feat)
        else:
            out.append(local)
            out_feat.append(local_feat)
    if not out:
        return np.zeros(0, np.float32), np.zeros((0, source.n_features), np.float32)
    return np.concatenate(out), np.concatenate(out_feat)


def held_out(masks: list[npt.NDArray[np.bool_]]) -> list[npt.NDArray[np.bool_]]:
    """The validation flags of each part, or every fifth flow (counted across the parts) held out
    instead where the hash split holds out all flows or none (too few flows for it)."""
    n_flows = sum(len(m) for m in masks)
    n_val = sum(int(m.sum()) for m in masks)
    if 0 < n_val < n_flows:
        return masks
    if n_flows < 2:
        raise InputError("training needs at least 2 flows; give more traffic")
    every_fifth = np.arange(n_flows) % 5 == 0
    return np.split(every_fifth, np.cumsum([len(m) for m in masks[:-1]]).astype(np.int64))


def _take_flows(features: Features, idx: npt.NDArray[np.int64]) -> Features:
    """The flows ``idx`` (increasing) of ``features``, in that order."""
    lengths = features.lengths
    keep = np.zeros(features.n_flows, dtype=bool)
    keep[idx] = True
    new_lengths = lengths[keep]
    offsets = np.zeros(len(new_lengths) + 1, dtype=np.int64)
    np.cumsum(new_lengths, out=offsets[1:])
    return Features(values=features.values[np.repeat(keep, lengths)], offsets=offsets, names=features.names)


def _window_error_sums(
    model: FlowAutoencoder, values_z: npt.NDArray[np.float32], windows: Windows, *, device: str, input_path: str
) -> tuple[float, float]:
    """(sum of window error x packets, packets) over ``windows``: the parts of ``evaluate_loss``."""
    if windows.n_windows == 0:
        return 0.0, 0.0
    errors = score_windows(model, values_z, windows, device=device, input_path=input_path, per_packet=False)
    weights = windows.length.astype(np.float64)
    return float(np.dot(errors.score.astype(np.float64), weights)), float(weights.sum())


def evaluate_loss(
    model: FlowAutoencoder, values_z: npt.NDArray[np.float32], windows: Windows, *, device: str, input_path: str
) -> float:
    """Masked MSE over every real packet of ``windows`` (packet-weighted); NaN with no windows."""
    if windows.n_windows == 0:
        return math.nan
    errors = score_windows(model, values_z, windows, device=device, input_path=input_path, per_packet=False)
    weights = windows.length.astype(np.float64)
    return float(np.dot(errors.score.astype(np.float64), weights) / weights.sum())
