"""Fuzz netae with mutated captures, mutated model files and hostile file names.

Usage: PYTHONPATH=. python bench/fuzz.py [--cases 10000] [--seed 0] [--score-every 25]

Three kinds of case, drawn at random:

- captures (about 70 %): the mutation strategy of tests/helpers/mutate.py (the property test in
  tests/test_fuzz.py draws from the same one) through read, decode, flows and features, in this
  process; every ``--score-every``-th one is also scored with a tiny model, batch and streamed,
  in a forked child (the compiled kernel's threads are never started in this process, so forking
  stays safe). A crash is any exception that is not a ``NetaeError``, or a broken invariant.
- model files (about 20 %): the tiny model with bytes flipped or cut, or rewritten with a fresh
  digest (what an attacker who edits a model can do): tensors dropped, cut, reshaped, transposed,
  NaN or inf; metadata with a threshold or setting that is NaN, inf, huge, negative or of the
  wrong type, feature names added or removed, keys removed, hostile strings. ``netae info`` and
  ``netae score --format jsonl --all`` run on it in a forked child (score only when info did not
  refuse the file: it would be refused the same way).
- hostile names (about 10 %): a seed capture saved under a name with escape sequences, OSC 8
  links, newlines, bidi controls, undecodable bytes, rich markup or a formula start, scored by
  the CLI in a forked child in a random format.

A forked child must exit 0, 1, 2 or 3 within 60 s. Exit 70 (an internal error), a signal (a
segmentation fault, or SIGALRM for a hang), a raw control character on its stdout or stderr, or a
JSON line a strict parser refuses is a crash too. Each crash is saved to bench/out/fuzz/ (the
input and a .txt saying what happened). The tiny model is trained once, in a subprocess, and
cached as bench/out/fuzz/tiny.netae. The last two lines are
``signals: N, exit 70: N, output: N, exceptions: N`` and ``fuzz: N cases, N crashes`` (all kinds).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import re
import signal
import subprocess
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from netae.config import Settings  # noqa: E402
from netae.errors import NetaeError  # noqa: E402
from netae.modelfile import ModelFile, load_model, unchecked_bytes  # noqa: E402
from tests.helpers.mutate import apply_ops, random_ops, run_pipeline, seeds  # noqa: E402

OUT = ROOT / "bench" / "out" / "fuzz"
CHILD_TIMEOUT_S = 60
_RAW_CONTROL = re.compile(rb"[\x00-\x09\x0b-\x1f\x7f]")  # anything but newline


def tiny_model() -> Path:
    """One epoch, hidden size 8, on the first seed: trained once, in a subprocess, then cached."""
    path = OUT / "tiny.netae"
    try:
        load_model(path)
        return path
    except NetaeError:
        pass
    seed = OUT / "seed.pcap"
    seed.write_bytes(seeds()[0])
    cmd = [sys.executable, "-m", "netae", "train", str(seed), "-o", str(path), "--epochs", "1", "--hidden-size",
           "8", "--seed", "0", "--device", "cpu", "-q"]  # fmt: skip
    subprocess.run(cmd, check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return path


# --- forked children ------------------------------------------------------------------------------


def warm_up(capture: Path, settings: Settings) -> None:
    """Import the CLI and load the featurize kernels here once, so that each child inherits them.

    The scoring kernel is left alone: it starts OpenMP threads, and a process with those must not fork.
    """
    import netae.cli  # noqa: F401
    import netae.report  # noqa: F401
    import netae.stream  # noqa: F401
    from netae.pipeline import featurize_files

    featurize_files([str(capture)], settings=settings)


def in_child(fn: Callable[[], int], *, stdout: Path, stderr: Path) -> tuple[str, int]:
    """Run ``fn`` in a forked child with its output in files: ('exit', status) or ('signal', number)."""
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 70
        try:
            out_fd = os.open(stdout, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            err_fd = os.open(stderr, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(out_fd, 1)
            os.dup2(err_fd, 2)
            signal.alarm(CHILD_TIMEOUT_S)  # a hang ends as SIGALRM: counted as a signal
            code = fn()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return "signal", os.WTERMSIG(status)
    return "exit", os.WEXITSTATUS(status)


def cli(*args: str) -> Callable[[], int]:
    def run() -> int:
        from netae.cli import app

        logging.disable(logging.NOTSET)
        app(args=list(args), prog_name="netae")
        return 0

    return run


def child_verdict(kind: str, value: int, stdout: Path, stderr: Path, *, jsonl: bool) -> str | None:
    """What went wrong in a child (None: nothing): a signal, exit 70, or output that is not clean."""
    if kind == "signal":
        return f"signal {signal.Signals(value).name}"
    if value not in (0, 1, 2, 3):
        return f"exit {value}"
    for path in (stdout, stderr):
        data = path.read_bytes()
        if _RAW_CONTROL.search(data):
            return f"raw control character on {path.stem}"
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return f"output on {path.stem} is not UTF-8"
        if jsonl and path is stdout:
            for line in text.splitlines():
                try:
                    json.loads(line, parse_constant=_refuse_constant)
                except ValueError:
                    return "a JSON line a strict parser refuses"
    return None


def _refuse_constant(name: str) -> None:
    raise ValueError(name)


# --- model-file mutations -------------------------------------------------------------------------

_BAD_NUMBERS: list[Any] = [float("nan"), float("inf"), -float("inf"), 1e300, -1.0, 0.0, "7", None, [], {}, True]
_HOSTILE_TEXT = ["\x1b[2J\x1b]8;;http://x\x07link\x1b]8;;\x07", "a\nb\rc", "[bold red]x[/]", "=cmd|' /C calc'!A0",
                 "\u202eevil", "\udcff\udcfe"]  # fmt: skip


def mutate_model(raw: bytes, model: ModelFile, rng: random.Random) -> bytes:
    """One mutation of the tiny model's bytes (see the module docstring)."""
    k = rng.randrange(6)
    if k == 0:  # flip bytes anywhere (the digest should catch it)
        data = bytearray(raw)
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] ^= rng.randrange(1, 256)
        return bytes(data)
    if k == 1:  # cut short
        return raw[: rng.randrange(len(raw))]
    weights = dict(model.weights)
    mean, scale = model.scaler.mean_.copy(), model.scaler.scale_.copy()
    meta = {key: value for key, value in model.to_meta().items() if key != "digest"}
    if k == 2:  # a tensor dropped, cut, grown, reshaped, transposed or poisoned
        name = rng.choice(sorted(weights))
        w = weights[name]
        op = rng.randrange(6)
        if op == 0:
            del weights[name]
        elif op == 1:
            weights[name] = w.reshape(-1)[: max(0, w.size - rng.randint(1, w.size))]
        elif op == 2:
            weights[name] = np.concatenate([w.reshape(-1), np.ones(rng.randint(1, 64), np.float32)])
        elif op == 3:
            weights[name] = w.T.copy() if w.ndim == 2 else w.reshape(1, -1)
        else:
            weights[name] = np.where(rng.random() < 0.5, w, np.float32(rng.choice([np.nan, np.inf, 1e38])))
    elif k == 3:  # the scaler
        target = rng.choice([mean, scale])
        target[rng.randrange(len(target))] = rng.choice([np.nan, np.inf, 0.0, -1.0, 1e38])
        if rng.random() < 0.3:
            mean = mean[:-1]
    elif k == 4:  # a number in the metadata
        section = rng.choice(["threshold", "flows", "context", "model", "train"])
        if section == "threshold":
            meta["threshold"] = {**meta["threshold"], "value": rng.choice(_BAD_NUMBERS)}
        else:
            values = dict(meta["settings"][section])
            values[rng.choice(sorted(values))] = rng.choice(_BAD_NUMBERS)
            meta["settings"] = {**meta["settings"], section: values}
    else:  # the metadata's structure and text
        op = rng.randrange(4)
        if op == 0:
            meta.pop(rng.choice(sorted(meta)))
        elif op == 1:
            names = list(meta["feature_names"])
            meta["feature_names"] = names[:-1] if rng.random() < 0.5 else [*names, "extra"]
        elif op == 2:
            meta["training"] = {**meta["training"], "inputs": [rng.choice(_HOSTILE_TEXT) for _ in range(3)]}
        else:
            meta[rng.choice(["threshold", "settings", "training", "feature_names"])] = rng.choice(_BAD_NUMBERS)
    try:
        tensors = {f"weights.{k}": np.asarray(v) for k, v in weights.items()}
        return unchecked_bytes({**tensors, "scaler.mean": mean, "scaler.scale": scale}, meta)
    except Exception:  # a mutation our own writer refuses: send the bytes with a flipped byte instead
        return raw[:-1] + bytes([raw[-1] ^ 1])


# --- hostile names --------------------------------------------------------------------------------

_NAME_PARTS = [b"\x1b[31m", b"\x1b]8;;http://evil/\x07", b"\x1b]8;;\x07", b"\n", b"\r", b"\x07", b"\x7f", b"\t",
               b"\xff\xfe", b"\xc3", b"\xe2\x80\xae", b"[bold]", b"[/]", b"[link=http://x]", b"=", b"+", b"-", b"@",
               b"=HYPERLINK(\"http://x\")", b"cap", b" ", b"'", b'"', b",", b";"]  # fmt: skip


def hostile_name(rng: random.Random) -> bytes:
    parts = [rng.choice(_NAME_PARTS) for _ in range(rng.randint(1, 8))]
    return b"".join(parts).replace(b"/", b"_") + rng.choice([b".pcap", b".pcapng", b""])


# --- the run --------------------------------------------------------------------------------------


class Tally:
    """Outcomes and crashes, and the first few examples of each crash kind saved to OUT."""

    def __init__(self) -> None:
        self.outcomes: Counter[str] = Counter()
        self.crashes: Counter[str] = Counter()
        self.by_class: Counter[str] = Counter()

    def crash(self, case: int, kind: str, cls: str, data: bytes, detail: str) -> None:
        self.crashes[kind] += 1
        self.by_class[cls] += 1
        if self.crashes[kind] <= 3:
            stem = OUT / f"crash-{case:05d}"
            stem.with_suffix(".bin").write_bytes(data)
            stem.with_suffix(".txt").write_text(f"{kind}\n\n{detail}")


def capture_case(case: int, rng: random.Random, tally: Tally, settings: Settings, model: Path, scored: bool) -> None:
    seed_index, ops = random_ops(rng)
    data = apply_ops(seed_index, ops)
    if scored:  # scoring starts the compiled kernel's threads: only ever in a child
        scratch = OUT / "case-scored.bin"

        def score() -> int:
            m = load_model(model)
            try:
                run_pipeline(data, scratch=scratch, settings=settings, model=m, stream=True)
            except NetaeError:
                return 2
            return 0

        verdict = _run_child(score, jsonl=False)
        tally.outcomes["scored ok" if verdict is None else "scored crash"] += 1
        if verdict:
            tally.crash(case, f"capture scored: {verdict}", _class(verdict), data, f"seed {seed_index} ops {ops}")
        return
    try:
        n = run_pipeline(data, scratch=OUT / "case.bin", settings=settings)
        tally.outcomes["flows" if n else "no flows"] += 1
    except NetaeError as exc:
        tally.outcomes[type(exc).__name__] += 1
    except Exception as exc:  # a crash: anything else is a bug
        kind = f"{type(exc).__name__}: {str(exc)[:80]}"
        detail = f"seed {seed_index} ops {ops}\n\n" + "".join(traceback.format_exception(exc))
        tally.crash(case, kind, "exceptions", data, detail)


def model_case(case: int, rng: random.Random, tally: Tally, raw: bytes, model: ModelFile, capture: Path) -> None:
    data = mutate_model(raw, model, rng)
    path = OUT / "case.netae"
    path.write_bytes(data)
    for args, jsonl in ((("info", str(path)), False), (("score", str(capture), "-m", str(path), "-f", "jsonl",
                                                          "--all", "--device", "cpu"), True)):  # fmt: skip
        verdict = _run_child(cli(*args), jsonl=jsonl)
        tally.outcomes[f"model {args[0]} {'ok' if verdict is None else 'crash'}"] += 1
        if verdict:
            tally.crash(case, f"model {args[0]}: {verdict}", _class(verdict), data, _child_err())
            return
        if _last_status == 2:  # refused at load: score would load it the same way
            tally.outcomes["model refused"] += 1
            return


def name_case(case: int, rng: random.Random, tally: Tally, model: Path) -> None:
    names = OUT / "names"
    names.mkdir(exist_ok=True)
    name = hostile_name(rng)
    path = os.path.join(os.fsencode(names), name or b"x")
    with open(path, "wb") as fh:
        fh.write(seeds()[rng.randrange(len(seeds()))][: rng.choice([10_000, 100_000])])
    fmt = rng.choice(["table", "csv", "jsonl"])
    try:
        verdict = _run_child(cli("score", "-m", str(model), "-f", fmt, "--all", "--", os.fsdecode(path)),
                             jsonl=fmt == "jsonl")  # fmt: skip
    finally:
        os.unlink(path)
    tally.outcomes[f"name {'ok' if verdict is None else 'crash'}"] += 1
    if verdict:
        tally.crash(case, f"name ({fmt}): {verdict}", _class(verdict), name, _child_err())


_last_status = 0


def _run_child(fn: Callable[[], int], *, jsonl: bool) -> str | None:
    global _last_status
    stdout, stderr = OUT / "child.out", OUT / "child.err"
    kind, value = in_child(fn, stdout=stdout, stderr=stderr)
    _last_status = value if kind == "exit" else -value
    return child_verdict(kind, value, stdout, stderr, jsonl=jsonl)


def _child_err() -> str:
    return (OUT / "child.err").read_text(encoding="utf-8", errors="backslashreplace")[-4000:]


def _class(verdict: str) -> str:
    return "signals" if verdict.startswith("signal") else "exit 70" if verdict == "exit 70" else "output"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--score-every", type=int, default=25, help="score every Nth capture case (0: never)")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # the reader logs damage; thousands of lines say nothing here
    OUT.mkdir(parents=True, exist_ok=True)
    settings = Settings()
    model_path = tiny_model()
    model = load_model(model_path)
    raw = model_path.read_bytes()
    capture = OUT / "score-seed.pcap"
    capture.write_bytes(seeds()[0])
    warm_up(capture, settings)
    rng = random.Random(args.seed)
    tally = Tally()
    t0 = time.perf_counter()
    for case in range(args.cases):
        draw = rng.random()
        if draw < 0.7:
            scored = bool(args.score_every) and case % args.score_every == 0
            capture_case(case, rng, tally, settings, model_path, scored)
        elif draw < 0.9:
            model_case(case, rng, tally, raw, model, capture)
        else:
            name_case(case, rng, tally, model_path)
    seconds = time.perf_counter() - t0
    print(f"outcomes: {dict(tally.outcomes.most_common())}")
    for kind, n in tally.crashes.most_common():
        print(f"crash x{n}: {kind}")
    print(f"{args.cases / seconds:.0f} cases/s over {seconds:.1f} s; examples in {OUT.relative_to(ROOT)}/")
    c = tally.by_class
    print(f"signals: {c['signals']}, exit 70: {c['exit 70']}, output: {c['output']}, exceptions: {c['exceptions']}")
    print(f"fuzz: {args.cases} cases, {sum(tally.crashes.values())} crashes")
    return 1 if tally.crashes else 0


if __name__ == "__main__":
    raise SystemExit(main())
