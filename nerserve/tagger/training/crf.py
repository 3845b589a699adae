"""A linear-chain CRF in TensorFlow ops: log-likelihood and Viterbi decoding.

Shapes: emissions [batch, time, tags], tags [batch, time], lengths [batch].
Positions at or past a sequence's length are padding and never counted.
Every sequence must have length at least 1.
"""

from __future__ import annotations

import keras
import tensorflow as tf


class CRF(keras.layers.Layer):
    """Holds the transition scores: tag i followed by tag j scores transitions[i, j];
    start[j] and end[j] score a sequence that starts or ends with tag j."""

    def __init__(self, num_tags: int, **kwargs):
        super().__init__(**kwargs)
        self.num_tags = num_tags
        init = keras.initializers.RandomUniform(-0.1, 0.1)
        self.transitions = self.add_weight(shape=(num_tags, num_tags), initializer=init, name="transitions")
        self.start = self.add_weight(shape=(num_tags,), initializer=init, name="start")
        self.end = self.add_weight(shape=(num_tags,), initializer=init, name="end")

    def log_likelihood(self, emissions: tf.Tensor, tags: tf.Tensor, lengths: tf.Tensor) -> tf.Tensor:
        """log p(tags | emissions) for each sequence: [batch]."""
        return sequence_score(emissions, tags, lengths, self.transitions, self.start, self.end) - log_partition(
            emissions, lengths, self.transitions, self.start, self.end
        )


    def marginal_log_likelihood(self, emissions: tf.Tensor, allowed: tf.Tensor, lengths: tf.Tensor) -> tf.Tensor:
        """log of the summed probability of every tag path that keeps to
        `allowed` [batch, time, tags] (1 where a tag is allowed, 0 where not),
        for data whose labels leave some tags open: an O of a data set that
        never labelled a type may be that type (Greenberg et al., 2018,
        "Marginal likelihood training of BiLSTM-CRF for biomedical named entity
        recognition from disjoint label sets"). With one tag allowed a token it
        is log_likelihood. [batch]"""
        # A large finite penalty, not -inf: a disallowed tag then has a zero
        # gradient instead of a NaN one.
        constrained = emissions + (1.0 - allowed) * DISALLOWED
        return log_partition(constrained, lengths, self.transitions, self.start, self.end) - log_partition(
            emissions, lengths, self.transitions, self.start, self.end
        )


DISALLOWED = -1e4


def sequence_score(emissions, tags, lengths, transitions, start, end) -> tf.Tensor:
    """The unnormalized score of the given tag paths: [batch]."""
    time = tf.shape(emissions)[1]
    mask = tf.sequence_mask(lengths, time, dtype=emissions.dtype)
    emitted = tf.gather(emissions, tags, axis=2, batch_dims=2) * mask
    pairs = tf.stack([tags[:, :-1], tags[:, 1:]], axis=-1)
    transitioned = tf.gather_nd(transitions, pairs) * mask[:, 1:]
    last_tags = tf.gather(tags, lengths - 1, axis=1, batch_dims=1)
    return (
        tf.reduce_sum(emitted, axis=1)
        + tf.reduce_sum(transitioned, axis=1)
        + tf.gather(start, tags[:, 0])
        + tf.gather(end, last_tags)
    )


def log_partition(emissions, lengths, transitions, start, end) -> tf.Tensor:
    """log of the summed exp-scores of all tag paths (forward algorithm): [batch]."""
    time = tf.shape(emissions)[1]
    mask = tf.sequence_mask(lengths, time)
    steps = tf.transpose(emissions[:, 1:], [1, 0, 2])
    step_mask = tf.transpose(mask[:, 1:], [1, 0])

    def step(alpha, inputs):
        emission, valid = inputs
        scores = tf.reduce_logsumexp(alpha[:, :, None] + transitions[None], axis=1) + emission
        return tf.where(valid[:, None], scores, alpha)

    alpha = tf.foldl(step, (steps, step_mask), initializer=start[None] + emissions[:, 0])
    return tf.reduce_logsumexp(alpha + end[None], axis=1)


def viterbi_decode(emissions, lengths, transitions, start, end) -> tf.Tensor:
    """The highest-scoring tag path of each sequence: [batch, time] int32."""
    # One padding step at the end, cut off again below: the scans then never
    # run over zero steps, which a traced graph cannot stack (one-word batches).
    emissions = tf.pad(emissions, [[0, 0], [0, 1], [0, 0]])
    time = tf.shape(emissions)[1]
    mask = tf.sequence_mask(lengths, time)
    steps = tf.transpose(emissions[:, 1:], [1, 0, 2])
    step_mask = tf.transpose(mask[:, 1:], [1, 0])
    num_tags = tf.shape(emissions)[2]
    identity = tf.broadcast_to(tf.range(num_tags)[None], tf.shape(emissions[:, 0]))

    def step(carry, inputs):
        score, _ = carry
        emission, valid = inputs
        candidates = score[:, :, None] + transitions[None]
        best_previous = tf.argmax(candidates, axis=1, output_type=tf.int32)
        new_score = tf.reduce_max(candidates, axis=1) + emission
        # Past the end, carry the score and point each tag back to itself.
        return (
            tf.where(valid[:, None], new_score, score),
            tf.where(valid[:, None], best_previous, identity),
        )

    first = start[None] + emissions[:, 0]
    scores, backpointers = tf.scan(step, (steps, step_mask), initializer=(first, identity))
    final = tf.concat([first[None], scores], axis=0)[-1] + end[None]
    last_tag = tf.argmax(final, axis=1, output_type=tf.int32)

    def back(tag, pointers):
        return tf.gather(pointers, tag, axis=1, batch_dims=1)

    earlier = tf.scan(back, backpointers, initializer=last_tag, reverse=True)
    path = tf.concat([tf.transpose(earlier, [1, 0]), last_tag[:, None]], axis=1)
    return tf.where(mask, path, tf.zeros_like(path))[:, :-1]


def forward_backward(emissions, lengths, transitions, start, end) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """alpha and beta [batch, time, tags] and log Z [batch], as nerserve.tagger.marginals
    computes them in numpy (the reference of the lean runtime's scores)."""
    alpha = _forward(emissions, transitions, start)
    # The backward pass is the forward pass over each sentence reversed, with
    # transposed transitions and the end scores as start.
    reversed_emissions = tf.reverse_sequence(emissions, lengths, seq_axis=1, batch_axis=0)
    beta = tf.reverse_sequence(_forward(reversed_emissions, tf.transpose(transitions), end), lengths,
                               seq_axis=1, batch_axis=0) - emissions
    last = tf.gather(alpha, lengths - 1, axis=1, batch_dims=1)
    return alpha, beta, tf.reduce_logsumexp(last + end[None], axis=1)


def _forward(emissions, transitions, start) -> tf.Tensor:
    """alpha[b, t, j] of every step; past a sequence's length it means nothing."""
    # One padding step at the end, cut off again below, as in viterbi_decode.
    padded = tf.pad(emissions, [[0, 0], [0, 1], [0, 0]])

    def step(alpha, emission):
        return tf.reduce_logsumexp(alpha[:, :, None] + transitions[None], axis=1) + emission

    first = start[None] + padded[:, 0]
    later = tf.scan(step, tf.transpose(padded[:, 1:], [1, 0, 2]), initializer=first)
    return tf.transpose(tf.concat([first[None], later], axis=0), [1, 0, 2])[:, :-1]
