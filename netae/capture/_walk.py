"""Record-header walkers: the one loop per record that capture reading allows (STYLE 2.11).

A walker steps through the record (pcap) or block (pcapng) headers of one buffer and writes each
record's data offset, lengths and raw timestamp into preallocated arrays; everything after it is
vectorised. Each walker exists twice with the same semantics: a numba ``@njit`` version (used
when numba imports; about 50x faster than the other, see ``bench/featurize.py``) and a
``struct.unpack_from`` version. Both return ``(n_records, pos, status, need)``:

* ``NEED``: the record at ``pos`` is not complete in the buffer; ``need`` bytes from ``pos`` are.
* ``BAD``: the record or block at ``pos`` is corrupt (``need`` holds the length it claimed).
* ``SPECIAL``: (pcapng) a section header or interface block at ``pos``, parsed by the caller.

pcapng output ``if_id`` is the interface number, or -1 for a Simple Packet Block (interface 0,
no timestamp).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["BAD", "HAVE_NUMBA", "MAX_BLOCK", "NEED", "SPECIAL", "walk_pcap", "walk_pcapng", "walkers"]

NEED = 0
BAD = 1
SPECIAL = 2
MAX_BLOCK = 32 << 20  # larger pcapng blocks are treated as corrupt

_BT_SHB = 0x0A0D0D0A
_BT_IDB = 1
_BT_PB = 2
_BT_SPB = 3
_BT_EPB = 6


def _walk_pcap_py(
    buf: Any, pos: int, end: int, big: bool, hdr: int, max_caplen: int,
    o_off: Any, o_cap: Any, o_orig: Any, o_hi: Any, o_lo: Any,
) -> tuple[int, int, int, int]:  # fmt: skip
    mv = memoryview(buf)
    unpack = struct.Struct(">IIII" if big else "<IIII").unpack_from
    k = 0
    cap_out = len(o_off)
    offs: list[int] = []
    caps: list[int] = []
    origs: list[int] = []
    his: list[int] = []
    los: list[int] = []
    status, need = NEED, hdr
    while True:
        if pos + hdr > end:
            status, need = NEED, hdr
            break
        hi, lo, incl, orig = unpack(mv, pos)
        if incl > max_caplen:
            status, need = BAD, incl
            break
        if pos + hdr + incl > end:
            status, need = NEED, hdr + incl
            break
        if k + len(offs) >= cap_out:
            status, need = NEED, hdr + incl
            break
        offs.append(pos + hdr)
        caps.append(incl)
        origs.append(orig)
        his.append(hi)
        los.append(lo)
        pos += hdr + incl
    k = len(offs)
    if k:
        o_off[:k] = offs
        o_cap[:k] = caps
        o_orig[:k] = origs
        o_hi[:k] = his
        o_lo[:k] = los
    return k, pos, status, need


def _walk_pcapng_py(
    buf: Any, pos: int, end: int, big: bool, max_caplen: int, snap0: int, k: int,
    o_off: Any, o_cap: Any, o_orig: Any, o_hi: Any, o_lo: Any, o_if: Any,
) -> tuple[int, int, int, int]:  # fmt: skip
    mv = memoryview(buf)
    bo = ">" if big else "<"
    u2 = struct.Struct(bo + "II").unpack_from
    u1 = struct.Struct(bo + "I").unpack_from
    epb = struct.Struct(bo + "IIIII").unpack_from
    pb = struct.Struct(bo + "HHIIII").unpack_from
    cap_out = len(o_off)
    while True:
        if pos + 12 > end:
            return k, pos, NEED, 12
        btype, blen = u2(mv, pos)
        if btype == _BT_SHB:
            return k, pos, SPECIAL, 0
        if blen < 12 or blen % 4 or blen > MAX_BLOCK:
            return k, pos, BAD, blen
        if pos + blen > end:
            return k, pos, NEED, blen
        if u1(mv, pos + blen - 4)[0] != blen:
            return k, pos, BAD, blen
        if btype == _BT_IDB:
            return k, pos, SPECIAL, 0
        if btype in (_BT_EPB, _BT_PB, _BT_SPB):
            if k >= cap_out:
                return k, pos, NEED, blen
            if btype == _BT_SPB:
                if blen < 16:
                    return k, pos, BAD, blen
                orig = u1(mv, pos + 8)[0]
                cap = min(orig, blen - 16)
                if snap0 > 0:
                    cap = min(cap, snap0)
                iface, hi, lo, data = -1, 0, 0, pos + 12
            else:
                if blen < 32:
                    return k, pos, BAD, blen
                if btype == _BT_EPB:
                    iface, hi, lo, cap, orig = epb(mv, pos + 8)
                else:
                    iface, _drops, hi, lo, cap, orig = pb(mv, pos + 8)
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


walk_pcap: Callable[..., tuple[int, int, int, int]] = _walk_pcap_py
walk_pcapng: Callable[..., tuple[int, int, int, int]] = _walk_pcapng_py
HAVE_NUMBA = False

try:  # numba is optional: the struct walkers above give the same results, slower
    from netae.jit import njit
except ImportError:  # pragma: no cover - exercised only without numba
    pass
else:

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
    def _walk_pcap_nb(buf, pos, end, big, hdr, max_caplen, o_off, o_cap, o_orig, o_hi, o_lo):  # type: ignore[no-untyped-def]  # pragma: no cover
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
    def _walk_pcapng_nb(buf, pos, end, big, max_caplen, snap0, k, o_off, o_cap, o_orig, o_hi, o_lo, o_if):  # type: ignore[no-untyped-def]  # pragma: no cover
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

    walk_pcap = _walk_pcap_nb
    walk_pcapng = _walk_pcapng_nb
    HAVE_NUMBA = True


def walkers(
    *, use_numba: bool
) -> tuple[Callable[..., tuple[int, int, int, int]], Callable[..., tuple[int, int, int, int]]]:
    """The (pcap, pcapng) walker pair; the struct versions when ``use_numba`` is false or numba is absent."""
    if use_numba and HAVE_NUMBA:
        return walk_pcap, walk_pcapng
    return _walk_pcap_py, _walk_pcapng_py
