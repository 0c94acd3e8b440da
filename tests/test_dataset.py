from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from netae import pipeline
from netae.config import FlowSettings, Settings
from netae.dataset import read_parquet
from netae.errors import InputError
from netae.workflow import featurize_to

SAMPLES = Path(__file__).resolve().parents[1] / "sample_pcaps"


def test_streamed_parquet_reads_back_as_one_pass_featurizing(tmp_path, monkeypatch):
    sources = [str(SAMPLES / "normal" / "office_b.pcapng"), str(SAMPLES / "mixed.pcap")]
    whole = pipeline.featurize_files(sources, settings=Settings())
    # Small batches: many row groups, flows written in closing order.
    monkeypatch.setattr(pipeline, "iter_featurized", _small_batches(pipeline.iter_featurized))
    out = tmp_path / "f.parquet"
    results = featurize_to(sources, out, settings=Settings())
    assert results[0].flows == whole.flows.n_flows
    shard = read_parquet(out)
    assert shard.features.names == whole.features.names
    for name in ("first_ns", "last_ns", "src_port", "dst_port", "proto", "fwd_pkts", "bwd_bytes", "src_lo"):
        np.testing.assert_array_equal(getattr(shard.flows, name), getattr(whole.flows, name), err_msg=name)
    np.testing.assert_array_equal(shard.features.offsets, whole.features.offsets)
    np.testing.assert_allclose(shard.features.values, whole.features.values, rtol=1e-5, atol=1e-5)


def _small_batches(fn):
    def wrapper(*args, **kwargs):
        return fn(*args, **{**kwargs, "batch_packets": 500, "chunk_bytes": 64 << 10})

    return wrapper


def test_sharded_featurize_writes_a_manifest_and_names_bad_files(tmp_path):
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"not a capture" * 10)
    out = tmp_path / "ds"
    results = featurize_to([str(SAMPLES / "mixed.pcap"), str(bad)], out, settings=Settings())
    assert [r.error is None for r in results] == [True, False]
    assert (out / "manifest.json").exists()
    assert results[0].flows > 2000


def test_nothing_readable_is_an_input_error_and_leaves_no_file(tmp_path):
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"not a capture" * 10)
    with pytest.raises(InputError):
        featurize_to([str(bad)], tmp_path / "f.parquet", settings=Settings())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pcap"]


def test_featurize_into_an_existing_dataset_adds_shards(tmp_path):
    from netae.dataset import dataset_files

    out = tmp_path / "ds"
    featurize_to([str(SAMPLES / "normal" / "office_b.pcapng")], out, settings=Settings())
    featurize_to([str(SAMPLES / "mixed.pcap")], out, settings=Settings())
    files = dataset_files(out)
    assert len(files) == 2 and len({f.name for f in files}) == 2
    assert all(f.exists() for f in files)
    assert sorted(read_parquet(f).source_files[0].rsplit("/", 1)[-1] for f in files) == [
        "mixed.pcap", "office_b.pcapng"
    ]  # fmt: skip


def test_featurize_keeps_shards_written_beside_the_manifest(tmp_path):
    from netae.dataset import dataset_files

    out = tmp_path / "ds"
    out.mkdir()
    featurize_to([str(SAMPLES / "mixed.pcap")], out / "job1.parquet", settings=Settings())  # another job's shard
    featurize_to([str(SAMPLES / "normal" / "office_b.pcapng")], out, settings=Settings())
    assert sorted(f.name for f in dataset_files(out)) == ["00000-office_b.pcapng.parquet", "job1.parquet"]


def test_featurize_into_a_dataset_of_other_settings_is_refused(tmp_path):
    from netae.errors import ConfigError

    out = tmp_path / "ds"
    featurize_to([str(SAMPLES / "normal" / "office_b.pcapng")], out, settings=Settings())
    other = Settings(flows=FlowSettings(idle_timeout_s=30.0))
    with pytest.raises(ConfigError, match="other flow/context settings"):
        featurize_to([str(SAMPLES / "mixed.pcap")], out, settings=other)
    assert len(list(out.glob("*.parquet"))) == 1
