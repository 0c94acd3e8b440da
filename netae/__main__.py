"""``python -m netae`` and the ``netae`` console script.

The CLI module is imported inside ``main`` so that a broken install (a missing or broken
dependency: an ImportError at start-up) exits 70 with one line, never a traceback and never 1,
which means "anomalies found".
"""

from __future__ import annotations

import sys

EXIT_INTERNAL = 70  # netae.errors.EXIT_INTERNAL, repeated: that import may be what fails


def main() -> None:
    """Console-script entry point."""
    try:
        from netae.cli import main as cli_main
    except Exception as exc:
        text = f"{type(exc).__name__}: {exc}".encode("ascii", "backslashreplace").decode("ascii")
        sys.stderr.write(f"netae: internal error: cannot start: {' '.join(text.split())} (a broken install?)\n")
        sys.exit(EXIT_INTERNAL)
    cli_main()


if __name__ == "__main__":
    main()
