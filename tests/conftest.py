import os
import re
from pathlib import Path

import pytest

from nerserve.api import DEFAULT_MODEL_DIR

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# A test module marked tensorflow as a whole imports TensorFlow at its top, and
# pytest imports a module to collect it, before `-m` deselects anything. So a
# run that leaves the tensorflow layer out (`-m "... not tensorflow"`, the fast
# layer) does not collect those modules at all, and imports no TensorFlow
# (tests/test_fast_layer.py checks that).
TENSORFLOW_MODULE = re.compile(r"^pytestmark = .*pytest\.mark\.tensorflow\b", re.MULTILINE)


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if "not tensorflow" not in (config.option.markexpr or "") or collection_path.suffix != ".py":
        return None  # pytest decides
    return True if TENSORFLOW_MODULE.search(collection_path.read_text()) else None


@pytest.fixture(scope="session")
def model_dir() -> Path:
    return DEFAULT_MODEL_DIR
