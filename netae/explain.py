"""Plain-words reasons for flagged flows: the flow's own oddity first, then its context.

NOTE [explanations]: each feature's share of a flow's error (the worst window's per-feature
squared error, divided by their sum) says how much it contributed. A feature is *notable* when
its share is at least ``MIN_FEATURE_SHARE`` and the flow's own value of it lies outside the range
of the training data (``FeatureRanges``: the 0.1 % and 99.9 % quantiles of the training flows, or
the scaler's mean ± 4 standard deviations for models saved before the ranges were kept). Only
notable features are described, so no explanation claims something that is ordinary in the
training data; a flow with none gets no explanation ('').

Notable features are gathered per topic. The flow's own topics come first, largest share first
(at most ``MAX_OWN``): volume ("10.9 MB sent in 52 ms, 2.1x the largest flow in training"), DNS
names and lookups, TCP behaviour, packet sizes, packet timing. Then at most one context topic,
when it holds at least ``MIN_SHARE`` of the error: the host pair's history (beacons), the source
host's fan-out and failures (scans, guessing) or the service's clients. Values are the raw
(unscaled) ones: flow and context columns from the flow's first packet, packet columns from its
worst packet. Human feature names come from ``features.FEATURE_LABELS``. numpy only; the only
loop runs over the flows being explained, to write their strings.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from netae.features import FEATURE_LABELS, PACKET_FEATURES, feature_label
from netae.incidents import human_bytes, human_seconds, plural
from netae.protocols import PORTED
from netae.tables import Features, FlowTable, format_ips

__all__ = [
    "MAX_OWN",
    "MIN_FEATURE_SHARE",
    "MIN_SHARE",
    "RANGE_QUANTILES",
    "FeatureRanges",
    "explain_flows",
    "fit_feature_ranges",
    "topic_of",
]

MIN_FEATURE_SHARE = 0.04  # a feature below this share of the flow's error is never described
MIN_SHARE = 0.12  # a context topic is mentioned when its notable features hold this share
MAX_OWN = 2
RANGE_QUANTILES = (0.001, 0.999)
SCALER_RANGE_STDS = 4.0  # the fallback range of models without stored ranges

_OWN_TOPICS = ("volume", "dns", "tcp", "packet", "timing")
_CONTEXT_TOPICS = ("pair", "src", "svc")
_TOPICS = _OWN_TOPICS + _CONTEXT_TOPICS + ("other",)
_VOLUME = ("log_flow_bytes", "log_flow_pkts", "log_flow_duration_ms", "fwd_byte_share", "fwd_pkt_share")
_TCP = ("tcp_handshake_done", "tcp_reset", "tcp_no_answer", "tcp_syn", "tcp_ack", "tcp_fin", "tcp_rst", "tcp_psh")
_TIMING = ("log_iat_us", "log_iat_same_dir_us", "log_since_start_ms")
_PACKET = ("log_ip_len_bytes", "log_payload_bytes", "has_payload", "is_fwd", "log_position", "log_tcp_window")


def topic_of(name: str) -> str:
    """The topic a feature column belongs to (NOTE [explanations])."""
    if name.startswith(("ctx_dns_", "ctx_src_dns_", "dns_")):
        return "dns"
    for prefix, topic in (("ctx_pair_", "pair"), ("ctx_src_", "src"), ("ctx_svc_", "svc")):
        if name.startswith(prefix):
            return topic
    for names, topic in ((_VOLUME, "volume"), (_TCP, "tcp"), (_TIMING, "timing"), (_PACKET, "packet")):
        if name in names:
            return topic
    return "other"  # protocol flags, capture coverage: never an explanation of their own


@dataclass(frozen=True, slots=True)
class FeatureRanges:
    """What the training data held, per feature: ``lo``/``hi`` bound the ordinary range, ``max_`` the largest."""

    names: tuple[str, ...]
    lo: npt.NDArray[np.float64]
    hi: npt.NDArray[np.float64]
    max_: npt.NDArray[np.float64]

    def to_dict(self) -> dict[str, Any]:
        """JSON for the model file's metadata (``feature_ranges``)."""
        return {
            "quantiles": list(RANGE_QUANTILES),
            "lo": [float(x) for x in self.lo],
            "hi": [float(x) for x in self.hi],
            "max": [float(x) for x in self.max_],
        }

    @classmethod
    def from_meta(
        cls,
        meta: Mapping[str, Any],
        names: tuple[str, ...],
        *,
        scaler_mean: npt.NDArray[np.float32],
        scaler_scale: npt.NDArray[np.float32],
    ) -> FeatureRanges:
        """The ranges saved in a model, or mean ± 4 std of its scaler for older models."""
        saved = meta.get("feature_ranges")
        if isinstance(saved, dict) and all(len(saved.get(k, ())) == len(names) for k in ("lo", "hi", "max")):
            return cls(names, *(np.asarray(saved[k], np.float64) for k in ("lo", "hi", "max")))
        mean, scale = scaler_mean.astype(np.float64), scaler_scale.astype(np.float64)
        hi = mean + SCALER_RANGE_STDS * scale
        return cls(names, mean - SCALER_RANGE_STDS * scale, hi, hi)


def fit_feature_ranges(features: Features) -> FeatureRanges:
    """Training ranges: packet columns over every packet, the others over each flow's first packet."""
    values = features.values
    first = values[features.offsets[:-1][features.lengths > 0]]
    is_packet = np.array([name in PACKET_FEATURES for name in features.names], dtype=bool)
    lo = np.zeros(len(features.names))
    hi = np.zeros(len(features.names))
    top = np.zeros(len(features.names))
    for rows, cols in ((values, is_packet), (first, ~is_packet)):
        if len(rows) and cols.any():
            x = rows[:, cols].astype(np.float64)  # bounds are observed values (a small set: min and max)
            lo[cols] = np.quantile(x, RANGE_QUANTILES[0], axis=0, method="lower")
            hi[cols] = np.quantile(x, RANGE_QUANTILES[1], axis=0, method="higher")
            top[cols] = rows[:, cols].max(axis=0)
    return FeatureRanges(features.names, lo, hi, top)


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _count(log_value: float) -> int:
    return int(round(math.expm1(max(float(log_value), 0.0))))


def _endpoint(ip: str, port: int, proto: int) -> str:
    if proto in PORTED:
        return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
    return ip


@dataclass(frozen=True, slots=True)
class _Flow:
    """What the phrase writers know of one flow: its raw values, what is notable, and its names."""

    i: int
    values: dict[str, float]  # raw value of every feature (flow columns: first packet; packet columns: worst)
    notable: frozenset[str]
    ranges: FeatureRanges | None
    ctx: dict[str, npt.NDArray[np.float32]]
    src: str
    dst: str
    window: str
    fwd_bytes: int
    bwd_bytes: int
    duration_s: float
    n_pkts: int

    def ctx_value(self, name: str) -> float:
        col = self.ctx.get(name)
        return float(col[self.i]) if col is not None and len(col) > self.i else self.values.get(name, 0.0)

    def beyond(self, name: str, quantity: float, what: str) -> str:
        """', 3.2x the largest ... in training' above the training maximum; below its range, says so."""
        if self.ranges is None or name not in self.ranges.names:
            return ""
        j = self.ranges.names.index(name)
        is_log = FEATURE_LABELS.get(name, ("", ""))[1] == "log1p"
        top, low = float(self.ranges.max_[j]), float(self.ranges.lo[j])
        top, low = (math.expm1(top), math.expm1(low)) if is_log else (top, low)
        if quantity < low:
            return f", below {100 * (1 - RANGE_QUANTILES[0]):.1f} % of the training flows"
        if top <= 0 or quantity <= top:
            return ""
        ratio = quantity / top
        return f", {ratio:.0f}x {what} in training" if ratio >= 10 else f", {ratio:.1f}x {what} in training"


def _volume(fl: _Flow) -> str:
    parts = []
    total = fl.fwd_bytes + fl.bwd_bytes
    if "log_flow_bytes" in fl.notable or "fwd_byte_share" in fl.notable:
        up = fl.fwd_bytes >= fl.bwd_bytes
        moved = f"{human_bytes(fl.fwd_bytes if up else fl.bwd_bytes)} {'sent' if up else 'received'}"
        parts.append(
            f"{moved} in {human_seconds(fl.duration_s)}" + fl.beyond("log_flow_bytes", total, "the largest flow")
        )
    if "log_flow_pkts" in fl.notable:
        parts.append(plural(fl.n_pkts, "packet") + fl.beyond("log_flow_pkts", fl.n_pkts, "the longest flow"))
    if "log_flow_duration_ms" in fl.notable and not parts:
        what = "the longest flow"
        parts.append(
            f"lasted {human_seconds(fl.duration_s)}" + fl.beyond("log_flow_duration_ms", fl.duration_s * 1e3, what)
        )
    return ", ".join(parts)


def _dns(fl: _Flow) -> str:
    parts = []
    names = _count(fl.ctx_value("ctx_dns_parent_names_log"))
    if "ctx_dns_parent_names_log" in fl.notable or "ctx_dns_parent_new_share" in fl.notable:
        share = fl.ctx_value("ctx_dns_parent_new_share")
        parts.append(f"{plural(names, 'new name')} under one domain in the last {fl.window} ({100 * share:.0f} % new)")
    if fl.notable & {"dns_qname_chars_log", "dns_label_chars_log", "dns_label_entropy_bits"}:
        qlen = _count(fl.values.get("dns_qname_chars_log", 0.0))
        ent = fl.values.get("dns_label_entropy_bits", 0.0)
        parts.append(f"names of {qlen} characters with {ent:.1f} bits of entropy")
    n = _count(fl.ctx_value("ctx_src_dns_new_names_log"))
    if "ctx_src_dns_new_names_log" in fl.notable and not (parts and n == names):
        parts.append(f"{plural(n, 'new name')} looked up by {fl.src} in the last {fl.window}")
    return ", ".join(parts)


_TCP_WORDS = {
    "tcp_no_answer": ("no answer from the server", "an answer from the server"),
    "tcp_reset": ("connection reset", "no reset"),
    "tcp_handshake_done": ("TCP handshake completed", "TCP handshake never completed"),
}


def _tcp(fl: _Flow) -> str:
    parts = []
    for name in fl.notable & set(_TCP_WORDS):
        yes, no = _TCP_WORDS[name]
        parts.append(yes if fl.values.get(name, 0.0) >= 0.5 else no)
    flags = sorted(feature_label(n).removeprefix("TCP ").removesuffix(" flag") for n in fl.notable if n in _TCP[3:])
    if flags:
        parts.append("unusual TCP flags (" + ", ".join(flags) + ")")
    return ", ".join(sorted(parts))


def _packet(fl: _Flow) -> str:
    parts = []
    for name, what in (("log_ip_len_bytes", "packet"), ("log_payload_bytes", "payload")):
        if name in fl.notable:
            n = _count(fl.values.get(name, 0.0))
            parts.append(f"a {n:,}-byte {what}" + fl.beyond(name, n, f"the largest {what}"))
    if "log_tcp_window" in fl.notable:
        parts.append(f"a TCP window of {_count(fl.values.get('log_tcp_window', 0.0)):,} bytes")
    if "log_position" in fl.notable:
        parts.append(f"packet {_count(fl.values.get('log_position', 0.0)) + 1:,} of the flow")
    return ", ".join(parts)


def _timing(fl: _Flow) -> str:
    parts = []
    for name in ("log_iat_us", "log_iat_same_dir_us"):
        if name in fl.notable:
            gap_s = math.expm1(fl.values.get(name, 0.0)) / 1e6
            parts.append(f"a gap of {human_seconds(gap_s)} between packets")
            break
    if "log_since_start_ms" in fl.notable:
        since_s = math.expm1(fl.values.get("log_since_start_ms", 0.0)) / 1e3
        parts.append(f"a packet {human_seconds(since_s)} after the flow started")
    return ", ".join(parts)


def _pair(fl: _Flow) -> str:
    n = _count(fl.ctx_value("ctx_pair_flows_log"))
    if n == 0:
        return f"first connection from {fl.src} to {fl.dst} in the last {fl.window}"
    text = f"{_ordinal(n + 1)} connection from {fl.src} to {fl.dst} in the last {fl.window}"
    mean, std = fl.ctx_value("ctx_pair_gap_mean_s"), fl.ctx_value("ctx_pair_gap_std_s")
    if n >= 2 and mean > 0:
        text += f", at {mean:.1f} ± {std:.1f} s intervals"
    return text


def _src(fl: _Flow) -> str:
    ports = _count(fl.ctx_value("ctx_src_new_dports_log"))
    dsts = _count(fl.ctx_value("ctx_src_new_dsts_log"))
    flows = _count(fl.ctx_value("ctx_src_flows_log"))
    fail = fl.ctx_value("ctx_src_fail_share")
    parts = []
    if ports:
        parts.append(plural(ports, "new destination port"))
    if dsts:
        parts.append(plural(dsts, "new destination"))
    if parts:
        text = f"{' and '.join(parts)} from {fl.src} in the last {fl.window}"
    elif flows:
        text = f"{plural(flows, 'earlier flow')} from {fl.src} in the last {fl.window}"
    else:
        text = f"first flow from {fl.src} in the last {fl.window}"
    if fail > 0 and "ctx_src_fail_share" in fl.notable:
        text += f", {100 * fail:.0f} % of its TCP connections failed"
    return text


def _svc(fl: _Flow) -> str:
    n = _count(fl.ctx_value("ctx_svc_flows_log"))
    new = _count(fl.ctx_value("ctx_svc_new_srcs_log"))
    return f"{plural(n, 'flow')} to {fl.dst} in the last {fl.window}, {new:,} from new sources"


_PHRASES: dict[str, Callable[[_Flow], str]] = {
    "volume": _volume,
    "dns": _dns,
    "tcp": _tcp,
    "packet": _packet,
    "timing": _timing,
    "pair": _pair,
    "src": _src,
    "svc": _svc,
}


def _values_matrix(
    n_sel: int,
    n_features: int,
    sel: npt.NDArray[np.int64],
    is_packet: npt.NDArray[np.bool_],
    flow_values: npt.NDArray[np.float32] | None,
    packet_values: npt.NDArray[np.float32] | None,
) -> npt.NDArray[np.float64]:
    """Raw value of every feature of the selected flows: packet columns from the worst packet."""
    out = np.zeros((n_sel, n_features))
    if flow_values is not None:
        out[:] = flow_values[sel]
    if packet_values is not None:
        out[:, is_packet] = packet_values[sel][:, is_packet]
    return out


def _notable(
    share: npt.NDArray[np.float64], values: npt.NDArray[np.float64], ranges: FeatureRanges | None
) -> npt.NDArray[np.bool_]:
    """Features with a real share of the error whose value lies outside the training range."""
    big = share >= MIN_FEATURE_SHARE
    if ranges is None:
        return big
    eps = 1e-6
    out: npt.NDArray[np.bool_] = big & ((values > ranges.hi + eps) | (values < ranges.lo - eps))
    return out


def _phrases(fl: _Flow, topic_share: dict[str, float]) -> list[str]:
    own = sorted((t for t in _OWN_TOPICS if topic_share[t] > 0), key=lambda t: -topic_share[t])
    out = [p for p in (_PHRASES[t](fl) for t in own) if p][:MAX_OWN]
    ctx = max(_CONTEXT_TOPICS, key=lambda t: topic_share[t])
    if topic_share[ctx] >= MIN_SHARE:
        out.append(_PHRASES[ctx](fl))
    return out


def explain_flows(
    flows: FlowTable,
    feature_error: npt.NDArray[np.float32],
    feature_names: tuple[str, ...],
    *,
    context: dict[str, npt.NDArray[np.float32]],
    flow_values: npt.NDArray[np.float32] | None = None,
    packet_values: npt.NDArray[np.float32] | None = None,
    ranges: FeatureRanges | None = None,
    window_s: float,
    which: npt.NDArray[np.bool_] | None = None,
) -> tuple[str, ...]:
    """One explanation per flow ('' where nothing is notable, or outside ``which``).

    ``feature_error`` (n_flows, n_features) is each feature's squared error in the flow's worst
    window; ``context`` the raw per-flow context columns (``Featurized.context``); ``flow_values``
    (n_flows, n_features) the raw features of each flow's first packet, ``packet_values`` those
    of its worst packet; ``ranges`` the training ranges (NOTE [explanations]; None: every feature
    with a share counts as notable); ``which`` (n_flows,) limits the work to some flows.
    """
    n = flows.n_flows
    out = [""] * n
    sel = np.flatnonzero(which) if which is not None else np.arange(n)
    if n == 0 or feature_error.size == 0 or len(sel) == 0:
        return tuple(out)
    err = np.maximum(feature_error[sel].astype(np.float64), 0.0)
    share = err / np.maximum(err.sum(axis=1, keepdims=True), 1e-12)
    is_packet = np.array([name in PACKET_FEATURES for name in feature_names], dtype=bool)
    values = _values_matrix(len(sel), len(feature_names), sel, is_packet, flow_values, packet_values)
    notable = _notable(share, values, ranges)
    topics = np.array([topic_of(name) for name in feature_names])
    topic_share = {t: (share * notable)[:, topics == t].sum(axis=1) for t in _TOPICS}
    src_ip = format_ips(flows.src_hi[sel], flows.src_lo[sel])
    dst_ip = format_ips(flows.dst_hi[sel], flows.dst_lo[sel])
    window = f"{window_s:g} s"
    for k, i in enumerate(sel.tolist()):
        if not notable[k].any():
            continue
        fl = _Flow(
            i=i,
            values=dict(zip(feature_names, values[k].tolist(), strict=True)),
            notable=frozenset(feature_names[j] for j in np.flatnonzero(notable[k]).tolist()),
            ranges=ranges,
            ctx=context,
            src=src_ip[k],
            dst=_endpoint(dst_ip[k], int(flows.dst_port[i]), int(flows.proto[i])),
            window=window,
            fwd_bytes=int(flows.fwd_bytes[i]),
            bwd_bytes=int(flows.bwd_bytes[i]),
            duration_s=(int(flows.last_ns[i]) - int(flows.first_ns[i])) / 1e9,
            n_pkts=int(flows.fwd_pkts[i] + flows.bwd_pkts[i]),
        )
        out[i] = "; ".join(_phrases(fl, {t: float(s[k]) for t, s in topic_share.items()}))
    return tuple(out)
