"""The LSTM autoencoder, and the windows and batches it is fed from the ragged feature layout.

NOTE [windows]
A flow longer than ``max_packets`` (W) is cut into consecutive windows of W packets. The last
window is shifted back so that it is full (it starts at ``length - W`` and overlaps the one
before it): every window of a long flow then has the full context of W packets. Each packet's
error is taken from exactly one window, the first that covers it: ``skip`` counts the leading
steps of a window whose packets belong to the window before it. A flow of at most W packets is
one window. Windows are listed in flow order, so the windows of a flow are contiguous.

NOTE [input paths]
``packed`` runs both LSTMs on ``pack_padded_sequence(..., enforce_sorted=False)`` with lengths
on the CPU; the latent is the top layer's final hidden state. ``padded`` runs them on the padded
batch: the LSTMs are unidirectional, so outputs at real steps never depend on the padding after
them, the latent is the top layer's output gathered at ``length - 1``, and the loss masks padded
steps out with ``torch.where`` (never a multiplication, which would turn a non-finite padded value
into NaN). Both compute the same reconstructions at real steps (tested). On the CPU ``padded``
runs the fused oneDNN LSTM, which packed sequences cannot use; it is the ``auto`` choice there:
on train_benign.pcap with bucketed batches, one thread, it fits 64-97k pkt/s against 30-33k for
``packed``, at the same validation loss. On CUDA ``auto`` also picks ``padded`` (not measured
yet: bucketing leaves little padding, and cuDNN then runs one kernel per layer without the
sort and scatter that packing adds).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from netae.config import ModelSettings

__all__ = [
    "FlowAutoencoder",
    "Windows",
    "build_model",
    "gather_batch",
    "length_batches",
    "make_windows",
    "model_from_weights",
    "resolve_input_path",
    "scoring_batches",
    "weights_to_numpy",
]

log = logging.getLogger(__name__)


class FlowAutoencoder(nn.Module):
    """Encoder LSTM -> latent (last real step) repeated over the length -> decoder LSTM -> linear."""

    def __init__(self, n_features: int, *, hidden_size: int, num_layers: int) -> None:
        super().__init__()
        self.n_features = n_features
        self.hidden_size = hidden_size
        self.encoder = nn.LSTM(n_features, hidden_size, num_layers, batch_first=True)
        self.decoder = nn.LSTM(hidden_size, hidden_size, num_layers, batch_first=True)
        self.output = nn.Linear(hidden_size, n_features)

    def forward(
        self,
        x: torch.Tensor,
        lengths_cpu: torch.Tensor,
        lengths: torch.Tensor,
        *,
        input_path: str,
    ) -> torch.Tensor:
        """Reconstruct ``x`` (B, T, n_features); values at padded steps are meaningless.

        ``lengths_cpu`` (int64, CPU) feeds packing; ``lengths`` is the same on ``x``'s device.
        """
        batch, steps, _ = x.shape
        if input_path == "packed":
            packed = pack_padded_sequence(x, lengths_cpu, batch_first=True, enforce_sorted=False)
            _, (h_n, _) = self.encoder(packed)
            latent = h_n[-1]
            repeated = latent.unsqueeze(1).expand(batch, steps, self.hidden_size)
            packed_dec = pack_padded_sequence(repeated, lengths_cpu, batch_first=True, enforce_sorted=False)
            out_packed, _ = self.decoder(packed_dec)
            out, _ = pad_packed_sequence(out_packed, batch_first=True, total_length=steps)
        elif input_path == "padded":
            enc, _ = self.encoder(x)
            latent = enc[torch.arange(batch, device=x.device), lengths - 1]
            repeated = latent.unsqueeze(1).expand(batch, steps, self.hidden_size).contiguous()
            out, _ = self.decoder(repeated)
        else:
            raise ValueError(f"unknown input path {input_path!r}")
        recon: torch.Tensor = self.output(out)
        return recon


def step_mask(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """(B, T) bool: true at real steps."""
    return torch.arange(steps, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)


def squared_error(x: torch.Tensor, recon: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T, F) float32 squared error, exactly 0 at padded steps whatever the padding holds."""
    diff = recon.float() - x.float()
    return torch.where(mask.unsqueeze(2), diff * diff, torch.zeros((), device=x.device))


def masked_mse(x: torch.Tensor, recon: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over real steps and all features (NOTE [input paths])."""
    n_real = mask.sum() * x.shape[2]
    return squared_error(x, recon, mask).sum() / n_real


def build_model(n_features: int, settings: ModelSettings) -> FlowAutoencoder:
    return FlowAutoencoder(n_features, hidden_size=settings.hidden_size, num_layers=settings.num_layers)


def model_from_weights(weights: dict[str, np.ndarray], settings: ModelSettings) -> FlowAutoencoder:
    """A model with ``weights`` loaded; n_features comes from the encoder's input weights."""
    n_features = int(weights["encoder.weight_ih_l0"].shape[1])
    hidden_size = int(weights["encoder.weight_hh_l0"].shape[1])
    num_layers = sum(1 for name in weights if name.startswith("encoder.weight_ih_l"))
    model = FlowAutoencoder(n_features, hidden_size=hidden_size, num_layers=num_layers)
    if (hidden_size, num_layers) != (settings.hidden_size, settings.num_layers):
        log.warning(
            "weights have hidden_size=%d num_layers=%d; settings say %d/%d; using the weights'",
            hidden_size,
            num_layers,
            settings.hidden_size,
            settings.num_layers,
        )
    model.load_state_dict({name: torch.from_numpy(np.asarray(w, dtype=np.float32)) for name, w in weights.items()})
    return model


def weights_to_numpy(model: nn.Module) -> dict[str, np.ndarray]:
    """float32 numpy copies of the state dict, under its own names (what the model file saves)."""
    return {name: t.detach().to("cpu", torch.float32).numpy().copy() for name, t in model.state_dict().items()}


def resolve_input_path(input_path: str, device: str) -> str:
    """``auto`` -> ``padded`` on every device (see NOTE [input paths] for the measurements)."""
    if input_path == "auto":
        return "padded"
    return input_path


@dataclass(frozen=True, slots=True)
class Windows:
    """The model's sequences: windows of at most ``max_packets`` over each flow (NOTE [windows]).

    ``start`` is the absolute row of the window's first packet in ``Features.values``,
    ``local_start`` the same within its flow, ``skip`` the leading steps whose packet errors
    belong to the previous window, ``flow`` the flow each window belongs to.
    """

    start: npt.NDArray[np.int64]
    local_start: npt.NDArray[np.int64]
    length: npt.NDArray[np.int64]
    skip: npt.NDArray[np.int64]
    flow: npt.NDArray[np.int64]

    @property
    def n_windows(self) -> int:
        return len(self.start)

    def take(self, idx: npt.NDArray[np.int64]) -> Windows:
        return Windows(
            start=self.start[idx],
            local_start=self.local_start[idx],
            length=self.length[idx],
            skip=self.skip[idx],
            flow=self.flow[idx],
        )


def make_windows(offsets: npt.NDArray[np.int64], max_packets: int) -> Windows:
    """Windows of every flow, vectorised over the offsets (NOTE [windows]); empty flows have none."""
    width = int(max_packets)
    lengths = np.diff(offsets).astype(np.int64)
    n_win = (lengths + width - 1) // width
    flow = np.repeat(np.arange(len(lengths), dtype=np.int64), n_win)
    first = np.cumsum(n_win) - n_win
    k = np.arange(len(flow), dtype=np.int64) - first[flow]
    flow_len = lengths[flow]
    own_start = k * width
    is_shifted = (k == n_win[flow] - 1) & (flow_len > width)
    local_start = np.where(is_shifted, flow_len - width, own_start)
    return Windows(
        start=offsets[flow].astype(np.int64) + local_start,
        local_start=local_start,
        length=np.minimum(width, flow_len - local_start),
        skip=own_start - local_start,
        flow=flow,
    )


def length_batches(
    lengths: npt.NDArray[np.int64],
    *,
    batch_size: int,
    rng: np.random.Generator,
    by: str = "packets",
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Training batches bucketed by length: (order, batch_offsets); batch b is ``order[bo[b]:bo[b+1]]``.

    NOTE [batches]: sequences are sorted by length with ties broken at random (so batches
    differ between epochs) and cut into batches of about ``batch_size * mean length`` packets,
    not of ``batch_size`` sequences: a batch of short windows then holds many of them and every
    batch carries about the same number of packets. The loss is a per-packet mean, so each packet
    weighs the same in the gradient as with random batches, and an epoch takes about
    ``n / batch_size`` steps, as random batches of ``batch_size`` do. The batches are then
    shuffled across lengths. Padding is only the length spread inside a batch.

    With ``by="windows"`` every batch holds ``batch_size`` sequences instead: a batch of short
    windows then weighs as much in the gradient as a batch of long ones, so short flows (most
    flows, and most attacks) count more per packet (NOTE [batching] in train.py).
    """
    n = len(lengths)
    if n == 0:
        return np.empty(0, np.int64), np.zeros(1, np.int64)
    order = np.lexsort((rng.random(n), lengths)).astype(np.int64)
    if by == "windows":
        n_b = (n + batch_size - 1) // batch_size
        perm_w = rng.permutation(n_b)
        sizes_w = np.full(n_b, batch_size, np.int64)
        sizes_w[-1] = n - batch_size * (n_b - 1)
        offsets_w = np.zeros(n_b + 1, np.int64)
        np.cumsum(sizes_w[perm_w], out=offsets_w[1:])
        within_w = np.arange(n, dtype=np.int64) - np.repeat(offsets_w[:-1], sizes_w[perm_w])
        return order[np.repeat(perm_w * batch_size, sizes_w[perm_w]) + within_w], offsets_w
    ends = np.cumsum(lengths[order])
    n_batches = max(1, round(n / batch_size))
    budget = ends[-1] / n_batches
    # Cut before the first sequence that would pass the next multiple of the budget.
    cuts = np.searchsorted(ends, budget * np.arange(1, n_batches), side="right")
    bounds = np.unique(np.concatenate([[0], cuts[(cuts > 0) & (cuts < n)]])).astype(np.int64)
    sizes = np.diff(np.append(bounds, n))
    perm = rng.permutation(len(bounds))
    batch_offsets = np.zeros(len(bounds) + 1, np.int64)
    np.cumsum(sizes[perm], out=batch_offsets[1:])
    within = np.arange(n, dtype=np.int64) - np.repeat(batch_offsets[:-1], sizes[perm])
    return order[np.repeat(bounds[perm], sizes[perm]) + within], batch_offsets


def scoring_batches(
    lengths: npt.NDArray[np.int64], *, max_sequences: int, max_packets: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Inference batches of equal-length sequences (no padding at all): (order, batch_offsets).

    A batch holds at most ``max_sequences`` sequences and ``max_packets`` packets (at least one
    sequence). One loop step per distinct length, never per sequence.
    """
    n = len(lengths)
    if n == 0:
        return np.empty(0, np.int64), np.zeros(1, np.int64)
    order = np.argsort(lengths, kind="stable").astype(np.int64)
    sorted_len = lengths[order]
    group_start = np.flatnonzero(np.r_[True, sorted_len[1:] != sorted_len[:-1]])
    group_end = np.r_[group_start[1:], n]
    bounds = [
        np.arange(s, e, max(1, min(max_sequences, max_packets // max(1, int(sorted_len[s])))), dtype=np.int64)
        for s, e in zip(group_start.tolist(), group_end.tolist(), strict=True)
    ]
    return order, np.append(np.concatenate(bounds), n).astype(np.int64)


def gather_batch(
    values_z: npt.NDArray[np.float32],
    starts: npt.NDArray[np.int64],
    lengths: npt.NDArray[np.int64],
    *,
    out: npt.NDArray[np.float32] | None = None,
) -> npt.NDArray[np.float32]:
    """Padded batch (B, T_max, F) from the ragged rows with one gather.

    ``values_z`` is ``Features.values`` with one extra row of zeros at the end: padded steps index
    that row, so the padding is zeros without a second pass. ``out`` (e.g. a pinned buffer's numpy
    view of the right shape) receives the result.
    """
    steps = int(lengths.max())
    pad_row = len(values_z) - 1
    local = np.arange(steps, dtype=np.int64)
    idx = starts[:, None] + local[None, :]
    idx = np.where(local[None, :] < lengths[:, None], idx, pad_row)
    if out is None:
        gathered: npt.NDArray[np.float32] = values_z[idx]
        return gathered
    np.take(values_z, idx, axis=0, out=out)
    return out
