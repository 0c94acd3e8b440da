"""Every input and model fault of issue 6: exit status, one clear message, no traceback, no data lost.

Complements tests/test_cli.py (missing file, text file, empty and header-only pcap, ARP only,
garbage model bytes, a good and a bad file together), which these tests do not repeat.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import pickle
import random
import re
import struct
import zipfile
import zlib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from netae.cli import app
from netae.modelfile import SCHEMA_VERSION
from tests.helpers.captures import pcap_prefix, record_ends
from tests.helpers.pcapgen import Interface, Section, pcapng_bytes

SAMPLES = Path(__file__).resolve().parents[1] / "sample_pcaps"
BASE = pcap_prefix((SAMPLES / "mixed.pcap").read_bytes(), 3000)  # keeps the tests quick
K = 2000  # complete records before the fault in the truncation tests
runner = CliRunner()


def run(*args: object, **kw):
    result = runner.invoke(app, [str(a) for a in args], **kw)
    assert "Traceback" not in result.stderr, result.stderr
    assert "internal error" not in result.stderr, result.stderr
    return result


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def flow_rows(csv_text: str, source: str = "") -> set[tuple[str, ...]]:
    """CSV rows (of files whose name ends in ``source``) without the source_file column."""
    rows = list(csv.DictReader(io.StringIO(csv_text)))
    return {
        tuple(v for k, v in row.items() if k != "source_file") for row in rows if row["source_file"].endswith(source)
    }


def used_records(stderr: str) -> int:
    m = re.search(r"using the (\d+) records before it", stderr)
    assert m, stderr
    return int(m.group(1))


@pytest.fixture(scope="module")
def prefix_rows(small_model, tmp_path_factory):
    """Every flow (CSV row) of the first n records of BASE, scored on their own; cached per n."""
    cache: dict[int, set[tuple[str, ...]]] = {}
    d = tmp_path_factory.mktemp("prefix")

    def get(n: int) -> set[tuple[str, ...]]:
        if n not in cache:
            path = write(d / f"prefix{n}.pcap", pcap_prefix(BASE, n))
            r = run("score", path, "-m", small_model, "--all", "-f", "csv", "-q")
            assert r.exit_code in (0, 1), r.stderr
            cache[n] = flow_rows(r.stdout)
        return cache[n]

    return get


# --- captures cut short or damaged part-way: every complete record is scored, one warning ---


@pytest.mark.parametrize(
    ("name", "make", "warning"),
    [
        ("cut in a record header", lambda ends: BASE[: ends[K - 1] + 7], "cut short in record 2001"),
        ("cut in a record's data", lambda ends: BASE[: ends[K] - 5], "cut short in record 2001"),
        (
            "record header with an absurd length",
            lambda ends: BASE[: ends[K - 1] + 8] + struct.pack("<II", 0xFFFFFFF0, 60) + BASE[ends[K - 1] + 16 :],
            "record 2001 at byte .* claims 4294967280 captured bytes",
        ),
    ],
)
def test_damaged_capture_scores_every_record_before_the_fault(small_model, prefix_rows, tmp_path, name, make, warning):
    path = write(tmp_path / "rotating.pcap", make(record_ends(BASE)))
    r = run("score", path, "-m", small_model, "--all", "-f", "csv")
    assert r.exit_code in (0, 1), r.stderr  # a warning, not a failure
    assert re.search(warning, r.stderr), r.stderr
    assert re.search(r"^warning: .*rotating\.pcap", r.stderr, re.MULTILINE)
    assert used_records(r.stderr) == K
    assert flow_rows(r.stdout) == prefix_rows(K)


def test_gzip_cut_short_scores_what_decompresses(small_model, prefix_rows, tmp_path):
    packed = gzip.compress(BASE, mtime=0)
    cut = packed[: len(packed) * 6 // 10]
    path = write(tmp_path / "rotating.pcap.gz", cut)
    r = run("score", path, "-m", small_model, "--all", "-f", "csv")
    assert r.exit_code in (0, 1), r.stderr
    assert "gzip" in r.stderr
    assert "broken" in r.stderr
    n = used_records(r.stderr)
    available = zlib.decompressobj(wbits=31).decompress(cut)
    # Everything that decompressed is used, up to the reader's last 64 KiB piece.
    assert n >= len(record_ends(available[: max(0, len(available) - (64 << 10))]))
    assert flow_rows(r.stdout) == prefix_rows(n)


def test_truncated_capture_with_quiet_prints_nothing(small_model, tmp_path):
    path = write(tmp_path / "rotating.pcap", BASE[: len(BASE) - 3])
    out = tmp_path / "alerts.jsonl"
    r = run("score", path, "-m", small_model, "-f", "jsonl", "-o", out, "--quiet")
    assert r.exit_code in (0, 1)
    assert r.stdout == ""
    assert r.stderr == ""
    assert all(json.loads(line) for line in out.read_text().splitlines())


# --- files that are not captures, or carry nothing netae can read: exit 2, one line ---

_rng = random.Random(6)
PNG = b"\x89PNG\r\n\x1a\n" + bytes(_rng.randrange(256) for _ in range(200))


def _zip_of_capture() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("capture.pcap", BASE[:5000])
    return buf.getvalue()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (bytes(_rng.randrange(1, 256) for _ in range(4096)), r"not a pcap or pcapng capture"),
        (PNG, r"PNG image"),
        (_zip_of_capture(), r"zip archive; extract the capture first"),
        (b"\x7fELF" + bytes(100), r"ELF executable"),
        (gzip.compress(b"plain text, compressed\n" * 50), r"gzip-compressed.*not a pcap"),
        (gzip.compress(BASE)[:8], r"gzip|cannot read|damaged"),
        (BASE[:20], r"pcap file header cut short"),
        (struct.pack("<IHHiIII", 0xA1B2C3D4, 3, 0, 0, 0, 65535, 1), r"unsupported pcap version 3"),
        (pcapng_bytes([Section(interfaces=[Interface()])]), r"no packets"),
        (gzip.compress(b""), r"too short|empty|0 bytes"),
    ],
    ids=[
        "random",
        "png",
        "zip",
        "elf",
        "gzip-text",
        "gzip-header-cut",
        "pcap-header-cut",
        "pcap-v3",
        "pcapng-header-only",
        "gzip-empty",
    ],  # fmt: skip
)
def test_not_a_usable_capture_exits_2_with_one_line(small_model, tmp_path, data, message):
    path = write(tmp_path / "capture.pcap", data)
    r = run("score", path, "-m", small_model)
    assert r.exit_code == 2, r.stderr
    assert re.search(message, r.stderr), r.stderr
    assert "capture.pcap" in r.stderr
    assert r.stderr.strip().count("\n") == 0, r.stderr
    assert r.stdout == ""


def test_unsupported_link_type_names_it_and_the_supported_ones(small_model, tmp_path):
    frame = bytes(range(60))
    data = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 107)
    for i in range(5):
        data += struct.pack("<IIII", 1_700_000_000 + i, 0, len(frame), len(frame)) + frame
    r = run("score", write(tmp_path / "frelay.pcap", data), "-m", small_model)
    assert r.exit_code == 2
    assert "link type 107 (FRELAY)" in r.stderr
    assert re.search(r"supported link types: .*1 \(EN10MB\)", r.stderr)
    assert r.stderr.strip().count("\n") == 0, r.stderr


def test_directory_mixing_good_and_bad_files(small_model, prefix_rows, tmp_path):
    d = tmp_path / "spool"
    d.mkdir()
    write(d / "a-good.pcap", pcap_prefix(BASE, K))
    write(d / "b-empty.pcap", b"")
    write(d / "c-noise.pcap", bytes(_rng.randrange(1, 256) for _ in range(999)))
    write(d / "d-image.pcap", PNG)
    write(d / "e-gzip-header.pcap.gz", gzip.compress(BASE)[:8])
    write(d / "f-rotating.pcap", BASE[: record_ends(BASE)[K] - 5])  # damaged part-way: scored, not skipped
    r = run("score", d, "-m", small_model, "--all", "-f", "csv")
    assert r.exit_code == 3, r.stderr
    for bad in ("b-empty.pcap", "c-noise.pcap", "d-image.pcap", "e-gzip-header.pcap.gz"):
        assert re.search(rf"^warning: skipped .*{re.escape(bad)}", r.stderr, re.MULTILINE), r.stderr
    assert "f-rotating.pcap: cut short" in r.stderr
    for good in ("a-good.pcap", "f-rotating.pcap"):
        assert flow_rows(r.stdout, good) == prefix_rows(K)
    assert flow_rows(r.stdout) == prefix_rows(K)  # nothing from the bad files


# --- model files: refused with a clear message, nothing in them executed ---


def _header(raw: bytes) -> tuple[dict, int]:
    n = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8 : 8 + n]), n


def _with_meta(raw: bytes, **changes: object) -> bytes:
    header, n = _header(raw)
    meta = json.loads(header["__metadata__"]["netae"])
    meta.update(changes)
    header["__metadata__"]["netae"] = json.dumps(meta)
    new = json.dumps(header).encode()
    return struct.pack("<Q", len(new)) + new + raw[8 + n :]


def _flip_tensor_byte(raw: bytes) -> bytes:
    _, n = _header(raw)
    data = bytearray(raw)
    data[8 + n + 100] ^= 0x40
    return bytes(data)


class _Evil:
    marker = ""

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _evil_pickle(marker: Path) -> bytes:
    evil = _Evil()
    evil.marker = str(marker)
    return pickle.dumps({"state_dict": evil})


def _evil_torch_zip(marker: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", _evil_pickle(marker))
    return buf.getvalue()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda raw, m: raw[: len(raw) * 2 // 3], r"truncated|damaged"),
        (lambda raw, m: raw[:100], r"truncated|not a netae model"),
        (lambda raw, m: _flip_tensor_byte(raw), r"modified after it was written"),
        (
            lambda raw, m: _with_meta(raw, threshold={"strategy": "quantile", "value": 1e9, "params": {}}),
            r"modified after it was written",
        ),  # fmt: skip
        (lambda raw, m: _with_meta(raw, schema_version=SCHEMA_VERSION + 1), r"newer than this netae.*upgrade netae"),
        (lambda raw, m: _evil_pickle(m), r"pickle .*not a netae model; it was not loaded"),
        (lambda raw, m: _evil_torch_zip(m), r"pickle or zip archive"),
        (lambda raw, m: (SAMPLES / "mixed.pcap").read_bytes()[:4096], r"not a netae model"),
    ],
    ids=["truncated", "cut-in-header", "corrupted", "tampered", "newer-schema", "pickle", "torch-zip", "capture"],
)
@pytest.mark.parametrize("command", ["score", "info"])
def test_bad_model_is_refused_and_nothing_runs(small_model, tmp_path, mutate, message, command):
    marker = tmp_path / "executed"
    bad = write(tmp_path / "copied.netae", mutate(small_model.read_bytes(), marker))
    capture = write(tmp_path / "base.pcap", BASE[:20000])
    args = ["score", capture, "-m", bad] if command == "score" else ["info", bad]
    r = run(*args)
    assert r.exit_code == 2, r.stderr
    assert re.search(message, r.stderr), r.stderr
    assert "copied.netae" in r.stderr
    assert r.stderr.strip().count("\n") == 0, r.stderr
    assert r.stdout == ""
    assert not marker.exists()
