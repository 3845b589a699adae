"""Over-long token sequences cut into overlapping windows, and the windows'
per-token outputs stitched back into one output a sequence.

A comma list of 5,000 items is one "sentence" to the segmenter; the network
was trained on sentences of at most ~120 tokens and its cost grows with the
longest sequence of a batch. So a sequence over MAX_TOKENS is tagged in windows
of at most MAX_TOKENS tokens. Each window keeps the tags of its middle only:
CONTEXT tokens on either side of a cut are seen by the window but tagged by its
neighbour, so an entity near a cut is read with its context
(BENCHMARKS.md, "Windowing long sentences", measures the cut on dev).
Sequences of MAX_TOKENS or fewer are one window, untouched.

Where two windows meet, the seam moves within their overlap to a token where
neither window is inside an entity (stitch_tagged), so that each entity, and
the score its window gave it, comes whole from one window.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from nerserve.tagger.marginals import ScoredTags

MAX_TOKENS = 256
CONTEXT = 16

T = TypeVar("T")


@dataclass(frozen=True)
class Window:
    sequence: int  # which input sequence
    start: int  # first token of the window in that sequence
    end: int  # one past its last token
    keep_start: int  # the tokens [keep_start, keep_end) take this window's outputs
    keep_end: int


def windows(lengths: Sequence[int], max_tokens: int = MAX_TOKENS, context: int = CONTEXT) -> list[Window]:
    """The windows of sequences of these lengths, in order. The kept parts of a
    sequence's windows cover it once; an empty sequence has no window."""
    if max_tokens <= 2 * context:
        raise ValueError("max_tokens must leave room for the context on both sides")
    result = []
    for sequence, length in enumerate(lengths):
        keep_start = 0
        while keep_start < length:
            start = max(0, keep_start - context)
            end = min(length, start + max_tokens)
            # The last window keeps its tail: nothing follows it to give context.
            keep_end = length if end == length else end - context
            result.append(Window(sequence, start, end, keep_start, keep_end))
            keep_start = keep_end
    return result


def cut(sequences: Sequence[Sequence[T]], parts: list[Window]) -> list[list[T]]:
    """The tokens of each window."""
    return [list(sequences[w.sequence][w.start : w.end]) for w in parts]


def stitch_tagged(parts: list[Window], tagged: Sequence[ScoredTags], count: int) -> list[ScoredTags]:
    """The windows' tags and entity scores put back together into one
    ScoredTags for each of `count` sequences, joining neighbours at seams()."""
    tags: list[list[str]] = [[] for _ in range(count)]
    scores: list[list[float]] = [[] for _ in range(count)]
    for window, piece, (keep_start, keep_end) in zip(parts, tagged, seams(parts, tagged), strict=True):
        piece_tags = list(piece.tags[keep_start - window.start : keep_end - window.start])
        piece_scores = list(piece.scores[keep_start - window.start : keep_end - window.start])
        if tags[window.sequence] and piece_tags and _inside(piece_tags[0]):
            _drop_leading_continuation(piece_tags, piece_scores)
        tags[window.sequence] += piece_tags
        scores[window.sequence] += piece_scores
    return [ScoredTags(t, np.array(s, dtype=float)) for t, s in zip(tags, scores, strict=True)]


def seams(parts: list[Window], tagged: Sequence[ScoredTags]) -> list[tuple[int, int]]:
    """The tokens [start, end) that each window's tags are kept for.

    Two neighbouring windows meet at the token of their overlap closest to the
    planned cut where neither window's tag is I-: what the left window keeps
    then ends with its own entities whole, and what the right one keeps starts
    with its own. Without such a token (one entity over the whole overlap,
    2 x CONTEXT tokens), they meet at the planned cut.
    """
    kept = [[w.keep_start, w.keep_end] for w in parts]
    for i in range(1, len(parts)):
        left, right = parts[i - 1], parts[i]
        if left.sequence != right.sequence:
            continue
        lowest = max(right.start, kept[i - 1][0] + 1)  # the left window keeps a token at least
        clean = [p for p in range(lowest, left.end)
                 if not _inside(tagged[i - 1].tags[p - left.start]) and not _inside(tagged[i].tags[p - right.start])]
        seam = min(clean, key=lambda p: abs(p - left.keep_end), default=max(lowest, left.keep_end))
        kept[i - 1][1] = kept[i][0] = seam
    return [(start, end) for start, end in kept]


def _inside(tag: str) -> bool:
    """Whether a token continues an entity (an I- tag)."""
    return tag.startswith("I-")


def _drop_leading_continuation(tags: list[str], scores: list[float]) -> None:
    """Only where no clean seam exists: the right window's part of an entity
    that it saw begin before the seam has no score of its own, so it is left out."""
    kind = tags[0]
    for i in range(len(tags)):
        if tags[i] != kind:
            break
        tags[i], scores[i] = "O", float("nan")
