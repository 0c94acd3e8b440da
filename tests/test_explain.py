"""Explanations name the flow's own oddity first, in its own quantities, and nothing training saw."""

from __future__ import annotations

import numpy as np
import pytest

from netae.config import ContextSettings
from netae.context import compute_context
from netae.explain import FeatureRanges, explain_flows, fit_feature_ranges, topic_of
from netae.features import FEATURE_LABELS, compute_features, feature_label
from netae.flows import assemble_flows
from netae.tables import format_ip
from tests.helpers.packets import make_packets, tcp_session
from tests.test_context import dns_lookup

WINDOW_S = 300.0


def _setup(rows):
    p = make_packets(sorted(rows, key=lambda r: r["ts"]))
    f = assemble_flows(p, idle_timeout_s=120, active_timeout_s=1800)
    ctx = compute_context(p, f, settings=ContextSettings(window_s=WINDOW_S))
    feats = compute_features(p, f, context={k: v for k, v in ctx.items() if not k.endswith("_s") or "log" in k})
    return p, f, ctx, feats


def _normal(t0: float = 1000.0) -> list[dict]:
    """Ordinary traffic: a few web sessions per client, short everyday DNS names."""
    rows = []
    for c in range(4):
        client = f"10.77.0.{21 + c}"
        for k in range(3):
            t = t0 + 97.0 * k + 13.0 * c
            rows += tcp_session(t, client=client, server="10.77.0.10", sport=40000 + 10 * c + k, dport=443)
            rows += dns_lookup(t - 0.5, ("www", "mail", "docs")[k] + ".ev.lab", client=client, sport=50000 + 10 * c + k)
    return rows


@pytest.fixture(scope="module")
def ranges() -> FeatureRanges:
    return fit_feature_ranges(_setup(_normal())[3])


def _explain(rows, which_src: str, topic_names: tuple[str, ...], ranges: FeatureRanges, *, proto: int | None = None):
    """Explain the last flow of ``which_src``, with the error on the given features (or topics)."""
    _, f, ctx, feats = _setup(rows)
    src = np.array([format_ip(h, lo) for h, lo in zip(f.src_hi, f.src_lo, strict=True)])
    mine = np.flatnonzero((src == which_src) & ((f.proto == proto) if proto else True))
    last = int(mine[np.argmax(f.first_ns[mine])])
    err = np.full((f.n_flows, len(feats.names)), 0.01, np.float32)
    cols = [j for j, n in enumerate(feats.names) if n in topic_names or topic_of(n) in topic_names]
    err[:, cols] = 1.0
    which = np.zeros(f.n_flows, bool)
    which[last] = True
    first_rows = feats.values[feats.offsets[:-1]]
    text = explain_flows(
        f, err, feats.names, context=ctx, flow_values=first_rows, packet_values=first_rows, ranges=ranges,
        window_s=WINDOW_S, which=which,
    )  # fmt: skip
    assert all(t == "" for i, t in enumerate(text) if i != last)  # only the flows asked for
    return text[last]


def _upload(t0: float, *, client: str, server: str, n: int, size: int, gap: float) -> list[dict]:
    c = {"src": client, "dst": server, "sport": 45555, "dport": 443}
    s = {"src": server, "dst": client, "sport": 443, "dport": 45555}
    rows = [{**c, "flags": 0x02, "ip_len": 60}, {**s, "flags": 0x12, "ip_len": 60}, {**c, "flags": 0x10, "ip_len": 52}]
    rows += [{**c, "flags": 0x18, "ip_len": size, "payload": size - 52} for _ in range(n)]
    rows += [{**s, "flags": 0x11, "ip_len": 52}, {**c, "flags": 0x11, "ip_len": 52}]
    for i, r in enumerate(rows):
        r["ts"] = t0 + i * gap
    return rows


def test_a_large_transfer_is_told_in_bytes_and_against_the_largest_training_flow(ranges):
    rows = _normal() + _upload(1200.0, client="10.77.0.66", server="10.77.0.10", n=2000, size=1500, gap=3.5e-5)
    text = _explain(rows, "10.77.0.66", ("log_flow_bytes", "fwd_byte_share"), ranges)
    assert text.startswith("3.0 MB sent in 70 ms, ")
    largest = float(np.expm1(ranges.max_[ranges.names.index("log_flow_bytes")]))
    assert f"{3_000_000 // largest:.0f}x the largest flow in training" in text.replace(",", "")


def test_a_dns_tunnel_is_told_by_its_new_names_and_their_shape(ranges):
    rows = _normal()
    for i in range(21):  # 21 queries to one domain in 40 s, long random first labels
        label = "".join("abcdefghijklmnopqrstuvwxyz234567"[(7 * i + 13 * j) % 32] for j in range(40))
        rows += dns_lookup(1200.0 + 2.0 * i, f"{label}.t.evx.lab", client="10.77.0.66", sport=41000 + i)
    text = _explain(rows, "10.77.0.66", ("dns",), ranges)
    assert text.startswith("20 new names under one domain in the last 300 s (100 % new), names of 50 characters")
    assert "bits of entropy" in text


def test_a_beacon_series_is_told_by_its_count_and_interval(ranges):
    rows = _normal()
    for i in range(14):  # a beacon every 8 s
        rows += tcp_session(1200.0 + 8.0 * i, client="10.77.0.66", server="10.77.0.10", sport=51000 + i, dport=443)
    text = _explain(rows, "10.77.0.66", ("pair",), ranges)
    assert text == "14th connection from 10.77.0.66 to 10.77.0.10:443 in the last 300 s, at 8.0 ± 0.0 s intervals"


@pytest.mark.parametrize("topic", ["volume", "dns", "tcp", "packet", "timing", "pair", "src", "svc"])
@pytest.mark.parametrize("client", ["10.77.0.21", "10.77.0.24"])
def test_no_explanation_when_the_top_features_are_within_the_training_range(ranges, topic, client):
    rows = _normal()  # every value of these flows was seen in training
    assert _explain(rows, client, (topic,), ranges) == ""
    assert _explain(rows, client, (topic,), ranges, proto=17) == ""  # the everyday docs.ev.lab


def test_the_flows_own_oddity_comes_before_its_hosts_context(ranges):
    rows = _normal()
    for i in range(40):  # the host scans first ...
        rows.append({"ts": 1150.0 + 0.01 * i, "src": "10.77.0.66", "dst": "10.77.0.10", "sport": 60000,
                     "dport": 1000 + i, "flags": 0x02, "ip_len": 44})  # fmt: skip
    rows += _upload(1200.0, client="10.77.0.66", server="10.77.0.10", n=2000, size=1500, gap=3.5e-5)
    text = _explain(rows, "10.77.0.66", ("log_flow_bytes", "src"), ranges)
    own, _, context = text.partition("; ")
    assert own.startswith("3.0 MB sent in 70 ms")
    assert context.startswith("40 new destination ports and 1 new destination from 10.77.0.66 in the last 300 s")


def test_ranges_round_trip_through_the_metadata_and_fall_back_to_the_scaler(ranges):
    meta = {"feature_ranges": ranges.to_dict()}
    zeros = np.zeros(len(ranges.names), np.float32)
    again = FeatureRanges.from_meta(meta, ranges.names, scaler_mean=zeros, scaler_scale=zeros + 1)
    assert np.allclose(again.hi, ranges.hi) and np.allclose(again.max_, ranges.max_)
    mean = np.arange(len(ranges.names), dtype=np.float32)
    old = FeatureRanges.from_meta({}, ranges.names, scaler_mean=mean, scaler_scale=zeros + 0.5)
    assert np.allclose(old.lo, mean - 2.0) and np.allclose(old.hi, mean + 2.0)


def test_packet_columns_range_over_packets_and_flow_columns_over_flows(ranges):
    j = ranges.names.index("log_ip_len_bytes")
    assert ranges.max_[j] == pytest.approx(np.log1p(1054))  # the largest packet of any session
    k = ranges.names.index("log_flow_pkts")
    assert ranges.max_[k] == pytest.approx(np.log1p(12))  # a session's 12 packets, counted once per flow


def test_every_feature_has_one_human_name():
    _, _, _, feats = _setup(_normal())
    assert set(feats.names) == set(FEATURE_LABELS)
    assert feature_label("ctx_src_new_dports_log") == "new destination ports of the source host in the window"
    assert feature_label("not_a_feature") == "not_a_feature"
