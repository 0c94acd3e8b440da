"""Decapsulation: the same traffic, bare and inside every kind of tunnel, gives the same table.

The sample captures are wrapped record by record (``tests/helpers/pcapgen.py`` writes the outer
headers byte by byte); the inner packets' columns, flows and features must equal the bare
capture's, and the tunnel columns must name the tunnel. Frames built by scapy check the
wrappers' bytes against a second implementation.
"""

from __future__ import annotations

import dataclasses
import io
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from scapy.all import raw
    from scapy.contrib.erspan import ERSPAN_II, ERSPAN_III, ERSPAN_PlatformSpecific
    from scapy.contrib.geneve import GENEVE
    from scapy.contrib.gtp import GTP_U_Header, GTPPDUSessionContainer
    from scapy.contrib.mpls import MPLS
    from scapy.layers.inet import GRE, ICMP, IP, TCP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import GRE_PPTP, Dot1Q, Ether
    from scapy.layers.ppp import PPP, PPPoE
    from scapy.layers.vxlan import VXLAN

from netae.capture import read_packets, read_records
from netae.capture.linktypes import DLT_RAW
from netae.capture.skips import Skip, n_skipped
from netae.capture.tunnels import NAMES as TUNNEL_NAMES
from netae.capture.tunnels import tunnel_kind, tunnel_texts
from netae.config import TunnelSettings
from netae.flows import assemble_flows
from netae.tables import TUNNEL_COLUMNS, PacketTable, SkipCounts, format_ip
from tests.capture.test_decode import COLUMNS, scapy_expected
from tests.helpers import pcapgen as g
from tests.helpers.pcapgen import Record, pcap_bytes

SAMPLES = Path(__file__).resolve().parents[2] / "sample_pcaps"
A, B = "192.0.2.10", "198.51.100.20"  # outer endpoints
A6, B6 = "2001:db8:1::10", "2001:db8:2::20"
N_RECORDS = 2500

Frame = tuple[bytes, int, int]  # captured bytes, timestamp (ns), original length


def sample_frames(path: Path, n: int = N_RECORDS, *, version: int | None = None) -> list[Frame]:
    out: list[Frame] = []
    for batch in read_records(path):
        for off, cap, orig, ts in zip(batch.offsets.tolist(), batch.caplen.tolist(), batch.origlen.tolist(),
                                      batch.ts_ns.tolist(), strict=True):  # fmt: skip
            frame = bytes(batch.data[off : off + cap])
            if version is None or ip_part(frame)[0] == version:
                out.append((frame, ts, orig))
            if len(out) >= n:
                return out
    return out


def ip_part(frame: bytes) -> tuple[int, int]:
    """(IP version, offset of the IP header) of an Ethernet frame, VLAN tags skipped."""
    p = 12
    while frame[p : p + 2] in (b"\x81\x00", b"\x88\xa8"):
        p += 4
    et = frame[p : p + 2]
    return (4 if et == b"\x08\x00" else 6 if et == b"\x86\xdd" else 0), p + 2


def _l2(outer: Callable[[int], bytes]) -> Callable[[bytes, int], tuple[bytes, int]]:
    def wrap(frame: bytes, orig: int) -> tuple[bytes, int]:
        head = outer(orig)
        return head + frame, len(head) + orig

    return wrap


def _l3(outer: Callable[[int, int], bytes]) -> Callable[[bytes, int], tuple[bytes, int]]:
    def wrap(frame: bytes, orig: int) -> tuple[bytes, int]:
        version, at = ip_part(frame)
        n = orig - at
        head = outer(n, version)
        return head + frame[at:], len(head) + n

    return wrap


def _v4(proto: int, tail: Callable[[int, int], bytes]) -> Callable[[int, int], bytes]:
    return lambda n, v: g.ether(0x0800) + g.ipv4_head(A, B, proto, len(tail(n, v)) + n) + tail(n, v)


def _udp4(dport: int, tail: Callable[[int, int], bytes]) -> Callable[[int, int], bytes]:
    def head(n: int, v: int) -> bytes:
        t = tail(n, v)
        return g.ether(0x0800) + g.ipv4_head(A, B, 17, 8 + len(t) + n) + g.udp_head(49152, dport, len(t) + n) + t

    return head


def _eth_proto(v: int) -> int:
    return 0x0800 if v == 4 else 0x86DD


def _gre_in_gre(n: int, v: int) -> bytes:
    inner = g.ipv4_head("10.9.9.1", "10.9.9.2", 47, 4 + n) + g.gre_head(_eth_proto(v))
    return g.ether(0x0800) + g.ipv4_head(A, B, 47, 4 + len(inner) + n) + g.gre_head(0x0800) + inner


# kind -> (wrapper, tunnel name, tunnel id seen, which inner IP versions, outer endpoints or None)
TUNNELS: dict[str, tuple[Callable[[bytes, int], tuple[bytes, int]], str, int, int, bool]] = {
    "vxlan": (_l2(lambda n: _udp4(4789, lambda n, v: g.vxlan_head(77))(n, 4)), "vxlan", 77, 0, True),
    "vxlan-linux": (_l2(lambda n: _udp4(8472, lambda n, v: g.vxlan_head(5))(n, 4)), "vxlan", 5, 0, True),
    "geneve": (_l2(lambda n: _udp4(6081, lambda n, v: g.geneve_head(9, options=bytes(8)))(n, 4)), "geneve", 9, 0, True),
    "gre": (_l3(_v4(47, lambda n, v: g.gre_head(_eth_proto(v)))), "gre", 0, 0, True),
    "gre-key-seq": (_l3(_v4(47, lambda n, v: g.gre_head(_eth_proto(v), key=42, seq=7, csum=True))), "gre", 42, 0, True),
    "gre-teb": (_l2(lambda n: _v4(47, lambda n, v: g.gre_head(0x6558, key=3))(n, 4)), "gre", 3, 0, True),
    "erspan1": (_l2(lambda n: _v4(47, lambda n, v: g.gre_head(0x88BE))(n, 4)), "erspan", 0, 0, True),
    "erspan2": (_l2(lambda n: _v4(47, lambda n, v: g.gre_head(0x88BE, seq=1) + g.erspan2_head(300))(n, 4)),
                "erspan", 300, 0, True),
    "erspan3": (_l2(lambda n: _v4(47, lambda n, v: g.gre_head(0x22EB, seq=1) + g.erspan3_head(301))(n, 4)),
                "erspan", 301, 0, True),
    "pptp": (_l3(_v4(47, lambda n, v: g.pptp_head(0x4321, n))), "pptp", 0x4321, 4, True),
    "gre-udp": (_l3(_udp4(4754, lambda n, v: g.gre_head(_eth_proto(v)))), "gre-udp", 0, 0, True),
    "gre-in-gre": (_l3(_gre_in_gre), "gre", 0, 0, False),
    "4in4": (_l3(_v4(4, lambda n, v: b"")), "ipip", 0, 4, True),
    "4in6": (_l3(lambda n, v: g.ether(0x86DD) + g.ipv6_head(A6, B6, 4, n)), "ipip", 0, 4, True),
    "6in4": (_l3(_v4(41, lambda n, v: b"")), "ipip", 0, 6, True),
    "6in6": (_l3(lambda n, v: g.ether(0x86DD) + g.ipv6_head(A6, B6, 41, n)), "ipip", 0, 6, True),
    "teredo": (_l3(_udp4(3544, lambda n, v: bytes(8))), "teredo", 0, 6, True),
    "gtpu": (_l3(_udp4(2152, lambda n, v: g.gtpu_head(0xABCDEF01, n))), "gtpu", 0xABCDEF01, 0, True),
    "gtpu-plain": (_l3(_udp4(2152, lambda n, v: g.gtpu_head(0x11, n, ext=False))), "gtpu", 0x11, 0, True),
    "mpls": (_l3(lambda n, v: g.ether(0x8847) + g.mpls_head([1001, 16])), "mpls", 1001, 0, False),
    "pppoe": (_l3(lambda n, v: g.ether(0x8864) + g.pppoe_head(0x1234, n, ipv6=v == 6)), "pppoe", 0x1234, 0, False),
    "pppoe-vlan": (_l3(lambda n, v: g.ETH_HEAD + b"\x81\x00\x00\x0a\x88\x64" + g.pppoe_head(7, n, ipv6=v == 6)),
                   "pppoe", 7, 0, False),
}  # fmt: skip


def frames_for(versions: int) -> list[Frame]:
    if versions == 6:
        return sample_frames(SAMPLES / "normal" / "office_b.pcapng", 800, version=6)
    return sample_frames(SAMPLES / "mixed.pcap")


def read(records: list[Record], tunnels: TunnelSettings | None = None) -> tuple[PacketTable, SkipCounts]:
    counts = SkipCounts()
    data = pcap_bytes(records, snaplen=65535)

    table = PacketTable.concat(list(read_packets(io.BytesIO(data), counts=counts, tunnels=tunnels)))
    return table, counts


def wrapped(kind: str, frames: list[Frame]) -> list[Record]:
    wrap = TUNNELS[kind][0]
    out = []
    for frame, ts, orig in frames:
        data, n = wrap(frame, orig)
        out.append(Record(data, ts_ns=ts, origlen=n))
    return out


def bare(frames: list[Frame]) -> list[Record]:
    return [Record(f, ts_ns=ts, origlen=orig) for f, ts, orig in frames]


def assert_same_packets(a: PacketTable, b: PacketTable) -> None:
    assert a.n_packets == b.n_packets > 0
    for f in dataclasses.fields(a):
        if f.name not in TUNNEL_COLUMNS:
            np.testing.assert_array_equal(getattr(a, f.name), getattr(b, f.name), err_msg=f.name)


@pytest.mark.parametrize("kind", list(TUNNELS))
def test_inner_packets_and_flows_equal_the_bare_capture(kind: str) -> None:
    _wrap, name, tid, versions, has_outer = TUNNELS[kind]
    frames = frames_for(versions)
    plain, c0 = read(bare(frames))
    inner, c1 = read(wrapped(kind, frames))
    assert c1.packets == c0.packets and c1.n_skipped == c0.n_skipped
    assert_same_packets(plain, inner)
    assert set(tunnel_kind(inner.tunnel_key).tolist()) == {TUNNEL_NAMES.index(name)}
    assert set(inner.tunnel_id.tolist()) == {tid}
    if has_outer:
        assert {format_ip(h, lo) for h, lo in zip(inner.outer_src_hi, inner.outer_src_lo, strict=True)} <= {
            A,
            B,
            A6,
            B6,
        }
    fa = assemble_flows(plain, idle_timeout_s=120.0, active_timeout_s=1800.0)
    fb = assemble_flows(inner, idle_timeout_s=120.0, active_timeout_s=1800.0)
    assert fa.n_flows == fb.n_flows > 0
    for col, arr in fa.column_dict().items():
        if col not in TUNNEL_COLUMNS:
            np.testing.assert_array_equal(arr, fb.column_dict()[col], err_msg=col)
    np.testing.assert_array_equal(fa.order, fb.order)
    assert set(tunnel_kind(fb.tunnel_key).tolist()) == {TUNNEL_NAMES.index(name)}
    texts = set(tunnel_texts(fb.tunnel_key, fb.tunnel_id, (fb.outer_src_hi, fb.outer_src_lo),
                             (fb.outer_dst_hi, fb.outer_dst_lo)))  # fmt: skip
    assert all(t.startswith(name + " ") or t == name for t in texts)
    if kind in ("vxlan", "erspan2", "gtpu", "4in6"):
        label = {"vxlan": "vni=77", "erspan2": "session=300", "gtpu": f"teid={0xABCDEF01}", "4in6": ""}[kind]
        assert texts == {f"{name} {A6 if kind == '4in6' else A}>{B6 if kind == '4in6' else B} {label}".strip()}


@pytest.mark.parametrize("kind", ["vxlan", "erspan2", "gtpu", "mpls"])
def test_scores_and_csv_rows_equal_the_bare_capture(kind: str, small_model: Path, tmp_path: Path) -> None:
    """The central property: a tunnel changes no flow, feature or score, only the tunnel column."""
    import csv

    from typer.testing import CliRunner

    from netae.cli import app
    from netae.config import Settings
    from netae.pipeline import featurize_files

    frames = frames_for(0)
    rows = {}
    feats = {}
    for name, records in (("bare", bare(frames)), (kind, wrapped(kind, frames))):
        path = tmp_path / f"{name}.pcap"
        path.write_bytes(pcap_bytes(records))
        out = tmp_path / f"{name}.csv"
        r = CliRunner().invoke(app, ["score", str(path), "-m", str(small_model), "-f", "csv", "--all", "-o", str(out),
                                     "-q", "--device", "cpu"])  # fmt: skip
        assert r.exit_code in (0, 1), r.stderr
        with open(out, newline="") as fh:
            rows[name] = list(csv.DictReader(fh))
        feats[name] = featurize_files([str(path)], settings=Settings()).features
    assert len(rows["bare"]) == len(rows[kind]) > 100
    np.testing.assert_array_equal(feats["bare"].values, feats[kind].values)
    for a, b in zip(rows["bare"], rows[kind], strict=True):
        assert a["tunnel"] == "" and b["tunnel"].startswith(TUNNELS[kind][1])
        for col in set(a) - {"tunnel", "source_file"}:
            assert a[col] == b[col], col


def test_decapsulation_off_keeps_the_outer_packets() -> None:
    frames = frames_for(0)[:200]
    table, counts = read(wrapped("vxlan", frames), TunnelSettings(enabled=False))
    assert table.n_packets == 200 and set(table.proto.tolist()) == {17}
    assert set(table.dst_port.tolist()) == {4789} and not table.tunnel_key.any()
    table, counts = read(wrapped("mpls", frames), TunnelSettings(enabled=False))
    assert table.n_packets == 0 and counts.codes == {(int(Skip.ETHERTYPE), 0x8847, 1): 200}


def test_vxlan_port_is_a_setting() -> None:
    frames = frames_for(0)[:100]
    table, _ = read(wrapped("vxlan", frames), TunnelSettings(vxlan_ports=(8472,)))
    assert not table.tunnel_key.any()  # 4789 is no longer VXLAN: the outer UDP packets stay
    table, _ = read(wrapped("vxlan-linux", frames), TunnelSettings(vxlan_ports=(8472,)))
    assert set(tunnel_kind(table.tunnel_key).tolist()) == {TUNNEL_NAMES.index("vxlan")}


def test_same_inner_traffic_in_two_vnis_gives_separate_flows() -> None:
    frames = frames_for(0)[:400]
    # The same frames in VNI 5: the VXLAN header sits after Ethernet, IPv4 and UDP (42 bytes).
    five = [Record(r.data[:42] + g.vxlan_head(5) + r.data[50:], r.ts_ns, r.origlen) for r in wrapped("vxlan", frames)]
    both = sorted([*wrapped("vxlan", frames), *five], key=lambda r: r.ts_ns)
    one, _ = read(wrapped("vxlan", frames))
    two, _ = read(both)
    f1 = assemble_flows(one, idle_timeout_s=120.0, active_timeout_s=1800.0)
    f2 = assemble_flows(two, idle_timeout_s=120.0, active_timeout_s=1800.0)
    assert f2.n_flows == 2 * f1.n_flows
    assert sorted(set((f2.tunnel_key & np.uint64(0xFFFFFFFF)).tolist())) == [5, 77]
    assert set(f2.tunnel_id.tolist()) == {5, 77}


def test_nesting_deeper_than_the_limit_is_skipped() -> None:
    frames = frames_for(0)[:50]
    records = wrapped("gre-in-gre", frames)
    table, counts = read(records, TunnelSettings(max_depth=1))
    assert table.n_packets == 0 and n_skipped(counts, Skip.TUNNEL_DEPTH) == counts.n_skipped == 50
    table, counts = read(records, TunnelSettings(max_depth=2))
    assert table.n_packets == 50


def _inner() -> list:
    return [
        IP(src="10.0.0.1", dst="10.0.0.2", ttl=9) / TCP(sport=1234, dport=443, flags="S", window=999) / b"hi",
        IP(src="10.0.0.3", dst="10.0.0.4") / UDP(sport=5353, dport=53) / (b"q" * 20),
        IP(src="10.0.0.5", dst="10.0.0.6") / ICMP(type=8) / b"ping",
        IPv6(src="2001:db8::1", dst="2001:db8::2") / TCP(sport=5, dport=6, flags="PA") / b"six",
    ]


def _eth_of(p) -> Ether:
    return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / p


OUTER = IP(src=A, dst=B)
SCAPY_TUNNELS = {
    "vxlan": lambda p: Ether() / OUTER / UDP(sport=40000, dport=4789) / VXLAN(vni=4242) / _eth_of(p),
    "geneve": lambda p: Ether() / OUTER / UDP(dport=6081) / GENEVE(vni=17, proto=0x6558) / _eth_of(p),
    "gre-key": lambda p: Ether() / OUTER / GRE(key_present=1, key=99, seqnum_present=1, seqence_number=3) / p,
    "erspan2": lambda p: Ether() / OUTER / GRE(seqnum_present=1) / ERSPAN_II(session_id=12) / _eth_of(p),
    "erspan3": lambda p: (
        Ether()
        / OUTER
        / GRE(seqnum_present=1)
        / ERSPAN_III(session_id=13, o=1)
        / ERSPAN_PlatformSpecific()
        / _eth_of(p)
    ),
    "gtpu": lambda p: (
        Ether()
        / OUTER
        / UDP(sport=2152, dport=2152)
        / GTP_U_Header(teid=0x1234, E=1, next_ex=0x85)
        / GTPPDUSessionContainer(type=1, QFI=5)
        / p
    ),
    "mpls": lambda p: Ether() / MPLS(label=100, s=0) / MPLS(label=200, s=1) / p,
    "pppoe": lambda p: (
        Ether() / Dot1Q(vlan=5) / PPPoE(sessionid=0x77) / PPP(proto=0x21 if p.version == 4 else 0x57) / p
    ),
    "pptp": lambda p: Ether() / OUTER / GRE_PPTP(call_id=31, seqnum_present=1, seqence_number=1) / PPP(proto=0x21) / p,
    "ip-in-ipv6": lambda p: Ether() / IPv6(src=A6, dst=B6) / p,
}


@pytest.mark.parametrize("kind", list(SCAPY_TUNNELS))
def test_frames_built_by_scapy_decode_to_scapys_inner_packet(kind: str) -> None:
    inner = [p for p in _inner() if kind != "pptp" or p.version == 4]
    frames = [raw(SCAPY_TUNNELS[kind](p)) for p in inner]
    table, counts = read([Record(f, ts_ns=i) for i, f in enumerate(frames)])
    assert counts.n_skipped == 0
    expected = [scapy_expected(raw(p), DLT_RAW) for p in inner]
    got = [{c: getattr(table, c).tolist()[i] for c in COLUMNS} for i in range(table.n_packets)]
    assert got == expected
    assert (table.tunnel_key != 0).all()


@pytest.mark.parametrize(
    ("kind", "cut"),
    [("vxlan", 14 + 20 + 8 + 4), ("geneve", 14 + 20 + 8 + 6), ("gre-key", 14 + 20 + 6), ("erspan2", 14 + 20 + 10),
     ("gtpu", 14 + 20 + 8 + 10), ("mpls", 14 + 2), ("pppoe", 14 + 4 + 5), ("vxlan", 14 + 20 + 8 + 8 + 10)],
)  # fmt: skip
def test_truncated_tunnel_headers_are_skipped_without_losing_neighbours(kind: str, cut: int) -> None:
    good = [raw(SCAPY_TUNNELS[kind](p)) for p in _inner()]
    records = [Record(f, ts_ns=i) for i, f in enumerate(good)]
    records.insert(2, Record(good[0][:cut], ts_ns=1, origlen=len(good[0])))
    table, counts = read(records)
    assert table.n_packets == len(good) and counts.n_skipped == 1 and counts.records == len(good) + 1


def test_malformed_tunnel_headers_are_counted_by_reason() -> None:
    vx = bytearray(raw(SCAPY_TUNNELS["vxlan"](_inner()[0])))
    vx[42] = 0  # VXLAN without its I flag
    gre = bytearray(raw(SCAPY_TUNNELS["gre-key"](_inner()[0])))
    gre[34 + 1] |= 3  # GRE version 3
    pppoe = bytearray(raw(SCAPY_TUNNELS["pppoe"](_inner()[0])))
    pppoe[18] = 0x21  # PPPoE version/type 2/1
    table, counts = read([Record(bytes(x)) for x in (vx, gre, pppoe)])
    assert table.n_packets == 0
    assert counts.skipped == {
        "malformed vxlan header": 1,
        "malformed gre header": 1,
        "malformed PPPoE session header": 1,
    }


@pytest.mark.parametrize(
    ("linktype", "head"),
    [
        (9, lambda p: b"\xff\x03\x00" + (b"\x21" if p.version == 4 else b"\x57")),  # PPP
        (9, lambda p: b"\x21" if p.version == 4 else b"\x57"),  # PPP, compressed protocol field
        (50, lambda p: b"\xff\x03\x02\x81" + g.mpls_head([16])),  # PPP in HDLC framing, MPLS
        (104, lambda p: b"\x0f\x00" + (b"\x08\x00" if p.version == 4 else b"\x86\xdd")),  # Cisco HDLC
        (104, lambda p: b"\x0f\x00\x88\x47" + g.mpls_head([20, 30])),  # Cisco HDLC, MPLS
    ],
)
def test_ppp_and_cisco_hdlc_link_types(linktype: int, head, tmp_path: Path) -> None:
    inner = _inner()
    data = pcap_bytes([Record(head(p) + raw(p), ts_ns=i) for i, p in enumerate(inner)], linktype=linktype)
    table = PacketTable.concat(list(read_packets(io.BytesIO(data))))
    got = [{c: getattr(table, c).tolist()[i] for c in COLUMNS} for i in range(table.n_packets)]
    assert got == [scapy_expected(raw(p), DLT_RAW) for p in inner]


def test_tunnel_settings_round_trip_and_old_models_get_the_defaults() -> None:
    import json

    from netae.config import Settings, settings_from_dict

    custom = Settings(tunnels=TunnelSettings(enabled=False, max_depth=2, vxlan_ports=(8472,), gtpu_port=0))
    assert settings_from_dict(json.loads(json.dumps(custom.to_dict()))) == custom
    old = {k: v for k, v in Settings().to_dict().items() if k != "tunnels"}  # a model saved before tunnels
    assert settings_from_dict(old).tunnels == TunnelSettings()


def test_the_models_tunnel_settings_are_honoured_when_scoring(tmp_path: Path) -> None:
    import csv

    from typer.testing import CliRunner

    from netae.cli import app

    frames = frames_for(0)[:600]
    capture, plain = tmp_path / "vx.pcap", tmp_path / "bare.pcap"
    capture.write_bytes(pcap_bytes(wrapped("vxlan", frames)))
    plain.write_bytes(pcap_bytes(bare(frames)))
    config = tmp_path / "off.toml"
    config.write_text("[tunnels]\nenabled = false\n")
    model = tmp_path / "off.netae"
    r = CliRunner().invoke(app, ["train", str(plain), "-c", str(config), "-o", str(model), "--epochs", "1",
                                 "--hidden-size", "4", "-q", "--device", "cpu"])  # fmt: skip
    assert r.exit_code == 0, r.stderr
    out = tmp_path / "out.csv"
    r = CliRunner().invoke(app, ["score", str(capture), "-m", str(model), "-f", "csv", "--all", "-o", str(out), "-q",
                                 "--device", "cpu"])  # fmt: skip
    assert r.exit_code in (0, 1), r.stderr
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and all(row["tunnel"] == "" and row["dst_port"] == "4789" for row in rows)


def test_ports_that_match_by_chance_leave_the_udp_packet_alone() -> None:
    """An ephemeral source port of 2152 or 3544 carrying something else stays a UDP packet."""
    dns_like = bytes.fromhex("6abc0100000100000000000003777777076578616d706c6503636f6d0000010001") + bytes(20)
    frames = [
        raw(Ether() / IP(src="10.0.0.1", dst="10.0.0.53") / UDP(sport=2152, dport=53) / dns_like),
        raw(Ether() / IP(src="10.0.0.1", dst="10.0.0.53") / UDP(sport=3544, dport=53) / dns_like),
        raw(Ether() / IP(src="10.0.0.1", dst="10.0.0.9") / UDP(sport=40000, dport=2152) / dns_like),  # not GTP
    ]
    table, counts = read([Record(f, ts_ns=i) for i, f in enumerate(frames)])
    assert table.n_packets == 2 and table.dst_port.tolist() == [53, 53] and not table.tunnel_key.any()
    assert counts.skipped == {"malformed gtpu header": 1}


def test_ecs_documents_carry_the_tunnel_and_the_inner_community_id(small_model: Path, tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from netae.cli import app

    frames = frames_for(0)[:1500]
    docs = {}
    for name, records in (("bare", bare(frames)), ("vxlan", wrapped("vxlan", frames))):
        path = tmp_path / f"{name}.pcap"
        path.write_bytes(pcap_bytes(records))
        r = CliRunner().invoke(app, ["score", str(path), "-m", str(small_model), "-f", "jsonl", "--all", "-q",
                                     "--device", "cpu"])  # fmt: skip
        assert r.exit_code in (0, 1), r.stderr
        docs[name] = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(docs["bare"]) == len(docs["vxlan"]) > 10
    for a, b in zip(docs["bare"], docs["vxlan"], strict=True):
        assert "tunnel" not in a["netae"]
        assert b["netae"]["tunnel"] == {"type": "vxlan", "vni": 77, "source": {"ip": A}, "destination": {"ip": B}}
        assert a["network"]["community_id"] == b["network"]["community_id"]
        assert a["source"] == b["source"] and a["destination"] == b["destination"]
        assert a["netae"]["score"] == b["netae"]["score"]
