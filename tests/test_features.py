from __future__ import annotations

import numpy as np
import pytest

from netae.errors import IncompatibleModel
from netae.features import PACKET_FEATURES, compute_features, fit_scaler
from netae.flows import assemble_flows
from netae.tables import Features
from tests.helpers.packets import make_packets, tcp_session
from tests.reference import features as reference


def featurize(rows, context=None):
    p = make_packets(rows)
    f = assemble_flows(p, idle_timeout_s=120, active_timeout_s=1800)
    return p, f, compute_features(p, f, context=context)


def col(x, name):
    return x.values[:, x.names.index(name)]


def test_hand_built_session_features():
    rows = tcp_session(100.0, n_data=1, gap=0.01)
    _, f, x = featurize(rows)
    x.validate()
    assert x.names[: len(PACKET_FEATURES)] == PACKET_FEATURES
    assert x.values.shape == (len(rows), len(x.names)) and x.values.dtype == np.float32
    assert col(x, "is_fwd").tolist() == [1, 0, 1, 1, 0, 1, 0, 1]
    assert col(x, "tcp_syn").tolist() == [1, 1, 0, 0, 0, 0, 0, 0]
    np.testing.assert_allclose(col(x, "log_ip_len_bytes"), np.log1p([r["ip_len"] for r in rows]), rtol=1e-6)
    np.testing.assert_allclose(col(x, "log_payload_bytes")[3], np.log1p(100), rtol=1e-6)
    # 10 ms between packets = 10,000 us; the first packet has no gap.
    np.testing.assert_allclose(col(x, "log_iat_us"), np.log1p([0] + [10_000] * 7), rtol=1e-5)
    # Same-direction gap: packet 2 (fwd) follows packet 0 (fwd) after 20 ms.
    assert col(x, "log_iat_same_dir_us")[2] == pytest.approx(np.log1p(20_000), rel=1e-5)
    assert np.all(col(x, "tcp_handshake_done") == 1)
    assert np.all(col(x, "log_flow_pkts") == pytest.approx(np.log1p(8)))


def test_failed_connection_flags():
    rows = [
        {"ts": 0.0, "flags": 0x02},
        {"ts": 0.001, "src": "10.0.0.2", "dst": "10.0.0.1", "sport": 80, "dport": 40000, "flags": 0x14},
    ]
    _, _, x = featurize(rows)
    assert np.all(col(x, "tcp_reset") == 1) and np.all(col(x, "tcp_handshake_done") == 0)


def test_context_columns_are_broadcast_per_flow():
    rows = tcp_session(0.0) + tcp_session(1.0, sport=40001)
    _, f, x = featurize(rows, context={"ctx_a": np.array([1.0, 2.0], np.float32)})
    a = col(x, "ctx_a")
    assert a[: f.offsets[1]].tolist() == [1.0] * int(f.offsets[1])
    assert set(a[f.offsets[1] :].tolist()) == {2.0}


def test_scaler_fits_on_given_rows_and_refuses_other_features():
    _, _, x = featurize(tcp_session(0.0))
    rows = np.zeros(len(x.values), dtype=bool)
    rows[:4] = True
    s = fit_scaler(x, rows)
    z = s.transform(x).values
    np.testing.assert_allclose(z[:4].mean(axis=0)[s.scale_ != 1], 0, atol=1e-5)
    assert np.all(np.isfinite(z))
    _, _, y = featurize(tcp_session(0.0), context={"ctx_a": np.array([1.0], np.float32)})
    with pytest.raises(IncompatibleModel):
        s.transform(y)


@pytest.mark.parametrize("n_chunks", [1, 2, 7])
def test_scaler_accumulator_matches_fit_scaler(n_chunks):
    from netae.features import ScalerAccumulator

    rng = np.random.default_rng(3)
    values = (rng.normal(size=(500, 4)) * [1.0, 1e3, 1e-9, 5.0] + [0.0, 1e4, 2.0, -3.0]).astype(np.float32)
    offsets = np.arange(0, 501, 5, dtype=np.int64)
    feats = Features(values=values, offsets=offsets, names=("a", "b", "c", "d"))
    rows = rng.random(500) < 0.8
    want = fit_scaler(feats, rows)
    acc = ScalerAccumulator(names=feats.names)
    for part in np.array_split(np.arange(500), n_chunks):
        sub = Features(values=values[part], offsets=np.array([0, len(part)], np.int64), names=feats.names)
        acc.update(sub, rows[part])
    got = acc.finish()
    if n_chunks == 1:
        assert np.array_equal(got.mean_, want.mean_)
        assert np.array_equal(got.scale_, want.scale_)
    np.testing.assert_allclose(got.mean_, want.mean_, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got.scale_, want.scale_, rtol=1e-6)
    assert ScalerAccumulator(names=("a",)).finish().scale_.tolist() == [1.0]


def test_scaler_leaves_binary_columns_unscaled_and_floors_small_scales():
    from netae.features import MIN_SCALE
    from netae.tables import Features

    values = np.zeros((1000, 3), np.float32)
    values[:3, 0] = 1.0  # a rare flag
    values[:, 1] = np.linspace(0, 0.001, 1000)  # a nearly constant measurement
    values[:, 2] = np.arange(1000) % 7
    s = fit_scaler(Features(values=values, offsets=np.array([0, 1000]), names=("flag", "tiny", "wide")))
    assert (s.mean_[0], s.scale_[0]) == (0.0, 1.0)
    assert s.scale_[1] == pytest.approx(MIN_SCALE)
    assert s.scale_[2] == pytest.approx(values[:, 2].std(), rel=1e-5)
    z = s.transform(Features(values=values, offsets=np.array([0, 1000]), names=("flag", "tiny", "wide")))
    assert z.values[:, 0].max() == 1.0


def test_dns_flow_features():
    q = {"ts": 1.0, "proto": 17, "sport": 40000, "dport": 53, "qname": "aaaabbbb.example.com"}
    r = {**q, "ts": 1.001, "src": "10.0.0.2", "dst": "10.0.0.1", "sport": 53, "dport": 40000}
    _, _, x = featurize([q, r] + tcp_session(5.0))
    assert col(x, "dns_qname_chars_log").tolist() == pytest.approx([np.log1p(20)] * 2 + [0.0] * 12)
    assert col(x, "dns_label_chars_log")[0] == pytest.approx(np.log1p(8))
    assert col(x, "dns_label_entropy_bits")[0] == pytest.approx(1.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kernel_fill_equals_the_numpy_reference_column_by_column(seed):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(40):
        rows += tcp_session(float(rng.uniform(0, 500)), sport=30000 + i, n_data=int(rng.integers(0, 5)),
                            gap=float(rng.uniform(1e-4, 3)))  # fmt: skip
    rows += [{"ts": float(t), "proto": 17, "sport": 5353, "dport": 53, "ip_len": 70, "payload": 42} for t in range(5)]
    rows += [{"ts": 9.0, "ip_len": 65535, "payload": 65000, "window": 65535}]  # past the log1p table
    p = make_packets(rows)
    f = assemble_flows(p, idle_timeout_s=120, active_timeout_s=1800)
    ctx = {"ctx_a": rng.random(f.n_flows).astype(np.float32)}
    a = compute_features(p, f, context=ctx)
    b = reference.compute_features(p, f, context=ctx)
    assert a.names == b.names
    for j, name in enumerate(a.names):
        np.testing.assert_allclose(a.values[:, j], b.values[:, j], rtol=1e-6, atol=1e-6, err_msg=name)


def test_kernel_columns_follow_the_registry():
    import netae.features as features_mod

    positions = [getattr(features_mod, c) for c in dir(features_mod) if c.startswith("C_")]
    assert sorted(positions) == list(range(len(features_mod.PACKET_FEATURES)))
