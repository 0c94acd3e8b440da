"""Why a record was skipped: one code per reason, one ``describe`` that words it.

The decode kernel writes a ``Skip`` code and a value (an EtherType, an IP version, ...) for each
record it skips; ``count_skips`` adds them to a ``SkipCounts``, as data in ``codes`` and under
their words in ``skipped``. Code that needs to know *why* records were skipped reads ``codes``
(``n_skipped``, ``unsupported_link_types``), never the words; ``skip_summary`` words a summary.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum

import numpy as np
import numpy.typing as npt

from netae.capture.linktypes import LINK_TYPES, link_type_name
from netae.capture.tunnels import NAMES
from netae.tables import SkipCounts

__all__ = ["Skip", "add_skip", "count_skips", "describe", "n_skipped", "skip_summary", "unsupported_link_types"]


class Skip(IntEnum):
    """Skip reason codes (int8 in the decode kernel; ``KEPT`` is not a skip)."""

    KEPT = 0
    ETH_SHORT = 1
    VLAN = 2
    LLC = 3
    ETHERTYPE = 4
    LINK_SHORT = 5
    AF = 6
    RAW_EMPTY = 7
    RAW_VER = 8
    UNSUPPORTED = 9
    V4_SHORT = 10
    V4_VER = 11
    V4_IHL = 12
    V4_TOT = 13
    V6_SHORT = 14
    V6_VER = 15
    MPLS_SHORT = 16
    MPLS_DEPTH = 17
    MPLS_PAYLOAD = 18
    PPPOE_SHORT = 19
    PPPOE_BAD = 20
    PPP_PROTO = 21
    TUNNEL_SHORT = 22
    TUNNEL_BAD = 23
    TUNNEL_DEPTH = 24
    PCAPNG_IFACE = 25
    TIME_RANGE = 26


def describe(code: int, value: int = 0, dlt: int = 0) -> str:
    """The words for one skip reason; ``value`` and ``dlt`` fill in what the code leaves open."""
    name = LINK_TYPES[dlt].name if dlt in LINK_TYPES else link_type_name(dlt)
    tunnel = NAMES[value] if 0 < value < len(NAMES) else "tunnel"
    words = {
        Skip.ETH_SHORT: "truncated Ethernet header",
        Skip.VLAN: "more than 3 VLAN tags",
        Skip.LLC: "802.3 frame without EtherType (LLC)",
        Skip.ETHERTYPE: f"non-IP ethertype 0x{value:04x}",
        Skip.LINK_SHORT: f"truncated {name} header",
        Skip.AF: f"address family {value} on link type {name}",
        Skip.RAW_EMPTY: "empty raw IP packet",
        Skip.RAW_VER: f"raw IP packet with IP version {value}",
        Skip.UNSUPPORTED: f"link type {dlt} ({name}) unsupported",
        Skip.V4_SHORT: "truncated IPv4 header",
        Skip.V4_VER: f"IP version {value} where IPv4 was expected",
        Skip.V4_IHL: "IPv4 header length < 20",
        Skip.V4_TOT: "IPv4 total length < header length",
        Skip.V6_SHORT: "truncated IPv6 header",
        Skip.V6_VER: f"IP version {value} where IPv6 was expected",
        Skip.MPLS_SHORT: "truncated MPLS label stack",
        Skip.MPLS_DEPTH: "MPLS label stack deeper than 16 labels",
        Skip.MPLS_PAYLOAD: f"MPLS payload starting with nibble {value} (not IP)",
        Skip.PPPOE_SHORT: "truncated PPPoE header",
        Skip.PPPOE_BAD: "malformed PPPoE session header",
        Skip.PPP_PROTO: f"non-IP PPP protocol 0x{value:04x}",
        Skip.TUNNEL_SHORT: f"truncated {tunnel} header",
        Skip.TUNNEL_BAD: f"malformed {tunnel} header",
        Skip.TUNNEL_DEPTH: "tunnels nested deeper than tunnels.max_depth",
        Skip.PCAPNG_IFACE: "packet on an undeclared pcapng interface",
        Skip.TIME_RANGE: "timestamp out of range",
    }
    return words.get(Skip(code), f"skip code {code}")


def count_skips(
    counts: SkipCounts, reason: npt.NDArray[np.int8], value: npt.NDArray[np.int64], dlt: npt.NDArray[np.uint16]
) -> None:
    """Add the skipped rows (``reason != KEPT``) to ``counts``, one entry per distinct reason."""
    skipped = np.flatnonzero(reason != Skip.KEPT)
    if len(skipped) == 0:
        return
    key = np.stack([reason[skipped].astype(np.int64), value[skipped], dlt[skipped].astype(np.int64)])
    uniq, k = np.unique(key, axis=1, return_counts=True)
    for (code, val, lt), c in zip(uniq.T.tolist(), k.tolist(), strict=True):
        counts.add(describe(code, val, lt), c, code=(code, val, lt))


def add_skip(counts: SkipCounts, code: Skip, n: int, *, value: int = 0, dlt: int = 0) -> None:
    """Count ``n`` records skipped for one reason (outside the decode kernel)."""
    counts.add(describe(code, value, dlt), n, code=(int(code), value, dlt))


def n_skipped(counts: SkipCounts, code: Skip) -> int:
    """Records skipped with ``code``, whatever its value and link type."""
    return sum(n for (c, _v, _d), n in (counts.codes or {}).items() if c == code)


def unsupported_link_types(counts: SkipCounts) -> dict[int, int]:
    """Link type -> records skipped because netae does not decode that link type."""
    out: dict[int, int] = {}
    for (c, _v, dlt), n in (counts.codes or {}).items():
        if c == Skip.UNSUPPORTED:
            out[dlt] = out.get(dlt, 0) + n
    return out


def skip_summary(skipped: Mapping[str, int] | None, *, limit: int | None = None, sep: str = ", ") -> str:
    """``"12 non-IP ethertype 0x0806, 3 truncated IPv4 header"``: the most frequent first.

    The one place that words a skip summary (``SkipCounts.skipped``, or such counts summed).
    """
    parts = sorted((skipped or {}).items(), key=lambda kv: -kv[1])[:limit]
    return sep.join(f"{n} {reason}" for reason, n in parts)
