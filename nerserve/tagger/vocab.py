"""Vocabularies and the encoding of tokenized sentences into padded id arrays.

Numpy only, so the lean serving runtime shares it with training.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

Decoded = TypeVar("Decoded")

PAD, UNK = "<pad>", "<unk>"
# Words longer than this are cut for the character features: a 100k-character
# "word" must not make a 100k-wide batch.
MAX_WORD_CHARS = 32
# The padded size (sentences x words x characters) of one model call at most:
# the character CNN's tensor is this times its filters. 32 sentences of 64
# words and 32 characters; a window (nerserve.tagger.windows) of 256 words always fits.
MAX_BATCH_CELLS = 32 * 64 * 32
# Sentences a batch when tagging, whichever backend: within 1% of 8, the
# fastest, and faster than 128 and 512, which pad more (BENCHMARKS.md, "Batch
# size of the lean runtime").
BATCH_SIZE = 32
CASINGS = (PAD, "numeric", "mostly_numeric", "lower", "upper", "title", "has_digit", "other")


def casing(word: str) -> str:
    """The casing class of a word (Reimers & Gurevych 2017)."""
    digits = sum(ch.isdigit() for ch in word)
    if word.isdigit():
        return "numeric"
    if digits / len(word) > 0.5:
        return "mostly_numeric"
    if word.islower():
        return "lower"
    if word.isupper():
        return "upper"
    if word[0].isupper():
        return "title"
    if digits:
        return "has_digit"
    return "other"


@dataclass
class Batch:
    """A padded batch: id 0 is padding everywhere."""

    word_ids: np.ndarray  # [batch, words] int32
    char_ids: np.ndarray  # [batch, words, chars] int32
    casing_ids: np.ndarray  # [batch, words] int32
    lengths: np.ndarray  # [batch] int32


class Vocab:
    """Word, character and tag vocabularies; index 0 is padding, 1 unknown."""

    def __init__(self, words: list[str], chars: list[str], tags: list[str]):
        self.words, self.chars, self.tags = words, chars, tags
        self.word_index = {w: i for i, w in enumerate(words)}
        self.char_index = {c: i for i, c in enumerate(chars)}
        self.tag_index = {t: i for i, t in enumerate(tags)}
        self.casing_index = {c: i for i, c in enumerate(CASINGS)}

    @classmethod
    def build(
        cls,
        sentences: list[tuple[list[str], list[str]]],
        pretrained_words: list[str],
        keep_pretrained: int,
    ) -> Vocab:
        """Words, lowercased as GloVe is: first the training words that have a
        pretrained vector, most frequent first (the vectors are frozen: a word
        without one would only be a second unknown word), then the
        `keep_pretrained` most frequent pretrained words not seen in training,
        so that text beyond CoNLL still meets known words. Characters and tags
        come from the training data."""
        pretrained = set(pretrained_words)
        counts = Counter(w.lower() for words, _ in sentences for w in words)
        training = [w for w, _ in counts.most_common() if w in pretrained]
        seen = set(training)
        extra = [w for w in pretrained_words[:keep_pretrained] if w not in seen]
        char_counts = Counter(ch for words, _ in sentences for w in words for ch in w)
        chars = [PAD, UNK] + sorted(char_counts)
        tags = sorted({t for _, tags in sentences for t in tags}, key=_tag_order)
        return cls([PAD, UNK] + training + extra, chars, tags)

    def encode(self, sentences: list[list[str]]) -> Batch:
        """Pad a list of tokenized sentences into id arrays."""
        lengths = np.array([len(s) for s in sentences], dtype=np.int32)
        max_words = max(int(lengths.max(initial=0)), 1)
        max_chars = max((min(len(w), MAX_WORD_CHARS) for s in sentences for w in s), default=1)
        word_ids = np.zeros((len(sentences), max_words), dtype=np.int32)
        casing_ids = np.zeros((len(sentences), max_words), dtype=np.int32)
        char_ids = np.zeros((len(sentences), max_words, max_chars), dtype=np.int32)
        unk_word, unk_char = self.word_index[UNK], self.char_index[UNK]
        for i, sentence in enumerate(sentences):
            for j, word in enumerate(sentence):
                word_ids[i, j] = self.word_index.get(word.lower(), unk_word)
                casing_ids[i, j] = self.casing_index[casing(word)]
                for k, ch in enumerate(word[:MAX_WORD_CHARS]):
                    char_ids[i, j, k] = self.char_index.get(ch, unk_char)
        return Batch(word_ids, char_ids, casing_ids, lengths)

    def encode_tags(self, tag_sequences: list[list[str]]) -> np.ndarray:
        max_words = max(max((len(t) for t in tag_sequences), default=1), 1)
        tag_ids = np.zeros((len(tag_sequences), max_words), dtype=np.int32)
        for i, tags in enumerate(tag_sequences):
            tag_ids[i, : len(tags)] = [self.tag_index[t] for t in tags]
        return tag_ids

    def save(self, path: Path) -> None:
        data = {"words": self.words, "chars": self.chars, "tags": self.tags}
        path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Vocab:
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(data["words"], data["chars"], data["tags"])


def _tag_order(tag: str) -> tuple[str, str]:
    """O first, then B-/I- pairs grouped by type: O, B-LOC, I-LOC, B-MISC, ..."""
    return ("", "") if tag == "O" else (tag[2:], tag[:2])


def decode_in_batches(
    sentences: list[list[str]], batch_size: int, decode: Callable[[list[int]], list[Decoded]],
    empty: Callable[[], Decoded] = list,
) -> list[Decoded]:
    """What `decode` gives for each sentence (its tag ids), decoding non-empty
    sentences in batches of similar length, each given to `decode` as the
    indices of its sentences; an empty sentence gets `empty()`."""
    paths: list[Decoded] = [empty() for _ in sentences]
    nonempty = [i for i, s in enumerate(sentences) if s]
    for positions in batches_by_length([sentences[i] for i in nonempty], batch_size):
        indices = [nonempty[p] for p in positions]
        for i, path in zip(indices, decode(indices), strict=True):
            paths[i] = path
    return paths


def padded_chars(sentence: list[str]) -> int:
    """The character width a sentence needs in a padded batch."""
    return min(max(map(len, sentence), default=1), MAX_WORD_CHARS)


def batches_by_length(
    sentences: list[list[str]], batch_size: int, max_cells: int = MAX_BATCH_CELLS
) -> list[list[int]]:
    """Indices of the sentences grouped into batches of similar length, so that
    padding costs little; callers put the results back in input order.

    A batch holds at most `batch_size` sentences, and its padded size
    (sentences x longest sentence x widest word) stays within `max_cells`
    unless it is one sentence: what a model call allocates follows the padded
    size, whatever the sentence count.
    """
    order = sorted(range(len(sentences)), key=lambda i: (len(sentences[i]), padded_chars(sentences[i])))
    batches: list[list[int]] = []
    batch: list[int] = []
    chars = 1
    for i in order:
        wider = max(chars, padded_chars(sentences[i]))
        # Sorted by length, so sentence i is the batch's longest.
        if batch and (len(batch) == batch_size or (len(batch) + 1) * len(sentences[i]) * wider > max_cells):
            batches.append(batch)
            batch, wider = [], padded_chars(sentences[i])
        batch.append(i)
        chars = wider
    if batch:
        batches.append(batch)
    return batches
