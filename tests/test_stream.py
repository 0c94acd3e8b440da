"""Streaming scoring: same flows and scores as batch scoring, output as flows expire."""

from __future__ import annotations

import csv
import io
import json
import struct
from pathlib import Path

import pytest
from typer.testing import CliRunner

from netae.cli import app
from netae.modelfile import load_model
from netae.stream import StreamTotals, stream_scores, wants_stream
from netae.tables import ScoreTable
from netae.workflow import score_captures
from tests.helpers.captures import frame_udp
from tests.helpers.pcapgen import Record, pcap_bytes

SAMPLES = Path(__file__).resolve().parents[1] / "sample_pcaps"
MIXED = SAMPLES / "mixed.pcap"
runner = CliRunner()


def run(*args: object, **kw):
    result = runner.invoke(app, [str(a) for a in args], **kw)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def by_flow(tables: list[ScoreTable]) -> dict[tuple[int, ...], tuple[int, int, float]]:
    out = {}
    for t in tables:
        f = t.flows
        for i in range(t.n_flows):
            key = (int(f.src_hi[i]), int(f.src_lo[i]), int(f.dst_hi[i]), int(f.dst_lo[i]), int(f.src_port[i]),
                   int(f.dst_port[i]), int(f.proto[i]), int(f.first_ns[i]))  # fmt: skip
            assert key not in out, "a flow came out twice"
            out[key] = (int(f.fwd_pkts[i] + f.bwd_pkts[i]), int(f.fwd_bytes[i] + f.bwd_bytes[i]), float(t.score[i]))
    return out


def assert_same_flows(stream: list[ScoreTable], batch: ScoreTable) -> None:
    got, want = by_flow(stream), by_flow([batch])
    assert got.keys() == want.keys()
    for k, (pkts, nbytes, score) in want.items():
        assert got[k][:2] == (pkts, nbytes)
        assert got[k][2] == pytest.approx(score, rel=1e-4, abs=1e-6)


@pytest.fixture(scope="module")
def batch_mixed(small_model):
    return score_captures([str(MIXED)], model_path=small_model).table


def test_stream_equals_batch_on_the_mixed_sample(small_model, batch_mixed):
    totals = StreamTotals()
    tables = list(
        stream_scores([str(MIXED)], model=load_model(small_model), totals=totals, chunk_bytes=64 << 10, flush_s=0.0)
    )
    assert totals.n_batches >= 4  # flows really closed part-way through the capture
    assert totals.n_flows == batch_mixed.n_flows
    assert_same_flows(tables, batch_mixed)


def long_flow_capture() -> bytes:
    """A flow that starts first and outlives many short ones (they close before it does)."""
    t0 = 1_700_000_000 * 10**9
    recs = []
    for k in range(11):  # 10.0.0.1 -> .2:53 every 60 s for 600 s
        recs.append((t0 + k * 60 * 10**9, frame_udp(1, 2, 1000, 53)))
    for i in range(40):  # short exchanges between other hosts
        t = t0 + (5 + 10 * i) * 10**9
        recs.append((t, frame_udp(3 + i % 5, 9, 2000 + i, 80, payload=i)))
        recs.append((t + 10**9, frame_udp(9, 3 + i % 5, 80, 2000 + i, payload=2 * i)))
    recs.sort(key=lambda r: r[0])
    return pcap_bytes([Record(data, ts_ns=ts) for ts, data in recs])


def test_stream_equals_batch_when_the_first_flow_closes_last(small_model, tmp_path):
    path = tmp_path / "long.pcap"
    path.write_bytes(long_flow_capture())
    batch = score_captures([str(path)], model_path=small_model).table
    totals = StreamTotals()
    tables = list(stream_scores([str(path)], model=load_model(small_model), totals=totals, chunk_bytes=1024,
                                flush_s=0.0))  # fmt: skip
    assert totals.n_batches >= 3
    assert_same_flows(tables, batch)


class Tracked(io.RawIOBase):
    """A pipe-like stream that counts the bytes handed out."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[no-untyped-def]
        n = min(len(b), len(self.data) - self.pos, 4096)
        b[:n] = self.data[self.pos : self.pos + n]
        self.pos += n
        return n


def test_alerts_come_before_the_capture_ends(small_model):
    src = Tracked(MIXED.read_bytes())
    gen = stream_scores([src], model=load_model(small_model), chunk_bytes=64 << 10, flush_s=0.0)  # type: ignore[list-item]
    first = next(gen)
    assert first.n_flows > 0
    assert src.pos < len(src.data) * 3 // 4  # flows close 120 s (idle timeout) after their last packet
    gen.close()


def test_score_stdin_writes_every_flow_as_json_lines(small_model, batch_mixed):
    r = run("score", "-", "-m", small_model, "--format", "jsonl", "--all", input=MIXED.read_bytes())
    assert r.exit_code == 1, r.stderr
    docs = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(docs) == batch_mixed.n_flows
    assert {d["event"]["kind"] for d in docs} == {"alert", "event"}
    assert "streamed" in r.stderr


def test_stream_output_file_and_append_keep_whole_lines(small_model, batch_mixed, tmp_path):
    out = tmp_path / "flows.csv"
    r = run("score", MIXED, "-m", small_model, "--stream", "--format", "csv", "--all", "-o", out, "--quiet")
    assert r.exit_code == 1
    assert r.stdout == ""
    assert r.stderr == ""
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == batch_mixed.n_flows
    r = run("score", MIXED, "-m", small_model, "--stream", "--format", "csv", "--all", "-o", out, "--append", "-q")
    text = out.read_text()
    assert text.count("src_ip,") == 1  # the header is not repeated
    assert len(list(csv.DictReader(io.StringIO(text)))) == 2 * batch_mixed.n_flows
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flows.csv"]


def test_stream_append_cuts_a_torn_line_first(small_model, tmp_path):
    out = tmp_path / "alerts.jsonl"
    out.write_text('{"whole": 1}\n{"torn": ')
    r = run("score", "-", "-m", small_model, "-f", "jsonl", "-o", out, "--append", "-q", input=MIXED.read_bytes())
    assert r.exit_code == 1
    lines = out.read_text().splitlines()
    assert lines[0] == '{"whole": 1}'
    assert all(json.loads(line) for line in lines)
    assert len(lines) > 1


def test_stream_with_report_is_a_usage_error(small_model, tmp_path):
    r = run("score", MIXED, "-m", small_model, "--stream", "--report", tmp_path / "r.html")
    assert r.exit_code == 2
    assert "--report" in r.stderr


def test_no_stream_reads_stdin_whole(small_model, batch_mixed):
    r = run("score", "-", "-m", small_model, "--no-stream", "-f", "csv", "--all", input=MIXED.read_bytes())
    assert r.exit_code == 1
    assert "streamed" not in r.stderr
    assert len(list(csv.DictReader(io.StringIO(r.stdout)))) == batch_mixed.n_flows


def test_empty_stdin_exits_2_with_one_line(small_model):
    r = run("score", "-", "-m", small_model, input=b"")
    assert r.exit_code == 2
    assert "empty" in r.stderr
    assert r.stderr.strip().count("\n") == 0


def test_wants_stream(tmp_path):
    p = tmp_path / "a.pcap"
    p.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    assert wants_stream(["-"])
    assert not wants_stream([str(p)])
    assert wants_stream([str(p)], auto_bytes=10)


def test_append_without_output_is_a_usage_error(small_model):
    r = run("score", MIXED, "-m", small_model, "--append")
    assert r.exit_code == 2
    assert "--append needs --output" in r.stderr


class Dribble(io.RawIOBase):
    """A pipe that hands out at most ``piece`` bytes per read, as a slow live capture does."""

    def __init__(self, data: bytes, piece: int) -> None:
        self.data, self.pos, self.piece = data, 0, piece

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[no-untyped-def]
        n = min(len(b), len(self.data) - self.pos, self.piece)
        b[:n] = self.data[self.pos : self.pos + n]
        self.pos += n
        return n


@pytest.mark.parametrize("live", [True, False])
def test_live_reads_hand_on_records_as_they_arrive(live):
    from netae.capture import read_packets

    t0 = 1_700_000_000 * 10**9
    data = pcap_bytes([Record(frame_udp(1, 2, 1000 + i, 53), ts_ns=t0 + i * 10**9) for i in range(50)])
    src = Dribble(data, piece=100)
    tables = read_packets(src, chunk_bytes=1 << 20, live=live)  # type: ignore[arg-type]
    first = next(tables)
    if live:
        assert first.n_packets <= 2
        assert src.pos <= 24 + 200  # only what one read returned: not a whole chunk
    else:
        assert first.n_packets == 50  # files: full chunks
    assert first.n_packets + sum(t.n_packets for t in tables) == 50
