"""model.windows: over-long sequences cut into overlapping windows and stitched back."""

from __future__ import annotations

import pytest

from model.windows import CONTEXT, MAX_TOKENS, cut, stitch, windows


@pytest.mark.parametrize("length", [0, 1, MAX_TOKENS, MAX_TOKENS + 1, 3 * MAX_TOKENS - 7, 10_000])
def test_kept_parts_cover_each_token_once_and_no_window_is_too_long(length):
    sequence = list(range(length))
    parts = windows([length])
    pieces = cut([sequence], parts)
    assert all(len(piece) <= MAX_TOKENS for piece in pieces)
    assert stitch(parts, pieces, 1) == [sequence]


def test_short_sequences_are_one_window_untouched():
    parts = windows([3, MAX_TOKENS, 1])
    assert [(w.sequence, w.start, w.end, w.keep_start, w.keep_end) for w in parts] == [
        (0, 0, 3, 0, 3), (1, 0, MAX_TOKENS, 0, MAX_TOKENS), (2, 0, 1, 0, 1)
    ]


def test_every_cut_has_context_on_both_sides():
    length = 5 * MAX_TOKENS
    for window in windows([length]):
        if window.keep_start > 0:
            assert window.keep_start - window.start == CONTEXT
        if window.keep_end < length:
            assert window.end - window.keep_end == CONTEXT


def test_outputs_are_stitched_back_to_their_own_sequences():
    sequences = [[f"a{i}" for i in range(700)], ["b"], [f"c{i}" for i in range(300)]]
    parts = windows([len(s) for s in sequences], max_tokens=100, context=10)
    outputs = [[token.upper() for token in piece] for piece in cut(sequences, parts)]
    assert stitch(parts, outputs, 3) == [[token.upper() for token in s] for s in sequences]


def test_the_context_must_leave_room_for_kept_tokens():
    with pytest.raises(ValueError):
        windows([10], max_tokens=8, context=4)
