"""Record-header walkers: the one loop per record that capture reading allows (STYLE 2.11).

A walker steps through the record (pcap) or block (pcapng) headers of one buffer and writes each
record's data offset, lengths and raw timestamp into preallocated arrays; everything after it is
vectorised. The walkers are compiled with numba; ``tests/reference/walk_struct.py`` keeps the
``struct.unpack_from`` versions they replaced as test oracles. Both return
``(n_records, pos, status, need)``:

* ``NEED``: the record at ``pos`` is not complete in the buffer; ``need`` bytes from ``pos`` are.
* ``BAD``: the record or block at ``pos`` is corrupt (``need`` holds the length it claimed).
* ``SPECIAL``: (pcapng) a section header or interface block at ``pos``, parsed by the caller.

pcapng output ``if_id`` is the interface number, or -1 for a Simple Packet Block (interface 0,
no timestamp).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from netae.jit import njit

__all__ = ["BAD", "MAX_BLOCK", "NEED", "SPECIAL", "walk_pcap", "walk_pcapng"]

NEED = 0
BAD = 1
SPECIAL = 2
MAX_BLOCK = 32 << 20  # larger pcapng blocks are treated as corrupt

_BT_SHB = 0x0A0D0D0A
_BT_IDB = 1
_BT_PB = 2
_BT_SPB = 3
_BT_EPB = 6


@njit(cache=True, nogil=True)
def _u32(buf: Any, p: int, big: bool) -> Any:  # pragma: no cover - compiled
    if big:
        return (np.int64(buf[p]) << 24) | (np.int64(buf[p + 1]) << 16) | (np.int64(buf[p + 2]) << 8) | buf[p + 3]
    return (np.int64(buf[p + 3]) << 24) | (np.int64(buf[p + 2]) << 16) | (np.int64(buf[p + 1]) << 8) | buf[p]


@njit(cache=True, nogil=True)
def _u16(buf: Any, p: int, big: bool) -> Any:  # pragma: no cover - compiled
    if big:
        return (np.int64(buf[p]) << 8) | buf[p + 1]
    return (np.int64(buf[p + 1]) << 8) | buf[p]


@njit(cache=True, nogil=True)
def walk_pcap(buf, pos, end, big, hdr, max_caplen, o_off, o_cap, o_orig, o_hi, o_lo):  # type: ignore[no-untyped-def]  # pragma: no cover
    k = 0
    n_out = len(o_off)
    while True:
        if pos + hdr > end:
            return k, pos, NEED, hdr
        incl = _u32(buf, pos + 8, big)
        if incl > max_caplen:
            return k, pos, BAD, incl
        if pos + hdr + incl > end or k >= n_out:
            return k, pos, NEED, hdr + incl
        o_off[k] = pos + hdr
        o_cap[k] = incl
        o_orig[k] = _u32(buf, pos + 12, big)
        o_hi[k] = _u32(buf, pos, big)
        o_lo[k] = _u32(buf, pos + 4, big)
        k += 1
        pos += hdr + incl


@njit(cache=True, nogil=True)
def walk_pcapng(buf, pos, end, big, max_caplen, snap0, k, o_off, o_cap, o_orig, o_hi, o_lo, o_if):  # type: ignore[no-untyped-def]  # pragma: no cover
    n_out = len(o_off)
    while True:
        if pos + 12 > end:
            return k, pos, NEED, 12
        btype = _u32(buf, pos, big)
        if btype == _BT_SHB:
            return k, pos, SPECIAL, 0
        blen = _u32(buf, pos + 4, big)
        if blen < 12 or blen % 4 != 0 or blen > MAX_BLOCK:
            return k, pos, BAD, blen
        if pos + blen > end:
            return k, pos, NEED, blen
        if _u32(buf, pos + blen - 4, big) != blen:
            return k, pos, BAD, blen
        if btype == _BT_IDB:
            return k, pos, SPECIAL, 0
        if btype == _BT_EPB or btype == _BT_PB or btype == _BT_SPB:  # noqa: SIM109 - numba
            if k >= n_out:
                return k, pos, NEED, blen
            if btype == _BT_SPB:
                if blen < 16:
                    return k, pos, BAD, blen
                orig = _u32(buf, pos + 8, big)
                cap = min(orig, blen - 16)
                if snap0 > 0:
                    cap = min(cap, snap0)
                iface = -1
                hi = 0
                lo = 0
                data = pos + 12
            else:
                if blen < 32:
                    return k, pos, BAD, blen
                iface = _u32(buf, pos + 8, big) if btype == _BT_EPB else _u16(buf, pos + 8, big)
                hi = _u32(buf, pos + 12, big)
                lo = _u32(buf, pos + 16, big)
                cap = _u32(buf, pos + 20, big)
                orig = _u32(buf, pos + 24, big)
                data = pos + 28
                if cap > blen - 32:
                    return k, pos, BAD, blen
            if cap > max_caplen:
                return k, pos, BAD, blen
            o_off[k] = data
            o_cap[k] = cap
            o_orig[k] = orig
            o_hi[k] = hi
            o_lo[k] = lo
            o_if[k] = iface
            k += 1
        pos += blen
