"""What a security-operations pipeline relies on: ECS alerts, model info, documented exit statuses."""

from __future__ import annotations

import ipaddress
import json
import re
from datetime import datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from netae import errors
from netae.cli import app
from netae.output import community_id
from tests.helpers.captures import pcap_prefix

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
