"""netae score --state: rotated pieces of a capture, one per run, score as the whole capture."""

from __future__ import annotations

import dataclasses
import json
import struct
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from netae.cli import app
from netae.modelfile import dump_model, load_model
from netae.state import STATE_FORMAT, load_state
from netae.stream import stream_scores
from netae.tables import ScoreTable
from netae.workflow import score_captures
from tests.helpers.captures import record_ends

SAMPLES = Path(__file__).resolve().parents[1] / "sample_pcaps"
MIXED = SAMPLES / "mixed.pcap"  # with attacks
BENIGN = SAMPLES / "normal" / "office_a.pcap"
runner = CliRunner()


def cut(capture: Path, n_pieces: int, out_dir: Path) -> list[Path]:
    """Consecutive pieces of a classic pcap at record boundaries, as `editcap -c` makes them."""
    data = capture.read_bytes()
    ends = [24, *record_ends(data)]
    bounds = [ends[round(i * (len(ends) - 1) / n_pieces)] for i in range(n_pieces + 1)]
    paths = []
    for i, (a, b) in enumerate(zip(bounds, bounds[1:], strict=False)):
        p = out_dir / f"piece_{i:02d}.pcap"
        p.write_bytes(data[:24] + data[a:b])
        paths.append(p)
    return paths


def verdicts(tables: list[ScoreTable]) -> dict[tuple[int, ...], tuple[int, int, float, bool]]:
    """Flow key and first packet -> (packets, bytes, score, is_anomaly); a flow must come once."""
    out: dict[tuple[int, ...], tuple[int, int, float, bool]] = {}
    for t in tables:
        f = t.flows
        for i in range(t.n_flows):
            key = (int(f.src_hi[i]), int(f.src_lo[i]), int(f.dst_hi[i]), int(f.dst_lo[i]), int(f.src_port[i]),
                   int(f.dst_port[i]), int(f.proto[i]), int(f.first_ns[i]), int(f.last_ns[i]))  # fmt: skip
            assert key not in out, "a flow came out twice"
            out[key] = (int(f.fwd_pkts[i] + f.bwd_pkts[i]), int(f.fwd_bytes[i] + f.bwd_bytes[i]), float(t.score[i]),
                        bool(t.is_anomaly[i]))  # fmt: skip
    return out


def assert_same(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for k, (pkts, nbytes, score, anomalous) in want.items():
        assert got[k][:2] == (pkts, nbytes)
        assert got[k][2] == pytest.approx(score, rel=1e-4, abs=1e-6)
        assert got[k][3] == anomalous or abs(score - got[k][2]) <= 1e-4 * max(abs(score), 1.0)


def later_packet(capture: Path, out: Path, *, after_s: int) -> Path:
    """A one-record capture: the first record of ``capture``, ``after_s`` seconds after its end."""
    data = capture.read_bytes()
    last = record_ends(data)[-2]
    ts_end = int.from_bytes(data[last : last + 4], "little")
    first_end = record_ends(data)[0]
    record = bytearray(data[24:first_end])
    record[0:4] = (ts_end + after_s).to_bytes(4, "little")
    out.write_bytes(data[:24] + bytes(record))
    return out


@pytest.mark.parametrize(("capture", "n_pieces"), [(BENIGN, 5), (MIXED, 4)])
def test_pieces_with_state_score_as_the_whole_capture(small_model, tmp_path, capture, n_pieces):
    whole = score_captures([str(capture)], model_path=small_model).table
    model = load_model(small_model)
    state = tmp_path / "netae.state"
    tables: list[ScoreTable] = []
    carried = []
    for piece in cut(capture, n_pieces, tmp_path):
        tables += list(stream_scores([str(piece)], model=model, state=state, flush_s=0.0))
        saved = load_state(state, model=model)
        assert saved is not None
        carried.append(saved.open_packets.n_packets)
    assert all(n > 0 for n in carried)  # flows really crossed every boundary
    # The flows still open at the end wait for the next capture; one that starts long after the
    # idle timeout finishes them (its own packet's flow is then the only one left open).
    after = later_packet(capture, tmp_path / "later.pcap", after_s=1000)
    tables += list(stream_scores([str(after)], model=model, state=state, flush_s=0.0))
    got, want = verdicts(tables), verdicts([whole])
    assert_same(got, want)
    saved = load_state(state, model=model)
    assert saved is not None and saved.open_packets.n_packets == 1
    assert whole.n_flows > 100 and (capture == BENIGN or whole.is_anomaly.any())


def test_pieces_in_one_run_equal_pieces_in_many_runs(small_model, tmp_path):
    pieces = cut(MIXED, 3, tmp_path)
    model = load_model(small_model)
    one = list(stream_scores([str(p) for p in pieces], model=model, state=tmp_path / "one.state", flush_s=0.0))
    many: list[ScoreTable] = []
    for p in pieces:
        many += list(stream_scores([str(p)], model=model, state=tmp_path / "many.state", flush_s=0.0))
    assert_same(verdicts(one), verdicts(many))
    a, b = load_state(tmp_path / "one.state", model=model), load_state(tmp_path / "many.state", model=model)
    assert a is not None and b is not None
    assert a.open_packets.n_packets == b.open_packets.n_packets
    assert a.context.keys() == b.context.keys()
    assert all(np.array_equal(a.context[k], b.context[k]) for k in a.context)


def run(*args: object, **kw):
    result = runner.invoke(app, [str(a) for a in args], **kw)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def test_cli_state_round_trip_and_source_files(small_model, tmp_path):
    pieces = [*cut(MIXED, 2, tmp_path), later_packet(MIXED, tmp_path / "later.pcap", after_s=1000)]
    state = tmp_path / "s.state"
    docs = []
    for p in pieces:
        r = run("score", p, "-m", small_model, "--state", state, "-f", "jsonl", "--all", "-q")
        assert r.exit_code in (0, 1), r.stderr
        docs.append([json.loads(line) for line in r.stdout.splitlines()])
    assert docs[0] == []  # the first piece lasts 92 s: every flow may still grow (idle timeout 120 s)
    assert {d["netae"]["source_file"] for d in docs[1]} == {str(pieces[1])}
    assert any(d["event"]["start"] < d["event"]["end"] for d in docs[1])
    assert {d["netae"]["source_file"] for d in docs[2]} == {str(pieces[2])}  # flows it finished
    assert sum(len(d) for d in docs) == score_captures([str(MIXED)], model_path=small_model).table.n_flows
    raw = state.read_bytes()
    assert raw[:2] not in (b"\x80\x04", b"PK")  # never a pickle or zip
    assert STATE_FORMAT.encode() in raw[:4096]
    names = sorted(x.name for x in tmp_path.iterdir())
    assert names == ["later.pcap", "piece_00.pcap", "piece_01.pcap", "s.state"]  # no temporary file left


def test_state_of_another_model_is_refused(small_model, tmp_path):
    state = tmp_path / "s.state"
    piece = cut(MIXED, 3, tmp_path)[0]
    assert run("score", piece, "-m", small_model, "--state", state, "-q").exit_code in (0, 1)
    m = load_model(small_model)
    other = tmp_path / "other.netae"
    dump_model(other, dataclasses.replace(m, threshold=dataclasses.replace(m.threshold, value_=123.0)))
    before = state.read_bytes()
    r = run("score", piece, "-m", other, "--state", state)
    assert r.exit_code == 2
    assert "another model" in r.stderr
    assert r.stderr.strip().count("\n") == 0
    assert state.read_bytes() == before  # untouched


def _header_bytes(header: dict[str, object]) -> bytes:
    """A file that is only a safetensors header (JSON nested past the parser's depth, say)."""
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not a netae state file"),
        (b"\x80\x04\x95junk", "not a netae state file"),
        (b'\x10\x00\x00\x00\x00\x00\x00\x00{"a": 1}        ', "no readable state metadata"),
        (_header_bytes({"__metadata__": {STATE_FORMAT: "[" * 100_000 + "]" * 100_000}}), "no readable state metadata"),
    ],
)
def test_damaged_state_is_a_clear_error(small_model, tmp_path, content, message):
    state = tmp_path / "s.state"
    state.write_bytes(content)
    r = run("score", MIXED, "-m", small_model, "--state", state)
    assert r.exit_code == 2
    assert message in r.stderr


def test_newer_state_version_is_refused(small_model, tmp_path):
    from safetensors.numpy import save

    doc = {"format": STATE_FORMAT, "version": 99}
    (tmp_path / "s.state").write_bytes(save({"x": np.zeros(1)}, metadata={STATE_FORMAT: json.dumps(doc)}))
    r = run("score", MIXED, "-m", small_model, "--state", tmp_path / "s.state")
    assert r.exit_code == 2
    assert "format version 99" in r.stderr


def test_state_with_report_is_a_usage_error(small_model, tmp_path):
    r = run("score", MIXED, "-m", small_model, "--state", tmp_path / "s", "--report", tmp_path / "r.html")
    assert r.exit_code == 2
    assert "--state" in r.stderr


def test_a_capture_scored_twice_with_the_state_is_warned_about(small_model, tmp_path):
    piece = cut(MIXED, 3, tmp_path)[0]
    state = tmp_path / "s.state"
    assert run("score", piece, "-m", small_model, "--state", state).exit_code in (0, 1)
    r = run("score", piece, "-m", small_model, "--state", state)
    assert r.exit_code in (0, 1)
    assert "warning:" in r.stderr and "in time order" in r.stderr


def test_the_state_file_can_be_a_setting(small_model, tmp_path):
    state = tmp_path / "env.state"
    piece = cut(MIXED, 3, tmp_path)[0]
    r = run("score", piece, "-m", small_model, "-q", env={"NETAE_STATE": str(state)})
    assert r.exit_code in (0, 1), r.stderr
    saved = load_state(state, model=load_model(small_model))
    assert saved is not None and saved.open_packets.n_packets > 0
    assert saved.sources == (str(piece),)
