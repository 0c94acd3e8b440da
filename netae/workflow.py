"""The steps behind ``netae train`` and ``netae score``, free of any CLI concern.

torch is imported inside the functions (through ``train``/``score``), so importing this module
stays cheap.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from netae.capture.skips import skip_summary, unsupported_link_types
from netae.config import Settings, given, settings_from_dict
from netae.errors import CalibrationRefused, CaptureError, ConfigError, InputError, NetaeError, UnsupportedLinkType
from netae.features import Scaler, fit_scaler
from netae.flows import with_aggregate_notes
from netae.jit import numba
from netae.modelfile import Calibration as CalibrationRecord
from netae.modelfile import EpochRecord, TrainedModel, TrainingSummary, dump_model, load_model
from netae.pipeline import Featurized, featurize_files, validation_mask
from netae.tables import Features, FlowTable, PacketTable, ScoreTable, SkipCounts
from netae.threshold import Threshold, check_threshold, fit_threshold

if TYPE_CHECKING:
    from netae.explain import FeatureRanges
    from netae.score import FlowScores
    from netae.train import EpochStats, PartSource, TrainResult

__all__ = ["ScoreRun", "TrainRun", "build_score_table", "score_captures", "train_captures"]

log = logging.getLogger(__name__)

TOP_K = 3


@dataclass(frozen=True, slots=True)
class TrainRun:
    """What a training run produced: the model as written to ``path`` (its digest set on rank 0)."""

    path: Path
    model: TrainedModel
    data: Featurized
    val_scores: npt.NDArray[np.float32]
    shard_bytes: tuple[int, ...] = ()
    max_buffer_bytes: int = 0

    @property
    def threshold(self) -> Threshold:
        return self.model.threshold


def require_flows(data: Featurized) -> None:
    """Refuse input that produced no flows, with a message saying why."""
    if data.flows.n_flows:
        return
    if data.failures and len(data.failures) == len(data.files):
        raise InputError(
            data.failures[0][1] if len(data.failures) == 1 else f"no input was readable: {data.failures[0][1]}"
        )
    total = SkipCounts()
    for c in data.counts:
        total.merge(c)
    detail = skip_summary(total.skipped, limit=4, sep="; ")
    names = ", ".join(data.files[:3]) + (" ..." if len(data.files) > 3 else "")
    if total.records == 0:
        raise InputError(f"{names}: the capture holds no packets")
    unsupported = unsupported_link_types(total)
    if unsupported and sum(unsupported.values()) == total.records:
        from netae.capture.linktypes import LINK_TYPES, link_type_name

        kinds = ", ".join(f"{d} ({link_type_name(d)})" for d in sorted(unsupported))
        supported = ", ".join(f"{d} ({lt.name})" for d, lt in sorted(LINK_TYPES.items()))
        raise UnsupportedLinkType(
            f"{names}: uses link type {kinds}, which netae does not decode; supported link types: {supported}"
        )
    raise InputError(f"{names}: no IP traffic in {total.records} records" + (f" (skipped: {detail})" if detail else ""))


def scaled(features: Features, scaler: Scaler) -> Features:
    return scaler.transform(features)


def train_captures(
    sources: list[str],
    *,
    output: Path,
    settings: Settings,
    on_file: Callable[[str, SkipCounts], None] | None = None,
    on_epoch: Callable[[EpochStats], None] | None = None,
    shard_buffer_mb: float | None = None,
) -> TrainRun:
    """Featurize, split, fit scaler and weights on the fit part, threshold on validation, save.

    When every source is a feature file or sharded dataset, shards are streamed (NOTE
    [streaming] in train.py): one pass fits the scaler, then training holds at most
    ``shard_buffer_mb`` of scaled shards at a time (no cap: all of them). Under torchrun every
    rank runs this and only rank 0 writes ``output``.
    """
    from netae.dataset import is_dataset
    from netae.score import engine_for, fit_feature_weights
    from netae.train import PartSource, dist_info, finish_distributed, train_parts, validation_scores

    t0 = time.perf_counter()
    buffer_bytes = None if shard_buffer_mb is None else max(1, int(shard_buffer_mb * 2**20))
    if sources and all(s != "-" and is_dataset(s) for s in sources):
        source, scaler, summary = dataset_source(sources, settings=settings)
        data = Featurized(
            packets=PacketTable.empty(),
            flows=FlowTable.empty(),
            features=Features(np.zeros((0, len(scaler.names)), np.float32), np.zeros(1, np.int64), scaler.names),
            files=summary.files,
            counts=(),
        )
    else:
        data = load_training_data(sources, settings=settings, on_file=on_file)
        require_flows(data)
        is_val = _split(data.flows, settings.train.val_fraction)
        scaler = fit_scaler(data.features, np.repeat(~is_val, data.features.lengths))
        source = PartSource.in_memory(scaler.transform(data.features), is_val, max_packets=settings.flows.max_packets)
        summary = _DatasetSummary(
            files=data.files,
            n_flows=data.flows.n_flows,
            n_packets=len(data.flows.order),
            n_val_flows=int(is_val.sum()),
        )
    result = train_parts(source, settings=settings, buffer_bytes=buffer_bytes, on_epoch=on_epoch)
    # NOTE [feature weights] in score.py: weights from unweighted validation errors, then the
    # threshold on the weighted validation scores.
    _, unit_error = validation_scores(
        result.weights, source, settings=settings, device=result.device, buffer_bytes=buffer_bytes
    )
    feature_weights = fit_feature_weights(unit_error, names=scaler.names, context_weight=settings.model.context_weight)
    val_scores, _ = validation_scores(
        result.weights, source, settings=settings, device=result.device, buffer_bytes=buffer_bytes,
        feature_weights=feature_weights,
    )  # fmt: skip
    extra: dict[str, Any] = {}
    if data.flows.n_flows:  # training ranges for the explanations (NOTE [explanations] in explain.py)
        from netae.explain import fit_feature_ranges

        extra["feature_ranges"] = fit_feature_ranges(data.features).to_dict()
    model = TrainedModel(
        weights=result.weights,
        scaler=scaler,
        feature_weights=feature_weights,
        settings=settings,
        threshold=fit_threshold(val_scores, settings.threshold),
        threshold_engine=engine_for(result.device),
        training=_training_summary(result, summary, data, val_scores, seconds=time.perf_counter() - t0),
        created=_now(),
        extra=extra,
    )
    if dist_info().is_main:
        model = dump_model(output, model)
    finish_distributed()
    return TrainRun(
        path=output,
        model=model,
        data=data,
        val_scores=val_scores,
        shard_bytes=source.n_bytes,
        max_buffer_bytes=result.max_buffer_bytes,
    )


def _now() -> str:
    return datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _training_summary(
    result: TrainResult, summary: _DatasetSummary, data: Featurized, val_scores: npt.NDArray[np.float32], *,
    seconds: float,
) -> TrainingSummary:  # fmt: skip
    """What the model file records about a training run."""
    return TrainingSummary(
        inputs=tuple(str(Path(s).name) if s != "-" else "-" for s in data.files),
        failed_inputs=tuple(name for name, _ in data.failures),
        flows=summary.n_flows,
        packets=summary.n_packets,
        fit_flows=summary.n_flows - summary.n_val_flows,
        val_flows=summary.n_val_flows,
        epochs=len(result.history),
        best_epoch=result.best_epoch,
        device=result.device,
        input_path=result.input_path,
        ranks=result.world_size,
        history=tuple(
            EpochRecord(e.epoch, e.train_loss, e.val_loss, round(e.seconds, 3), round(e.packets_per_s))
            for e in result.history
        ),
        val_score_quantiles={
            str(q): float(np.quantile(val_scores, q)) for q in (0.5, 0.9, 0.99, 0.999) if len(val_scores)
        },
        seconds=round(seconds, 2),
    )


def _split(flows: FlowTable, fraction: float) -> npt.NDArray[np.bool_]:
    """The hash split of the flows (``train.held_out`` when it holds out all or none)."""
    from netae.train import held_out

    return held_out([validation_mask(flows, fraction)])[0]


@dataclass(frozen=True, slots=True)
class _DatasetSummary:
    files: tuple[str, ...]
    n_flows: int
    n_packets: int
    n_val_flows: int


def dataset_source(sources: list[str], *, settings: Settings) -> tuple[PartSource, Scaler, _DatasetSummary]:
    """One streaming pass over the shards of feature files / datasets: split, scaler, sizes.

    Shards are read again, one at a time, by the returned source's ``load`` (NOTE [streaming]).
    The split is the per-flow hash, as in memory; when it holds out all or none of the flows,
    every fifth flow (counted across shards) is held out instead.
    """
    from netae.dataset import dataset_files, read_shard
    from netae.features import ScalerAccumulator
    from netae.train import PartSource, TrainPart, held_out

    files = [f for s in sources for f in dataset_files(s)]
    masks: list[npt.NDArray[np.bool_]] = []
    lengths_all: list[npt.NDArray[np.int64]] = []
    n_bytes: list[int] = []
    inputs: list[str] = []
    names: tuple[str, ...] | None = None
    acc = ScalerAccumulator(names=())
    for f in files:
        shard = read_shard(f, settings=settings)
        if names is None:
            names = shard.features.names
            acc = ScalerAccumulator(names=names)
        elif shard.features.names != names:
            raise ConfigError(f"{f}: feature files disagree on the feature list")
        masks.append(validation_mask(shard.flows, settings.train.val_fraction))
        lengths_all.append(shard.features.lengths)
        n_bytes.append(int(shard.features.values.nbytes))
        acc.update(shard.features, np.repeat(~masks[-1], shard.features.lengths))
        inputs.extend(shard.source_files)
    n_flows = sum(len(m) for m in masks)
    if names is None or n_flows == 0:
        raise InputError(f"{', '.join(sources[:3])}: the dataset holds no flows")
    n_val = sum(int(m.sum()) for m in masks)
    masks = held_out(masks)
    if n_val in (0, n_flows):  # the fallback changed the split: fit the scaler again
        acc = ScalerAccumulator(names=names)
        for f, m in zip(files, masks, strict=True):
            shard = read_shard(f, settings=settings)
            acc.update(shard.features, np.repeat(~m, shard.features.lengths))
    scaler = acc.finish()
    width = settings.flows.max_packets
    n_fit_windows = n_fit_packets = n_val_windows = 0
    for lengths, m in zip(lengths_all, masks, strict=True):
        n_win = (lengths + width - 1) // width
        covered = np.where(lengths <= width, lengths, n_win * width)  # the last window overlaps
        n_fit_windows += int(n_win[~m].sum())
        n_fit_packets += int(covered[~m].sum())
        n_val_windows += int(n_win[m].sum())

    def load(i: int) -> TrainPart:
        return TrainPart(scaler.transform(read_shard(files[i], settings=settings).features), masks[i])

    source = PartSource(
        n_bytes=tuple(n_bytes),
        n_features=len(names),
        n_fit_windows=n_fit_windows,
        n_fit_packets=n_fit_packets,
        n_val_windows=n_val_windows,
        load=load,
    )
    summary = _DatasetSummary(
        files=tuple(dict.fromkeys(inputs)),
        n_flows=n_flows,
        n_packets=int(sum(int(x.sum()) for x in lengths_all)),
        n_val_flows=int(sum(int(m.sum()) for m in masks)),
    )
    return source, scaler, summary


def load_training_data(
    sources: list[str], *, settings: Settings, on_file: Callable[[str, SkipCounts], None] | None = None
) -> Featurized:
    """Captures are featurized; Parquet feature files and dataset directories are read as they are."""
    from netae.dataset import is_dataset, read_dataset

    datasets = [s for s in sources if s != "-" and is_dataset(s)]
    captures = [s for s in sources if s not in datasets]
    data = featurize_files(captures, settings=settings, on_file=on_file) if captures else None
    if not datasets:
        assert data is not None
        return data
    parts: list[tuple[FlowTable, Features, tuple[str, ...]]] = []
    if data is not None and data.flows.n_flows:
        parts.append((data.flows, data.features, data.files))
    for shard in read_dataset(datasets, settings=settings):
        parts.append((shard.flows, shard.features, shard.source_files))
    flows, features, files = merge_flow_features(parts)
    return Featurized(
        packets=PacketTable.empty(),
        flows=flows,
        features=features,
        files=files,
        counts=data.counts if data else (),
        failures=data.failures if data else (),
    )


def merge_flow_features(
    parts: list[tuple[FlowTable, Features, tuple[str, ...]]],
) -> tuple[FlowTable, Features, tuple[str, ...]]:
    """Concatenate flows and their features (packet rows renumbered, file ids shifted)."""
    parts = [p for p in parts if p[0].n_flows]
    if not parts:
        return FlowTable.empty(), Features(np.zeros((0, 0), np.float32), np.zeros(1, np.int64), ()), ()
    names = parts[0][1].names
    for _, feats, files in parts:
        if feats.names != names:
            raise ConfigError(f"feature files disagree on the feature list ({files[0] if files else '?'})")
    file_base = np.cumsum([0] + [len(files) for _, _, files in parts[:-1]])
    pkt_base = np.cumsum([0] + [len(f.order) for f, _, _ in parts[:-1]])
    cols = {name: np.concatenate([f.column_dict()[name] for f, _, _ in parts]) for name in parts[0][0].column_dict()}
    cols["file_id"] = np.concatenate([f.file_id + b for (f, _, _), b in zip(parts, file_base, strict=True)]).astype(
        np.int32
    )
    offsets = np.concatenate([[0]] + [f.offsets[1:] + b for (f, _, _), b in zip(parts, pkt_base, strict=True)])
    offsets = offsets.astype(np.int64)
    n_pkts = int(offsets[-1])
    flows = FlowTable(
        **cols,
        order=np.arange(n_pkts, dtype=np.int64),
        offsets=offsets,
        is_fwd=np.concatenate([f.is_fwd for f, _, _ in parts]),
    )
    values = np.concatenate([x.values for _, x, _ in parts])
    files = tuple(name for _, _, fs in parts for name in fs)
    return flows, Features(values=values, offsets=offsets, names=names), files


def model_settings(model: TrainedModel) -> Settings:
    """The settings the model was trained with (checked when the file was loaded)."""
    return model.settings


@dataclass(frozen=True, slots=True)
class ScoreRun:
    table: ScoreTable
    data: Featurized
    scores: FlowScores
    model: TrainedModel


def score_captures(
    sources: list[str],
    *,
    model_path: Path,
    threshold: float | None = None,
    device: str = "auto",
    on_file: Callable[[str, SkipCounts], None] | None = None,
    engine: str = "auto",
) -> ScoreRun:
    """Featurize with the model's settings, score every flow, compare with the threshold."""
    model = load_model(model_path)
    data = featurize_files(sources, settings=model.settings, on_file=on_file)
    require_flows(data)
    return score_featurized(data, model, threshold=threshold, device=device, engine=engine)


def score_featurized(
    data: Featurized, model: TrainedModel, *, threshold: float | None, device: str, engine: str = "auto"
) -> ScoreRun:
    """Score featurized flows with ``model``; ``threshold`` overrides the model's."""
    from netae.score import score_features

    settings = model.settings
    model.scaler.check(data.features)
    value = check_threshold(threshold, source="--threshold") if threshold is not None else model.threshold.value_
    scores = score_features(
        dict(model.weights), data.features, settings=settings, device=device,
        feature_weights=model.feature_weights, scaler=model.scaler, engine=engine,
    )  # fmt: skip
    from netae.explain import FeatureRanges

    ranges = FeatureRanges.from_meta(
        model.extra, model.scaler.names, scaler_mean=model.scaler.mean_, scaler_scale=model.scaler.scale_
    )
    table = build_score_table(
        data, scores, threshold=value, model_id=model.model_id, window_s=settings.context.window_s, ranges=ranges
    )
    return ScoreRun(table=table, data=data, scores=scores, model=model)


def _worst_python(offsets, err, k, out):  # type: ignore[no-untyped-def]  # compiled below
    """Top-k packet positions per flow by error, highest first, ties to the earlier packet."""
    for f in range(len(offsets) - 1):
        a, b = offsets[f], offsets[f + 1]
        n = 0
        for i in range(a, b):
            e = err[i]
            # Insert i among the n best so far (kept sorted by error, descending).
            j = n if n < k else k
            while j > 0 and err[a + out[f, j - 1]] < e:
                j -= 1
            if j < k:
                last = n if n < k else k - 1
                for m in range(last, j, -1):
                    out[f, m] = out[f, m - 1]
                out[f, j] = i - a
                if n < k:
                    n += 1


_worst_kernel: Any = numba.njit(cache=True, nogil=True)(_worst_python)  # numpy twin: tests/reference


def worst_packets(offsets: npt.NDArray[np.int64], err: npt.NDArray[np.float32], k: int) -> npt.NDArray[np.int64]:
    """(n_flows, k) positions within each flow of its k highest-error packets, -1 padded."""
    out = np.full((len(offsets) - 1, k), -1, dtype=np.int64)
    _worst_kernel(offsets, err, k, out)
    return out


def build_score_table(
    data: Featurized,
    scores: FlowScores,
    *,
    threshold: float,
    model_id: str,
    window_s: float = 300.0,
    ranges: FeatureRanges | None = None,
) -> ScoreTable:
    """Verdicts plus the worst packets, top features and explanations of every flow (vectorised).

    Explanations (``explain.py``) are written for the flagged flows only, which are then gathered
    into incidents (``incidents.py``) within the context window ``window_s``.
    """
    from netae.explain import explain_flows
    from netae.incidents import find_incidents

    flows = data.flows
    n_flows = flows.n_flows
    err = scores.packet_error
    k = TOP_K
    worst_idx = worst_packets(flows.offsets, err, k)
    pos = np.where(worst_idx >= 0, flows.offsets[:-1][:, None] + np.maximum(worst_idx, 0), 0)
    pkt_rows = flows.order[pos] if len(flows.order) else np.zeros_like(pos)
    valid = worst_idx >= 0
    worst_ts = np.where(valid, data.packets.ts_ns[pkt_rows] if len(flows.order) else 0, 0)
    worst_fwd = np.where(valid, flows.is_fwd[pos] if len(flows.order) else False, False)
    worst_len = np.where(valid, data.packets.ip_len[pkt_rows].astype(np.int64) if len(flows.order) else 0, 0)
    worst_err = np.where(valid, err[pos] if len(err) else 0, 0).astype(np.float32)
    top = np.argsort(-scores.feature_error, axis=1, kind="stable")[:, :k].astype(np.int64)
    score = scores.score.astype(np.float32)
    # Not finite: an anomaly, never "normal"; flood aggregates always are (NOTE [flood cap]).
    is_anomaly = ~(np.isfinite(score) & (score <= threshold)) | (flows.agg_flows > 0)
    first_rows = data.features.values[data.features.offsets[:-1][data.features.lengths > 0]]
    flow_values = np.zeros((n_flows, data.features.values.shape[1]), np.float32)
    flow_values[data.features.lengths > 0] = first_rows
    # Each flow's worst packet, for the explanations of packet columns.
    worst_rows = np.minimum(data.features.offsets[:-1] + np.maximum(worst_idx[:, 0], 0), max(len(err) - 1, 0))
    packet_values = data.features.values[worst_rows] if len(data.features.values) else flow_values
    explanations = explain_flows(
        flows,
        scores.feature_error,
        data.features.names,
        context=data.context,
        flow_values=flow_values,
        packet_values=packet_values,
        ranges=ranges,
        window_s=window_s,
        which=is_anomaly,
    )
    explanations = with_aggregate_notes(flows, explanations)
    table = ScoreTable(
        flows=flows,
        score=score,
        is_anomaly=is_anomaly,
        threshold=threshold,
        files=data.files,
        model_id=model_id,
        worst_idx=worst_idx,
        worst_ts_ns=worst_ts.astype(np.int64),
        worst_is_fwd=worst_fwd.astype(bool),
        worst_ip_len=worst_len.astype(np.int64),
        worst_error=worst_err,
        top_features=top,
        feature_names=data.features.names,
        explanations=explanations,
    )
    return replace(table, incidents=find_incidents(table, window_s=window_s))


# NOTE [calibration guards] documented in README.md ("Calibrate"): calibration must never be able
# to disarm a model silently, e.g. when its "benign" captures are mostly attacks.
CALIBRATION_MAX_FACTOR = 10.0  # the new threshold may move at most this factor up or down
CALIBRATION_MAX_FLAGGED = 0.05  # at most this fraction of the calibration flows flagged by the old threshold


@dataclass(frozen=True, slots=True)
class Calibration:
    """What ``calibrate_model`` did: the old and new threshold, and the guards' findings."""

    old: float
    new: Threshold
    flagged_fraction: float
    concerns: tuple[str, ...]


def calibration_concerns(old: float, new: float, flagged_fraction: float) -> tuple[str, ...]:
    """Why a recalibration looks unsafe (NOTE [calibration guards]); empty when it looks fine."""
    concerns = []
    factor = max(new / old, old / new) if old > 0 and new > 0 else math.inf
    if factor > CALIBRATION_MAX_FACTOR:
        concerns.append(f"the threshold would move from {old:.4g} to {new:.4g}, more than {CALIBRATION_MAX_FACTOR:g}x")
    if flagged_fraction > CALIBRATION_MAX_FLAGGED:
        concerns.append(
            f"the current model flags {flagged_fraction:.1%} of the calibration flows (more than "
            f"{CALIBRATION_MAX_FLAGGED:.0%}): they may not be benign"
        )
    return tuple(concerns)


def calibrate_model(
    model_path: Path,
    sources: list[str],
    *,
    output: Path,
    strategy: str | None = None,
    quantile: float | None = None,
    device: str = "auto",
    force: bool = False,
    on_file: Callable[[str, SkipCounts], None] | None = None,
) -> Calibration:
    """Score benign captures with a model, refit its threshold on them, write the model to ``output``.

    Refused (``CalibrationRefused``) when the guards find a concern, unless ``force``. The previous
    threshold is kept in the metadata's ``threshold_history``.
    """
    model = load_model(model_path)
    if quantile is not None and strategy is None:
        strategy = "quantile"  # a quantile given alone asks for the quantile strategy
    ts = model.settings.threshold
    ts = dataclasses.replace(ts, strategy=given(strategy, ts.strategy), quantile=given(quantile, ts.quantile))
    settings = dataclasses.replace(model.settings, threshold=ts).check()
    data = featurize_files(sources, settings=settings, on_file=on_file)
    require_flows(data)
    run = score_featurized(data, model, threshold=None, device=device)
    threshold = fit_threshold(run.table.score, settings.threshold)
    old = model.threshold.value_
    flagged = float(np.mean(run.table.is_anomaly)) if run.table.n_flows else 0.0
    concerns = calibration_concerns(old, threshold.value_, flagged)
    if concerns and not force:
        raise CalibrationRefused(
            f"calibration refused: {'; and '.join(concerns)}. Check the captures, or pass --force to write it anyway"
        )
    now = _now()
    record = CalibrationRecord(
        inputs=tuple(Path(s).name for s in data.files),
        flows=int(data.flows.n_flows),
        previous_threshold=old,
        created=now,
        flagged_by_previous=round(flagged, 6),
        forced=bool(concerns),
    )
    history = [*model.extra.get("threshold_history", []), {**model.to_meta()["threshold"], "replaced": now}]
    dump_model(
        output,
        dataclasses.replace(
            model, settings=settings, threshold=threshold, threshold_engine=run.scores.engine, calibration=record,
            extra={**model.extra, "threshold_history": history},
        ),
    )  # fmt: skip
    return Calibration(old=old, new=threshold, flagged_fraction=flagged, concerns=concerns)


@dataclass(frozen=True, slots=True)
class ShardResult:
    source: str
    file: str
    flows: int
    packets: int
    records: int
    skipped: dict[str, int]
    warnings: tuple[str, ...]
    error: str | None


def _stream_sources(
    out: Any, sources: list[str], *, settings: Settings
) -> tuple[list[SkipCounts], list[tuple[str, str]]]:
    """Featurize ``sources`` batch by batch into the ParquetStream ``out`` (bounded memory)."""
    from netae.pipeline import iter_featurized

    counts_all: list[SkipCounts] = []
    failures: list[tuple[str, str]] = []
    for file_id, source in enumerate(sources):
        counts = SkipCounts()
        counts_all.append(counts)
        try:
            for _, flows, features, _ in iter_featurized(source, file_id=file_id, settings=settings, counts=counts):
                out.write(flows, features)
        except CaptureError as exc:
            failures.append((source, str(exc)))
    if out.n_flows == 0:  # the same one-line reasons as batch featurizing gives
        require_flows(
            Featurized(
                packets=PacketTable.empty(), flows=FlowTable.empty(),
                features=Features(np.zeros((0, 0), np.float32), np.zeros(1, np.int64), ()),
                files=tuple(sources), counts=tuple(counts_all), failures=tuple(failures),
            )
        )  # fmt: skip
    return counts_all, failures


def featurize_shard(source: str, out_dir: str, index: int, settings_dict: dict[str, Any]) -> ShardResult:
    """Featurize one capture into one shard, streamed (runs in a worker process)."""
    from netae.dataset import ParquetStream

    settings = settings_from_dict(settings_dict)
    # A portable shard name: Parquet paths must be UTF-8, and a capture's name may not be.
    base = re.sub(r"[^A-Za-z0-9._-]", "_", Path(source).name) if source != "-" else "stdin"
    name = f"{index:05d}-{base}.parquet"
    out = ParquetStream(Path(out_dir) / name, files=(source,), settings=settings)
    try:
        with out:
            (c,), failures = _stream_sources(out, [source], settings=settings)
    except NetaeError as exc:
        return ShardResult(source, name, 0, 0, 0, {}, (), str(exc))
    err = failures[0][1] if failures else None
    return ShardResult(source, name, out.n_flows, out.n_packets, c.records, dict(c.skipped or {}),
                       tuple(c.warnings or ()), err)  # fmt: skip


def featurize_to(
    sources: list[str], output: Path, *, settings: Settings, workers: int = 1,
    on_shard: Callable[[ShardResult], None] | None = None,
) -> list[ShardResult]:  # fmt: skip
    """Write a Parquet file (``output`` ends in .parquet) or a sharded dataset directory.

    Either way captures are featurized as their flows close and written batch by batch, so
    memory is bounded by the open flows and one batch, not by the capture or the output.
    """
    from netae.dataset import ParquetStream, add_to_manifest, next_shard_index, read_parquet

    if output.suffix == ".parquet":
        out = ParquetStream(output, files=tuple(sources), settings=settings)
        with out:
            counts_all, failures = _stream_sources(out, sources, settings=settings)
        one_file: list[ShardResult] = []
        for i, (src, c) in enumerate(zip(sources, counts_all, strict=True)):
            err = next((m for name, m in failures if name == src), None)
            n_flows, n_packets = (out.n_flows, out.n_packets) if i == 0 else (0, 0)
            one_file.append(ShardResult(src, output.name, n_flows, n_packets, c.records, dict(c.skipped or {}),
                                       tuple(c.warnings or ()), err))  # fmt: skip
        return one_file
    workers = max(1, min(workers, len(sources), os.cpu_count() or 1))  # never more processes than work
    output.mkdir(parents=True, exist_ok=True)
    first = next_shard_index(output, settings=settings)  # more captures into a dataset: added, never over
    args = [(src, str(output), first + i, settings.to_dict()) for i, src in enumerate(sources)]
    results: list[ShardResult] = []
    if workers > 1 and len(sources) > 1 and "-" not in sources:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=workers) as pool:
            for r in pool.map(featurize_shard, *zip(*args, strict=True)):
                results.append(r)
                if on_shard:
                    on_shard(r)
    else:
        for a in args:
            r = featurize_shard(*a)
            results.append(r)
            if on_shard:
                on_shard(r)
    good = [r for r in results if r.error is None]
    if not good:
        raise InputError(f"no capture could be featurized: {results[0].error if results else 'no inputs'}")
    names = read_parquet(output / good[0].file).features.names
    shards = [{"file": r.file, "source": r.source, "flows": r.flows, "packets": r.packets} for r in good]
    add_to_manifest(output, shards, names=names, settings=settings)
    return results
