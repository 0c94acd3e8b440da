#!/usr/bin/env python3
"""Write netae's sample captures: normal office traffic, and a labelled mix with attacks.

    python sample_pcaps/generate.py [--out DIR]

Every value is drawn from fixed seeds and every timestamp counts from a fixed base epoch, so
each run writes byte-identical files (see README.md in this folder for what each file holds).

The network is one office LAN, 10.10.0.0/24 (and fd00:10:10::/64): servers .1-.40, clients
.101-.126 (each scenario has its own clients and ephemeral ports), attacker .200. The capture
point is a tap next to the servers, so a server's packets are seen when it sends them and a
client's packets when they arrive; every round trip (RTT) is drawn per packet around the
client's base RTT (wired or Wi-Fi).

Frames are assembled with ``struct`` (Ethernet, 802.1Q, IPv4, IPv6, TCP, UDP, ICMP, with real
checksums) because building each of ~40,000 packets as scapy layers takes about a millisecond
apiece; scapy encodes the DNS messages (cached per question) and ``tests/test_samples.py``
dissects the frames with scapy and checks every checksum. Records are cut at a snap length of
96 bytes the way ``tcpdump -s 96`` cuts them: the record header keeps the original frame
length, and the IP total-length fields stay real.

The flow table of the mixed capture (``mixed_labels.csv``) comes from what the generator emitted
and why, not from reading the capture back: flows as in /work/shared/eval/README.md (bidirectional
5-tuple, a gap over 120 s starts a new flow, ICMP with ports 0/0, bytes = sum of IP total
lengths, source = sender of the first packet).
"""

from __future__ import annotations

import argparse
import csv
import math
import random
import struct
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

from scapy.layers.dns import DNS, DNSQR, DNSRR, DNSRRMX, DNSRROPT, DNSRRSOA

SNAPLEN = 96
BASE_EPOCH_S = 1_754_042_400  # 2025-08-01 10:00:00 UTC; each scenario starts a day after the previous
FLOW_IDLE_S = 120.0
LABEL_FIELDS = (
    "src_ip",
    "src_port",
    "dst_ip",
    "dst_port",
    "protocol",
    "first_seen",
    "last_seen",
    "packets",
    "bytes",
    "label",
)

ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
ETH_VLAN = 0x8100
PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_ICMPV6 = 58

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
# MSS 1460, NOP, window scale, NOP, NOP, SACK permitted (12 bytes, as Windows and many stacks send)
SYN_OPTIONS = bytes.fromhex("020405b4") + b"\x01\x03\x03\x08" + b"\x01\x01\x04\x02"
SYN_OPTIONS6 = bytes.fromhex("020405a0") + b"\x01\x03\x03\x08" + b"\x01\x01\x04\x02"
DELAYED_ACK_S = 0.040


# ----------------------------------------------------------------------------------- packets


def checksum(data: bytes) -> int:
    """Internet checksum (RFC 1071) of ``data``, padded with a zero byte when its length is odd."""
    if len(data) % 2:
        data += b"\0"
    s: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


@dataclass(frozen=True, slots=True)
class Host:
    """One machine on the LAN: addresses, TTL, TCP window and base round-trip time to the servers."""

    name: str
    ip: str
    mac: bytes
    ttl: int = 64
    ip6: str | None = None
    window: int = 502
    rtt_s: float = 0.0003
    rtt_jitter: float = 0.25

    @property
    def ip_b(self) -> bytes:
        return IPv4Address(self.ip).packed

    @property
    def ip6_b(self) -> bytes:
        assert self.ip6 is not None
        return IPv6Address(self.ip6).packed


@dataclass(slots=True)
class Packet:
    """One emitted packet: capture fields plus what the generator knows about it."""

    ts_us: int
    order: int
    frame: bytes  # cut at the snap length
    orig_len: int
    ip_len: int
    key: tuple[int, str, int, str, int]  # protocol, src ip, src port, dst ip, dst port
    label: str


@dataclass(slots=True)
class Capture:
    """Collects the packets of one scenario and turns them into frames on the way in."""

    base_us: int
    vlan: int | None = None
    packets: list[Packet] = field(default_factory=list)

    def emit(
        self,
        t: float,
        src: Host,
        dst: Host,
        proto: int,
        l4: bytes,
        *,
        ident: int,
        v6: bool,
        ports: tuple[int, int],
        label: str,
    ) -> None:
        """Wrap a finished layer-4 message in IP and Ethernet (and 802.1Q) and keep it."""
        if v6:
            flow_label = zlib.crc32(f"{src.ip6} {ports}".encode()) & 0xFFFFF if proto != PROTO_ICMPV6 else 0
            ip = struct.pack("!IHBB", (6 << 28) | flow_label, len(l4), proto, src.ttl) + src.ip6_b + dst.ip6_b
            ethertype = ETH_IPV6
            ip_len = len(ip) + len(l4)
            s_ip, d_ip = str(src.ip6), str(dst.ip6)
        else:
            ip_len = 20 + len(l4)
            hdr = struct.pack(
                "!BBHHHBBH4s4s", 0x45, 0, ip_len, ident & 0xFFFF, 0x4000, src.ttl, proto, 0, src.ip_b, dst.ip_b
            )
            ip = hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:]
            ethertype = ETH_IPV4
            s_ip, d_ip = src.ip, dst.ip
        if self.vlan is None:
            eth = dst.mac + src.mac + struct.pack("!H", ethertype)
        else:
            eth = dst.mac + src.mac + struct.pack("!HHH", ETH_VLAN, self.vlan, ethertype)
        frame = eth + ip + l4
        self.packets.append(
            Packet(
                ts_us=self.base_us + round(t * 1e6),
                order=len(self.packets),
                frame=frame[:SNAPLEN],
                orig_len=len(frame),
                ip_len=ip_len,
                key=(proto, s_ip, ports[0], d_ip, ports[1]),
                label=label,
            )
        )

    def sorted_packets(self) -> list[Packet]:
        return sorted(self.packets, key=lambda p: (p.ts_us, p.order))


def _pseudo(src: Host, dst: Host, proto: int, length: int, v6: bool) -> bytes:
    if v6:
        return src.ip6_b + dst.ip6_b + struct.pack("!IxxxB", length, proto)
    return src.ip_b + dst.ip_b + struct.pack("!xBH", proto, length)


def tcp_bytes(
    src: Host,
    dst: Host,
    sport: int,
    dport: int,
    seq: int,
    ack: int,
    flags: int,
    window: int,
    payload: bytes,
    *,
    options: bytes = b"",
    v6: bool = False,
) -> bytes:
    off = (20 + len(options)) // 4
    ackno = ack & 0xFFFFFFFF if flags & ACK else 0
    hdr = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ackno, off << 4, flags, window, 0, 0) + options
    seg = hdr + payload
    ck = checksum(_pseudo(src, dst, PROTO_TCP, len(seg), v6) + seg)
    return seg[:16] + struct.pack("!H", ck) + seg[18:]


def udp_bytes(src: Host, dst: Host, sport: int, dport: int, payload: bytes, *, v6: bool = False) -> bytes:
    length = 8 + len(payload)
    dgram = struct.pack("!HHHH", sport, dport, length, 0) + payload
    ck = checksum(_pseudo(src, dst, PROTO_UDP, length, v6) + dgram) or 0xFFFF
    return dgram[:6] + struct.pack("!H", ck) + dgram[8:]


def icmp_echo_bytes(src: Host, dst: Host, kind: int, ident: int, seq: int, payload: bytes, *, v6: bool) -> bytes:
    msg = struct.pack("!BBHHH", kind, 0, 0, ident, seq) + payload
    ck = checksum(_pseudo(src, dst, PROTO_ICMPV6, len(msg), True) + msg) if v6 else checksum(msg)
    return msg[:2] + struct.pack("!H", ck) + msg[4:]


# ----------------------------------------------------------------------------------- TCP


class TcpConn:
    """One TCP connection between a client and a server, with sequence numbers and timing.

    Methods take the capture time at which an action starts and return the capture time of the
    connection's last packet so far.
    """

    def __init__(
        self,
        sc: Scenario,
        client: Host,
        cport: int,
        server: Host,
        sport: int,
        *,
        label: str = "benign",
        v6: bool = False,
    ) -> None:
        self.sc, self.client, self.server = sc, client, server
        self.cport, self.sport, self.label, self.v6 = cport, sport, label, v6
        rng = sc.rng
        self.c_next = rng.getrandbits(32)
        self.s_next = rng.getrandbits(32)
        self.c_id = rng.getrandbits(16)
        self.s_id = rng.getrandbits(16)
        self.mss = 1440 if v6 else 1460
        self.c_win = client.window + rng.randint(0, 8)
        self.s_win = server.window + rng.randint(0, 8)
        self.acked_at = 0.0  # capture time of the receiver's last ack of the latest stream()

    # -- low level
    def rtt(self) -> float:
        return self.sc.rtt(self.client)

    def send(self, t: float, from_client: bool, flags: int, payload: bytes = b"", *, options: bytes = b"") -> None:
        """Emit one segment carrying the sender's next sequence number and the peer's as ack."""
        if from_client:
            src, dst, sp, dp, win = self.client, self.server, self.cport, self.sport, self.c_win
            seq, ack = self.c_next, self.s_next
            self.c_id += 1
            ident = self.c_id
        else:
            src, dst, sp, dp, win = self.server, self.client, self.sport, self.cport, self.s_win
            seq, ack = self.s_next, self.c_next
            self.s_id += 1
            ident = self.s_id
        if flags & SYN:
            win = 64240 if from_client else 65160
        l4 = tcp_bytes(src, dst, sp, dp, seq, ack, flags, win, payload, options=options, v6=self.v6)
        self.sc.cap.emit(t, src, dst, PROTO_TCP, l4, ident=ident, v6=self.v6, ports=(sp, dp), label=self.label)
        step = len(payload) + (1 if flags & (SYN | FIN) else 0)
        if from_client:
            self.c_next = (self.c_next + step) & 0xFFFFFFFF
        else:
            self.s_next = (self.s_next + step) & 0xFFFFFFFF

    # -- connection life
    def handshake(self, t: float) -> float:
        self.send(t, True, SYN, options=SYN_OPTIONS6 if self.v6 else SYN_OPTIONS)
        t_sa = t + self.sc.kernel_delay()
        self.send(t_sa, False, SYN | ACK, options=SYN_OPTIONS6 if self.v6 else SYN_OPTIONS)
        t_ack = t_sa + self.rtt()
        self.send(t_ack, True, ACK)
        return t_ack

    def close(self, t: float, *, by_client: bool = True) -> float:
        """FIN from one side, FIN-ACK from the other, last ACK."""
        self.send(t, by_client, FIN | ACK)
        t2 = t + (self.sc.kernel_delay() if by_client else self.rtt())
        self.send(t2, not by_client, FIN | ACK)
        t3 = t2 + (self.rtt() if by_client else self.sc.kernel_delay())
        self.send(t3, by_client, ACK)
        return t3

    def stream(self, t: float, from_client: bool, data: bytes) -> float:
        """Send ``data`` as MSS-sized segments in slow-start rounds; the receiver acks every second one.

        Returns the capture time of the last data segment (acks may come later; see ``self.acked_at``).
        """
        rng = self.sc.rng
        mss = self.mss
        n = len(data)
        gap = 1500 * 8 / self.sc.link_bps(self.client)  # a full segment on the client's (slower) link
        cwnd, pos, t_round, t_last, n_seg = 10, 0, t, t, 0
        acks: list[tuple[float, int]] = []  # (time, ack number) of the receiver's acks
        base_seq = self.c_next if from_client else self.s_next
        while pos < n:
            t_seg = t_round
            for _ in range(cwnd):
                if pos >= n:
                    break
                chunk = data[pos : pos + mss]
                pos += len(chunk)
                n_seg += 1
                flags = ACK | (PSH if pos >= n else 0)
                self.send(t_seg, from_client, flags, chunk)
                t_last = t_seg
                if n_seg % 2 == 0 or pos >= n:
                    delay = self.sc.kernel_delay() if from_client else self.rtt()
                    if pos >= n and n_seg % 2 == 1:
                        delay += DELAYED_ACK_S * rng.uniform(0.2, 1.0) if from_client else 0.0
                    acks.append((t_seg + delay, (base_seq + pos) & 0xFFFFFFFF))
                t_seg += gap * rng.uniform(0.9, 1.3)
            rtt = self.rtt()
            t_round = max(t_seg, t_round + rtt)
            cwnd = min(cwnd * 2, 90)
        # the receiver's acks carry its own (unchanged) sequence number
        for t_ack, ackno in acks:
            self._ack(t_ack, not from_client, ackno)
        self.acked_at = acks[-1][0] if acks else t_last
        return t_last

    def _ack(self, t: float, from_client: bool, ackno: int) -> None:
        """A pure ACK from one side acknowledging the peer's bytes up to ``ackno``."""
        if from_client:
            saved = self.s_next
            self.s_next = ackno
            self.send(t, True, ACK)
            self.s_next = saved
        else:
            saved = self.c_next
            self.c_next = ackno
            self.send(t, False, ACK)
            self.c_next = saved

    def exchange(self, t: float, request: bytes, response: bytes, proc_s: float) -> float:
        """Client sends ``request``; after ``proc_s`` the server answers; returns the last packet's time."""
        t_req = self.stream(t, True, request) if len(request) > self.mss else self._one(t, True, request)
        t_resp = t_req + proc_s
        if proc_s > DELAYED_ACK_S and len(request) <= self.mss:
            self._ack(t_req + DELAYED_ACK_S * self.sc.rng.uniform(0.9, 1.1), False, self.c_next)
        if not response:
            return t_req
        t_last = self.stream(t_resp, False, response)
        return max(t_last, self.acked_at)

    def _one(self, t: float, from_client: bool, payload: bytes) -> float:
        self.send(t, from_client, PSH | ACK, payload)
        self.acked_at = t
        return t


# ----------------------------------------------------------------------------------- content

_WORDS = (
    b"lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore "
    b"et dolore magna aliqua ut enim ad minim veniam quis nostrud exercitation ullamco laboris nisi "
)
_TEXT = (_WORDS * 2000)[:300_000]
_USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Safari/605.1.15",
    "curl/8.5.0",
    "python-requests/2.32.3",
)
_DNS_CACHE: dict[tuple[object, ...], bytes] = {}


def dns_query(name: str, qtype: str) -> bytes:
    key = ("q", name, qtype)
    if key not in _DNS_CACHE:
        _DNS_CACHE[key] = bytes(DNS(id=0, rd=1, ad=1, qd=[DNSQR(qname=name, qtype=qtype)], ar=[DNSRROPT(rclass=1232)]))
    return _DNS_CACHE[key]


def dns_answer(name: str, qtype: str, target: Host | None, *, nx: bool) -> bytes:
    key = ("a", name, qtype, target.name if target else "", nx)
    if key not in _DNS_CACHE:
        soa = DNSRRSOA(
            rrname="corp.lan",
            ttl=300,
            mname="ns1.corp.lan",
            rname="hostmaster.corp.lan",
            serial=2025080101,
            refresh=3600,
            retry=600,
            expire=86400,
            minimum=300,
        )
        an: list[object] = []
        ns: list[object] = []
        if nx or target is None:
            ns = [soa]
        elif qtype == "A":
            an = [DNSRR(rrname=name, type="A", ttl=300, rdata=target.ip)]
        elif qtype == "AAAA":
            if target.ip6:
                an = [DNSRR(rrname=name, type="AAAA", ttl=300, rdata=target.ip6)]
            else:
                ns = [soa]  # no data
        elif qtype == "MX":
            an = [DNSRRMX(rrname=name, ttl=3600, preference=10, exchange="mail.corp.lan")]
        else:
            an = [DNSRR(rrname=name, type="TXT", ttl=3600, rdata=["v=spf1 ip4:10.10.0.0/24 -all"])]
        msg = DNS(
            id=0,
            qr=1,
            aa=1,
            rd=1,
            ra=1,
            rcode=3 if nx else 0,
            qd=[DNSQR(qname=name, qtype=qtype)],
            an=an or None,
            ns=ns or None,
            ar=[DNSRROPT(rclass=1232)],
        )
        _DNS_CACHE[key] = bytes(msg)
    return _DNS_CACHE[key]


def http_request(rng: random.Random, method: str, path: str, host: str, *, body_len: int = 0, agent: str) -> bytes:
    lines = [
        f"{method} {path} HTTP/1.1",
        f"Host: {host}",
        f"User-Agent: {agent}",
        "Accept: */*",
        "Accept-Encoding: gzip, deflate",
    ]
    if rng.random() < 0.6:
        lines.append("Cookie: sid=" + rng.randbytes(rng.randint(8, 40)).hex())
    if body_len:
        lines += ["Content-Type: application/octet-stream", f"Content-Length: {body_len}"]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode()
    return head + _TEXT[:body_len] if body_len <= len(_TEXT) else head + rng.randbytes(body_len)


def http_response(rng: random.Random, status: str, body_len: int, *, ctype: str = "text/html") -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nServer: nginx/1.24.0\r\nDate: Fri, 01 Aug 2025 10:00:00 GMT\r\n"
        f"Content-Type: {ctype}\r\nContent-Length: {body_len}\r\nConnection: keep-alive\r\n\r\n"
    ).encode()
    start = rng.randrange(0, 1000)
    return head + _TEXT[start : start + body_len]


def tls_record(rng: random.Random, ctype: int, n: int) -> bytes:
    """TLS 1.2-framed records holding ``n`` bytes (random contents stand in for ciphertext).

    More than 16 KiB goes into several records, as a TLS stack splits it.
    """
    out = []
    while n > 0:
        k = min(n, 16401)
        out.append(struct.pack("!BHH", ctype, 0x0303, k) + rng.randbytes(k))
        n -= k
    return b"".join(out)


# ----------------------------------------------------------------------------------- network


def _mac(oui: str, last: int) -> bytes:
    return bytes.fromhex(oui.replace(":", "")) + bytes([0x10, 0x00, last])


def _server(name: str, last: int, *, v6: bool = True) -> Host:
    return Host(
        name=name,
        ip=f"10.10.0.{last}",
        mac=_mac("00:16:3e", last),
        ip6=f"fd00:10:10::{last:x}" if v6 else None,
        window=509,
        rtt_s=0.0002,
    )


GATEWAY = _server("gw", 1, v6=False)
WEB = _server("web", 10)  # intranet: HTTP 80, HTTPS 443
APP = _server("app", 11)  # business app: HTTPS 443, JSON API on 8080
DNS_SRV = _server("dns", 20)  # resolver, authoritative for corp.lan
FILES = _server("files", 30, v6=False)  # file server: HTTP 80 downloads
BASTION = _server("bastion", 40, v6=False)  # ssh 22
ATTACKER = Host(name="attacker", ip="10.10.0.200", mac=_mac("08:00:27", 200), ttl=64, window=501, rtt_s=0.0004)

_NAMES = {
    "intranet.corp.lan": WEB,
    "www.corp.lan": WEB,
    "wiki.corp.lan": WEB,
    "static.corp.lan": WEB,
    "crm.corp.lan": APP,
    "api.corp.lan": APP,
    "hr.corp.lan": APP,
    "files.corp.lan": FILES,
    "bastion.corp.lan": BASTION,
    "dns.corp.lan": DNS_SRV,
}
_OS = {  # ttl, window (scaled), user agents
    "windows": (128, 1026, (0, 1)),
    "linux": (64, 502, (1, 3, 4)),
    "mac": (64, 2058, (2, 3)),
}


def make_clients(rng: random.Random, lasts: Iterable[int], *, dual_stack: float = 0.0) -> list[Host]:
    out = []
    for last in lasts:
        os_name = rng.choice(("windows", "windows", "linux", "mac"))
        ttl, window, _ = _OS[os_name]
        wifi = rng.random() < 0.4
        out.append(
            Host(
                name=f"{os_name}-{last}",
                ip=f"10.10.0.{last}",
                mac=_mac(rng.choice(("3c:22:fb", "f8:75:a4", "a4:83:e7", "98:fa:9b")), last),
                ttl=ttl,
                ip6=f"fd00:10:10::{last:x}" if rng.random() < dual_stack else None,
                window=window,
                rtt_s=rng.uniform(0.003, 0.009) if wifi else rng.uniform(0.00015, 0.0006),
                rtt_jitter=0.45 if wifi else 0.2,
            )
        )
    return out


# ----------------------------------------------------------------------------------- scenario


class Scenario:
    """Benign users (and, in the mixed capture, an attacker) on the LAN for ``duration_s`` seconds."""

    def __init__(self, name: str, *, seed: int, day: int, duration_s: float, clients: list[Host], vlan: int | None):
        self.name = name
        self.rng = random.Random(seed)
        self.duration_s = duration_s
        self.clients = clients
        self.cap = Capture(base_us=(BASE_EPOCH_S + day * 86400) * 1_000_000, vlan=vlan)
        self.next_port = {c.ip: self.rng.randint(33000, 58000) for c in clients + [ATTACKER]}
        self.used: set[tuple[str, int, int]] = set()
        self.dns_port_pool = list(range(1024, 65536))
        self.pages = [(f"/{rng_word(self.rng)}/{rng_word(self.rng)}.html", self._page_size()) for _ in range(60)]
        self.assets = [
            (
                f"/static/{rng_word(self.rng)}.{self.rng.choice(('js', 'css', 'png', 'svg', 'woff2'))}",
                self._asset_size(),
            )
            for _ in range(80)
        ]
        self.weights = {
            c.ip: {
                "dns": self.rng.uniform(6.0, 9.0),
                "web": self.rng.uniform(1.5, 2.5),
                "tls": self.rng.uniform(1.5, 2.5),
                "api": self.rng.uniform(1.0, 2.0),
                "upload": self.rng.uniform(0.15, 0.35),
                "ping": self.rng.uniform(0.2, 0.6),
            }
            for c in clients
        }

    # -- draws
    def _page_size(self) -> int:
        return int(min(40_000, max(300, self.rng.lognormvariate(math.log(3000), 0.9))))

    def _asset_size(self) -> int:
        return int(min(20_000, max(120, self.rng.lognormvariate(math.log(1200), 1.0))))

    def soon(self, t: float) -> float:
        """``t`` plus a random fraction of a second, so that scheduled events do not start on whole seconds."""
        return t + self.rng.uniform(0.0, 0.999)

    def rtt(self, client: Host) -> float:
        r = client.rtt_s * self.rng.lognormvariate(0.0, client.rtt_jitter)
        if self.rng.random() < 0.02:
            r += self.rng.uniform(0.002, 0.02)  # a queueing spike
        return r

    def kernel_delay(self) -> float:
        return self.rng.uniform(0.000015, 0.00008)

    def link_bps(self, client: Host) -> float:
        return 120e6 if client.rtt_s > 0.002 else 940e6

    def think(self, median_s: float, sigma: float = 0.9) -> float:
        return self.rng.lognormvariate(math.log(median_s), sigma)

    def proc(self, median_s: float) -> float:
        return self.rng.lognormvariate(math.log(median_s), 0.8)

    def ephemeral(self, host: Host, proto: int = PROTO_TCP) -> int:
        while True:
            port = self.next_port[host.ip]
            self.next_port[host.ip] = port + self.rng.randint(1, 9)
            if self.next_port[host.ip] > 60999:
                self.next_port[host.ip] = 32768 + self.rng.randint(0, 999)
            if (host.ip, port, proto) not in self.used:
                self.used.add((host.ip, port, proto))
                return port

    def random_port(self, host: Host, proto: int = PROTO_UDP) -> int:
        while True:
            port = self.rng.randint(1024, 65535)
            if (host.ip, port, proto) not in self.used:
                self.used.add((host.ip, port, proto))
                return port

    def use_v6(self, client: Host, server: Host) -> bool:
        return bool(client.ip6 and server.ip6) and self.rng.random() < 0.6

    # -- benign sessions
    def lookup(self, t: float, client: Host, names: list[tuple[str, str]], *, one_socket: bool, v6: bool) -> float:
        """DNS queries from ``client``; A+AAAA of one name share a socket, separate runs don't."""
        port = self.random_port(client)
        t_end = t
        for i, (name, qtype) in enumerate(names):
            if i and not one_socket:
                port = self.random_port(client)
                t += self.think(0.05, 1.0)
            qid = self.rng.getrandbits(16)
            q = dns_query(name, qtype)
            q = struct.pack("!H", qid) + q[2:]
            self._udp(t, client, DNS_SRV, port, 53, q, v6=v6)
            nx = name not in _NAMES
            resp_delay = self.proc(0.0004) if self.rng.random() < 0.8 else self.proc(0.02)
            a = dns_answer(name, qtype, _NAMES.get(name), nx=nx)
            t_a = t + resp_delay + self.rtt(client)
            self._udp(t_a, DNS_SRV, client, 53, port, struct.pack("!H", qid) + a[2:], v6=v6)
            t_end = t_a
            t = t_a + (self.kernel_delay() if one_socket else 0)
        return t_end

    def _udp(self, t: float, src: Host, dst: Host, sport: int, dport: int, payload: bytes, *, v6: bool) -> None:
        l4 = udp_bytes(src, dst, sport, dport, payload, v6=v6)
        self.cap.emit(
            t, src, dst, PROTO_UDP, l4, ident=self.rng.getrandbits(16), v6=v6, ports=(sport, dport), label="benign"
        )

    def session_dns(self, t: float, client: Host) -> None:
        names = []
        for _ in range(self.rng.choice((1, 1, 1, 2, 3))):
            if self.rng.random() < 0.16:
                name = self.rng.choice(("wpad", "printer", "nas", "intranet", "sharepoint", "jira")) + rng_word(
                    self.rng, 2
                )
                name += self.rng.choice((".corp.lan", ".lan", ".local.corp.lan"))
            else:
                name = self.rng.choice(list(_NAMES))
            qtype = self.rng.choices(("A", "AAAA", "MX", "TXT"), weights=(70, 18, 6, 6))[0]
            names.append((name, qtype))
        self.lookup(t, client, names, one_socket=False, v6=self.use_v6(client, DNS_SRV))

    def _resolve(self, t: float, client: Host, name: str, v6: bool) -> float:
        if self.rng.random() < 0.45:  # the answer is still cached
            return t
        return self.lookup(t, client, [(name, "A"), (name, "AAAA")], one_socket=True, v6=v6) + self.kernel_delay()

    def session_web(self, t: float, client: Host, *, tls: bool) -> None:
        """A browser visit: page, its assets over 1-3 keep-alive connections, maybe more pages."""
        rng = self.rng
        server = WEB if not tls or rng.random() < 0.6 else APP
        host = next(n for n, h in _NAMES.items() if h is server)
        v6 = self.use_v6(client, server)
        t = self._resolve(t, client, host, v6)
        agent = _USER_AGENTS[rng.choice(_OS[client.name.split("-")[0]][2])]
        n_conns = rng.choice((1, 1, 1, 2, 2, 3))
        conns: list[tuple[TcpConn, float]] = []
        for i in range(n_conns):
            c = TcpConn(self, client, self.ephemeral(client), server, 443 if tls else 80, v6=v6)
            t_open = t + i * rng.uniform(0.0002, 0.003)
            t_ready = c.handshake(t_open)
            if tls:
                t_ready = self._tls_handshake(c, t_ready)
            conns.append((c, t_ready))
        free = [tc for _, tc in conns]
        for page in range(rng.choice((1, 1, 1, 1, 2, 2, 3))):
            path, size = rng.choice(self.pages)
            t0 = max(free[0], t)
            req = http_request(rng, "GET", path, host, agent=agent)
            resp = (
                http_response(rng, "200 OK", size) if rng.random() < 0.9 else http_response(rng, "304 Not Modified", 0)
            )
            free[0] = self._exchange(conns[0][0], t0 + rng.uniform(0.0001, 0.002), req, resp, self.proc(0.008), tls)
            t_page = free[0]
            for k in range(rng.choice((0, 0, 1, 1, 2, 3, 4)) if page == 0 else rng.choice((0, 0, 0, 1))):
                j = k % n_conns
                apath, asize = rng.choice(self.assets)
                areq = http_request(rng, "GET", apath, host, agent=agent)
                aresp = http_response(rng, "200 OK", asize, ctype="application/octet-stream")
                t_a = max(free[j], t_page) + rng.uniform(0.0002, 0.004)
                free[j] = self._exchange(conns[j][0], t_a, areq, aresp, self.proc(0.002), tls)
            t = max(free) + self.think(4.0, 1.0)
        for (c, _), tf in zip(conns, free, strict=True):
            if rng.random() < 0.4:  # the server's keep-alive timeout ends it
                t_close = tf + rng.uniform(4.9, 5.1)
                if tls:
                    c.send(t_close, False, PSH | ACK, tls_record(rng, 0x15, 26))
                    t_close += rng.uniform(0.00002, 0.0001)
                c.close(t_close, by_client=False)
            else:
                t_close = tf + self.think(1.5, 1.0)
                if tls:
                    c.send(t_close, True, PSH | ACK, tls_record(rng, 0x15, 26))
                    t_close += rng.uniform(0.00001, 0.00005)
                c.close(t_close, by_client=True)

    def _exchange(self, c: TcpConn, t: float, req: bytes, resp: bytes, proc_s: float, tls: bool) -> float:
        if tls:
            req = tls_record(self.rng, 0x17, len(req) + 17)
            resp = tls_record(self.rng, 0x17, len(resp) + 17) if resp else resp
        return c.exchange(t, req, resp, proc_s)

    def _tls_handshake(self, c: TcpConn, t: float) -> float:
        rng = self.rng
        hello = struct.pack("!BHH", 0x16, 0x0301, 512) + b"\x01\x00\x01\xfc\x03\x03" + rng.randbytes(506)
        cert_len = 1800 if c.server is WEB else 2900
        flight = (
            tls_record(rng, 0x16, 122) + tls_record(rng, 0x14, 1) + tls_record(rng, 0x17, cert_len + rng.randint(0, 40))
        )
        t = c.exchange(t + rng.uniform(0.0001, 0.001), hello, flight, self.proc(0.0015))
        fin = tls_record(rng, 0x14, 1) + tls_record(rng, 0x17, 53)
        t = c._one(t + rng.uniform(0.0005, 0.002), True, fin)
        tickets = tls_record(rng, 0x17, 233) + tls_record(rng, 0x17, 233)
        c.send(t + self.proc(0.0003), False, PSH | ACK, tickets)
        return t + rng.uniform(0.0005, 0.003)

    def session_api(self, t: float, client: Host) -> None:
        """A script's JSON calls to the app server: one short connection per call, server closes."""
        rng = self.rng
        v6 = self.use_v6(client, APP)
        t = self._resolve(t, client, "api.corp.lan", v6)
        for _ in range(rng.choice((1, 1, 2, 3, 5))):
            c = TcpConn(self, client, self.ephemeral(client), APP, 8080, v6=v6)
            t1 = c.handshake(t)
            body = rng.randint(40, 1400)
            req = http_request(
                rng, "POST", f"/api/v2/{rng_word(rng)}", "api.corp.lan", body_len=body, agent=_USER_AGENTS[4]
            )
            resp = http_response(rng, "200 OK", rng.randint(60, 3500), ctype="application/json")
            t2 = c.exchange(t1 + rng.uniform(0.00005, 0.0005), req, resp, self.proc(0.015))
            c.close(t2 + rng.uniform(0.00002, 0.0002), by_client=False)
            t = t2 + self.think(0.8, 1.2)

    def session_upload(self, t: float, client: Host) -> None:
        """A small form upload (1-40 KB) over HTTP or HTTPS."""
        rng = self.rng
        tls = rng.random() < 0.6
        v6 = self.use_v6(client, WEB)
        t = self._resolve(t, client, "intranet.corp.lan", v6)
        c = TcpConn(self, client, self.ephemeral(client), WEB, 443 if tls else 80, v6=v6)
        t = c.handshake(t)
        if tls:
            t = self._tls_handshake(c, t)
        size = int(rng.lognormvariate(math.log(6000), 0.9))
        size = max(1000, min(40_000, size))
        req = http_request(rng, "POST", "/forms/submit", "intranet.corp.lan", body_len=size, agent=_USER_AGENTS[0])
        resp = http_response(rng, "201 Created", rng.randint(100, 600))
        t = self._exchange(c, t + rng.uniform(0.0001, 0.001), req, resp, self.proc(0.03), tls)
        c.close(t + self.think(0.5, 1.0), by_client=True)

    def session_ping(self, t: float, client: Host) -> None:
        rng = self.rng
        target = rng.choice((GATEWAY, WEB, FILES, DNS_SRV))
        v6 = self.use_v6(client, target)
        ident = rng.getrandbits(16)
        for seq in range(1, rng.randint(1, 4) + 1):
            payload = struct.pack("!II", int(t), rng.getrandbits(20)) + bytes(range(0x10, 0x38))
            kind_req, kind_rep = (128, 129) if v6 else (8, 0)
            proto = PROTO_ICMPV6 if v6 else PROTO_ICMP
            for src, dst, kind, tt in (
                (client, target, kind_req, t),
                (target, client, kind_rep, t + self.rtt(client) + self.kernel_delay()),
            ):
                l4 = icmp_echo_bytes(src, dst, kind, ident, seq, payload, v6=v6)
                self.cap.emit(tt, src, dst, proto, l4, ident=rng.getrandbits(16), v6=v6, ports=(0, 0), label="benign")
            t += rng.uniform(0.995, 1.008)

    def session_download(self, t: float, client: Host, size: int) -> None:
        """A bulk HTTP download from the file server (hundreds of packets)."""
        rng = self.rng
        t = self._resolve(self.soon(t), client, "files.corp.lan", False)
        c = TcpConn(self, client, self.ephemeral(client), FILES, 80)
        t = c.handshake(t)
        req = http_request(rng, "GET", "/share/releases/tools-2025.07.tar.gz", "files.corp.lan", agent=_USER_AGENTS[3])
        head = http_response(rng, "200 OK", 0, ctype="application/gzip").replace(
            b"Content-Length: 0", f"Content-Length: {size}".encode()
        )
        t = c.exchange(t + 0.0001, req, head + rng.randbytes(size), self.proc(0.002))
        c.close(t + rng.uniform(0.0002, 0.002), by_client=True)

    def session_ssh(self, t: float, client: Host) -> None:
        """An interactive ssh login: key exchange, auth, keystrokes echoed, command output, logout."""
        rng = self.rng
        t = self._resolve(self.soon(t), client, "bastion.corp.lan", False)
        c = TcpConn(self, client, self.ephemeral(client), BASTION, 22)
        t = c.handshake(t)
        t = c._one(t + 0.0001, True, b"SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13\r\n")
        c.send(t + 0.002, False, PSH | ACK, b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n")
        t += 0.002 + c.rtt()
        for creq, cresp, proc in ((1576, 1080, 0.0005), (1240, 1620, 0.004), (16, 0, 0.0), (44, 44, 0.0003)):
            t = c.exchange(t + rng.uniform(0.0002, 0.001), rng.randbytes(creq), rng.randbytes(cresp), proc)
        t = c.exchange(t + self.think(2.0, 0.4), rng.randbytes(100), rng.randbytes(36), self.proc(0.05))  # password
        t = c.exchange(t + 0.0005, rng.randbytes(112), rng.randbytes(500 + rng.randint(0, 300)), self.proc(0.02))
        for _ in range(rng.randint(3, 9)):  # commands
            t += self.think(3.0, 0.8)
            for _ in range(rng.randint(3, 14)):  # keystrokes, each echoed
                c.send(t, True, PSH | ACK, rng.randbytes(36))
                t_echo = t + self.proc(0.0003) + 0.00005
                c.send(t_echo, False, PSH | ACK, rng.randbytes(36))
                t_ack = t_echo + c.rtt() + rng.uniform(0.0, 0.03)
                c.send(t_ack, True, ACK)
                t = t_ack + self.think(0.14, 0.5)
            out = int(min(30_000, self.rng.lognormvariate(math.log(700), 1.3)))
            t = c.exchange(t, rng.randbytes(36), rng.randbytes(36 + out), self.proc(0.01))
        t = c.exchange(t + self.think(2.0, 0.6), rng.randbytes(36), rng.randbytes(180), self.proc(0.003))
        c.close(t + rng.uniform(0.0005, 0.003), by_client=False)

    def run_benign(self) -> None:
        """Each client alternates on and off periods; sessions arrive as a Poisson process."""
        rng = self.rng
        kinds = ("dns", "web", "tls", "api", "upload", "ping")
        for client in self.clients:
            w = self.weights[client.ip]
            t = rng.uniform(0.0, 15.0)
            on = rng.random() < 0.7
            while t < self.duration_s - 10:
                period_end = t + rng.expovariate(1 / (30.0 if on else 25.0))
                rate = 0.32 if on else 0.02
                while True:
                    t += rng.expovariate(rate)
                    if t >= min(period_end, self.duration_s - 10):
                        break
                    kind = rng.choices(kinds, weights=[w[k] for k in kinds])[0]
                    if kind == "dns":
                        self.session_dns(t, client)
                    elif kind in ("web", "tls"):
                        self.session_web(t, client, tls=kind == "tls")
                    elif kind == "api":
                        self.session_api(t, client)
                    elif kind == "upload":
                        self.session_upload(t, client)
                    else:
                        self.session_ping(t, client)
                t = period_end
                on = not on

    # -- attacks (mixed capture only)
    def _attack_conn(self, target: Host, port: int, label: str, sport: int | None = None) -> TcpConn:
        return TcpConn(
            self, ATTACKER, sport if sport is not None else self.ephemeral(ATTACKER), target, port, label=label
        )

    def attack_port_scan(self, t: float, target: Host, open_ports: set[int]) -> float:
        """nmap -sS style: SYN to 1000 ports from one source port; RST-ACK when closed, SYN-ACK + RST when open."""
        rng = self.rng
        t = self.soon(t)
        sport = self.rng.randint(40000, 65000)
        self.used.add((ATTACKER.ip, sport, PROTO_TCP))
        ports = list(range(1, 1001)) + sorted(open_ports - set(range(1, 1001)))
        rng.shuffle(ports)
        for port in ports:
            c = self._attack_conn(target, port, "port_scan", sport)
            c.c_win = 1024
            c.send(t, True, SYN, options=bytes.fromhex("020405b4"))
            t_r = t + self.kernel_delay() + 0.00003
            if port in open_ports:
                c.send(t_r, False, SYN | ACK, options=SYN_OPTIONS)
                c.send(t_r + ATTACKER.rtt_s * rng.uniform(0.8, 1.5), True, RST)
            else:
                c.s_win = 0
                c.send(t_r, False, RST | ACK)
            t += rng.expovariate(1 / 0.0013)
        return t

    def attack_syn_flood(self, t: float, target: Host, port: int, n: int) -> float:
        """hping3 -S style: incrementing source ports; the attacker drops the SYN-ACKs, the server retries once."""
        rng = self.rng
        t = self.soon(t)
        sport = rng.randint(2000, 3000)
        for _ in range(n):
            c = self._attack_conn(target, port, "syn_flood", sport)
            self.used.add((ATTACKER.ip, sport, PROTO_TCP))
            sport += 1
            c.c_win = 512
            c.send(t, True, SYN)
            t_sa = t + self.kernel_delay()
            c.send(t_sa, False, SYN | ACK, options=SYN_OPTIONS)
            c.s_next = (c.s_next - 1) & 0xFFFFFFFF
            c.send(t_sa + rng.uniform(1.0, 1.05), False, SYN | ACK, options=SYN_OPTIONS)
            t += rng.uniform(0.0012, 0.0028)
        return t

    def attack_slow_drip(self, t: float, target: Host, *, hold_s: float) -> float:
        """slowloris style: an unfinished request, a few header bytes every ~10 s, until the server gives up."""
        rng = self.rng
        c = self._attack_conn(target, 80, "slow_drip")
        t = c.handshake(self.soon(t))
        t = c._one(t + 0.0002, True, f"GET /?{rng.randint(0, 9999)} HTTP/1.1\r\nHost: intranet.corp.lan\r\n".encode())
        c._ack(t + DELAYED_ACK_S, False, c.c_next)
        end = t + hold_s
        while True:
            t += rng.uniform(9.0, 11.5)
            if t >= end:
                break
            c.send(t, True, PSH | ACK, f"X-a: {rng.randint(1, 5000)}\r\n".encode())
            c._ack(t + DELAYED_ACK_S * rng.uniform(0.9, 1.1), False, c.c_next)
        resp = http_response(rng, "408 Request Time-out", 0).replace(b"keep-alive", b"close")
        c.send(t - rng.uniform(0.5, 2.0), False, PSH | ACK, resp)
        return c.close(t - 0.4, by_client=False)

    def attack_large_upload(self, t: float, target: Host, size: int) -> float:
        """An exfiltration-like POST of ``size`` random bytes in one connection."""
        rng = self.rng
        c = self._attack_conn(target, 80, "large_upload")
        t = c.handshake(self.soon(t))
        req = http_request(rng, "POST", "/upload/backup.bin", "intranet.corp.lan", body_len=size, agent=_USER_AGENTS[3])
        t = c.exchange(t + 0.0002, req, http_response(rng, "201 Created", 120), self.proc(0.02))
        return c.close(t + 0.0005, by_client=True)


def rng_word(rng: random.Random, n: int = 0) -> str:
    syl = ("ka", "ro", "mi", "tu", "se", "lan", "dor", "vi", "pe", "qua", "ne", "sto", "bri", "fal")
    return "".join(rng.choice(syl) for _ in range(n or rng.randint(2, 4)))


# ----------------------------------------------------------------------------------- flows


@dataclass(slots=True)
class Flow:
    """One row of the label file."""

    src_ip: str
    src_port: int
    dst_ip: str
    dst_port: int
    protocol: int
    first_us: int
    last_us: int
    packets: int
    bytes: int
    label: str

    def row(self) -> list[object]:
        return [
            self.src_ip,
            self.src_port,
            self.dst_ip,
            self.dst_port,
            self.protocol,
            _fmt_us(self.first_us),
            _fmt_us(self.last_us),
            self.packets,
            self.bytes,
            self.label,
        ]


def flow_rows(packets: list[Packet]) -> list[Flow]:
    """Flows of the emitted IPv4 packets (eval README rule), labelled with what the generator meant.

    ``packets`` must be in capture order. A flow whose packets carry two labels is a generator bug.
    """
    active: dict[tuple[object, ...], Flow] = {}
    done: list[Flow] = []
    for p in packets:
        proto, sip, sp, dip, dp = p.key
        if ":" in sip:
            continue
        a, b = (sip, sp), (dip, dp)
        k = (proto, a, b) if a <= b else (proto, b, a)
        fl = active.get(k)
        if fl is not None and p.ts_us - fl.last_us > FLOW_IDLE_S * 1e6:
            done.append(fl)
            fl = None
        if fl is None:
            fl = Flow(sip, sp, dip, dp, proto, p.ts_us, p.ts_us, 0, 0, p.label)
            active[k] = fl
        if fl.label != p.label:
            raise AssertionError(f"flow {k} mixes labels {fl.label} and {p.label}")
        fl.last_us = p.ts_us
        fl.packets += 1
        fl.bytes += p.ip_len
    done.extend(active.values())
    done.sort(key=lambda f: (f.first_us, f.src_ip, f.src_port))
    return done


def _fmt_us(us: int) -> str:
    return f"{us // 1_000_000}.{us % 1_000_000:06d}"


def write_labels(path: Path, flows: list[Flow]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(LABEL_FIELDS)
        w.writerows(fl.row() for fl in flows)


# ----------------------------------------------------------------------------------- writers


def write_pcap(path: Path, packets: list[Packet]) -> None:
    """Classic pcap, little-endian, microsecond timestamps, Ethernet, snap length SNAPLEN."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, SNAPLEN, 1)]
    for p in packets:
        out.append(struct.pack("<IIII", p.ts_us // 1_000_000, p.ts_us % 1_000_000, len(p.frame), p.orig_len))
        out.append(p.frame)
    path.write_bytes(b"".join(out))


def _block(btype: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    n = len(body) + 12
    return struct.pack("<II", btype, n) + body + struct.pack("<I", n)


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def write_pcapng(path: Path, packets: list[Packet], *, if_name: str) -> None:
    """pcapng: one section, one Ethernet interface (microsecond timestamps), enhanced packet blocks."""
    shb_opts = _option(4, b"netae sample_pcaps/generate.py") + _option(0, b"")
    out = [_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1) + shb_opts)]
    idb_opts = _option(2, if_name.encode()) + _option(9, bytes([6])) + _option(0, b"")
    out.append(_block(1, struct.pack("<HHI", 1, 0, SNAPLEN) + idb_opts))
    for p in packets:
        hdr = struct.pack("<IIIII", 0, p.ts_us >> 32, p.ts_us & 0xFFFFFFFF, len(p.frame), p.orig_len)
        out.append(_block(6, hdr + p.frame))
    path.write_bytes(b"".join(out))


# ----------------------------------------------------------------------------------- scenarios


def normal_a() -> Scenario:
    """Weekday morning, 8 clients, IPv4 only: written as classic pcap."""
    rng = random.Random(1101)
    sc = Scenario("office_a", seed=1102, day=0, duration_s=390.0, clients=make_clients(rng, range(101, 109)), vlan=None)
    sc.run_benign()
    sc.session_download(151.3, sc.clients[2], 640_000)
    sc.session_ssh(40.0, sc.clients[5])
    sc.session_ssh(260.0, sc.clients[1])
    return sc


def normal_b() -> Scenario:
    """Another day on VLAN 20, 6 clients, half of them dual-stack (IPv6): written as pcapng."""
    rng = random.Random(2201)
    clients = make_clients(rng, range(111, 117), dual_stack=0.5)
    sc = Scenario("office_b", seed=2202, day=1, duration_s=300.0, clients=clients, vlan=20)
    sc.run_benign()
    sc.session_download(97.8, sc.clients[4], 420_000)
    sc.session_ssh(180.0, sc.clients[0])
    return sc


def mixed() -> Scenario:
    """Normal traffic of 4 more clients for 5 minutes, with attacks from 10.10.0.200."""
    rng = random.Random(3301)
    sc = Scenario("mixed", seed=3302, day=2, duration_s=300.0, clients=make_clients(rng, range(121, 125)), vlan=None)
    sc.run_benign()
    sc.session_download(230.0, sc.clients[3], 300_000)
    sc.session_ssh(20.0, sc.clients[0])
    sc.attack_port_scan(45.2, WEB, {22, 80, 443})
    sc.attack_syn_flood(95.7, WEB, 80, 800)
    for i in range(4):
        sc.attack_slow_drip(140.0 + i * 3.7, WEB, hold_s=95.0 + 8 * i)
    sc.attack_large_upload(205.4, WEB, 3_000_000)
    return sc


def generate(out: Path) -> dict[str, Path]:
    """Write every sample capture (and the label file) under ``out``; return the paths by name."""
    (out / "normal").mkdir(parents=True, exist_ok=True)
    paths = {
        "office_a": out / "normal" / "office_a.pcap",
        "office_b": out / "normal" / "office_b.pcapng",
        "mixed": out / "mixed.pcap",
        "labels": out / "mixed_labels.csv",
    }
    write_pcap(paths["office_a"], normal_a().cap.sorted_packets())
    write_pcapng(paths["office_b"], normal_b().cap.sorted_packets(), if_name="eth0.20")
    sc = mixed()
    pkts = sc.cap.sorted_packets()
    write_pcap(paths["mixed"], pkts)
    write_labels(paths["labels"], flow_rows(pkts))
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent, help="output folder")
    args = ap.parse_args()
    t0 = time.perf_counter()
    paths = generate(args.out)
    for name, p in paths.items():
        print(f"{name:<10} {p}  {p.stat().st_size:,} bytes")
    print(f"done in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
