"""The trained model on disk, and the TensorFlow tagger that loads it.

A model directory holds:
  config.json        hyperparameters (model.config.Config)
  vocab.json         words, characters and tags
  word_vectors.npy   the frozen word vectors, float16
  weights.npz        every other weight, by Keras variable path
The lean runtime (model.runtime) reads the same files plus tagger.onnx.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import tensorflow as tf

from model.config import Config
from model.network import INPUT_SIGNATURE, LENGTHS_SPEC, Tagger
from model.vocab import Vocab, decode_in_batches

CONFIG, VOCAB, WORD_VECTORS, WEIGHTS = "config.json", "vocab.json", "word_vectors.npy", "weights.npz"


def build_tagger(config: Config, vocab: Vocab, word_vectors: np.ndarray) -> Tagger:
    tagger = Tagger(config, word_vectors, len(vocab.chars), len(vocab.tags))
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


def save(tagger: Tagger, vocab: Vocab, config: Config, directory: Path) -> None:
    """Save with the tuned offsets folded into the word vectors (and zeroed in
    the weights), so that every consumer reads one vector a word."""
    directory.mkdir(parents=True, exist_ok=True)
    config.save(directory / CONFIG)
    vocab.save(directory / VOCAB)
    vectors = tagger.word_embedding.embeddings.numpy().astype(np.float32)
    offsets = tagger.word_tuning.embeddings.numpy()
    vectors[: tagger.tuned_words] += offsets[: tagger.tuned_words]
    np.save(directory / WORD_VECTORS, vectors.astype(np.float16))
    weights = trained_weights(tagger)
    weights["word_tuning/embeddings"] = np.zeros_like(offsets)
    np.savez(directory / WEIGHTS, **weights)


def load(directory: Path) -> tuple[Tagger, Vocab, Config]:
    config = Config.load(directory / CONFIG)
    vocab = Vocab.load(directory / VOCAB)
    tagger = build_tagger(config, vocab, np.load(directory / WORD_VECTORS))
    with np.load(directory / WEIGHTS) as weights:
        set_weights(tagger, dict(weights))
    return tagger, vocab, config


class TensorFlowTagger:
    """Tags tokenized sentences with the Keras network and the TensorFlow CRF."""

    def __init__(self, directory: Path, batch_size: int = 128):
        self.tagger, self.vocab, self.config = load(Path(directory))
        self.batch_size = batch_size
        self._decode_ids = tf.function(self._decode_ids, input_signature=[*INPUT_SIGNATURE, LENGTHS_SPEC])

    def _decode_ids(self, word_ids, char_ids, casing_ids, lengths):
        emissions = self.tagger(word_ids, char_ids, casing_ids)
        return self.tagger.crf.decode(emissions, lengths)

    def emissions(self, sentences: list[list[str]]) -> np.ndarray:
        batch = self.vocab.encode(sentences)
        return self.tagger(batch.word_ids, batch.char_ids, batch.casing_ids).numpy()

    def tag(self, sentences: list[list[str]]) -> list[list[str]]:
        paths = decode_in_batches(sentences, self.batch_size, self._decode)
        return [[self.vocab.tags[t] for t in path] for path in paths]

    def _decode(self, sentences: list[list[str]]) -> list[list[int]]:
        batch = self.vocab.encode(sentences)
        paths = self._decode_ids(batch.word_ids, batch.char_ids, batch.casing_ids, batch.lengths).numpy()
        return [path[:length].tolist() for path, length in zip(paths, batch.lengths, strict=True)]
