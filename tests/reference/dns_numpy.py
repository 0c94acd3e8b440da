"""Reference oracle: the vectorised numpy DNS question parser netae used beside its kernel.

Same rules as ``netae.capture.dns.dns_questions`` (255-byte names whatever the label count,
unreadable names as ``UNREADABLE``); tests compare the two on random and real buffers.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from netae.capture.dns import (
    _POWERS,
    DNS_HEADER_BYTES,
    MAX_NAME_BYTES,
    UNREADABLE,
    UNREADABLE_HASH,
    DnsQuestions,
    empty_questions,
)

_I64 = npt.NDArray[np.int64]


def _entropy(chars: npt.NDArray[np.uint8], valid: npt.NDArray[np.bool_]) -> npt.NDArray[np.float32]:
    """Shannon entropy in bits of each row's valid characters (0 for an empty row)."""
    n, width = chars.shape
    counts = np.zeros((n, 256), np.float64)
    rows = np.broadcast_to(np.arange(n)[:, None], (n, width))
    np.add.at(counts, (rows[valid], chars[valid]), 1.0)
    total = counts.sum(axis=1, keepdims=True)
    p = counts / np.maximum(total, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = np.abs(np.where(p > 0, p * np.log2(p), 0.0).sum(axis=1))
    out: npt.NDArray[np.float32] = h.astype(np.float32)
    return out


def dns_questions_numpy(buf: npt.NDArray[np.uint8], start: _I64, end: _I64) -> DnsQuestions:
    n = len(start)
    out = empty_questions(n)
    if n == 0:
        return out
    name0 = start + DNS_HEADER_BYTES
    width = MAX_NAME_BYTES + 1
    last = len(buf) - 1
    g = buf[np.minimum(name0[:, None] + np.arange(width), last)]  # (n, width) wire-form name bytes
    avail = np.clip(end - name0, 0, width)
    qdcount = (buf[np.minimum(start + 4, last)].astype(np.int64) << 8) | buf[np.minimum(start + 5, last)]
    pos = np.zeros(n, np.int64)
    ok = (qdcount >= 1) & (avail > 0)
    done = np.zeros(n, bool)
    n_labels = np.zeros(n, np.int64)
    first_len = np.zeros(n, np.int64)
    rows = np.arange(n)
    for _ in range(MAX_NAME_BYTES // 2 + 1):  # a label takes at least two bytes
        act = ok & ~done
        if not act.any():
            break
        ln = g[rows, np.minimum(pos, width - 1)].astype(np.int64)
        bad = act & ((ln & 0xC0) != 0)  # compression pointer or reserved bits
        ok &= ~bad
        act &= ~bad
        fin = act & (ln == 0)
        done |= fin
        step = act & ~fin
        first_len = np.where(step & (n_labels == 0), ln, first_len)
        n_labels += step
        pos = np.where(step, pos + 1 + ln, pos)
        ok &= ~(step & ((pos >= avail) | (pos + 1 > MAX_NAME_BYTES)))  # past the capture or 255 bytes
    asked = (qdcount >= 1) & (avail > 0)
    bad = asked & ~(ok & done)
    out.qname_len[bad] = UNREADABLE
    out.label_len[bad] = UNREADABLE
    out.name_hash[bad] = UNREADABLE_HASH
    out.parent_hash[bad] = UNREADABLE_HASH
    ok &= done & (n_labels > 0)
    if not ok.any():
        return out
    idx = np.flatnonzero(ok)
    g = g[idx]
    wire_len = pos[idx]  # bytes before the terminating zero
    first = first_len[idx]
    j = np.arange(width)[None, :]
    # Text form: length bytes become dots (the first one is dropped); lower-case ASCII letters.
    lower = np.where((g >= 65) & (g <= 90), g + 32, g).astype(np.uint8)
    in_name = (j >= 1) & (j < wire_len[:, None])
    in_parent = (j > first[:, None] + 1) & (j < wire_len[:, None])
    with np.errstate(over="ignore"):
        wide = lower.astype(np.uint64)
        term = wide * _POWERS[None, :width]
        name_hash = np.where(in_name, term, np.uint64(0)).sum(axis=1, dtype=np.uint64)
        # The parent's hash must not depend on where it starts: powers count from its first byte.
        shifted = _POWERS[np.clip(j - first[:, None] - 2, 0, width - 1)]
        parent_hash = np.where(in_parent, wide * shifted, np.uint64(0)).sum(axis=1, dtype=np.uint64)
    in_label = (j >= 1) & (j <= first[:, None])
    out.qname_len[idx] = np.clip(wire_len - 1, 0, 254).astype(np.uint8)
    out.label_len[idx] = np.clip(first, 0, 254).astype(np.uint8)
    out.label_entropy[idx] = _entropy(lower, in_label)
    out.name_hash[idx] = name_hash | np.uint64(1)  # never 0 (0 means "no name")
    out.parent_hash[idx] = parent_hash | np.uint64(1)
    return out
