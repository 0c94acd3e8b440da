from __future__ import annotations

import csv
import io
import ipaddress
import json
import logging
import os
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from netae.errors import OutputError
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
    caplog.set_level(logging.WARNING, logger="netae.output")
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


# --- Community ID: the specification's own baseline (corelight/community-id-spec, baseline/) -----
# Each row: proto, saddr, daddr, sport, dport (ICMP: type and counterpart/code, as the baseline
# lists them), seed-0 ID, seed-1 ID. Written here as data, from baseline_deflt.json and
# baseline_seed1.json.
SPEC_BASELINE = [
    (58, "fe80::200:86ff:fe05:80da", "fe80::260:97ff:fe07:69ea", 135, 136, "1:dGHyGvjMfljg6Bppwm3bg0LO8TY="),
    (58, "fe80::260:97ff:fe07:69ea", "fe80::200:86ff:fe05:80da", 136, 135, "1:dGHyGvjMfljg6Bppwm3bg0LO8TY="),
    (58, "fe80::260:97ff:fe07:69ea", "fe80::200:86ff:fe05:80da", 135, 136, "1:zavyT/cezQr1fmImYCwYnMXbgck="),
    (58, "fe80::200:86ff:fe05:80da", "fe80::260:97ff:fe07:69ea", 136, 135, "1:zavyT/cezQr1fmImYCwYnMXbgck="),
    (58, "3ffe:501:1800:2345::2", "3ffe:507:0:1:200:86ff:fe05:80da", 3, 0, "1:2ObVBgIn28oZvibYZhZMBgh7WdQ="),
    (58, "3ffe:501:410:0:2c0:dfff:fe47:33e", "3ffe:507:0:1:200:86ff:fe05:80da", 1, 4, "1:hLZd0XGWojozrvxqE0dWB1iM6R0="),
    (58, "3ffe:507:0:1:200:86ff:fe05:80da", "3ffe:501:0:1001::2", 128, 129, "1:+TW+HtLHvV1xnGhV1lv7XoJrqQg="),
    (58, "3ffe:501:0:1001::2", "3ffe:507:0:1:200:86ff:fe05:80da", 129, 128, "1:+TW+HtLHvV1xnGhV1lv7XoJrqQg="),
    (58, "fe80::200:86ff:fe05:80da", "ff02::2", 133, 134, "1:hO+sN4H+MG5MY/8hIrXPqc4ZQz0="),
    (58, "fe80::260:97ff:fe07:69ea", "ff02::1", 134, 133, "1:pkvHqCL88/tg1k4cPigmZXUtL00="),
    (1, "192.168.0.89", "192.168.0.1", 8, 0, "1:X0snYXpgwiv9TZtqg64sgzUn6Dk="),
    (1, "192.168.0.1", "192.168.0.89", 0, 8, "1:X0snYXpgwiv9TZtqg64sgzUn6Dk="),
    (1, "10.0.0.1", "10.0.0.2", 11, 0, "1:YHxtAirCG//0OzkcVAukqKQN9xM="),
    (6, "2001:470:e5bf:dead:4957:2174:e82c:4887", "2607:f8b0:400c:c03::1a", 63943, 25,
     "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4="),
    (6, "2607:f8b0:400c:c03::1a", "2001:470:e5bf:dead:4957:2174:e82c:4887", 25, 63943,
     "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4="),
    (132, "192.168.170.8", "192.168.170.56", 7, 7, "1:MP2EtRCAUIZvTw6MxJHLV7N7JDs="),
    (132, "192.168.170.56", "192.168.170.8", 7, 7, "1:MP2EtRCAUIZvTw6MxJHLV7N7JDs="),
    (6, "128.232.110.120", "66.35.250.204", 34855, 80, "1:LQU9qZlK+B5F3KDmev6m5PMibrg="),
    (6, "66.35.250.204", "128.232.110.120", 80, 34855, "1:LQU9qZlK+B5F3KDmev6m5PMibrg="),
    (17, "192.168.1.52", "8.8.8.8", 54585, 53, "1:d/FP5EW3wiY1vCndhwleRRKHowQ="),
    (17, "8.8.8.8", "192.168.1.52", 53, 54585, "1:d/FP5EW3wiY1vCndhwleRRKHowQ="),
    (46, "10.1.12.1", "10.1.12.2", None, None, "1:KHlLkgoJW7ifUTyTSgyVfkFHzKw="),
    (46, "10.1.12.2", "10.1.12.1", None, None, "1:KHlLkgoJW7ifUTyTSgyVfkFHzKw="),
]  # fmt: skip


@pytest.mark.parametrize(("proto", "src", "dst", "sport", "dport", "expected"), SPEC_BASELINE)
def test_community_id_matches_the_spec_baseline(proto, src, dst, sport, dport, expected):
    assert community_id(ab(src), ab(dst), proto, sport, dport) == expected


def _cid_of_flows(rows: list[dict]) -> list[str]:
    from netae.output import community_ids

    f = assemble_flows(make_packets(rows), idle_timeout_s=120, active_timeout_s=1800)
    n = f.n_flows
    table = ScoreTable(
        flows=f, score=np.zeros(n, np.float32), is_anomaly=np.zeros(n, bool), threshold=1.0, files=("x",),
        model_id="m", worst_idx=np.full((n, 1), -1), worst_ts_ns=np.zeros((n, 1), np.int64),
        worst_is_fwd=np.zeros((n, 1), bool), worst_ip_len=np.zeros((n, 1), np.int64),
        worst_error=np.zeros((n, 1), np.float32), top_features=np.full((n, 1), -1), feature_names=("a",),
    )  # fmt: skip
    return community_ids(table, np.arange(n))


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        # Neighbour solicitation and its advertisement: one two-way flow, the spec's ID either way.
        ([{"proto": 58, "src": "fe80::200:86ff:fe05:80da", "dst": "fe80::260:97ff:fe07:69ea", "icmp_type": 135},
          {"ts": 0.001, "proto": 58, "src": "fe80::260:97ff:fe07:69ea", "dst": "fe80::200:86ff:fe05:80da",
           "icmp_type": 136}], "1:dGHyGvjMfljg6Bppwm3bg0LO8TY="),
        ([{"proto": 58, "src": "fe80::260:97ff:fe07:69ea", "dst": "fe80::200:86ff:fe05:80da", "icmp_type": 136}],
         "1:dGHyGvjMfljg6Bppwm3bg0LO8TY="),
        ([{"proto": 132, "src": "192.168.170.8", "dst": "192.168.170.56", "sport": 7, "dport": 7},
          {"ts": 0.001, "proto": 132, "src": "192.168.170.56", "dst": "192.168.170.8", "sport": 7, "dport": 7}],
         "1:MP2EtRCAUIZvTw6MxJHLV7N7JDs="),
        ([{"proto": 46, "src": "10.1.12.2", "dst": "10.1.12.1", "sport": 0, "dport": 0}],
         "1:KHlLkgoJW7ifUTyTSgyVfkFHzKw="),
    ],
)  # fmt: skip
def test_community_id_of_assembled_flows_follows_the_spec(rows, expected):
    assert _cid_of_flows(rows) == [expected]


# --- output targets (issue 20) -------------------------------------------------------------------


def test_dash_is_standard_output(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with atomic_write("-") as fh:
        fh.write("to stdout\n")
    assert capsys.readouterr().out == "to stdout\n"
    assert list(tmp_path.iterdir()) == []  # no file named "-"


def _fifo_reader(fifo: Path, sink: Path) -> subprocess.Popen:
    code = "import sys, shutil; shutil.copyfileobj(open(sys.argv[1], 'rb'), open(sys.argv[2], 'wb'))"
    return subprocess.Popen([sys.executable, "-c", code, str(fifo), str(sink)])


@pytest.mark.parametrize("append", [False, True])
def test_fifo_is_written_in_place_and_stays_a_fifo(tmp_path, append):
    fifo, sink = tmp_path / "alerts.fifo", tmp_path / "got.txt"
    os.mkfifo(fifo)
    reader = _fifo_reader(fifo, sink)
    if append:
        with append_lines(fifo) as fh:
            fh.write('{"a":1}\n')
    else:
        with atomic_write(fifo) as fh:
            fh.write('{"a":1}\n')
    assert reader.wait(timeout=30) == 0
    assert sink.read_text() == '{"a":1}\n'
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alerts.fifo", "got.txt"]


def test_unix_socket_is_written_in_place(tmp_path):
    path = tmp_path / "s.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    got: list[bytes] = []

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            while chunk := conn.recv(4096):
                got.append(chunk)

    t = threading.Thread(target=serve)
    t.start()
    with atomic_write(path) as fh:
        fh.write("line\n")
    t.join(timeout=30)
    server.close()
    assert b"".join(got) == b"line\n"
    assert stat.S_ISSOCK(os.stat(path).st_mode)


@pytest.mark.parametrize("use_append", [False, True])
def test_a_directory_as_output_is_an_output_error(tmp_path, use_append):
    opener = append_lines if use_append else atomic_write
    with pytest.raises(OutputError, match="is a directory"), opener(tmp_path) as fh:
        fh.write("x\n")


def test_append_keeps_the_inode_and_writes_each_document_in_one_call(tmp_path, monkeypatch):
    target = tmp_path / "alerts.jsonl"
    target.write_text('{"old":1}\n')
    inode = target.stat().st_ino
    calls: list[bytes] = []
    real_write = os.write

    def spy(fd, data):
        calls.append(bytes(data))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", spy)
    docs = [json.dumps({"n": i, "pad": "x" * 50_000}) + "\n" for i in range(40)]
    with append_lines(target) as fh:
        fh.write("".join(docs))
    assert target.stat().st_ino == inode
    assert target.read_text() == '{"old":1}\n' + "".join(docs)
    assert [json.loads(chunk) for chunk in calls] == [json.loads(d) for d in docs]  # one write per document


@pytest.mark.parametrize(
    ("fmt", "before", "after"),
    [
        ("jsonl", '{"a":1}\n{"b":2}', '{"a":1}\n{"b":2}\n{"c":3}\n'),  # whole: kept, newline added
        ("jsonl", '{"b":2}', '{"b":2}\n{"c":3}\n'),  # a file without any newline
        ("jsonl", '{"a":1}\n{"b":', '{"a":1}\n{"c":3}\n'),  # torn: cut
        ("csv", ",".join(CSV_COLUMNS) + "\n" + ",".join(["1"] * len(CSV_COLUMNS)),
         ",".join(CSV_COLUMNS) + "\n" + ",".join(["1"] * len(CSV_COLUMNS)) + "\n" + '{"c":3}\n'),
        ("csv", ",".join(CSV_COLUMNS) + "\n1,2,3", ",".join(CSV_COLUMNS) + "\n" + '{"c":3}\n'),
    ],
)  # fmt: skip
def test_append_never_deletes_a_complete_record(tmp_path, fmt, before, after):
    target = tmp_path / f"out.{fmt}"
    target.write_text(before)
    with append_lines(target, fmt=fmt) as fh:
        fh.write('{"c":3}\n')
    assert target.read_text() == after
