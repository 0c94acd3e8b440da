"""Detection metrics against labelled flows, matched by the rule of shared/eval/README.md.

A netae flow (unordered endpoints (ip, port) + protocol, [first_seen, last_seen]) matches every
labelled flow with the same endpoints and protocol whose interval overlaps its own with a 1 s
tolerance. It is an attack (of each matched type) if any match is an attack, else benign; flows
without a match are counted as unmatched and left out. Protocols without ports (ICMP) compare
with ports 0/0, as the label files write them.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from netae.errors import InputError
from netae.protocols import PORTED
from netae.tables import ScoreTable, format_ips

if TYPE_CHECKING:
    from netae.incidents import Incidents

__all__ = [
    "Evaluation",
    "IncidentRanks",
    "average_precision",
    "evaluate_scores",
    "incident_ranks",
    "match_labels",
    "read_labels",
    "roc_auc",
    "tpr_at_fpr",
]

LABEL_COLUMNS = ("src_ip", "src_port", "dst_ip", "dst_port", "protocol", "first_seen", "last_seen", "label")
_PORTED = PORTED


def read_labels(path: Path) -> dict[tuple[Any, ...], list[tuple[float, float, str]]]:
    """Labelled flows by unordered key, each with (first_seen, last_seen, label).

    Read with the standard csv module (no pandas: the scorer's install does not carry it).
    """
    out: dict[tuple[Any, ...], list[tuple[float, float, str]]] = defaultdict(list)
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in LABEL_COLUMNS if c not in (reader.fieldnames or ())]
            if missing:
                raise InputError(f"labels file {path} lacks columns: {', '.join(missing)}")
            for line, row in enumerate(reader, start=2):
                try:
                    key = _key(row["src_ip"], _int(row["src_port"]), row["dst_ip"], _int(row["dst_port"]),
                               _int(row["protocol"]))  # fmt: skip
                    out[key].append((float(row["first_seen"]), float(row["last_seen"]), row["label"]))
                except (TypeError, ValueError) as exc:
                    raise InputError(f"labels file {path}, line {line}: {exc}") from exc
    except FileNotFoundError as exc:
        raise InputError(f"labels file {path} does not exist") from exc
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"cannot read labels file {path}: {exc}") from exc
    return out


def _int(text: str) -> int:
    """A whole number as label files write it (``80`` or ``80.0``)."""
    value = float(text)
    if not value.is_integer():
        raise ValueError(f"{text!r} is not a whole number")
    return int(value)


def _key(src: str, sport: int, dst: str, dport: int, proto: int) -> tuple[Any, ...]:
    if proto not in _PORTED:
        sport = dport = 0
    a, b = (src, sport), (dst, dport)
    return (min(a, b), max(a, b), proto)


def match_labels(
    table: ScoreTable, labels: dict[tuple[Any, ...], list[tuple[float, float, str]]], *, tolerance_s: float = 1.0
) -> list[frozenset[str] | None]:
    """Per flow: the set of matched labels (attack names and/or 'benign'), or None if unmatched."""
    f = table.flows
    src = format_ips(f.src_hi, f.src_lo)
    dst = format_ips(f.dst_hi, f.dst_lo)
    first = f.first_ns / 1e9
    last = f.last_ns / 1e9
    out: list[frozenset[str] | None] = []
    for i in range(f.n_flows):
        key = _key(src[i], int(f.src_port[i]), dst[i], int(f.dst_port[i]), int(f.proto[i]))
        found = {
            lab for lf, ll, lab in labels.get(key, ()) if first[i] <= ll + tolerance_s and last[i] >= lf - tolerance_s
        }
        out.append(frozenset(found) if found else None)
    return out


def _average_ranks(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    ranks = np.empty(len(x), dtype=np.float64)
    boundaries = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1], True])
    for a, b in zip(boundaries[:-1], boundaries[1:], strict=True):
        ranks[order[a:b]] = (a + b + 1) / 2.0  # 1-based average rank of the tie block
    return ranks


def roc_auc(scores: npt.NDArray[np.float64], is_pos: npt.NDArray[np.bool_]) -> float:
    n_pos, n_neg = int(is_pos.sum()), int((~is_pos).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    r = _average_ranks(scores)
    return float((r[is_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_precision(scores: npt.NDArray[np.float64], is_pos: npt.NDArray[np.bool_]) -> float:
    """Average precision (area under precision-recall, step-wise, ties grouped)."""
    n_pos = int(is_pos.sum())
    if n_pos == 0:
        return math.nan
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], is_pos[order]
    tp = np.cumsum(y)
    fp = np.cumsum(~y)
    last_of_tie = np.r_[s[1:] != s[:-1], True]
    tp, fp = tp[last_of_tie], fp[last_of_tie]
    precision = tp / (tp + fp)
    recall = tp / n_pos
    recall_prev = np.r_[0.0, recall[:-1]]
    return float(np.sum((recall - recall_prev) * precision))


def tpr_at_fpr(scores: npt.NDArray[np.float64], is_pos: npt.NDArray[np.bool_], fpr: float) -> float:
    """Share of positives scored above the cut that lets at most ``fpr`` of negatives through."""
    neg = np.sort(scores[~is_pos])[::-1]
    pos = scores[is_pos]
    if len(pos) == 0 or len(neg) == 0:
        return math.nan
    allowed = int(math.floor(fpr * len(neg) + 1e-9))
    cut = neg[allowed] if allowed < len(neg) else -math.inf
    return float((pos > cut).mean())


@dataclass(frozen=True, slots=True)
class IncidentRanks:
    """Where the labelled trouble lands in the incident ranking (rank 1 is the top).

    ``best``: per attack label, the rank of its best-ranked incident (None: no incident holds one
    of its flows). An incident counts for every label among its flows. ``benign_only``: the ranks
    of incidents whose matched flows are all benign (unmatched flows are ignored).
    """

    n_incidents: int
    best: dict[str, int | None]
    benign_only: tuple[int, ...]

    @property
    def benign_above_attacks(self) -> int:
        """Benign-only incidents ranked above the worst-placed attack label's best incident."""
        found = [r for r in self.best.values() if r is not None]
        return sum(r < max(found) for r in self.benign_only) if found else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "incidents": self.n_incidents,
            "best_rank_per_attack": self.best,
            "benign_only_ranks": list(self.benign_only),
            "benign_only_above_last_attack": self.benign_above_attacks,
        }


def incident_ranks(matched: list[frozenset[str] | None], incidents: Incidents) -> IncidentRanks:
    """The rank of each attack label's best incident, and of the benign-only incidents."""
    attacks = sorted({a for m in matched if m is not None for a in m} - {"benign"})
    labels_of: list[set[str]] = [set() for _ in range(incidents.n_incidents)]
    for i in np.flatnonzero(incidents.flow_incident >= 0).tolist():
        m = matched[i]
        if m is not None:
            labels_of[int(incidents.flow_incident[i])].update(m)
    best: dict[str, int | None] = dict.fromkeys(attacks)
    for k, labs in enumerate(labels_of):
        for a in labs - {"benign"}:
            if best.get(a) is None:
                best[a] = k + 1
    benign_only = tuple(k + 1 for k, labs in enumerate(labels_of) if labs == {"benign"})
    return IncidentRanks(n_incidents=incidents.n_incidents, best=best, benign_only=benign_only)


def format_incident_ranks(ranks: IncidentRanks) -> str:
    """Lines for people: each attack label's best incident rank, then the benign-only ones."""
    lines = [f"{'attack':<16}{'best incident rank':>19}  (of {ranks.n_incidents} incidents)"]
    for name, r in ranks.best.items():
        lines.append(f"{name:<16}{r if r is not None else 'none':>19}")
    first = ranks.benign_only[0] if ranks.benign_only else None
    lines.append(
        f"benign-only incidents: {len(ranks.benign_only)}, the first at rank {first if first else '-'}; "
        f"{ranks.benign_above_attacks} above the last attack label's best incident"
    )
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class Evaluation:
    """Metrics of one evaluation; ``to_dict`` is the JSON output."""

    n_flows: int
    n_unmatched: int
    n_benign: int
    n_attack: int
    roc_auc: float
    average_precision: float
    tpr_at_1pct_fpr: float
    tpr_at_01pct_fpr: float
    threshold: float
    benign_fpr_at_threshold: float
    per_attack: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "flows": self.n_flows,
            "unmatched": self.n_unmatched,
            "benign": self.n_benign,
            "attack": self.n_attack,
            "roc_auc": self.roc_auc,
            "average_precision": self.average_precision,
            "tpr_at_1pct_fpr": self.tpr_at_1pct_fpr,
            "tpr_at_0.1pct_fpr": self.tpr_at_01pct_fpr,
            "threshold": self.threshold,
            "benign_fpr_at_threshold": self.benign_fpr_at_threshold,
            "per_attack": self.per_attack,
        }


def evaluate_scores(
    scores: npt.NDArray[np.floating[Any]], matched: list[frozenset[str] | None], *, threshold: float
) -> Evaluation:
    """Metrics from per-flow scores and matched label sets."""
    s_all = np.asarray(scores, dtype=np.float64)
    keep = np.array([m is not None for m in matched], dtype=bool)
    labels = [m for m in matched if m is not None]
    s = s_all[keep]
    attacks_of = [sorted(lab - {"benign"}) for lab in labels]
    is_attack = np.array([bool(a) for a in attacks_of], dtype=bool)
    flagged = s > threshold
    per_attack: dict[str, dict[str, Any]] = {}
    names = sorted({a for names in attacks_of for a in names})
    for name in names:
        is_this = np.array([name in a for a in attacks_of], dtype=bool)
        sel = is_this | ~is_attack
        per_attack[name] = {
            "flows": int(is_this.sum()),
            "roc_auc": roc_auc(s[sel], is_this[sel]),
            "flagged": int((flagged & is_this).sum()),
            "flagged_share": float((flagged & is_this).sum() / max(int(is_this.sum()), 1)),
        }
    n_benign = int((~is_attack).sum())
    return Evaluation(
        n_flows=len(matched),
        n_unmatched=int((~keep).sum()),
        n_benign=n_benign,
        n_attack=int(is_attack.sum()),
        roc_auc=roc_auc(s, is_attack),
        average_precision=average_precision(s, is_attack),
        tpr_at_1pct_fpr=tpr_at_fpr(s, is_attack, 0.01),
        tpr_at_01pct_fpr=tpr_at_fpr(s, is_attack, 0.001),
        threshold=float(threshold),
        benign_fpr_at_threshold=float((flagged & ~is_attack).sum() / max(n_benign, 1)),
        per_attack=per_attack,
    )


def format_evaluation(ev: Evaluation) -> str:
    """A plain-text report for people."""
    lines = [
        f"flows {ev.n_flows} (benign {ev.n_benign}, attack {ev.n_attack}, unmatched {ev.n_unmatched})",
        f"ROC-AUC            {ev.roc_auc:.4f}",
        f"average precision  {ev.average_precision:.4f}",
        f"TPR at 1% FPR      {ev.tpr_at_1pct_fpr:.3f}",
        f"TPR at 0.1% FPR    {ev.tpr_at_01pct_fpr:.3f}",
        f"at threshold {ev.threshold:.4g}: benign FPR {100 * ev.benign_fpr_at_threshold:.2f}%",
        "",
        f"{'attack':<16}{'flows':>7}{'ROC-AUC':>10}{'flagged':>14}",
    ]
    for name, m in ev.per_attack.items():
        lines.append(f"{name:<16}{m['flows']:>7}{m['roc_auc']:>10.4f}{m['flagged']:>8}/{m['flows']:<5}")
    return "\n".join(lines) + "\n"
