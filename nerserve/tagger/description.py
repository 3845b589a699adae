"""What a model directory says about itself, read without loading a network:
its meta.json (name, version, scores, training data) and its tag set (vocab.json).

The web service describes the model before it has loaded it: app.py writes
the OpenAPI document when it creates the app, and the model loads later, in a
background thread (app.ModelLoader). describe() keeps what it read of each
directory, so that the loader (nerserve.tagger.pipeline.load_pipeline) takes the same
reading, and /openapi.json, the index and /api/model say the same thing.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nerserve.tagger import files
from nerserve.tagger.tags import check_tag_set, entity_types


@dataclass(frozen=True)
class ModelDescription:
    """A model's meta.json and tag set."""

    meta: dict[str, Any]  # meta.json; {} for a model exported before meta.json existed
    tags: tuple[str, ...]  # an IOB2 tag set (nerserve.tagger.tags.check_tag_set), in vocab.json's order

    @property
    def entity_types(self) -> list[str]:
        return entity_types(self.tags)

    def summary(self) -> dict[str, Any]:
        """What a reader of the API needs first: which model, which types, trained on what, how good."""
        return {
            "name": self.meta.get("name"),
            "version": self.meta.get("version"),
            "entity_types": self.entity_types,
            "training_data": self.meta.get("training_data"),
            "dev_f1": self.meta.get("dev_f1"),
            "test_f1": self.meta.get("test_f1"),
        }


def describe(directory: str | Path) -> ModelDescription:
    """The model in `directory`, as it describes itself; read once a process
    (see the module's docstring). ModelError, naming the file, when its tag
    set cannot be served; OSError when a file is missing."""
    return _describe(Path(directory).resolve())


def describe_if_readable(directory: str | Path) -> ModelDescription | None:
    """describe(directory), or None when it fails: what describes the model
    before it loads says nothing then, and loading it says what is wrong."""
    try:
        return describe(directory)
    except (OSError, ValueError):  # ValueError: ModelError, or a file that is not JSON
        return None


@functools.cache  # a failure is not kept: the loader reads again, and raises it
def _describe(directory: Path) -> ModelDescription:
    vocab_path = directory / files.VOCAB
    vocab = json.loads(vocab_path.read_text(encoding="utf-8"))
    tags = vocab.get("tags") if isinstance(vocab, dict) else None
    if not isinstance(tags, list):
        raise files.ModelError(f"{vocab_path}: no list of tags")
    try:
        check_tag_set(tags)
    except ValueError as error:
        raise files.ModelError(f"{vocab_path}: {error}") from None
    return ModelDescription(files.read_json(directory, files.META), tuple(tags))
