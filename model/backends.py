"""Pick a tagger backend by name. Both tag tokenized sentences the same way:
`tag(sentences: list[list[str]]) -> list[list[str]]`."""

from __future__ import annotations

from pathlib import Path

BACKENDS = ("onnx", "tensorflow")


def load_tagger(directory: Path, backend: str = "onnx"):
    """`onnx`: the lean runtime, no TensorFlow import (serving's default).
    `tensorflow`: the Keras network and TensorFlow CRF (the reference)."""
    if backend == "onnx":
        from model.runtime import OnnxTagger

        return OnnxTagger(directory)
    if backend == "tensorflow":
        from model.training.artifact import TensorFlowTagger

        return TensorFlowTagger(directory)
    raise ValueError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
