"""The project's central boundary: serving (serve.py, app.py and the modules of
`model` itself) runs on numpy and ONNX Runtime and never imports TensorFlow;
everything that needs TensorFlow lies in model/training. And no import circle."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys

import model
from tests.launcher import ROOT

SERVING_MODULES = ["serve", "app", "settings", "scheduler", "access", "metrics", "tag", "corpus"] + [
    f"model.{m.name}" for m in pkgutil.iter_modules(model.__path__) if m.name != "training"
]
TRAINING_ONLY = ("tensorflow", "keras", "onnx", "model.training")


def project_imports(path) -> set[str]:
    """The project modules a file imports, at its top or inside a function."""
    imported = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from model import files` imports model.files; `from model.x import name` imports model.x.
            imported |= {f"{node.module}.{alias.name}" for alias in node.names} | {node.module}
    return imported


def module_graph() -> dict[str, set[str]]:
    paths = {path: ".".join(path.relative_to(ROOT).with_suffix("").parts) for path in ROOT.glob("model/**/*.py")}
    paths |= {path: path.stem for path in ROOT.glob("*.py") if path.stem.isidentifier()}  # app, serve, settings...
    names = {name.removesuffix(".__init__") for name in paths.values()}
    return {name.removesuffix(".__init__"): project_imports(path) & names for path, name in paths.items()}


def test_the_serving_modules_import_no_tensorflow():
    code = (
        "import importlib, sys\n"
        f"for name in {SERVING_MODULES!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {TRAINING_ONLY!r} or m.startswith('model.training')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert "model.runtime" in SERVING_MODULES and "model.files" in SERVING_MODULES
    assert result.stdout.strip() == "[]"


def test_no_import_circle():
    graph = module_graph()
    assert graph["model.training.train"] >= {"model.training.export", "model.files"}  # the graph is read right

    def cycle_from(start: str, path: list[str]) -> list[str] | None:
        for imported in sorted(graph[start]):
            if imported in path:
                return path[path.index(imported):] + [imported]
            if found := cycle_from(imported, [*path, imported]):
                return found
        return None

    cycles = [cycle for name in graph if (cycle := cycle_from(name, [name]))]
    assert cycles == []
