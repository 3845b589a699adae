"""Pick a tagger backend by name. Both tag tokenized sentences the same way:
`tag(sentences: list[list[str]]) -> list[list[str]]`."""

from __future__ import annotations

from pathlib import Path

from model import files
from model.casing import CaseRouter

BACKENDS = ("onnx", "tensorflow")


def load_tagger(directory: Path, backend: str = "onnx"):
    """`onnx`: the lean runtime, no TensorFlow import (serving's default).
    `tensorflow`: the Keras network and TensorFlow CRF (the reference).
    A model directory with a caseless/ model inside gives both, behind a
    model.casing.CaseRouter."""
    directory = Path(directory)
    tagger = _load_one(directory, backend)
    if (directory / files.CASELESS).is_dir():
        return CaseRouter(tagger, _load_one(directory / files.CASELESS, backend))
    return tagger


def _load_one(directory: Path, backend: str):
    if backend == "onnx":
        from model.runtime import OnnxTagger

        return OnnxTagger(directory)
    if backend == "tensorflow":
        from model.training.artifact import TensorFlowTagger

        return TensorFlowTagger(directory)
    raise ValueError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
