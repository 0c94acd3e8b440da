"""Import rules of STYLE.md 2.2: torch only in model/train/score, nothing heavy at CLI start."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "netae"
TORCH_OK = {"model.py", "train.py", "score.py"}
PANDAS_OK = {"output.py", "evaluate.py", "report.py", "dataset.py"}


def test_cli_and_numpy_stages_do_not_import_torch():
    code = (
        "import netae.cli, netae.flows, netae.features, netae.context, netae.modelfile, netae.workflow, "
        "netae.pipeline, netae.capture, netae.report; import sys; "
        "assert 'torch' not in sys.modules and 'pandas' not in sys.modules, sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": ""})


def _top_level_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in tree.body:  # module level only: imports inside functions are deliberate and lazy
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", sorted(PKG.rglob("*.py")), ids=lambda p: str(p.relative_to(PKG)))
def test_module_level_imports_follow_the_rules(path):
    imports = _top_level_imports(path)
    if path.name not in TORCH_OK:
        assert "torch" not in imports
    if path.name not in PANDAS_OK:
        assert "pandas" not in imports and "pyarrow" not in imports
    if path.name != "cli.py":
        assert "typer" not in imports
    assert "scapy" not in imports or path.parent.name == "capture"


def test_nothing_imports_cli():
    for path in PKG.rglob("*.py"):
        if path.name not in ("cli.py", "__main__.py"):
            assert "netae.cli" not in path.read_text(), path
