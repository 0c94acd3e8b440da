"""Compare the CSV and JSON-lines outputs of two netae runs, file by file and cell by cell.

Usage: python bench/compare_outputs.py DIR_A DIR_B

Every field must be equal except ``model_id``; scores, thresholds and per-packet errors may
differ by one unit in the last printed digit (relative 5e-4). Prints the differing cells, one
line per file with its rows, differing cells and anomalies, and the total; exits 1 on any
difference.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

SCORE_KEYS = {
    "error",
    "score",
    "threshold",
    "max_score",
    "risk_score",
    "risk_score_norm",
    "worst_packets",
    "worst_flows",
}
RTOL = 5e-4  # one unit in the 4th significant digit printed


def close(a, b):
    try:
        x, y = float(a), float(b)
    except (TypeError, ValueError):
        return a == b
    return x == y or (math.isfinite(x) and abs(x - y) <= RTOL * max(abs(x), abs(y), 1e-9))


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _json_rows(path: Path) -> list[dict]:
    with open(path) as fh:
        return [json.loads(line) for line in fh]


def cmp_cell(k, a, b, where):
    if k in ("model_id",):
        return 0
    if a == b:
        return 0
    if k in SCORE_KEYS or k.endswith("score"):
        if isinstance(a, str) and (";" in a or ":" in a):  # worst_packets index:dir:len:err
            pa, pb = a.replace(";", ":").split(":"), b.replace(";", ":").split(":")
            if len(pa) == len(pb) and all(close(x, y) for x, y in zip(pa, pb, strict=True)):
                return 0
        elif close(a, b):
            return 0
    print(f"{where}: {k}: {a!r} != {b!r}")
    return 1


def walk(a, b, where, key=""):
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            print(f"{where}: keys differ {sorted(a.keys() ^ b.keys())}")
            return 1
        return sum(walk(a[k], b[k], where, k) for k in a)
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return sum(walk(x, y, where, key) for x, y in zip(a, b, strict=True))
    return cmp_cell(key, a, b, where)


bad = 0
for fa in sorted(Path(sys.argv[1]).glob("*")):
    fb = Path(sys.argv[2]) / fa.name
    if fa.suffix == ".csv":
        ra, rb = _csv_rows(fa), _csv_rows(fb)
    elif fa.suffix == ".jsonl":
        ra, rb = _json_rows(fa), _json_rows(fb)
    else:
        continue
    n = 0
    if len(ra) != len(rb):
        print(f"{fa.name}: {len(ra)} vs {len(rb)} rows")
        bad += 1
        continue
    for i, (x, y) in enumerate(zip(ra, rb, strict=True)):
        n += walk(x, y, f"{fa.name}:{i}")
    verdicts = sum(1 for x in ra if (x.get("is_anomaly") or x.get("netae", {}).get("is_anomaly")) in ("true", True))
    print(f"{fa.name}: {len(ra)} rows, {n} differing cells, {verdicts} anomalies")
    bad += n
print("TOTAL differing cells:", bad)
sys.exit(1 if bad else 0)
