"""The steps behind ``netae train`` and ``netae score``, free of any CLI concern.

torch is imported inside the functions (through ``train``/``score``), so importing this module
stays cheap.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from netae import __version__
from netae.config import Settings, settings_from_dict
from netae.errors import ConfigError, IncompatibleModel, InputError
from netae.features import Scaler, fit_scaler
from netae.modelfile import ModelFile, dump_model, load_model
from netae.pipeline import Featurized, featurize_files, validation_mask
from netae.tables import Features, ScoreTable, SkipCounts
from netae.threshold import Threshold, fit_threshold

if TYPE_CHECKING:
    from netae.score import FlowScores
    from netae.train import EpochStats

__all__ = ["ScoreRun", "TrainRun", "build_score_table", "score_captures", "train_captures"]

log = logging.getLogger(__name__)

TOP_K = 3


@dataclass(frozen=True, slots=True)
class TrainRun:
    """What a training run produced (the model file is already written)."""

    path: Path
    meta: dict[str, Any]
    data: Featurized
    threshold: Threshold
    val_scores: npt.NDArray[np.float32]


def _describe_skips(counts: SkipCounts) -> str:
    if not counts.skipped:
        return ""
    parts = sorted(counts.skipped.items(), key=lambda kv: -kv[1])
    return "; ".join(f"{n} {reason}" for reason, n in parts[:4])


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
    detail = _describe_skips(total)
    names = ", ".join(data.files[:3]) + (" ..." if len(data.files) > 3 else "")
    if total.records == 0:
        raise InputError(f"{names}: the capture holds no packets")
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
) -> TrainRun:
    """Featurize, split, fit scaler and weights on the fit part, threshold on validation, save."""
    from netae.score import score_features
    from netae.train import train_model

    t0 = time.perf_counter()
    data = featurize_files(sources, settings=settings, on_file=on_file)
    require_flows(data)
    flows, features = data.flows, data.features
    is_val = validation_mask(flows, settings.train.val_fraction)
    if is_val.all() or not is_val.any():
        # Too few flows for a hash split: fall back to every fifth flow.
        is_val = np.zeros(flows.n_flows, dtype=bool)
        is_val[::5] = True
        if flows.n_flows < 2:
            raise InputError("training needs at least 2 flows; give more traffic")
    fit_rows = np.repeat(~is_val, features.lengths)
    scaler = fit_scaler(features, fit_rows)
    x = scaler.transform(features)
    result = train_model(x, is_val=is_val, settings=settings, on_epoch=on_epoch)
    val_x = _subset(x, is_val)
    val_scores = score_features(result.weights, val_x, settings=settings, device=result.device).score
    threshold = fit_threshold(val_scores, settings.threshold)
    history = [
        {"epoch": e.epoch, "train_loss": e.train_loss, "val_loss": e.val_loss, "seconds": round(e.seconds, 3)}
        for e in result.history
    ]
    meta: dict[str, Any] = {
        "netae_version": __version__,
        "created": datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "feature_names": list(features.names),
        "settings": settings.to_dict(),
        "threshold": threshold.to_dict(),
        "training": {
            "inputs": [str(Path(s).name) if s != "-" else "-" for s in data.files],
            "failed_inputs": [name for name, _ in data.failures],
            "flows": int(flows.n_flows),
            "packets": int(len(flows.order)),
            "fit_flows": int((~is_val).sum()),
            "val_flows": int(is_val.sum()),
            "epochs": len(result.history),
            "best_epoch": result.best_epoch,
            "device": result.device,
            "input_path": result.input_path,
            "history": history,
            "val_score_quantiles": {
                str(q): float(np.quantile(val_scores, q)) for q in (0.5, 0.9, 0.99, 0.999) if len(val_scores)
            },
            "seconds": round(time.perf_counter() - t0, 2),
        },
    }
    dump_model(output, weights=result.weights, scaler_mean=scaler.mean_, scaler_scale=scaler.scale_, meta=meta)
    return TrainRun(path=output, meta=meta, data=data, threshold=threshold, val_scores=val_scores)


def _subset(features: Features, keep: npt.NDArray[np.bool_]) -> Features:
    lengths = features.lengths
    rows = np.repeat(keep, lengths)
    new_lengths = lengths[keep]
    offsets = np.zeros(len(new_lengths) + 1, dtype=np.int64)
    np.cumsum(new_lengths, out=offsets[1:])
    return Features(values=features.values[rows], offsets=offsets, names=features.names)


def model_settings(model: ModelFile) -> Settings:
    try:
        return settings_from_dict(model.meta["settings"], source="model settings")
    except ConfigError as exc:
        raise IncompatibleModel(f"the model's settings are not understood by this netae: {exc}") from exc


@dataclass(frozen=True, slots=True)
class ScoreRun:
    table: ScoreTable
    data: Featurized
    scores: FlowScores
    model: ModelFile


def score_captures(
    sources: list[str],
    *,
    model_path: Path,
    threshold: float | None = None,
    device: str = "auto",
    on_file: Callable[[str, SkipCounts], None] | None = None,
) -> ScoreRun:
    """Featurize with the model's settings, score every flow, compare with the threshold."""
    model = load_model(model_path)
    settings = model_settings(model)
    data = featurize_files(sources, settings=settings, on_file=on_file)
    require_flows(data)
    return score_featurized(data, model, threshold=threshold, device=device)


def score_featurized(data: Featurized, model: ModelFile, *, threshold: float | None, device: str) -> ScoreRun:
    from netae.score import score_features

    settings = model_settings(model)
    scaler = Scaler(names=tuple(model.meta["feature_names"]), mean_=model.scaler_mean, scale_=model.scaler_scale)
    x = scaler.transform(data.features)
    scores = score_features(model.weights, x, settings=settings, device=device)
    value = float(threshold) if threshold is not None else float(model.meta["threshold"]["value"])
    table = build_score_table(data, scores, threshold=value, model_id=model.model_id)
    return ScoreRun(table=table, data=data, scores=scores, model=model)


def build_score_table(data: Featurized, scores: FlowScores, *, threshold: float, model_id: str) -> ScoreTable:
    """Verdicts plus the worst packets and top features of every flow (vectorised)."""
    flows = data.flows
    n_flows = flows.n_flows
    lengths = flows.n_packets
    err = scores.packet_error
    flow_of = np.repeat(np.arange(n_flows), lengths)
    o = np.lexsort((-err, flow_of))  # per flow, highest error first
    rank = np.arange(len(o)) - np.repeat(flows.offsets[:-1], lengths)
    k = TOP_K
    worst_idx = np.full((n_flows, k), -1, dtype=np.int64)
    sel = rank < k
    rows_sel = o[sel]
    f_sel, r_sel = flow_of[rows_sel], rank[sel]
    worst_idx[f_sel, r_sel] = rows_sel - flows.offsets[:-1][f_sel]
    pos = np.where(worst_idx >= 0, flows.offsets[:-1][:, None] + np.maximum(worst_idx, 0), 0)
    pkt_rows = flows.order[pos] if len(flows.order) else np.zeros_like(pos)
    valid = worst_idx >= 0
    worst_ts = np.where(valid, data.packets.ts_ns[pkt_rows] if len(flows.order) else 0, 0)
    worst_fwd = np.where(valid, flows.is_fwd[pos] if len(flows.order) else False, False)
    worst_len = np.where(valid, data.packets.ip_len[pkt_rows].astype(np.int64) if len(flows.order) else 0, 0)
    worst_err = np.where(valid, err[pos] if len(err) else 0, 0).astype(np.float32)
    top = np.argsort(-scores.feature_error, axis=1, kind="stable")[:, :k].astype(np.int64)
    score = scores.score.astype(np.float32)
    return ScoreTable(
        flows=flows,
        score=score,
        is_anomaly=score > threshold,
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
    )
