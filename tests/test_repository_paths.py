"""Nothing reads outside the repository: a fresh clone with nothing beside it
tests, trains, evaluates and benchmarks itself."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import serve
from nerserve import settings
from nerserve.tagger.training import data, glove
from tests.launcher import ROOT

# Runs each command-line script given with its argument parser stopped before
# it does anything, and prints the path defaults of their options as JSON.
CLI_DEFAULTS = """
import argparse, json, runpy, sys
from pathlib import Path

class Stop(Exception):
    pass

def defaults(parser, args=None, namespace=None):
    raise Stop({a.dest: str(a.default) for a in parser._actions
                if isinstance(a.default, Path) or (isinstance(a.default, str) and "/" in a.default)})

argparse.ArgumentParser.parse_args = defaults
found = {}
for script in sys.argv[1:]:
    sys.path[:0] = [".", str(Path(script).parent)]
    try:
        runpy.run_path(script, run_name="__main__")
    except Stop as stop:
        found[script] = stop.args[0]
print(json.dumps(found))
"""


def inside_repository(path: Path) -> bool:
    # A relative path is taken from the working directory: the root, for the
    # Makefile, .ci/run and the README's commands. Lexically: a symbolic link a
    # developer made (a shared cache) is not a path the code names.
    return Path(os.path.normpath(ROOT / path)).is_relative_to(ROOT)


def command_line_scripts() -> list[Path]:
    return sorted(p for folder in ("nerserve", "bench") for p in (ROOT / folder).rglob("*.py")
                  if "parse_args(" in p.read_text())


def test_default_data_model_and_cache_paths_are_inside_the_repository():
    paths = {
        "nerserve.tagger.training.data.DEFAULT_DATA_DIR": data.DEFAULT_DATA_DIR,
        "nerserve.tagger.training.glove.CACHE_DIR": glove.CACHE_DIR,
        "serve.DEFAULT_MODEL_DIR": serve.DEFAULT_MODEL_DIR,
        **{f"settings {name}": value for name, value in settings.defaults().items() if isinstance(value, Path)},
    }
    assert {name for name, path in paths.items() if not inside_repository(path)} == set()
    assert (data.DEFAULT_DATA_DIR / "train.txt").is_file()


@pytest.mark.tensorflow  # running the training scripts' argument parsers imports TensorFlow
def test_every_command_line_default_path_is_inside_the_repository():
    scripts = command_line_scripts()
    training = ROOT / "nerserve" / "tagger" / "training"
    assert training / "train.py" in scripts and training / "evaluate.py" in scripts
    result = subprocess.run([sys.executable, "-c", CLI_DEFAULTS, *map(str, scripts)], cwd=ROOT,
                            capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    found = json.loads(result.stdout.splitlines()[-1])
    assert len(found) == len(scripts)
    outside = {f"{Path(script).name} --{name}": path for script, defaults in found.items()
               for name, path in defaults.items() if not inside_repository(Path(path))}
    assert outside == {}


def test_no_script_names_a_path_above_the_repository():
    # "../" in a path (not the "..." of an elided one), or a machine's absolute path.
    above = re.compile(r"(?<![.\w])\.\./|/work/|/shared/")
    tracked = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.split()
    scripts = [name for name in tracked
               if name.endswith((".py", ".sh", ".toml", ".lua")) or name in ("Makefile", "Procfile", ".ci/run")]
    assert len(scripts) > 20
    this_test = Path(__file__).relative_to(ROOT).as_posix()
    assert [name for name in scripts if name != this_test and above.search((ROOT / name).read_text())] == []
