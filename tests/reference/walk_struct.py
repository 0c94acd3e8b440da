"""Reference oracle: the ``struct.unpack_from`` record walkers netae used beside its compiled ones.

Same arguments and results as ``netae.capture._walk.walk_pcap``/``walk_pcapng``; tests run both
on the same buffers and compare every output.
"""

from __future__ import annotations

import struct
from typing import Any

from netae.capture._walk import _BT_EPB, _BT_IDB, _BT_PB, _BT_SHB, _BT_SPB, BAD, MAX_BLOCK, NEED, SPECIAL


def walk_pcap(
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


def walk_pcapng(
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
