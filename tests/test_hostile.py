"""Issue 21, the parts about files and output: hostile names, non-finite values, environment errors
and data that must never be destroyed. One test per item; the fault tests run real processes.
"""

from __future__ import annotations

import csv
import dataclasses
import errno
import io
import json
import logging
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from netae.cli import app
from netae.modelfile import load_model
from netae.output import CSV_COLUMNS, csv_text, render
from tests.helpers.captures import pcap_prefix
from tests.helpers.models import model_parts, raw_model_bytes
from tests.test_output import score_table

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_pcaps"
NETAE = [sys.executable, "-m", "netae"]
PART = pcap_prefix((SAMPLES / "mixed.pcap").read_bytes(), 400)
runner = CliRunner()


def run(*args: object, **kw):
    r = runner.invoke(app, [str(a) for a in args], **kw)
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr
    return r


def netae(*args: object, **kw) -> subprocess.CompletedProcess[bytes]:
    argv = [a if isinstance(a, bytes) else str(a) for a in args]
    return subprocess.run([*NETAE, *argv], capture_output=True, timeout=300, **kw)


def strict_json(line: str) -> dict:
    def refuse(name: str) -> None:
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(line, parse_constant=refuse)


def with_meta(model: Path, out: Path, **changes: object) -> Path:
    """A copy of ``model`` with metadata changed and a fresh digest (a model someone else wrote)."""
    tensors, meta = model_parts(load_model(model))
    out.write_bytes(raw_model_bytes(tensors, {**meta, **changes}))
    return out


# --- non-finite values -------------------------------------------------------------------------------


def test_a_score_that_is_not_finite_is_an_anomaly_and_json_stays_strict(small_model, tmp_path, monkeypatch):
    import netae.score

    real = netae.score.score_features

    def poisoned(*args, **kwargs):
        s = real(*args, **kwargs)
        score = s.score.copy()
        score[:3] = [np.nan, np.inf, -np.inf]
        return dataclasses.replace(s, score=score)

    monkeypatch.setattr(netae.score, "score_features", poisoned)
    capture = tmp_path / "part.pcap"
    capture.write_bytes(PART)
    r = run("score", capture, "-m", small_model, "-f", "jsonl", "--all", "--threshold", "1e6")
    assert r.exit_code == 1, r.stderr  # the three non-finite flows are anomalies, nothing else is
    docs = [strict_json(line) for line in r.stdout.splitlines()]
    flagged = [d for d in docs if d["netae"]["is_anomaly"]]
    assert len(flagged) == 3
    assert all(d["netae"]["score"] is None and d["event"]["kind"] == "alert" for d in flagged)
    assert "NaN" not in r.stdout and "Infinity" not in r.stdout


# --- output hygiene ----------------------------------------------------------------------------------

HOSTILE = b"=cmd|\x1b]8;;http:x\x07\x1b[2J\nforged line.pcap"


def test_control_characters_in_names_are_escaped_everywhere(small_model, tmp_path):
    capture = tmp_path / os.fsdecode(HOSTILE)
    capture.write_bytes(PART + b"\x01\x02\x03")  # a torn last record: a warning that names the file
    for fmt in ("csv", "jsonl", "table"):
        r = netae("score", "-m", small_model, "-f", fmt, "--all", "--", capture)
        assert r.returncode in (0, 1), r.stderr
        for stream in (r.stdout, r.stderr):
            assert b"\x1b" not in stream and b"\x07" not in stream
        assert b"\\x1b]8;;http:x\\x07\\x1b[2J\\x0aforged line.pcap" in r.stderr
        assert len(r.stderr.decode().splitlines()) == 2  # the warning and the summary: no forged line
        if fmt == "csv":
            rows = list(csv.DictReader(io.StringIO(r.stdout.decode())))
            assert rows and all("\n" not in row["source_file"] for row in rows)


@pytest.mark.parametrize(
    ("name", "shown"),
    [("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"), ("+1", "'+1"), ("-2+3", "'-2+3"),
     ("@SUM(A1)", "'@SUM(A1)"), ("\tx", "'\\x09x"), ("\rx", "'\\x0dx"), ("plain.pcap", "plain.pcap")],
)  # fmt: skip
def test_csv_cells_that_start_a_formula_are_neutralised_numbers_are_not(name, shown):
    assert csv_text(name) == shown
    t = dataclasses.replace(score_table(), files=(name,), explanations=["-1 new ports", "=x", "ok"])
    rows = list(csv.DictReader(io.StringIO(render(t, np.arange(3), "csv"))))
    assert [r["source_file"] for r in rows] == [shown] * 3
    assert [r["explanation"] for r in rows] == ["'-1 new ports", "'=x", "ok"]
    for r in rows:  # numeric cells stay numbers
        float(r["score"]), int(r["packets"]), float(r["duration_s"])
        assert not r["score"].startswith("'")
    assert list(rows[0]) == list(CSV_COLUMNS)


def test_every_table_cell_is_escaped_for_rich_markup():
    why = "80 new destination ports from it, e.g. to [fd00::a]:443 [bold red]and[/] [link=http://x]y[/link]"
    t = dataclasses.replace(score_table(), explanations=[why] * 3, files=("[red]a.pcap",))
    text = render(t, np.arange(3), "table", limit=None)
    assert "[fd00::a]:443" in text
    assert "[bold red]and[/]" in text


def test_info_escapes_model_metadata(small_model, tmp_path):
    meta = load_model(small_model).to_meta()
    training = {**meta["training"], "inputs": ["\x1b[2Jevil\n.pcap", "[bold]x[/bold]"]}
    crafted = with_meta(small_model, tmp_path / "crafted.netae", training=training)
    r = run("info", crafted)
    assert r.exit_code == 0, r.stderr
    assert "\x1b" not in r.stdout
    assert "\\x1b[2Jevil\\x0a.pcap, [bold]x[/bold]" in r.stdout
    assert len(r.stdout.splitlines()) == len(run("info", small_model).stdout.splitlines())


def test_file_names_that_are_not_utf8_are_written_with_escapes(small_model, tmp_path):
    capture = tmp_path / os.fsdecode(b"\xff\xfecapture.pcap")
    capture.write_bytes(PART)
    out = tmp_path / os.fsdecode(b"out\xff.csv")
    r = netae("score", capture, "-m", small_model, "-f", "csv", "--all", "-o", out)
    assert r.returncode in (0, 1), r.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert rows and {row["source_file"] for row in rows} == {str(tmp_path) + "/\\xff\\xfecapture.pcap"}
    r = netae("score", capture, "-m", small_model, "-f", "jsonl", "--all")
    assert r.returncode in (0, 1), r.stderr
    assert all(strict_json(line) for line in r.stdout.decode("utf-8").splitlines())
    r = netae("report", capture, "-m", small_model, "-o", tmp_path / "r.html")
    assert r.returncode == 0, r.stderr
    r = netae("featurize", capture, "-o", tmp_path / "ds")
    assert r.returncode == 0, r.stderr
    for source in (tmp_path / "ds", capture):
        r = netae("train", source, "-o", tmp_path / "m.netae", "--epochs", "1", "--hidden-size", "4")
        assert r.returncode == 0, r.stderr
    assert "\\xff\\xfecapture.pcap" in netae("info", tmp_path / "m.netae").stdout.decode()


# --- exit statuses of environment errors -------------------------------------------------------------


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 64 KiB tmpfs: a disk that fills up (root only; skipped where mounting is not allowed)."""
    mnt = tmp_path / "full"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


@pytest.mark.parametrize("append", [False, True])
def test_a_full_disk_is_exit_2_with_one_line(small_model, small_tmpfs, append):
    out = small_tmpfs / "alerts.jsonl"
    r = netae("score", SAMPLES / "mixed.pcap", "-m", small_model, "-f", "jsonl", "--all", "-o", out,
              *(["--append"] if append else []))  # fmt: skip
    assert r.returncode == 2, r.stderr
    lines = r.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "No space left on device" in lines[0], lines
    assert [p.name for p in small_tmpfs.iterdir()] == (["alerts.jsonl"] if append else [])


def test_a_full_disk_in_process_is_exit_2(small_model, tmp_path, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    r = run("score", SAMPLES / "mixed.pcap", "-m", small_model, "-f", "csv", "-o", tmp_path / "a.csv")
    assert r.exit_code == 2
    assert "No space left on device" in r.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["score", "report", "train"])
def test_a_directory_as_output_is_exit_2(small_model, tmp_path, command):
    args = [command, SAMPLES / "normal" / "office_b.pcapng", "-o", tmp_path]
    args += ["--epochs", "1"] if command == "train" else ["-m", small_model]
    r = run(*args)
    assert r.exit_code == 2
    assert "is a directory" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_closed_stdin_is_exit_2(small_model):
    r = subprocess.run([*NETAE, "score", "-", "-m", str(small_model)], capture_output=True, timeout=120,
                       preexec_fn=lambda: os.close(0))  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert r.stderr.decode().count("\n") == 1 and "standard input is closed" in r.stderr.decode()


def test_a_config_that_is_not_utf8_is_exit_2(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b"[flows]\nidle_timeout_s = 1.0 # \xff\xfe\n")
    r = run("train", SAMPLES / "normal", "--config", bad, "-o", tmp_path / "m.netae")
    assert r.exit_code == 2
    assert "not UTF-8" in r.stderr


@pytest.mark.parametrize("value", ["inf", "nan", "1e300"])
def test_an_unbounded_setting_is_refused_at_load_time(small_model, tmp_path, value):
    config = tmp_path / "c.toml"
    config.write_text(f"[flows]\nidle_timeout_s = {value}\n")
    r = run("train", SAMPLES / "normal", "--config", config, "-o", tmp_path / "m.netae")
    assert r.exit_code == 2
    assert "flows.idle_timeout_s" in r.stderr
    meta = load_model(small_model).to_meta()
    settings = {**meta["settings"], "flows": {**meta["settings"]["flows"], "idle_timeout_s": float(value)}}
    crafted = with_meta(small_model, tmp_path / "crafted.netae", settings=settings)
    r = run("score", SAMPLES / "normal" / "office_b.pcapng", "-m", crafted)
    assert r.exit_code == 2
    assert "idle_timeout_s" in r.stderr


@pytest.mark.parametrize("value", [math.nan, math.inf, -1.0, "high", None])
def test_a_model_threshold_that_is_not_finite_is_exit_2(small_model, tmp_path, value):
    meta = load_model(small_model).to_meta()
    crafted = with_meta(small_model, tmp_path / "t.netae", threshold={**meta["threshold"], "value": value})
    r = run("score", SAMPLES / "normal" / "office_b.pcapng", "-m", crafted)
    assert r.exit_code == 2
    assert "threshold" in r.stderr


def test_malformed_model_metadata_is_exit_2(small_model, tmp_path):
    crafted = with_meta(small_model, tmp_path / "m.netae", settings={"flows": []})
    for command in ("info", "score"):
        r = run(command, *([SAMPLES / "normal" / "office_b.pcapng", "-m"] if command == "score" else []), crafted)
        assert r.exit_code == 2, (command, r.stderr)


# --- no data destroyed -------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["input", "model"])
def test_output_naming_an_input_or_the_model_is_refused(small_model, tmp_path, target):
    capture = tmp_path / "in.pcap"
    capture.write_bytes(PART)
    model = tmp_path / "m.netae"
    model.write_bytes(small_model.read_bytes())
    victim = capture if target == "input" else model
    before = victim.read_bytes()
    for command in ("score", "report"):
        r = run(command, capture, "-m", model, "-o", victim)
        assert r.exit_code == 2
        assert "is also an input" in r.stderr
    r = run("train", capture, "-o", capture, "--epochs", "1")
    assert r.exit_code == 2
    assert victim.read_bytes() == before
    assert capture.read_bytes() == PART


def test_append_keeps_a_whole_last_record_without_newline(small_model, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="netae.output")
    out = tmp_path / "alerts.jsonl"
    out.write_text('{"a":1}\n{"whole":true}')  # no newline, yet complete: kept
    r = run("score", SAMPLES / "mixed.pcap", "-m", small_model, "-f", "jsonl", "--append", "-o", out, "-q")
    assert r.exit_code in (0, 1), r.stderr
    lines = out.read_text().splitlines()
    assert lines[:2] == ['{"a":1}', '{"whole":true}']
    assert all(strict_json(line) for line in lines)
    out.write_text('{"a":1}\n{"torn":')
    r = run("score", SAMPLES / "mixed.pcap", "-m", small_model, "-f", "jsonl", "--append", "-o", out)
    assert out.read_text().splitlines()[:2] != ['{"a":1}', '{"torn":']
    assert "torn last line" in r.stderr + caplog.text


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_temporary_files_are_removed_on_sigterm_and_sigint(small_model, tmp_path, sig, status):
    out = tmp_path / "alerts.jsonl"
    proc = subprocess.Popen([*NETAE, "score", "-", "-m", str(small_model), "-f", "jsonl", "-o", str(out)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    proc.stdin.write(PART[:24])  # a capture header; then the capture waits for packets
    proc.stdin.flush()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list(tmp_path.glob(".alerts.jsonl.*.tmp")):
        time.sleep(0.1)
    assert list(tmp_path.glob(".alerts.jsonl.*.tmp")), "the run never opened its temporary file"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == status, err.decode()
    assert list(tmp_path.iterdir()) == []


def test_workers_are_capped_by_inputs_and_cores(tmp_path, monkeypatch):
    import concurrent.futures

    from netae.config import Settings
    from netae.workflow import featurize_to

    seen: list[int] = []
    real = concurrent.futures.ProcessPoolExecutor

    def spy(max_workers=None, **kw):
        seen.append(max_workers)
        return real(max_workers=max_workers, **kw)

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", spy)
    a, b = tmp_path / "a.pcap", tmp_path / "b.pcap"
    a.write_bytes(PART)
    b.write_bytes(PART)
    featurize_to([str(a), str(b)], tmp_path / "ds", settings=Settings(), workers=40)
    assert all(w <= min(2, os.cpu_count() or 1) for w in seen)
