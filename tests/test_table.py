"""``--format table`` on a terminal is rendered on the terminal itself: its width, colour, NO_COLOR."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ANSI = re.compile(r"\x1b\[[0-9;]*m")
COLOUR = re.compile(r"\x1b\[(?:[0-9;]*;)?(?:3[0-8]|9[0-7])[;m]")  # a foreground colour, not bold alone


def _on_a_terminal(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run netae with stdout on a pseudo-terminal; (exit status, what the terminal showed)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "netae", *args], stdout=slave, stderr=subprocess.DEVNULL, env=env, cwd=ROOT
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return proc.wait(), b"".join(chunks).decode("utf-8", "replace")


@pytest.mark.parametrize("view", ["incident", "flow"])
@pytest.mark.parametrize("no_color", [False, True])
def test_table_fits_the_terminal_and_colours_unless_no_color(small_model, no_color, view):
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "TERM")}
    env.update({"PYTHONPATH": str(ROOT), "COLUMNS": "100", "LINES": "50", "TERM": "xterm-256color"})
    if no_color:
        env["NO_COLOR"] = "1"
    args = [
        "score",
        str(ROOT / "sample_pcaps" / "mixed.pcap"),
        "-m",
        str(small_model),
        "--limit",
        "5",
        "-q",
        "--group-by",
        view,
    ]
    status, shown = _on_a_terminal(args, env)
    assert status in (0, 1), shown
    lines = [ANSI.sub("", line) for line in shown.replace("\r\n", "\n").splitlines()]
    assert any("score" in line for line in lines), shown
    assert max(len(line) for line in lines) <= 100  # not the 200 columns of a file
    assert ("ANOMALY" if view == "flow" else "incidents from") in shown
    assert bool(COLOUR.search(shown)) is not no_color


def test_incident_cells_are_escaped_for_rich_markup():
    """Hosts and sentences in an incident row are text, never rich markup: [fd00::a]:443 survives."""
    import io

    from netae.output import _cell

    buf = io.StringIO()
    from rich.console import Console

    Console(file=buf, width=200, no_color=True).print(_cell("to [fd00::a]:443 [bold]x[/]"))
    assert "[fd00::a]:443" in buf.getvalue() and "[bold]" in buf.getvalue()
