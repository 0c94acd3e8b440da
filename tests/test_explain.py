"""Explanations name the context that made a flow anomalous, in plain words."""

from __future__ import annotations

import numpy as np

from netae.config import ContextSettings
from netae.context import compute_context
from netae.explain import explain_flows, topic_of
from netae.features import compute_features
from netae.flows import assemble_flows
from netae.tables import format_ip
from tests.helpers.packets import make_packets, tcp_session
from tests.test_context import dns_lookup, syn_probe


def _setup(rows):
    p = make_packets(sorted(rows, key=lambda r: r["ts"]))
    f = assemble_flows(p, idle_timeout_s=120, active_timeout_s=1800)
    ctx = compute_context(p, f, settings=ContextSettings(window_s=300.0))
    feats = compute_features(p, f, context={k: v for k, v in ctx.items() if not k.endswith("_s") or "log" in k})
    return p, f, ctx, feats


def _error_on(names: tuple[str, ...], n_flows: int, topic: str) -> np.ndarray:
    err = np.full((n_flows, len(names)), 0.01, np.float32)
    err[:, [j for j, name in enumerate(names) if topic_of(name) == topic]] = 1.0
    return err


def test_explanation_names_the_beacon_in_a_periodic_pattern():
    rows = []
    for i in range(14):  # a beacon every 8 s
        rows += tcp_session(1000.0 + 8.0 * i, client="10.77.0.66", server="10.77.0.10", sport=51000 + i, dport=443)
    rows += tcp_session(1003.0, client="10.77.0.21", server="10.77.0.10", sport=40000, dport=80)
    _, f, ctx, feats = _setup(rows)
    err = _error_on(feats.names, f.n_flows, "pair")
    src = np.array([format_ip(h, lo) for h, lo in zip(f.src_hi, f.src_lo, strict=True)])
    beacon = np.flatnonzero(src == "10.77.0.66")
    last = beacon[np.argmax(f.first_ns[beacon])]
    which = np.zeros(f.n_flows, bool)
    which[last] = True
    text = explain_flows(f, err, feats.names, context=ctx, window_s=300.0, which=which)
    assert text[last] == (
        "14th connection from 10.77.0.66 to 10.77.0.10:443 in the last 300 s, at 8.0 ± 0.0 s intervals"
    )
    assert all(t == "" for i, t in enumerate(text) if i != last)  # only the flows asked for


def test_scan_and_tunnel_explanations_quote_counts():
    rows = []
    for i in range(31):
        rows += syn_probe(100.0 + 0.5 * i, 1000 + i, src="10.66.0.66")
    for i in range(5):
        rows += dns_lookup(100.0 + i, f"mfrggzdfmztwq2lk{i:02d}.t.example.com", client="10.66.0.67", sport=41000 + i)
    _, f, ctx, feats = _setup(rows)
    first_rows = feats.values[feats.offsets[:-1]]
    order = np.argsort(f.first_ns)
    scan_last = [i for i in order if f.proto[i] == 6][-1]
    dns_last = [i for i in order if f.proto[i] == 17][-1]
    err = _error_on(feats.names, f.n_flows, "src")
    text = explain_flows(f, err, feats.names, context=ctx, window_s=60.0)
    assert text[scan_last].startswith("30 new destination ports and 1 new destination from 10.66.0.66 in the last 60 s")
    assert "100 % of its TCP connections failed" in text[scan_last]
    err = _error_on(feats.names, f.n_flows, "dns")
    text = explain_flows(f, err, feats.names, context=ctx, flow_values=first_rows, window_s=60.0)
    assert "DNS name of 32 characters (first label 18" in text[dns_last]
    assert "4 new names under its parent domain" in text[dns_last]


def test_nothing_notable_gives_empty_strings():
    rows = tcp_session(10.0)
    _, f, ctx, feats = _setup(rows)
    err = np.zeros((f.n_flows, len(feats.names)), np.float32)
    assert explain_flows(f, err, feats.names, context=ctx, window_s=300.0) == ("",)
    err[:, feats.names.index("log_ip_len_bytes")] = 1.0
    assert explain_flows(f, err, feats.names, context=ctx, window_s=300.0) == ("unusual packet sizes",)
