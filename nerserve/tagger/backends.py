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
    nerserve.tagger.casing.CaseRouter, and its typed/ model too where it has one."""
    directory = Path(directory)
    caseless, typed = directory / files.CASELESS, directory / files.TYPED
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if backend == "tensorflow":
        from nerserve.tagger.training.artifact import TensorFlowTagger

        tagger = TensorFlowTagger(directory)
        if not caseless.is_dir():
            return tagger
        return routed(directory, tagger, TensorFlowTagger(caseless),
                      TensorFlowTagger(typed) if typed.is_dir() else None)
    from nerserve.tagger.runtime import OnnxTagger

    tagger = OnnxTagger(directory)
    if not caseless.is_dir():
        return tagger
    # Networks trained on the same data have the same vocabulary and vectors:
    # one copy serves both.
    def sharing(other: Path) -> OnnxTagger:
        same_words = all(filecmp.cmp(directory / name, other / name, shallow=False) for name in files.SHARED_FILES)
        return OnnxTagger(other, shares_words_with=tagger if same_words else None)

    return routed(directory, tagger, sharing(caseless), sharing(typed) if typed.is_dir() else None)


def routed(directory: Path, cased: Any, caseless: Any, typed: Any = None) -> CaseRouter:
    """The taggers behind a CaseRouter; ModelError unless they have the same
    tag set, the one that the pipeline and the API describe (nerserve.tagger.description)."""
    for name, other in ((files.CASELESS, caseless), (files.TYPED, typed)):
        if other is not None and set(other.vocab.tags) != set(cased.vocab.tags):
            raise files.ModelError(f"{directory / name / files.VOCAB}: tags {other.vocab.tags}, "
                                   f"not those of {directory / files.VOCAB}, {cased.vocab.tags}")
    return CaseRouter(cased, caseless, typed)
