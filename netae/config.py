"""Settings: one frozen dataclass per stage, loaded from TOML with explicit overrides on top.

Precedence: built-in defaults < ``--config FILE`` < explicit CLI options. ``configs/default.toml``
mirrors the defaults here (a test checks it). Unknown keys and out-of-range values raise
``ConfigError`` naming the key.

Settings are frozen: change them with ``dataclasses.replace``, which mypy checks field by field,
then ``check()`` the result; ``given`` keeps a default where a CLI option was not given::

    settings = dataclasses.replace(s, train=dataclasses.replace(s.train, epochs=given(epochs, s.train.epochs))).check()
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from netae.errors import ConfigError

__all__ = [
    "ContextSettings",
    "FlowSettings",
    "ModelSettings",
    "Settings",
    "ThresholdSettings",
    "TrainSettings",
    "TunnelSettings",
    "given",
    "load_settings",
    "settings_from_dict",
]


T = TypeVar("T")


def given(value: T | None, default: T) -> T:
    """``value`` where an option was given, else ``default`` (for ``dataclasses.replace``)."""
    return default if value is None else value


@dataclass(frozen=True, slots=True)
class FlowSettings:
    """How packets are grouped into flows, and how long a sequence the model sees at once."""

    idle_timeout_s: float = 120.0
    active_timeout_s: float = 1800.0
    max_packets: int = 64
    # A TCP flow ends this long after FIN from both sides or a RST (0: only the timeouts end it).
    tcp_close_linger_s: float = 1.0
    # At most this many flows open at once; past it, floods are aggregated (NOTE [flood cap]).
    max_open_flows: int = 500_000

    def check(self) -> None:
        _positive("flows.idle_timeout_s", self.idle_timeout_s, most=MAX_SECONDS)
        _positive("flows.active_timeout_s", self.active_timeout_s, most=MAX_SECONDS)
        _int_range("flows.max_packets", self.max_packets, 2, 100_000)
        linger = self.tcp_close_linger_s
        if not isinstance(linger, int | float) or isinstance(linger, bool) or not 0.0 <= linger <= 3600.0:
            raise ConfigError(
                f"flows.tcp_close_linger_s must be from 0 to 3600 seconds (0: off), got {self.tcp_close_linger_s!r}"
            )
        _int_range("flows.max_open_flows", self.max_open_flows, 1_000, 100_000_000)


@dataclass(frozen=True, slots=True)
class TunnelSettings:
    """Decapsulation in the decode stage: which UDP ports carry which tunnel, and how deep to go.

    A port of 0 turns that UDP tunnel off. ``max_depth`` counts tunnel layers (VXLAN, Geneve,
    GRE, ERSPAN, IP-in-IP, Teredo, GTP-U); MPLS labels and PPPoE do not count.
    """

    enabled: bool = True
    max_depth: int = 4
    vxlan_ports: tuple[int, ...] = (4789, 8472)
    geneve_port: int = 6081
    gtpu_port: int = 2152
    teredo_port: int = 3544
    gre_udp_port: int = 4754

    def check(self) -> None:
        _int_range("tunnels.max_depth", self.max_depth, 1, 16)
        if not isinstance(self.vxlan_ports, tuple) or len(self.vxlan_ports) > 8:
            raise ConfigError(f"tunnels.vxlan_ports must be a list of at most 8 ports, got {self.vxlan_ports!r}")
        for port in self.vxlan_ports:
            _int_range("tunnels.vxlan_ports", port, 0, 65535)
        for key in ("geneve_port", "gtpu_port", "teredo_port", "gre_udp_port"):
            _int_range(f"tunnels.{key}", getattr(self, key), 0, 65535)


@dataclass(frozen=True, slots=True)
class ContextSettings:
    """Cross-flow context: what a flow's source host, host pair and service did before it."""

    enabled: bool = True
    window_s: float = 300.0
    # Context looks back over at most this many flows (the latest to end; NOTE [context cap]).
    max_events: int = 1_000_000

    def check(self) -> None:
        _positive("context.window_s", self.window_s, most=MAX_SECONDS)
        _int_range("context.max_events", self.max_events, 1_000, 1_000_000_000)


@dataclass(frozen=True, slots=True)
class ModelSettings:
    """LSTM autoencoder size and input path (``packed``, ``padded`` or ``auto`` per device)."""

    hidden_size: int = 32
    num_layers: int = 1
    input_path: str = "auto"
    context_weight: float = 2.0

    def check(self) -> None:
        _int_range("model.hidden_size", self.hidden_size, 1, 4096)
        _int_range("model.num_layers", self.num_layers, 1, 8)
        _choice("model.input_path", self.input_path, ("auto", "packed", "padded"))
        _positive("model.context_weight", self.context_weight)


@dataclass(frozen=True, slots=True)
class TrainSettings:
    """Optimisation: epochs, batches, early stopping, validation split, device and seed."""

    epochs: int = 120
    batch_size: int = 64
    learning_rate: float = 3e-3
    patience: int = 10
    grad_clip: float = 1.0
    val_fraction: float = 0.2
    seed: int = 0
    device: str = "auto"
    threads: int = 0
    batching: str = "windows"

    def check(self) -> None:
        _int_range("train.epochs", self.epochs, 1, 100_000)
        _int_range("train.batch_size", self.batch_size, 1, 1_000_000)
        _positive("train.learning_rate", self.learning_rate)
        _int_range("train.patience", self.patience, 1, 100_000)
        _positive("train.grad_clip", self.grad_clip)
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"train.val_fraction must be between 0 and 1 (exclusive), got {self.val_fraction}")
        _int_range("train.seed", self.seed, 0, 2**32 - 1)
        _choice("train.device", self.device, ("auto", "cpu", "cuda"))
        _int_range("train.threads", self.threads, 0, 4096)
        _choice("train.batching", self.batching, ("windows", "packets"))


@dataclass(frozen=True, slots=True)
class ThresholdSettings:
    """How the anomaly threshold is fitted on held-out validation scores."""

    strategy: str = "meanstd"
    quantile: float = 0.995
    k: float = 4.5
    spot_level: float = 0.98
    spot_q: float = 1e-3

    def check(self) -> None:
        _choice("threshold.strategy", self.strategy, ("quantile", "meanstd", "spot"))
        if not 0.0 < self.quantile < 1.0:
            raise ConfigError(f"threshold.quantile must be between 0 and 1 (exclusive), got {self.quantile}")
        _positive("threshold.k", self.k)
        if not 0.0 < self.spot_level < 1.0:
            raise ConfigError(f"threshold.spot_level must be between 0 and 1 (exclusive), got {self.spot_level}")
        if not 0.0 < self.spot_q < 1.0:
            raise ConfigError(f"threshold.spot_q must be between 0 and 1 (exclusive), got {self.spot_q}")


@dataclass(frozen=True, slots=True)
class Settings:
    """All tunables, by stage. Saved in the model file; ``score`` reuses the model's."""

    flows: FlowSettings = field(default_factory=FlowSettings)
    context: ContextSettings = field(default_factory=ContextSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    train: TrainSettings = field(default_factory=TrainSettings)
    threshold: ThresholdSettings = field(default_factory=ThresholdSettings)
    tunnels: TunnelSettings = field(default_factory=TunnelSettings)

    def check(self) -> Settings:
        for f in dataclasses.fields(self):
            getattr(self, f.name).check()
        return self

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return dataclasses.asdict(self)


# Bounds that keep "unbounded" values out: inf, nan or 1e300 would overflow the integer
# nanosecond arithmetic of timeouts, or silently switch a check off.
MAX_SECONDS = 1e7  # about 115 days: the longest timeout or window a setting may give
MAX_NUMBER = 1e9  # any other positive number


def _positive(key: str, value: float, *, most: float = MAX_NUMBER) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 < value <= most:
        raise ConfigError(f"{key} must be a positive number of at most {most:g}, got {value!r}")


def _int_range(key: str, value: int, lo: int, hi: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ConfigError(f"{key} must be an integer from {lo} to {hi}, got {value!r}")


def _choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{key} must be one of {', '.join(choices)}; got {value!r}")


_SECTIONS: dict[str, type] = {f.name: f.default_factory for f in dataclasses.fields(Settings)}  # type: ignore[misc]


def settings_from_dict(data: dict[str, Any], *, source: str = "settings") -> Settings:
    """Build and check Settings from nested dicts; unknown sections or keys are errors."""
    sections: dict[str, Any] = {}
    for name, values in data.items():
        cls = _SECTIONS.get(name)
        if cls is None:
            raise ConfigError(f"{source}: unknown section [{name}]; known: {', '.join(_SECTIONS)}")
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: [{name}] must be a table")
        known = {f.name: f for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in values.items():
            if key not in known:
                raise ConfigError(f"{source}: unknown key {name}.{key}; known: {', '.join(known)}")
            default = getattr(cls(), key)
            if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if isinstance(default, tuple) and isinstance(value, list):  # TOML and JSON arrays
                value = tuple(value)
            if type(value) is not type(default):
                raise ConfigError(
                    f"{source}: {name}.{key} must be {type(default).__name__}, got {type(value).__name__}"
                )
            kwargs[key] = value
        sections[name] = cls(**kwargs)
    return Settings(**sections).check()


def load_settings(path: Path | None = None) -> Settings:
    """Defaults, overlaid with the TOML file at ``path`` if given."""
    if path is None:
        return Settings()
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text (byte {exc.start}); save it as UTF-8 TOML") from exc
    return settings_from_dict(data, source=str(path))
