"""Training throughput when scaling out: 1 and 2 processes on CPU (torchrun, gloo), 1 GPU.

Every run trains the same model on the same data: the capture is featurized once into a sharded
dataset, then ``netae train DATASET`` runs as one process, under
``torchrun --nproc-per-node 2`` on the CPU (each rank gets half the cores), and, with
``--device cuda`` or ``auto`` on a machine with a GPU, as one process on the GPU. The figure is
training packets/s: the fit windows' packets of an epoch over the seconds spent fitting them
(validation not included), the median over epochs after the first; for 2 processes it counts
the packets of the whole job (each rank trains half of every batch).

    python bench/scale.py [CAPTURE] [--epochs N] [--device cpu|cuda|auto]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_CAPTURE = Path(__file__).resolve().parents[2] / "shared" / "eval" / "train_benign.pcap"


def _train(cmd: list[str], model: Path) -> tuple[float, float]:
    """Run a training command; (median fit packets/s after the first epoch, wall seconds)."""
    import time

    from netae.modelfile import load_model

    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    history = load_model(model).training.history
    rates = [h.packets_per_s for h in history[1:]] or [h.packets_per_s for h in history]
    return statistics.median(rates), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("capture", nargs="?", type=Path, default=DEFAULT_CAPTURE)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto")
    args = parser.parse_args()

    import torch

    from netae.config import Settings
    from netae.workflow import featurize_to

    cores = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        dataset = work / "ds"
        featurize_to([str(args.capture)], dataset, settings=Settings())

        def config(threads: int) -> str:
            path = work / f"bench{threads}.toml"
            path.write_text(
                f"[train]\nepochs = {args.epochs}\npatience = {args.epochs + 1}\nseed = 0\nthreads = {threads}\n"
            )
            return str(path)

        base = ["-m", "netae", "train", str(dataset), "-q"]
        half = max(1, cores // 2)
        runs: list[tuple[str, list[str]]] = [
            (f"1 process, CPU ({min(cores, 8)} threads)", [sys.executable, *base, "-c", config(0), "--device", "cpu"]),
        ]
        if half != min(cores, 8):
            runs.append(
                (f"1 process, CPU ({half} threads)", [sys.executable, *base, "-c", config(half), "--device", "cpu"])
            )
        runs.append((
            f"2 processes, CPU, torchrun/gloo ({half} threads each)",
            [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
             *base, "-c", config(0), "--device", "cpu"],
        ))  # fmt: skip
        if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()):
            runs.append(("1 process, 1 GPU", [sys.executable, *base, "-c", config(0), "--device", "cuda"]))
        print(f"{args.capture.name}: training packets/s, {args.epochs} epochs, {cores} cores")  # noqa: T201
        first = None
        for name, cmd in runs:
            model = work / f"m{len(name)}.netae"
            rate, wall = _train([*cmd, "-o", str(model)], model)
            first = first or rate
            print(f"  {name:<48} {rate:>12,.0f} pkt/s  x{rate / first:.2f}  (wall {wall:.1f} s)")  # noqa: T201


if __name__ == "__main__":
    main()
