"""Plain-words reasons for flagged flows: which context (or flow trait) the model found unusual.

Each feature's share of a flow's error (the worst window's per-feature squared error, divided by
their sum) is summed per topic: the host pair's history (beacons), the source host's fan-out and
failures (scans, guessing), DNS names and lookups (tunnels), the service's clients, and the
flow's own traits. Topics holding at least ``MIN_SHARE`` of the error are described, largest
first, with the raw (unscaled) context values, e.g. "14th connection from 10.77.0.66 to
10.77.0.10:443 in the last 300 s, at 8.1 ± 2.9 s intervals". numpy only; the only loop runs over
the flows being explained, to build their strings.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from netae.protocols import PORTED
from netae.tables import FlowTable, format_ips

__all__ = ["MAX_TOPICS", "MIN_SHARE", "explain_flows", "topic_of"]

MIN_SHARE = 0.12  # a topic is mentioned when it holds at least this share of the flow's error
MAX_TOPICS = 2

_TOPIC_ORDER = ("pair", "src", "dns", "svc", "flow")
_FLOW_WORDS = {
    "is_fwd": "packet directions",
    "log_ip_len_bytes": "packet sizes",
    "log_payload_bytes": "payload sizes",
    "has_payload": "payload pattern",
    "log_iat_us": "packet timing",
    "log_iat_same_dir_us": "packet timing",
    "log_since_start_ms": "packet timing",
    "log_position": "flow length",
    "tcp_syn": "TCP flags",
    "tcp_ack": "TCP flags",
    "tcp_fin": "TCP flags",
    "tcp_rst": "TCP resets",
    "tcp_psh": "TCP flags",
    "log_tcp_window": "TCP window",
    "log_flow_pkts": "flow length",
    "log_flow_bytes": "flow volume",
    "log_flow_duration_ms": "flow duration",
    "fwd_pkt_share": "direction balance",
    "fwd_byte_share": "direction balance",
    "tcp_handshake_done": "TCP handshake",
    "tcp_reset": "TCP resets",
    "tcp_no_answer": "no answer",
    "ctx_coverage": "little history before it (capture start)",
    "dns_qname_chars_log": "DNS name length",
    "dns_label_chars_log": "DNS label length",
    "dns_label_entropy_bits": "DNS label entropy",
}


def topic_of(name: str) -> str:
    """The topic a feature column belongs to: pair, src, dns, svc or flow."""
    if name.startswith("ctx_pair_"):
        return "pair"
    if name.startswith(("ctx_dns_", "ctx_src_dns_", "dns_")):
        return "dns"
    if name.startswith("ctx_src_"):
        return "src"
    if name.startswith("ctx_svc_"):
        return "svc"
    return "flow"


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _count(log_value: float) -> int:
    return int(round(math.expm1(max(float(log_value), 0.0))))


def _get(context: dict[str, npt.NDArray[np.float32]], name: str, i: int) -> float:
    col = context.get(name)
    return float(col[i]) if col is not None and len(col) > i else 0.0


def _endpoint(ip: str, port: int, proto: int) -> str:
    if proto in PORTED:
        return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
    return ip


def _pair(ctx: dict[str, npt.NDArray[np.float32]], i: int, src: str, dst: str, window: str) -> str:
    n = _count(_get(ctx, "ctx_pair_flows_log", i))
    text = f"{_ordinal(n + 1)} connection from {src} to {dst} in the last {window}"
    mean, std = _get(ctx, "ctx_pair_gap_mean_s", i), _get(ctx, "ctx_pair_gap_std_s", i)
    if n >= 2 and mean > 0:
        text += f", at {mean:.1f} ± {std:.1f} s intervals"
    elif n == 0:
        text = f"first connection from {src} to {dst} in the last {window}"
    return text


def _src(ctx: dict[str, npt.NDArray[np.float32]], i: int, src: str, window: str) -> str:
    ports = _count(_get(ctx, "ctx_src_new_dports_log", i))
    dsts = _count(_get(ctx, "ctx_src_new_dsts_log", i))
    flows = _count(_get(ctx, "ctx_src_flows_log", i))
    fail = _get(ctx, "ctx_src_fail_share", i)
    parts = []
    if ports:
        parts.append(f"{ports} new destination port{'s' * (ports != 1)}")
    if dsts:
        parts.append(f"{dsts} new destination{'s' * (dsts != 1)}")
    if parts:
        text = f"{' and '.join(parts)} from {src} in the last {window}"
    elif flows:
        text = f"{flows} earlier flow{'s' * (flows != 1)} from {src} in the last {window}"
    else:
        text = f"first flow from {src} in the last {window}"
    if fail > 0:
        text += f", {100 * fail:.0f} % of its TCP connections failed"
    return text


def _dns(ctx: dict[str, npt.NDArray[np.float32]], raw: dict[str, float], i: int, src: str, window: str) -> str:
    qlen = int(round(math.expm1(raw.get("dns_qname_chars_log", 0.0))))
    llen = int(round(math.expm1(raw.get("dns_label_chars_log", 0.0))))
    ent = raw.get("dns_label_entropy_bits", 0.0)
    names = _count(_get(ctx, "ctx_dns_parent_names_log", i))
    share = _get(ctx, "ctx_dns_parent_new_share", i)
    src_names = _count(_get(ctx, "ctx_src_dns_new_names_log", i))
    parts = []
    if qlen:
        parts.append(f"DNS name of {qlen} characters (first label {llen}, {ent:.1f} bits of entropy)")
    if names:
        parts.append(
            f"{names} new name{'s' * (names != 1)} under its parent domain in the last {window} "
            f"({100 * share:.0f} % of its lookups)"
        )
    if src_names:
        parts.append(f"{src_names} new name{'s' * (src_names != 1)} looked up by {src}")
    return "; ".join(parts) if parts else "unusual DNS lookup"


def _svc(ctx: dict[str, npt.NDArray[np.float32]], i: int, dst: str, window: str) -> str:
    n = _count(_get(ctx, "ctx_svc_flows_log", i))
    new = _count(_get(ctx, "ctx_svc_new_srcs_log", i))
    return f"{n} flows to {dst} in the last {window}, {new} from new sources"


def _flow(share: npt.NDArray[np.float64], names: tuple[str, ...]) -> str:
    words: list[str] = []
    for j in np.argsort(-share, kind="stable")[:6].tolist():
        if topic_of(names[j]) != "flow" or share[j] <= 0:
            continue
        w = _FLOW_WORDS.get(names[j], names[j])
        if w not in words:
            words.append(w)
        if len(words) == 3:
            break
    return "unusual " + ", ".join(words) if words else ""


def explain_flows(
    flows: FlowTable,
    feature_error: npt.NDArray[np.float32],
    feature_names: tuple[str, ...],
    *,
    context: dict[str, npt.NDArray[np.float32]],
    flow_values: npt.NDArray[np.float32] | None = None,
    window_s: float,
    which: npt.NDArray[np.bool_] | None = None,
) -> tuple[str, ...]:
    """One explanation per flow ('' where nothing is notable, or outside ``which``).

    ``feature_error`` (n_flows, n_features) is each feature's squared error in the flow's worst
    window; ``context`` the raw per-flow context columns (``Featurized.context``); ``flow_values``
    (n_flows, n_features) the raw feature values of each flow's first packet (for the per-flow
    DNS facts); ``which`` (n_flows,) limits the work to some flows (e.g. the flagged ones).
    """
    n = flows.n_flows
    out = [""] * n
    if n == 0 or feature_error.size == 0:
        return tuple(out)
    sel = np.flatnonzero(which) if which is not None else np.arange(n)
    if len(sel) == 0:
        return tuple(out)
    err = np.maximum(feature_error[sel].astype(np.float64), 0.0)
    share = err / np.maximum(err.sum(axis=1, keepdims=True), 1e-12)
    topics = np.array([topic_of(name) for name in feature_names])
    topic_share = np.stack([share[:, topics == t].sum(axis=1) for t in _TOPIC_ORDER], axis=1)
    src_ip = format_ips(flows.src_hi[sel], flows.src_lo[sel])
    dst_ip = format_ips(flows.dst_hi[sel], flows.dst_lo[sel])
    window = f"{window_s:g} s"
    dns_cols = [j for j, name in enumerate(feature_names) if name.startswith("dns_")]
    for k, i in enumerate(sel.tolist()):
        proto = int(flows.proto[i])
        dst = _endpoint(dst_ip[k], int(flows.dst_port[i]), proto)
        raw = {}
        if flow_values is not None:
            raw = {feature_names[j]: float(flow_values[i, j]) for j in dns_cols}
        phrases = []
        for t in np.argsort(-topic_share[k], kind="stable")[:MAX_TOPICS].tolist():
            if topic_share[k, t] < MIN_SHARE:
                break
            topic = _TOPIC_ORDER[t]
            if topic == "pair":
                phrases.append(_pair(context, i, src_ip[k], dst, window))
            elif topic == "src":
                phrases.append(_src(context, i, src_ip[k], window))
            elif topic == "dns":
                phrases.append(_dns(context, raw, i, src_ip[k], window))
            elif topic == "svc":
                phrases.append(_svc(context, i, dst, window))
            else:
                phrases.append(_flow(share[k], feature_names))
        out[i] = "; ".join(p for p in phrases if p)
    return tuple(out)
