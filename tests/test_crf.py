"""The CRF's likelihood and both Viterbi decoders against brute-force enumeration."""

import itertools

import numpy as np
import pytest
import tensorflow as tf

from model.runtime import viterbi
from model.training.crf import log_partition, sequence_score, viterbi_decode

pytestmark = pytest.mark.tensorflow


NUM_TAGS = 3
LENGTHS = [1, 2, 4, 5]  # padded to 5: every sequence but the last has padding


def random_crf(seed: int):
    rng = np.random.default_rng(seed)
    emissions = rng.normal(size=(len(LENGTHS), max(LENGTHS), NUM_TAGS)).astype(np.float32)
    transitions, start, end = (rng.normal(size=s).astype(np.float32) for s in [(NUM_TAGS, NUM_TAGS), NUM_TAGS, NUM_TAGS])
    return emissions, np.array(LENGTHS, np.int32), transitions, start, end


def path_score(emission, path, transitions, start, end) -> float:
    score = start[path[0]] + end[path[-1]] + sum(emission[t, tag] for t, tag in enumerate(path))
    return score + sum(transitions[a, b] for a, b in itertools.pairwise(path))


def all_paths(length: int):
    return itertools.product(range(NUM_TAGS), repeat=length)


@pytest.mark.parametrize("seed", range(3))
def test_log_partition_sums_every_path(seed):
    emissions, lengths, transitions, start, end = random_crf(seed)
    got = log_partition(tf.constant(emissions), tf.constant(lengths), transitions, start, end).numpy()
    for b, length in enumerate(lengths):
        scores = [path_score(emissions[b], p, transitions, start, end) for p in all_paths(length)]
        assert got[b] == pytest.approx(np.logaddexp.reduce(scores), abs=1e-4)


@pytest.mark.parametrize("seed", range(3))
def test_sequence_score_ignores_padding(seed):
    emissions, lengths, transitions, start, end = random_crf(seed)
    rng = np.random.default_rng(seed + 100)
    tags = rng.integers(0, NUM_TAGS, size=emissions.shape[:2]).astype(np.int32)
    got = sequence_score(tf.constant(emissions), tf.constant(tags), tf.constant(lengths), transitions, start, end)
    for b, length in enumerate(lengths):
        expected = path_score(emissions[b], tags[b, :length], transitions, start, end)
        assert got.numpy()[b] == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("seed", range(3))
def test_both_viterbi_decoders_find_the_best_path(seed):
    emissions, lengths, transitions, start, end = random_crf(seed)
    tf_paths = viterbi_decode(tf.constant(emissions), tf.constant(lengths), transitions, start, end).numpy()
    np_paths = viterbi(emissions, lengths, transitions, start, end)
    for b, length in enumerate(lengths):
        best = max(all_paths(length), key=lambda p: path_score(emissions[b], p, transitions, start, end))
        assert tuple(tf_paths[b, :length]) == best
        assert tuple(np_paths[b, :length]) == best
        assert not tf_paths[b, length:].any() and not np_paths[b, length:].any()


def test_viterbi_on_a_single_word_batch():
    emissions, _, transitions, start, end = random_crf(7)
    one_word = emissions[:, :1]
    lengths = np.ones(len(LENGTHS), np.int32)
    expected = (one_word[:, 0] + start + end).argmax(axis=1)[:, None].tolist()
    traced = tf.function(viterbi_decode)  # as the TensorFlow backend runs it
    assert traced(tf.constant(one_word), tf.constant(lengths), transitions, start, end).numpy().tolist() == expected
    assert viterbi(one_word, lengths, transitions, start, end).tolist() == expected
