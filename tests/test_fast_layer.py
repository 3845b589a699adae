"""The fast test layer (`make test-fast`) imports no TensorFlow: not in pytest's
own process, nor in a process a test starts. It is run here with a stand-in
`tensorflow` package first on the path, which records who imported it and
fails the import."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.launcher import ROOT

FAST_LAYER = "not slow and not browser and not tensorflow"  # the Makefile's test-fast

STAND_IN = '''
import os
with open(os.environ["TENSORFLOW_IMPORTED_BY"], "a") as record:
    record.write(os.environ.get("PYTEST_CURRENT_TEST", "collection") + "\\n")
raise ImportError("the fast test layer imported TensorFlow")
'''


def run_fast_layer(tmp_path, *pytest_args: str) -> tuple[list[str], str]:
    """Runs the fast layer (with extra pytest arguments) and gives the tests
    that imported TensorFlow, and pytest's summary line."""
    (tmp_path / "tensorflow").mkdir(parents=True)
    (tmp_path / "tensorflow" / "__init__.py").write_text(STAND_IN)
    record = tmp_path / "imported_by.txt"
    record.touch()
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "TENSORFLOW_IMPORTED_BY": str(record)}
    result = subprocess.run([sys.executable, "-m", "pytest", "-m", FAST_LAYER, "-p", "no:cacheprovider", "-q",
                             *pytest_args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800,
                            check=False)
    return sorted(set(record.read_text().splitlines())), result.stdout.strip().splitlines()[-1]


@pytest.mark.slow
def test_the_fast_layer_imports_no_tensorflow(tmp_path):
    importers, summary = run_fast_layer(tmp_path)
    assert importers == [], f"these fast-layer tests import TensorFlow (mark them tensorflow): {importers}"
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) > 100, summary


@pytest.mark.slow
def test_the_check_names_a_test_that_imports_tensorflow(tmp_path):
    # The check above can fail: here the fast layer is one test that imports TensorFlow.
    test_file = tmp_path / "test_imports_tensorflow.py"
    test_file.write_text("def test_it():\n    import tensorflow  # noqa: F401\n")
    importers, summary = run_fast_layer(tmp_path / "stand_in", str(test_file))
    assert [name.rsplit("/", 1)[-1] for name in importers] == ["test_imports_tensorflow.py::test_it (call)"]
    assert "1 failed" in summary
