"""The model's sequences, numpy only: windows over the ragged flows, and their batches.

NOTE [windows]
A flow longer than ``max_packets`` (W) is cut into consecutive windows of W packets. The last
window is shifted back so that it is full (it starts at ``length - W`` and overlaps the one
before it): every window of a long flow then has the full context of W packets. Each packet's
error is taken from exactly one window, the first that covers it: ``skip`` counts the leading
steps of a window whose packets belong to the window before it. A flow of at most W packets is
one window. Windows are listed in flow order, so the windows of a flow are contiguous.

Nothing here imports torch: scoring on the CPU (``infer.py``) needs the windows without it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["Windows", "gather_batch", "length_batches", "make_windows", "scoring_batches"]


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
