"""End-to-end CLI tests: train on the sample captures, score, and every exit status."""

from __future__ import annotations

import csv
import io
import json
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from netae.cli import app
from netae.evaluate import evaluate_scores, match_labels, read_labels

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_pcaps"
runner = CliRunner()


def run(*args: str):
    result = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.stderr, result.stderr
    return result


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "sample.netae"
    r = run("train", SAMPLES / "normal", "-o", path, "--epochs", "12", "--seed", "0", "--quiet")
    assert r.exit_code == 0, r.stderr
    return path


def pcap_bytes(frames: list[bytes], linktype: int = 1) -> bytes:
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)
    for i, f in enumerate(frames):
        out += struct.pack("<IIII", 1_700_000_000 + i, 0, len(f), len(f)) + f
    return out


ARP = bytes.fromhex("ffffffffffff0200000000010806") + bytes(28)


def test_train_writes_a_model_that_info_describes(model):
    r = run("info", model)
    assert r.exit_code == 0
    assert "threshold" in r.stdout and "office_a.pcap" in r.stdout
    meta = json.loads(run("info", model, "--json").stdout)
    assert meta["training"]["flows"] > 1000
    assert meta["settings"]["flows"]["idle_timeout_s"] == 120.0


def test_score_mixed_sample_finds_the_attacks(model):
    r = run("score", SAMPLES / "mixed.pcap", "-m", model, "--all", "--format", "csv")
    assert r.exit_code == 1  # anomalies found
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    for col in ("src_ip", "src_port", "dst_ip", "dst_port", "protocol", "first_seen", "last_seen", "packets",
                "bytes", "score", "threshold", "is_anomaly", "source_file"):  # fmt: skip
        assert col in rows[0]
    assert {row["is_anomaly"] for row in rows} == {"true", "false"}


def test_roc_auc_floor_on_labelled_sample(model):
    from netae.workflow import score_captures

    run_ = score_captures([str(SAMPLES / "mixed.pcap")], model_path=model)
    ev = evaluate_scores(
        run_.table.score, match_labels(run_.table, read_labels(SAMPLES / "mixed_labels.csv")),
        threshold=run_.table.threshold,
    )  # fmt: skip
    assert ev.n_unmatched == 0
    assert ev.roc_auc >= 0.9
    for name in ("port_scan", "syn_flood", "slow_drip", "large_upload"):
        assert name in ev.per_attack


def test_evaluate_command_prints_json(model):
    r = run("evaluate", SAMPLES / "mixed.pcap", "-m", model, "--labels", SAMPLES / "mixed_labels.csv",
            "--format", "json")  # fmt: skip
    assert r.exit_code == 0
    doc = json.loads(r.stdout)
    assert 0.9 <= doc["roc_auc"] <= 1.0 and "port_scan" in doc["per_attack"]


def test_jsonl_output_file_is_written_atomically_and_parses(model, tmp_path):
    out = tmp_path / "alerts.jsonl"
    r = run("score", SAMPLES / "mixed.pcap", "-m", model, "--format", "jsonl", "-o", out)
    assert r.exit_code == 1 and r.stdout == ""
    docs = [json.loads(line) for line in out.read_text().splitlines()]
    assert docs and all(d["event"]["kind"] == "alert" for d in docs)
    r = run("score", SAMPLES / "mixed.pcap", "-m", model, "--format", "jsonl", "-o", out, "--append")
    assert len(out.read_text().splitlines()) == 2 * len(docs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alerts.jsonl"]


def test_nothing_anomalous_exits_zero(model):
    r = run("score", SAMPLES / "mixed.pcap", "-m", model, "--threshold", "1e9", "--format", "csv")
    assert r.exit_code == 0
    assert r.stdout.strip().count("\n") == 0  # header only


def test_calibrate_rewrites_threshold(model, tmp_path):
    out = tmp_path / "cal.netae"
    r = run("calibrate", model, SAMPLES / "normal" / "office_b.pcapng", "-o", out, "--quantile", "0.9")
    assert r.exit_code == 0, r.stderr
    meta = json.loads(run("info", out, "--json").stdout)
    assert meta["threshold"]["params"]["quantile"] == 0.9
    assert meta["calibration"]["inputs"] == ["office_b.pcapng"]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.pcap", "no such file"),
        (lambda d: _write(d / "text.pcap", b"hello, this is not a capture\n" * 4), "not"),
        (lambda d: _write(d / "empty.pcap", b""), "empty|no packets|not"),
        (lambda d: _write(d / "header.pcap", pcap_bytes([])), "no packets"),
        (lambda d: _write(d / "arp.pcap", pcap_bytes([ARP] * 3)), "no IP traffic"),
    ],
)
def test_bad_inputs_exit_2_with_one_line(model, tmp_path, make, message):
    import re

    path = make(tmp_path)
    r = run("score", path, "-m", model)
    assert r.exit_code == 2
    assert re.search(message, r.stderr, re.IGNORECASE), r.stderr
    assert r.stderr.strip().count("\n") == 0, r.stderr


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("content", [b"", b"garbage" * 10, b"\x80\x04K\x01."])
def test_corrupt_model_exits_2(tmp_path, content):
    bad = tmp_path / "bad.netae"
    bad.write_bytes(content)
    r = run("score", SAMPLES / "mixed.pcap", "-m", bad)
    assert r.exit_code == 2
    assert "error:" in r.stderr


def test_usage_errors_exit_2():
    assert run("score").exit_code == 2
    assert run("score", "x.pcap", "--format", "xml").exit_code == 2
    assert run("frobnicate").exit_code == 2


def test_partial_inputs_exit_3_and_score_the_rest(model, tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    (d / "good.pcap").write_bytes((SAMPLES / "mixed.pcap").read_bytes())
    (d / "bad.pcap").write_bytes(b"not a capture at all" * 10)
    r = run("score", d, "-m", model, "--format", "csv")
    assert r.exit_code == 3
    assert "bad.pcap" in r.stderr
    assert len(list(csv.DictReader(io.StringIO(r.stdout)))) > 0


def test_help_documents_exit_statuses():
    r = run("--help")
    assert r.exit_code == 0 and "Exit status" in r.stdout
    assert "anomalies found" in run("score", "--help").stdout


def test_piping_into_head_exits_quietly(model):
    cmd = f"{sys.executable} -m netae score {SAMPLES / 'mixed.pcap'} -m {model} --all --format csv | head -n 2"
    p = subprocess.run(["bash", "-c", f"set -o pipefail; {cmd}"], capture_output=True, text=True, cwd=ROOT,
                       env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert len(p.stdout.splitlines()) == 2
    assert "Traceback" not in p.stderr and "Broken pipe" not in p.stderr, p.stderr


def test_score_group_by_host_rolls_flows_up(model):
    r = run("score", SAMPLES / "mixed.pcap", "-m", model, "--group-by", "host", "--format", "jsonl")
    assert r.exit_code == 1, r.stderr
    docs = [json.loads(line) for line in r.stdout.splitlines()]
    assert docs and all(d["event"]["dataset"] == "netae.group" for d in docs)
    assert all(d["netae"]["group"]["anomalous_flows"] >= 1 for d in docs)
    assert all(d["netae"]["explanation"] for d in docs)  # every flagged flow says why
    ips = [d["source"]["ip"] for d in docs]
    assert len(ips) == len(set(ips))
    flows = run("score", SAMPLES / "mixed.pcap", "-m", model, "--format", "csv")
    n_anomalous = len(list(csv.DictReader(io.StringIO(flows.stdout))))
    assert sum(d["netae"]["group"]["anomalous_flows"] for d in docs) == n_anomalous


# --- calibration cannot disarm the model (issue 20) --------------------------------------------------


def test_calibrate_needs_a_new_file_or_in_place(model, tmp_path):
    r = run("calibrate", model, SAMPLES / "normal" / "office_b.pcapng")
    assert r.exit_code == 2
    assert "--in-place" in r.stderr
    r = run("calibrate", model, SAMPLES / "normal" / "office_b.pcapng", "-o", model)
    assert r.exit_code == 2  # -o naming the model itself needs the explicit flag


def test_calibrate_in_place_replaces_the_model_and_keeps_the_old_threshold(model, tmp_path):
    copy = tmp_path / "copy.netae"
    copy.write_bytes(model.read_bytes())
    before = json.loads(run("info", copy, "--json").stdout)["threshold"]
    r = run("calibrate", copy, SAMPLES / "normal" / "office_b.pcapng", "--in-place", "--quantile", "0.99")
    assert r.exit_code == 0, r.stderr
    meta = json.loads(run("info", copy, "--json").stdout)
    assert meta["threshold_history"][-1]["value"] == before["value"]
    assert meta["calibration"]["previous_threshold"] == before["value"]


def test_calibrate_on_attack_traffic_is_refused_unless_forced(model, tmp_path):
    out = tmp_path / "cal.netae"
    r = run("calibrate", model, SAMPLES / "mixed.pcap", "-o", out, "--quantile", "0.99")
    assert r.exit_code == 2
    assert "calibration refused" in r.stderr and "--force" in r.stderr
    assert "flags" in r.stderr  # the old model already flags many of these "benign" flows
    assert not out.exists()
    r = run("calibrate", model, SAMPLES / "mixed.pcap", "-o", out, "--quantile", "0.99", "--force")
    assert r.exit_code == 0, r.stderr
    assert "warning:" in r.stderr
    meta = json.loads(run("info", out, "--json").stdout)
    assert meta["calibration"]["forced"] is True
    old = json.loads(run("info", model, "--json").stdout)["threshold"]["value"]
    assert meta["threshold_history"][-1]["value"] == old
    text = run("info", out).stdout
    assert "calibrated" in text and "mixed.pcap" in text and "forced" in text
    assert re.search(r"earlier\s+threshold", text)


@pytest.mark.parametrize(
    ("old", "new", "flagged", "n_concerns"),
    [(1.0, 1.5, 0.01, 0), (1.0, 11.0, 0.0, 1), (1.0, 0.05, 0.0, 1), (0.74, 37147.0, 0.9, 2), (1.0, 1.0, 0.06, 1)],
)
def test_calibration_guards(old, new, flagged, n_concerns):
    from netae.workflow import calibration_concerns

    assert len(calibration_concerns(old, new, flagged)) == n_concerns
