"""Alert delay on a live feed: replay a capture through a pipe into `netae score -` at N x its pace.

For every flow the delay from its last packet to its alert line is measured in capture time
(wall time x speed, as the issue measured it), and past the flow's end: its last packet for a TCP
flow closed by FIN or RST, its last packet plus the idle timeout for the others.
Run: ``python bench/live.py -m MODEL [--capture sample_pcaps/mixed.pcap] [--speed 10] [--seconds 60]``
(``--seconds``: replay only that many capture seconds, for a quick run).
"""

from __future__ import annotations

import argparse
import json
import statistics
import struct
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import numpy as np

from netae.capture import read_packets
from netae.flows import NEVER_NS, tcp_close_ns
from netae.modelfile import load_model
from netae.pipeline import new_assembler
from netae.tables import PacketTable
from netae.workflow import model_settings

ROOT = Path(__file__).resolve().parents[1]


def records(data: bytes) -> list[tuple[float, bytes]]:
    """(timestamp s, record bytes) of a classic little-endian µs pcap."""
    out, pos = [], 24
    while pos + 16 <= len(data):
        sec, usec, caplen = struct.unpack_from("<III", data, pos)
        out.append((sec + usec / 1e6, data[pos : pos + 16 + caplen]))
        pos += 16 + caplen
    return out


def closed_flows(capture: Path, model: Path, until_s: float) -> dict[tuple[int, int, int], bool]:
    """(first packet µs, src port, dst port) -> whether FIN/RST closed the flow (model's rules)."""
    packets = PacketTable.concat(list(read_packets(capture)))
    packets = packets.take(np.flatnonzero(packets.ts_ns <= int(until_s * 1e9)))
    asm = new_assembler(model_settings(load_model(model)))
    table, flows = asm.push(packets)
    t2, f2 = asm.finish()
    out = {}
    for tab, fl in ((table, flows), (t2, f2)):
        closed = tcp_close_ns(tab, fl) != NEVER_NS
        for first, sp, dp, c in zip(fl.first_ns.tolist(), fl.src_port.tolist(), fl.dst_port.tolist(), closed.tolist(),
                                    strict=True):  # fmt: skip
            out[(first // 1000, sp, dp)] = c
    return out


def us(iso: str) -> int:
    return round(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1e6)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-m", "--model", type=Path, required=True)
    ap.add_argument("--capture", type=Path, default=ROOT / "sample_pcaps" / "mixed.pcap")
    ap.add_argument("--speed", type=float, default=10.0)
    ap.add_argument("--seconds", type=float, default=0.0, help="replay only this many capture seconds (0: all)")
    args = ap.parse_args()
    data = args.capture.read_bytes()
    recs = records(data)
    t0 = recs[0][0]
    if args.seconds:
        recs = [r for r in recs if r[0] - t0 <= args.seconds]
    idle_s = model_settings(load_model(args.model)).flows.idle_timeout_s
    kind = closed_flows(args.capture, args.model, recs[-1][0])
    proc = subprocess.Popen(
        [sys.executable, "-m", "netae", "score", "-", "-m", str(args.model), "-f", "jsonl", "--all", "-q"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdin is not None
    assert proc.stdout is not None
    arrivals: list[tuple[float, dict]] = []
    reader = threading.Thread(target=lambda: arrivals.extend((time.monotonic(), json.loads(x)) for x in proc.stdout))
    reader.start()
    proc.stdin.write(data[:24])
    start = time.monotonic()
    for ts, rec in recs:
        time.sleep(max(0.0, start + (ts - t0) / args.speed - time.monotonic()))
        proc.stdin.write(rec)
        proc.stdin.flush()
    end_wall = time.monotonic()
    time.sleep(max(5.0, 2 * idle_s / args.speed))  # the pipe stays open: no end-of-input flush
    proc.stdin.close()
    reader.join()
    proc.wait()
    after_last, past_end = [], []
    for at, doc in arrivals:
        if at >= end_wall + max(5.0, 2 * idle_s / args.speed) - 0.05:
            continue  # written at the end of input, not by expiry
        alert_us = (t0 + (at - start) * args.speed) * 1e6
        last_us = us(doc["event"]["end"])
        src, dst = doc.get("source", {}), doc.get("destination", {})
        fin = kind.get((us(doc["event"]["start"]), src.get("port", 0), dst.get("port", 0)), False)
        after_last.append((alert_us - last_us) / 1e6)
        past_end.append((alert_us - last_us) / 1e6 - (0.0 if fin else idle_s))
    n_fin = sum(1 for d, e in zip(after_last, past_end, strict=True) if d == e)
    print(f"{args.capture.name} at {args.speed:g}x: {len(arrivals)} alert lines, {len(after_last)} written while "
          f"the pipe was open ({n_fin} FIN/RST-closed)")  # fmt: skip
    print(f"delay after the flow's last packet, capture seconds: median {statistics.median(after_last):.1f}")
    median = statistics.median(past_end)
    print(f"delay past the flow's end (FIN/RST, or last packet + idle timeout {idle_s:g} s): median {median:.1f} "
          f"capture seconds, {median / args.speed:.2f} wall seconds")  # fmt: skip


if __name__ == "__main__":
    main()
