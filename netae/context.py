"""Cross-flow context: what a flow's source host, host pair and service did before it.

For each flow, only flows that *started before it* within ``window_s`` count, so the same flow
gets the same context in training and in scoring, and a streaming pass needs only the last
``window_s`` of flows as state. Groups:

- source host (``src``): how many flows it started, how many destinations and destination ports
  were new to it, and the share of its TCP flows that failed (no completed handshake, or reset);
- host pair and service (``pair`` = src, dst, dst port, protocol): how many flows, the mean and
  spread of the log intervals between their starts (regular polling has a small spread), and the
  bytes each way;
- service (``svc`` = dst, dst port, protocol): how many flows, and how many sources were new to it.

"New" means not seen in the ``window_s`` before (an exact sliding count of first occurrences;
it approximates distinct counts without per-flow sets). Everything is computed by sorting and
cumulative sums: no loop per flow.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from netae.config import ContextSettings
from netae.flows import flow_key_hash
from netae.tables import FlowTable, PacketTable

__all__ = ["CONTEXT_FEATURES", "compute_context"]

CONTEXT_FEATURES: tuple[str, ...] = (
    "ctx_src_flows_log",
    "ctx_src_new_dsts_log",
    "ctx_src_new_dports_log",
    "ctx_src_fail_share",
    "ctx_pair_flows_log",
    "ctx_pair_since_prev_log_s",
    "ctx_pair_iat_mean_log_s",
    "ctx_pair_iat_std_log_s",
    "ctx_pair_fwd_bytes_log",
    "ctx_pair_bwd_bytes_log",
    "ctx_svc_flows_log",
    "ctx_svc_new_srcs_log",
)

TCP_SYN, TCP_ACK, TCP_RST = 0x02, 0x10, 0x04


def _windowed(
    group: npt.NDArray[np.uint64], t_ns: npt.NDArray[np.int64], window_ns: int, *weights: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.int64], list[npt.NDArray[np.float64]], npt.NDArray[np.int64]]:
    """Per row: the count of earlier rows of its group within the window, and weighted sums.

    "Earlier" means a strictly earlier start time (ties excluded, at microsecond resolution)
    within ``window_ns``. Returns (count, sums, index of the previous row of the group or -1).
    """
    n = len(t_ns)
    o = np.lexsort((t_ns, group))
    g = group[o]
    # Microseconds keep the composite (group, time) key below 2**62 for long captures.
    t = t_ns[o] // 1000
    window_ns = window_ns // 1000
    new_group = np.ones(n, dtype=bool)
    new_group[1:] = g[1:] != g[:-1]
    gid = np.cumsum(new_group) - 1
    # Search within each group using a composite key (group id, time) that sorts like (g, t).
    t_rel = t - (int(t.min()) if n else 0)
    span = int(t_rel.max()) + 1 if n else 1
    scale = span + window_ns + 1
    if (int(gid.max()) + 1 if n else 1) * scale < 2**62:
        ck = gid.astype(np.int64) * scale + t_rel
        lo = np.searchsorted(ck, gid.astype(np.int64) * scale + np.maximum(t_rel - window_ns, 0), side="left")
        hi = np.searchsorted(ck, ck, side="left")  # strictly earlier: first row with the same time
    else:  # pragma: no cover - astronomically long captures with many groups
        lo = np.empty(n, np.int64)
        hi = np.empty(n, np.int64)
        starts = np.flatnonzero(new_group)
        ends = np.append(starts[1:], n)
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
            lo[a:b] = a + np.searchsorted(t[a:b], np.maximum(t[a:b] - window_ns, t[a]), side="left")
            hi[a:b] = a + np.searchsorted(t[a:b], t[a:b], side="left")
    count_sorted = np.maximum(hi - lo, 0)
    sums_sorted = []
    for w in weights:
        c = np.zeros(n + 1, dtype=np.float64)
        np.cumsum(w[o], out=c[1:])
        sums_sorted.append(np.where(hi > lo, c[hi] - c[lo], 0.0))
    prev_sorted = np.where(new_group, -1, np.arange(n) - 1)
    count = np.empty(n, dtype=np.int64)
    count[o] = count_sorted
    sums = []
    for s in sums_sorted:
        out = np.empty(n, dtype=np.float64)
        out[o] = s
        sums.append(out)
    prev = np.empty(n, dtype=np.int64)
    prev[o] = np.where(prev_sorted >= 0, o[np.maximum(prev_sorted, 0)], -1)
    return count, sums, prev


def _novel(group: npt.NDArray[np.uint64], t_ns: npt.NDArray[np.int64], window_ns: int) -> npt.NDArray[np.float64]:
    """1.0 where the (group, value) key was not seen in the window before this row."""
    _, _, prev = _windowed(group, t_ns, window_ns)
    gap = np.where(prev >= 0, t_ns - t_ns[np.maximum(prev, 0)], np.iinfo(np.int64).max)
    return (gap > window_ns).astype(np.float64)


def flow_failed(packets: PacketTable, flows: FlowTable) -> npt.NDArray[np.bool_]:
    """TCP flows without a completed handshake, or reset (per flow)."""
    n = flows.n_flows
    rep = np.repeat(np.arange(n), flows.n_packets)
    flags = packets.tcp_flags[flows.order]
    is_fwd = flows.is_fwd
    synack = np.bincount(rep, weights=((flags & TCP_SYN) != 0) & ((flags & TCP_ACK) != 0) & ~is_fwd, minlength=n)
    rst = np.bincount(rep, weights=(flags & TCP_RST) != 0, minlength=n)
    return (flows.proto == 6) & ((synack == 0) | (rst > 0))


def compute_context(
    packets: PacketTable, flows: FlowTable, *, settings: ContextSettings
) -> dict[str, npt.NDArray[np.float32]]:
    """Per-flow context columns (n_flows each), from flows that started before each flow."""
    n = flows.n_flows
    if n == 0:
        return {name: np.zeros(0, np.float32) for name in CONTEXT_FEATURES}
    w = int(settings.window_s * 1e9)
    t = flows.first_ns
    fid = flows.file_id.astype(np.uint64)
    src = flow_key_hash(flows.src_hi, flows.src_lo, fid)
    dst = flow_key_hash(flows.dst_hi, flows.dst_lo, fid)
    svc_port = (flows.dst_port.astype(np.uint64) << np.uint64(8)) | flows.proto.astype(np.uint64)
    svc = flow_key_hash(dst, svc_port)
    pair = flow_key_hash(src, svc)
    src_dst = flow_key_hash(src, dst)
    src_dport = flow_key_hash(src, svc_port)
    svc_src = flow_key_hash(svc, src)

    failed = flow_failed(packets, flows).astype(np.float64)
    n_src, (fail_sum, new_dst_sum, new_dport_sum), _ = _windowed(
        src, t, w, failed, _novel(src_dst, t, w), _novel(src_dport, t, w)
    )
    fwd_b = flows.fwd_bytes.astype(np.float64)
    bwd_b = flows.bwd_bytes.astype(np.float64)
    # Intervals between consecutive flows of a pair (log seconds), each attached to the later flow.
    _, _, prev = _windowed(pair, t, w)
    has_prev = prev >= 0
    gap_s = np.where(has_prev, (t - t[np.maximum(prev, 0)]) / 1e9, 0.0)
    log_gap = np.log1p(gap_s)
    in_window = has_prev & (gap_s * 1e9 <= w)
    n_pair, (gap_n, gap_sum, gap_sq, fwd_sum, bwd_sum), _ = _windowed(
        pair, t, w, in_window.astype(np.float64), np.where(in_window, log_gap, 0.0),
        np.where(in_window, log_gap**2, 0.0), fwd_b, bwd_b,
    )  # fmt: skip
    # The gaps counted for a flow are those of its predecessors (each closes an earlier interval),
    # plus the gap that leads to this flow itself.
    gap_n = gap_n + in_window
    gap_sum = gap_sum + np.where(in_window, log_gap, 0.0)
    gap_sq = gap_sq + np.where(in_window, log_gap**2, 0.0)
    mean = np.where(gap_n > 0, gap_sum / np.maximum(gap_n, 1), 0.0)
    var = np.where(gap_n > 1, gap_sq / np.maximum(gap_n, 1) - mean**2, 0.0)
    n_svc, (new_src_sum,), _ = _windowed(svc, t, w, _novel(svc_src, t, w))
    since_prev = np.where(in_window, log_gap, np.log1p(settings.window_s))
    cols = {
        "ctx_src_flows_log": np.log1p(n_src),
        "ctx_src_new_dsts_log": np.log1p(new_dst_sum),
        "ctx_src_new_dports_log": np.log1p(new_dport_sum),
        "ctx_src_fail_share": np.where(n_src > 0, fail_sum / np.maximum(n_src, 1), 0.0),
        "ctx_pair_flows_log": np.log1p(n_pair),
        "ctx_pair_since_prev_log_s": since_prev,
        "ctx_pair_iat_mean_log_s": mean,
        "ctx_pair_iat_std_log_s": np.sqrt(np.maximum(var, 0.0)),
        "ctx_pair_fwd_bytes_log": np.log1p(fwd_sum),
        "ctx_pair_bwd_bytes_log": np.log1p(bwd_sum),
        "ctx_svc_flows_log": np.log1p(n_svc),
        "ctx_svc_new_srcs_log": np.log1p(new_src_sum),
    }
    return {name: np.asarray(cols[name], dtype=np.float32) for name in CONTEXT_FEATURES}
