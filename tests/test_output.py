from __future__ import annotations

import csv
import io
import ipaddress
import json

import numpy as np
import pytest

from netae.flows import assemble_flows
from netae.output import CSV_COLUMNS, append_lines, atomic_write, community_id, render, select_rows
from netae.tables import ScoreTable, format_ip
from tests.helpers.packets import make_packets, tcp_session


def ab(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


V6A = "fe80:0001:0203:0405:0607:0809:0A0B:0C0D"
V6B = "fe80:1011:1213:1415:1617:1819:1A1B:1C1D"


@pytest.mark.parametrize(
    ("src", "dst", "proto", "sport", "dport", "seed", "expected"),
    [
        ("1.2.3.4", "5.6.7.8", 6, 1122, 3344, 0, "1:wCb3OG7yAFWelaUydu0D+125CLM="),
        ("1.2.3.4", "5.6.7.8", 6, 1122, 3344, 1, "1:HhA1B+6CoLbiKPEs5nhNYN4XWfk="),
        ("5.6.7.8", "1.2.3.4", 6, 3344, 1122, 0, "1:wCb3OG7yAFWelaUydu0D+125CLM="),
        ("1.2.3.4", "5.6.7.8", 17, 1122, 3344, 0, "1:0Mu9InQx6z4ZiCZM/7HXi2WMhOg="),
        ("1.2.3.4", "5.6.7.8", 132, 1122, 3344, 0, "1:EKt4MsxuyaE6mL+hmrEkQ9csDD8="),
        ("1.2.3.4", "5.6.7.8", 1, 8, 0, 0, "1:crodRHL2FEsHjbv3UkRrfbs4bZ0="),
        ("5.6.7.8", "1.2.3.4", 1, 0, 0, 0, "1:crodRHL2FEsHjbv3UkRrfbs4bZ0="),
        ("1.2.3.4", "5.6.7.8", 1, 11, 0, 0, "1:f/YiSyWqczrTgfUCZlBUnvHRcPk="),
        ("1.2.3.4", "5.6.7.8", 1, 11, 0, 1, "1:1DD7cWGC/Yg91YGsQeni8du3pIA="),
        (V6A, V6B, 58, 128, 0, 0, "1:0bf7hyMJUwt3fMED7z8LIfRpBeo="),
        (V6A, V6B, 58, 146, 0, 0, "1:fYC8+pz24E+EhANP1EZhpX0Dw10="),
        ("1.2.3.4", "5.6.7.8", 46, None, None, 0, "1:ikv3kmf89luf73WPz1jOs49S768="),
        (V6A, V6B, 46, None, None, 1, "1:j6EyyfBzL4vWKHFXgUqb5Az3OxM="),
        ("192.168.1.52", "8.8.8.8", 17, 54585, 53, 0, "1:d/FP5EW3wiY1vCndhwleRRKHowQ="),
        ("128.232.110.120", "66.35.250.204", 6, 34855, 80, 0, "1:LQU9qZlK+B5F3KDmev6m5PMibrg="),
    ],
)
def test_community_id_matches_spec_vectors(src, dst, proto, sport, dport, seed, expected):
    assert community_id(ab(src), ab(dst), proto, sport, dport, seed=seed) == expected


def score_table() -> ScoreTable:
    rows = tcp_session(1_700_000_000.0) + tcp_session(1_700_000_010.0, sport=40001)
    rows += [{"ts": 1_700_000_020.0, "proto": 17, "sport": 5353, "dport": 53, "ip_len": 70, "payload": 42}]
    p = make_packets(rows)
    f = assemble_flows(p, idle_timeout_s=120, active_timeout_s=1800)
    n = f.n_flows
    k = 3
    return ScoreTable(
        flows=f,
        score=np.array([0.1, 5.0, 0.3], dtype=np.float32),
        is_anomaly=np.array([False, True, False]),
        threshold=1.0,
        files=("a.pcap",),
        model_id="abc123",
        worst_idx=np.tile(np.array([[2, 0, -1]]), (n, 1)),
        worst_ts_ns=np.full((n, k), 1_700_000_000_000_000_000, dtype=np.int64),
        worst_is_fwd=np.ones((n, k), dtype=bool),
        worst_ip_len=np.full((n, k), 60, dtype=np.int64),
        worst_error=np.full((n, k), 0.5, dtype=np.float32),
        top_features=np.tile(np.array([[1, 0, 2]]), (n, 1)),
        feature_names=("a", "b", "c"),
    )


def test_csv_has_the_documented_columns_and_only_anomalies_by_default():
    t = score_table()
    rows = list(csv.DictReader(io.StringIO(render(t, select_rows(t, include_all=False), "csv"))))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert len(rows) == 1
    r = rows[0]
    assert (r["src_ip"], r["src_port"], r["dst_ip"], r["dst_port"], r["protocol"]) == (
        "10.0.0.1",
        "40001",
        "10.0.0.2",
        "80",
        "6",
    )
    assert r["is_anomaly"] == "true" and r["source_file"] == "a.pcap"
    assert r["top_features"] == "b;a;c"
    assert float(r["first_seen"]) == pytest.approx(1_700_000_010.0)


def test_jsonl_is_ecs_shaped():
    t = score_table()
    lines = render(t, select_rows(t, include_all=True), "jsonl").splitlines()
    assert len(lines) == 3
    docs = [json.loads(line) for line in lines]
    alert = next(d for d in docs if d["event"]["kind"] == "alert")
    assert alert["event"]["category"] == ["network", "intrusion_detection"]
    assert alert["event"]["duration"] > 0
    assert alert["source"] == {"ip": "10.0.0.1", "port": 40001, "packets": 7, "bytes": alert["source"]["bytes"]}
    assert alert["network"]["transport"] == "tcp" and alert["network"]["iana_number"] == "6"
    assert alert["network"]["type"] == "ipv4"
    assert alert["network"]["community_id"].startswith("1:")
    assert alert["netae"]["model_id"] == "abc123" and alert["netae"]["worst_packets"][0]["index"] == 2
    assert alert["@timestamp"].endswith("Z")


def test_table_lists_highest_score_first():
    t = score_table()
    text = render(t, select_rows(t, include_all=True, by_score=True), "table")
    data = [line for line in text.splitlines() if "10.0.0.1" in line]
    assert len(data) == 3
    assert "ANOMALY" in data[0] and ":40001" in data[0]
    assert data[1].split("│")[1].strip() == "0.3" and data[2].split("│")[1].strip() == "0.1"


def test_atomic_write_leaves_target_untouched_on_error(tmp_path):
    target = tmp_path / "out.jsonl"
    target.write_text("old\n")
    with pytest.raises(RuntimeError), atomic_write(target) as fh:
        fh.write("partial")
        raise RuntimeError("boom")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


def test_append_cuts_a_torn_last_line_in_place(tmp_path, caplog):
    target = tmp_path / "out.jsonl"
    target.write_text('{"a":1}\n{"torn":')
    inode = target.stat().st_ino
    with append_lines(target) as fh:
        fh.write('{"b":2}\n')
    assert target.read_text() == '{"a":1}\n{"b":2}\n'
    assert target.stat().st_ino == inode  # truncated in place, never rewritten
    assert "torn last line" in caplog.text


def group_table() -> ScoreTable:
    """Five flows: three from 10.0.0.66 (two to .10, one to .11), two from 10.0.0.5."""
    rows = tcp_session(1_700_000_000.0, client="10.0.0.66", server="10.0.0.10", sport=50000)
    rows += tcp_session(1_700_000_010.0, client="10.0.0.66", server="10.0.0.10", sport=50001)
    rows += tcp_session(1_700_000_020.0, client="10.0.0.66", server="10.0.0.11", sport=50002)
    rows += tcp_session(1_700_000_005.0, client="10.0.0.5", server="10.0.0.10", sport=40000)
    rows += tcp_session(1_700_000_030.0, client="10.0.0.5", server="10.0.0.10", sport=40001)
    p = make_packets(sorted(rows, key=lambda r: r["ts"]))
    f = assemble_flows(p, idle_timeout_s=120, active_timeout_s=1800)
    order = np.argsort(f.first_ns)
    score = np.empty(f.n_flows, np.float32)
    score[order] = [2.0, 0.2, 3.0, 0.5, 0.1]  # by start: .66, .5, .66, .66, .5
    n, k = f.n_flows, 3
    expl = [""] * n
    expl[int(order[2])] = "3rd connection from 10.0.0.66 to 10.0.0.10:80"
    return ScoreTable(
        flows=f, score=score, is_anomaly=score > 1.0, threshold=1.0, files=("a.pcap",), model_id="m",
        worst_idx=np.full((n, k), -1, np.int64), worst_ts_ns=np.zeros((n, k), np.int64),
        worst_is_fwd=np.zeros((n, k), bool), worst_ip_len=np.zeros((n, k), np.int64),
        worst_error=np.zeros((n, k), np.float32), top_features=np.zeros((n, k), np.int64),
        feature_names=("a",), explanations=tuple(expl),
    )  # fmt: skip


def test_group_by_host_counts_and_worst_flows():
    from netae.output import group_flows

    t = group_table()
    g = group_flows(t, by="host")
    assert g.n_groups == 2
    src = [format_ip(int(t.flows.src_hi[r]), int(t.flows.src_lo[r])) for r in g.rep]
    k = src.index("10.0.0.66")
    assert (g.n_flows[k], g.n_anomalous[k]) == (3, 2)
    assert g.max_score[k] == pytest.approx(3.0)
    assert g.first_ns[k] == 1_700_000_000 * 10**9
    assert [float(t.score[i]) for i in g.worst[k]] == pytest.approx([3.0, 2.0, 0.5])
    other = 1 - k
    assert (g.n_flows[other], g.n_anomalous[other]) == (2, 0)
    assert g.worst[other].tolist()[2] == -1
    pair = group_flows(t, by="pair")
    assert sorted(pair.n_flows.tolist()) == [1, 2, 2]


def test_group_writers():
    from netae.output import GROUP_CSV_COLUMNS, render_groups

    t = group_table()
    rows = list(csv.DictReader(io.StringIO(render_groups(t, "host", "csv", include_all=False))))
    assert tuple(rows[0]) == GROUP_CSV_COLUMNS and len(rows) == 1
    r = rows[0]
    assert (r["src_ip"], r["flows"], r["anomalous_flows"], r["is_anomaly"]) == ("10.0.0.66", "3", "2", "true")
    assert r["explanation"] == "3rd connection from 10.0.0.66 to 10.0.0.10:80"
    assert r["worst_flows"].startswith("10.0.0.10:80/tcp:3")
    assert len(list(csv.DictReader(io.StringIO(render_groups(t, "pair", "csv", include_all=True))))) == 3
    docs = [json.loads(x) for x in render_groups(t, "pair", "jsonl", include_all=True).splitlines()]
    alert = next(d for d in docs if d["event"]["kind"] == "alert")
    assert alert["event"]["dataset"] == "netae.group"
    assert alert["source"] == {"ip": "10.0.0.66"} and alert["destination"] == {"ip": "10.0.0.10"}
    assert alert["netae"]["group"]["by"] == "pair" and alert["netae"]["group"]["flows"] == 2
    assert alert["netae"]["group"]["worst_flows"][0]["dst_port"] == 80
    text = render_groups(t, "host", "table", include_all=True)
    lines = [line for line in text.splitlines() if "10.0.0." in line]
    assert "ANOMALY" in lines[0] and "10.0.0.66" in lines[0] and "10.0.0.5" in lines[1]
