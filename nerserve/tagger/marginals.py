"""How sure the CRF is: forward-backward, tag marginals and entity probabilities, in numpy.

Numpy only, so the lean runtime and the TensorFlow backend share it. Shapes
as in nerserve.tagger.training.crf: emissions [batch, time, tags], lengths [batch] (each >= 1);
transitions[i, j] scores tag i followed by tag j. Everything stays in log
space; a probability is only taken at the very end.

An entity's score is the probability, over every tag path the CRF weighs,
that the path holds exactly this entity as conlleval reads it
(nerserve.tagger.tags.entity_spans): its first token B-X, or I-X after no X tag; I-X
on each later token; then no I-X (or the sentence ends).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from nerserve.tagger.tags import entity_spans, entity_types

# The largest range of transition scores the forward pass takes: one step may
# shrink a path's weight by exp(-range), and float64 ends near exp(-745).
MAX_SPREAD = 600.0

# (emissions, lengths) -> (alpha, beta, log_z), as ForwardBackward(transitions, start, end) gives
ForwardBackwardFunction = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]
# (a sentence's index among those tagged, its tags) -> whether its entities are scored (a tagger's tag_scored)
ScoredIf = Callable[[int, list[str]], bool]


@dataclass
class ScoredTags:
    """A sentence's tags, and per token the probability of the entity that
    starts there (NaN where none starts). Per token, so that pieces of a
    sentence tagged apart can be put back together like its tags."""

    tags: list[str]
    scores: np.ndarray  # [tokens]

    @classmethod
    def empty(cls) -> ScoredTags:
        return cls([], np.empty(0))


def logsumexp(x: np.ndarray, axis: int) -> np.ndarray:
    peak = x.max(axis=axis, keepdims=True)
    peak = np.where(np.isfinite(peak), peak, 0.0)
    return np.log(np.exp(x - peak).sum(axis=axis)) + np.squeeze(peak, axis)


def reversal(lengths: np.ndarray, time: int) -> tuple[np.ndarray, np.ndarray]:
    """The index that puts each sequence's first `length` steps in reverse
    order, padding left in place, as x[reversal(lengths, time)]; applied
    twice, it gives x back."""
    steps = np.arange(time)
    order = np.where(steps < lengths[:, None], lengths[:, None] - 1 - steps, steps)
    return np.arange(len(lengths))[:, None], order


class ForwardBackward:
    """Forward-backward under one CRF; what depends only on the CRF is
    computed once, as a short sentence's cost is mostly numpy's call overhead.

    The backward pass is the forward pass over each sentence reversed, with
    transposed transitions and the end scores as start (no padding mask
    needed). Both run in one loop, as one chain of twice the tags whose step
    matrix holds the two directions' transitions as diagonal blocks.

    A step is logsumexp_i(alpha[i] + transitions[i, j]) + emission[j], taken as
    a product of exponentials, shifted so that no factor exceeds 1; the vectors
    are rescaled only as often as float64 needs, and the logs of the shifts and
    scales are added back after the loop: the numbers of logsumexp, with two
    numpy calls a step.
    """

    def __init__(self, transitions: np.ndarray, start: np.ndarray, end: np.ndarray):
        transitions = np.asarray(transitions, np.float64)
        num_tags = len(transitions)
        directions = np.stack([transitions, transitions.T])
        self.shift = directions.max(axis=1)  # [2, tags]: each column's largest transition becomes exp(0)
        self.step = np.zeros((2 * num_tags, 2 * num_tags))
        for direction in range(2):
            block = slice(direction * num_tags, (direction + 1) * num_tags)
            self.step[block, block] = np.exp(directions[direction] - self.shift[direction][None])
        self.first = np.stack([start, end]).astype(np.float64)
        self.end = np.asarray(end, np.float64)
        # A step multiplies a vector's sum by at most num_tags and its largest
        # entry by at least exp(-spread): rescale before either could leave
        # float64's range (a trained CRF's spread is tens; EntityScorer refuses
        # one over MAX_SPREAD).
        # A one-tag CRF has no spread at all: 1 bounds the divisor away from 0.
        self.rescale_every = max(1, int(600 / max(np.ptp(transitions) + np.log(num_tags), 1.0)))

    def __call__(self, emissions: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """alpha and beta [batch, time, tags] and log Z [batch], in float64.

        alpha[b, t, j]: the log of the summed exp-scores of every path over
        tokens 0..t that ends in tag j, emission at t included. beta[b, t, j]:
        the same for every way to finish the sentence after token t, given tag
        j at t (the end score included). Rows past a sequence's length mean nothing.
        """
        emissions = np.asarray(emissions, np.float64)
        batch, time, num_tags = emissions.shape
        reverse = reversal(lengths, time)
        directions = np.stack([emissions, emissions[reverse]], axis=2)  # [batch, time, 2, tags]
        scores = directions + self.shift
        scores[:, 0] = directions[:, 0] + self.first
        scores = scores.transpose(1, 0, 2, 3)  # time first: each step one block
        peaks = scores.max(axis=3)
        weights = np.exp(scores - peaks[..., None]).reshape(time, batch, 2 * num_tags)
        log_scales = np.zeros_like(peaks)
        unnormalized = np.empty_like(weights)
        vector = unnormalized[0] = weights[0]
        for t in range(1, time):
            if t % self.rescale_every == 0:
                total = vector.reshape(batch, 2, num_tags).sum(axis=2)
                vector = (vector.reshape(batch, 2, num_tags) / total[..., None]).reshape(batch, 2 * num_tags)
                log_scales[t] = np.log(total)
            vector = np.multiply(vector @ self.step, weights[t], out=unnormalized[t])
        offsets = np.cumsum(peaks + log_scales, axis=0)
        with np.errstate(divide="ignore"):  # a path weight below 1e-308 is log 0 = -inf: fine
            both = np.log(unnormalized.reshape(time, batch, 2, num_tags)) + offsets[..., None]
        both = both.transpose(1, 0, 2, 3)
        alpha = both[:, :, 0]
        # The reversed pass gives beta + the emission, reversed.
        beta = both[:, :, 1][reverse] - emissions
        last = alpha[np.arange(batch), lengths - 1]
        return alpha, beta, logsumexp(last + self.end, axis=1)


def tag_marginals(alpha: np.ndarray, beta: np.ndarray, log_z: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """p(tag j at token t) [batch, time, tags]; 0 past each length."""
    inside = np.arange(alpha.shape[1])[None, :, None] < lengths[:, None, None]
    return np.exp(np.where(inside, alpha + beta - log_z[:, None, None], -np.inf))


def _logaddexp(a: float, b: float) -> float:
    if a == b == -math.inf:
        return -math.inf
    return max(a, b) + math.log1p(math.exp(-abs(a - b)))


def _log1mexp(x: float) -> float:
    """log(1 - exp(x)) for x <= 0; -inf at 0 (rounding above 0 counts as 0)."""
    share = math.exp(x)
    return math.log1p(-share) if share < 1.0 else -math.inf


def span_log_probability(alpha: np.ndarray, beta: np.ndarray, log_z: float, emissions: np.ndarray,
                         transitions: np.ndarray, length: int, first: int, stop: int, begin: int | None,
                         inside: int | None) -> float:
    """log p(exactly this entity) in one sentence: tokens first..stop-1, B-X
    tag id `begin`, I-X tag id `inside`; alpha, beta [time, tags], log Z and
    the emissions as ForwardBackward gives them for the sentence.

    A tag set may lack B-X or I-X (nerserve.tagger.tags.check_tag_set), given as None:
    without I-X an entity is one B-X token, and nothing continues it; without
    B-X an entity opens with I-X after no X tag, as conlleval reads it.

    The sums over a neighbour's tags come from alpha and beta themselves: the
    paths into I-X at the first token that come from no X tag are all of
    alpha's paths there less the share from B-X and I-X; the ways on after the
    last token without I-X are all of beta's ways less the share through I-X.
    1 - share is taken in log space (_log1mexp), exact to within float64's
    rounding of the probabilities. The start and end scores are in alpha and beta.
    Scalar Python: a request has a few entities a sentence, and each numpy
    call on so little costs more than the arithmetic.
    """
    # Without I-X the entity is one token: no inner tokens, and no I-X to stay in.
    stay = float(transitions[inside, inside]) if inside is not None else 0.0
    inner = sum(float(emissions[t, inside]) + stay for t in range(first + 1, stop))  # I-X after I-X

    def closing(last: int) -> float:
        """Any tag but I-X after the entity's last tag, or the sentence's end."""
        every_way = float(beta[stop - 1, last])
        if stop == length or inside is None:
            return every_way
        through_inside = float(transitions[last, inside] + emissions[stop, inside] + beta[stop, inside])
        return every_way + _log1mexp(through_inside - every_way)

    def opened_by_begin() -> float:
        """The entity opens with B-X."""
        if begin is None:
            return -math.inf
        single = stop - first == 1
        by_begin = float(alpha[first, begin]) + (0.0 if single else float(transitions[begin, inside] - stay))
        return by_begin + closing(begin if single else inside)

    def opened_by_inside() -> float:
        """The entity opens with I-X after no X tag (or at the sentence start)."""
        if inside is None:
            return -math.inf
        by_inside = float(alpha[first, inside])
        if first > 0:
            from_begin = -math.inf if begin is None else float(alpha[first - 1, begin] + transitions[begin, inside])
            from_x = _logaddexp(from_begin, float(alpha[first - 1, inside]) + stay)
            by_inside += _log1mexp(from_x + float(emissions[first, inside]) - float(alpha[first, inside]))
        return by_inside + closing(inside)

    return _logaddexp(opened_by_begin(), opened_by_inside()) + inner - log_z


class EntityScorer:
    """Scores the entities of decoded tag paths, under a CRF whose scores are
    divided by a temperature (nerserve.tagger.training.calibration; 1 leaves them as trained)."""

    def __init__(self, tags: list[str], transitions: np.ndarray, start: np.ndarray, end: np.ndarray,
                 temperature: float = 1.0):
        if np.ptp(transitions) / temperature > MAX_SPREAD:
            raise ValueError(f"transition scores spread over more than {MAX_SPREAD}: not a trained CRF")
        self.tags = tags
        self.temperature = temperature
        self.crf = tuple(np.asarray(a, np.float64) / temperature for a in (transitions, start, end))
        self.forward_backward = ForwardBackward(*self.crf)
        index = {tag: i for i, tag in enumerate(tags)}
        # Each type's B- and I- tag ids; None for one its tag set lacks (span_log_probability).
        self.tag_ids = {kind: (index.get("B-" + kind), index.get("I-" + kind)) for kind in entity_types(tags)}

    def score(self, emissions: np.ndarray, lengths: np.ndarray, paths: list[list[int]],
              forward_backward: ForwardBackwardFunction | None = None,
              rows: list[int] | None = None) -> list[np.ndarray]:
        """Per sentence, a [tokens] array: the probability of the entity that
        starts at each token, NaN where none starts (ScoredTags.scores).
        forward_backward: another implementation under this scorer's CRF
        (the TensorFlow backend's); by default, numpy's. rows: the sentences
        of the batch to score (by default all); forward-backward runs on those
        of them that hold an entity only, and the others' scores stay NaN."""
        lengths = np.asarray(lengths)
        scores = [np.full(length, np.nan) for length in lengths]
        spans = [(b, span) for b in (range(len(paths)) if rows is None else rows)
                 for span in entity_spans([self.tags[t] for t in paths[b]])]
        scored = sorted({b for b, _ in spans})
        if scored:
            emissions = np.asarray(emissions[scored], np.float64) / self.temperature
            alpha, beta, log_z = (forward_backward or self.forward_backward)(emissions, lengths[scored])
            row = {b: r for r, b in enumerate(scored)}
            for b, span in spans:
                r = row[b]
                log_probability = span_log_probability(alpha[r], beta[r], log_z[r], emissions[r], self.crf[0],
                                                       lengths[b], span.start, span.end, *self.tag_ids[span.type])
                scores[b][span.start] = min(math.exp(log_probability), 1.0)
        return scores


def rows_to_score(batch: list[int], tags: list[list[str]], scored_if: ScoredIf | None) -> list[int] | None:
    """The rows of a batch (the indices of its sentences, and their tags) whose
    entities scored_if asks to be scored; None (all) without scored_if."""
    if scored_if is None:
        return None
    return [row for row, (index, sentence_tags) in enumerate(zip(batch, tags, strict=True))
            if scored_if(index, sentence_tags)]
