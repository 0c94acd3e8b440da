"""Every decoded field of every packet, compared with scapy's full dissection of the same bytes."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from scapy.all import bind_layers, conf, raw
    from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_RR, fragment
    from scapy.layers.inet6 import (
        ICMPv6DestUnreach,
        ICMPv6EchoRequest,
        IPv6,
        IPv6ExtHdrDestOpt,
        IPv6ExtHdrFragment,
        IPv6ExtHdrHopByHop,
        IPv6ExtHdrRouting,
        IPv46,
    )
    from scapy.layers.ipsec import AH
    from scapy.layers.l2 import ARP, CookedLinux, CookedLinuxV2, Dot1AD, Dot1Q, Ether, Loopback
    from scapy.packet import Raw
    from scapy.utils import RawPcapReader

from netae.capture import read_packets
from netae.capture.linktypes import (
    DLT_EN10MB,
    DLT_IPV4,
    DLT_IPV6,
    DLT_LINUX_SLL,
    DLT_LINUX_SLL2,
    DLT_LOOP,
    DLT_NULL,
    DLT_RAW,
    DLT_RAW_12,
    DLT_RAW_14,
)
from netae.tables import PacketTable, SkipCounts, parse_ip
from tests.helpers.pcapgen import Record, pcap_bytes

bind_layers(Ether, Dot1Q, type=0x9100)  # pre-standard QinQ outer tag, unknown to scapy

from tests.capture.shared import EVAL  # noqa: E402

_EXT = (IPv6ExtHdrHopByHop, IPv6ExtHdrRouting, IPv6ExtHdrFragment, IPv6ExtHdrDestOpt, AH)

COLUMNS = [
    "src_hi",
    "src_lo",
    "dst_hi",
    "dst_lo",
    "src_port",
    "dst_port",
    "proto",
    "ip_version",
    "ip_len",
    "payload_len",
    "tcp_flags",
    "tcp_window",
    "icmp_type",
    "icmp_code",
    "ttl",
    "ip_id",
    "frag_offset",
    "more_fragments",
    "has_ports",
]


def scapy_expected(frame: bytes, linktype: int, caplen: int | None = None) -> dict[str, int] | None:
    """PacketTable fields from scapy's dissection of ``frame``, as if captured with ``caplen`` bytes."""
    cls = conf.l2types.get(linktype) or IPv46
    caplen = len(frame) if caplen is None else caplen
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # scapy's Loopback knows no IPv6 address family: dissect what follows the 4-byte AF.
        p = IPv46(frame[4:]) if linktype in (DLT_NULL, DLT_LOOP) else cls(frame)
    ip = p
    while ip and type(ip) not in (IP, IPv6):
        ip = ip.payload
    if not ip:
        return None
    l3off = len(frame) - len(ip.original)
    if ip.version != (4 if type(ip) is IP else 6) or (type(ip) is IP and (ip.ihl < 5 or ip.len < ip.ihl * 4)):
        return None  # malformed: skipped and counted
    e: dict[str, int] = {}
    if type(ip) is IP:
        e |= dict(src_hi=0, dst_hi=0, ip_version=4, ttl=ip.ttl, ip_id=ip.id, ip_len=ip.len)
        e["src_lo"] = parse_ip(ip.src)[1]
        e["dst_lo"] = parse_ip(ip.dst)[1]
        e |= dict(frag_offset=ip.frag * 8, more_fragments=int(ip.flags.MF), proto=ip.proto)
        hdr = ip.ihl * 4
        l4 = ip.payload if ip.frag == 0 else None
        first = ip.frag == 0
    else:
        e["src_hi"], e["src_lo"] = parse_ip(ip.src)
        e["dst_hi"], e["dst_lo"] = parse_ip(ip.dst)
        e |= dict(ip_version=6, ttl=ip.hlim, ip_len=ip.plen + 40, ip_id=0, frag_offset=0, more_fragments=0)
        hdr, nh, cur, first = 40, ip.nh, ip.payload, True
        while type(cur) in _EXT:
            if type(cur) is IPv6ExtHdrFragment:
                e |= dict(frag_offset=cur.offset * 8, more_fragments=cur.m, ip_id=cur.id)
                hdr += 8
                first = cur.offset == 0
            elif type(cur) is AH:
                hdr += (cur.payloadlen + 2) * 4
            else:
                hdr += (cur.len + 1) * 8
            nh, cur = cur.nh, cur.payload
            if not first:
                break
        e["proto"] = nh
        l4 = cur if first else None
    if type(l4) is Raw and e["proto"] in (6, 17):  # scapy stops dissecting after AH
        l4 = (TCP if e["proto"] == 6 else UDP)(l4.load)
        l4.original = l4.original or raw(l4)
    avail = caplen - (len(frame) - len(l4.original)) if l4 else 0
    if first and e["proto"] == 47 and avail < 4:
        return None  # a GRE header cut short: skipped as a truncated tunnel header
    is_icmp = (e["proto"] == 1 and e["ip_version"] == 4) or (e["proto"] == 58 and e["ip_version"] == 6)
    e |= dict(src_port=0, dst_port=0, tcp_flags=0, tcp_window=0, icmp_type=0, icmp_code=0, has_ports=0)
    thl = 0
    if first and e["proto"] == 6:
        if avail >= 4:
            e |= dict(src_port=l4.sport, dst_port=l4.dport, has_ports=1)
        if avail >= 14:
            e["tcp_flags"] = int(l4.flags)
        if avail >= 16:
            e["tcp_window"] = l4.window
        thl = l4.dataofs * 4 if avail >= 13 else 20
    elif first and e["proto"] == 17:
        if avail >= 4:
            e |= dict(src_port=l4.sport, dst_port=l4.dport, has_ports=1)
        thl = 8
    elif first and is_icmp:
        if avail >= 2:
            e |= dict(src_port=l4.type, dst_port=l4.code, icmp_type=l4.type, icmp_code=l4.code, has_ports=1)
        thl = 8
    e["payload_len"] = max(e["ip_len"] - hdr - thl, 0)
    if caplen - l3off < (20 if e["ip_version"] == 4 else 40):
        return None
    return e


def table_rows(table: PacketTable) -> list[dict[str, int]]:
    cols = {c: getattr(table, c).tolist() for c in COLUMNS}
    return [{c: cols[c][i] for c in COLUMNS} for i in range(table.n_packets)]


def read_all(data: bytes, tmp_path: Path, **kw) -> tuple[PacketTable, SkipCounts]:
    path = tmp_path / "x.cap"
    path.write_bytes(data)
    counts = SkipCounts()
    table = PacketTable.concat(list(read_packets(path, counts=counts, **kw)))
    table.validate()
    return table, counts


def compare(frames: list[bytes], linktype: int, tmp_path: Path, caplens: list[int] | None = None) -> SkipCounts:
    caplens = caplens or [len(f) for f in frames]
    recs = [
        Record(f[:c], ts_ns=1_700_000_000_000_000_000 + i * 1000, origlen=len(f))
        for i, (f, c) in enumerate(zip(frames, caplens, strict=True))
    ]
    table, counts = read_all(pcap_bytes(recs, linktype=linktype, nanosecond=True), tmp_path)
    expected = [(i, scapy_expected(f, linktype, c)) for i, (f, c) in enumerate(zip(frames, caplens, strict=True))]
    expected_rows = [e for _, e in expected if e is not None]
    got = table_rows(table)
    assert len(got) == len(expected_rows)
    for g, e in zip(got, expected_rows, strict=True):
        assert g == e
    kept = [i for i, e in expected if e is not None]
    assert table.ts_ns.tolist() == [1_700_000_000_000_000_000 + i * 1000 for i in kept]
    assert counts.records == len(frames)
    assert counts.packets == len(kept)
    assert counts.n_skipped == len(frames) - len(kept)
    return counts


def eth(**kw) -> Ether:
    return Ether(src="00:11:22:33:44:55", dst="66:77:88:99:aa:bb", **kw)


def ip_packets() -> list:
    big = IP(src="10.0.0.1", dst="10.0.0.2", id=777) / UDP(sport=5000, dport=53) / Raw(b"x" * 3000)
    return [
        IP(src="10.0.0.1", dst="10.0.0.2", ttl=7) / TCP(sport=1234, dport=80, flags="SA", window=4321) / b"hello",
        IP(src="1.2.3.4", dst="5.6.7.8") / TCP(sport=1, dport=2, options=[("MSS", 1460), ("WScale", 7)]),
        IP(src="192.168.1.1", dst="192.168.1.2", options=[IPOption_RR()]) / UDP(sport=9, dport=10) / b"abc",
        IP(src="8.8.8.8", dst="9.9.9.9") / ICMP(type=8, code=0) / b"ping",
        IP(src="8.8.8.8", dst="9.9.9.9") / ICMP(type=3, code=3) / IP(src="9.9.9.9", dst="8.8.8.8") / UDP(),
        IP(src="10.1.1.1", dst="10.1.1.2", proto=47) / Raw(b"\x00" * 30),
        *fragment(big, fragsize=1200),
        IPv6(src="2001:db8::1", dst="2001:db8::2", hlim=9) / TCP(sport=443, dport=5555, flags="PA") / b"data",
        IPv6(src="fe80::1", dst="ff02::1")
        / IPv6ExtHdrHopByHop()
        / IPv6ExtHdrRouting(addresses=["2001:db8::9"])
        / IPv6ExtHdrDestOpt()
        / UDP(sport=546, dport=547)
        / b"dhcp",
        IPv6(src="::1", dst="::2")
        / IPv6ExtHdrFragment(offset=0, m=1, id=0xDEADBEEF)
        / UDP(sport=1, dport=2)
        / (b"z" * 64),
        IPv6(src="::1", dst="::2") / IPv6ExtHdrFragment(offset=100, m=0, id=0xDEADBEEF, nh=17) / Raw(b"z" * 64),
        IPv6(src="::1", dst="::2") / AH(nh=6, payloadlen=4, spi=1, icv=b"\0" * 12) / TCP(sport=7, dport=8),
        IPv6(src="2001:db8::1", dst="2001:db8::2") / ICMPv6EchoRequest(id=1, seq=2) / b"echo",
        IPv6(src="2001:db8::1", dst="2001:db8::2") / ICMPv6DestUnreach(code=4) / IPv6() / UDP(),
        IPv6(src="::ffff:1.2.3.4", dst="::") / IPv6ExtHdrDestOpt(nh=59),
    ]


def test_ethernet_vlan_and_non_ip(tmp_path: Path) -> None:
    frames = []
    for p in ip_packets():
        frames.append(raw(eth() / p))
        frames.append(raw(eth() / Dot1Q(vlan=12) / p))
        frames.append(raw(eth() / Dot1AD(vlan=1) / Dot1Q(vlan=2) / p))
        frames.append(raw(eth(type=0x9100) / Dot1Q(vlan=3, type=0x8100) / Dot1Q(vlan=4) / p))
    frames.append(raw(eth() / ARP()))
    frames.append(raw(eth(type=0x88CC) / Raw(b"lldp" * 10)))
    counts = compare(frames, DLT_EN10MB, tmp_path)
    assert counts.skipped == {"non-IP ethertype 0x0806": 1, "non-IP ethertype 0x88cc": 1}


@pytest.mark.parametrize(
    ("linktype", "wrap"),
    [
        (DLT_LINUX_SLL, lambda p: CookedLinux(proto=0x0800 if p.version == 4 else 0x86DD) / p),
        (DLT_LINUX_SLL2, lambda p: CookedLinuxV2(proto=0x0800 if p.version == 4 else 0x86DD) / p),
        (DLT_NULL, lambda p: Loopback(type=2 if p.version == 4 else 24) / p),
        (DLT_NULL, lambda p: (b"\0\0\0\x02" if p.version == 4 else b"\0\0\0\x1e") + raw(p)),
        (DLT_LOOP, lambda p: (b"\0\0\0\x02" if p.version == 4 else b"\0\0\0\x1c") + raw(p)),
        (DLT_RAW, lambda p: p),
        (DLT_RAW_12, lambda p: p),
        (DLT_RAW_14, lambda p: p),
    ],
)
def test_link_types(linktype: int, wrap, tmp_path: Path) -> None:
    compare([raw(wrap(p)) for p in ip_packets()], linktype, tmp_path)


@pytest.mark.parametrize(("linktype", "version"), [(DLT_IPV4, 4), (DLT_IPV6, 6)])
def test_fixed_version_link_types(linktype: int, version: int, tmp_path: Path) -> None:
    compare([raw(p) for p in ip_packets() if p.version == version], linktype, tmp_path)


def test_raw_with_bad_version_is_skipped(tmp_path: Path) -> None:
    frames = [raw(p) for p in ip_packets()] + [b"\x50" + b"\0" * 40, b"\x00" * 20]
    counts = compare(frames, DLT_RAW, tmp_path)
    assert counts.skipped == {"raw IP packet with IP version 5": 1, "raw IP packet with IP version 0": 1}


def test_unsupported_link_type_counted(tmp_path: Path) -> None:
    table, counts = read_all(pcap_bytes([Record(b"\0" * 40)] * 3, linktype=107), tmp_path)
    assert table.n_packets == 0
    assert counts.skipped == {"link type 107 (FRELAY) unsupported": 3}


@pytest.mark.parametrize("cut", [0, 2, 4, 10, 13, 14, 16, 20])
def test_snap_length_cut(cut: int, tmp_path: Path) -> None:
    frames, caplens = [], []
    for p in ip_packets():
        f = raw(eth() / Dot1Q() / p)
        ip = Ether(f)[Dot1Q].payload
        l4 = ip.payload
        while type(l4) in _EXT:
            l4 = l4.payload
        frames.append(f)
        caplens.append(min(len(f), len(f) - len(l4.original) + cut) if l4 else len(f))
    compare(frames, DLT_EN10MB, tmp_path, caplens)


@pytest.mark.parametrize("caplen", [14, 18, 30, 33, 40, 53])
def test_truncated_ip_header_skipped(caplen: int, tmp_path: Path) -> None:
    frames = [raw(eth() / p) for p in ip_packets()]
    compare(frames, DLT_EN10MB, tmp_path, [min(caplen, len(f)) for f in frames])


def test_malformed_ipv4_skipped_by_reason(tmp_path: Path) -> None:
    good = raw(IP(src="1.1.1.1", dst="2.2.2.2") / UDP())
    bad_ihl = bytes([0x44]) + good[1:]
    short_total = good[:2] + (10).to_bytes(2, "big") + good[4:]
    v6_in_v4 = bytes([0x65]) + good[1:]
    frames = [raw(eth(type=0x0800)) + f for f in (good, bad_ihl, short_total, v6_in_v4)]
    table, counts = read_all(pcap_bytes([Record(f) for f in frames]), tmp_path)
    assert table.n_packets == 1
    assert counts.skipped == {
        "IPv4 header length < 20": 1,
        "IPv4 total length < header length": 1,
        "IP version 6 where IPv4 was expected": 1,
    }


def test_tso_zero_total_length_uses_frame(tmp_path: Path) -> None:
    f = bytearray(raw(eth() / IP(src="1.1.1.1", dst="2.2.2.2") / TCP() / (b"x" * 100)))
    f[16:18] = b"\0\0"
    table, counts = read_all(pcap_bytes([Record(bytes(f)), Record(bytes(f))]), tmp_path)
    assert table.ip_len.tolist() == [len(f) - 14] * 2
    assert table.payload_len.tolist() == [100, 100]
    assert counts.warnings is not None
    assert len(counts.warnings) == 1


@pytest.mark.parametrize("name", ["train_benign.pcap", "dev_mixed.pcap", "benign_long.pcap"])
def test_eval_captures_match_scapy(name: str) -> None:
    path = EVAL / name
    if not path.exists():
        pytest.skip(f"{path} not present in this checkout")
    n = 3000
    frames, linktype = [], DLT_EN10MB
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reader = RawPcapReader(str(path))
        linktype = reader.linktype
        for i, (data, _meta) in enumerate(reader):
            if i >= n:
                break
            frames.append(data)
        reader.close()
    counts = SkipCounts()
    table = PacketTable.concat(list(read_packets(path, counts=counts, chunk_bytes=64 << 10)))
    expected = [e for e in (scapy_expected(f, linktype) for f in frames) if e is not None]
    got = table_rows(table)[: len(expected)]
    assert got == expected


@pytest.mark.parametrize("name", ["dev_mixed.pcap", "hard/dev_mixed.pcap"])
def test_kernel_matches_the_numpy_oracle(name):
    """Every column, DNS question fields included, and every skip reason, against the oracle."""
    import dataclasses

    from netae.capture import decode_records, read_records
    from tests.reference.decode_numpy import decode_records_numpy

    path = EVAL / name
    if not path.exists():
        pytest.skip("needs the shared eval captures")
    batch = next(iter(read_records(path)))
    ca, cb = SkipCounts(), SkipCounts()
    a = decode_records(batch, counts=ca)
    b = decode_records_numpy(batch, counts=cb)
    assert a.n_packets == b.n_packets > 0
    assert int((a.dns_qname_len > 0).sum()) > 100
    for f in dataclasses.fields(a):
        np.testing.assert_array_equal(getattr(a, f.name), getattr(b, f.name), err_msg=f.name)
    assert ca.skipped == cb.skipped


def test_sctp_ports_are_decoded_and_an_association_is_one_flow(tmp_path: Path) -> None:
    """SCTP (protocol 132): ports from the common header, so 7 -> 7 is a flow with ports (issue 20)."""
    from scapy.layers.sctp import SCTP, SCTPChunkData, SCTPChunkInit

    from netae.flows import assemble_flows

    frames = [
        raw(eth() / IP(src="10.0.0.1", dst="10.0.0.2") / SCTP(sport=7, dport=7) / SCTPChunkInit()),
        raw(eth() / IP(src="10.0.0.2", dst="10.0.0.1") / SCTP(sport=7, dport=7) / SCTPChunkData(data=b"x" * 10)),
        raw(eth() / IPv6(src="2001:db8::1", dst="2001:db8::2") / SCTP(sport=5000, dport=38412) / SCTPChunkInit()),
    ]
    table, _ = read_all(pcap_bytes([Record(f, ts_ns=i * 1000) for i, f in enumerate(frames)]), tmp_path)
    assert table.proto.tolist() == [132, 132, 132]
    assert table.src_port.tolist() == [7, 7, 5000] and table.dst_port.tolist() == [7, 7, 38412]
    assert table.has_ports.all()
    assert table.payload_len.tolist() == [int(table.ip_len[i]) - (20 if i < 2 else 40) - 12 for i in range(3)]
    flows = assemble_flows(table, idle_timeout_s=120.0, active_timeout_s=1800.0)
    assert flows.n_flows == 2
    assert (flows.src_port[0], flows.dst_port[0], flows.fwd_pkts[0], flows.bwd_pkts[0]) == (7, 7, 1, 1)
