"""Link-layer types: the one table that says which DLTs carry IP and where the IP header starts.

Numbers are the tcpdump.org LINKTYPE_* values (dpkt's ``DLT_*`` names). ``decode.py`` picks a
vectorised branch by ``LinkType.kind``; adding a link type with a fixed header and an EtherType
field is one row here.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "DLT_C_HDLC",
    "DLT_EN10MB",
    "DLT_IPV4",
    "DLT_IPV6",
    "DLT_LINUX_SLL",
    "DLT_LINUX_SLL2",
    "DLT_LOOP",
    "DLT_NULL",
    "DLT_PPP",
    "DLT_PPP_HDLC",
    "DLT_RAW",
    "DLT_RAW_12",
    "DLT_RAW_14",
    "ETHERTYPE_8021AD",
    "ETHERTYPE_8021Q",
    "ETHERTYPE_IP",
    "ETHERTYPE_IPV6",
    "ETHERTYPE_QINQ",
    "LINK_TYPES",
    "LinkType",
    "link_type_name",
    "supported_link_types",
]

DLT_NULL = 0  # BSD loopback: 4-byte address family in the capturing host's byte order
DLT_EN10MB = 1  # Ethernet II (and 802.3), optionally VLAN-tagged
DLT_PPP = 9  # PPP: optional address and control bytes, then the PPP protocol
DLT_RAW_12 = 12  # raw IP (OpenBSD's number for DLT_RAW)
DLT_RAW_14 = 14  # raw IP (BSD/OS's number for DLT_RAW)
DLT_PPP_HDLC = 50  # PPP in HDLC-like framing (the same header as DLT_PPP)
DLT_RAW = 101  # raw IP, version from the first nibble
DLT_C_HDLC = 104  # Cisco HDLC: address, control, then an EtherType (IP, IPv6, MPLS)
DLT_LOOP = 108  # OpenBSD loopback: 4-byte address family, big-endian
DLT_LINUX_SLL = 113  # Linux "cooked" capture v1, 16-byte header, protocol at 14
DLT_IPV4 = 228  # raw IPv4
DLT_IPV6 = 229  # raw IPv6
DLT_LINUX_SLL2 = 276  # Linux "cooked" capture v2, 20-byte header, protocol at 0

ETHERTYPE_IP = 0x0800  # IPv4
ETHERTYPE_IPV6 = 0x86DD  # IPv6
ETHERTYPE_8021Q = 0x8100  # 802.1Q VLAN tag
ETHERTYPE_8021AD = 0x88A8  # 802.1ad service tag (QinQ outer)
ETHERTYPE_QINQ = 0x9100  # pre-standard QinQ outer tag
VLAN_ETHERTYPES = (ETHERTYPE_8021Q, ETHERTYPE_8021AD, ETHERTYPE_QINQ)


@dataclass(frozen=True, slots=True)
class LinkType:
    """How to find the IP header behind one link type.

    ``kind`` selects the decoder branch: ``ethernet`` (EtherType at 12, VLAN tags followed),
    ``ethertype`` (fixed header of ``header_len`` bytes, EtherType at ``ethertype_at``),
    ``raw`` (IP version from the first nibble), ``ipv4``/``ipv6`` (fixed version), ``null``
    (address family in either byte order), ``loop`` (big-endian address family) and ``ppp`` (a PPP
    frame: IPv4, IPv6 or MPLS by the PPP protocol).
    """

    dlt: int
    name: str
    kind: str
    header_len: int
    ethertype_at: int = -1


LINK_TYPES: dict[int, LinkType] = {
    lt.dlt: lt
    for lt in (
        LinkType(DLT_NULL, "NULL", "null", 4),
        LinkType(DLT_EN10MB, "EN10MB", "ethernet", 14, 12),
        LinkType(DLT_PPP, "PPP", "ppp", 0),
        LinkType(DLT_PPP_HDLC, "PPP_HDLC", "ppp", 0),
        LinkType(DLT_C_HDLC, "C_HDLC", "ethertype", 4, 2),
        LinkType(DLT_RAW_12, "RAW", "raw", 0),
        LinkType(DLT_RAW_14, "RAW", "raw", 0),
        LinkType(DLT_RAW, "RAW", "raw", 0),
        LinkType(DLT_LOOP, "LOOP", "loop", 4),
        LinkType(DLT_LINUX_SLL, "LINUX_SLL", "ethertype", 16, 14),
        LinkType(DLT_IPV4, "IPV4", "ipv4", 0),
        LinkType(DLT_IPV6, "IPV6", "ipv6", 0),
        LinkType(DLT_LINUX_SLL2, "LINUX_SLL2", "ethertype", 20, 0),
    )
}

# Names of common link types netae does not decode, for skip reasons and error messages.
_OTHER_NAMES: dict[int, str] = {
    3: "AX25",
    6: "IEEE802_5",
    7: "ARCNET_BSD",
    8: "SLIP",
    10: "FDDI",
    51: "PPP_ETHER",
    100: "ATM_RFC1483",
    105: "IEEE802_11",
    107: "FRELAY",
    114: "LTALK",
    117: "PFLOG",
    119: "PRISM_HEADER",
    122: "IP_OVER_FC",
    123: "SUNATM",
    127: "IEEE802_11_RADIOTAP",
    129: "ARCNET_LINUX",
    138: "APPLE_IP_OVER_IEEE1394",
    139: "MTP2_WITH_PHDR",
    140: "MTP2",
    141: "MTP3",
    142: "SCCP",
    143: "DOCSIS",
    144: "LINUX_IRDA",
    147: "USER0",
    163: "IEEE802_11_AVS",
    165: "BACNET_MS_TP",
    166: "PPP_PPPD",
    169: "GPRS_LLC",
    177: "LINUX_LAPD",
    187: "BLUETOOTH_HCI_H4",
    189: "USB_LINUX",
    192: "PPI",
    195: "IEEE802_15_4_WITHFCS",
    196: "SITA",
    197: "ERF",
    201: "BLUETOOTH_HCI_H4_WITH_PHDR",
    202: "AX25_KISS",
    204: "PPP_WITH_DIR",
    215: "IEEE802_15_4_NONASK_PHY",
    220: "USB_LINUX_MMAPPED",
    224: "FC_2",
    227: "CAN_SOCKETCAN",
    230: "IEEE802_15_4_NOFCS",
    231: "DBUS",
    235: "DVB_CI",
    239: "NFLOG",
    240: "NETANALYZER",
    247: "IPNET",
    249: "USBPCAP",
    251: "BLUETOOTH_LE_LL",
    252: "WIRESHARK_UPPER_PDU",
    254: "BLUETOOTH_LINUX_MONITOR",
    256: "BLUETOOTH_LE_LL_WITH_PHDR",
    263: "ZWAVE_R3",
    264: "USB_DARWIN",
    270: "SDLC",
    272: "NORDIC_BLE",
    279: "EBHSCR",
    281: "IEEE802_15_4_TAP",
    283: "USB_2_0",
}


def link_type_name(dlt: int) -> str:
    """The LINKTYPE name of ``dlt`` (``"UNKNOWN"`` for numbers not in the table)."""
    lt = LINK_TYPES.get(dlt)
    if lt is not None:
        return lt.name
    return _OTHER_NAMES.get(dlt, "UNKNOWN")


def supported_link_types() -> str:
    """The supported DLT numbers, for messages: ``"0, 1, 12, ..."``."""
    return ", ".join(str(d) for d in sorted(LINK_TYPES))
