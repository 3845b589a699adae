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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

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


def stitch(parts: list[Window], outputs: Sequence[Sequence[T]], count: int) -> list[list[T]]:
    """Per-token outputs of the windows (tags, scores) put back together: the
    output of each of `count` sequences, from the kept part of each of its windows."""
    stitched: list[list[T]] = [[] for _ in range(count)]
    for window, output in zip(parts, outputs, strict=True):
        offset = window.start
        stitched[window.sequence].extend(output[window.keep_start - offset : window.keep_end - offset])
    return stitched
