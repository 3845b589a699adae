"""Forward-backward, tag marginals and entity probabilities against brute-force
enumeration of every tag path on small random CRFs, in numpy (TensorFlow's
forward-backward is checked against this one in test_crf.py)."""

import itertools

import numpy as np
import pytest

from nerserve.tagger.marginals import EntityScorer, ForwardBackward, span_log_probability, tag_marginals
from nerserve.tagger.tags import entity_spans

TAGS = ["O", "B-A", "I-A", "B-B", "I-B"]
# Any IOB2 tag set training accepts: a type may lack its I- tag (every entity
# one word) or its B- tag (conlleval opens an entity at an I- after no such
# type), in any order, of any size, with or without O.
TAG_SETS = {
    "both tags": TAGS,
    "no I-A": ["O", "B-A", "B-B", "I-B"],
    "no B-A": ["O", "I-A", "B-B", "I-B"],
    "no I-A, shuffled": ["I-B", "B-A", "O", "B-B"],
    "O and B-A": ["O", "B-A"],
    "no O": ["B-A", "I-B"],
    "one tag": ["B-A"],  # a CRF without any spread
}
LENGTHS = np.array([1, 2, 4, 5])  # padded to 5: every sequence but the last has padding


def random_crf(seed: int, scale: float = 1.0, tags: list[str] = TAGS):
    rng = np.random.default_rng(seed)
    num_tags = len(tags)
    emissions = scale * rng.normal(size=(len(LENGTHS), LENGTHS.max(), num_tags))
    transitions, start, end = (scale * rng.normal(size=s) for s in [(num_tags, num_tags), num_tags, num_tags])
    return emissions, transitions, start, end


def path_probabilities(emission, length, transitions, start, end) -> dict[tuple, float]:
    """p(path) of every tag path of the sentence, by enumeration."""
    scores = {}
    for path in itertools.product(range(len(transitions)), repeat=length):
        score = start[path[0]] + end[path[-1]] + sum(emission[t, tag] for t, tag in enumerate(path))
        scores[path] = score + sum(transitions[a, b] for a, b in itertools.pairwise(path))
    log_z = np.logaddexp.reduce(list(scores.values()))
    return {path: np.exp(score - log_z) for path, score in scores.items()}


def entity_probabilities(paths: dict[tuple, float], tags: list[str] = TAGS) -> dict[tuple, float]:
    """p(entity) for every (first, stop, type) some path holds, as conlleval reads paths."""
    totals: dict[tuple, float] = {}
    for path, probability in paths.items():
        for span in entity_spans([tags[t] for t in path]):
            key = (span.start, span.end, span.type)
            totals[key] = totals.get(key, 0.0) + probability
    return totals


@pytest.mark.parametrize("seed", range(3))
def test_tag_marginals_are_the_summed_path_probabilities(seed):
    emissions, transitions, start, end = random_crf(seed)
    alpha, beta, log_z = ForwardBackward(transitions, start, end)(emissions, LENGTHS)
    marginals = tag_marginals(alpha, beta, log_z, LENGTHS)
    for b, length in enumerate(LENGTHS):
        expected = np.zeros((LENGTHS.max(), len(TAGS)))
        for path, probability in path_probabilities(emissions[b], length, transitions, start, end).items():
            expected[np.arange(length), path] += probability
        np.testing.assert_allclose(marginals[b], expected, atol=1e-12)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("scale", [10.0, 60.0])  # peaked, as a trained CRF is; 60: rescaled at every step
def test_each_tokens_marginals_sum_to_one(seed, scale):
    emissions, transitions, start, end = random_crf(seed, scale)
    marginals = tag_marginals(*ForwardBackward(transitions, start, end)(emissions, LENGTHS), LENGTHS)
    inside = np.arange(LENGTHS.max())[None] < LENGTHS[:, None]
    np.testing.assert_allclose(marginals.sum(axis=2), inside.astype(float), atol=1e-12)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("scale", [1.0, 60.0])  # 60: the forward pass rescales at every step
@pytest.mark.parametrize("tags", TAG_SETS.values(), ids=TAG_SETS.keys())
def test_every_entity_probability_against_enumeration(seed, scale, tags):
    emissions, transitions, start, end = random_crf(seed, scale, tags)
    alpha, beta, log_z = ForwardBackward(transitions, start, end)(emissions, LENGTHS)
    index = {tag: i for i, tag in enumerate(tags)}
    for b, length in enumerate(LENGTHS):
        expected = entity_probabilities(path_probabilities(emissions[b], length, transitions, start, end), tags)
        got = [np.exp(span_log_probability(alpha[b], beta[b], log_z[b], emissions[b], transitions, length,
                                           first, stop, index.get("B-" + kind), index.get("I-" + kind)))
               for first, stop, kind in expected]
        np.testing.assert_allclose(got, list(expected.values()), atol=1e-12)


@pytest.mark.parametrize("temperature", [1.0, 2.5])
@pytest.mark.parametrize("tags", TAG_SETS.values(), ids=TAG_SETS.keys())
def test_the_scorer_scores_the_decoded_entities_at_its_temperature(temperature, tags):
    emissions, transitions, start, end = random_crf(11, tags=tags)
    rng = np.random.default_rng(12)
    paths = [rng.integers(0, len(tags), size=length).tolist() for length in LENGTHS]
    scores = EntityScorer(tags, transitions, start, end, temperature).score(emissions, LENGTHS, paths)
    for b, length in enumerate(LENGTHS):
        expected = entity_probabilities(path_probabilities(
            emissions[b] / temperature, length, transitions / temperature, start / temperature, end / temperature),
            tags)
        want = np.full(length, np.nan)
        for span in entity_spans([tags[t] for t in paths[b]]):
            want[span.start] = expected[span.start, span.end, span.type]
        np.testing.assert_allclose(scores[b], want, atol=1e-12)
