"""The CRF's likelihood and both Viterbi decoders against brute-force enumeration;
TensorFlow's forward-backward against numpy's (nerserve.tagger.marginals)."""

import itertools

import numpy as np
import pytest
import tensorflow as tf

from nerserve.tagger import marginals
from nerserve.tagger.runtime import viterbi
from nerserve.tagger.training.crf import forward_backward, log_partition, sequence_score, viterbi_decode

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


@pytest.mark.parametrize("seed", range(3))
def test_viterbi_finds_the_best_path_when_no_sequence_is_padded(seed):
    emissions, _, transitions, start, end = random_crf(seed)
    lengths = np.full(len(LENGTHS), max(LENGTHS), np.int32)  # a single sentence, or sentences of one length
    paths = viterbi(emissions, lengths, transitions, start, end)
    for b in range(len(lengths)):
        best = max(all_paths(max(LENGTHS)), key=lambda p: path_score(emissions[b], p, transitions, start, end))
        assert tuple(paths[b]) == best


def test_viterbi_on_a_single_word_batch():
    emissions, _, transitions, start, end = random_crf(7)
    one_word = emissions[:, :1]
    lengths = np.ones(len(LENGTHS), np.int32)
    expected = (one_word[:, 0] + start + end).argmax(axis=1)[:, None].tolist()
    traced = tf.function(viterbi_decode)  # as the TensorFlow backend runs it
    assert traced(tf.constant(one_word), tf.constant(lengths), transitions, start, end).numpy().tolist() == expected
    assert viterbi(one_word, lengths, transitions, start, end).tolist() == expected


def random_crf64(seed: int):
    """As random_crf, peaked as a trained CRF is, in float64 as the scores are taken."""
    emissions, lengths, *crf = random_crf(seed)
    return (5.0 * np.float64(emissions), lengths, *(5.0 * np.float64(a) for a in crf))


@pytest.mark.parametrize("seed", range(3))
def test_tensorflow_forward_backward_matches_numpy(seed):
    emissions, lengths, transitions, start, end = random_crf64(seed)
    numpy_result = marginals.ForwardBackward(transitions, start, end)(emissions, lengths)
    traced = tf.function(forward_backward)  # as the TensorFlow backend runs it
    tensorflow_result = traced(tf.constant(emissions), tf.constant(lengths), transitions, start, end)
    inside = np.arange(lengths.max())[None] < lengths[:, None]
    for got, want in zip(tensorflow_result[:2], numpy_result[:2], strict=True):
        np.testing.assert_allclose(got.numpy()[inside], want[inside], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(tensorflow_result[2].numpy(), numpy_result[2], rtol=1e-9)


def test_tensorflow_forward_backward_on_a_single_word_batch():
    emissions, lengths, transitions, start, end = random_crf64(7)
    one_word, ones = emissions[:, :1], np.ones_like(lengths)
    _, beta, log_z = tf.function(forward_backward)(tf.constant(one_word), tf.constant(ones), transitions, start, end)
    np.testing.assert_allclose(beta.numpy()[:, 0], np.broadcast_to(end, (len(lengths), NUM_TAGS)))
    np.testing.assert_allclose(log_z.numpy(), np.logaddexp.reduce(one_word[:, 0] + start + end, axis=1))
