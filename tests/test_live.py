"""Live input: FIN/RST end TCP flows, stdin is read as it arrives, alerts come within seconds."""

from __future__ import annotations

import dataclasses
import json
import queue
import statistics
import struct
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from netae.flows import FlowAssembler, assemble_flows, tcp_close_ns
from netae.modelfile import dump_model, load_model
from netae.workflow import model_settings
from tests.helpers.captures import frame_udp
from tests.helpers.models import write_edited
from tests.helpers.packets import make_packets, tcp_session
from tests.reference import flows as reference

IDLE_S = 3.0  # the paced test's model: UDP flows end by the idle timeout within the test's time
LINGER_S = 1.0


_ASSEMBLE = {"compiled": assemble_flows, "reference": reference.assemble_flows}
_PATH = ["compiled"]


@pytest.fixture(params=["compiled", "reference"])
def path(request):
    _PATH[0] = request.param
    yield request.param
    _PATH[0] = "compiled"


def flows_of(rows, linger: float):
    return _ASSEMBLE[_PATH[0]](make_packets(rows), idle_timeout_s=120, active_timeout_s=1800, tcp_close_linger_s=linger)


@pytest.mark.parametrize(("linger", "n_flows"), [(0.0, 1), (1.0, 2)])
def test_a_connection_reused_after_fin_is_a_new_flow(path, linger, n_flows):
    rows = tcp_session(100.0) + tcp_session(105.0)  # same ports, 5 s apart: within the idle timeout
    f = flows_of(rows, linger)
    assert f.n_flows == n_flows
    assert int(f.n_packets.sum()) == len(rows)
    if n_flows == 2:
        assert f.n_packets.tolist() == [12, 12]
        assert f.src_port.tolist() == [40000, 40000]  # each starts with the client's SYN


def test_packets_within_the_linger_join_the_closed_flow(path):
    rows = tcp_session(100.0)
    late = {**rows[-1], "ts": rows[-1]["ts"] + 0.5}  # a retransmitted last ACK, within 1 s
    after = {**rows[0], "ts": rows[-1]["ts"] + 3.0}  # a new SYN on the same ports, after it
    f = flows_of([*rows, late, after], 1.0)
    assert f.n_packets.tolist() == [len(rows) + 1, 1]


def test_rst_closes_and_one_fin_does_not(path):
    syn = {"src": "10.0.0.1", "dst": "10.0.0.2", "sport": 5000, "dport": 22, "flags": 0x02}
    rst = {"src": "10.0.0.2", "dst": "10.0.0.1", "sport": 22, "dport": 5000, "flags": 0x14}
    fin = {**syn, "flags": 0x11}
    reset = flows_of([{**syn, "ts": 1.0}, {**rst, "ts": 1.1}, {**syn, "ts": 3.0}], 1.0)
    half = flows_of([{**syn, "ts": 1.0}, {**fin, "ts": 1.1}, {**syn, "ts": 3.0}], 1.0)
    assert reset.n_packets.tolist() == [2, 1]
    assert half.n_packets.tolist() == [3]  # FIN from one side only: the connection is half open
    packets = make_packets([{**syn, "ts": 1.0}, {**rst, "ts": 1.1}])
    closed = tcp_close_ns(packets, flows_of([{**syn, "ts": 1.0}, {**rst, "ts": 1.1}], 1.0))
    assert closed.tolist() == [1_100_000_000]


def test_compiled_and_numpy_agree_on_closing_sessions():
    rng = np.random.default_rng(3)
    rows = []
    for _i in range(40):
        rows += tcp_session(
            float(rng.uniform(0, 60)), sport=40000 + int(rng.integers(0, 4)), n_data=int(rng.integers(0, 4))
        )
    rows.sort(key=lambda r: r["ts"])
    a = flows_of(rows, 0.5)
    b = reference.assemble_flows(make_packets(rows), idle_timeout_s=120, active_timeout_s=1800, tcp_close_linger_s=0.5)
    for name, col in a.column_dict().items():
        assert np.array_equal(col, b.column_dict()[name]), name
    assert np.array_equal(a.order, b.order)
    assert a.n_flows > 4  # reused ports really made new flows


def test_early_close_reports_a_closed_flow_before_the_idle_timeout():
    rows = tcp_session(100.0) + [{"src": "10.0.0.7", "dst": "10.0.0.8", "proto": 17, "ts": 102.0}]
    packets = make_packets(rows)
    exact = FlowAssembler(idle_timeout_s=120, active_timeout_s=1800, tcp_close_linger_s=1.0)
    early = FlowAssembler(idle_timeout_s=120, active_timeout_s=1800, tcp_close_linger_s=1.0, early_close=True)
    assert exact.push(packets)[1].n_flows == 0  # waits for the idle timeout (flows close in end order)
    _, closed = early.push(packets)
    assert closed.n_flows == 1 and closed.proto.tolist() == [6]
    # By a clock (a live stream's wall clock) past the idle timeout the UDP flow closes too.
    _, closed = early.expire(int(225e9))
    assert closed.proto.tolist() == [17]
    assert early.open_packets().n_packets == 0


def test_models_without_the_setting_keep_their_flow_rules(small_model, tmp_path):
    m = load_model(small_model)
    assert model_settings(m).flows.tcp_close_linger_s == LINGER_S
    old = write_edited(tmp_path / "old.netae", m, lambda meta: meta["settings"]["flows"].pop("tcp_close_linger_s"))
    assert model_settings(load_model(old)).flows.tcp_close_linger_s == 0.0


# --- a real `netae score -` process fed through a pipe at the capture's pace ------------------------


def frame_tcp(src: int, dst: int, sport: int, dport: int, flags: int, payload: int = 0) -> bytes:
    """Ethernet + IPv4 + TCP; ``src``/``dst`` are the last octet of 10.0.0.x."""
    ip_len = 20 + 20 + payload
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, ip_len, 0, 0, 64, 6, 0, bytes([10, 0, 0, src]), bytes([10, 0, 0, dst]))
    tcp = struct.pack(">HHIIBBHHH", sport, dport, 1, 1, 5 << 4, flags, 65535, 0, 0)
    return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip + tcp + bytes(payload)


def schedule() -> tuple[list[tuple[float, bytes]], dict[int, str]]:
    """(offset s, frame) in time order, and how each flow (by client port) ends."""
    events: list[tuple[float, bytes]] = []
    ends: dict[int, str] = {}
    for k in range(6):  # TCP sessions closed by FIN from both sides
        t, port = 0.4 * k, 41000 + k
        c, s = (1, 2, port, 80), (2, 1, 80, port)
        steps = [(c, 0x02, 0), (s, 0x12, 0), (c, 0x10, 0), (c, 0x18, 120), (s, 0x18, 900), (c, 0x11, 0),
                 (s, 0x11, 0), (c, 0x10, 0)]  # fmt: skip
        events += [(t + 0.05 * i, frame_tcp(*ep, fl, pl)) for i, (ep, fl, pl) in enumerate(steps)]
        ends[port] = "fin"
    for k in range(3):  # refused connections: SYN, RST
        t, port = 0.5 + 0.7 * k, 42000 + k
        events += [(t, frame_tcp(3, 2, port, 23, 0x02)), (t + 0.02, frame_tcp(2, 3, 23, port, 0x14))]
        ends[port] = "rst"
    for k in range(3):  # UDP exchanges: they end by the idle timeout
        t, port = 0.3 + 0.9 * k, 43000 + k
        events += [(t, frame_udp(4, 5, port, 53)), (t + 0.01, frame_udp(5, 4, 53, port, payload=60))]
        ends[port] = "idle"
    events.sort(key=lambda e: e[0])
    return events, ends


def record(frame: bytes, ts: float) -> bytes:
    sec, usec = int(ts), int((ts % 1) * 1e6)
    return struct.pack("<IIII", sec, usec, len(frame), len(frame)) + frame


def test_alerts_on_a_paced_pipe_come_within_seconds_of_the_flow_end(small_model, tmp_path):
    m = load_model(small_model)
    flows = dataclasses.replace(m.settings.flows, idle_timeout_s=IDLE_S)
    model = tmp_path / "live.netae"
    dump_model(model, dataclasses.replace(m, settings=dataclasses.replace(m.settings, flows=flows)))
    proc = subprocess.Popen(
        [sys.executable, "-m", "netae", "score", "-", "-m", str(model), "-f", "jsonl", "--all", "-q"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path,
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    lines: queue.Queue[tuple[float, dict]] = queue.Queue()

    def read_lines() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put((time.monotonic(), json.loads(line)))

    threading.Thread(target=read_lines, daemon=True).start()
    try:
        proc.stdin.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        # Warm-up: one refused connection; its alert says netae has started (imports, kernels).
        for frame in (frame_tcp(6, 2, 44000, 25, 0x02), frame_tcp(2, 6, 25, 44000, 0x14)):
            proc.stdin.write(record(frame, time.time()))
        proc.stdin.flush()
        assert lines.get(timeout=120)[1]["source"]["port"] == 44000
        events, ends = schedule()
        start = time.monotonic()
        written: dict[int, float] = {}
        for offset, frame in events:
            time.sleep(max(0.0, start + offset - time.monotonic()))
            proc.stdin.write(record(frame, time.time()))  # stamped as it is written, as tcpdump -U does
            proc.stdin.flush()
            sport, dport = struct.unpack(">HH", frame[34:38])
            written[sport if sport in ends else dport] = time.monotonic()
        seen: dict[int, float] = {}
        deadline = time.monotonic() + IDLE_S + 20
        while len(seen) < len(ends) and time.monotonic() < deadline:  # the pipe stays open
            try:
                at, doc = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                break
            seen[doc["source"]["port"]] = at
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
        err = proc.stderr.read().decode() if proc.stderr else ""
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    assert proc.returncode in (0, 1), err
    assert seen.keys() == ends.keys(), f"no alert before the input ended for {sorted(ends.keys() - seen.keys())}"
    delays = [seen[p] - written[p] - (IDLE_S if how == "idle" else 0.0) for p, how in ends.items()]
    median = statistics.median(delays)
    print(f"\nalert delay past the flow's end on a paced pipe: median {median:.2f} s, max {max(delays):.2f} s "
          f"over {len(delays)} flows (FIN/RST: from the last packet; idle: from last packet + {IDLE_S} s)")  # fmt: skip
    assert median <= 5.0


@pytest.mark.parametrize("value", [-1.0, 5000.0, True])
def test_linger_out_of_range_is_a_config_error(value):
    from netae.config import settings_from_dict
    from netae.errors import ConfigError

    with pytest.raises(ConfigError, match="tcp_close_linger_s"):
        settings_from_dict({"flows": {"tcp_close_linger_s": value}})
