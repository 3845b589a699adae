"""The lean runtime's distinct words: grouped into chars.onnx runs, and the
features they get, whatever the run (the real committed model)."""

import numpy as np
import pytest

from nerserve.tagger import files
from nerserve.tagger.runtime import MAX_RUN_CELLS, RUN_COST_CELLS, OnnxTagger, width_groups
from nerserve.tagger.training.data import DEFAULT_DATA_DIR, read_conll
from nerserve.tagger.vocab import MAX_WORD_CHARS

SENTENCE = ["Angela", "Merkel", "met", "the", "Anglo-Dutch", "consortium's", "chief", "executive", "in",
            "Strasbourg", "on", "Tuesday"]


@pytest.fixture(scope="module")
def tagger() -> OnnxTagger:
    return OnnxTagger(files.COMMITTED_MODEL_DIR)


@pytest.fixture(scope="module")
def dev_words() -> list[str]:
    return list(dict.fromkeys(w for s in read_conll(DEFAULT_DATA_DIR / "valid.txt") for w in s.words))


def test_every_word_runs_once_in_a_run_as_wide_as_it(dev_words):
    runs = width_groups([*dev_words, "x" * 100])
    assert sorted(w for _, words in runs for w in words) == sorted([*dev_words, "x" * 100])
    assert all(min(len(w), MAX_WORD_CHARS) <= width for width, words in runs for w in words)
    assert all(len(words) * width <= MAX_RUN_CELLS for width, words in runs)


def test_the_words_of_a_short_text_share_one_run():
    # Padding 13 words to the widest costs less than another run would.
    assert sum(len(w) for w in SENTENCE) < 13 * 14 and len(width_groups(SENTENCE)) == 1


def test_a_run_takes_the_next_width_while_padding_costs_less_than_a_run():
    narrow = [f"{i:02d}" for i in range(RUN_COST_CELLS)]  # 40 words of 2 characters
    assert [width for width, _ in width_groups([*narrow, "abc"])] == [3]  # 40 cells of padding
    assert [width for width, _ in width_groups([*narrow, "x", "abc"])] == [2, 3]  # 41 would cost more


@pytest.mark.parametrize("sentence", [SENTENCE, "dev"])
def test_a_words_features_do_not_depend_on_its_run(tagger, dev_words, sentence):
    """Alone, a word runs at its own width; in SENTENCE, padded to the widest;
    among 3,000 dev words, in runs of hundreds."""
    sentence = dev_words[:3000] if sentence == "dev" else sentence
    together = tagger.words([sentence])
    for word in sorted(sentence, key=len)[:: max(len(sentence) // 10, 1)]:
        alone = tagger.words([[word]])
        np.testing.assert_allclose(alone.char_features[1], together.char_features[together.rows[word]], atol=1e-6)
        assert alone.word_ids[1] == together.word_ids[together.rows[word]]
        assert alone.casing_ids[1] == together.casing_ids[together.rows[word]]


def test_padding_rows_are_zero(tagger):
    words = tagger.words([SENTENCE])
    assert words.word_ids[0] == 0 and words.casing_ids[0] == 0 and not words.char_features[0].any()
