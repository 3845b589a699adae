"""The CRF's marginal log-likelihood (`train --keep-types`): the summed
probability of every tag path that keeps to the tags allowed, checked against
enumeration of every path."""

import itertools

import numpy as np
import pytest
import tensorflow as tf

from nerserve.tagger.training.crf import CRF

pytestmark = pytest.mark.tensorflow

TAGS = 3
LENGTHS = [4, 3, 1]


@pytest.fixture
def crf_and_emissions():
    tf.keras.utils.set_random_seed(0)
    crf = CRF(TAGS)
    emissions = tf.constant(np.random.default_rng(0).normal(size=(len(LENGTHS), max(LENGTHS), TAGS)), tf.float32)
    return crf, emissions, tf.constant(LENGTHS)


def test_with_one_tag_allowed_a_token_it_is_the_log_likelihood(crf_and_emissions):
    crf, emissions, lengths = crf_and_emissions
    tags = tf.constant([[0, 1, 2, 0], [2, 2, 1, 0], [1, 0, 0, 0]])
    np.testing.assert_allclose(crf.marginal_log_likelihood(emissions, tf.one_hot(tags, TAGS), lengths),
                               crf.log_likelihood(emissions, tags, lengths), atol=1e-5)


def test_it_sums_the_probability_of_every_allowed_path(crf_and_emissions):
    crf, emissions, lengths = crf_and_emissions
    allowed = np.random.default_rng(1).random((len(LENGTHS), max(LENGTHS), TAGS)) < 0.6
    allowed[..., 0] = True  # at least one tag a token
    expected = []
    for b, n in enumerate(LENGTHS):
        paths = [p for p in itertools.product(range(TAGS), repeat=n) if all(allowed[b, t, p[t]] for t in range(n))]
        padded = tf.constant([list(p) + [0] * (max(LENGTHS) - n) for p in paths])
        path_ll = crf.log_likelihood(tf.repeat(emissions[b:b + 1], len(paths), axis=0), padded,
                                     tf.fill([len(paths)], n))
        expected.append(tf.reduce_logsumexp(path_ll).numpy())
    got = crf.marginal_log_likelihood(emissions, tf.constant(allowed, tf.float32), lengths)
    np.testing.assert_allclose(got, expected, atol=1e-4)
