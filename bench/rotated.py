"""Rotated captures: a capture cut into pieces, scored one piece per run with and without --state.

Prints the flows and alerts of the whole capture beside those of the pieces scored alone (each run
starts cold: flows cut at the boundaries, no context) and of the pieces scored with a state file.
Run: ``python bench/rotated.py -m MODEL [--capture benign_long.pcap] [--pieces 5]``.
"""

from __future__ import annotations

import argparse
import struct
import tempfile
from pathlib import Path

import numpy as np

from netae.modelfile import load_model
from netae.state import load_state
from netae.stream import stream_scores
from netae.tables import ScoreTable
from netae.workflow import score_captures

DEFAULT_CAPTURE = Path("/work/shared/eval/benign_long.pcap")


def cut(capture: Path, n_pieces: int, out_dir: Path) -> list[Path]:
    """Consecutive pieces of a classic little-endian pcap at record boundaries (as editcap -c)."""
    data = capture.read_bytes()
    if data[:4] not in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        raise SystemExit(f"{capture}: a classic little-endian pcap is needed")
    ends, pos = [24], 24
    while pos + 16 <= len(data):
        pos += 16 + struct.unpack_from("<I", data, pos + 8)[0]
        if pos <= len(data):
            ends.append(pos)
    bounds = [ends[round(i * (len(ends) - 1) / n_pieces)] for i in range(n_pieces + 1)]
    paths = []
    for i in range(n_pieces):
        p = out_dir / f"piece_{i:02d}.pcap"
        p.write_bytes(data[:24] + data[bounds[i] : bounds[i + 1]])
        paths.append(p)
    return paths


def keyed(tables: list[ScoreTable]) -> dict[tuple[int, ...], tuple[int, bool, float]]:
    out = {}
    for t in tables:
        f = t.flows
        cols = (f.src_hi, f.src_lo, f.dst_hi, f.dst_lo, f.src_port, f.dst_port, f.proto, f.first_ns, f.last_ns)
        keys = np.stack([c.astype(np.int64) for c in cols], axis=1).tolist()
        pkts = (f.fwd_pkts + f.bwd_pkts).tolist()
        for k, n, a, s in zip(keys, pkts, t.is_anomaly.tolist(), t.score.tolist(), strict=True):
            out[tuple(k)] = (n, a, s)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-m", "--model", type=Path, required=True)
    ap.add_argument("--capture", type=Path, default=DEFAULT_CAPTURE)
    ap.add_argument("--pieces", type=int, default=5)
    args = ap.parse_args()
    model = load_model(args.model)
    whole = score_captures([str(args.capture)], model_path=args.model).table
    with tempfile.TemporaryDirectory() as tmp:
        pieces = cut(args.capture, args.pieces, Path(tmp))
        cold = [score_captures([str(p)], model_path=args.model).table for p in pieces]
        state = Path(tmp) / "netae.state"
        warm: list[ScoreTable] = []
        for p in pieces:
            warm += list(stream_scores([str(p)], model=model, state=state))
        saved = load_state(state, model=model)
        state_bytes = state.stat().st_size
    w, s = keyed([whole]), keyed(warm)
    same = [k for k in s if k in w]
    missing = {k: v for k, v in w.items() if k not in s}
    n_open = saved.open_packets.n_packets if saved else 0
    print(f"capture {args.capture.name}, {args.pieces} pieces, model {args.model.name}")
    print(f"{'':34}{'flows':>8}{'alerts':>8}")
    print(f"{'whole capture':34}{whole.n_flows:>8}{int(whole.is_anomaly.sum()):>8}")
    n_cold = sum(t.n_flows for t in cold)
    print(f"{'pieces, one run each, no state':34}{n_cold:>8}{sum(int(t.is_anomaly.sum()) for t in cold):>8}")
    print(f"{'pieces, one run each, --state':34}{len(s):>8}{sum(v[1] for v in s.values()):>8}")
    print(
        f"--state: {len(same)} of {len(s)} flows equal to the whole capture's (key, first and last packet); "
        f"verdicts equal on {sum(s[k][1] == w[k][1] for k in same)}; max score difference "
        f"{max((abs(s[k][2] - w[k][2]) for k in same), default=0.0):.2g}; "
        f"{len(missing)} flows ({sum(v[0] for v in missing.values())} packets) still open in the state "
        f"({n_open} packets, {state_bytes} bytes), {sum(v[1] for v in missing.values())} of them alerts in the whole"
    )


if __name__ == "__main__":
    main()
