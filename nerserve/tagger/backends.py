"""Pick a tagger backend by name. Both tag tokenized sentences the same way:
`tag(sentences: list[list[str]]) -> list[list[str]]`."""

from __future__ import annotations

import filecmp
from pathlib import Path
from typing import Any

from nerserve.tagger import files
from nerserve.tagger.casing import CaseRouter

BACKENDS = ("onnx", "tensorflow")


def load_tagger(directory: Path, backend: str = "onnx"):
    """`onnx`: the lean runtime, no TensorFlow import (serving's default).
    `tensorflow`: the Keras network and TensorFlow CRF (the reference).
    A model directory with a caseless/ model inside gives both, behind a
    nerserve.tagger.casing.CaseRouter."""
    directory = Path(directory)
    caseless = directory / files.CASELESS
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if backend == "tensorflow":
        from nerserve.tagger.training.artifact import TensorFlowTagger

        tagger = TensorFlowTagger(directory)
        return routed(directory, tagger, TensorFlowTagger(caseless)) if caseless.is_dir() else tagger
    from nerserve.tagger.runtime import OnnxTagger

    tagger = OnnxTagger(directory)
    if not caseless.is_dir():
        return tagger
    # Networks trained on the same data have the same vocabulary and vectors:
    # one copy serves both.
    same_words = all(filecmp.cmp(directory / name, caseless / name, shallow=False) for name in files.SHARED_FILES)
    return routed(directory, tagger, OnnxTagger(caseless, shares_words_with=tagger if same_words else None))


def routed(directory: Path, cased: Any, caseless: Any) -> CaseRouter:
    """The two taggers behind a CaseRouter; ModelError unless they have the same
    tag set, the one that the pipeline and the API describe (nerserve.tagger.description)."""
    if set(caseless.vocab.tags) != set(cased.vocab.tags):
        raise files.ModelError(f"{directory / files.CASELESS / files.VOCAB}: tags {caseless.vocab.tags}, "
                               f"not those of {directory / files.VOCAB}, {cased.vocab.tags}")
    return CaseRouter(cased, caseless)
