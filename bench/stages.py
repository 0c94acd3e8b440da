"""CPU seconds of each featurize stage on one capture (whole capture in one pass, no chunking).

    python bench/stages.py CAPTURE

Prints records (read + walk), decode, concat, flows, context and features times measured with
``time.process_time`` (a loaded shared machine inflates wall time more), then the end-to-end
``featurize_files`` rate. Run it under ``taskset -c 0`` and note ``uptime`` beside the figures.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from netae.capture import decode_records, read_packets, read_records  # noqa: E402
from netae.config import Settings  # noqa: E402
from netae.context import compute_context  # noqa: E402
from netae.features import compute_features  # noqa: E402
from netae.flows import assemble_flows  # noqa: E402
from netae.pipeline import featurize_files  # noqa: E402
from netae.tables import PacketTable  # noqa: E402


def main() -> None:
    path = sys.argv[1]
    s = Settings()
    clock = time.process_time
    list(read_packets(path))  # warm up: numba's cached kernels, page cache
    t = clock()
    batches = list(read_records(path))
    t0 = clock()
    tables = [decode_records(b) for b in batches]
    ta = clock()
    p = PacketTable.concat(tables)
    t1 = clock()
    f = assemble_flows(p, idle_timeout_s=s.flows.idle_timeout_s, active_timeout_s=s.flows.active_timeout_s)
    t2 = clock()
    c = compute_context(p, f, settings=s.context)
    t3 = clock()
    compute_features(p, f, context=c)
    t4 = clock()
    print(
        f"packets {p.n_packets} flows {f.n_flows}: records {t0 - t:.2f} decode {ta - t0:.2f} concat {t1 - ta:.2f} "
        f"flows {t2 - t1:.2f} context {t3 - t2:.2f} features {t4 - t3:.2f} (CPU s)"
    )
    del batches, tables, p, f, c
    t = clock()
    out = featurize_files([path], settings=s)
    dt = clock() - t
    print(f"featurize_files: {len(out.flows.order) / dt:,.0f} pkt/s CPU ({dt:.2f} s)")


if __name__ == "__main__":
    main()
