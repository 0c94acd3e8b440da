"""What a security-operations pipeline relies on: ECS alerts, model info, documented exit statuses."""

from __future__ import annotations

import csv
import io
import ipaddress
import json
import os
import re
import stat
import struct
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from netae import errors
from netae.cli import app
from netae.output import community_id
from tests.helpers.captures import pcap_prefix, record_ends

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_pcaps"
runner = CliRunner()

# The ECS fields netae writes (ECS 8.11 field reference); anything else must live under netae.*.
ECS_FIELDS = {
    "@timestamp", "ecs.version",
    "event.kind", "event.category", "event.type", "event.module", "event.dataset", "event.start", "event.end",
    "event.duration", "event.risk_score", "event.risk_score_norm",
    "source.ip", "source.port", "source.packets", "source.bytes",
    "destination.ip", "destination.port", "destination.packets", "destination.bytes",
    "network.transport", "network.type", "network.iana_number", "network.community_id", "network.packets",
    "network.bytes",
}  # fmt: skip
# What issue 6 asks every alert to carry.
REQUIRED = {
    "@timestamp", "event.kind", "event.category", "event.start", "event.end", "event.duration", "event.risk_score",
    "source.ip", "source.packets", "source.bytes", "destination.ip", "destination.packets", "destination.bytes",
    "network.transport", "network.type", "network.iana_number", "network.community_id",
    "netae.score", "netae.threshold", "netae.model_id", "netae.worst_packets",
}  # fmt: skip
ECS_ALLOWED = {
    "event.kind": {"alert", "enrichment", "event", "metric", "state", "pipeline_error", "signal"},
    "event.category": {"network", "intrusion_detection", "threat"},
    "event.type": {"connection", "info", "denied", "allowed", "start", "end", "protocol", "indicator"},
    "network.type": {"ipv4", "ipv6", "ipsec"},
}
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def flatten(doc: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in doc.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict) and not name.startswith("netae."):
            out.update(flatten(v, f"{name}."))
        else:
            out[name] = v
    return out


@pytest.fixture(scope="module")
def alerts(small_model, tmp_path_factory) -> list[dict]:
    path = tmp_path_factory.mktemp("ecs") / "part.pcap"
    path.write_bytes(pcap_prefix((SAMPLES / "mixed.pcap").read_bytes(), 3000))
    r = runner.invoke(app, ["score", str(path), "-m", str(small_model), "-f", "jsonl", "-q"])
    assert r.exit_code == 1, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


def test_alerts_use_only_ecs_field_names_and_values(alerts):
    assert alerts
    for doc in alerts:
        flat = flatten(doc)
        unknown = {k for k in flat if k not in ECS_FIELDS and not k.startswith("netae.")}
        assert not unknown, unknown
        assert flat.keys() | {f"netae.{k}" for k in doc["netae"]} >= REQUIRED, REQUIRED - flat.keys()
        assert flat["event.kind"] == "alert"
        for name, allowed in ECS_ALLOWED.items():
            values = flat[name] if isinstance(flat[name], list) else [flat[name]]
            assert set(values) <= allowed, (name, values)
        for name in ("@timestamp", "event.start", "event.end"):
            assert ISO.match(flat[name]), flat[name]
        start = datetime.fromisoformat(flat["event.start"])
        end = datetime.fromisoformat(flat["event.end"])
        assert abs((end - start).total_seconds() * 1e9 - flat["event.duration"]) < 1000  # ns
        assert isinstance(flat["event.duration"], int)
        for side in ("source", "destination"):
            ipaddress.ip_address(flat[f"{side}.ip"])
            assert isinstance(flat[f"{side}.packets"], int)
            assert isinstance(flat[f"{side}.bytes"], int)
        assert flat["network.iana_number"].isdigit()
        assert flat["network.packets"] == flat["source.packets"] + flat["destination.packets"]
        assert doc["netae"]["is_anomaly"] is True
        assert doc["netae"]["score"] > doc["netae"]["threshold"]


def test_alert_community_id_is_that_of_its_endpoints(alerts):
    transports = {"tcp": 6, "udp": 17}
    checked = 0
    for doc in alerts:
        proto = transports.get(doc["network"]["transport"])
        if proto is None:
            continue
        src = ipaddress.ip_address(doc["source"]["ip"]).packed
        dst = ipaddress.ip_address(doc["destination"]["ip"]).packed
        # Spec vectors are in tests/test_output.py; here the alert's own endpoints give its id.
        expected = community_id(src, dst, proto, doc["source"]["port"], doc["destination"]["port"])
        assert doc["network"]["community_id"] == expected
        reverse = community_id(dst, src, proto, doc["destination"]["port"], doc["source"]["port"])
        assert reverse == expected
        checked += 1
    assert checked


def test_info_says_what_when_settings_and_threshold(small_model):
    r = runner.invoke(app, ["info", str(small_model)])
    assert r.exit_code == 0, r.stderr
    text = r.stdout
    meta = json.loads(runner.invoke(app, ["info", str(small_model), "--json"]).stdout)
    assert "office_a.pcap" in text
    assert "office_b.pcapng" in text
    assert meta["created"] in text  # when
    assert re.search(r"threshold\s+\S+ \((quantile|meanstd|spot)", text)  # threshold and its strategy
    assert f"{meta['threshold']['value']:.6g}" in text
    assert "idle 120.0 s" in text
    assert "hidden 16" in text
    assert f"{meta['training']['flows']} flows" in text
    assert f"(id {meta['digest'][:12]})" in text


def test_exit_statuses_agree_in_errors_help_and_readme():
    readme = (ROOT / "README.md").read_text()
    help_text = runner.invoke(app, ["score", "--help"]).stdout
    statuses = {
        errors.EXIT_OK: "nothing anomalous",
        errors.EXIT_ANOMALIES: "anomalies found",
        errors.EXIT_USAGE: "usage",
        errors.EXIT_PARTIAL: "some inputs",
        errors.EXIT_INTERNAL: "internal error",
    }
    for code, words in statuses.items():
        assert re.search(rf"\| {code} \| [^\n]*{words}", readme, re.IGNORECASE), (code, words)
        assert re.search(rf"{code} [^·]*{words}", " ".join(help_text.split()), re.IGNORECASE), (code, words)


def test_quiet_success_prints_nothing(small_model, tmp_path):
    path = tmp_path / "part.pcap"
    path.write_bytes(pcap_prefix((SAMPLES / "mixed.pcap").read_bytes(), 500))
    r = runner.invoke(app, ["score", str(path), "-m", str(small_model), "-o", str(tmp_path / "a.csv"), "-f", "csv",
                            "--quiet"])  # fmt: skip
    assert r.exit_code in (0, 1)
    assert r.stdout == ""
    assert r.stderr == ""


# --- issue 20: outputs that behave under cron, run as real processes --------------------------------

NETAE = [sys.executable, "-m", "netae"]


def netae_proc(*args: object, **kw) -> subprocess.Popen:
    return subprocess.Popen([*NETAE, *(str(a) for a in args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def strict_lines(path: Path) -> list[dict]:
    """Every line of a JSON-lines file, parsed strictly (NaN/Infinity refused)."""
    data = path.read_bytes()
    assert not data or data.endswith(b"\n")
    return [json.loads(line, parse_constant=_refuse) for line in data.decode().splitlines()]


def _refuse(name: str) -> None:
    raise ValueError(f"non-standard JSON constant {name}")


def shifted_records(data: bytes, seconds: int) -> bytes:
    """The records of a little-endian µs pcap (no file header), ``seconds`` later."""
    out = bytearray(data[24 : record_ends(data)[-1]])
    pos = 0
    while pos < len(out):
        ts, _, caplen = struct.unpack_from("<III", out, pos)
        struct.pack_into("<I", out, pos, ts + seconds)
        pos += 16 + caplen
    return bytes(out)


def test_two_concurrent_appenders_leave_only_whole_lines(small_model, tmp_path):
    out = tmp_path / "alerts.jsonl"
    out.write_text('{"first":true}\n')
    inode = out.stat().st_ino
    args = ("score", SAMPLES / "mixed.pcap", "-m", small_model, "-f", "jsonl", "--all", "--append", "-o", out, "-q")
    procs = [netae_proc(*args), netae_proc(*args, "--stream")]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode in (0, 1), err.decode()
    docs = strict_lines(out)
    assert docs[0] == {"first": True}
    assert out.stat().st_ino == inode
    seen = Counter((d["network"]["community_id"], d["@timestamp"]) for d in docs[1:])
    assert len(docs) > 2000
    assert set(seen.values()) == {2}  # every flow exactly once from each run, no line lost or torn


def test_kill_9_in_the_middle_of_an_append_loses_no_whole_line(small_model, tmp_path):
    out = tmp_path / "alerts.jsonl"
    args = ("score", "-", "-m", small_model, "-f", "jsonl", "--all", "--append", "-o", out, "-q")
    proc = netae_proc(*args, stdin=subprocess.PIPE)
    data = (SAMPLES / "mixed.pcap").read_bytes()
    # The capture, then its records an hour later: the first hour's flows expire and are appended.
    proc.stdin.write(data + shifted_records(data, 3600))
    # stdin stays open, a live capture trickling in, until a batch has been appended
    trickle = shifted_records(data, 7200)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (out.exists() and out.stat().st_size):
        proc.stdin.write(trickle[:4096])
        proc.stdin.flush()
        trickle = trickle[4096:]
        time.sleep(0.2)
    proc.kill()
    proc.communicate(timeout=30)
    written = out.read_bytes()
    assert b"\n" in written, "no batch was appended before the kill"
    whole = written[: written.rfind(b"\n") + 1]  # a kill mid-write may tear the line being written
    kept = [json.loads(line, parse_constant=_refuse) for line in whole.decode().splitlines()]
    inode = out.stat().st_ino
    if written == whole:  # not torn this time: tear it, as a write cut short by a kill leaves it
        with open(out, "ab") as fh:
            fh.write(b'{"@timestamp":"2025-')
    again = subprocess.run([*NETAE, *(str(a) for a in args[:1]), str(SAMPLES / "mixed.pcap"),
                            *(str(a) for a in args[2:])], capture_output=True, timeout=300)  # fmt: skip
    assert again.returncode in (0, 1), again.stderr.decode()
    docs = strict_lines(out)
    assert docs[: len(kept)] == kept
    assert len(docs) > len(kept)
    assert out.stat().st_ino == inode


def test_fifo_output_from_the_command_line_reaches_its_reader(small_model, tmp_path):
    fifo, sink = tmp_path / "alerts.fifo", tmp_path / "got.jsonl"
    os.mkfifo(fifo)
    code = "import sys, shutil; shutil.copyfileobj(open(sys.argv[1], 'rb'), open(sys.argv[2], 'wb'))"
    reader = subprocess.Popen([sys.executable, "-c", code, str(fifo), str(sink)])
    r = subprocess.run([*NETAE, "score", str(SAMPLES / "mixed.pcap"), "-m", str(small_model), "-f", "jsonl",
                        "--append", "-o", str(fifo), "-q"], capture_output=True, timeout=300)  # fmt: skip
    assert r.returncode in (0, 1), r.stderr.decode()
    assert reader.wait(timeout=60) == 0
    assert strict_lines(sink)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_dash_output_is_standard_output(small_model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["score", str(SAMPLES / "mixed.pcap"), "-m", str(small_model), "-f", "csv", "-o", "-"])
    assert r.exit_code in (0, 1), r.stderr
    assert r.stdout.startswith("src_ip,")
    assert list(tmp_path.iterdir()) == []


def test_import_error_at_start_up_exits_70_with_one_line(tmp_path):
    (tmp_path / "typer.py").write_text("raise ImportError('simulated broken install')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    commands = [NETAE]
    script = Path(sys.executable).with_name("netae")
    if script.exists():
        commands.append([str(script)])
    for cmd in commands:
        r = subprocess.run([*cmd, "info", "x.netae"], capture_output=True, env=env, timeout=120)
        assert r.returncode == 70, (cmd, r.stderr)
        lines = r.stderr.decode().strip().splitlines()
        assert len(lines) == 1 and "internal error" in lines[0] and "simulated broken install" in lines[0]


@pytest.mark.parametrize("command", ["score", "report", "evaluate"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-1"])
def test_a_threshold_that_is_not_a_finite_number_is_a_usage_error(small_model, tmp_path, command, value):
    extra = ["-l", str(SAMPLES / "mixed_labels.csv")] if command == "evaluate" else []
    extra += ["-o", str(tmp_path / "r.html")] if command == "report" else []
    r = runner.invoke(app, [command, str(SAMPLES / "mixed.pcap"), "-m", str(small_model), "--threshold", value,
                            *extra])  # fmt: skip
    assert r.exit_code == 2
    assert "finite" in r.stderr
    assert not (tmp_path / "r.html").exists()


def test_report_exits_0_when_it_wrote_the_page(small_model, tmp_path):
    page = tmp_path / "r.html"
    r = runner.invoke(app, ["report", str(SAMPLES / "mixed.pcap"), "-m", str(small_model), "-o", str(page), "-q"])
    assert r.exit_code == 0, r.stderr
    assert page.read_text().startswith("<!DOCTYPE html>") or "<html" in page.read_text()[:500]
    scored = runner.invoke(app, ["score", str(SAMPLES / "mixed.pcap"), "-m", str(small_model), "-q"])
    assert scored.exit_code == 1  # there were anomalies: score says so, report does not


def test_two_concurrent_csv_appenders_to_a_new_file_write_one_header(small_model, tmp_path):
    out = tmp_path / "alerts.csv"
    args = ("score", SAMPLES / "mixed.pcap", "-m", small_model, "-f", "csv", "--all", "--append", "-o", out, "-q")
    procs = [netae_proc(*args), netae_proc(*args, "--stream")]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode in (0, 1), err.decode()
    text = out.read_text()
    assert text.count("src_ip,src_port") == 1 and text.startswith("src_ip,")
    rows = list(csv.reader(io.StringIO(text)))
    assert len(rows) > 2000 and {len(r) for r in rows} == {len(rows[0])}


def test_append_to_standard_output(small_model):
    r = runner.invoke(app, ["score", str(SAMPLES / "mixed.pcap"), "-m", str(small_model), "-f", "jsonl", "--append",
                            "-o", "-", "-q"])  # fmt: skip
    assert r.exit_code in (0, 1), r.stderr
    assert r.stdout and all(json.loads(line) for line in r.stdout.splitlines())
