"""Detection quality on the labelled evaluation captures, next to the peers' published figures.

Trains netae with default settings (or ``--config``) on ``train_benign.pcap`` of the standard set
and of the hard set, evaluates ``dev_mixed.pcap`` of each against its labels, and scores
``benign_long.pcap`` for the flagged share. The peers' figures are copied from issues 12 and 13
(measured once by the issue authors; they are not re-run here).

    python bench/quality.py [--set standard|hard|both] [--shared DIR] [--config FILE] [--seeds 0-5]

After each set's figures it prints the incident ranking (issue 19): per attack label, the rank of
its best-ranked incident, and where the benign-only incidents rank. The targets: every attack
label has an incident in the top 10 on both sets, and on the standard set no benign-only incident
ranks above the worst-placed attack label's best incident. ``--epochs N`` caps training for a
quick smoke run (figures from such a run say little).

``--seeds A-B`` trains once per seed instead (``train.seed`` A to B) and prints one line per seed
and set with the figures the detection issues check (12: standard set and benign_long; 13: hard
set) and whether each target holds: a model's verdicts can change with the seed, and one lucky
seed says little about a capture kept aside.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from netae.config import load_settings  # noqa: E402
from netae.evaluate import (  # noqa: E402
    Evaluation,
    IncidentRanks,
    evaluate_scores,
    incident_ranks,
    match_labels,
    read_labels,
)
from netae.output import table_incidents  # noqa: E402
from netae.workflow import score_captures, train_captures  # noqa: E402

# Issue 12: peers on dev_mixed.pcap (trained on train_benign.pcap).
# (name, ROC-AUC, avg precision, TPR@1%FPR, TPR@0.1%FPR, benign FPR at verdict, lowest per-attack AUC, long flagged)
PEERS_STANDARD: tuple[tuple[str, float, float, float, float, float, str, float | None], ...] = (
    ("NFStream stats + MLP AE", 0.9960, 0.9973, 0.994, 0.000, 0.003, "bruteforce 0.967", 0.003),
    ("NFStream stats + PCA", 0.9717, 0.9899, 0.048, 0.000, 0.003, "bruteforce 0.938", 0.003),
    ("NFStream stats + IForest", 0.6090, 0.8932, 0.050, 0.000, 0.007, "connect_scan 0.518", 0.010),
    ("Kitsune (mean pkt RMSE)", 0.8221, 0.9617, 0.478, 0.012, 0.954, "bruteforce 0.644", None),
    ("per-flow packed LSTM AE", 0.8909, 0.9605, 0.049, 0.000, 0.005, "exfil 0.785", 0.005),
)
PEER_BEST_FLAGGED_STANDARD = (
    "best peer (MLP AE) flagged at its verdict: syn_scan 0/1000, connect_scan 0/1000, syn_flood 0/3000, "
    "slowloris 250/272, bruteforce 0/9, dns_tunnel 3/3, exfil 1/1"
)
# Issue 13: peers on hard/dev_mixed.pcap (trained on hard/train_benign.pcap).
# (name, ROC-AUC, benign FPR at verdict, c2 AUC, tunnel AUC, exfil AUC, syn_scan AUC, flagged c2/tunnel/exfil)
PEERS_HARD: tuple[tuple[str, float, float, float, float, float, float, str], ...] = (
    ("NFStream stats + MLP AE", 0.929, 0.000, 0.696, 0.818, 0.896, 1.000, "2/72, 0/183, 0/12"),
    ("NFStream stats + PCA", 0.906, 0.007, 0.755, 0.710, 0.992, 0.993, "0/72, 0/183, 10/12"),
    ("NFStream stats + IForest", 0.860, 0.009, 0.682, 0.657, 0.987, 0.947, "0/72, 0/183, 1/12"),
    ("Kitsune (mean pkt RMSE)", 0.882, 0.030, 0.809, 0.748, 0.824, 0.885, "3/72, 8/183, 1/12"),
    ("per-flow packed LSTM AE", 0.729, 0.004, 0.925, 0.065, 0.686, 0.950, "0/72, 0/183, 0/12"),
)


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


INCIDENT_TOP = 10  # issue 19: every attack label has an incident this high


def _run_set(
    name: str, folder: Path, *, settings: Any, with_long: bool, workdir: Path
) -> tuple[Evaluation, tuple[int, int] | None, float, IncidentRanks]:
    t0 = time.perf_counter()
    model = workdir / f"{name}.netae"
    train_captures([str(folder / "train_benign.pcap")], output=model, settings=settings)
    train_s = time.perf_counter() - t0
    run = score_captures([str(folder / "dev_mixed.pcap")], model_path=model, device=settings.train.device)
    matched = match_labels(run.table, read_labels(folder / "dev_labels.csv"))
    ev = evaluate_scores(run.table.score, matched, threshold=run.table.threshold)
    ranks = incident_ranks(matched, table_incidents(run.table))
    long = None
    if with_long and (folder / "benign_long.pcap").exists():
        lr = score_captures([str(folder / "benign_long.pcap")], model_path=model, device=settings.train.device)
        long = (int(np.count_nonzero(lr.table.is_anomaly)), int(lr.table.flows.n_flows))
    return ev, long, train_s, ranks


def report_incidents(set_name: str, ranks: IncidentRanks, *, strict_benign: bool) -> str:
    """Issue 19's lines: each attack label's first incident rank, and whether the targets hold."""
    cells = ", ".join(f"{a} {r if r is not None else 'none'}" for a, r in ranks.best.items())
    top_ok = all(r is not None and r <= INCIDENT_TOP for r in ranks.best.values())
    benign_ok = ranks.benign_above_attacks == 0
    first_benign = ranks.benign_only[0] if ranks.benign_only else "-"
    verdict = top_ok and (benign_ok or not strict_benign)
    return (
        f"{set_name} incidents: {ranks.n_incidents}; first incident rank per attack: {cells}\n"
        f"{set_name} benign-only incidents: {len(ranks.benign_only)} (first at rank {first_benign}, "
        f"{ranks.benign_above_attacks} above the last attack label's first incident) -> "
        f"every attack in the top {INCIDENT_TOP}: {'yes' if top_ok else 'NO'}"
        + (f"; no benign-only incident above the attacks: {'yes' if benign_ok else 'NO'}" if strict_benign else "")
        + f" -> {'incident targets met' if verdict else 'MISSED'}"
    )


def _netae_rows(ev: Evaluation) -> list[str]:
    lines = [
        f"  flows {ev.n_flows} (benign {ev.n_benign}, attack {ev.n_attack}, unmatched {ev.n_unmatched})",
        f"  {'attack':<14}{'flows':>6}{'ROC-AUC':>9}{'flagged':>12}",
    ]
    for a, m in ev.per_attack.items():
        lines.append(f"  {a:<14}{m['flows']:>6}{m['roc_auc']:>9.4f}{m['flagged']:>7}/{m['flows']:<5}")
    return lines


def report_standard(ev: Evaluation, long: tuple[int, int] | None, train_s: float) -> str:
    worst = min(ev.per_attack.items(), key=lambda kv: kv[1]["roc_auc"])
    worst_s = f"{worst[0]} {worst[1]['roc_auc']:.3f}"
    long_s = f"{long[0]}/{long[1]} = {_pct(long[0] / max(long[1], 1))}" if long else "n/a"
    head = (
        f"{'detector':<26}{'ROC-AUC':>8}{'AP':>8}{'TPR@1%':>8}{'TPR@.1%':>9}{'FPR@thr':>9}  "
        f"{'lowest per-attack AUC':<22}{'long flagged':>14}"
    )
    lines = ["== standard set: dev_mixed.pcap (trained on train_benign.pcap) ==", head]
    for p in PEERS_STANDARD:
        lng = _pct(p[7]) if p[7] is not None else "-"
        lines.append(f"{p[0]:<26}{p[1]:>8.4f}{p[2]:>8.4f}{p[3]:>8.3f}{p[4]:>9.3f}{_pct(p[5]):>9}  {p[6]:<22}{lng:>14}")
    lines.append(
        f"{'netae':<26}{ev.roc_auc:>8.4f}{ev.average_precision:>8.4f}{ev.tpr_at_1pct_fpr:>8.3f}"
        f"{ev.tpr_at_01pct_fpr:>9.3f}{_pct(ev.benign_fpr_at_threshold):>9}  "
        f"{worst_s:<22}{long_s:>14}"
    )
    lines.append(PEER_BEST_FLAGGED_STANDARD)
    lines.append(f"netae per attack (trained in {train_s:.0f} s):")
    lines.extend(_netae_rows(ev))
    return "\n".join(lines)


def report_hard(ev: Evaluation, train_s: float) -> str:
    pa = ev.per_attack

    def auc(a: str) -> str:
        return f"{pa[a]['roc_auc']:.3f}" if a in pa else "-"

    def flg(a: str) -> str:
        return f"{pa[a]['flagged']}/{pa[a]['flows']}" if a in pa else "-"

    head = (
        f"{'detector':<26}{'ROC-AUC':>8}{'FPR@thr':>9}{'c2 AUC':>8}{'tunnel':>8}{'exfil':>8}{'syn_scan':>9}  "
        "flagged c2/tunnel/exfil"
    )
    lines = ["== hard set: hard/dev_mixed.pcap (trained on hard/train_benign.pcap) ==", head]
    for p in PEERS_HARD:
        lines.append(f"{p[0]:<26}{p[1]:>8.3f}{_pct(p[2]):>9}{p[3]:>8.3f}{p[4]:>8.3f}{p[5]:>8.3f}{p[6]:>9.3f}  {p[7]}")
    lines.append(
        f"{'netae':<26}{ev.roc_auc:>8.3f}{_pct(ev.benign_fpr_at_threshold):>9}{auc('c2_beacon'):>8}"
        f"{auc('dns_tunnel'):>8}{auc('exfil'):>8}{auc('syn_scan'):>9}  "
        f"{flg('c2_beacon')}, {flg('dns_tunnel')}, {flg('exfil')}"
    )
    lines.append(f"netae per attack (trained in {train_s:.0f} s):")
    lines.extend(_netae_rows(ev))
    return "\n".join(lines)


def _share_ok(ev: Evaluation, attacks: tuple[str, ...], share: float) -> bool:
    pa = ev.per_attack
    return all(pa[a]["flagged"] >= share * pa[a]["flows"] for a in attacks if a in pa)


def seed_line_standard(seed: int, ev: Evaluation, long: tuple[int, int] | None) -> str:
    """Issue 12's targets for one seed."""
    pa = ev.per_attack
    min_auc = min(m["roc_auc"] for m in pa.values())
    min_flag = min(m["flagged"] / m["flows"] for m in pa.values())
    long_share = long[0] / max(long[1], 1) if long else 0.0
    ok = (
        ev.roc_auc >= 0.999
        and min_auc >= 0.995
        and ev.tpr_at_01pct_fpr >= 0.95
        and ev.benign_fpr_at_threshold <= 0.01
        and min_flag >= 0.95
        and long_share <= 0.005
    )
    long_s = f"{long[0]}/{long[1]}" if long else "n/a"
    return (
        f"seed {seed} standard: ROC-AUC {ev.roc_auc:.4f}, lowest attack AUC {min_auc:.4f}, "
        f"TPR@0.1% {ev.tpr_at_01pct_fpr:.3f}, FPR@thr {_pct(ev.benign_fpr_at_threshold)}, "
        f"lowest attack flagged {100 * min_flag:.1f} %, benign_long {long_s} -> {'all targets met' if ok else 'MISSED'}"
    )


def seed_line_hard(seed: int, ev: Evaluation) -> str:
    """Issue 13's targets for one seed."""
    pa = ev.per_attack
    quiet = ("c2_beacon", "dns_tunnel", "exfil", "syn_scan")
    min_auc = min(m["roc_auc"] for m in pa.values())
    ok = ev.roc_auc >= 0.98 and min_auc >= 0.95 and ev.benign_fpr_at_threshold <= 0.01 and _share_ok(ev, quiet, 0.5)
    flagged = ", ".join(f"{a} {pa[a]['flagged']}/{pa[a]['flows']}" for a in quiet if a in pa)
    return (
        f"seed {seed} hard: ROC-AUC {ev.roc_auc:.3f}, lowest attack AUC {min_auc:.3f}, "
        f"FPR@thr {_pct(ev.benign_fpr_at_threshold)}, flagged {flagged} -> {'all targets met' if ok else 'MISSED'}"
    )


def run_seeds(args: argparse.Namespace, settings: Any, eval_dir: Path) -> int:
    first, _, last = args.seeds.partition("-")
    seeds = range(int(first), int(last or first) + 1)
    met = {"standard": 0, "hard": 0}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            s = dataclasses.replace(settings, train=dataclasses.replace(settings.train, seed=seed))
            if args.set in ("standard", "both"):
                ev, long, _, ranks = _run_set("standard", eval_dir, settings=s, with_long=True, workdir=Path(tmp))
                line = seed_line_standard(seed, ev, long)
                met["standard"] += line.endswith("all targets met")
                print(line, flush=True)
                print(f"seed {seed} " + report_incidents("standard", ranks, strict_benign=True), flush=True)
            if args.set in ("hard", "both"):
                ev, _, _, ranks = _run_set("hard", eval_dir / "hard", settings=s, with_long=False, workdir=Path(tmp))
                line = seed_line_hard(seed, ev)
                met["hard"] += line.endswith("all targets met")
                print(line, flush=True)
                print(f"seed {seed} " + report_incidents("hard", ranks, strict_benign=False), flush=True)
    sets = ("standard", "hard") if args.set == "both" else (args.set,)
    print("seeds meeting every target: " + ", ".join(f"{k} {met[k]}/{len(seeds)}" for k in sets))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    ap.add_argument("--set", choices=("standard", "hard", "both"), default="both")
    ap.add_argument("--config", type=Path, default=None, help="TOML settings (default: built-in defaults)")
    ap.add_argument("--json", type=Path, default=None, help="also write the evaluations here as JSON")
    ap.add_argument("--seeds", default=None, help="A-B: one training per seed, one line per seed and set")
    ap.add_argument("--epochs", type=int, default=None, help="cap training epochs (a quick smoke run)")
    args = ap.parse_args(argv)
    settings = load_settings(args.config)
    if args.epochs:
        settings = settings.replace("train", epochs=args.epochs)
    eval_dir = args.shared / "eval"
    if not (eval_dir / "train_benign.pcap").exists():
        print(f"no evaluation captures under {eval_dir}; pass --shared", file=sys.stderr)
        return 2
    if args.seeds:
        return run_seeds(args, settings, eval_dir)
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.set in ("standard", "both"):
            ev, long, secs, ranks = _run_set("standard", eval_dir, settings=settings, with_long=True, workdir=Path(tmp))
            print(report_standard(ev, long, secs), flush=True)
            print(report_incidents("standard", ranks, strict_benign=True), flush=True)
            out["standard"] = {**ev.to_dict(), "benign_long_flagged": long, "incident_ranks": ranks.to_dict()}
            print()
        if args.set in ("hard", "both"):
            ev, _, secs, ranks = _run_set(
                "hard", eval_dir / "hard", settings=settings, with_long=False, workdir=Path(tmp)
            )
            print(report_hard(ev, secs), flush=True)
            print(report_incidents("hard", ranks, strict_benign=False), flush=True)
            out["hard"] = {**ev.to_dict(), "incident_ranks": ranks.to_dict()}
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
