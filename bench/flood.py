"""A spoofed-source SYN flood against ``netae score``, batch and ``--stream`` (issue 21).

    python bench/flood.py [--sizes 1000000,3000000] [--model MODEL] [--rate PPS]

For each size, writes ``bench/data/flood_<N>.pcap`` (ignored by git): a little benign UDP
traffic, then N TCP SYNs to one web server, each from a new random IPv4 source, at ``--rate``
packets per second of capture time (default 1,000,000: the whole flood lies within one idle
timeout, so no flow would close by time). Then runs, each in a fresh process:

- batch: ``netae score FLOOD -m MODEL --format jsonl -o OUT``;
- stream: ``netae score - --stream -m MODEL --format jsonl`` with the capture piped to its
  standard input as fast as it reads, timing the first alert line from the first byte written.

Prints for each: peak RSS (the process's own maximum resident set), packets per second over the
whole command (process start to exit), alerts written, and for the stream the seconds to the
first alert. The model (``--model``, else one trained for 1 epoch on
``shared/eval/train_benign.pcap``, or the sample captures) sets ``flows.max_open_flows``. The
baseline figures are those of issue 21 (before the flood cap): 1 M packets took 297 s and
3.75 GB, 3 M packets 10.7 GB. The last line reads ``flood: N pkt/s, peak N MiB at 3M packets``
(the slower and larger of batch and stream at the largest size).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "bench" / "data"
SHARED = ROOT.parent / "shared"
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def make_flood(path: Path, n: int, *, rate: float, seed: int = 0) -> None:
    """The capture (pcap, microseconds), written in blocks of records built by numpy."""
    rng = np.random.default_rng(seed)
    t0 = 1_700_000_000.0
    with open(path, "wb") as fh:
        fh.write(np.array([0xA1B2C3D4, 0x00040002, 0, 0, 65535, 1], "<u4").tobytes())  # pcap, v2.4, Ethernet
        fh.write(_benign(t0 - 30.0))
        for a in range(0, n, 1 << 20):
            k = min(n, a + (1 << 20)) - a
            fh.write(_syn_block(rng, t0 + np.arange(a, a + k) / rate))


def _header_bytes(ts: np.ndarray, caplen: int) -> np.ndarray:
    sec = np.floor(ts).astype("<u4")
    usec = np.round((ts - np.floor(ts)) * 1e6).clip(0, 999_999).astype("<u4")
    hdr = np.empty((len(ts), 4), "<u4")
    hdr[:, 0], hdr[:, 1], hdr[:, 2], hdr[:, 3] = sec, usec, caplen, caplen
    return hdr.view(np.uint8).reshape(len(ts), 16)


def _syn_block(rng: np.random.Generator, ts: np.ndarray) -> bytes:
    k = len(ts)
    frame = bytearray(b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00")
    frame += bytes.fromhex("4500002800004000400600000000000a0a0000fe")  # IPv4, TCP, to 10.10.0.254
    frame += bytes.fromhex("0400005000000001000000005002040000000000")  # SYN to port 80
    rec = np.tile(np.frombuffer(bytes(frame), np.uint8), (k, 1))
    src = rng.integers(0x0B000000, 0xDF000000, k, dtype=np.uint64).astype(">u4")
    rec[:, 26:30] = src.view(np.uint8).reshape(k, 4)
    rec[:, 34:36] = rng.integers(1024, 65535, k, dtype=np.uint64).astype(">u2").view(np.uint8).reshape(k, 2)
    return np.hstack([_header_bytes(ts, 54), rec]).tobytes()


def _benign(t: float) -> bytes:
    """A few DNS-like UDP exchanges before the flood."""
    out = []
    for i in range(200):
        for src, dst, sp, dp in ((1, 2, 3000 + i, 53), (2, 1, 53, 3000 + i)):
            ip = bytes.fromhex("4500003800000000401100000a0000") + bytes([src]) + bytes.fromhex("0a0000") + bytes([dst])
            udp = sp.to_bytes(2, "big") + dp.to_bytes(2, "big") + (36).to_bytes(2, "big") + b"\0\0" + bytes(28)
            frame = b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip + udp
            out.append(
                _header_bytes(np.array([t + i * 0.1 + (0.001 if src == 2 else 0)]), len(frame)).tobytes() + frame
            )
    return b"".join(out)


def _wait_rss(proc: subprocess.Popen[bytes]) -> tuple[int, int]:
    """Exit status and peak RSS (MiB) of this one child."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_maxrss // 1024


def run_batch(capture: Path, model: Path, n: int) -> dict[str, float]:
    out = DATA / "flood_out.jsonl"
    cmd = [sys.executable, "-m", "netae", "score", str(capture), "-m", str(model), "--format", "jsonl", "-o",
           str(out), "--quiet"]  # fmt: skip
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stderr=subprocess.PIPE)
    rc, rss = _wait_rss(proc)
    wall = time.perf_counter() - t
    alerts = len(out.read_bytes().splitlines()) if out.exists() else 0
    if rc not in (0, 1):
        raise SystemExit(f"batch run failed ({rc}): {proc.stderr.read().decode() if proc.stderr else ''}")
    return {"pkt_s": n / wall, "rss": rss, "alerts": alerts, "wall": wall}


def run_stream(capture: Path, model: Path, n: int) -> dict[str, float]:
    cmd = [sys.executable, "-m", "netae", "score", "-", "--stream", "-m", str(model), "--format", "jsonl", "--quiet"]
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    started: list[float] = []

    def feed() -> None:
        assert proc.stdin is not None
        with open(capture, "rb") as fh:
            while block := fh.read(1 << 16):
                if not started:
                    started.append(time.perf_counter())
                proc.stdin.write(block)
        proc.stdin.close()

    feeder = threading.Thread(target=feed)
    feeder.start()
    first, alerts = None, 0
    assert proc.stdout is not None
    for _ in proc.stdout:
        if first is None:
            first = time.perf_counter()
        alerts += 1
    feeder.join()
    rc, rss = _wait_rss(proc)
    wall = time.perf_counter() - t
    if rc not in (0, 1):
        raise SystemExit(f"stream run failed ({rc})")
    to_first = (first - started[0]) if first is not None and started else float("nan")
    return {"pkt_s": n / wall, "rss": rss, "alerts": alerts, "wall": wall, "first_alert_s": to_first,
            "first_from_start_s": (first - t) if first is not None else float("nan")}  # fmt: skip


def default_model() -> Path:
    path = DATA / "flood_model.netae"
    if path.exists():
        return path
    train_on = SHARED / "eval" / "train_benign.pcap"
    if not train_on.exists():
        train_on = ROOT / "sample_pcaps" / "normal"
    subprocess.run(
        [sys.executable, "-m", "netae", "train", str(train_on), "-o", str(path), "--epochs", "1", "--quiet"],
        check=True, cwd=ROOT, env=ENV,
    )  # fmt: skip
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1000000,3000000", help="flood sizes in packets, comma-separated")
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--rate", type=float, default=1e6, help="flood packets per second of capture time")
    args = ap.parse_args()
    DATA.mkdir(parents=True, exist_ok=True)
    model = args.model or default_model()
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    last = None
    for n in sizes:
        capture = DATA / f"flood_{n}.pcap"
        if not capture.exists():
            make_flood(capture, n, rate=args.rate)
        b, s = run_batch(capture, model, n), run_stream(capture, model, n)
        print(f"{n:,} packets, batch : {b['pkt_s']:,.0f} pkt/s, peak {b['rss']:,} MiB, {b['alerts']:,} alerts, "
              f"{b['wall']:.1f} s")  # fmt: skip
        print(f"{n:,} packets, stream: {s['pkt_s']:,.0f} pkt/s, peak {s['rss']:,} MiB, {s['alerts']:,} alerts, "
              f"{s['wall']:.1f} s, first alert {s['first_alert_s']:.1f} s after the flood's first byte "
              f"({s['first_from_start_s']:.1f} s after process start)")  # fmt: skip
        last = (n, min(b["pkt_s"], s["pkt_s"]), max(b["rss"], s["rss"]))
    print("baseline (issue 21, before the cap): 1M packets 297 s and 3.75 GB; 3M packets 10.7 GB")
    if last is not None:
        n, pkt_s, rss = last
        print(f"flood: {pkt_s:,.0f} pkt/s, peak {rss:,} MiB at {n / 1e6:g}M packets")


if __name__ == "__main__":
    main()
