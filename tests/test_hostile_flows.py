"""Hostile input for the flow and context tables (issue 21): crafted hash collisions, floods,
time stamps that jump. Counts of operations, never wall time, show that work stays linear."""

from __future__ import annotations

import dataclasses
import json
import struct
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import netae.flows as flows_mod
from netae.cli import app
from netae.context import compute_context
from netae.flows import FlowAssembler, assemble_flows, flow_key_hash, hash_rows, splitmix64
from netae.modelfile import dump_model, load_model
from netae.stream import stream_scores
from netae.tables import FlowTable, PacketTable, parse_ip
from netae.workflow import score_captures
from tests.helpers.packets import make_packets, tcp_session
from tests.helpers.pcapgen import Record, pcap_bytes
from tests.reference import flows as reference

U64 = np.uint64
VICTIM = "fd00:0:0:1::10"


def _mix(x: int) -> int:
    return int(splitmix64(np.array([x], U64))[0])


def _unmix_free_lo(hi_attacker: int, hi_target: int, lo_target: int) -> int:
    """The low half that makes (hi_attacker, lo) collide with the target under the OLD unkeyed
    chain ``h = mix(mix(mix(0 ^ hi) ^ lo) ^ ...)``: equal inner states after the second word."""
    return _mix(hi_attacker) ^ _mix(hi_target) ^ lo_target


def _colliding_address(target: str, prefix_hi: int) -> str:
    hi, lo = parse_ip(target)
    lo_a = _unmix_free_lo(prefix_hi, hi, lo)
    import ipaddress

    return str(ipaddress.IPv6Address((prefix_hi << 64) | lo_a))


def test_crafted_source_collides_under_the_old_hash_but_does_not_frame_the_victim():
    attacker = _colliding_address(VICTIM, 0xFD00_0000_0000_0002)
    (vh, vl), (ah, al) = parse_ip(VICTIM), parse_ip(attacker)
    fid = np.zeros(1, U64)
    old = [flow_key_hash(np.array([h], U64), np.array([lo], U64), fid)[0] for h, lo in ((vh, vl), (ah, al))]
    assert attacker != VICTIM and old[0] == old[1]  # the old context key of both hosts was one
    benign = []
    for k in range(30):  # the victim's ordinary HTTPS sessions, one every 20 s
        benign += tcp_session(20.0 * k, client=VICTIM, server="fd00::443", sport=40000 + k, dport=443, n_data=2)
    scan = [{"ts": 100.0 + 0.01 * p, "src": attacker, "dst": "fd00::99", "sport": 50000, "dport": 1 + p, "flags": 2}
            for p in range(80)]  # fmt: skip
    alone = make_packets(benign)
    both = make_packets(sorted(benign + scan, key=lambda r: r["ts"]))
    ctx_alone = _victim_context(alone)
    ctx_both = _victim_context(both)
    assert ctx_both.keys() == ctx_alone.keys()
    for name, col in ctx_alone.items():  # equal up to the rounding of running sums over more events
        np.testing.assert_allclose(ctx_both[name], col, rtol=1e-6, atol=1e-6, err_msg=name)
    assert ctx_alone["ctx_src_new_dports_log"].max() < np.log1p(5)  # and there were 80 to frame it with


def _victim_context(p: PacketTable) -> dict[str, np.ndarray]:
    from netae.config import ContextSettings

    f = assemble_flows(p, idle_timeout_s=120, active_timeout_s=1800)
    ctx = compute_context(p, f, settings=ContextSettings())
    vh, vl = parse_ip(VICTIM)
    mine = (f.src_hi == vh) & (f.src_lo == vl)
    return {name: col[mine] for name, col in ctx.items()}


def test_context_groups_stay_exact_when_every_key_shares_one_hash(monkeypatch):
    rows = []
    for k in range(40):
        rows += tcp_session(7.0 * k, client=f"10.0.{k % 3}.{k % 7 + 1}", server=f"10.1.0.{k % 4 + 1}", sport=30000 + k,
                            dport=(80, 443, 22)[k % 3])  # fmt: skip
    p = make_packets(rows)
    from netae.config import ContextSettings

    f = assemble_flows(p, idle_timeout_s=120, active_timeout_s=1800)
    want = compute_context(p, f, settings=ContextSettings())
    import netae.context as context_mod

    monkeypatch.setattr(context_mod, "hash_rows", lambda words: np.zeros(len(words), U64))
    got = compute_context(p, f, settings=ContextSettings())
    for name, col in want.items():
        np.testing.assert_array_equal(got[name], col, err_msg=name)


def _syn_packets(src: list[tuple[int, int]], dst: str, dport: int = 443, t0: float = 0.0) -> PacketTable:
    dh, dl = parse_ip(dst)
    n = len(src)
    cols = {k: np.zeros(n, v.dtype) for k, v in PacketTable.empty().column_dict().items()}
    cols["ts_ns"] = (t0 * 1e9 + np.arange(n) * 1000).astype(np.int64)
    cols["src_hi"] = np.array([s[0] for s in src], U64)
    cols["src_lo"] = np.array([s[1] for s in src], U64)
    cols["dst_hi"][:], cols["dst_lo"][:] = dh, dl
    cols["src_port"][:], cols["dst_port"][:] = 40000, dport
    cols["proto"][:], cols["ip_version"][:], cols["ip_len"][:], cols["tcp_flags"][:] = 6, 6, 60, 0x02
    cols["has_ports"][:] = True
    return PacketTable(**cols)


def _old_kernel_collisions(n: int, dst: str, dport: int) -> list[tuple[int, int]]:
    """Sources whose whole flow key had one hash under the old kernel (unkeyed splitmix chain
    over a_hi, a_lo, b_hi, b_lo, ports, meta): the attacker is endpoint a (the lower address)."""
    rng = np.random.default_rng(1)
    target_hi, target_lo = 0x2001_0DB8_0000_0000, 0x1
    out = []
    for hi in rng.integers(1, 2**62, n, dtype=np.int64).tolist():
        out.append((hi, _unmix_free_lo(hi, target_hi, target_lo)))
    ports = np.array([(40000 << 16) | dport], U64)
    h = {
        int(flow_key_hash(np.array([a], U64), np.array([b], U64), np.array([parse_ip(dst)[0]], U64),
                          np.array([parse_ip(dst)[1]], U64), ports, np.array([6 << 32], U64))[0])
        for a, b in out[:50]
    }  # fmt: skip
    assert len(h) == 1  # they really collided
    return out


def test_hash_flood_of_crafted_keys_costs_what_random_keys_cost():
    dst = "ffff::1"  # above every source, so the source is the key's first endpoint
    n = 20_000
    crafted = _syn_packets(_old_kernel_collisions(n, dst, 443), dst)
    rng = np.random.default_rng(2)
    random_src = list(zip(rng.integers(1, 2**62, n).tolist(), rng.integers(0, 2**63, n).tolist(), strict=True))
    rand = _syn_packets(random_src, dst)
    probes = {}
    for name, p in (("crafted", crafted), ("random", rand)):
        asm = FlowAssembler(idle_timeout_s=120, active_timeout_s=1800)
        for a in range(0, n, 4096):
            asm.push(p.take(np.arange(a, min(n, a + 4096))))
        _, f = asm.finish()
        assert f.n_flows == n  # no two keys merged
        assert n <= asm.stats.lookups <= n + 100  # again after a table resize
        probes[name] = asm.stats.probes / asm.stats.lookups
    assert probes["crafted"] < 3.0  # linear probing, yet about one probe per packet
    assert probes["crafted"] < 1.5 * probes["random"] + 0.5


def test_keys_forced_into_one_bucket_stay_separate_flows(monkeypatch):
    seed = np.array([1, 2], U64)
    monkeypatch.setattr(flows_mod, "_SEED", seed)
    rng = np.random.default_rng(3)
    dst_hi, dst_lo = parse_ip("ffff::1")
    m = 400_000
    words = np.zeros((m, flows_mod.KEY_WORDS), U64)
    words[:, 0] = rng.integers(1, 2**62, m, dtype=np.int64).astype(U64)
    words[:, 1] = rng.integers(0, 2**62, m, dtype=np.int64).astype(U64)
    words[:, 2], words[:, 3] = dst_hi, dst_lo
    words[:, 4] = (40000 << 16) | 443
    words[:, 5] = 6 << 32
    same_bucket = np.flatnonzero((hash_rows(words, seed) & U64(1023)) == 0)[:300]
    assert len(same_bucket) >= 200
    p = _syn_packets([(int(words[i, 0]), int(words[i, 1])) for i in same_bucket], "ffff::1")
    # Every packet twice: the second must find its own flow past all the others in the bucket.
    p2 = PacketTable.concat([p, p.take(np.arange(p.n_packets))])
    p2 = PacketTable(**{**p2.column_dict(), "ts_ns": np.arange(p2.n_packets, dtype=np.int64) * 1000})
    f = assemble_flows(p2, idle_timeout_s=120, active_timeout_s=1800)
    assert f.n_flows == len(same_bucket) and np.all(f.n_packets == 2)
    want = reference.assemble_flows(p2, idle_timeout_s=120, active_timeout_s=1800)
    for name in [*f.column_dict(), "order", "offsets", "is_fwd"]:
        assert np.array_equal(getattr(f, name), getattr(want, name)), name


def _flood_with_session(n_syn: int) -> PacketTable:
    rng = np.random.default_rng(4)
    syn = _syn_packets(list(zip([0] * n_syn, ((0xFFFF << 32) | rng.integers(0, 2**32, n_syn)).tolist(),
                                strict=True)), "10.9.9.9", dport=80)  # fmt: skip
    session = make_packets(tcp_session(0.0005, client="10.0.0.1", server="10.0.0.2", n_data=20))
    both = PacketTable.concat([syn, session])
    return both.take(np.argsort(both.ts_ns, kind="stable"))


def _push_all(p: PacketTable, chunk: int, cap: int) -> tuple[list[tuple[PacketTable, FlowTable]], list[str], int]:
    warnings: list[str] = []
    asm = FlowAssembler(idle_timeout_s=120, active_timeout_s=1800, max_open_flows=cap, on_warning=warnings.append)
    out, most_open = [], 0
    for a in range(0, p.n_packets, chunk):
        out.append(asm.push(p.take(np.arange(a, min(p.n_packets, a + chunk)))))
        most_open = max(most_open, asm.n_open_flows)
        assert asm._arena.n <= 2 * asm.n_pending_packets + 65536 + chunk
    out.append(asm.finish())
    return out, warnings, most_open


def test_flood_past_the_cap_becomes_counted_aggregates_and_nothing_is_dropped():
    p = _flood_with_session(20_000)
    out, warnings, most_open = _push_all(p, 3000, cap=2000)
    assert most_open <= 2000
    assert len(warnings) == 1 and "flows.max_open_flows" in warnings[0]
    flows = [f for _, f in out if f.n_flows]
    agg = np.concatenate([f.agg_flows for f in flows])
    pkts = np.concatenate([np.where(f.agg_flows > 0, f.agg_pkts, f.n_packets) for f in flows])
    assert pkts.sum() == p.n_packets  # every packet counted: in a flow or an aggregate
    assert (agg > 0).sum() >= 1 and agg.sum() >= 15_000
    srcs = np.concatenate([f.agg_srcs for f in flows])[agg > 0]
    assert srcs.sum() >= 0.99 * agg.sum()  # one spoofed source per SYN
    dst = np.concatenate([f.dst_lo for f in flows])[agg > 0]
    assert np.all(dst == parse_ip("10.9.9.9")[1])  # one target service
    sessions = [f for f in flows if np.any((f.agg_flows == 0) & (f.n_packets > 4))]
    assert sum(int(np.sum((f.agg_flows == 0) & (f.n_packets > 4))) for f in sessions) == 1  # kept whole


def test_flood_results_do_not_depend_on_chunking():
    p = _flood_with_session(8000)

    def summary(chunk: int) -> list[tuple[int, ...]]:
        out, _, _ = _push_all(p, chunk, cap=1000)
        rows = []
        for _, f in out:
            for i in range(f.n_flows):
                cols = (f.first_ns, f.last_ns, f.src_lo, f.dst_lo, f.n_packets, f.agg_flows, f.agg_pkts, f.agg_srcs)
                rows.append(tuple(int(c[i]) for c in cols))
        return sorted(rows)

    assert summary(100) == summary(2500) == summary(p.n_packets)


def test_one_long_flow_pushed_in_tiny_chunks_is_one_lookup_per_packet():
    rows = tcp_session(0.0, n_data=3000)
    p = make_packets(rows)
    asm = FlowAssembler(idle_timeout_s=120, active_timeout_s=1800)
    for a in range(0, p.n_packets, 7):
        _, f = asm.push(p.take(np.arange(a, min(p.n_packets, a + 7))))
        assert f.n_flows == 0
    _, f = asm.finish()
    assert f.n_flows == 1 and int(f.n_packets[0]) == p.n_packets
    assert asm.stats.lookups == p.n_packets and asm.stats.probes <= 2 * p.n_packets


@pytest.mark.parametrize("jump_s", [-5.0, -3600.0 * 24 * 365 * 3, 3600.0 * 24 * 365 * 2])
def test_capture_clock_matches_the_reference_and_chunking(jump_s):
    rng = np.random.default_rng(5)
    ts = np.cumsum(rng.exponential(0.5, 3000))
    ts[1000:] += jump_s  # a jump (backwards by seconds, or by years either way)
    ts[2000:2010] = ts[2000:2010][::-1]  # and a few out of order
    rows = [{"ts": float(t), "src": f"10.0.0.{1 + i % 9}", "dst": "10.0.1.1", "sport": 1000 + i % 50, "dport": 53,
             "proto": 17} for i, t in enumerate(ts)]  # fmt: skip
    p = make_packets(rows)
    p = PacketTable(**{**p.column_dict(), "ts_ns": p.ts_ns + 1_600_000_000 * 10**9})

    def run(chunk: int) -> set[tuple[int, ...]]:
        asm = FlowAssembler(idle_timeout_s=30, active_timeout_s=100)
        got = set()
        for a in range(0, p.n_packets, chunk):
            got |= _flow_rows(*asm.push(p.take(np.arange(a, min(p.n_packets, a + chunk)))))
        return got | _flow_rows(*asm.finish())

    eff = reference.effective_times(p.ts_ns, 30 * 10**9)
    assert np.all(np.diff(eff) >= 0)
    want = _flow_rows(*_assemble_in_arrival_order(p, eff))
    assert run(37) == run(500) == run(p.n_packets) == want


def _assemble_in_arrival_order(p: PacketTable, eff: np.ndarray) -> tuple[PacketTable, FlowTable]:
    q = PacketTable(**{**p.column_dict(), "ts_ns": eff})
    return q, reference.assemble_flows(q, idle_timeout_s=30, active_timeout_s=100)


def _flow_rows(packets: PacketTable, flows: FlowTable) -> set[tuple[int, ...]]:
    out = set()
    for i in range(flows.n_flows):
        rows = flows.order[flows.offsets[i] : flows.offsets[i + 1]]
        out.add((int(flows.src_lo[i]), int(flows.src_port[i]), int(flows.first_ns[i]), int(flows.last_ns[i]),
                 int(flows.fwd_pkts[i]), int(flows.bwd_pkts[i]), tuple(packets.ts_ns[rows].tolist())))  # fmt: skip
    return out


# --- end to end: the verdicts -------------------------------------------------------------------


def _frame_syn(src: int, dst: int, sport: int, dport: int) -> bytes:
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 40, 0, 0, 64, 6, 0, src.to_bytes(4, "big"), dst.to_bytes(4, "big"))
    tcp = struct.pack(">HHIIBBHHH", sport, dport, 1, 0, 0x50, 0x02, 1024, 0, 0)
    return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip + tcp


def _jumpy_capture(with_flood: bool) -> bytes:
    """UDP exchanges whose time stamps jump back by a year and run out of order; optionally a
    spoofed-source SYN flood in the middle."""
    t0 = 1_700_000_000 * 10**9
    recs = []
    rng = np.random.default_rng(6)
    for i in range(300):
        t = t0 + i * 2 * 10**9 - (365 * 86400 * 10**9 if i >= 150 else 0) + int(rng.integers(0, 3 * 10**9))
        src, dst = 0x0A000001 + i % 7, 0x0A000101 + i % 3
        recs.append((t, _frame_udp(src, dst, 2000 + i % 40, 53)))
        recs.append((t + 10**6, _frame_udp(dst, src, 53, 2000 + i % 40)))
    if with_flood:
        at = 100 * 2
        flood = [(recs[at][0] + k * 1000, _frame_syn(int(x), 0x0A0000FE, 1024 + k % 60000, 80))
                 for k, x in enumerate(rng.integers(0x0B000000, 0x0BFFFFFF, 3000))]  # fmt: skip
        recs = recs[:at] + flood + recs[at:]
    return pcap_bytes([Record(data, ts_ns=ts) for ts, data in recs])


def _frame_udp(src: int, dst: int, sport: int, dport: int, payload: int = 30) -> bytes:
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 28 + payload, 0, 0, 64, 17, 0, src.to_bytes(4, "big"),
                     dst.to_bytes(4, "big"))  # fmt: skip
    return (
        b"\x02" * 6
        + b"\x04" * 6
        + b"\x08\x00"
        + ip
        + struct.pack(">HHHH", sport, dport, 8 + payload, 0)
        + bytes(payload)
    )


@pytest.fixture(scope="module")
def capped_model(small_model, tmp_path_factory) -> Path:
    """The small model with a cap of 1,000 open flows, so a test-sized flood passes it."""
    model = load_model(small_model)
    flows = dataclasses.replace(model.settings.flows, max_open_flows=1000)
    path = tmp_path_factory.mktemp("capped") / "capped.netae"
    dump_model(path, dataclasses.replace(model, settings=dataclasses.replace(model.settings, flows=flows)))
    return path


def _verdicts(tables) -> dict[tuple[int, ...], bool]:
    out = {}
    for t in tables:
        f = t.flows
        for i in range(t.n_flows):
            key = (int(f.src_lo[i]), int(f.dst_lo[i]), int(f.src_port[i]), int(f.dst_port[i]), int(f.first_ns[i]),
                   int(f.agg_flows[i]))  # fmt: skip
            out[key] = (bool(t.is_anomaly[i]), float(t.score[i]))
    return out


@pytest.mark.parametrize("with_flood", [False, True])
def test_stream_equals_batch_with_jumping_time_stamps_and_floods(capped_model, tmp_path, with_flood):
    path = tmp_path / "jumpy.pcap"
    path.write_bytes(_jumpy_capture(with_flood))
    batch = score_captures([str(path)], model_path=capped_model).table
    stream = list(stream_scores([str(path)], model=load_model(capped_model), chunk_bytes=2048, flush_s=0.0))
    got, want = _verdicts(stream), _verdicts([batch])
    assert got.keys() == want.keys()
    for k, (anomaly, score) in want.items():
        assert got[k][0] == anomaly
        assert got[k][1] == pytest.approx(score, rel=1e-4, abs=1e-6)  # inference batches differ
    agg = batch.flows.agg_flows > 0
    if with_flood:
        assert agg.any() and bool(np.all(batch.is_anomaly[agg]))  # the flood itself is the alert
        assert int(batch.flows.agg_flows[agg].sum()) >= 1000
        assert all(e.startswith("flood: ") for e in np.array(batch.explanations, dtype=object)[agg])
    else:
        assert not agg.any()


def test_cli_flood_alerts_and_warning(capped_model, tmp_path):
    path = tmp_path / "flood.pcap"
    path.write_bytes(_jumpy_capture(True))
    r = CliRunner().invoke(app, ["score", str(path), "-m", str(capped_model), "--format", "jsonl"])
    assert r.exit_code == 1, r.stderr
    assert "flows.max_open_flows" in r.stderr
    alerts = [json.loads(line) for line in r.stdout.splitlines()]
    assert any("flood: " in json.dumps(a) for a in alerts)
