"""nerserve.tagger.windows: over-long sequences cut into overlapping windows, and their
tags and scores stitched back at seams where no entity is cut."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nerserve.tagger.marginals import ScoredTags
from nerserve.tagger.tags import entity_spans
from nerserve.tagger.windows import CONTEXT, MAX_TOKENS, cut, stitch_tagged, windows


def echo(pieces: list[list[str]]) -> list[ScoredTags]:
    """Windows that tag each token as its own text says, with a score where
    the window reads an entity as starting."""
    tagged = []
    for piece in pieces:
        scores = np.full(len(piece), math.nan)
        scores[[span.start for span in entity_spans(piece)]] = 0.5
        tagged.append(ScoredTags(list(piece), scores))
    return tagged


@pytest.mark.parametrize("length", [0, 1, MAX_TOKENS, MAX_TOKENS + 1, 3 * MAX_TOKENS - 7, 10_000])
def test_kept_parts_cover_each_token_once_and_no_window_is_too_long(length):
    sequence = ["O"] * length
    parts = windows([length])
    pieces = cut([sequence], parts)
    assert all(len(piece) <= MAX_TOKENS for piece in pieces)
    assert [t.tags for t in stitch_tagged(parts, echo(pieces), 1)] == [sequence]


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
    sequences = [["B-LOC", "I-LOC", "O"] * 233, ["B-PER"], ["O", "B-ORG"] * 150]
    parts = windows([len(s) for s in sequences], max_tokens=100, context=10)
    stitched = stitch_tagged(parts, echo(cut(sequences, parts)), 3)
    assert [t.tags for t in stitched] == sequences


def test_the_seam_moves_off_an_entity_that_the_windows_see_differently():
    # "new york" across the planned cut: the left window tags "new" O and
    # "york" I-LOC, the right one sees "new york" whole. Taken at the planned
    # cut, the result would hold an entity "york" that no window scored.
    sequence = ["x"] * 30
    parts = windows([30], max_tokens=20, context=4)
    left, right = parts[0], parts[1]
    cut_at = left.keep_end
    left_tags = ["O"] * (left.end - left.start)
    left_tags[cut_at - left.start] = "I-LOC"
    right_tags = ["O"] * (right.end - right.start)
    right_tags[cut_at - 1 - right.start], right_tags[cut_at - right.start] = "B-LOC", "I-LOC"
    tagged = [ScoredTags(left_tags, np.full(len(left_tags), math.nan)),
              ScoredTags(right_tags, np.where(np.array(right_tags) == "B-LOC", 0.9, math.nan))]
    tagged += echo(cut([sequence], parts)[2:])
    (stitched,) = stitch_tagged(parts, tagged, 1)
    (span,) = entity_spans(stitched.tags)
    assert (span.start, span.end) == (cut_at - 1, cut_at + 1)
    assert stitched.scores[span.start] == 0.9


@given(st.lists(st.sampled_from(["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]), min_size=1, max_size=400),
       st.integers(9, 60), st.integers(0, 4))
def test_every_stitched_entity_has_a_score_from_its_window(tags, max_tokens, context):
    # Windows that each tag their tokens as the sequence says, whatever tags
    # they see: every entity of the result must start where a window scored one.
    parts = windows([len(tags)], max_tokens=max_tokens, context=context)
    (stitched,) = stitch_tagged(parts, echo(cut([tags], parts)), 1)
    assert len(stitched.tags) == len(tags)
    for span in entity_spans(stitched.tags):
        assert 0 <= stitched.scores[span.start] <= 1


def test_the_context_must_leave_room_for_kept_tokens():
    with pytest.raises(ValueError):
        windows([10], max_tokens=8, context=4)
