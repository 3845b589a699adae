"""Add types to a trained model's without losing them (`train --keep-types`).

The user labels only the new types. So that the network still learns the old
ones, their sentences are tagged by the trained model (the committed one by
default, through the ONNX runtime: no TensorFlow here) for its own types
wherever the user's tags say O, and they are trained together with the data
that model learnt from (CoNLL-2003's train.txt). In that data the user's types
are made O: a truly new type is unlabelled there, and a type the user declares
anew (say MISC, in their own sense) must not keep the old sense.

    user's sentences --(old model fills in its types where the user says O)--> train.txt
    CoNLL train.txt --(the user's types made O; sentences the user has dropped)--> base.txt
    user's dev --(old model fills in its types)--> valid.txt

An O of base.txt is not an O of the user's: the new type was never labelled
there, so an O there may be it. Trained as a plain O, the base data's many
unlabelled mentions outvote the user's few labelled ones and the network never
tags the new type (MODEL.md, "Adding a type without losing the four"). So the
training loop (nerserve.tagger.training.train) maximises the marginal likelihood of the
base sentences instead: of every tag path that keeps their labelled entities
and lets each of their O be O or a new type (nerserve.tagger.training.crf).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import Protocol

import numpy as np

from nerserve.tagger import files
from nerserve.tagger.backends import load_tagger
from nerserve.tagger.tags import entity_spans
from nerserve.tagger.training.data import DEFAULT_DATA_DIR, Sentence, read_conll, read_splits, write_conll

log = logging.getLogger("train")

BASE_MODEL = files.COMMITTED_MODEL_DIR


class Tagger(Protocol):
    """What nerserve.tagger.backends.load_tagger gives."""

    def tag(self, sentences: list[list[str]]) -> list[list[str]]: ...

BASE_DATA = DEFAULT_DATA_DIR / "train.txt"
# In the data directory that prepare() writes, beside train.txt and valid.txt.
BASE_FILE = "base.txt"
TYPES_FILE = "keep_types.json"


def types_of(sentences: list[Sentence]) -> set[str]:
    return {tag[2:] for s in sentences for tag in s.tags if tag != "O"}


def without(sentences: list[Sentence], types: set[str]) -> list[Sentence]:
    """The sentences with every tag of these types made O."""
    return [Sentence(s.words, [("O" if t[2:] in types else t) for t in s.tags]) for s in sentences]


def fill_in(sentence: Sentence, predicted: list[str], types: set[str]) -> tuple[Sentence, Counter]:
    """The user's tags, plus each predicted entity of `types` whose words the
    user left all O (the user's labels win wherever they overlap); and how many
    entities of each type were added."""
    tags, added = list(sentence.tags), Counter()
    for span in entity_spans(predicted):
        if span.type in types and all(t == "O" for t in sentence.tags[span.start:span.end]):
            tags[span.start:span.end] = [f"B-{span.type}"] + [f"I-{span.type}"] * (span.end - span.start - 1)
            added[span.type] += 1
    return Sentence(sentence.words, tags), added


def with_old_types(sentences: list[Sentence], tagger: Tagger, old_types: set[str]) -> list[Sentence]:
    """The sentences with the old model's entities of old_types filled in."""
    predicted = tagger.tag([s.words for s in sentences])
    filled, added = [], Counter()
    for sentence, tags in zip(sentences, predicted, strict=True):
        sentence, counts = fill_in(sentence, tags, old_types)
        filled.append(sentence)
        added += counts
    log.info("the old model added %s", ", ".join(f"{k} {n:,}" for k, n in sorted(added.items())) or "nothing")
    return filled


def prepare(user_dir: Path, out_dir: Path, base_model: Path = BASE_MODEL, base_data: Path = BASE_DATA) -> Path:
    """Write train.txt and valid.txt for a network that tags the user's types
    and base_model's other types into out_dir/<user dir>+<base data dir>; returns that directory."""
    user_train, user_dev, dev_source = read_splits(user_dir)
    new_types = types_of(user_train)
    tagger = load_tagger(base_model)
    old_types = {tag[2:] for tag in tagger.vocab.tags if tag != "O"} - new_types
    log.info("new types (the user's): %s; kept from %s: %s", ", ".join(sorted(new_types)), base_model,
             ", ".join(sorted(old_types)))
    user_train = with_old_types(user_train, tagger, old_types)
    user_dev = with_old_types(user_dev, tagger, old_types)
    # A sentence both in the user's data and in the base data would come twice,
    # with contradicting labels of the new types: the user's copy is kept.
    theirs = {tuple(s.words) for s in user_train}
    base = [s for s in without(read_conll(base_data), new_types) if tuple(s.words) not in theirs]
    data_dir = out_dir / f"{user_dir.resolve().name}+{base_data.resolve().parent.name}"
    data_dir.mkdir(parents=True, exist_ok=True)
    write_conll(data_dir / "train.txt", user_train)
    write_conll(data_dir / BASE_FILE, base)
    write_conll(data_dir / "valid.txt", user_dev)
    described = {"new_types": sorted(new_types), "old_types": sorted(old_types), "base_model": str(base_model),
                 "base_data": str(base_data), "user_data": str(user_dir), "dev": dev_source}
    (data_dir / TYPES_FILE).write_text(json.dumps(described, indent=2) + "\n")
    log.info("dev: %s, with the old types filled in", dev_source)
    return data_dir


def read_base(data_dir: Path) -> tuple[list[Sentence], set[str]]:
    """The base sentences of a directory that prepare() wrote, and the types
    that an O of theirs may be; none and no types for any other directory."""
    if not (data_dir / TYPES_FILE).exists():
        return [], set()
    described = json.loads((data_dir / TYPES_FILE).read_text())
    return read_conll(data_dir / BASE_FILE), set(described["new_types"])


def allowed_tags(tag_ids: np.ndarray, partial: np.ndarray, tags: list[str], open_types: set[str]) -> np.ndarray:
    """[batch, time, tags], 1 for each tag a token may have: its own tag; and
    for an O of a partial (base) sentence, also B-X and I-X of each open type X."""
    allowed = np.eye(len(tags), dtype=np.float32)[tag_ids]
    opened = partial[:, None] & (tag_ids == tags.index("O"))
    open_ids = [i for i, tag in enumerate(tags) if tag[2:] in open_types]
    allowed[..., open_ids] = np.maximum(allowed[..., open_ids], opened[..., None])
    return allowed
