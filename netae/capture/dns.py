"""The question name of DNS messages over UDP port 53, parsed for a whole batch at once.

For each UDP packet to or from port 53 whose captured bytes hold a DNS header and a question,
``dns_questions`` gives the name's text length (dotted, without the trailing dot), the length of
its first label (the "subdomain"), the Shannon entropy of that label's characters in bits, and
two 64-bit hashes (case-insensitive): of the whole name, and of its parent (the name without its
first label). Rows without a question (or with the root name) get zeros.

Names are read up to RFC 1035's 255-byte limit whatever their label count: a tunnel cut into
one-byte labels is read like the same name in long labels. A question name that cannot be read
(it runs past the captured bytes or the 255-byte limit, or uses a compression pointer or the
reserved label types) is a value of its own, ``UNREADABLE``: text and label lengths of 255
(longer than any readable name or label) and name hashes of ``UNREADABLE_HASH``, so that
features and context see it as unusual, never as "no name".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from netae.jit import njit

__all__ = ["DNS_PORT", "MAX_NAME_BYTES", "UNREADABLE", "UNREADABLE_HASH", "DnsQuestions", "dns_questions"]

DNS_PORT = 53
DNS_HEADER_BYTES = 12
MAX_NAME_BYTES = 255  # RFC 1035 limit on a name in wire form, terminating zero included
UNREADABLE = 255  # qname_len and label_len of a name that cannot be read
UNREADABLE_HASH = 2  # its name and parent hashes (readable names hash to odd values)

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


def empty_questions(n: int) -> DnsQuestions:
    """``n`` rows of zeros."""
    return DnsQuestions(
        qname_len=np.zeros(n, np.uint8),
        label_len=np.zeros(n, np.uint8),
        label_entropy=np.zeros(n, np.float32),
        name_hash=np.zeros(n, np.uint64),
        parent_hash=np.zeros(n, np.uint64),
    )


def dns_questions(buf: npt.NDArray[np.uint8], start: _I64, end: _I64) -> DnsQuestions:
    """Parse the question name of each DNS message starting at ``buf[start]`` (UDP payload).

    ``end`` is the end of each row's captured bytes (NOTE [captured bytes] in decode.py). One
    compiled pass per name (``tests/reference/dns_numpy.py`` is the vectorised oracle the tests
    compare it with).
    """
    out = empty_questions(len(start))
    if len(start):
        _dns_kernel(buf, np.ascontiguousarray(start, np.int64), np.ascontiguousarray(end, np.int64), _POWERS,
                    out.qname_len, out.label_len, out.label_entropy, out.name_hash, out.parent_hash)  # fmt: skip
    return out


@njit(cache=True, nogil=True, inline="always")
def _walk_name(buf: Any, name0: Any, avail: Any, last: Any) -> Any:  # pragma: no cover - compiled
    """Walk the labels at ``name0``: (status, wire bytes before the terminator, first label length).

    Status 1: read; 0: the root name (no labels); -1: unreadable.
    """
    pos: Any = 0
    first: Any = 0
    n_labels = 0
    while True:
        ln = np.int64(buf[min(name0 + pos, last)])
        if ln & 0xC0:  # compression pointer or reserved label type
            return -1, pos, first
        if ln == 0:
            return (1 if n_labels else 0), pos, first
        if n_labels == 0:
            first = ln
        n_labels += 1
        pos += 1 + ln
        if pos >= avail or pos + 1 > MAX_NAME_BYTES:  # past the capture, or past 255 bytes
            return -1, pos, first


@njit(cache=True, nogil=True)
def _dns_kernel(  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    buf, start, end, powers, qname_len, label_len, label_entropy, name_hash, parent_hash
):
    last = len(buf) - 1
    counts = np.zeros(256, np.int64)
    for r in range(len(start)):
        s0 = start[r]
        name0 = s0 + DNS_HEADER_BYTES
        avail = min(max(end[r] - name0, 0), MAX_NAME_BYTES + 1)
        qd = (np.int64(buf[min(s0 + 4, last)]) << 8) | np.int64(buf[min(s0 + 5, last)])
        if qd < 1 or avail <= 0:
            continue
        status, pos, first = _walk_name(buf, name0, avail, last)
        if status < 0:
            qname_len[r] = UNREADABLE
            label_len[r] = UNREADABLE
            name_hash[r] = UNREADABLE_HASH
            parent_hash[r] = UNREADABLE_HASH
            continue
        if status == 0:
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
        for k in range(256):
            if counts[k]:
                p = counts[k] / first
                ent -= p * np.log2(p)
        qname_len[r] = min(max(pos - 1, 0), 254)
        label_len[r] = min(first, 254)
        label_entropy[r] = abs(ent)
        name_hash[r] = h | np.uint64(1)
        parent_hash[r] = hp | np.uint64(1)
