"""Incidents: the grouping rule on hand-built flows, the ranking, and the output that joins them."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import numpy as np
import pytest

from netae.incidents import FLOOD_MIN_FLOWS, find_incidents
from netae.output import CSV_COLUMNS, INCIDENT_CSV_COLUMNS, render, render_incidents, select_rows
from netae.tables import FlowTable, ScoreTable, format_ip, parse_ip

T0 = 1_700_000_000.0


def flow(
    t: float,
    src: str,
    dst: str,
    dport: int,
    *,
    proto: int = 6,
    sport: int = 40000,
    pkts: tuple[int, int] = (1, 1),
    nbytes: tuple[int, int] = (44, 40),
    dur: float = 0.001,
    score: float = 5.0,
    file_id: int = 0,
) -> dict[str, Any]:
    return {"t": t, "src": src, "dst": dst, "dport": dport, "proto": proto, "sport": sport, "pkts": pkts,
            "bytes": nbytes, "dur": dur, "score": score, "file": file_id}  # fmt: skip


def probe(t: float, src: str, dst: str, dport: int, **kw: Any) -> dict[str, Any]:
    return flow(t, src, dst, dport, **kw)


def session(t: float, src: str, dst: str, dport: int, **kw: Any) -> dict[str, Any]:
    kw.setdefault("pkts", (20, 18))
    kw.setdefault("nbytes", (3000, 4000))
    kw.setdefault("dur", 2.0)
    return flow(t, src, dst, dport, **kw)


def table(rows: list[dict[str, Any]], *, threshold: float = 1.0) -> ScoreTable:
    """A ScoreTable of hand-built flows (one row each; packets are not needed here)."""
    n = len(rows)
    src = [parse_ip(r["src"]) for r in rows]
    dst = [parse_ip(r["dst"]) for r in rows]
    fwd = np.array([r["pkts"][0] for r in rows], np.int64)
    bwd = np.array([r["pkts"][1] for r in rows], np.int64)
    first = np.array([int(r["t"] * 1e9) for r in rows], np.int64)
    n_pkts = fwd + bwd
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(n_pkts, out=offsets[1:])
    flows = FlowTable(
        src_hi=np.array([s[0] for s in src], np.uint64), src_lo=np.array([s[1] for s in src], np.uint64),
        dst_hi=np.array([d[0] for d in dst], np.uint64), dst_lo=np.array([d[1] for d in dst], np.uint64),
        src_port=np.array([r["sport"] for r in rows], np.uint16),
        dst_port=np.array([r["dport"] for r in rows], np.uint16),
        proto=np.array([r["proto"] for r in rows], np.uint8), ip_version=np.full(n, 4, np.uint8),
        first_ns=first, last_ns=first + np.array([int(r["dur"] * 1e9) for r in rows], np.int64),
        fwd_pkts=fwd, bwd_pkts=bwd,
        fwd_bytes=np.array([r["bytes"][0] for r in rows], np.int64),
        bwd_bytes=np.array([r["bytes"][1] for r in rows], np.int64),
        file_id=np.array([r["file"] for r in rows], np.int32),
        order=np.arange(offsets[-1], dtype=np.int64), offsets=offsets, is_fwd=np.ones(offsets[-1], bool),
    )  # fmt: skip
    score = np.array([r["score"] for r in rows], np.float32)
    k = 3
    return ScoreTable(
        flows=flows, score=score, is_anomaly=score > threshold, threshold=threshold, files=("a.pcap", "b.pcap"),
        model_id="m", worst_idx=np.full((n, k), -1, np.int64), worst_ts_ns=np.zeros((n, k), np.int64),
        worst_is_fwd=np.zeros((n, k), bool), worst_ip_len=np.zeros((n, k), np.int64),
        worst_error=np.zeros((n, k), np.float32), top_features=np.zeros((n, k), np.int64), feature_names=("a",),
    )  # fmt: skip


def kinds(t: ScoreTable, **kw: Any) -> list[tuple[str, int]]:
    inc = find_incidents(t, **kw)
    return [(inc.kind[k], int(inc.n_flows[k])) for k in range(inc.n_incidents)]


def test_a_scan_over_many_ports_is_one_incident():
    rows = [probe(T0 + 0.01 * i, "10.0.0.66", "10.0.0.10", 1 + i, score=2.0 + (i % 7)) for i in range(1000)]
    inc = find_incidents(table(rows))
    assert inc.n_incidents == 1
    assert inc.kind[0] == "port scan" and inc.n_flows[0] == 1000 and inc.n_dports[0] == 1000
    assert inc.score[0] == pytest.approx(8.0)
    assert float(table(rows).score[inc.rep[0]]) == pytest.approx(8.0)  # the representative is the worst flow
    assert inc.sentence[0].startswith("10.0.0.66 probed 1,000 ports on 1 host in ")


def test_a_sweep_over_hosts_is_named_so():
    rows = [probe(T0 + i, "10.0.0.66", f"10.0.1.{i}", 445) for i in range(1, 30)]
    assert kinds(table(rows)) == [("host sweep", 29)]


@pytest.mark.parametrize("n_sources", [1, 40])
def test_probes_hammering_one_service_are_a_flood_whatever_their_sources(n_sources):
    rows = [probe(T0 + 0.002 * i, f"10.9.{i % n_sources // 250}.{1 + i % n_sources % 250}", "10.0.0.10", 80,
                  sport=1024 + i) for i in range(300)]  # fmt: skip
    inc = find_incidents(table(rows))
    assert [(inc.kind[0], int(inc.n_flows[0]), int(inc.n_srcs[0]))] == [("SYN flood", 300, n_sources)]
    few = [probe(T0 + i, "10.0.0.66", "10.0.0.10", 80, sport=2000 + i) for i in range(FLOOD_MIN_FLOWS - 1)]
    assert kinds(table(few)) == [("port scan", FLOOD_MIN_FLOWS - 1)]  # too few to be a flood


@pytest.mark.parametrize(("gap_s", "expected"), [(100.0, 1), (299.0, 1), (301.0, 2), (5000.0, 2)])
def test_a_quiet_gap_longer_than_the_window_opens_a_new_incident(gap_s, expected):
    burst1 = [probe(T0 + 0.1 * i, "10.0.0.66", "10.0.0.10", 1 + i) for i in range(10)]
    start2 = T0 + 0.9 + 0.001 + gap_s  # the first burst's last flow ends at T0 + 0.901
    burst2 = [probe(start2 + 0.1 * i, "10.0.0.66", "10.0.0.10", 100 + i) for i in range(10)]
    assert find_incidents(table(burst1 + burst2), window_s=300.0).n_incidents == expected


def test_a_long_flow_keeps_its_incident_open_until_it_ends():
    rows = [session(T0, "10.0.0.66", "10.0.0.10", 80, dur=900.0), session(T0 + 800.0, "10.0.0.66", "10.0.0.10", 80)]
    assert kinds(table(rows)) == [("repeated connections", 2)]


def test_behaviours_of_one_host_are_separate_incidents():
    a, srv = "10.0.0.66", "10.0.0.10"
    rows = [probe(T0 + 0.01 * i, a, srv, 1 + i) for i in range(200)]
    rows += [session(T0 + 30 + 7 * i, a, srv, 22, sport=50000 + i, nbytes=(2500, 3500), score=3.0) for i in range(9)]
    rows += [session(T0 + 100, a, srv, 443, sport=51000, pkts=(7000, 1100), nbytes=(10_000_000, 60_000), score=3.5)]
    rows += [flow(T0 + 110 + 10 * i, a, "10.0.0.53", 53, proto=17, sport=52000 + i, pkts=(200, 200),
                  nbytes=(40_000, 40_000), dur=20.0, score=4.0) for i in range(3)]  # fmt: skip
    rows += [session(T0 + 5 + 60 * i, a, "10.0.0.99", 8443, sport=53000 + i, score=2.5) for i in range(6)]
    rows += [session(T0 + 50, a, srv, 80, score=0.5)]  # not flagged: in no incident
    t = table(rows)
    got = sorted(kinds(t))
    assert got == sorted(
        [("port scan", 200), ("brute force", 9), ("large upload", 1), ("DNS series", 3), ("beacon series", 6)]
    )
    inc = find_incidents(t)
    assert inc.flow_incident[-1] == -1
    assert np.all(inc.flow_incident[t.is_anomaly] >= 0)
    upload = inc.kind.index("large upload")
    assert inc.sentence[upload] == "10.0.0.66 sent 10.0 MB to 10.0.0.10:443 in 1 flow in 2.0 s"


def test_flows_of_different_files_never_share_an_incident():
    rows = [probe(T0 + i, "10.0.0.66", "10.0.0.10", 1 + i, file_id=i % 2) for i in range(20)]
    inc = find_incidents(table(rows))
    assert sorted(inc.n_flows.tolist()) == [10, 10]


def test_ids_are_stable_and_distinct_and_ranks_follow_the_order():
    rows = [probe(T0 + 0.01 * i, "10.0.0.66", "10.0.0.10", 1 + i) for i in range(50)]
    rows += [session(T0 + 10, "10.0.0.7", "10.0.0.10", 443, nbytes=(5_000_000, 1000), score=9.0)]
    a, b = find_incidents(table(rows)), find_incidents(table(rows[::-1]))
    assert set(a.ids) == set(b.ids) and len(set(a.ids)) == 2
    assert all(i.startswith("inc-") for i in a.ids)
    assert a.kind[0] == "large upload"  # the higher score ranks first
    assert a.flow_ids()[-1] == a.ids[0]


def test_ranking_lets_other_kinds_of_trouble_past_the_repeats():
    """Twenty scans by one host (strongest scores) do not bury one upload and nine ssh sessions."""
    rows = []
    for burst in range(20):
        start = T0 + burst * 1000.0  # each burst its own incident (gaps longer than the window)
        rows += [probe(start + 0.01 * i, "10.0.0.66", "10.0.0.10", 1 + i, score=9.0 - 0.1 * burst) for i in range(30)]
    rows += [session(T0 + 50, "10.0.0.77", "10.0.0.10", 443, pkts=(7000, 1000), nbytes=(8_000_000, 50_000),
                     score=3.0)]  # fmt: skip
    rows += [session(T0 + 60 + 7 * i, "10.0.0.78", "10.0.0.10", 22, sport=50000 + i, score=2.0) for i in range(9)]
    inc = find_incidents(table(rows))
    assert inc.n_incidents == 22
    order = list(inc.kind)
    assert order[0] == "port scan" and inc.score[0] == pytest.approx(9.0)
    assert order.index("large upload") < 3 and order.index("brute force") < 4
    assert np.all(np.diff(inc.priority) <= 0)


def test_no_flagged_flow_gives_no_incident():
    t = table([session(T0, "10.0.0.1", "10.0.0.2", 80, score=0.2)])
    inc = find_incidents(t)
    assert inc.n_incidents == 0 and inc.flow_incident.tolist() == [-1]


def _mixed() -> ScoreTable:
    rows = [probe(T0 + 0.01 * i, "10.0.0.66", "10.0.0.10", 1 + i) for i in range(40)]
    rows += [session(T0 + 10, "10.0.0.7", "10.0.0.10", 443, nbytes=(5_000_000, 1000), score=9.0)]
    rows += [session(T0 + 20, "10.0.0.8", "10.0.0.10", 443, score=0.3)]
    return table(rows)


def test_flow_rows_carry_their_incident_id_in_csv_and_jsonl():
    t = _mixed()
    inc = find_incidents(t)
    text = render(t, select_rows(t, include_all=True), "csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert CSV_COLUMNS[-1] == "incident" and tuple(rows[0]) == CSV_COLUMNS
    by_flag = {(r["is_anomaly"], r["incident"]) for r in rows}
    assert ("false", "") in by_flag and ("true", inc.ids[0]) in by_flag and ("true", inc.ids[1]) in by_flag
    docs = [json.loads(x) for x in render(t, select_rows(t, include_all=True), "jsonl").splitlines()]
    ids = {d["netae"].get("incident", {}).get("id") for d in docs}
    assert ids == {None, *inc.ids}


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "table"])
def test_group_by_incident_writes_one_row_per_incident_in_rank_order(fmt):
    t = _mixed()
    inc = find_incidents(t)
    text = render_incidents(t, fmt)
    if fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(text)))
        assert tuple(rows[0]) == INCIDENT_CSV_COLUMNS
        assert [(r["incident"], r["rank"], r["kind"]) for r in rows] == [
            (inc.ids[0], "1", "large upload"),
            (inc.ids[1], "2", "port scan"),
        ]
        assert rows[1]["flows"] == "40" and rows[1]["src_ip"] == "10.0.0.66"
    elif fmt == "jsonl":
        docs = [json.loads(x) for x in text.splitlines()]
        assert [d["event"]["dataset"] for d in docs] == ["netae.incident"] * 2
        assert [d["netae"]["incident"]["id"] for d in docs] == list(inc.ids)
        assert docs[1]["netae"]["incident"]["flows"] == 40 and docs[1]["message"] == inc.sentence[1]
        assert docs[0]["destination"] == {"ip": "10.0.0.10", "port": 443}
    else:
        assert "2 incidents from 41 anomalous flows" in text
        assert text.index("large upload") < text.index("port scan")


def test_addresses_in_sentences_match_the_representative():
    t = _mixed()
    inc = find_incidents(t)
    rep = int(inc.rep[1])
    assert format_ip(int(t.flows.src_hi[rep]), int(t.flows.src_lo[rep])) in inc.sentence[1]


def test_udp_probes_and_pings_of_one_host_are_one_incident_each():
    rows = [
        flow(T0 + 0.05 * i, "10.0.0.66", "10.0.0.10", 1 + i, proto=17, pkts=(1, 0), nbytes=(28, 0)) for i in range(50)
    ]
    rows += [flow(T0 + 0.05 * i, "10.0.0.66", f"10.0.2.{1 + i}", 0, proto=1, sport=8, pkts=(1, 1), nbytes=(84, 84))
             for i in range(40)]  # fmt: skip
    inc = find_incidents(table(rows))
    assert sorted((inc.kind[k], int(inc.n_flows[k])) for k in range(inc.n_incidents)) == [
        ("ICMP", 40),
        ("port scan", 50),
    ]
    assert inc.sentence[inc.kind.index("ICMP")].startswith("10.0.0.66 exchanged 40 ICMP flows with 40 hosts in ")


def test_one_large_upload_is_kept_apart_from_the_other_sessions_of_its_pair():
    a, srv = "10.0.0.66", "10.0.0.10"
    rows = [session(T0 + 30.0 * i, a, srv, 80, sport=50000 + i, dur=60.0, nbytes=(900, 300)) for i in range(5)]
    rows += [session(T0 + 45.0, a, srv, 80, sport=51000, pkts=(3000, 900), nbytes=(3_100_000, 50_000), score=9.0)]
    assert sorted(kinds(table(rows))) == [("large upload", 1), ("slow connections", 5)]


def test_flood_aggregate_rows_count_as_the_flows_they_hold():
    import dataclasses

    rows = [probe(T0 + i, "10.9.0.1", "10.0.0.10", 80, sport=3000 + i) for i in range(3)]
    t = table(rows)
    agg = np.array([5000, 0, 0], np.int64)
    flows = dataclasses.replace(t.flows, agg_flows=agg, agg_srcs=np.array([700, 0, 0], np.int64))
    inc = find_incidents(dataclasses.replace(t, flows=flows))
    assert [(inc.kind[0], int(inc.n_flows[0]))] == [("SYN flood", 3)]
    assert inc.sentence[0].startswith("700 sources opened 5,002 half-open connections to 10.0.0.10:80 in ")
