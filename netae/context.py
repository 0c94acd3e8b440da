"""Cross-flow context: what a flow's source host, host pair and service did before it.

A flow's context is built from the flows that *ended before it started*, within ``window_s``.
That choice makes streaming exact: when a flow is closed (idle timeout passed), every flow that
ended before it started has been closed too, so ``ContextTracker`` fed closed flows batch by
batch gives the same values as one pass over the whole capture (``compute_context``), with state
bounded by two windows of flows. Groups (flows of different capture files never mix):

- source host (``src``): flows it made; how many of them went to a destination, or a destination
  port, that was new to it (not seen in the window before); the share of its TCP flows that failed
  (no completed handshake, or reset);
- pair (src, dst, dst port, protocol): flows; time since the last one ended; mean and spread of
  the log gaps between their starts (regular polling has a small spread); bytes each way;
- service (dst, dst port, protocol): flows; how many were from a source new to it;
- DNS (flows whose packets carry a question name, ``capture/dns.py``): per parent domain (the
  name without its first label), how many distinct names were looked up under it and what share
  of its lookups were new names (a tunnel encodes data in ever new subdomains); per source host,
  how many new names it looked up; 0 for flows without a name;
- pair sizes: spread of the log total bytes of the pair's flows (beacons repeat their sizes);
- ``ctx_coverage``: how much of the window the capture covered before the flow (the first flows
  of a capture have little history, and the model must know it), counted from the end of the
  file's first flow to end.

Everything is computed by sorting and cumulative sums: no loop per flow.

NOTE [context cap]: a flow's context counts at most the ``max_events`` flows that ended last
before it started (and within ``window_s``). Which flows those are does not depend on how the
flows were batched, so batch and stream agree past the cap too, and the streaming tracker keeps
only them (plus the flows that ended after the horizon): its state is bounded under floods of
whole connections. A warning says when the cap first cuts a window short.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import numpy.typing as npt

from netae.config import ContextSettings
from netae.flows import group_rows, hash_rows, warn
from netae.protocols import IPPROTO_TCP, TCP_ACK, TCP_RST, TCP_SYN
from netae.tables import FlowTable, PacketTable

__all__ = [
    "CONTEXT_EXTRAS",
    "CONTEXT_FEATURES",
    "ContextTracker",
    "FlowDns",
    "FlowFacts",
    "compute_context",
    "flow_dns",
    "flow_facts",
]

CONTEXT_FEATURES: tuple[str, ...] = (
    "ctx_coverage",
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
    "ctx_pair_bytes_std_log",
    "ctx_svc_flows_log",
    "ctx_svc_new_srcs_log",
    "ctx_src_dns_new_names_log",
    "ctx_dns_parent_names_log",
    "ctx_dns_parent_new_share",
)

# Raw values that explanations quote (not model inputs): the pair's start gaps in seconds.
CONTEXT_EXTRAS: tuple[str, ...] = ("ctx_pair_gap_mean_s", "ctx_pair_gap_std_s")

_F64 = npt.NDArray[np.float64]
_U64 = npt.NDArray[np.uint64]
_I64 = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class FlowTcp:
    """Per flow, what its TCP flags say about the handshake (false for other protocols' flows)."""

    synack_bwd: npt.NDArray[np.bool_]  # the responder sent SYN+ACK
    ack_fwd: npt.NDArray[np.bool_]  # the initiator sent an ACK without SYN
    reset: npt.NDArray[np.bool_]  # either side sent RST

    @property
    def failed(self) -> npt.NDArray[np.bool_]:
        """No completed handshake, or reset."""
        out: npt.NDArray[np.bool_] = ~self.synack_bwd | self.reset
        return out


def flow_tcp(packets: PacketTable, flows: FlowTable) -> FlowTcp:
    """Handshake facts of every flow from its packets' TCP flags (one bincount each)."""
    n = flows.n_flows
    rep = np.repeat(np.arange(n), flows.n_packets)
    flags = packets.tcp_flags[flows.order]
    is_fwd = flows.is_fwd
    syn = (flags & TCP_SYN) != 0
    ack = (flags & TCP_ACK) != 0
    is_tcp = flows.proto == IPPROTO_TCP
    return FlowTcp(
        synack_bwd=is_tcp & (np.bincount(rep, weights=syn & ack & ~is_fwd, minlength=n) > 0),
        ack_fwd=is_tcp & (np.bincount(rep, weights=ack & ~syn & is_fwd, minlength=n) > 0),
        reset=is_tcp & (np.bincount(rep, weights=(flags & TCP_RST) != 0, minlength=n) > 0),
    )


@dataclass(frozen=True, slots=True)
class FlowDns:
    """Per flow: the DNS question name of its first packet that carries one (zeros if none)."""

    qname_len: _F64
    label_len: _F64
    label_entropy: _F64
    name_hash: _U64
    parent_hash: _U64

    @property
    def has_name(self) -> npt.NDArray[np.bool_]:
        return self.qname_len > 0


def flow_dns(packets: PacketTable, flows: FlowTable) -> FlowDns:
    """The question name facts of each flow's first packet with a DNS name (vectorised)."""
    n = flows.n_flows
    out = FlowDns(np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n, np.uint64), np.zeros(n, np.uint64))
    if n == 0 or packets.n_packets == 0:
        return out
    rows = flows.order
    idx = np.flatnonzero(packets.dns_qname_len[rows] > 0)
    if len(idx) == 0:
        return out
    flow_of = np.searchsorted(flows.offsets, idx, side="right") - 1
    fl, first = np.unique(flow_of, return_index=True)
    pk = rows[idx[first]]
    out.qname_len[fl] = packets.dns_qname_len[pk]
    out.label_len[fl] = packets.dns_label_len[pk]
    out.label_entropy[fl] = packets.dns_label_entropy[pk]
    out.name_hash[fl] = packets.dns_name_hash[pk]
    out.parent_hash[fl] = packets.dns_parent_hash[pk]
    return out


@dataclass(frozen=True, slots=True)
class FlowFacts:
    """What both the context and the per-flow feature columns read off a batch's packets.

    Computed once per batch (``flow_facts``) and handed to both stages, not recounted by each.
    """

    tcp: FlowTcp
    dns: FlowDns
    is_tcp: npt.NDArray[np.bool_]

    @property
    def failed(self) -> npt.NDArray[np.bool_]:
        """TCP flows without a completed handshake, or reset (false for non-TCP flows)."""
        out: npt.NDArray[np.bool_] = self.is_tcp & self.tcp.failed
        return out


def flow_facts(packets: PacketTable, flows: FlowTable) -> FlowFacts:
    return FlowFacts(tcp=flow_tcp(packets, flows), dns=flow_dns(packets, flows), is_tcp=flows.proto == IPPROTO_TCP)


@dataclass(frozen=True, slots=True)
class _Events:
    """Closed flows as context events: keys, start and end times (µs), weights, novelty flags."""

    start_us: _I64
    end_us: _I64
    fid: _U64  # the words context keys are made of (KEY_COLUMNS)
    tunnel: _U64
    src_hi: _U64
    src_lo: _U64
    dst_hi: _U64
    dst_lo: _U64
    svc_port: _U64  # dst port << 8 | protocol
    name_hash: _U64  # the DNS question name's hash (0: none)
    parent_hash: _U64
    uniq: _U64  # 0 for a flow with a DNS name, else a number no other event has
    failed: _F64
    fwd_bytes: _F64
    bwd_bytes: _F64
    is_tcp: _F64
    new_dst: _F64
    new_dport: _F64
    new_src: _F64
    pair_gap_log: _F64  # log1p of the start gap to the pair's previous event (0 when none in window)
    has_pair_gap: _F64
    pair_gap_s: _F64
    log_bytes: _F64
    is_dns: _F64
    new_dns_name: _F64  # the name was not looked up (by anyone) in the window before
    src_new_dns_name: _F64  # the source did not look the name up in the window before

    @classmethod
    def empty(cls) -> _Events:
        kw: dict[str, Any] = {
            f.name: np.empty(0, dtype=np.int64 if f.name.endswith("_us") else np.float64) for f in fields(cls)
        }
        for name in _WORDS:
            kw[name] = np.empty(0, dtype=np.uint64)
        return cls(**kw)

    def take(self, idx: npt.NDArray[np.int64] | npt.NDArray[np.bool_]) -> _Events:
        return _Events(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    def concat(self, other: _Events) -> _Events:
        return _Events(
            **{f.name: np.concatenate([getattr(self, f.name), getattr(other, f.name)]) for f in fields(self)}
        )

    def __len__(self) -> int:
        return len(self.end_us)


# NOTE [context keys]: a context group is the set of events whose key words (KEY_COLUMNS) are
# all equal. Rows are bucketed by a keyed hash (SipHash under the process's random key, so no
# input can aim at a bucket) in an open-addressing table (``flows.group_rows``, linear time) that
# compares the full words of rows sharing a hash: two keys never merge, whatever their hash.
_WORDS = ("fid", "tunnel", "src_hi", "src_lo", "dst_hi", "dst_lo", "svc_port", "name_hash", "parent_hash", "uniq")
_HOST = ("fid", "tunnel", "src_hi", "src_lo")
KEY_COLUMNS: dict[str, tuple[str, ...]] = {
    "src": _HOST,
    "svc": ("fid", "tunnel", "dst_hi", "dst_lo", "svc_port"),
    "pair": (*_HOST, "dst_hi", "dst_lo", "svc_port"),
    "src_dst": (*_HOST, "dst_hi", "dst_lo"),
    "src_dport": (*_HOST, "svc_port"),
    "svc_src": (*_HOST, "dst_hi", "dst_lo", "svc_port"),
    "dns_parent": ("fid", "parent_hash", "uniq"),
    "dns_name": ("fid", "name_hash", "uniq"),
    "src_dns_name": (*_HOST, "name_hash", "uniq"),
}


def _key_words(flows: FlowTable, dns: FlowDns, first_uniq: int) -> dict[str, _U64]:
    n = flows.n_flows
    uniq = np.where(dns.has_name, 0, first_uniq + np.arange(n)).astype(np.uint64)
    return {
        "fid": flows.file_id.astype(np.uint64), "tunnel": flows.tunnel_key, "src_hi": flows.src_hi,
        "src_lo": flows.src_lo, "dst_hi": flows.dst_hi, "dst_lo": flows.dst_lo,
        "svc_port": (flows.dst_port.astype(np.uint64) << np.uint64(8)) | flows.proto.astype(np.uint64),
        "name_hash": dns.name_hash, "parent_hash": dns.parent_hash, "uniq": uniq,
    }  # fmt: skip


def group_ids(ev: _Events, q: _Events, key: str) -> tuple[_I64, _I64]:
    """Dense group numbers of the events and the queries under ``key`` (NOTE [context keys])."""
    cols = KEY_COLUMNS[key]
    n_ev = len(ev)
    words = np.empty((n_ev + len(q), len(cols)), np.uint64)
    for j, name in enumerate(cols):
        words[:n_ev, j] = getattr(ev, name)
        words[n_ev:, j] = getattr(q, name)
    gid = group_rows(words, hash_rows(words))
    return gid[:n_ev], gid[n_ev:]


def _lookback_cut(ev_t: _I64, q_t: _I64, max_events: int) -> _I64 | None:
    """Per query, the end time of the ``max_events``-th latest event before it (NOTE [context cap])."""
    if not max_events or len(ev_t) <= max_events:
        return None
    ends = np.sort(ev_t)
    k = np.searchsorted(ends, q_t, side="left")
    return np.where(k > max_events, ends[np.maximum(k - max_events, 0)], ends[0])  # ends[0]: no cut


def _window_query(
    ev: _Events, ev_t: _I64, q: _Events, q_t: _I64, key: str, window_us: int, weights: list[_F64],
    max_events: int = 0,
) -> tuple[_I64, list[_F64], _I64]:  # fmt: skip
    """For each query: events of its ``key`` group with time in [q_t - window, q_t), among the
    last ``max_events`` to end before q_t (0: all): count and weighted sums. Also returns the
    index (into the events) of the latest such event, or -1.
    """
    n_ev, n_q = len(ev_t), len(q_t)
    if n_ev == 0 or n_q == 0:
        return np.zeros(n_q, np.int64), [np.zeros(n_q) for _ in weights], np.full(n_q, -1, np.int64)
    ev_gid, q_gid = group_ids(ev, q, key)
    n_groups = int(max(ev_gid.max(), q_gid.max())) + 1
    t0 = min(int(ev_t.min()), int(q_t.min()))
    span = max(int(ev_t.max()), int(q_t.max())) - t0 + window_us + 2
    ev_rel, q_rel = ev_t - t0, q_t - t0
    q_from = np.maximum(q_rel - window_us, 0)
    cut = _lookback_cut(ev_t, q_t, max_events)
    if cut is not None:
        q_from = np.maximum(q_from, cut - t0)
    if n_groups * span >= 2**62:
        # Times spread over centuries (a damaged capture): use their ranks, which keep the order.
        times, inv_t = np.unique(np.concatenate([ev_rel, q_rel, q_from]), return_inverse=True)
        span = len(times) + 1
        ev_rel, q_rel, q_from = inv_t[:n_ev], inv_t[n_ev : n_ev + n_q], inv_t[n_ev + n_q :]
    ev_key = ev_gid * span + ev_rel
    o = np.argsort(ev_key, kind="stable")
    ev_key = ev_key[o]
    # Queries looked up in key order (within a group q_from rises with q_rel, so one order sorts
    # both bounds): sorted lookups walk the events in order instead of jumping across them.
    q_hi = q_gid * span + q_rel
    qo = np.argsort(q_hi)
    lo = np.empty(n_q, np.int64)
    hi = np.empty(n_q, np.int64)
    lo[qo] = np.searchsorted(ev_key, (q_gid * span + q_from)[qo], side="left")
    hi[qo] = np.searchsorted(ev_key, q_hi[qo], side="left")
    count = (hi - lo).astype(np.int64)
    sums = []
    for w in weights:
        c = np.zeros(n_ev + 1)
        np.cumsum(w[o], out=c[1:])
        sums.append(c[hi] - c[lo])
    last = np.where(hi > lo, o[np.maximum(hi - 1, 0)], -1)
    return count, sums, last


class ContextTracker:
    """Streaming context: feed closed flows batch by batch; state is two windows of flows.

    ``update`` returns the context of the new flows (``CONTEXT_FEATURES`` and ``CONTEXT_EXTRAS``).
    Fed every flow of a capture in batches that
    respect closing order (as ``FlowAssembler`` emits them), the result equals ``compute_context``
    on the whole capture. ``horizon_ns`` (the earliest start of a still-open flow, or the newest
    packet time) lets old state go.
    """

    def __init__(self, settings: ContextSettings, *, on_warning: Callable[[str], None] | None = None) -> None:
        self.window_us = int(settings.window_s * 1e6)
        self.max_events = settings.max_events
        self.on_warning = on_warning
        self._warned = False
        self._events = _Events.empty()
        self._file_start_us: dict[int, int] = {}

    def _coverage(self, flows: FlowTable, start_us: _I64, end_us: _I64) -> _F64:
        # Measured from the earliest flow *end* of the file: flows close in order of their ends
        # (idle timeout), so the first closed batch holds it and streaming stays exact.
        fid = flows.file_id
        for f in np.unique(fid).tolist():
            m = int(end_us[fid == f].min())
            self._file_start_us[f] = min(self._file_start_us.get(f, m), m)
        base = np.array([self._file_start_us[f] for f in fid.tolist()], dtype=np.int64) if len(fid) else np.zeros(0)
        return np.clip((start_us - base) / max(self.window_us, 1), 0.0, 1.0)

    def _new_events(self, flows: FlowTable, facts: FlowFacts) -> _Events:
        dns = facts.dns
        keys = _key_words(flows, dns, int(self._events.uniq.max()) + 1 if len(self._events) else 1)
        start = flows.first_ns // 1000
        end = flows.last_ns // 1000
        zeros = np.zeros(flows.n_flows)
        batch = _Events(
            start_us=start, end_us=end, **keys,
            failed=facts.failed.astype(np.float64),
            fwd_bytes=flows.fwd_bytes.astype(np.float64), bwd_bytes=flows.bwd_bytes.astype(np.float64),
            is_tcp=(flows.proto == IPPROTO_TCP).astype(np.float64),
            new_dst=zeros, new_dport=zeros, new_src=zeros, pair_gap_log=zeros, has_pair_gap=zeros,
            log_bytes=np.log1p((flows.fwd_bytes + flows.bwd_bytes).astype(np.float64)),
            is_dns=dns.has_name.astype(np.float64), new_dns_name=zeros, src_new_dns_name=zeros, pair_gap_s=zeros,
        )  # fmt: skip
        # Novelty and pair gaps of each new event, against every event that ended before it.
        every = self._events.concat(batch)
        w = self.window_us
        flags = {}
        for name, key in (
            ("new_dst", "src_dst"), ("new_dport", "src_dport"), ("new_src", "svc_src"),
            ("new_dns_name", "dns_name"), ("src_new_dns_name", "src_dns_name"),
        ):  # fmt: skip
            cnt, _, _ = _window_query(every, every.end_us, batch, batch.end_us, key, w, [], self.max_events)
            flags[name] = (cnt == 0).astype(np.float64)
        flags["new_dns_name"] *= batch.is_dns
        flags["src_new_dns_name"] *= batch.is_dns
        _, _, last = _window_query(every, every.end_us, batch, batch.end_us, "pair", w, [], self.max_events)
        has = last >= 0
        gap = np.where(has, np.maximum(batch.start_us - every.start_us[np.maximum(last, 0)], 0) / 1e6, 0.0)
        return _Events(**{**{f.name: getattr(batch, f.name) for f in fields(batch)}, **flags,
                          "pair_gap_log": np.log1p(gap), "pair_gap_s": gap,
                          "has_pair_gap": has.astype(np.float64)})  # fmt: skip

    def update(
        self, packets: PacketTable, flows: FlowTable, *, horizon_ns: int | None = None, facts: FlowFacts | None = None
    ) -> dict[str, npt.NDArray[np.float32]]:
        """``facts``: ``flow_facts(packets, flows)`` when the caller has it already."""
        n = flows.n_flows
        if n == 0:
            return {name: np.zeros(0, np.float32) for name in CONTEXT_FEATURES + CONTEXT_EXTRAS}
        new = self._new_events(flows, facts if facts is not None else flow_facts(packets, flows))
        ev = self._events.concat(new)
        self._events = ev
        w = self.window_us
        q = new  # queries: the new flows, at their start times
        self._warn_if_capped(ev.end_us, q.start_us)
        n_src, (fail, tcp, new_dst, new_dport, src_dns_new), _ = _window_query(
            ev, ev.end_us, q, q.start_us, "src", w,
            [ev.failed, ev.is_tcp, ev.new_dst, ev.new_dport, ev.src_new_dns_name], self.max_events,
        )  # fmt: skip
        n_pair, (fwd, bwd, gap_n, gap_sum, gap_sq, b_sum, b_sq, lin_sum, lin_sq), last = _window_query(
            ev, ev.end_us, q, q.start_us, "pair", w,
            [ev.fwd_bytes, ev.bwd_bytes, ev.has_pair_gap, ev.pair_gap_log, ev.pair_gap_log**2,
             ev.log_bytes, ev.log_bytes**2, ev.pair_gap_s, ev.pair_gap_s**2], self.max_events,
        )  # fmt: skip
        n_parent, (parent_new,), _ = _window_query(
            ev, ev.end_us, q, q.start_us, "dns_parent", w, [ev.new_dns_name], self.max_events
        )
        is_dns = q.is_dns > 0
        n_svc, (new_src,), _ = _window_query(ev, ev.end_us, q, q.start_us, "svc", w, [ev.new_src], self.max_events)
        has_last = last >= 0
        since = np.where(has_last, np.maximum(q.start_us - ev.end_us[np.maximum(last, 0)], 0) / 1e6, w / 1e6)
        mean = np.where(gap_n > 0, gap_sum / np.maximum(gap_n, 1), 0.0)
        var = np.where(gap_n > 1, gap_sq / np.maximum(gap_n, 1) - mean**2, 0.0)
        lin_mean = np.where(gap_n > 0, lin_sum / np.maximum(gap_n, 1), 0.0)
        lin_var = np.where(gap_n > 1, lin_sq / np.maximum(gap_n, 1) - lin_mean**2, 0.0)
        b_mean = b_sum / np.maximum(n_pair, 1)
        b_var = np.where(n_pair > 1, b_sq / np.maximum(n_pair, 1) - b_mean**2, 0.0)
        cols = {
            "ctx_coverage": self._coverage(flows, q.start_us, q.end_us),
            "ctx_src_flows_log": np.log1p(n_src),
            "ctx_src_new_dsts_log": np.log1p(new_dst),
            "ctx_src_new_dports_log": np.log1p(new_dport),
            "ctx_src_fail_share": np.where(tcp > 0, fail / np.maximum(tcp, 1), 0.0),
            "ctx_pair_flows_log": np.log1p(n_pair),
            "ctx_pair_since_prev_log_s": np.log1p(since),
            "ctx_pair_iat_mean_log_s": mean,
            "ctx_pair_iat_std_log_s": np.sqrt(np.maximum(var, 0.0)),
            "ctx_pair_fwd_bytes_log": np.log1p(fwd),
            "ctx_pair_bwd_bytes_log": np.log1p(bwd),
            "ctx_pair_bytes_std_log": np.sqrt(np.maximum(b_var, 0.0)),
            "ctx_svc_flows_log": np.log1p(n_svc),
            "ctx_svc_new_srcs_log": np.log1p(new_src),
            "ctx_src_dns_new_names_log": np.where(is_dns, np.log1p(src_dns_new), 0.0),
            "ctx_dns_parent_names_log": np.where(is_dns, np.log1p(parent_new), 0.0),
            "ctx_dns_parent_new_share": np.where(is_dns & (n_parent > 0), parent_new / np.maximum(n_parent, 1), 0.0),
            "ctx_pair_gap_mean_s": lin_mean,
            "ctx_pair_gap_std_s": np.sqrt(np.maximum(lin_var, 0.0)),
        }
        if horizon_ns is not None:
            self._forget(horizon_ns // 1000)
        return {name: np.asarray(cols[name], dtype=np.float32) for name in CONTEXT_FEATURES + CONTEXT_EXTRAS}

    def _warn_if_capped(self, ends: _I64, starts: _I64) -> None:
        if self._warned or not self.max_events or len(ends) <= self.max_events:
            return
        cut = _lookback_cut(ends, starts, self.max_events)
        k = np.searchsorted(np.sort(ends), starts, side="left")
        if cut is not None and np.any((k > self.max_events) & (cut > starts - self.window_us)):
            self._warned = True
            warn(
                self.on_warning,
                f"more than {self.max_events:,} flows in the context window (context.max_events): context "
                "looks back over the latest of them only",
            )

    def _forget(self, horizon_us: int) -> None:
        """Drop the events no later query can see: ended more than two windows before the horizon,
        or before the last ``max_events`` to end before it (NOTE [context cap])."""
        ends = self._events.end_us
        keep_from = horizon_us - 2 * self.window_us
        cut = _lookback_cut(ends, np.array([horizon_us], np.int64), self.max_events)
        if cut is not None:
            keep_from = max(keep_from, int(cut[0]))
        self._events = self._events.take(ends >= keep_from)

    @property
    def n_events(self) -> int:
        return len(self._events)

    def window_state(self) -> tuple[dict[str, np.ndarray], dict[int, int]]:
        """The window's events as named columns and each file's start (µs), to resume from later."""
        return {f.name: getattr(self._events, f.name) for f in fields(self._events)}, dict(self._file_start_us)

    def resume(self, columns: dict[str, np.ndarray], file_start_us: dict[int, int]) -> None:
        """Continue from ``window_state`` of an earlier tracker; ValueError if the columns do not fit."""
        empty = _Events.empty()
        names = [f.name for f in fields(empty)]
        if sorted(columns) != sorted(names):
            raise ValueError(f"context columns differ: expected {', '.join(names)}")
        n = len(columns["end_us"])
        for name in names:
            col = columns[name]
            if col.dtype != getattr(empty, name).dtype or col.shape != (n,):
                raise ValueError(f"context column {name} has dtype {col.dtype} and shape {col.shape}")
        self._events = _Events(**columns)
        self._file_start_us = dict(file_start_us)


def compute_context(
    packets: PacketTable, flows: FlowTable, *, settings: ContextSettings, facts: FlowFacts | None = None
) -> dict[str, npt.NDArray[np.float32]]:
    """Per-flow context columns (n_flows each) in one pass (module docstring).

    Holds ``CONTEXT_FEATURES`` (model inputs) and ``CONTEXT_EXTRAS`` (raw values for explanations).
    """
    return ContextTracker(settings).update(packets, flows, facts=facts)
