"""Featurize throughput beside its baselines, in one run (issues 11 and 18).

    python bench/featurize.py [CAPTURE] [--big] [--packets N]

Without CAPTURE it makes ``bench/data/mixed_<N>.pcap`` (default 1.2M packets) by tiling the
records of ``shared/eval/train_benign.pcap`` (found beside the repository root) with shifted
timestamps and shifted ephemeral ports, so every copy holds different flows. It prints netae's
read+decode rate, the end-to-end featurize rate, the same two rates on a copy of the capture with
every frame wrapped in VXLAN (Ethernet, IPv4, UDP 4789 and VXLAN headers in front: what AWS VPC
Traffic Mirroring delivers; the wrapped copy yields the same flows and features), then scapy
(PcapReader with dissection, RawPcapReader with struct unpacking) and dpkt on a 100k-packet
prefix, and peak RSS. ``--big`` also makes a ~2 GB capture, reads it (peak RSS bounded by the
chunk size) and featurizes it (peak RSS beside the size of the features produced). The machine is
shared: expect +-20 % noise between runs; the baselines run in the same process right after
netae, so ratios are steadier than absolute figures. Every rate is printed from wall time (the
figure of record, best of two for netae) and, in brackets, from the process's CPU time, which a
loaded machine inflates less. The last line (the bare capture's featurize rate) keeps its format.
"""

from __future__ import annotations

import argparse
import resource
import struct
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from netae.capture import read_packets, read_records  # noqa: E402
from netae.tables import PacketTable, SkipCounts  # noqa: E402

_SHARED = next((p for p in (ROOT.parent / "shared", ROOT.parent.parent / "shared") if p.is_dir()), ROOT.parent)
SOURCE = _SHARED / "eval" / "train_benign.pcap"
DATA = ROOT / "bench" / "data"
PREFIX_PACKETS = 100_000


def _records(path: Path) -> tuple[bytes, np.ndarray, np.ndarray, np.ndarray]:
    """File header, record header offsets and L4 offsets (-1: none) relative to the records after the header."""
    raw = path.read_bytes()
    batches = list(read_records(path, chunk_bytes=len(raw) + (1 << 20)))
    assert len(batches) == 1, "the template must fit one chunk"
    b = batches[0]
    data = b.data
    # IPv4 over Ethernet only (the eval captures): L4 offset from IHL; others are left as they are.
    eth_ip = (data[b.offsets + 12] == 8) & (data[b.offsets + 13] == 0)
    l4 = np.where(eth_ip, b.offsets + 14 + (data[b.offsets + 14] & 15).astype(np.int64) * 4, -1)
    tcp_udp = eth_ip & np.isin(data[b.offsets + 23], (6, 17)) & (l4 + 4 <= b.offsets + b.caplen)
    l4 = np.where(tcp_udp, l4, -1)
    return raw[:24], b.offsets - 16, b.caplen.astype(np.int64), l4


def make_capture(dest: Path, n_packets: int) -> Path:
    """Tile the template's records until ``n_packets``, writing raw bytes (no per-packet Python)."""
    header, starts, caplen, l4 = _records(SOURCE)
    raw = np.frombuffer(SOURCE.read_bytes(), np.uint8)
    body = raw[24:]
    first, last = int(starts[0]), int(starts[-1])
    span_s = int(body[last : last + 4].view("<u4")[0]) - int(body[first : first + 4].view("<u4")[0]) + 1
    reps = -(-n_packets // len(starts))
    dest.parent.mkdir(parents=True, exist_ok=True)
    rel_ts = starts
    rel_l4 = l4
    has = rel_l4 >= 0
    sport_at, dport_at = rel_l4[has], rel_l4[has] + 2
    with dest.open("wb") as f:
        f.write(header)
        for r in range(reps):
            chunk = body.copy()
            sec = chunk[rel_ts[:, None] + np.arange(4)].copy().view("<u4").ravel() + np.uint32(r * span_s)
            chunk[rel_ts[:, None] + np.arange(4)] = sec.view(np.uint8).reshape(-1, 4)
            sp = (chunk[sport_at].astype(np.int64) << 8) | chunk[sport_at + 1]
            dp = (chunk[dport_at].astype(np.int64) << 8) | chunk[dport_at + 1]
            eph_src = sp > dp  # the ephemeral side is the larger port: shift it, keep the service
            shifted = 1024 + (np.where(eph_src, sp, dp) - 1024 + 977 * r) % 64512
            nsp, ndp = np.where(eph_src, shifted, sp), np.where(eph_src, dp, shifted)
            chunk[sport_at], chunk[sport_at + 1] = nsp >> 8, nsp & 255
            chunk[dport_at], chunk[dport_at + 1] = ndp >> 8, ndp & 255
            f.write(chunk.tobytes())
    return dest


def make_vxlan_copy(src: Path, dest: Path, *, vni: int = 4242) -> Path:
    """``src`` (classic pcap, Ethernet) with every frame wrapped in Ethernet/IPv4/UDP 4789/VXLAN.

    Vectorised over records; the outer UDP source port varies with the frame (as VTEPs hash the
    inner flow into it) and the outer lengths follow each record's original length.
    """
    raw = src.read_bytes()
    b = next(iter(read_records(src, chunk_bytes=len(raw) + (1 << 20))))
    n, cap = b.n_records, b.caplen.astype(np.int64)
    head = np.frombuffer(
        bytes.fromhex("0200000000020200000000010800")  # outer Ethernet
        + struct.pack(">BBHHHBBH4s4s", 0x45, 0, 0, 0, 0, 64, 17, 0, bytes([192, 0, 2, 1]), bytes([192, 0, 2, 2]))
        + struct.pack(">HHHH", 0, 4789, 0, 0)
        + struct.pack(">II", 0x08000000, vni << 8),
        np.uint8,
    )
    hl = len(head)  # 50
    outer = np.tile(head, (n, 1))
    orig = b.origlen.astype(np.int64)
    for at, value in ((16, orig + hl - 14), (38, orig + hl - 34), (34, 49152 + np.arange(n) % 16384)):
        outer[:, at], outer[:, at + 1] = value >> 8, value & 255
    rec = b.data  # the records after the 24-byte file header; offsets point into it
    hdr = rec[(b.offsets - 16)[:, None] + np.arange(16)].copy()
    hdr[:, 8:16] = np.stack([cap + hl, orig + hl], axis=1).astype("<u4").view(np.uint8)
    size = 16 + hl + cap
    start = np.zeros(n, np.int64)
    np.cumsum(size[:-1], out=start[1:])
    out = np.empty(int(size.sum()), np.uint8)
    out[start[:, None] + np.arange(16)] = hdr
    out[start[:, None] + 16 + np.arange(hl)] = outer
    within = np.arange(int(cap.sum())) - np.repeat(np.cumsum(cap) - cap, cap)
    out[np.repeat(start + 16 + hl, cap) + within] = rec[np.repeat(b.offsets, cap) + within]
    dest.write_bytes(raw[:24] + out.tobytes())
    return dest


CPU: dict[str, float] = {}  # best CPU seconds of the last _best call per label


def _best(fn: Any, repeat: int = 2, label: str = "") -> tuple[float, Any]:
    best, best_cpu, out = float("inf"), float("inf"), None
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        best = min(best, time.perf_counter() - t)
        best_cpu = min(best_cpu, time.process_time() - c)
    CPU[label] = best_cpu
    return best, out


def _cpu_rate(n: int, label: str) -> str:
    return f"[cpu: {n / max(CPU[label], 1e-9):,.0f} pkt/s]"


def netae_read(path: Path) -> int:
    counts = SkipCounts()
    n = 0
    for table in read_packets(path, counts=counts):
        n += table.n_packets
    return n


def netae_featurize(path: Path) -> tuple[str, int, int] | None:
    """End to end through the lead's stages: (label, packets in flows, feature bytes)."""
    try:
        from netae.config import Settings
        from netae.pipeline import featurize_files
    except ImportError:
        featurize_files = None
    if featurize_files is not None:
        out = featurize_files([str(path)], settings=Settings())
        return "netae.pipeline.featurize_files", len(out.flows.order), int(out.features.values.nbytes)
    try:
        from netae.features import compute_features
        from netae.flows import assemble_flows
    except ImportError:
        return None
    packets = PacketTable.concat(list(read_packets(path)))
    flows = assemble_flows(packets, idle_timeout_s=120.0, active_timeout_s=1800.0)
    feats = compute_features(packets, flows)
    return "read_packets + assemble_flows + compute_features", packets.n_packets, int(feats.values.nbytes)


def scapy_dissect(path: Path) -> int:
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.utils import PcapReader

    n = 0
    for pkt in PcapReader(str(path)):
        ip = pkt.getlayer(IP)
        if ip is None:
            continue
        fields = [pkt.time, ip.src, ip.dst, ip.proto, ip.len, ip.ttl, ip.id, ip.frag, ip.flags]
        l4 = ip.payload
        if isinstance(l4, TCP):
            fields += [l4.sport, l4.dport, int(l4.flags), l4.window, l4.dataofs]
        elif isinstance(l4, UDP):
            fields += [l4.sport, l4.dport]
        elif isinstance(l4, ICMP):
            fields += [l4.type, l4.code]
        n += 1
    return n


def scapy_raw_struct(path: Path) -> int:
    from scapy.utils import RawPcapReader

    eth = struct.Struct("!12xH")
    ip4 = struct.Struct("!BxHHHBB2x4s4s")
    ports = struct.Struct("!HH")
    tcp = struct.Struct("!8xBBH")
    n = 0
    for data, meta in RawPcapReader(str(path)):
        (etype,) = eth.unpack_from(data, 0)
        if etype != 0x0800 or len(data) < 34:
            continue
        vihl, total, ident, frag, ttl, proto, src, dst = ip4.unpack_from(data, 14)
        l4 = 14 + (vihl & 15) * 4
        if proto in (6, 17) and len(data) >= l4 + 4:
            sport, dport = ports.unpack_from(data, l4)
            if proto == 6 and len(data) >= l4 + 16:
                doff, flags, window = tcp.unpack_from(data, l4)
        _ts = meta.sec * 1_000_000_000 + meta.usec * 1000
        n += 1
    return n


def dpkt_loop(path: Path) -> int:
    import dpkt

    n = 0
    with path.open("rb") as f:
        for ts, buf in dpkt.pcap.Reader(f):
            try:
                ip = dpkt.ethernet.Ethernet(buf).data
            except dpkt.UnpackError:
                continue
            if not isinstance(ip, dpkt.ip.IP):
                continue
            l4 = ip.data
            fields = [ts, ip.src, ip.dst, ip.p, ip.len, ip.ttl, ip.id, ip.off]
            if isinstance(l4, (dpkt.tcp.TCP, dpkt.udp.UDP)):
                fields += [l4.sport, l4.dport]
            n += 1
    return n


def prefix(path: Path, n: int) -> Path:
    """The first ``n`` records of ``path`` as their own capture, for the slow baselines."""
    dest = path.with_name(path.stem + f"_prefix{n // 1000}k.pcap")
    if dest.exists():
        return dest
    data = np.frombuffer(path.read_bytes()[: 24 + n * 1600], np.uint8)
    pos, k = 24, 0
    while k < n and pos + 16 <= len(data):
        pos += 16 + int(data[pos + 8 : pos + 12].view("<u4")[0])
        k += 1
    dest.write_bytes(data[:pos].tobytes())
    return dest


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def wrapped_rates(path: Path, n_bare: int) -> None:
    """Read+decode and featurize rates on the VXLAN-wrapped copy of ``path`` (issue 18)."""
    vx = path.with_name(path.stem + "_vxlan.pcap")
    if not vx.exists() or vx.stat().st_mtime < path.stat().st_mtime:
        t = time.perf_counter()
        make_vxlan_copy(path, vx)
        print(f"made {vx} ({vx.stat().st_size / 2**20:.0f} MiB) in {time.perf_counter() - t:.1f} s")
    dt, n = _best(lambda: netae_read(vx), label="vx_read")
    print(f"VXLAN-wrapped read+decode: {n} inner packets (bare: {n_bare}) in {dt:.2f} s: {n / dt:,.0f} pkt/s "
          f"{_cpu_rate(n, 'vx_read')}")  # fmt: skip
    dt_f, res = _best(lambda: netae_featurize(vx), label="vx_featurize")
    if res is not None:
        print(f"VXLAN-wrapped featurize end to end: {res[1]} packets in {dt_f:.2f} s: {res[1] / dt_f:,.0f} pkt/s "
              f"{_cpu_rate(res[1], 'vx_featurize')}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("capture", nargs="?", type=Path)
    parser.add_argument("--packets", type=int, default=1_200_000)
    parser.add_argument("--big", action="store_true", help="also read a ~2 GB capture and report peak RSS")
    args = parser.parse_args()
    warnings.simplefilter("ignore")

    path = args.capture or DATA / f"mixed_{args.packets // 1000}k.pcap"
    if not path.exists():
        t = time.perf_counter()
        make_capture(path, args.packets)
        print(f"made {path} ({path.stat().st_size / 2**20:.0f} MiB) in {time.perf_counter() - t:.1f} s")
    size_mib = path.stat().st_size / 2**20

    netae_read(path)  # warm up: numba's cached compile, page cache
    dt, n = _best(lambda: netae_read(path), label="read")
    rate_read = n / dt
    print(
        f"netae read+decode (compiled walker and decode kernel): {n} packets, {size_mib:.0f} MiB "
        f"in {dt:.2f} s: {rate_read:,.0f} pkt/s {_cpu_rate(n, 'read')}"
    )
    rss_read = peak_rss_mib()
    print(f"peak RSS after read+decode: {rss_read:.0f} MiB")

    rate_feat = rate_read
    feat_label = "read+decode only (flows/features not importable)"
    dt_f, res = _best(lambda: netae_featurize(path), label="featurize")  # the first run also warms up
    if res is not None:
        feat_label, n_feat, _nbytes = res
        rate_feat = n_feat / dt_f
        print(
            f"netae featurize end to end ({feat_label}): {n_feat} packets in {dt_f:.2f} s: "
            f"{rate_feat:,.0f} pkt/s {_cpu_rate(n_feat, 'featurize')}"
        )
        print(f"peak RSS after featurize: {peak_rss_mib():.0f} MiB")
    else:
        print(f"netae featurize: {feat_label}")
    wrapped_rates(path, n)

    small = prefix(path, PREFIX_PACKETS)
    dt_s, n_s = _best(lambda: scapy_dissect(small), repeat=1, label="scapy")
    rate_scapy = n_s / dt_s
    print(f"scapy PcapReader + dissection ({n_s} pkts): {rate_scapy:,.0f} pkt/s {_cpu_rate(n_s, 'scapy')}")
    dt_r, n_r = _best(lambda: scapy_raw_struct(small), repeat=1, label="raw")
    rate_raw = n_r / dt_r
    print(f"scapy RawPcapReader + struct loop ({n_r} pkts): {rate_raw:,.0f} pkt/s {_cpu_rate(n_r, 'raw')}")
    dt_d, n_d = _best(lambda: dpkt_loop(small), repeat=1, label="dpkt")
    print(f"dpkt Reader + Ethernet parse ({n_d} pkts): {n_d / dt_d:,.0f} pkt/s {_cpu_rate(n_d, 'dpkt')}")

    if args.big:
        big = DATA / "big_2g.pcap"
        if not big.exists():
            make_capture(big, int(2 * 2**30 / (size_mib * 2**20 / n)))
        before = peak_rss_mib()
        dt_b, n_b = _best(lambda: netae_read(big), repeat=1, label="big")
        print(
            f"--big read: {n_b} packets, {big.stat().st_size / 2**30:.2f} GiB in {dt_b:.1f} s "
            f"({n_b / dt_b:,.0f} pkt/s); peak RSS {max(before, peak_rss_mib()):.0f} MiB (before: {before:.0f} MiB)"
        )
        # The command users run: `netae featurize BIG -o FILE.parquet`, in its own process so its
        # peak RSS is its own (streamed: batches of closed flows go to Parquet row groups).
        import os
        import subprocess

        out = DATA / "big_2g.parquet"
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "netae", "featurize", str(big), "-o", str(out), "--quiet"],
            check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        dt_cli = time.perf_counter() - t0
        child_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(
            f"--big `netae featurize -o parquet`: {big.stat().st_size / 2**30:.2f} GiB capture, {n_b} packets "
            f"in {dt_cli:.1f} s; peak RSS {child_rss:.0f} MiB; Parquet {out.stat().st_size / 2**20:.0f} MiB"
        )

    print(
        f"featurize: {rate_feat:,.0f} pkt/s; {rate_feat / rate_raw:.1f}x RawPcapReader loop; "
        f"{rate_feat / rate_scapy:.1f}x scapy dissection"
    )


if __name__ == "__main__":
    main()
