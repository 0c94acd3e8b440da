"""Model files as a test (or an attacker) writes them: any metadata, with a digest that matches."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from netae.modelfile import SCHEMA_VERSION, TrainedModel, unchecked_bytes


def raw_model_bytes(tensors: dict[str, np.ndarray], meta: dict[str, Any]) -> bytes:
    """A model file of exactly these tensors and metadata, unchecked (the digest is recomputed)."""
    return unchecked_bytes(tensors, {**meta, "schema_version": SCHEMA_VERSION})


def model_parts(model: TrainedModel) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The tensors and the metadata document ``model`` is written as."""
    tensors = {f"weights.{k}": np.asarray(v) for k, v in model.weights.items()}
    tensors["scaler.mean"], tensors["scaler.scale"] = model.scaler.mean_, model.scaler.scale_
    return tensors, dataclasses.replace(model, digest="").to_meta()


def write_edited(path: Path, model: TrainedModel, edit: Callable[[dict[str, Any]], None]) -> Path:
    """``model`` written to ``path`` with its metadata document changed by ``edit`` first."""
    tensors, meta = model_parts(model)
    edit(meta)
    path.write_bytes(raw_model_bytes(tensors, meta))
    return path
