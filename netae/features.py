"""Per-packet feature sequences, and the scaler fitted on training flows only.

Each flow becomes a sequence of per-packet rows (direction, sizes, timing, TCP flags), with
flow-level and context columns broadcast to every packet of the flow so that the model sees one
matrix. Names carry units. Training and scoring call exactly this code: a feature that differs
between the two is a bug.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from netae.context import FlowFacts, flow_facts
from netae.errors import IncompatibleModel
from netae.jit import njit
from netae.protocols import ICMP_PROTOCOLS, IPPROTO_UDP, TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN
from netae.tables import Features, FlowTable, PacketTable

__all__ = [
    "FEATURE_LABELS",
    "FLOW_FEATURES",
    "MIN_SCALE",
    "PACKET_FEATURES",
    "Scaler",
    "ScalerAccumulator",
    "compute_features",
    "feature_label",
    "fit_scaler",
    "worst_packets",
]

# Smallest scale a non-constant column gets (in its own units, mostly log units).
MIN_SCALE = 0.05

PACKET_FEATURES: tuple[str, ...] = (
    "is_fwd",
    "log_ip_len_bytes",
    "log_payload_bytes",
    "has_payload",
    "log_iat_us",
    "log_iat_same_dir_us",
    "log_since_start_ms",
    "log_position",
    "tcp_syn",
    "tcp_ack",
    "tcp_fin",
    "tcp_rst",
    "tcp_psh",
    "log_tcp_window",
)

FLOW_FEATURES: tuple[str, ...] = (
    "proto_tcp",
    "proto_udp",
    "proto_icmp",
    "log_flow_pkts",
    "log_flow_bytes",
    "log_flow_duration_ms",
    "fwd_pkt_share",
    "fwd_byte_share",
    "tcp_handshake_done",
    "tcp_reset",
    "tcp_no_answer",
    "dns_qname_chars_log",
    "dns_label_chars_log",
    "dns_label_entropy_bits",
)

# NOTE [feature names]: the human name of every model input (packet, flow and context columns,
# the last defined in context.py) and how its stored value turns back into its quantity:
# "log1p" columns hold log1p(x), "share" a fraction, "flag" 0/1, "raw" the quantity itself. Reports
# and explanations take names from here, never from the column names.
FEATURE_LABELS: dict[str, tuple[str, str]] = {
    "is_fwd": ("packet direction", "flag"),
    "log_ip_len_bytes": ("packet size (bytes)", "log1p"),
    "log_payload_bytes": ("payload size (bytes)", "log1p"),
    "has_payload": ("packet carries payload", "flag"),
    "log_iat_us": ("gap since the previous packet (µs)", "log1p"),
    "log_iat_same_dir_us": ("gap since the previous packet in the same direction (µs)", "log1p"),
    "log_since_start_ms": ("time since the flow started (ms)", "log1p"),
    "log_position": ("packet position in the flow", "log1p"),
    "tcp_syn": ("TCP SYN flag", "flag"),
    "tcp_ack": ("TCP ACK flag", "flag"),
    "tcp_fin": ("TCP FIN flag", "flag"),
    "tcp_rst": ("TCP RST flag", "flag"),
    "tcp_psh": ("TCP PSH flag", "flag"),
    "log_tcp_window": ("TCP window (bytes)", "log1p"),
    "proto_tcp": ("protocol is TCP", "flag"),
    "proto_udp": ("protocol is UDP", "flag"),
    "proto_icmp": ("protocol is ICMP", "flag"),
    "log_flow_pkts": ("packets in the flow", "log1p"),
    "log_flow_bytes": ("bytes in the flow", "log1p"),
    "log_flow_duration_ms": ("flow duration (ms)", "log1p"),
    "fwd_pkt_share": ("share of packets sent by the client", "share"),
    "fwd_byte_share": ("share of bytes sent by the client", "share"),
    "tcp_handshake_done": ("TCP handshake completed", "flag"),
    "tcp_reset": ("TCP connection reset", "flag"),
    "tcp_no_answer": ("no answer from the server", "flag"),
    "dns_qname_chars_log": ("DNS name length (characters)", "log1p"),
    "dns_label_chars_log": ("DNS first label length (characters)", "log1p"),
    "dns_label_entropy_bits": ("DNS first label entropy (bits)", "raw"),
    "ctx_coverage": ("share of the context window the capture covers", "share"),
    "ctx_src_flows_log": ("earlier flows of the source host in the window", "log1p"),
    "ctx_src_new_dsts_log": ("new destinations of the source host in the window", "log1p"),
    "ctx_src_new_dports_log": ("new destination ports of the source host in the window", "log1p"),
    "ctx_src_fail_share": ("share of the source host's TCP connections that failed", "share"),
    "ctx_pair_flows_log": ("earlier connections of the host pair to this service in the window", "log1p"),
    "ctx_pair_since_prev_log_s": ("time since the pair's previous connection (s)", "log1p"),
    "ctx_pair_iat_mean_log_s": ("mean log gap between the pair's connections", "raw"),
    "ctx_pair_iat_std_log_s": ("spread of the log gaps between the pair's connections", "raw"),
    "ctx_pair_fwd_bytes_log": ("bytes the pair's earlier connections sent (window)", "log1p"),
    "ctx_pair_bwd_bytes_log": ("bytes the pair's earlier connections received (window)", "log1p"),
    "ctx_pair_bytes_std_log": ("spread of the log sizes of the pair's connections", "raw"),
    "ctx_svc_flows_log": ("earlier flows to the service in the window", "log1p"),
    "ctx_svc_new_srcs_log": ("new clients of the service in the window", "log1p"),
    "ctx_src_dns_new_names_log": ("new DNS names the source host looked up in the window", "log1p"),
    "ctx_dns_parent_names_log": ("new DNS names under the parent domain in the window", "log1p"),
    "ctx_dns_parent_new_share": ("share of the parent domain's lookups that were new names", "share"),
}


def feature_label(name: str) -> str:
    """The human name of a feature column (the column name itself when it has none)."""
    entry = FEATURE_LABELS.get(name)
    return entry[0] if entry else name


def _flow_columns(flows: FlowTable, facts: FlowFacts) -> dict[str, npt.NDArray[np.float32]]:
    lengths = flows.n_packets
    tcp, dns, is_tcp = facts.tcp, facts.dns, facts.is_tcp
    pkts = lengths.astype(np.float64)
    total_bytes = (flows.fwd_bytes + flows.bwd_bytes).astype(np.float64)
    duration_ms = (flows.last_ns - flows.first_ns) / 1e6
    return {
        "proto_tcp": is_tcp,
        "proto_udp": flows.proto == IPPROTO_UDP,
        "proto_icmp": np.isin(flows.proto, ICMP_PROTOCOLS),
        "log_flow_pkts": np.log1p(pkts),
        "log_flow_bytes": np.log1p(total_bytes),
        "log_flow_duration_ms": np.log1p(duration_ms),
        "fwd_pkt_share": flows.fwd_pkts / np.maximum(pkts, 1),
        "fwd_byte_share": flows.fwd_bytes / np.maximum(total_bytes, 1),
        "tcp_handshake_done": tcp.synack_bwd & tcp.ack_fwd,
        "tcp_reset": tcp.reset,
        "tcp_no_answer": flows.bwd_pkts == 0,
        "dns_qname_chars_log": np.log1p(dns.qname_len),
        "dns_label_chars_log": np.log1p(dns.label_len),
        "dns_label_entropy_bits": dns.label_entropy,
    }


def compute_features(
    packets: PacketTable,
    flows: FlowTable,
    *,
    context: dict[str, npt.NDArray[np.float32]] | None = None,
    facts: FlowFacts | None = None,
) -> Features:
    """Per-packet features of every flow, in flow order (rows align with ``flows.order``).

    ``context`` holds per-flow columns from ``context.py`` (n_flows each), broadcast like the
    flow-level columns; ``facts`` is ``flow_facts(packets, flows)`` when the caller computed it
    for the context already. No loop per packet or per flow.
    """
    po = flows.order
    n = len(po)
    offsets = flows.offsets
    per_flow = _flow_columns(flows, facts if facts is not None else flow_facts(packets, flows))
    if context:
        per_flow = {**per_flow, **context}
    names = PACKET_FEATURES + tuple(per_flow)
    flow_block = np.empty((flows.n_flows, len(per_flow)), dtype=np.float32)
    for j, col in enumerate(per_flow.values()):
        flow_block[:, j] = col
    values = np.empty((n, len(names)), dtype=np.float32)
    _fill_nb(
        offsets, packets.ts_ns[po], packets.ip_len[po], packets.payload_len[po], packets.tcp_flags[po],
        packets.tcp_window[po], flows.is_fwd, flow_block, values, _LOG1P_LUT,
    )  # fmt: skip
    return Features(values=values, offsets=offsets.copy(), names=names)


# NOTE [fill]: one pass over the packets in flow order writes each row of the feature matrix: a
# row-major matrix written column by column touches every cache line once per column, and the
# flow-level block would need a full-length temporary per column. Column positions come from
# ``PACKET_FEATURES`` (the registry); the numpy twin is tests/reference/features.py.
_C = {name: i for i, name in enumerate(PACKET_FEATURES)}
C_IS_FWD, C_IP_LEN, C_PAYLOAD, C_HAS_PAYLOAD = (
    _C["is_fwd"],
    _C["log_ip_len_bytes"],
    _C["log_payload_bytes"],
    _C["has_payload"],
)
C_IAT, C_IAT_DIR, C_SINCE, C_POS = (
    _C["log_iat_us"],
    _C["log_iat_same_dir_us"],
    _C["log_since_start_ms"],
    _C["log_position"],
)
C_SYN, C_ACK, C_FIN, C_RST, C_PSH = _C["tcp_syn"], _C["tcp_ack"], _C["tcp_fin"], _C["tcp_rst"], _C["tcp_psh"]
C_WINDOW = _C["log_tcp_window"]
N_PACKET_FEATURES = len(PACKET_FEATURES)
_LOG1P_LUT = np.log1p(np.arange(65536, dtype=np.float64))  # log1p of small integers, looked up


@njit(cache=True, nogil=True)  # not inline="always": that counted references to ``lut`` per call
def _log1p_int(v: Any, lut: Any) -> Any:  # pragma: no cover - compiled
    return lut[v] if v < len(lut) else np.log1p(np.float64(v))


@njit(cache=True, nogil=True)
def _fill_packet(out: Any, i: int, fwd: bool, ip_len: Any, payload: Any, fl: Any, window: Any, pos: int,
                 lut: Any) -> None:  # fmt: skip  # pragma: no cover - compiled
    """The per-packet columns that need no neighbour: direction, sizes, position, flags."""
    out[i, C_IS_FWD] = 1.0 if fwd else 0.0
    out[i, C_IP_LEN] = _log1p_int(ip_len, lut)
    out[i, C_PAYLOAD] = _log1p_int(payload, lut)
    out[i, C_HAS_PAYLOAD] = 1.0 if payload > 0 else 0.0
    out[i, C_POS] = _log1p_int(pos, lut)
    out[i, C_SYN] = 1.0 if fl & TCP_SYN else 0.0
    out[i, C_ACK] = 1.0 if fl & TCP_ACK else 0.0
    out[i, C_FIN] = 1.0 if fl & TCP_FIN else 0.0
    out[i, C_RST] = 1.0 if fl & TCP_RST else 0.0
    out[i, C_PSH] = 1.0 if fl & TCP_PSH else 0.0
    out[i, C_WINDOW] = lut[window]


@njit(cache=True, nogil=True)
def _fill_nb(offsets: Any, ts: Any, ip_len: Any, payload: Any, flags: Any, window: Any, is_fwd: Any,
             flow_block: Any, out: Any, lut: Any) -> None:  # fmt: skip  # pragma: no cover - compiled
    """Every row of ``out`` (NOTE [fill]): packet columns, gaps, then the flow's block."""
    k = flow_block.shape[1]
    for f in range(len(offsets) - 1):
        a, b = offsets[f], offsets[f + 1]
        t0 = ts[a]
        last_fwd = -1
        last_bwd = -1
        for i in range(a, b):
            fwd = is_fwd[i]
            t = ts[i]
            _fill_packet(out, i, fwd, ip_len[i], payload[i], flags[i], window[i], i - a, lut)
            out[i, C_IAT] = np.log1p(max(t - ts[i - 1], 0) / 1e3) if i > a else 0.0
            prev = last_fwd if fwd else last_bwd
            out[i, C_IAT_DIR] = np.log1p(max(t - ts[prev], 0) / 1e3) if prev >= 0 else 0.0
            if fwd:
                last_fwd = i
            else:
                last_bwd = i
            out[i, C_SINCE] = np.log1p(max(t - t0, 0) / 1e6)
            for j in range(k):
                out[i, N_PACKET_FEATURES + j] = flow_block[f, j]


@dataclass(frozen=True, slots=True)
class Scaler:
    """Standardisation fitted on training flows only.

    Binary columns (only 0 and 1 in training) are left as they are (mean 0, scale 1): a flag
    that is rare in training would otherwise be divided by a tiny standard deviation and its
    reconstruction error would swamp every other feature. Constant columns get scale 1, and no
    scale is below ``MIN_SCALE``.
    """

    names: tuple[str, ...]
    mean_: npt.NDArray[np.float32]
    scale_: npt.NDArray[np.float32]

    def check(self, features: Features) -> None:
        """IncompatibleModel unless ``features`` have the columns this scaler was fitted on."""
        if features.names != self.names:
            missing = sorted(set(self.names) ^ set(features.names))
            raise IncompatibleModel(
                "the model was trained with other features than this netae computes "
                f"(differences: {', '.join(missing) or 'order'}); retrain the model with this version"
            )

    def transform(self, features: Features) -> Features:
        self.check(features)
        # Written into a buffer with one spare zero row, which the model's batch gather uses
        # for padded steps (score.padded_values), so the scaled matrix is never copied again.
        n = len(features.values)
        buf = np.empty((n + 1, len(self.names)), dtype=np.float32)
        values = buf[:n]
        np.subtract(features.values, self.mean_, out=values)
        values /= self.scale_
        buf[n] = 0.0
        return Features(values=values, offsets=features.offsets, names=features.names)


def fit_scaler(features: Features, rows: npt.NDArray[np.bool_] | None = None) -> Scaler:
    """Per-column mean and standard deviation over the given packet rows (default: all).

    One pass of ``ScalerAccumulator``, so fitting in memory and streaming shards share the rules
    (constant columns scale 1, no scale below ``MIN_SCALE``, binary columns left as they are).
    """
    return ScalerAccumulator(names=features.names).update(features, rows).finish()


@dataclass(slots=True)
class ScalerAccumulator:
    """``fit_scaler`` in one streaming pass: ``update`` shard by shard, then ``finish``.

    Each update computes its chunk's mean and sum of squared deviations exactly as ``np.std``
    does, and chunks are merged with Chan et al.'s pairwise formula (count, mean, M2), which
    stays accurate where raw sums of squares would cancel. One update gives exactly
    ``fit_scaler``; several agree with it to float64 rounding (then cast to float32).
    """

    names: tuple[str, ...]
    n_rows: int = 0
    mean: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    m2: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    is_binary: npt.NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, dtype=bool))

    def __post_init__(self) -> None:
        if len(self.mean) != len(self.names):
            self.mean = np.zeros(len(self.names), dtype=np.float64)
            self.m2 = np.zeros(len(self.names), dtype=np.float64)
            self.is_binary = np.ones(len(self.names), dtype=bool)

    def update(self, features: Features, rows: npt.NDArray[np.bool_] | None = None) -> ScalerAccumulator:
        """Add the given packet rows of ``features`` (default: all); returns self."""
        if features.names != self.names:
            raise ValueError(f"feature names differ: {features.names} vs {self.names}")
        x = features.values if rows is None else features.values[rows]
        n_b = len(x)
        if n_b == 0:
            return self
        self.is_binary &= np.all((x == 0) | (x == 1), axis=0)
        mean_b = x.mean(axis=0, dtype=np.float64)
        d = x - mean_b
        m2_b = np.multiply(d, d).sum(axis=0, dtype=np.float64)
        if self.n_rows == 0:
            self.mean, self.m2 = mean_b, m2_b
        else:
            n_a, n = self.n_rows, self.n_rows + n_b
            delta = mean_b - self.mean
            self.mean = self.mean + delta * (n_b / n)
            self.m2 = self.m2 + m2_b + delta * delta * (n_a * n_b / n)
        self.n_rows += n_b
        return self

    def finish(self) -> Scaler:
        """The scaler of every row seen (mean 0, scale 1 when none was)."""
        if self.n_rows == 0:
            mean = np.zeros(len(self.names), dtype=np.float64)
            std = np.ones(len(self.names), dtype=np.float64)
        else:
            mean = self.mean
            std = np.sqrt(self.m2 / self.n_rows)
        std = np.where(std < 1e-6, 1.0, np.maximum(std, MIN_SCALE))
        if self.n_rows:  # binary columns stay 0/1, as in fit_scaler
            mean = np.where(self.is_binary, 0.0, mean)
            std = np.where(self.is_binary, 1.0, std)
        return Scaler(names=self.names, mean_=mean.astype(np.float32), scale_=std.astype(np.float32))


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


_worst_kernel: Any = njit(cache=True, nogil=True)(_worst_python)  # numpy twin: tests/reference


def worst_packets(offsets: npt.NDArray[np.int64], err: npt.NDArray[np.float32], k: int) -> npt.NDArray[np.int64]:
    """(n_flows, k) positions within each flow of its k highest-error packets, -1 padded."""
    out = np.full((len(offsets) - 1, k), -1, dtype=np.int64)
    _worst_kernel(offsets, err, k, out)
    return out
