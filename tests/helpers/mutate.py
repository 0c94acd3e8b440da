"""Mutations of the sample captures for the property test and bench/fuzz.py (one strategy, two drivers).

An input is built from small seeds (the first ~200 records of each sample capture, plus a gzip
copy) by a list of operations, each a tuple of small integers so that hypothesis can draw and
shrink them and ``random.Random`` can draw them quickly: bit flips, bytes set to boundary values,
cuts, splices of two seeds, duplicated and deleted chunks, and a gzip wrapper (whole or cut).
"""

from __future__ import annotations

import gzip
import random
import struct
from functools import cache
from pathlib import Path

import numpy as np

from netae.config import Settings
from netae.modelfile import ModelFile
from netae.pipeline import featurize_files
from netae.stream import stream_scores
from netae.workflow import score_featurized
from tests.helpers.captures import pcap_prefix

__all__ = ["N_OPS", "Op", "apply_ops", "random_ops", "run_pipeline", "seeds"]

SAMPLES = Path(__file__).resolve().parents[2] / "sample_pcaps"
SEED_RECORDS = 200

Op = tuple[int, int, int, int]  # (kind, a, b, c): meaning depends on kind, values taken modulo sizes
N_OPS = 8
_BOUNDARY = (0x00, 0xFF, 0x7F, 0x80, 0x01, 0xFE, 0x40, 0x10)


def _pcapng_prefix(data: bytes, n_packets: int) -> bytes:
    """Section and interface blocks plus the first ``n_packets`` packet blocks (little-endian)."""
    pos = n = 0
    while pos + 12 <= len(data) and n < n_packets:
        btype, blen = struct.unpack_from("<II", data, pos)
        if blen < 12 or pos + blen > len(data):
            break
        pos += blen
        n += btype in (3, 6)
    return data[:pos]


@cache
def seeds() -> tuple[bytes, ...]:
    """Small valid captures: pcap and pcapng prefixes of the samples and a gzip copy."""
    mixed = pcap_prefix((SAMPLES / "mixed.pcap").read_bytes(), SEED_RECORDS)
    office_a = pcap_prefix((SAMPLES / "normal" / "office_a.pcap").read_bytes(), SEED_RECORDS)
    office_b = _pcapng_prefix((SAMPLES / "normal" / "office_b.pcapng").read_bytes(), SEED_RECORDS)
    return (mixed, office_a, office_b, gzip.compress(office_a[: len(office_a) // 2], mtime=0))


def apply_ops(seed_index: int, ops: list[Op]) -> bytes:
    """The seed ``seed_index`` (modulo the number of seeds) with ``ops`` applied in order."""
    all_seeds = seeds()
    data = bytearray(all_seeds[seed_index % len(all_seeds)])
    for kind, a, b, c in ops:
        n = len(data)
        k = kind % N_OPS
        if k == 0 and n:  # flip up to 8 bits of one byte
            data[a % n] ^= (b % 255) + 1
        elif k == 1 and n:  # a boundary value, often in a header (a length or a type field)
            pos = a % min(n, 64) if c % 2 else a % n
            data[pos] = _BOUNDARY[b % len(_BOUNDARY)]
        elif k == 2:  # cut short
            del data[a % (n + 1) :]
        elif k == 3:  # splice: our head, another seed's tail
            other = all_seeds[b % len(all_seeds)]
            data = data[: a % (n + 1)] + other[c % (len(other) + 1) :]
        elif k == 4 and n:  # duplicate a chunk in place
            start = a % n
            end = min(n, start + 1 + b % 4096)
            data[start:start] = data[start:end]
        elif k == 5 and n:  # delete a chunk
            start = a % n
            del data[start : start + 1 + b % 512]
        elif k == 6:  # wrap in gzip, sometimes cut
            packed = gzip.compress(bytes(data), mtime=0)
            data = bytearray(packed if a % 2 else packed[: (b % (len(packed) + 1))])
        elif k == 7 and n >= 4:  # a 32-bit field set to an extreme (record and block lengths)
            pos = (a % (n // 4)) * 4
            data[pos : pos + 4] = struct.pack("<I", (0, 1, 0xFFFFFFFF, 0x7FFFFFFF, 0x10000, 3)[b % 6])
    return bytes(data)


def random_ops(rng: random.Random) -> tuple[int, list[Op]]:
    """A seed index and one to four operations, drawn like the hypothesis strategy."""
    ops = [
        (rng.randrange(N_OPS), rng.randrange(1 << 20), rng.randrange(1 << 16), rng.randrange(1 << 16))
        for _ in range(rng.randint(1, 4))
    ]
    return rng.randrange(len(seeds())), ops


def run_pipeline(
    data: bytes, *, scratch: Path, settings: Settings, model: ModelFile | None = None, stream: bool = False
) -> int:
    """Read, decode, assemble, featurize (and with ``model`` score) ``data``; the flow count.

    ``data`` is written to the file ``scratch`` first (named inputs, as the CLI passes them).
    Anything but a ``NetaeError`` escaping this is a bug, and so is an invalid table or a
    non-finite feature (checked here as ``AssertionError``).
    """
    scratch.write_bytes(data)
    fz = featurize_files([str(scratch)], settings=settings)
    fz.flows.validate(fz.packets.n_packets)
    fz.features.validate()
    assert np.isfinite(fz.features.values).all(), "non-finite feature values"
    if model is not None:
        if fz.flows.n_flows:
            run = score_featurized(fz, model, threshold=None, device="cpu")
            assert np.isfinite(run.table.score).all(), "non-finite scores"
        if stream:
            for _ in stream_scores([str(scratch)], model=model, device="cpu", chunk_bytes=4096, flush_s=0.0):
                pass
    return fz.flows.n_flows
