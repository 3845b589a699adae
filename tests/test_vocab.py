"""Vocabulary building, casing classes and padded encoding."""

import numpy as np

from nerserve.tagger.vocab import MAX_WORD_CHARS, PAD, UNK, Vocab, batches_by_length, casing

TRAINING = [(["Paris", "is", "big", "."], ["B-LOC", "O", "O", "O"]), (["Xq9", "is"], ["B-ORG", "O"])]
GLOVE = ["the", "is", ".", "paris", "big", "london", "rome"]


def test_casing_classes():
    assert [casing(w) for w in ["1996", "12.5%", "paris", "EU", "Paris", "iPhone", "#1-", "-"]] == [
        "numeric", "mostly_numeric", "lower", "upper", "title", "other", "has_digit", "other"]


def test_training_words_first_then_frequent_pretrained_words():
    vocab = Vocab.build(TRAINING, GLOVE, keep_pretrained=6)
    assert vocab.words[:2] == [PAD, UNK]
    assert vocab.words[2] == "is"  # the most frequent training word
    assert set(vocab.words[2:6]) == {"is", "paris", "big", "."}
    assert vocab.words[6:] == ["the", "london"]  # top 6 of GloVe, less those seen
    assert "xq9" not in vocab.words
    assert vocab.tags == ["O", "B-LOC", "B-ORG"]


def test_encode_lowercases_pads_and_maps_unknowns():
    vocab = Vocab.build(TRAINING, GLOVE, keep_pretrained=7)
    batch = vocab.encode([["PARIS", "Rome", "Zzz"], ["is"]])
    index = vocab.word_index
    assert batch.word_ids.tolist() == [[index["paris"], index["rome"], index[UNK]], [index["is"], 0, 0]]
    assert batch.lengths.tolist() == [3, 1]
    assert batch.char_ids.shape == (2, 3, 5)
    assert (batch.char_ids[1, 1:] == 0).all()
    assert batch.char_ids[0, 2, 0] == vocab.char_index[UNK]  # "Z" never seen in training
    assert batch.casing_ids[0].tolist() == [vocab.casing_index[c] for c in ("upper", "title", "title")]


def test_long_words_are_cut_for_characters():
    vocab = Vocab.build(TRAINING, GLOVE, keep_pretrained=7)
    batch = vocab.encode([["a" * 100_000]])
    assert batch.char_ids.shape == (1, 1, MAX_WORD_CHARS)


def test_batches_by_length_cover_every_sentence_once():
    sentences = [["w"] * n for n in (5, 1, 3, 2, 4)]
    batches = batches_by_length(sentences, 2)
    assert sorted(i for b in batches for i in b) == list(range(5))
    assert [[len(sentences[i]) for i in b] for b in batches] == [[1, 2], [3, 4], [5]]
    assert np.all(np.diff([len(sentences[b[0]]) for b in batches]) > 0)


def test_batches_keep_their_padded_size_within_the_budget():
    # 100 sentences of 200 one-letter words and one of 200 long words.
    sentences = [["a"] * 200 for _ in range(100)] + [["x" * 40] * 200]
    budget = 20 * 200 * 1
    batches = batches_by_length(sentences, batch_size=64, max_cells=budget)
    assert sorted(i for b in batches for i in b) == list(range(101))
    assert [len(b) for b in batches] == [20] * 5 + [1]  # the budget binds, not the batch size
    for batch in batches[:-1]:
        assert len(batch) * max(len(sentences[i]) for i in batch) * 1 <= budget
    assert batches[-1] == [100]  # over the budget alone: the wide sentence never widens narrow ones
