"""The package's layers (README, "How it works"), read from its own imports; and the heavy-import rules.

Every module of netae/ sits in one layer; a module may import its own layer and the layers below,
never one above. Imports under ``if TYPE_CHECKING:`` run for the type checker only and are not
counted. A new module must be placed in ``LAYERS`` (the test says so).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "netae"
TORCH_OK = {"model.py", "train.py", "score.py"}
PANDAS_OK: set[str] = set()  # pandas is no dependency of netae any more (labels are read with csv)
PYARROW_OK = {"dataset.py"}

# README "How it works", bottom to top.
LAYERS: dict[str, tuple[str, ...]] = {
    "base": ("netae", "errors", "tables", "config", "files", "jit", "extras", "protocols"),
    "capture": (
        "capture",
        "capture._walk",
        "capture.decode",
        "capture.dns",
        "capture.linktypes",
        "capture.reader",
        "capture.skips",
        "capture.tunnels",
    ),
    "stages": ("flows", "context", "features", "windows", "threshold", "incidents", "explain"),
    "featurize": ("pipeline", "dataset"),
    "model": ("modelfile", "model", "infer", "score", "train"),
    "workflow": ("workflow", "stream", "state", "output", "evaluate", "report"),
    "cli": ("cli", "__main__"),
}
RANK = {name: i for i, names in enumerate(LAYERS.values()) for name in names}
LAYER_OF = {name: layer for layer, names in LAYERS.items() for name in names}


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts) or "netae"


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(tree: ast.AST) -> list[tuple[str, int]]:
    """(module, line) of every import that runs, at any depth, skipping ``if TYPE_CHECKING:`` blocks."""
    found: list[tuple[str, int]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((a.name, node.lineno) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from netae.capture import _walk` imports the submodule; `from netae import __version__` the package
            found.extend((f"{node.module}.{a.name}", node.lineno) for a in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _netae_deps(path: Path) -> list[tuple[str, int]]:
    """(module within netae, line) of every runtime import of netae; names resolve to their module."""
    out = []
    for name, line in _runtime_imports(ast.parse(path.read_text())):
        if name.startswith("netae."):
            target = name.removeprefix("netae.")
            while target not in RANK and "." in target:
                target = target.rsplit(".", 1)[0]  # netae.capture.read_packets -> capture
            out.append((target if target in RANK else "netae", line))  # netae.__version__ -> netae
    return out


MODULES = sorted(PKG.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PKG)))
def test_imports_point_down_the_layers(path):
    me = _module_name(path)
    assert me in RANK, f"netae/{path.relative_to(PKG)} is in no layer: add it to LAYERS here and to the README tree"
    for target, line in _netae_deps(path):
        assert target in RANK, f"{me} imports netae.{target}, which is in no layer"
        assert RANK[target] <= RANK[me], (
            f"{me} ({LAYER_OF[me]}) imports netae.{target} ({LAYER_OF[target]}) at line {line}: an upward import"
        )


def test_the_import_graph_has_no_cycle():
    graph = {_module_name(p): {t for t, _ in _netae_deps(p) if t != _module_name(p)} for p in MODULES}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                pytest.fail(f"import cycle: {' -> '.join([*trail, node, nxt])}")
            if nxt not in state:
                visit(nxt, [*trail, node])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])


def test_an_upward_import_is_caught(tmp_path):
    """The checker itself: a stage importing the workflow is reported, a TYPE_CHECKING one is not."""
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from netae.cli import app\n"
        "def f():\n    from netae.workflow import score_captures\n"
    )
    assert [t for t, _ in _netae_deps(bad)] == ["workflow"]


def test_readme_shows_the_layers():
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## How it works") :]
    for layer in LAYERS:
        assert f"{layer}:" in section, f"the README's layer tree lacks {layer}"


def test_cli_and_numpy_stages_do_not_import_torch():
    code = (
        "import netae.cli, netae.flows, netae.features, netae.context, netae.modelfile, netae.workflow, "
        "netae.pipeline, netae.capture, netae.report, netae.evaluate; import sys; "
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


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PKG)))
def test_module_level_imports_follow_the_rules(path):
    imports = _top_level_imports(path)
    if path.name not in TORCH_OK:
        assert "torch" not in imports
    assert "pandas" not in imports or path.name in PANDAS_OK
    assert "pyarrow" not in imports or path.name in PYARROW_OK
    if path.name != "cli.py":
        assert "typer" not in imports
    assert "scapy" not in imports  # scapy is a test dependency only
    if path.name != "jit.py":
        anywhere = {n.split(".")[0] for n, _ in _runtime_imports(ast.parse(path.read_text()))}
        assert "numba" not in anywhere, "import numba through netae.jit (NOTE [numba cache])"


def test_no_module_imports_pandas_or_scapy_at_all():
    """The scorer's install has neither: not even a lazy import may need them."""
    for path in MODULES:
        names = {n.split(".")[0] for n, _ in _runtime_imports(ast.parse(path.read_text()))}
        assert not names & {"pandas", "scapy"}, path


def test_nothing_imports_cli():
    for path in PKG.rglob("*.py"):
        if path.name not in ("cli.py", "__main__.py"):
            assert "netae.cli" not in path.read_text(), path


def test_no_function_in_the_package_passes_80_lines():
    """Long functions are split at their seams (issue 17): kernels into per-layer helpers."""
    long = []
    for path in MODULES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = (node.end_lineno or node.lineno) - node.lineno + 1
                if n > 80:
                    long.append(f"netae/{path.relative_to(PKG)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, long
