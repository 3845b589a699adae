"""The BiLSTM-CRF tagger (Lample et al. 2016; Ma & Hovy 2016).

Each word is the concatenation of a frozen GloVe vector, a character CNN
max-pooled over the word, and a small casing embedding; a bidirectional LSTM
reads the sentence and a dense layer scores each tag (the emissions), which a
linear-chain CRF turns into the best tag sequence.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from nerserve.tagger.config import Config
from nerserve.tagger.training.crf import CRF, viterbi_decode
from nerserve.tagger.vocab import CASINGS

# A score no real activation reaches: padding characters never win the max-pool.
_NEG_INF = -1e9

# Signatures of the traced functions (training step, decoding, SavedModel):
# padded int32 ids of any batch size and length, so each traces once.
INPUT_SIGNATURE = [
    tf.TensorSpec([None, None], tf.int32, "word_ids"),
    tf.TensorSpec([None, None, None], tf.int32, "char_ids"),
    tf.TensorSpec([None, None], tf.int32, "casing_ids"),
]
LENGTHS_SPEC = tf.TensorSpec([None], tf.int32, "lengths")
TAGS_SPEC = tf.TensorSpec([None, None], tf.int32, "tag_ids")


def frozen_word_embedding(word_vectors: np.ndarray) -> keras.layers.Embedding:
    """The pretrained vectors as a layer that training leaves alone; the members
    of an ensemble share one."""
    num_words, word_dim = word_vectors.shape
    # float16 storage halves the artifact; the vectors are cast up on lookup.
    embedding = keras.layers.Embedding(num_words, word_dim, trainable=False, dtype="float16", name="word_embedding")
    embedding.build((None,))
    embedding.embeddings.assign(word_vectors.astype(np.float16))
    return embedding


class Tagger(keras.Model):
    def __init__(self, config: Config, word_embedding: keras.layers.Embedding, num_chars: int, num_tags: int):
        super().__init__()
        self.word_embedding = word_embedding
        self.char_embedding = keras.layers.Embedding(num_chars, config.char_dim, name="char_embedding")
        self.char_conv = keras.layers.Conv1D(
            config.char_filters, config.char_kernel, padding="same", activation="tanh", name="char_conv"
        )
        self.casing_embedding = keras.layers.Embedding(len(CASINGS), config.casing_dim, name="casing_embedding")
        self.dropout = keras.layers.Dropout(config.dropout)
        self.bilstm = keras.layers.Bidirectional(
            keras.layers.LSTM(config.lstm_units, return_sequences=True), name="bilstm"
        )
        self.emission = keras.layers.Dense(num_tags, name="emission")
        self.crf = CRF(num_tags, name="crf")

    def build(self, *input_shapes):
        # The sublayers build themselves on the first call.
        self.built = True

    def call(self, word_ids, char_ids, casing_ids, training=False):
        """Emission scores [batch, words, tags] for padded id arrays."""
        words = tf.cast(self.word_embedding(word_ids), tf.float32)
        chars = self.char_features(char_ids, training=training)
        casings = self.casing_embedding(casing_ids)
        features = self.dropout(tf.concat([words, chars, casings], axis=-1), training=training)
        hidden = self.bilstm(features, mask=word_ids > 0, training=training)
        return self.emission(self.dropout(hidden, training=training))

    def char_features(self, char_ids, training=False):
        """Max-pooled character CNN [batch, words, filters]; exactly 0 for padding
        words, and independent of how far the batch pads characters."""
        shape = tf.shape(char_ids)
        flat_ids = tf.reshape(char_ids, [-1, shape[2]])
        char_mask = flat_ids > 0
        embedded = self.char_embedding(flat_ids) * tf.cast(char_mask, tf.float32)[..., None]
        embedded = self.dropout(embedded, training=training)
        convolved = self.char_conv(embedded)
        pooled = tf.reduce_max(tf.where(char_mask[..., None], convolved, _NEG_INF), axis=1)
        pooled = tf.where(tf.reduce_any(char_mask, axis=1)[:, None], pooled, 0.0)
        return tf.reshape(pooled, [shape[0], shape[1], self.char_conv.filters])


class Ensemble:
    """Taggers trained alike from different seeds, as one tagger. A tag path
    scores the mean of the members' path scores: one CRF over the members'
    mean emissions and mean transitions (nerserve.tagger.training.ensemble)."""

    def __init__(self, members: list[Tagger]):
        self.members = members

    def __call__(self, word_ids, char_ids, casing_ids):
        """Mean emission scores [batch, words, tags]."""
        return self._mean([m(word_ids, char_ids, casing_ids) for m in self.members])

    def decode(self, emissions, lengths):
        """The best tag path of each sentence under the mean CRF scores."""
        return viterbi_decode(emissions, lengths, *self.mean_crf())

    def mean_crf(self):
        """The members' mean transition, start and end scores."""
        crfs = [m.crf for m in self.members]
        return (self._mean([c.transitions for c in crfs]), self._mean([c.start for c in crfs]),
                self._mean([c.end for c in crfs]))

    def _mean(self, tensors):
        return tf.add_n(tensors) / len(tensors)
