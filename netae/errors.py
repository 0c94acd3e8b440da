"""The netae exception hierarchy, and the exit statuses the CLI maps it to.

Every error a user can fix is a ``NetaeError``; anything else is a bug (exit 70)::

    NetaeError                      exit 2
    ├── ConfigError                 bad configuration key or value
    │   └── MissingExtra            the command needs an optional dependency not installed
    ├── InputError                  a path given by the user is missing or unusable
    ├── CaptureError                a capture cannot be read
    │   ├── NotACapture             not pcap/pcapng (bad magic, another file type)
    │   ├── TruncatedCapture        cut short or corrupt part-way
    │   └── UnsupportedLinkType     no supported link type carries IP
    ├── ModelError                  a model file cannot be used
    │   └── IncompatibleModel       schema or feature layout from another version
    ├── CalibrationRefused          a new threshold would disarm the model (``--force`` overrides)
    └── OutputError                 output cannot be written

Exit statuses (public API, the same for every command):
0 nothing anomalous · 1 anomalies found · 2 usage, input, config or model error ·
3 some inputs were unreadable and the others were processed · 70 internal error.
"""

from __future__ import annotations

import re
from typing import ClassVar

__all__ = [
    "EXIT_ANOMALIES",
    "EXIT_INTERNAL",
    "EXIT_OK",
    "EXIT_PARTIAL",
    "EXIT_USAGE",
    "CalibrationRefused",
    "CaptureError",
    "ConfigError",
    "IncompatibleModel",
    "InputError",
    "MissingExtra",
    "ModelError",
    "NetaeError",
    "NotACapture",
    "OutputError",
    "TruncatedCapture",
    "UnsupportedLinkType",
    "printable",
]

EXIT_OK = 0
EXIT_ANOMALIES = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_INTERNAL = 70


class NetaeError(Exception):
    """Something the user can fix: the message says what, where, and what to do."""

    exit_code: ClassVar[int] = EXIT_USAGE


class ConfigError(NetaeError, ValueError):
    """A configuration key is unknown or its value is out of range."""


class MissingExtra(ConfigError):
    """The command needs an optional dependency (an extra such as ``netae[train]``) not installed."""


class InputError(NetaeError):
    """A path given by the user does not exist, is empty, or holds nothing usable."""


class CaptureError(NetaeError):
    """A capture file cannot be read."""


class NotACapture(CaptureError):
    """The file is not a pcap or pcapng capture (checked by magic number, never by name)."""


class TruncatedCapture(CaptureError):
    """The capture is cut short or corrupt part-way; records before the damage are usable."""


class UnsupportedLinkType(CaptureError):
    """No interface of the capture has a link type that carries IP."""


class ModelError(NetaeError):
    """A model file is missing, truncated, corrupt or tampered with."""


class IncompatibleModel(ModelError):
    """A model file from another schema version or feature layout."""


class CalibrationRefused(NetaeError):
    """Calibration would move the threshold too far, or its captures do not look benign."""


class OutputError(NetaeError):
    """Output cannot be written where the user asked."""


# C0 and C1 controls, DEL, line/paragraph separators, bidi overrides (trojan-source), lone surrogates
# (undecodable bytes of a file name, kept by the surrogateescape error handler).
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _escape_char(m: re.Match[str]) -> str:
    c = ord(m.group())
    if 0xDC80 <= c <= 0xDCFF:
        return f"\\x{c - 0xDC00:02x}"  # the original byte of an undecodable file name
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def printable(text: object) -> str:
    """``text`` with control characters and undecodable bytes escaped as ``\\xNN``, one safe line.

    Names, paths and metadata come from files and packets an attacker may control: raw, an ESC or
    OSC 8 sequence would drive the terminal and a newline would forge a log line.
    """
    return _UNPRINTABLE.sub(_escape_char, str(text))
