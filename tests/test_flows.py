from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netae.flows import FlowAssembler, assemble_flows
from netae.tables import FlowTable, PacketTable, format_ip
from tests.helpers.packets import make_packets, tcp_session
from tests.reference import flows as reference

IDLE, ACTIVE = 120.0, 1800.0


def flows_of(packets: PacketTable, idle: float = IDLE, active: float = ACTIVE) -> FlowTable:
    f = assemble_flows(packets, idle_timeout_s=idle, active_timeout_s=active)
    f.validate(packets.n_packets)
    return f


def flow_set(packets: PacketTable, flows: FlowTable) -> set[tuple]:
    """Flows as comparable tuples: key, times, counts and the packets' timestamps."""
    out = set()
    for i in range(flows.n_flows):
        rows = flows.order[flows.offsets[i] : flows.offsets[i + 1]]
        out.add(
            (
                format_ip(flows.src_hi[i], flows.src_lo[i]), int(flows.src_port[i]),
                format_ip(flows.dst_hi[i], flows.dst_lo[i]), int(flows.dst_port[i]), int(flows.proto[i]),
                int(flows.first_ns[i]), int(flows.last_ns[i]), int(flows.fwd_pkts[i]), int(flows.bwd_pkts[i]),
                int(flows.fwd_bytes[i]), int(flows.bwd_bytes[i]), tuple(packets.ts_ns[rows].tolist()),
            )
        )  # fmt: skip
    return out


def test_tcp_session_is_one_flow_with_initiator_as_src():
    p = make_packets(tcp_session(10.0, n_data=2))
    f = flows_of(p)
    assert f.n_flows == 1
    assert format_ip(f.src_hi[0], f.src_lo[0]) == "10.0.0.1"
    assert (int(f.src_port[0]), int(f.dst_port[0]), int(f.proto[0])) == (40000, 80, 6)
    assert f.fwd_pkts[0] == 6 and f.bwd_pkts[0] == 4
    assert f.is_fwd.tolist()[:3] == [True, False, True]
    assert f.fwd_bytes[0] + f.bwd_bytes[0] == p.ip_len.sum()


def test_initiator_is_sender_of_first_packet_even_if_server_speaks_first():
    rows = tcp_session(0.0)
    rows[0]["ts"] = 5.0  # the client's SYN arrives late: the server's SYN-ACK is first
    f = flows_of(make_packets(rows))
    assert f.n_flows == 1
    assert format_ip(f.src_hi[0], f.src_lo[0]) == "10.0.0.2"
    assert int(f.src_port[0]) == 80


@pytest.mark.parametrize(("gap", "n_flows"), [(119.0, 1), (121.0, 2)])
def test_idle_timeout_splits(gap: float, n_flows: int):
    rows = [{"ts": 0.0}, {"ts": gap, "src": "10.0.0.2", "dst": "10.0.0.1", "sport": 80, "dport": 40000}]
    assert flows_of(make_packets(rows)).n_flows == n_flows


def test_active_timeout_splits_long_flows():
    rows = [{"ts": float(t)} for t in range(0, 100, 10)]
    f = flows_of(make_packets(rows), idle=120.0, active=25.0)
    # Starts at 0, 30, 60, 90 (a new flow once 25 s have passed since the flow began).
    assert f.first_ns.tolist() == [0, 30_000_000_000, 60_000_000_000, 90_000_000_000]
    assert f.n_packets.tolist() == [3, 3, 3, 1]


def test_icmp_echo_request_and_reply_share_a_flow_with_type_and_code():
    rows = [
        {"ts": 0.0, "proto": 1, "icmp_type": 8, "ip_len": 84},
        {"ts": 0.001, "proto": 1, "icmp_type": 0, "src": "10.0.0.2", "dst": "10.0.0.1", "ip_len": 84},
        {"ts": 0.5, "proto": 1, "icmp_type": 3, "icmp_code": 3, "ip_len": 56},
    ]
    f = flows_of(make_packets(rows))
    assert f.n_flows == 2
    assert (int(f.src_port[0]), int(f.dst_port[0])) == (8, 0)
    assert f.fwd_pkts[0] == 1 and f.bwd_pkts[0] == 1
    assert (int(f.src_port[1]), int(f.dst_port[1])) == (3, 3)


def test_fragments_join_the_flow_of_their_first_fragment():
    rows = [
        {"ts": 0.0, "proto": 17, "sport": 5353, "dport": 53, "ip_id": 7, "mf": True, "ip_len": 1500},
        {"ts": 0.001, "proto": 17, "sport": 0, "dport": 0, "ip_id": 7, "frag_offset": 1480, "ip_len": 600},
        {"ts": 0.002, "proto": 17, "sport": 53, "dport": 5353, "src": "10.0.0.2", "dst": "10.0.0.1"},
    ]
    f = flows_of(make_packets(rows))
    assert f.n_flows == 1
    assert f.fwd_pkts[0] == 2 and f.bwd_pkts[0] == 1


def test_files_do_not_share_flows():
    rows = tcp_session(0.0)
    rows += [{**r, "file_id": 1} for r in tcp_session(0.0)]
    assert flows_of(make_packets(rows)).n_flows == 2


def test_empty_table_gives_empty_flows():
    f = flows_of(PacketTable.empty())
    assert f.n_flows == 0 and f.offsets.tolist() == [0]


hosts = st.sampled_from(["10.0.0.1", "10.0.0.2", "10.0.0.3", "fe80::1"])
packet_rows = st.lists(
    st.fixed_dictionaries(
        {
            "ts": st.floats(0, 1000, allow_nan=False).map(lambda x: round(x, 6)),
            "src": hosts,
            "dst": hosts,
            "sport": st.sampled_from([53, 80, 40000]),
            "dport": st.sampled_from([53, 80, 40001]),
            "proto": st.sampled_from([6, 17, 1]),
            "icmp_type": st.sampled_from([0, 8, 3]),
            "ip_len": st.integers(40, 1500),
        }
    ),
    max_size=60,
)


@settings(max_examples=60, deadline=None)
@given(rows=packet_rows, seed=st.integers(0, 1000))
def test_shuffling_packets_gives_the_same_flows(rows, seed):
    # Equal timestamps make "first packet" ambiguous; keep them distinct.
    for i, r in enumerate(rows):
        r["ts"] = r["ts"] + i * 1e-6
    p = make_packets(rows)
    perm = np.random.default_rng(seed).permutation(p.n_packets)
    q = p.take(perm)
    assert flow_set(p, flows_of(p, idle=30.0, active=100.0)) == flow_set(q, flows_of(q, idle=30.0, active=100.0))


@settings(max_examples=60, deadline=None)
@given(rows=packet_rows)
def test_swapping_src_and_dst_keeps_flow_keys(rows):
    p = make_packets(rows)
    swapped = [{**r, "src": r["dst"], "dst": r["src"], "sport": r["dport"], "dport": r["sport"]} for r in rows]
    f1, f2 = flows_of(p), flows_of(make_packets(swapped))
    key = lambda f: sorted(  # noqa: E731
        (tuple(sorted([(int(f.src_hi[i]), int(f.src_lo[i])), (int(f.dst_hi[i]), int(f.dst_lo[i]))])), int(f.proto[i]),
         int(f.first_ns[i]), int(f.n_packets[i]))
        for i in range(f.n_flows)
    )  # fmt: skip
    assert key(f1) == key(f2)


@settings(max_examples=60, deadline=None)
@given(rows=packet_rows, cuts=st.lists(st.integers(0, 60), max_size=5))
def test_chunked_assembly_equals_one_pass(rows, cuts):
    rows = sorted(rows, key=lambda r: r["ts"])
    for i, r in enumerate(rows):
        r["ts"] = r["ts"] + i * 1e-6
    p = make_packets(rows)
    whole = flow_set(p, flows_of(p, idle=30.0, active=100.0))
    asm = FlowAssembler(idle_timeout_s=30.0, active_timeout_s=100.0)
    got: set[tuple] = set()
    bounds = sorted({0, p.n_packets, *[min(c, p.n_packets) for c in cuts]})
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        table, f = asm.push(p.take(np.arange(a, b)))
        got |= flow_set(table, f)
    table, f = asm.finish()
    got |= flow_set(table, f)
    assert got == whole


@settings(max_examples=80, deadline=None)
@given(rows=packet_rows, seed=st.integers(0, 1000), linger=st.sampled_from([0.0, 1.0]))
def test_assembler_equals_the_reference_oracle_field_by_field(rows, seed, linger):
    flags = [0x02, 0x12, 0x10, 0x18, 0x11, 0x04]
    for i, r in enumerate(rows):
        r["flags"] = flags[(seed + i) % len(flags)]
    p = make_packets(rows)
    p = p.take(np.random.default_rng(seed).permutation(p.n_packets))  # not in time order either
    a = assemble_flows(p, idle_timeout_s=30.0, active_timeout_s=100.0, tcp_close_linger_s=linger)
    a.validate(p.n_packets)
    b = reference.assemble_flows(p, idle_timeout_s=30.0, active_timeout_s=100.0, tcp_close_linger_s=linger)
    for name in [*a.column_dict(), "order", "offsets", "is_fwd"]:
        assert np.array_equal(getattr(a, name), getattr(b, name)), name


@settings(max_examples=40, deadline=None)
@given(rows=packet_rows, cut=st.integers(0, 60))
def test_open_flows_carried_to_a_new_assembler_give_the_same_flows(rows, cut):
    rows = sorted(rows, key=lambda r: r["ts"])
    p = make_packets(rows)
    cut = min(cut, p.n_packets)
    one = FlowAssembler(idle_timeout_s=30.0, active_timeout_s=100.0)
    want = flow_set(*one.push(p)) | flow_set(*one.finish())
    first = FlowAssembler(idle_timeout_s=30.0, active_timeout_s=100.0)
    got = flow_set(*first.push(p.take(np.arange(cut))))
    second = FlowAssembler(idle_timeout_s=30.0, active_timeout_s=100.0)
    second.resume(first.open_packets(), max_ts=first.max_ts)
    assert second.n_pending_packets == first.n_pending_packets
    got |= flow_set(*second.push(p.take(np.arange(cut, p.n_packets)))) | flow_set(*second.finish())
    assert got == want


def test_expire_closes_idle_flows_by_a_given_clock():
    p = make_packets(tcp_session(0.0))
    asm = FlowAssembler(idle_timeout_s=30.0, active_timeout_s=100.0)
    assert asm.push(p)[1].n_flows == 0
    assert asm.expire(int(10e9))[1].n_flows == 0
    _, f = asm.expire(int(40e9))
    assert f.n_flows == 1 and asm.n_open_flows == 0


def test_fin_and_rst_end_tcp_flows_after_the_linger():
    first = tcp_session(0.0, n_data=1)  # ends with FIN from both sides
    again = tcp_session(5.0, n_data=1)  # the same 5-tuple reused 5 s later
    p = make_packets(first + again)
    assert assemble_flows(p, idle_timeout_s=120, active_timeout_s=1800).n_flows == 1
    f = assemble_flows(p, idle_timeout_s=120, active_timeout_s=1800, tcp_close_linger_s=1.0)
    assert f.n_flows == 2
    asm = FlowAssembler(idle_timeout_s=120, active_timeout_s=1800, tcp_close_linger_s=1.0, early_close=True)
    _, closed = asm.push(make_packets(first))
    assert closed.n_flows == 0
    _, closed = asm.expire(int(p.ts_ns[len(first) - 1]) + int(2e9))  # linger passed: reported at once
    assert closed.n_flows == 1
