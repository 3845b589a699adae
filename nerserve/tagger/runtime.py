"""The lean serving runtime: ONNX Runtime for the emissions, numpy for Viterbi
and the entity scores (nerserve.tagger.marginals).

Imports neither TensorFlow nor Keras, so a web worker stays small and starts
fast. Reads the model directory that `python -m nerserve.tagger.training.export` completes with
chars.onnx, tagger.onnx and crf.npz.

What the network needs of a word depends on the word alone: its ids and its
character features (chars.onnx, words of near widths in one run) are taken
once for each distinct word of the sentences tagged together, and looked up
for every place the word appears.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from nerserve.tagger import files
from nerserve.tagger.marginals import EntityScorer, ScoredIf, ScoredTags, rows_to_score
from nerserve.tagger.vocab import (
    BATCH_SIZE,
    MAX_WORD_CHARS,
    UNK,
    Vocab,
    casing,
    decode_in_batches,
)


def viterbi(emissions: np.ndarray, lengths: np.ndarray, transitions: np.ndarray,
            start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Best tag path of each sequence, [batch, time]; 0 past each length.
    transitions[i, j] scores tag i followed by tag j. Lengths must be >= 1."""
    batch, time, num_tags = emissions.shape
    score = start[None] + emissions[:, 0]
    backpointers = np.zeros((max(time - 1, 0), batch, num_tags), dtype=np.int64)
    # Where every sequence fills the batch (one sentence; sentences of one
    # length) nothing is masked: a step takes three numpy calls fewer.
    padded = bool((lengths < time).any())
    identity = np.broadcast_to(np.arange(num_tags), (batch, num_tags))
    for t in range(1, time):
        candidates = score[:, :, None] + transitions[None]
        best_previous = candidates.argmax(axis=1)
        best = candidates.max(axis=1) + emissions[:, t]
        if padded:
            # Past the end the score is carried and each tag points back to itself.
            valid = (t < lengths)[:, None]
            best, best_previous = np.where(valid, best, score), np.where(valid, best_previous, identity)
        score = best
        backpointers[t - 1] = best_previous
    path = np.zeros((batch, time), dtype=np.int64)
    path[:, -1] = (score + end[None]).argmax(axis=1)
    for t in range(time - 2, -1, -1):
        path[:, t] = backpointers[t][np.arange(batch), path[:, t + 1]]
    return np.where(np.arange(time)[None] < lengths[:, None], path, 0) if padded else path


# A chars.onnx run costs about as much as this many more character cells
# (14 us against 0.35 us a cell, one core): words of near widths share a run
# while padding them costs less than another run.
RUN_COST_CELLS = 40
# The character cells of one chars.onnx run at most: its tensors, 600 bytes a
# cell, stay within the processor's caches (at 32,768 cells a cell costs four
# times as much).
MAX_RUN_CELLS = 8192


def width_groups(words: list[str]) -> list[tuple[int, list[str]]]:
    """The words (each cut to MAX_WORD_CHARS) in runs of chars.onnx: (width,
    words) with no word wider than width. Widths are taken in turn, narrowest
    first; the next joins the run before while padding that run's words to it
    costs at most RUN_COST_CELLS, and a run holds at most MAX_RUN_CELLS cells."""
    by_width: dict[int, list[str]] = defaultdict(list)
    for word in words:
        by_width[min(len(word), MAX_WORD_CHARS)].append(word)
    runs: list[tuple[int, list[str]]] = []
    for width in sorted(by_width):
        if runs and len(runs[-1][1]) * (width - runs[-1][0]) <= RUN_COST_CELLS:
            runs[-1] = (width, runs[-1][1] + by_width[width])
        else:
            runs.append((width, by_width[width]))
    chunks = []
    for width, group in runs:
        size = max(MAX_RUN_CELLS // width, 1)
        chunks += [(width, group[start : start + size]) for start in range(0, len(group), size)]
    return chunks


@dataclass
class Words:
    """What the network needs of each distinct word of some sentences, in
    rows: `rows[word]` is the word's row of `word_ids`, `casing_ids` and
    `char_features`; row 0 is padding's (ids 0, features 0)."""

    rows: dict[str, int]
    word_ids: np.ndarray  # [distinct words + 1] int32
    casing_ids: np.ndarray  # [distinct words + 1] int32
    char_features: np.ndarray  # [distinct words + 1, members x filters] float32


class OnnxTagger:
    """Tags tokenized sentences; same interface as nerserve.tagger.training.artifact.TensorFlowTagger."""

    def __init__(self, directory: Path, batch_size: int = BATCH_SIZE, threads: int = 1,
                 shares_words_with: OnnxTagger | None = None):
        """shares_words_with: a tagger whose vocabulary and word vectors are the
        same files as this model's (nerserve.tagger.backends checks): they are used
        instead of loading a second copy, 17 MB a worker."""
        directory = Path(directory)
        self.batch_size = batch_size
        if shares_words_with is not None:
            self.vocab, self.word_vectors = shares_words_with.vocab, shares_words_with.word_vectors
        else:
            self.vocab = Vocab.load(directory / files.VOCAB)
            # Memory-mapped: forked workers share the pages instead of copying them.
            self.word_vectors = np.load(directory / files.WORD_VECTORS, mmap_mode="r")
        self.transitions, self.start, self.end = files.read_crf(directory, len(self.vocab.tags))
        temperature = files.temperature(directory)
        try:
            self.scorer = EntityScorer(self.vocab.tags, self.transitions, self.start, self.end, temperature)
        except ValueError as error:  # a CRF the scores cannot be taken under
            raise files.ModelError(f"{directory / files.CRF}: {error}") from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Without its arena ONNX Runtime frees each run's tensors to malloc, so a
        # worker does not keep the peak of its largest request for good (serve.py
        # then hands the freed pages back to the system).
        options.enable_cpu_mem_arena = False
        self.chars_session, self.session = (
            ort.InferenceSession(str(directory / name), options, providers=["CPUExecutionProvider"])
            for name in (files.CHARS_ONNX, files.ONNX)
        )
        self.char_width = self.chars_session.get_outputs()[0].shape[-1]
        self._check_emission_width(directory)

    def _check_emission_width(self, directory: Path) -> None:
        """ModelError unless the network scores each word for every tag of the
        vocabulary (a width the export left open fails the warm-up instead)."""
        width = self.session.get_outputs()[0].shape[-1]
        if isinstance(width, int) and width != len(self.vocab.tags):
            raise files.ModelError(f"{directory / files.ONNX}: the network scores {width} tags a word, "
                                   f"but {files.VOCAB} has {len(self.vocab.tags)}")

    def words(self, sentences: list[list[str]]) -> Words:
        """The distinct words of the sentences, with their word and casing ids
        and character features (chars.onnx, in runs of words of near widths:
        width_groups)."""
        rows: dict[str, int] = {}
        for sentence in sentences:
            for word in sentence:
                rows.setdefault(word, len(rows) + 1)
        distinct = list(rows)
        vocab, unknown_word = self.vocab, self.vocab.word_index[UNK]
        word_ids = np.array([0, *(vocab.word_index.get(w.lower(), unknown_word) for w in distinct)], np.int32)
        casing_ids = np.array([0, *(vocab.casing_index[casing(w)] for w in distinct)], np.int32)
        features = np.zeros((len(rows) + 1, self.char_width), np.float32)
        index, unknown_char = vocab.char_index, vocab.char_index[UNK]
        for width, words in width_groups(distinct):
            char_ids = np.zeros((len(words), width), np.int32)  # 0 pads the narrower words
            for i, word in enumerate(words):
                char_ids[i, : len(word)] = [index.get(ch, unknown_char) for ch in word[:width]]
            (features[[rows[w] for w in words]],) = self.chars_session.run(None, {"char_ids": char_ids})
        return Words(rows, word_ids, casing_ids, features)

    def emissions(self, sentences: list[list[str]], words: Words | None = None) -> np.ndarray:
        """Emission scores [batch, words, tags] of one padded batch; `words`
        has its distinct words (words()) when they were taken for more
        sentences at once."""
        words = words or self.words(sentences)
        lengths = np.array([len(s) for s in sentences], np.int32)
        rows = np.zeros((len(sentences), max(int(lengths.max(initial=0)), 1)), np.int32)
        for i, sentence in enumerate(sentences):
            rows[i, : len(sentence)] = [words.rows[word] for word in sentence]
        (emissions,) = self.session.run(None, {
            "word_vectors": self.word_vectors[words.word_ids[rows]].astype(np.float32),
            "char_features": words.char_features[rows],
            "casing_ids": words.casing_ids[rows],
            "lengths": lengths,
        })
        return emissions

    def tag(self, sentences: list[list[str]]) -> list[list[str]]:
        words = self.words(sentences)
        paths = decode_in_batches(sentences, self.batch_size,
                                  lambda batch: self._decode([sentences[i] for i in batch], words))
        return [[self.vocab.tags[t] for t in path] for path in paths]

    def tag_scored(self, sentences: list[list[str]], scored_if: ScoredIf | None = None) -> list[ScoredTags]:
        """The tags, and the probability of each entity they hold
        (nerserve.tagger.marginals); with scored_if, of the sentences i whose
        tags it takes (scored_if(i, tags)) only, the others' scores left NaN."""
        words = self.words(sentences)
        return decode_in_batches(sentences, self.batch_size,
                                 lambda batch: self._decode_scored(batch, sentences, words, scored_if),
                                 ScoredTags.empty)

    def _decode(self, batch: list[list[str]], words: Words) -> list[list[int]]:
        return self.best_paths(self.emissions(batch, words), np.array([len(s) for s in batch]))

    def _decode_scored(self, indices: list[int], sentences: list[list[str]], words: Words,
                       scored_if: ScoredIf | None) -> list[ScoredTags]:
        batch = [sentences[i] for i in indices]
        emissions, lengths = self.emissions(batch, words), np.array([len(s) for s in batch])
        paths = self.best_paths(emissions, lengths)
        tags = [[self.vocab.tags[t] for t in path] for path in paths]
        scores = self.scorer.score(emissions, lengths, paths, rows=rows_to_score(indices, tags, scored_if))
        return [ScoredTags(t, s) for t, s in zip(tags, scores, strict=True)]

    def best_paths(self, emissions: np.ndarray, lengths: np.ndarray) -> list[list[int]]:
        """The Viterbi tag ids of each sentence, cut to its length."""
        paths = viterbi(emissions, lengths, self.transitions, self.start, self.end)
        return [path[:length].tolist() for path, length in zip(paths, lengths, strict=True)]
