"""The question name of DNS messages over UDP port 53, parsed for a whole batch at once.

For each UDP packet to or from port 53 whose captured bytes hold a DNS header and an
uncompressed question name, ``dns_questions`` gives the name's text length (dotted, without the
trailing dot), the length of its first label (the "subdomain"), the Shannon entropy of that
label's characters in bits, and two 64-bit hashes (case-insensitive): of the whole name, and of
its parent (the name without its first label). Rows without a readable name get zeros.

A name that runs past the captured bytes (snap length), uses a compression pointer in the
question, or has more than ``MAX_LABELS`` labels counts as unreadable. The loop runs over label
positions (at most ``MAX_LABELS``), never over packets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["DNS_PORT", "MAX_LABELS", "MAX_NAME_BYTES", "DnsQuestions", "dns_questions"]

DNS_PORT = 53
DNS_HEADER_BYTES = 12
MAX_NAME_BYTES = 255  # RFC 1035 limit on a name in wire form
MAX_LABELS = 32

_U64 = npt.NDArray[np.uint64]
_I64 = npt.NDArray[np.int64]
# Per-position multipliers of the polynomial name hash (odd, wrapping in uint64).
_HASH_BASE = np.uint64(0x100000001B3)
with np.errstate(over="ignore"):
    _POWERS = np.cumprod(np.full(MAX_NAME_BYTES + 1, _HASH_BASE, dtype=np.uint64), dtype=np.uint64)


@dataclass(frozen=True, slots=True)
class DnsQuestions:
    """Per-row question-name facts (zeros where no name was read)."""

    qname_len: npt.NDArray[np.uint8]
    label_len: npt.NDArray[np.uint8]
    label_entropy: npt.NDArray[np.float32]
    name_hash: _U64
    parent_hash: _U64


def _empty(n: int) -> DnsQuestions:
    return DnsQuestions(
        qname_len=np.zeros(n, np.uint8),
        label_len=np.zeros(n, np.uint8),
        label_entropy=np.zeros(n, np.float32),
        name_hash=np.zeros(n, np.uint64),
        parent_hash=np.zeros(n, np.uint64),
    )


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


def dns_questions(buf: npt.NDArray[np.uint8], start: _I64, end: _I64) -> DnsQuestions:
    """Parse the question name of each DNS message starting at ``buf[start]`` (UDP payload).

    ``end`` is the end of each row's captured bytes (NOTE [captured bytes] in decode.py: bytes
    past it are read, clipped to the buffer, and masked out). Runs the compiled kernel when numba
    is present (one pass per name, no (n, 256) temporaries), else the vectorised numpy path;
    both give the same values (tests/capture/test_dns.py).
    """
    if _dns_kernel is not None and _USE_KERNEL[0]:
        out = _empty(len(start))
        if len(start):
            _dns_kernel(buf, np.ascontiguousarray(start, np.int64), np.ascontiguousarray(end, np.int64), _POWERS,
                        out.qname_len, out.label_len, out.label_entropy, out.name_hash, out.parent_hash)  # fmt: skip
        return out
    return _dns_questions_numpy(buf, start, end)


def _dns_questions_numpy(buf: npt.NDArray[np.uint8], start: _I64, end: _I64) -> DnsQuestions:
    n = len(start)
    out = _empty(n)
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
    for _ in range(MAX_LABELS + 1):
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
        ok &= ~(step & (pos >= avail))  # the name (or its terminator) runs past the capture
    ok &= done & (n_labels > 0) & (n_labels <= MAX_LABELS)
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
    out.qname_len[idx] = np.clip(wire_len - 1, 0, 255).astype(np.uint8)
    out.label_len[idx] = np.clip(first, 0, 255).astype(np.uint8)
    out.label_entropy[idx] = _entropy(lower, in_label)
    out.name_hash[idx] = name_hash | np.uint64(1)  # never 0 (0 means "no name")
    out.parent_hash[idx] = parent_hash | np.uint64(1)
    return out


def _dns_python(  # type: ignore[no-untyped-def]  # compiled by numba below
    buf, start, end, powers, qname_len, label_len, label_entropy, name_hash, parent_hash
):
    """The numpy path's rules, one name at a time (compiled)."""
    width = MAX_NAME_BYTES + 1
    last = len(buf) - 1
    counts = np.zeros(256, np.int64)
    for r in range(len(start)):
        s0 = start[r]
        name0 = s0 + DNS_HEADER_BYTES
        avail = min(max(end[r] - name0, 0), width)
        qd = (np.int64(buf[min(s0 + 4, last)]) << 8) | np.int64(buf[min(s0 + 5, last)])
        if qd < 1 or avail <= 0:
            continue
        pos = 0
        n_labels = 0
        first = 0
        ok = True
        done = False
        for _ in range(MAX_LABELS + 1):
            ln = np.int64(buf[min(name0 + min(pos, width - 1), last)])
            if ln & 0xC0:
                ok = False
                break
            if ln == 0:
                done = True
                break
            if n_labels == 0:
                first = ln  # type: ignore[assignment]
            n_labels += 1
            pos += 1 + ln  # type: ignore[assignment]
            if pos >= avail:
                ok = False
                break
        if not (ok and done and n_labels > 0 and n_labels <= MAX_LABELS):
            continue
        h = np.uint64(0)
        hp = np.uint64(0)
        counts[:] = 0
        for j in range(1, pos):
            c = np.int64(buf[min(name0 + j, last)])
            if 65 <= c <= 90:
                c += 32
            h += np.uint64(c) * powers[j]
            if j > first + 1:
                hp += np.uint64(c) * powers[j - first - 2]
            if j <= first:
                counts[c] += 1
        ent = 0.0
        if first > 0:
            for c in range(256):  # type: ignore[assignment]
                if counts[c]:
                    p = counts[c] / first
                    ent -= p * np.log2(p)
        qname_len[r] = min(max(pos - 1, 0), 255)
        label_len[r] = min(first, 255)
        label_entropy[r] = abs(ent)
        name_hash[r] = h | np.uint64(1)
        parent_hash[r] = hp | np.uint64(1)


_USE_KERNEL = [True]
_dns_kernel = None
try:
    from netae.jit import numba

    _dns_kernel = numba.njit(cache=True, nogil=True)(_dns_python)
except ImportError:  # pragma: no cover - numba missing: the numpy path runs
    _dns_kernel = None
