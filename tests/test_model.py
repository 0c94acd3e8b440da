from __future__ import annotations

import numpy as np
import pytest
import torch

from netae.config import ModelSettings
from netae.model import (
    build_model,
    gather_batch,
    length_batches,
    make_windows,
    masked_mse,
    model_from_weights,
    scoring_batches,
    step_mask,
    weights_to_numpy,
)


def _model(n_features: int = 3, hidden: int = 8, layers: int = 1, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(n_features, ModelSettings(hidden_size=hidden, num_layers=layers))


def _batch(lengths: list[int], n_features: int = 3, pad_value: float = 0.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    steps = max(lengths)
    x = np.full((len(lengths), steps, n_features), pad_value, np.float32)
    for i, n in enumerate(lengths):
        x[i, :n] = rng.normal(size=(n, n_features))
    lens = torch.tensor(lengths, dtype=torch.int64)
    return torch.from_numpy(x), lens


@pytest.mark.parametrize("layers", [1, 2])
def test_packed_and_padded_agree(layers):
    model = _model(layers=layers)
    x, lens = _batch([5, 1, 3, 5, 2])
    mask = step_mask(lens, x.shape[1])
    packed = model(x, lens, lens, input_path="packed")
    padded = model(x, lens, lens, input_path="padded")
    torch.testing.assert_close(packed[mask], padded[mask], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("input_path", ["packed", "padded"])
def test_padding_never_reaches_loss_or_grad(input_path):
    lengths = [4, 2, 3]
    results = []
    for pad_value in (0.0, 1e6):
        model = _model()
        x, lens = _batch(lengths, pad_value=pad_value)
        loss = masked_mse(x, model(x, lens, lens, input_path=input_path), step_mask(lens, x.shape[1]))
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in model.parameters()]))
    torch.testing.assert_close(results[0][0], results[1][0])
    for g0, g1 in zip(results[0][1], results[1][1], strict=True):
        assert torch.isfinite(g1).all()
        torch.testing.assert_close(g0, g1)


@pytest.mark.parametrize("input_path", ["packed", "padded"])
def test_extra_padding_does_not_change_reconstruction(input_path):
    model = _model()
    x, lens = _batch([3, 2])
    longer = torch.cat([x, torch.full((2, 4, 3), 7.0)], dim=1)
    mask = step_mask(lens, 3)
    a = model(x, lens, lens, input_path=input_path)[mask]
    b = model(longer, lens, lens, input_path=input_path)[:, :3][mask]
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_weights_round_trip():
    model = _model(layers=2)
    weights = weights_to_numpy(model)
    assert all(w.dtype == np.float32 for w in weights.values())
    again = model_from_weights(weights, ModelSettings(hidden_size=8, num_layers=2))
    x, lens = _batch([3, 1])
    torch.testing.assert_close(model(x, lens, lens, input_path="padded"), again(x, lens, lens, input_path="padded"))


@pytest.mark.parametrize(
    ("lengths", "width", "starts", "local", "win_len", "skip", "flow"),
    [
        ([3], 4, [0], [0], [3], [0], [0]),
        ([4], 4, [0], [0], [4], [0], [0]),
        ([10], 4, [0, 4, 6], [0, 4, 6], [4, 4, 4], [0, 0, 2], [0, 0, 0]),
        ([2, 0, 9], 3, [0, 2, 5, 8], [0, 0, 3, 6], [2, 3, 3, 3], [0, 0, 0, 0], [0, 2, 2, 2]),
    ],
)
def test_make_windows(lengths, width, starts, local, win_len, skip, flow):
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    w = make_windows(offsets, width)
    assert w.start.tolist() == starts
    assert w.local_start.tolist() == local
    assert w.length.tolist() == win_len
    assert w.skip.tolist() == skip
    assert w.flow.tolist() == flow


def test_length_batches_cover_everything_once_and_are_bucketed():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 50, 1000).astype(np.int64)
    order, bounds = length_batches(lengths, batch_size=64, rng=np.random.default_rng(1))
    assert sorted(order.tolist()) == list(range(1000))
    batches = [lengths[order[a:b]] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    # About n / batch_size batches of about equal packet counts (NOTE [batches]) ...
    assert abs(len(batches) - 1000 / 64) <= 1
    budget = lengths.sum() / round(1000 / 64)
    assert all(b.sum() <= budget + 49 for b in batches)
    # ... with little padding.
    padded = sum(len(b) * b.max() for b in batches)
    assert padded <= 1.25 * lengths.sum()
    again, _ = length_batches(lengths, batch_size=64, rng=np.random.default_rng(1))
    assert np.array_equal(order, again)
    other, _ = length_batches(lengths, batch_size=64, rng=np.random.default_rng(2))
    assert not np.array_equal(order, other)


def test_scoring_batches_have_one_length_and_respect_caps():
    lengths = np.array([1, 5, 5, 5, 2, 1, 5], np.int64)
    order, bounds = scoring_batches(lengths, max_sequences=10, max_packets=10)
    assert sorted(order.tolist()) == list(range(7))
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        sel = lengths[order[a:b]]
        assert len(set(sel.tolist())) == 1
        assert len(sel) * sel[0] <= 10


def test_gather_batch_pads_with_zeros():
    values = np.arange(12, dtype=np.float32).reshape(6, 2)
    values_z = np.vstack([values, np.zeros((1, 2), np.float32)])
    batch = gather_batch(values_z, np.array([4, 0], np.int64), np.array([2, 3], np.int64))
    assert batch.shape == (2, 3, 2)
    assert np.array_equal(batch[0], [[8, 9], [10, 11], [0, 0]])
    assert np.array_equal(batch[1], values[:3])
