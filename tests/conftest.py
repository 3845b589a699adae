import os
from pathlib import Path

import pytest

from serve import DEFAULT_MODEL_DIR

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@pytest.fixture(scope="session")
def model_dir() -> Path:
    return DEFAULT_MODEL_DIR
