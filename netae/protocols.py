"""IP protocol numbers, their names, and the TCP flag bits: one definition for every stage.

Names are IANA's protocol keywords, the values ECS wants in ``network.transport`` (so ICMPv6 is
``ipv6-icmp``, never ``icmpv6``); the terminal table and the HTML report show the same names.
Plain ints: the numba kernels read them as compile-time constants.
"""

from __future__ import annotations

__all__ = [
    "ICMP_PROTOCOLS",
    "IPPROTO_AH",
    "IPPROTO_DSTOPTS",
    "IPPROTO_ESP",
    "IPPROTO_FRAGMENT",
    "IPPROTO_GRE",
    "IPPROTO_HOPOPTS",
    "IPPROTO_ICMP",
    "IPPROTO_ICMPV6",
    "IPPROTO_IPIP",
    "IPPROTO_IPV6",
    "IPPROTO_ROUTING",
    "IPPROTO_SCTP",
    "IPPROTO_TCP",
    "IPPROTO_UDP",
    "PORTED",
    "PROTOCOL_NAMES",
    "TCP_ACK",
    "TCP_FIN",
    "TCP_PSH",
    "TCP_RST",
    "TCP_SYN",
    "TCP_URG",
    "protocol_name",
]

IPPROTO_HOPOPTS = 0  # IPv6 hop-by-hop options (extension header)
IPPROTO_ICMP = 1
IPPROTO_IPIP = 4  # IPv4 in IP (tunnel)
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_IPV6 = 41  # IPv6 in IP (tunnel)
IPPROTO_ROUTING = 43  # IPv6 routing header
IPPROTO_FRAGMENT = 44  # IPv6 fragment header
IPPROTO_GRE = 47
IPPROTO_ESP = 50
IPPROTO_AH = 51
IPPROTO_ICMPV6 = 58
IPPROTO_DSTOPTS = 60  # IPv6 destination options (extension header)
IPPROTO_SCTP = 132

PROTOCOL_NAMES: dict[int, str] = {
    IPPROTO_ICMP: "icmp",
    IPPROTO_TCP: "tcp",
    IPPROTO_UDP: "udp",
    IPPROTO_ICMPV6: "ipv6-icmp",
    IPPROTO_SCTP: "sctp",
    IPPROTO_GRE: "gre",
    IPPROTO_ESP: "esp",
    IPPROTO_AH: "ah",
}

# Protocols whose flows have ports; ICMP flows carry the type and code in their place.
PORTED = (IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP)
ICMP_PROTOCOLS = (IPPROTO_ICMP, IPPROTO_ICMPV6)

# TCP header flag bits (RFC 9293).
TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04
TCP_PSH = 0x08
TCP_ACK = 0x10
TCP_URG = 0x20


def protocol_name(proto: int) -> str:
    """The protocol's IANA keyword, or its number as text."""
    return PROTOCOL_NAMES.get(proto, str(proto))
