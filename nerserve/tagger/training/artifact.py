"""Keras networks to and from a model directory (laid out in nerserve.tagger.files), and
the TensorFlow tagger that loads one: the reference the lean runtime is checked
against."""

from __future__ import annotations

import re
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from nerserve.tagger import files
from nerserve.tagger.config import Config
from nerserve.tagger.marginals import EntityScorer, ScoredIf, ScoredTags, rows_to_score
from nerserve.tagger.training import crf
from nerserve.tagger.training.network import (
    INPUT_SIGNATURE,
    LENGTHS_SPEC,
    Ensemble,
    Tagger,
    frozen_word_embedding,
)
from nerserve.tagger.vocab import BATCH_SIZE, Vocab, decode_in_batches


def build_tagger(config: Config, vocab: Vocab, word_embedding: keras.layers.Embedding) -> Tagger:
    tagger = Tagger(config, word_embedding, len(vocab.chars), len(vocab.tags))
    batch = vocab.encode([["Build", "."]])
    tagger(batch.word_ids, batch.char_ids, batch.casing_ids)  # creates the variables
    return tagger


def _key(variable) -> str:
    """The variable's path inside the tagger ("bilstm/forward_lstm/.../kernel").
    Keras numbers layer names ("tagger_1", "forward_lstm_1") by how many were
    built before in the process; the numbers are dropped."""
    return re.sub(r"_\d+(?=/|$)", "", variable.path).split("/", 1)[1]


def trained_weights(tagger: Tagger) -> dict[str, np.ndarray]:
    return {_key(v): v.numpy() for v in tagger.weights if v is not tagger.word_embedding.embeddings}


def set_weights(tagger: Tagger, weights: dict[str, np.ndarray]) -> None:
    for variable in tagger.weights:
        if variable is not tagger.word_embedding.embeddings:
            variable.assign(weights[_key(variable)])


def save(members: list[Tagger], vocab: Vocab, config: Config, directory: Path) -> None:
    """The members share the frozen word vectors: they are stored once."""
    directory.mkdir(parents=True, exist_ok=True)
    config.save(directory / files.CONFIG)
    vocab.save(directory / files.VOCAB)
    np.save(directory / files.WORD_VECTORS, members[0].word_embedding.embeddings.numpy())
    files.write_weights(directory, [trained_weights(m) for m in members])


def load(directory: Path) -> tuple[list[Tagger], Vocab, Config]:
    """The member networks, the vocabulary and the configuration."""
    config = Config.load(directory / files.CONFIG)
    vocab = Vocab.load(directory / files.VOCAB)
    word_embedding = frozen_word_embedding(np.load(directory / files.WORD_VECTORS))
    members = []
    # Variables the network no longer has (the word-tuning layer of earlier
    # models, all zeros) are left in the file and not read.
    for weights in files.read_weights(directory):
        tagger = build_tagger(config, vocab, word_embedding)
        set_weights(tagger, weights)
        members.append(tagger)
    return members, vocab, config


class TensorFlowTagger:
    """Tags tokenized sentences with the Keras network and the TensorFlow CRF."""

    def __init__(self, directory: Path, batch_size: int = BATCH_SIZE):
        members, self.vocab, self.config = load(Path(directory))
        self.tagger = Ensemble(members)
        self.batch_size = batch_size
        self._decode_ids = tf.function(self._decode_ids, input_signature=[*INPUT_SIGNATURE, LENGTHS_SPEC])
        self._emissions_and_paths = tf.function(self._emissions_and_paths,
                                                input_signature=[*INPUT_SIGNATURE, LENGTHS_SPEC])
        transitions, start, end = (t.numpy() for t in self.tagger.mean_crf())
        self.scorer = EntityScorer(self.vocab.tags, transitions, start, end, files.temperature(Path(directory)))

    def _decode_ids(self, word_ids, char_ids, casing_ids, lengths):
        emissions = self.tagger(word_ids, char_ids, casing_ids)
        return self.tagger.decode(emissions, lengths)

    def _emissions_and_paths(self, word_ids, char_ids, casing_ids, lengths):
        emissions = self.tagger(word_ids, char_ids, casing_ids)
        return emissions, self.tagger.decode(emissions, lengths)

    def emissions(self, sentences: list[list[str]]) -> np.ndarray:
        batch = self.vocab.encode(sentences)
        return self.tagger(batch.word_ids, batch.char_ids, batch.casing_ids).numpy()

    def tag(self, sentences: list[list[str]]) -> list[list[str]]:
        paths = decode_in_batches(sentences, self.batch_size, lambda batch: self._decode([sentences[i] for i in batch]))
        return [[self.vocab.tags[t] for t in path] for path in paths]

    def tag_scored(self, sentences: list[list[str]], scored_if: ScoredIf | None = None) -> list[ScoredTags]:
        """The tags, and each entity's probability from TensorFlow's forward-backward;
        scored_if as the lean runtime's (nerserve.tagger.runtime.OnnxTagger.tag_scored)."""
        return decode_in_batches(sentences, self.batch_size,
                                 lambda batch: self._decode_scored(batch, sentences, scored_if), ScoredTags.empty)

    def _decode_scored(self, indices: list[int], sentences: list[list[str]],
                       scored_if: ScoredIf | None) -> list[ScoredTags]:
        batch = self.vocab.encode([sentences[i] for i in indices])
        emissions, paths = self._emissions_and_paths(batch.word_ids, batch.char_ids, batch.casing_ids, batch.lengths)
        paths = [path[:length].tolist() for path, length in zip(paths.numpy(), batch.lengths, strict=True)]
        tags = [[self.vocab.tags[t] for t in path] for path in paths]
        scores = self.scorer.score(emissions.numpy(), batch.lengths, paths,
                                   lambda e, lengths: _tensorflow_forward_backward(e, lengths, *self.scorer.crf),
                                   rows=rows_to_score(indices, tags, scored_if))
        return [ScoredTags(t, s) for t, s in zip(tags, scores, strict=True)]

    def _decode(self, sentences: list[list[str]]) -> list[list[int]]:
        batch = self.vocab.encode(sentences)
        paths = self._decode_ids(batch.word_ids, batch.char_ids, batch.casing_ids, batch.lengths).numpy()
        return [path[:length].tolist() for path, length in zip(paths, batch.lengths, strict=True)]


@tf.function(reduce_retracing=True)
def _traced_forward_backward(emissions, lengths, transitions, start, end):
    return crf.forward_backward(emissions, lengths, transitions, start, end)


def _tensorflow_forward_backward(emissions: np.ndarray, lengths: np.ndarray, transitions: np.ndarray,
                                 start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, ...]:
    """nerserve.tagger.training.crf.forward_backward in float64, as nerserve.tagger.marginals.ForwardBackward gives it."""
    tensors = [tf.constant(np.asarray(a, np.float64)) for a in (emissions, transitions, start, end)]
    alpha, beta, log_z = _traced_forward_backward(tensors[0], tf.constant(lengths, tf.int32), *tensors[1:])
    return alpha.numpy(), beta.numpy(), log_z.numpy()
