from __future__ import annotations

import numpy as np
import pytest

from netae.config import ContextSettings
from netae.context import CONTEXT_EXTRAS, CONTEXT_FEATURES, compute_context
from netae.flows import assemble_flows
from tests.helpers.packets import make_packets, tcp_session


def context_of(rows, window_s=300.0):
    p = make_packets(rows)
    f = assemble_flows(p, idle_timeout_s=120, active_timeout_s=1800)
    return f, compute_context(p, f, settings=ContextSettings(window_s=window_s))


def dns_lookup(t, name, client="10.0.0.5", server="10.0.0.53", sport=50000):
    q = {"ts": t, "src": client, "dst": server, "sport": sport, "dport": 53, "proto": 17, "ip_len": 60 + len(name),
         "payload": 32 + len(name), "qname": name}  # fmt: skip
    a = {**q, "ts": t + 1e-3, "src": server, "dst": client, "sport": 53, "dport": sport, "ip_len": 80 + len(name)}
    return [q, a]


def syn_probe(t, port, src="10.0.0.66", dst="10.0.0.10"):
    return [
        {"ts": t, "src": src, "dst": dst, "sport": 62001, "dport": port, "flags": 0x02},
        {"ts": t + 1e-4, "src": dst, "dst": src, "sport": port, "dport": 62001, "flags": 0x14},
    ]


def test_scan_raises_new_ports_and_failure_share():
    rows = []
    for i, port in enumerate(range(1000, 1020)):
        rows += syn_probe(10.0 + i * 0.5, port)
    f, ctx = context_of(rows)
    assert set(ctx) == set(CONTEXT_FEATURES + CONTEXT_EXTRAS)
    # The k-th probe (by time) saw k earlier flows, all to new ports, all failed.
    order = np.argsort(f.first_ns)
    k = np.arange(f.n_flows)
    np.testing.assert_allclose(ctx["ctx_src_flows_log"][order], np.log1p(k), rtol=1e-6)
    np.testing.assert_allclose(ctx["ctx_src_new_dports_log"][order], np.log1p(k), rtol=1e-6)
    np.testing.assert_allclose(ctx["ctx_src_fail_share"][order][1:], 1.0)
    assert ctx["ctx_src_fail_share"][order][0] == 0.0  # nothing before the first
    np.testing.assert_allclose(ctx["ctx_src_new_dsts_log"][order][1:], np.log1p(1))


def test_window_forgets_old_flows():
    rows = syn_probe(0.0, 22) + syn_probe(400.0, 23) + syn_probe(401.0, 24)
    f, ctx = context_of(rows, window_s=300.0)
    order = np.argsort(f.first_ns)
    assert ctx["ctx_src_flows_log"][order].tolist() == pytest.approx([0.0, 0.0, np.log1p(1)])


def test_periodic_polling_has_small_interval_spread():
    def poll(times, src):
        rows = []
        for i, t in enumerate(times):
            rows += tcp_session(t, client=src, server="10.0.0.10", sport=40000 + i, dport=443)
        return rows

    rng = np.random.default_rng(0)
    regular = 1000.0 + np.arange(20) * 8.0
    irregular = 1000.0 + np.cumsum(rng.exponential(8.0, 20))
    f, ctx = context_of(poll(regular, "10.0.0.5") + poll(irregular, "10.0.0.6"))
    from netae.tables import format_ip

    src = np.array([format_ip(h, lo) for h, lo in zip(f.src_hi, f.src_lo, strict=True)])
    last = lambda s: ctx["ctx_pair_iat_std_log_s"][np.flatnonzero(src == s)[-1]]  # noqa: E731
    assert last("10.0.0.5") < 1e-3
    assert last("10.0.0.6") > 0.3
    reg = np.flatnonzero(src == "10.0.0.5")[-1]
    assert ctx["ctx_pair_iat_mean_log_s"][reg] == pytest.approx(np.log1p(8.0), rel=1e-4)
    assert ctx["ctx_pair_flows_log"][reg] == pytest.approx(np.log1p(19))


def test_context_depends_only_on_earlier_flows():
    rows = []
    for i in range(30):
        rows += syn_probe(float(i), 1000 + i)
    f, full = context_of(rows)
    f2, prefix = context_of(rows[:40])  # the first 20 flows only
    n = f2.n_flows
    for name in CONTEXT_FEATURES:
        np.testing.assert_allclose(full[name][:n], prefix[name], err_msg=name)


def _many_flows(seed: int):
    rng = np.random.default_rng(seed)
    rows = []
    t = 0.0
    for i in range(120):
        t += float(rng.exponential(3.0))
        client = f"10.0.0.{int(rng.integers(1, 5))}"
        port = int(rng.choice([22, 80, 443, 6379]))
        rows += tcp_session(t, client=client, server="10.0.0.10", sport=30000 + i, dport=port,
                            n_data=int(rng.integers(1, 4)), gap=float(rng.uniform(0.001, 2.0)))  # fmt: skip
        if rng.random() < 0.3:
            rows += syn_probe(t + 0.5, int(rng.integers(1000, 2000)), src=client)
        if rng.random() < 0.4:
            rows += dns_lookup(t + 0.2, f"n{int(rng.integers(0, 8))}.{rng.choice(['a.example', 'b.example'])}",
                               client=client, sport=50000 + i)  # fmt: skip
    rows.sort(key=lambda r: r["ts"])
    return rows


@pytest.mark.parametrize(("seed", "max_events"), [(0, 0), (1, 0), (2, 0), (0, 8), (1, 5)])
def test_streaming_context_equals_one_pass(seed, max_events):
    from netae.context import ContextTracker
    from netae.flows import FlowAssembler
    from netae.tables import PacketTable

    rows = _many_flows(seed)
    p = make_packets(rows)
    settings = ContextSettings(window_s=30.0, max_events=max_events)  # NOTE [context cap]
    f = assemble_flows(p, idle_timeout_s=5.0, active_timeout_s=1800)
    whole = compute_context(p, f, settings=settings)
    if max_events:  # the cap changes what context sees, the same way in both
        uncapped = compute_context(p, f, settings=ContextSettings(window_s=30.0))
        assert any(not np.allclose(uncapped[n], whole[n]) for n in whole)
    key = lambda fl, i: (int(fl.first_ns[i]), int(fl.src_lo[i]), int(fl.src_port[i]))  # noqa: E731
    names = CONTEXT_FEATURES + CONTEXT_EXTRAS
    expected = {key(f, i): {n: whole[n][i] for n in names} for i in range(f.n_flows)}
    asm = FlowAssembler(idle_timeout_s=5.0, active_timeout_s=1800)
    warnings: list[str] = []
    tracker = ContextTracker(settings, on_warning=warnings.append)
    got = {}
    most = 0
    for a in range(0, p.n_packets, 37):
        table, closed = asm.push(p.take(np.arange(a, min(a + 37, p.n_packets))))
        pending_start = asm.pending_min_ts
        ctx = tracker.update(table, closed, horizon_ns=pending_start)
        most = max(most, tracker.n_events)
        got.update({key(closed, i): {n: ctx[n][i] for n in names} for i in range(closed.n_flows)})
    table, closed = asm.finish()
    ctx = tracker.update(table, closed)
    got.update({key(closed, i): {n: ctx[n][i] for n in names} for i in range(closed.n_flows)})
    assert got.keys() == expected.keys()
    assert any(v["ctx_dns_parent_names_log"] > 0 for v in expected.values())
    for k in expected:
        for n in names:
            assert got[k][n] == pytest.approx(expected[k][n], abs=1e-5), (k, n)
    assert isinstance(PacketTable.empty(), PacketTable)
    if max_events:
        assert len(warnings) == 1 and "context.max_events" in warnings[0]
        assert most <= max_events + 20  # the cap, plus the flows that ended after the horizon


def test_coverage_grows_over_the_first_window():
    rows = []
    for i in range(10):
        rows += syn_probe(float(i * 10), 1000 + i)
    f, ctx = context_of(rows, window_s=50.0)
    order = np.argsort(f.first_ns)
    # Measured from the first flow's end (0.1 ms after its start).
    np.testing.assert_allclose(ctx["ctx_coverage"][order], np.minimum(np.arange(10) * 10 / 50, 1.0), atol=1e-5)


def test_times_centuries_apart_give_the_same_context():
    # A damaged capture may hold times ~95 years apart; with many groups the packed
    # (group, time) key would overflow, and ranks of the times are used instead.
    def cluster(t0, n, file_id, net):
        return [
            {"ts": t0 + i * 0.5, "src": f"10.{net}.{i // 250}.{i % 250 + 1}", "dst": "10.9.9.9", "proto": 17,
             "dport": 53 + i % 3, "file_id": file_id}
            for i in range(n)
        ]  # fmt: skip

    far = cluster(1.7e9 + 3e9, 1600, 0, 1)
    near = cluster(1.7e9, 40, 1, 2)
    settings = ContextSettings(window_s=300.0)
    p_far = make_packets(far)
    f_far = assemble_flows(p_far, idle_timeout_s=120, active_timeout_s=1800)
    alone = compute_context(p_far, f_far, settings=settings)
    p_all = make_packets(far + near)
    f_all = assemble_flows(p_all, idle_timeout_s=120, active_timeout_s=1800)
    both = compute_context(p_all, f_all, settings=settings)
    sel = f_all.file_id == 0
    o_all = np.argsort(f_all.first_ns[sel], kind="stable")
    o_far = np.argsort(f_far.first_ns, kind="stable")
    for name in CONTEXT_FEATURES:
        np.testing.assert_allclose(both[name][sel][o_all], alone[name][o_far], rtol=1e-6, err_msg=name)


def test_dns_tunnel_raises_distinct_names_per_parent():
    rows = []
    for i in range(20):  # a tunnel: a new name under one parent every 2 s
        rows += dns_lookup(100.0 + 2 * i, f"{'abcdefghij'[i % 10]}{i:02d}xyzzyqwertyuiop.t.tunnel.example",
                           client="10.0.0.66", sport=41000 + i)  # fmt: skip
    for i in range(20):  # benign: four names under another parent, looked up again and again
        rows += dns_lookup(100.5 + 2 * i, f"n{i % 4}.cdn.example", client="10.0.0.5", sport=42000 + i)
    rows += syn_probe(150.0, 22)
    rows.sort(key=lambda r: r["ts"])
    f, ctx = context_of(rows)
    from netae.tables import format_ip

    src = np.array([format_ip(h, lo) for h, lo in zip(f.src_hi, f.src_lo, strict=True)])
    tun = np.flatnonzero((src == "10.0.0.66") & (f.proto == 17))
    ben = np.flatnonzero((src == "10.0.0.5") & (f.proto == 17))
    last_tun, last_ben = tun[np.argmax(f.first_ns[tun])], ben[np.argmax(f.first_ns[ben])]
    # 19 earlier tunnel lookups, every one a new name; the benign parent saw only 4 names.
    assert ctx["ctx_dns_parent_names_log"][last_tun] == pytest.approx(np.log1p(19), rel=1e-5)
    assert ctx["ctx_dns_parent_new_share"][last_tun] == pytest.approx(1.0)
    assert ctx["ctx_src_dns_new_names_log"][last_tun] == pytest.approx(np.log1p(19), rel=1e-5)
    assert ctx["ctx_dns_parent_names_log"][last_ben] == pytest.approx(np.log1p(4), rel=1e-5)
    assert ctx["ctx_dns_parent_new_share"][last_ben] == pytest.approx(4 / 19, rel=1e-5)
    probe = np.flatnonzero(f.proto == 6)
    for name in ("ctx_dns_parent_names_log", "ctx_dns_parent_new_share", "ctx_src_dns_new_names_log"):
        assert ctx[name][probe].tolist() == [0.0]


def test_pair_size_spread_and_linear_gaps():
    rows = []
    for i in range(6):  # same size every 5 s
        rows += tcp_session(10.0 + 5 * i, client="10.0.0.7", server="10.0.0.10", sport=43000 + i, dport=443)
    for i in range(6):  # sizes that vary
        rows += tcp_session(11.0 + 5 * i, client="10.0.0.8", server="10.0.0.10", sport=44000 + i, dport=443,
                            n_data=1 + 3 * (i % 2))  # fmt: skip
    rows.sort(key=lambda r: r["ts"])
    f, ctx = context_of(rows)
    from netae.tables import format_ip

    src = np.array([format_ip(h, lo) for h, lo in zip(f.src_hi, f.src_lo, strict=True)])
    a = np.flatnonzero(src == "10.0.0.7")[-1]
    b = np.flatnonzero(src == "10.0.0.8")[-1]
    assert ctx["ctx_pair_bytes_std_log"][a] == pytest.approx(0.0, abs=1e-3)
    assert ctx["ctx_pair_bytes_std_log"][b] > 0.3
    assert ctx["ctx_pair_gap_mean_s"][a] == pytest.approx(5.0, rel=1e-4)
    assert ctx["ctx_pair_gap_std_s"][a] == pytest.approx(0.0, abs=1e-2)
