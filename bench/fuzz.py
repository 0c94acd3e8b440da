"""Fuzz read + decode + flows + features (+ scoring for a subset) with mutated sample captures.

Usage: PYTHONPATH=. python bench/fuzz.py [--cases 10000] [--seed 0] [--score-every 25]

Runs the mutation strategy of tests/helpers/mutate.py (the property test in tests/test_fuzz.py
draws from the same one) for ``--cases`` inputs built from the first 200 records of each sample
capture. A crash is any exception that is not a ``NetaeError`` (or a broken invariant: invalid
tables, non-finite features or scores). Each crash is saved to bench/out/fuzz/ as the input bytes
plus a .txt with the traceback. Every ``--score-every``-th case is also scored with a tiny model
(batch and streamed). The last line is ``fuzz: N cases, N crashes``.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import random
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from netae.config import Settings  # noqa: E402
from netae.errors import NetaeError  # noqa: E402
from netae.modelfile import ModelFile, load_model  # noqa: E402
from tests.helpers.mutate import apply_ops, random_ops, run_pipeline, seeds  # noqa: E402

OUT = ROOT / "bench" / "out" / "fuzz"


def tiny_model(settings: Settings) -> ModelFile:
    """One epoch, hidden size 8, on the fuzz seeds: enough to exercise the scoring path."""
    from netae.score import set_threads
    from netae.workflow import train_captures

    set_threads(1)
    path = OUT / "tiny.netae"
    tmp = OUT / "seed.pcap"
    tmp.write_bytes(seeds()[0])
    s = dataclasses.replace(
        settings,
        train=dataclasses.replace(settings.train, epochs=1, seed=0, device="cpu", threads=1),
        model=dataclasses.replace(settings.model, hidden_size=8, num_layers=1),
    )
    train_captures([str(tmp)], output=path, settings=s)
    return load_model(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--score-every", type=int, default=25, help="score every Nth case (0: never)")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # the reader logs damage; thousands of lines say nothing here
    OUT.mkdir(parents=True, exist_ok=True)
    settings = Settings()
    model = tiny_model(settings) if args.score_every else None
    rng = random.Random(args.seed)
    crashes: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    t0 = time.perf_counter()
    for case in range(args.cases):
        seed_index, ops = random_ops(rng)
        data = apply_ops(seed_index, ops)
        scored = bool(args.score_every) and case % args.score_every == 0
        try:
            n = run_pipeline(
                data, scratch=OUT / "case.bin", settings=settings, model=model if scored else None, stream=scored
            )
            outcomes["flows" if n else "no flows"] += 1
        except NetaeError as exc:
            outcomes[type(exc).__name__] += 1
        except Exception as exc:  # a crash: anything else is a bug
            kind = f"{type(exc).__name__}: {str(exc)[:80]}"
            crashes[kind] += 1
            if crashes[kind] <= 3:
                stem = OUT / f"crash-{case:05d}"
                stem.with_suffix(".bin").write_bytes(data)
                stem.with_suffix(".txt").write_text(
                    f"seed {seed_index} ops {ops}\n\n" + "".join(traceback.format_exception(exc))
                )
    seconds = time.perf_counter() - t0
    print(f"outcomes: {dict(outcomes.most_common())}")
    for kind, n in crashes.most_common():
        print(f"crash x{n}: {kind}")
    print(f"{args.cases / seconds:.0f} cases/s over {seconds:.1f} s; examples in {OUT.relative_to(ROOT)}/")
    print(f"fuzz: {args.cases} cases, {sum(crashes.values())} crashes")
    return 1 if crashes else 0


if __name__ == "__main__":
    raise SystemExit(main())
