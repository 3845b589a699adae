import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parent.parent
MODEL_DIR = REPO / "results" / "crf"


@pytest.fixture(scope="session")
def model_dir() -> Path:
    return MODEL_DIR
