"""Reference oracle for the feature fill: the plain numpy twin of ``netae.features``' kernel.

Not used by netae: the tests compare ``compute_features`` with it column by column. Columns are
built by name and placed by ``PACKET_FEATURES`` (the registry), as the kernel places them.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from netae.context import flow_facts
from netae.features import PACKET_FEATURES, TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN, _flow_columns
from netae.tables import Features, FlowTable, PacketTable


def _iat_same_direction(ts: np.ndarray, is_fwd: np.ndarray, flow_of: np.ndarray) -> np.ndarray:
    """Gap (µs) to the previous packet in the same direction within the flow (0 for the first)."""
    out = np.zeros(len(ts), dtype=np.float64)
    for direction in (True, False):
        idx = np.flatnonzero(is_fwd == direction)
        if len(idx) > 1:
            same_flow = flow_of[idx[1:]] == flow_of[idx[:-1]]
            gaps = (ts[idx[1:]] - ts[idx[:-1]]) / 1e3
            out[idx[1:]] = np.where(same_flow, np.maximum(gaps, 0.0), 0.0)
    return out


def packet_columns(packets: PacketTable, flows: FlowTable) -> dict[str, np.ndarray]:
    po, offsets, lengths = flows.order, flows.offsets, flows.n_packets
    n = len(po)
    ts = packets.ts_ns[po]
    is_first = np.zeros(n, dtype=bool)
    is_first[offsets[:-1][offsets[:-1] < n]] = True
    dt = np.zeros(n, dtype=np.float64)
    if n > 1:
        dt[1:] = (ts[1:] - ts[:-1]) / 1e3
    dt[is_first] = 0.0
    flow_of = np.repeat(np.arange(flows.n_flows), lengths)
    start = np.repeat(packets.ts_ns[po[offsets[:-1]]] if flows.n_flows else np.empty(0, np.int64), lengths)
    position = np.arange(n, dtype=np.int64) - np.repeat(offsets[:-1], lengths)
    flags, payload = packets.tcp_flags[po], packets.payload_len[po]
    return {
        "is_fwd": flows.is_fwd,
        "log_ip_len_bytes": np.log1p(packets.ip_len[po]),
        "log_payload_bytes": np.log1p(payload),
        "has_payload": payload > 0,
        "log_iat_us": np.log1p(np.maximum(dt, 0.0)),
        "log_iat_same_dir_us": np.log1p(_iat_same_direction(ts, flows.is_fwd, flow_of)),
        "log_since_start_ms": np.log1p(np.maximum(ts - start, 0) / 1e6),
        "log_position": np.log1p(position),
        "tcp_syn": (flags & TCP_SYN) != 0,
        "tcp_ack": (flags & TCP_ACK) != 0,
        "tcp_fin": (flags & TCP_FIN) != 0,
        "tcp_rst": (flags & TCP_RST) != 0,
        "tcp_psh": (flags & TCP_PSH) != 0,
        "log_tcp_window": np.log1p(packets.tcp_window[po]),
    }


def compute_features(
    packets: PacketTable, flows: FlowTable, *, context: dict[str, npt.NDArray[np.float32]] | None = None
) -> Features:
    per_flow = _flow_columns(flows, flow_facts(packets, flows))
    if context:
        per_flow = {**per_flow, **context}
    names = PACKET_FEATURES + tuple(per_flow)
    cols = packet_columns(packets, flows)
    values = np.empty((len(flows.order), len(names)), dtype=np.float32)
    for j, name in enumerate(PACKET_FEATURES):
        values[:, j] = cols[name]
    for j, col in enumerate(per_flow.values()):
        values[:, len(PACKET_FEATURES) + j] = np.repeat(np.asarray(col, np.float32), flows.n_packets)
    return Features(values=values, offsets=flows.offsets.copy(), names=names)


def worst_packets(offsets: npt.NDArray[np.int64], err: npt.NDArray[np.float32], k: int) -> npt.NDArray[np.int64]:
    """Top-k packet positions per flow by error (the numpy twin of ``features.worst_packets``)."""
    n_flows = len(offsets) - 1
    lengths = np.diff(offsets)
    flow_of = np.repeat(np.arange(n_flows), lengths)
    o = np.lexsort((-err, flow_of))  # per flow, highest error first (ties: earlier packet)
    rank = np.arange(len(o)) - np.repeat(offsets[:-1], lengths)
    out = np.full((n_flows, k), -1, dtype=np.int64)
    sel = rank < k
    rows_sel = o[sel]
    f_sel, r_sel = flow_of[rows_sel], rank[sel]
    out[f_sel, r_sel] = rows_sel - offsets[:-1][f_sel]
    return out
