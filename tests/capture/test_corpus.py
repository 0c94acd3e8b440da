"""Every capture of the robustness corpus reads without any exception other than CaptureError."""

from __future__ import annotations

import pytest

from netae.capture import read_packets
from netae.errors import CaptureError
from netae.tables import SkipCounts
from tests.capture.shared import CORPUS


def test_every_corpus_file_reads_or_raises_capture_error() -> None:
    if not CORPUS.is_dir():
        pytest.skip(f"{CORPUS} not present in this checkout")
    files = sorted(p for p in CORPUS.iterdir() if p.is_file())
    n_packets = n_errors = 0
    for i, path in enumerate(files):
        counts = SkipCounts()
        try:
            for table in read_packets(path, file_id=i, counts=counts, chunk_bytes=1 << 20):
                table.validate()
                assert table.n_packets > 0
                assert (table.file_id == i).all()
        except CaptureError as exc:
            message = str(exc)
            n_errors += 1
            assert path.name in message  # noqa: PT017 - many files, one test
            assert "\n" not in message  # noqa: PT017
            continue
        assert counts.packets + counts.n_skipped == counts.records, path.name
        n_packets += counts.packets > 0
    assert n_packets > len(files) // 2
    assert n_errors < len(files) // 10
