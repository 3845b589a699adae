"""The project's central boundary: serving (every module of the nerserve
package but nerserve.tagger.training, and the root's entry points) runs on
numpy and ONNX Runtime and never imports TensorFlow; everything that needs
TensorFlow lies in nerserve/tagger/training. And no import circle. Modules are
found by walking the package, so that a new one is checked without a list."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
import tomllib

import nerserve
from tests.launcher import ROOT

TRAINING = "nerserve.tagger.training"
# The Spark side needs pyspark, an extra of its own (its test imports it).
SPARK = ("nerserve.corpus.spark_tag", "nerserve.corpus.spark_batches")
ENTRY_POINTS = ["app", "serve", "tag"]
SERVING_MODULES = ENTRY_POINTS + [
    module.name for module in pkgutil.walk_packages(nerserve.__path__, "nerserve.")
    if not module.name.startswith(TRAINING) and module.name not in SPARK
]
TRAINING_ONLY = ("tensorflow", "keras", "onnx")


def project_imports(path, names: set[str]) -> set[str]:
    """The project modules of `names` a file imports, at its top or inside a function."""
    imported = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from nerserve.tagger import files` imports nerserve.tagger.files (the package's
            # __init__ only runs first); `from nerserve.tagger.files import name` imports
            # nerserve.tagger.files.
            submodules = {f"{node.module}.{alias.name}" for alias in node.names} & names
            imported |= submodules or {node.module}
    return imported & names


def module_graph() -> dict[str, set[str]]:
    paths = {path: ".".join(path.relative_to(ROOT).with_suffix("").parts) for path in ROOT.glob("nerserve/**/*.py")}
    paths |= {path: path.stem for path in ROOT.glob("*.py") if path.stem.isidentifier()}  # the entry points
    names = {name.removesuffix(".__init__") for name in paths.values()}
    return {name.removesuffix(".__init__"): project_imports(path, names) for path, name in paths.items()}


def test_the_serving_modules_import_no_tensorflow():
    code = (
        "import importlib, sys\n"
        f"for name in {SERVING_MODULES!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {TRAINING_ONLY!r} or m.startswith({TRAINING!r})))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert {"nerserve.tagger.runtime", "nerserve.web.app", "nerserve.corpus.tag"} <= set(SERVING_MODULES)
    assert result.stdout.strip() == "[]"


def test_no_import_circle():
    graph = module_graph()
    assert graph[f"{TRAINING}.train"] >= {f"{TRAINING}.export", "nerserve.tagger.files"}  # the graph is read right
    assert graph["app"] == {"nerserve.web.app"}

    def cycle_from(start: str, path: list[str]) -> list[str] | None:
        for imported in sorted(graph[start]):
            if imported in path:
                return path[path.index(imported):] + [imported]
            if found := cycle_from(imported, [*path, imported]):
                return found
        return None

    cycles = [cycle for name in graph if (cycle := cycle_from(name, [name]))]
    assert cycles == []


def test_the_root_holds_only_entry_points_that_hand_on():
    # The code lives in the package; each root module is a few lines that hand on to it.
    assert sorted(path.name for path in ROOT.glob("*.py")) == ["app.py", "gunicorn.conf.py", "serve.py",
                                                                 "spark_tag.py", "tag.py"]
    for path in ROOT.glob("*.py"):
        code = [line for line in path.read_text().splitlines() if line.strip() and not line.lstrip().startswith("#")]
        assert len(code) <= 15, path.name


def test_the_wheel_lists_every_package_of_the_code():
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    code = {"nerserve"} | {module.name for module in pkgutil.walk_packages(nerserve.__path__, "nerserve.")
                           if module.ispkg}
    assert set(packages) == code | {"nerserve.tagger.committed_model"}
