"""How sure the CRF is: forward-backward, tag marginals and entity probabilities, in numpy.

Numpy only, so the lean runtime and the TensorFlow backend share it. Shapes
as in model.training.crf: emissions [batch, time, tags], lengths [batch] (each >= 1);
transitions[i, j] scores tag i followed by tag j. Everything stays in log
space; a probability is only taken at the very end.

An entity's score is the probability, over every tag path the CRF weighs,
that the path holds exactly this entity as conlleval reads it
(model.tags.entity_spans): its first token B-X, or I-X after no X tag; I-X
on each later token; then no I-X (or the sentence ends).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from model.tags import entity_spans

# The largest range of transition scores the forward pass takes: one step may
# shrink a path's weight by exp(-range), and float64 ends near exp(-745).
MAX_SPREAD = 600.0

# forward_backward(emissions, lengths, transitions, start, end) -> (alpha, beta, log_z)
ForwardBackward = Callable[..., tuple[np.ndarray, np.ndarray, np.ndarray]]


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


def forward(emissions: np.ndarray, transitions: np.ndarray, start: np.ndarray) -> np.ndarray:
    """alpha[r, b, t, j]: log of the summed exp-scores of every path over tokens
    0..t that ends in tag j, emission at t included, for R CRFs at once:
    emissions [R, batch, time, tags], transitions [R, tags, tags], start [R, tags].
    Rows past a sequence's length are computed too and mean nothing (no mask: faster).

    One step is logsumexp_i(alpha[i] + transitions[i, j]) + emission[j]. It is
    taken as a product of exponentials, shifted so that no factor exceeds 1,
    and the vectors are rescaled only as often as float64 needs; the logs of
    the shifts and scales are added back after the loop. The same numbers as
    logsumexp, with two numpy calls a step (a short sentence is all call overhead).
    """
    num_tags = emissions.shape[-1]
    shift = transitions.max(axis=1)  # each column's largest transition becomes exp(0)
    exp_transitions = np.exp(transitions - shift[:, None])
    scores = np.moveaxis(emissions + shift[:, None, None], 2, 0)  # time first: each step one block
    scores[0] = emissions[:, :, 0] + start[:, None]
    peaks = scores.max(axis=3)
    weights = np.exp(scores - peaks[..., None])
    # A step multiplies a vector's sum by at most num_tags and its largest entry
    # by at least exp(-spread): rescale before either could leave float64's range
    # (a trained CRF's spread is tens; EntityScorer refuses one over MAX_SPREAD).
    spread = float((transitions.max(axis=(1, 2)) - transitions.min(axis=(1, 2))).max())
    rescale_every = max(1, int(600 / (spread + np.log(num_tags))))
    log_scales = np.zeros_like(peaks)
    unnormalized = np.empty_like(weights)
    vector = unnormalized[0] = weights[0]
    for t in range(1, len(weights)):
        if t % rescale_every == 0:
            total = vector.sum(axis=2, keepdims=True)
            vector = vector / total
            log_scales[t] = np.log(total[..., 0])
        vector = np.multiply(vector @ exp_transitions, weights[t], out=unnormalized[t])
    offsets = np.cumsum(peaks + log_scales, axis=0)
    with np.errstate(divide="ignore"):  # a path weight below 1e-308 is log 0 = -inf: fine
        return np.moveaxis(np.log(unnormalized) + offsets[..., None], 0, 2)


def reverse_each(x: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Each sequence's first `length` steps in reverse order; padding stays put."""
    steps = np.arange(x.shape[1])[None]
    order = np.where(steps < lengths[:, None], lengths[:, None] - 1 - steps, steps)
    return x[np.arange(len(x))[:, None], order]


def forward_backward(emissions: np.ndarray, lengths: np.ndarray, transitions: np.ndarray,
                     start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """alpha and beta [batch, time, tags] and log Z [batch], in float64.

    beta[b, t, j] is the log of the summed exp-scores of every way to finish
    the sentence after token t, given tag j at t (the end score included).
    The backward pass is the forward pass over each sentence reversed, with
    transposed transitions and the end scores as start (no padding mask
    needed), run in the same loop as the forward pass.
    """
    emissions = emissions.astype(np.float64)
    transitions, start, end = (np.asarray(a, np.float64) for a in (transitions, start, end))
    both = forward(np.stack([emissions, reverse_each(emissions, lengths)]),
                   np.stack([transitions, transitions.T]), np.stack([start, end]))
    alpha = both[0]
    # The reversed pass gives beta + the emission, reversed.
    beta = reverse_each(both[1], lengths) - emissions
    last = alpha[np.arange(len(alpha)), lengths - 1]
    return alpha, beta, logsumexp(last + end, axis=1)


def tag_marginals(alpha: np.ndarray, beta: np.ndarray, log_z: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """p(tag j at token t) [batch, time, tags]; 0 past each length."""
    inside = np.arange(alpha.shape[1])[None, :, None] < lengths[:, None, None]
    return np.exp(np.where(inside, alpha + beta - log_z[:, None, None], -np.inf))


def span_log_probabilities(alpha: np.ndarray, beta: np.ndarray, log_z: np.ndarray, emissions: np.ndarray,
                           lengths: np.ndarray, transitions: np.ndarray, start: np.ndarray, end: np.ndarray,
                           spans: np.ndarray) -> np.ndarray:
    """log p(exactly this entity) for each span row (sentence, first token, one
    past the last token, B-X tag id, I-X tag id): [spans]."""
    emissions = emissions.astype(np.float64)
    transitions, start, end = (np.asarray(a, np.float64) for a in (transitions, start, end))
    b, first, stop, begin, inside = spans.T
    rows = np.arange(len(spans))
    inner = stop - first - 1  # tokens after the first, all I-X
    cumulative = np.cumsum(emissions, axis=1)
    inner_scores = (cumulative[b, stop - 1, inside] - cumulative[b, first, inside]
                    + np.maximum(inner - 1, 0) * transitions[inside, inside])

    # The entity opens with B-X ...
    by_begin = alpha[b, first, begin] + np.where(inner > 0, transitions[begin, inside], 0.0)
    # ... or with I-X after no X tag (or at the sentence start).
    before = alpha[b, np.maximum(first - 1, 0)] + transitions[:, inside].T
    before[rows, begin] = before[rows, inside] = -np.inf
    entry = np.where(first > 0, logsumexp(before, axis=1), start[inside])
    by_inside = entry + emissions[b, first, inside] + np.where(inner > 0, transitions[inside, inside], 0.0)

    # Then any tag but I-X, or the sentence's end; the two openings at once.
    last = np.concatenate([np.where(inner > 0, inside, begin), inside])
    twice = np.concatenate([b, b])
    at = np.minimum(np.concatenate([stop, stop]), emissions.shape[1] - 1)
    after = transitions[last] + emissions[twice, at] + beta[twice, at]
    after[np.arange(len(twice)), np.concatenate([inside, inside])] = -np.inf
    ends = np.concatenate([stop, stop]) == lengths[twice]
    closing = np.where(ends, end[last], logsumexp(after, axis=1)).reshape(2, -1)
    opened = np.stack([by_begin, by_inside]) + closing
    return logsumexp(opened, axis=0) + inner_scores - log_z[b]


class EntityScorer:
    """Scores the entities of decoded tag paths, under a CRF whose scores are
    divided by a temperature (model.training.calibration; 1 leaves them as trained)."""

    def __init__(self, tags: list[str], transitions: np.ndarray, start: np.ndarray, end: np.ndarray,
                 temperature: float = 1.0):
        if np.ptp(transitions) / temperature > MAX_SPREAD:
            raise ValueError(f"transition scores spread over more than {MAX_SPREAD}: not a trained CRF")
        self.tags = tags
        self.temperature = temperature
        self.crf = tuple(np.asarray(a, np.float64) / temperature for a in (transitions, start, end))
        index = {tag: i for i, tag in enumerate(tags)}
        # Types with both tags; a toy model's tag set may lack one (its entities get no score).
        self.tag_ids = {tag[2:]: (index[tag], index["I-" + tag[2:]])
                        for tag in tags if tag.startswith("B-") and "I-" + tag[2:] in index}

    def score(self, emissions: np.ndarray, lengths: np.ndarray, paths: list[list[int]],
              forward_backward: ForwardBackward = forward_backward) -> list[np.ndarray]:
        """Per sentence, a [tokens] array: the probability of the entity that
        starts at each token, NaN where none starts (ScoredTags.scores)."""
        scores = [np.full(length, np.nan) for length in lengths]
        spans = np.array([(b, s.start, s.end, *self.tag_ids[s.type])
                          for b, path in enumerate(paths)
                          for s in entity_spans([self.tags[t] for t in path]) if s.type in self.tag_ids],
                         dtype=np.int64).reshape(-1, 5)
        if len(spans):
            emissions = emissions / self.temperature
            alpha, beta, log_z = forward_backward(emissions, lengths, *self.crf)
            probabilities = np.exp(span_log_probabilities(alpha, beta, log_z, emissions, lengths, *self.crf, spans))
            for (b, first, *_), probability in zip(spans, probabilities, strict=True):
                scores[b][first] = min(probability, 1.0)
        return scores
