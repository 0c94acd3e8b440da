from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from netae.config import Settings, given, load_settings, settings_from_dict
from netae.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_default_toml_matches_builtin_defaults():
    assert load_settings(ROOT / "configs" / "default.toml") == Settings()


def test_no_file_gives_defaults():
    assert load_settings(None) == Settings()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"flows": {"idle_timeout_ms": 3}}, "unknown key flows.idle_timeout_ms"),
        ({"nope": {}}, "unknown section"),
        ({"flows": {"idle_timeout_s": -1.0}}, "flows.idle_timeout_s must be a positive number"),
        ({"train": {"epochs": "ten"}}, "train.epochs must be int"),
        ({"train": {"device": "tpu"}}, "train.device must be one of"),
        ({"threshold": {"quantile": 1.5}}, "threshold.quantile"),
        ({"model": {"hidden_size": 0}}, "model.hidden_size"),
    ],
)
def test_bad_settings_name_the_key(data, message):
    with pytest.raises(ConfigError, match=message):
        settings_from_dict(data)


def test_int_accepted_for_float_keys_and_override_precedence(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[flows]\nidle_timeout_s = 60\n[train]\nepochs = 3\n")
    s = load_settings(cfg)
    assert s.flows.idle_timeout_s == 60.0 and s.train.epochs == 3
    seed: int | None = None  # an option not given
    train = dataclasses.replace(s.train, epochs=given(7, s.train.epochs), seed=given(seed, s.train.seed))
    s2 = dataclasses.replace(s, train=train).check()
    assert s2.train.epochs == 7 and s2.train.seed == s.train.seed


@pytest.mark.parametrize(("text", "message"), [("[flows\n", "not valid TOML"), (None, "does not exist")])
def test_unreadable_config_is_a_config_error(tmp_path, text, message):
    cfg = tmp_path / "c.toml"
    if text is not None:
        cfg.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_settings(cfg)
