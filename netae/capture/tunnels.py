"""Tunnel kinds: the numbers the decode kernel writes, their names, and how a tunnel is worded.

A packet's ``tunnel_key`` (NOTE [tunnel columns] in tables.py) holds the kind of its innermost
encapsulation in its top byte; ``tunnel_id`` the identifier that kind carries (``ID_NAMES``).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from netae.tables import format_ips

__all__ = ["ID_NAMES", "NAMES", "tunnel_kind", "tunnel_texts"]

(T_NONE, T_VXLAN, T_GENEVE, T_GRE, T_ERSPAN, T_IPIP, T_TEREDO, T_GTPU, T_MPLS, T_PPPOE, T_PPTP,
 T_GRE_UDP) = range(12)  # fmt: skip

NAMES = ("", "vxlan", "geneve", "gre", "erspan", "ipip", "teredo", "gtpu", "mpls", "pppoe", "pptp", "gre-udp")
# What tunnel_id holds for each kind ("" where the kind has no identifier).
ID_NAMES = ("", "vni", "vni", "key", "session", "", "", "teid", "label", "session", "call", "key")


def tunnel_kind(tunnel_key: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint8]:
    """The tunnel kind (index into ``NAMES``) packed in each ``tunnel_key``."""
    out: npt.NDArray[np.uint8] = (tunnel_key >> np.uint64(56)).astype(np.uint8)
    return out


def tunnel_texts(
    tunnel_key: npt.NDArray[np.uint64],
    tunnel_id: npt.NDArray[np.uint32],
    outer_src: tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]],
    outer_dst: tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]],
) -> list[str]:
    """``"vxlan 192.0.2.1>192.0.2.2 vni=77"`` per row ("" without a tunnel).

    The outer endpoints are left out where there are none (MPLS, PPPoE); a GRE key of 0 is left
    out (GRE without a key).
    """
    kinds = tunnel_kind(tunnel_key).tolist()
    if not any(kinds):
        return [""] * len(kinds)
    src, dst = format_ips(*outer_src), format_ips(*outer_dst)
    has_outer = ((outer_src[0] | outer_src[1]) != 0).tolist()
    out = []
    for k, tid, s, d, o in zip(kinds, tunnel_id.tolist(), src, dst, has_outer, strict=True):
        if not 0 < k < len(NAMES):
            out.append("")
            continue
        parts = [NAMES[k]]
        if o:
            parts.append(f"{s}>{d}")
        if ID_NAMES[k] and (tid or k not in (T_GRE, T_GRE_UDP)):
            parts.append(f"{ID_NAMES[k]}={tid}")
        out.append(" ".join(parts))
    return out


def tunnel_documents(
    tunnel_key: npt.NDArray[np.uint64],
    tunnel_id: npt.NDArray[np.uint32],
    outer_src: tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]],
    outer_dst: tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]],
) -> list[dict[str, object] | None]:
    """Per row, the ECS-style ``netae.tunnel`` object (None without a tunnel).

    ``{"type": "vxlan", "vni": 77, "source": {"ip": ...}, "destination": {"ip": ...}}``: the
    outer addresses sit in ``source``/``destination`` objects as in ECS's own top level.
    """
    kinds = tunnel_kind(tunnel_key).tolist()
    if not any(kinds):
        return [None] * len(kinds)
    src, dst = format_ips(*outer_src), format_ips(*outer_dst)
    has_outer = ((outer_src[0] | outer_src[1]) != 0).tolist()
    out: list[dict[str, object] | None] = []
    for k, tid, s, d, o in zip(kinds, tunnel_id.tolist(), src, dst, has_outer, strict=True):
        if not 0 < k < len(NAMES):
            out.append(None)
            continue
        doc: dict[str, object] = {"type": NAMES[k]}
        if ID_NAMES[k] and (tid or k not in (T_GRE, T_GRE_UDP)):
            doc[ID_NAMES[k]] = tid
        if o:
            doc["source"], doc["destination"] = {"ip": s}, {"ip": d}
        out.append(doc)
    return out
