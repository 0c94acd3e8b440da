"""Every capture of the robustness corpus reads without any exception other than CaptureError."""

from __future__ import annotations

import pytest

from netae.capture import read_packets
from netae.capture.tunnels import NAMES, tunnel_kind
from netae.errors import CaptureError
from netae.flows import assemble_flows
from netae.tables import PacketTable, SkipCounts, format_ip
from tests.capture.shared import CORPUS


def test_every_corpus_file_reads_or_raises_capture_error() -> None:
    if not CORPUS.is_dir():
        pytest.skip(f"{CORPUS} not present in this checkout")
    files = sorted(p for p in CORPUS.iterdir() if p.is_file())
    n_packets = n_errors = 0
    for i, path in enumerate(files):
        counts = SkipCounts()
        try:
            for table in read_packets(path, file_id=i, counts=counts, chunk_bytes=1 << 20):
                table.validate()
                assert table.n_packets > 0
                assert (table.file_id == i).all()
        except CaptureError as exc:
            message = str(exc)
            n_errors += 1
            assert path.name in message  # noqa: PT017 - many files, one test
            assert "\n" not in message  # noqa: PT017
            continue
        assert counts.packets + counts.n_skipped == counts.records, path.name
        n_packets += counts.packets > 0
    assert n_packets > len(files) // 2
    assert n_errors < len(files) // 10


# Every tunnel, MPLS and PPPoE capture of the corpus (MANIFEST.csv notes; fuzz samples left out)
# and its flows after decapsulation: "tunnel-kind proto src:port>dst:port packets fwd/bwd
# IP-bytes fwd/bwd" ("-" for a flow outside any tunnel: outer packets that are fragments or whose
# payload is not opened, such as PPTP's encrypted PPP). Captures that list no flow hold no IP
# packet inside their tunnels (PPPoE discovery and PPP control only, a cut or broken header).
TUNNEL_FLOWS: dict[str, list[str]] = {
    "arista_ether.pcap": [],
    "BGP_redist.pcap": [
        "- 6 2.2.2.2:179>5.5.5.5:49433 1/0 155/0",
        "mpls 6 2.2.2.2:179>4.4.4.4:63535 1/0 155/0",
    ],
    "discord_mid_flow.pcap": [
        "pppoe 17 66.22.242.132:50001>5.36.141.228:54935 30/10 2180/620",
    ],
    "dtls.pcap": [
        "- 17 127.0.0.1:40983>127.0.0.1:11111 7/11 3089/3826",
        "- 17 192.168.13.203:40739>192.168.13.57:56515 2/0 366/0",
        "gtpu 17 10.191.227.13:54162>157.240.16.128:3478 3/1 491/224",
    ],
    "erspan-type-ii-2.pcap": [
        "erspan 17 10.200.100.2:1985>224.0.0.102:1985 4/0 320/0",
        "erspan 17 10.200.100.3:1985>224.0.0.102:1985 4/0 320/0",
        "erspan 17 10.200.101.2:1985>224.0.0.2:1985 4/0 192/0",
        "erspan 17 10.200.101.3:1985>224.0.0.2:1985 4/0 192/0",
    ],
    "erspan-type-iii-ft-0.pcap": [
        "erspan 1 10.29.11.1:8>10.29.20.21:0 9/0 756/0",
    ],
    "erspan-type-iii-pb-1.pcap": [],
    "erspan.pcap": [
        "- 47 10.200.0.3:0>10.200.0.224:0 55/0 69523/0",
        "gre 1 192.168.69.10:8>192.168.69.2:0 42/42 2520/2520",
        "gre 17 192.168.69.10:52788>192.168.69.2:53 1/1 71/71",
        "gre 17 192.168.69.10:52789>192.168.69.2:53 1/1 67/128",
        "gre 17 192.168.69.10:52790>192.168.69.2:53 1/1 67/128",
        "gre 17 192.168.69.10:52791>192.168.69.2:53 1/1 58/58",
        "gre 17 192.168.69.10:52792>192.168.69.2:53 1/1 58/58",
        "gre 17 192.168.69.2:137>192.168.69.255:137 30/0 2340/0",
        "gre 17 192.168.69.2:54418>224.0.0.252:5355 2/0 100/0",
        "gre 17 fe80::34f7:703d:ac05:43d6:51328>ff02::1:3:5355 2/0 140/0",
        "gre 17 fe80::34f7:703d:ac05:43d6:546>ff02::1:2:547 4/0 572/0",
        "gre 6 192.168.69.10:49162>192.168.69.2:80 24/5 4514/1307",
        "gre 6 192.168.69.10:49163>192.168.69.2:80 14/5 2763/3496",
        "gre 6 192.168.69.10:49164>192.168.69.2:80 14/3 2688/1176",
        "gre 6 192.168.69.10:49165>192.168.69.2:80 16/3 2491/1349",
        "gre 6 192.168.69.10:49166>192.168.69.2:80 5/1 518/52",
    ],
    "erspanI.pcap": [
        "erspan 1 172.16.133.2:8>172.217.11.78:0 5/5 420/420",
    ],
    "eth-ip-gre-ppp-max-ip-packet.pcap": [
        "gre 17 1.1.1.1:11111>2.2.2.2:9999 1024/0 85995/0",
    ],
    "geneve.pcap": [
        "geneve 1 30.0.0.1:8>30.0.0.2:0 1/0 84/0",
        "geneve 1 30.0.0.2:0>30.0.0.1:0 1/0 84/0",
        "geneve 6 30.0.0.1:22>30.0.0.2:51225 3/0 203/0",
        "geneve 6 30.0.0.2:51225>30.0.0.1:22 5/0 1081/0",
    ],
    "gre.pcapng": [
        "pptp 17 192.168.10.210:5060>192.168.103.40:5060 1/0 326/0",
    ],
    "GrePackets.cap": [
        "- 47 20.0.0.2:0>20.0.0.1:0 9/6 414/299",
        "- 6 20.0.0.2:1999>20.0.0.1:1723 6/3 580/312",
        "pptp 1 17.1.1.122:8>40.0.0.2:0 1/1 84/84",
    ],
    "GrePackets.pcap": [
        "- 47 192.168.2.65:0>192.168.2.254:0 2/0 76/0",
        "gre 1 127.0.0.1:0>127.0.0.1:0 1/0 35/0",
        "gre 17 3.3.3.2:520>224.0.0.9:520 1/0 52/0",
        "gre 47 127.0.0.1:0>127.0.0.1:0 1/0 24/0",
        "gre 6 10.0.0.4:1232>10.0.0.5:80 1/0 40/0",
        "pptp 17 8.8.8.8:53>172.16.44.3:40768 1/0 174/0",
    ],
    "gtp.pcap": [
        "- 17 192.168.168.245:2123>192.168.168.238:2123 1/0 80/0",
        "gtpu 1 202.11.40.158:8>192.168.40.178:0 1/0 84/0",
        "gtpu 1 202.11.40.158:8>192.168.40.178:0 2/0 168/0",
        "gtpu 17 2001:507:0:1:200:8600:0:2:53>2001:507:0:1:200:8600:0:1:2396 1/0 496/0",
        "gtpu 17 2001:507:0:1:200:8600:0:2:53>2001:507:0:1:200:8600:0:1:2396 1/0 496/0",
        "gtpu 6 10.155.182.202:41511>10.155.186.57:6005 1/0 1500/0",
    ],
    "gtp1_gn_normal_incl_fragmentation.pcap": [
        "- 17 239.114.155.111:2152>63.94.149.181:2152 2/74 1536/59760",
        "gtpu 6 10.131.47.185:1923>79.101.110.141:80 26/6 1724/794",
    ],
    "gtp2_different_udp_port.pcap": [
        "- 17 207.233.125.40:2152>167.55.105.244:2152 84/0 64512/0",
        "gtpu 6 10.131.17.170:51803>173.199.115.168:80 29/7 2310/3236",
    ],
    "gtp8_teredo.pcap": [
        "gtpu 17 172.24.16.67:52298>65.55.158.118:3544 1/0 88/0",
        "gtpu 17 172.24.16.67:52298>94.245.121.253:3544 1/0 88/0",
        "gtpu 17 172.24.203.81:54447>65.55.158.118:3544 2/0 176/0",
        "gtpu 17 172.24.204.200:56528>65.55.158.118:3544 1/0 88/0",
        "gtpu 17 94.245.121.253:3544>10.131.112.102:51403 1/0 84/0",
        "gtpu 17 94.245.121.253:3544>10.131.42.160:62069 1/0 84/0",
        "teredo 58 2001:0:5ef5:79fb:38b8:1695:2b37:be8e:128>2002:2571:c817::2571:c817:0 1/0 52/0",
        "teredo 58 fe80::ffff:ffff:fffe:133>ff02::2:0 2/0 96/0",
    ],
    "gtp_ext_header.pcap": [
        "- 17 10.155.148.149:9000>10.155.148.157:2152 2/0 1564/0",
    ],
    "gtp_false_positive.pcapng": [
        "- 17 119.185.190.173:2123>66.86.98.114:50140 1/0 354/0",
        "- 17 24.1.33.66:29255>62.56.122.232:3386 5/0 358/0",
        "- 17 50.7.111.134:17000>103.225.103.159:2123 1/0 36/0",
    ],
    "gtpv2.pcap": [
        "- 17 111.71.236.49:2123>221.177.252.21:2123 1/0 139/0",
        "- 17 111.71.236.49:2123>221.177.252.21:2123 1/0 40/0",
        "- 17 111.71.236.49:2123>221.177.252.21:2123 1/0 57/0",
        "- 17 192.168.1.100:2123>192.168.1.200:2123 1/0 43/0",
        "- 17 192.168.1.100:2123>192.168.1.200:2123 1/0 65/0",
        "- 6 192.168.1.100:2123>192.168.1.200:2123 1/0 57/0",
    ],
    "mpls-in-vlan.pcap": [
        "- 6 65.65.65.65:19244>65.65.65.65:80 1/0 257/0",
        "mpls 6 65.65.65.65:61193>65.65.65.65:80 1/0 710/0",
        "mpls 6 65.65.65.65:80>65.65.65.65:32828 1/0 1500/0",
    ],
    "mpls-traceroute.pcap": [
        "- 1 10.4.0.2:11>12.4.4.4:0 3/0 504/0",
        "- 1 10.5.0.1:11>12.4.4.4:0 3/0 504/0",
        "- 1 12.1.1.1:3>12.4.4.4:3 3/0 168/0",
        "mpls 17 12.4.4.4:42315>12.1.1.1:33435 1/0 40/0",
        "mpls 17 12.4.4.4:42315>12.1.1.1:33436 1/0 40/0",
        "mpls 17 12.4.4.4:42315>12.1.1.1:33437 1/0 40/0",
        "mpls 17 12.4.4.4:42315>12.1.1.1:33438 1/0 40/0",
        "mpls 17 12.4.4.4:42315>12.1.1.1:33439 1/0 40/0",
        "mpls 17 12.4.4.4:42315>12.1.1.1:33440 1/0 40/0",
        "mpls 17 12.4.4.4:42315>12.1.1.1:33441 1/0 40/0",
        "mpls 17 12.4.4.4:42315>12.1.1.1:33442 1/0 40/0",
        "mpls 17 12.4.4.4:42315>12.1.1.1:33443 1/0 40/0",
    ],
    "nb6-http.pcap": [
        "- 6 10.251.23.139:33198>93.17.156.250:80 6/4 458/1101",
        "pppoe 1 95.136.242.99:3>109.0.66.10:3 1/0 124/0",
        "pppoe 17 109.6.1.72:1701>95.136.242.99:1701 9/10 1133/944",
        "pppoe 17 95.136.242.99:13326>109.0.66.20:53 1/1 64/126",
        "pppoe 17 95.136.242.99:26148>109.0.66.20:53 1/1 64/120",
        "pppoe 17 95.136.242.99:32623>109.0.66.10:53 1/1 64/96",
        "pppoe 17 95.136.242.99:32623>109.0.66.20:53 1/1 64/96",
        "pppoe 17 95.136.242.99:37535>109.0.66.10:53 1/1 73/171",
        "pppoe 17 95.136.242.99:54253>109.0.66.10:53 1/1 73/144",
        "pppoe 17 95.136.242.99:55434>109.0.66.20:53 1/1 64/126",
        "pppoe 17 95.136.242.99:60284>109.0.66.10:53 1/1 71/130",
        "pppoe 6 95.136.242.99:52573>216.69.252.100:80 6/4 402/573",
    ],
    "one_http_stream_rst.pcap": [
        "pppoe 6 10.3.65.35:5068>185.8.212.46:80 6/4 1288/772",
    ],
    "ping6-in-ipv4.pcap": [
        "ipip 58 2001:db8:0:1::1:128>2001:db8:0:1::2:0 5/5 500/500",
    ],
    "pptp.pcap": [
        "- 47 10.1.1.11:0>10.1.1.10:0 1/0 80/0",
        "- 6 10.1.1.11:3025>10.1.1.10:1723 6/16 596/1032",
    ],
    "sip_reqs.pcap": [
        "- 17 10.0.2.15:5060>10.0.2.20:5060 1/0 561/0",
        "- 17 200.57.7.195:5060>200.57.7.204:5061 1/0 726/0",
        "pppoe 17 178.45.73.241:1032>213.192.59.75:5060 1/0 389/0",
        "pppoe 17 213.192.59.75:5060>178.45.73.241:5060 1/0 652/0",
    ],
    "suricata-verify__decode-erspan-typeI-02__input.pcap": [
        "erspan 1 100.95.2.201:8>100.95.3.105:0 21/21 1764/1764",
    ],
    "suricata-verify__decode-erspan-typeII-01__input.pcap": [
        "erspan 1 23.0.0.2:8>23.0.0.3:0 2/2 200/200",
    ],
    "suricata-verify__decode-too-many-layers__input.pcap": [],
    "suricata-verify__geneve-decoder__input.pcap": [
        "geneve 1 10.0.0.1:8>10.0.0.2:0 4/4 336/336",
    ],
    "suricata-verify__pppoe__input.pcap": [],
    "tcpdump__pppoe.pcap": [],
    "tcpdump__vxlan.pcap": [
        "vxlan 1 192.168.203.3:8>192.168.203.5:0 4/4 336/336",
    ],
    "teredo.pcap": [
        "teredo 58 2001:0:c288:1c4c:20f3:359b:46f9:3f46:128>2002:c288:1c4c::c288:1c4c:0 3/3 158/158",
        "teredo 58 2001:0:c288:1c4c:20f3:359b:46f9:3f46:128>2002:c288:1c4c::c288:1c4d:0 6/0 312/0",
        "teredo 58 fe80::8000:f227:3d77:e3b3:134>fe80::ffff:ffff:fffe:0 5/0 440/0",
        "teredo 58 fe80::ffff:ffff:fffe:133>ff02::2:0 5/0 240/0",
        "teredo 59 fe80::8000:f227:3d77:e3b3:0>2001:0:c288:1c4c:20f3:359b:46f9:3f46:0 1/1 40/40",
    ],
    "Vxlan1.pcap": [
        "vxlan 1 192.168.203.3:8>192.168.203.5:0 1/0 84/0",
    ],
    "Vxlan2.pcap": [
        "vxlan 1 192.168.203.3:8>192.168.203.5:0 1/0 84/0",
    ],
    "zeek__pppoe.pcap": [
        "pppoe 17 fe80::c801:eff:fe88:8:547>fe80::ce05:eff:fe88:0:546 2/0 288/0",
        "pppoe 17 fe80::ce05:eff:fe88:0:546>ff02::1:2:547 2/0 210/0",
        "pppoe 58 fc00:0:2:100::1:1:128>fc00::1:0 5/5 500/500",
        "pppoe 58 fe80::c801:eff:fe88:8:134>fe80::ce05:eff:fe88:0:0 1/0 64/0",
        "pppoe 58 fe80::c801:eff:fe88:8:136>ff02::1:0 1/0 64/0",
        "pppoe 58 fe80::c801:eff:fe88:8:143>ff02::16:0 8/0 608/0",
        "pppoe 58 fe80::ce05:eff:fe88:0:133>ff02::2:0 1/0 48/0",
    ],
    "zeek__vxlan.pcap": [
        "vxlan 1 10.0.0.1:8>10.0.0.2:0 4/4 336/336",
    ],
}


def _flow_strings(path) -> list[str]:
    table = PacketTable.concat(list(read_packets(path)))
    f = assemble_flows(table, idle_timeout_s=120.0, active_timeout_s=1800.0)
    kinds = tunnel_kind(f.tunnel_key).tolist()
    return sorted(
        f"{NAMES[kinds[i]] or '-'} {f.proto[i]} {format_ip(f.src_hi[i], f.src_lo[i])}:{f.src_port[i]}>"
        f"{format_ip(f.dst_hi[i], f.dst_lo[i])}:{f.dst_port[i]} {f.fwd_pkts[i]}/{f.bwd_pkts[i]} "
        f"{f.fwd_bytes[i]}/{f.bwd_bytes[i]}"
        for i in range(f.n_flows)
    )


@pytest.mark.parametrize("name", sorted(TUNNEL_FLOWS))
def test_tunnel_captures_give_their_inner_flows(name: str) -> None:
    path = CORPUS / name
    if not path.exists():
        pytest.skip(f"{path} not present in this checkout")
    assert _flow_strings(path) == TUNNEL_FLOWS[name]
