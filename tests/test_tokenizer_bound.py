"""min_token_count (nerserve.tagger.tokenizer), the lower bound on a text's
tokens that lets pipeline.read_documents refuse a request over its token
budget without tokenizing it: never above the real count, on CoNLL, on the
heavy shapes of bench/bounded_requests.py and on hostile text."""

from __future__ import annotations

import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from syntok.tokenizer import Tokenizer

from nerserve.tagger import pipeline
from nerserve.tagger.pipeline import TooManyTokens, read_documents
from nerserve.tagger.tokenizer import _CHUNK, min_token_count, tokenize
from nerserve.tagger.training.data import DEFAULT_DATA_DIR, read_conll
from tests.test_serve import detokenize

MAX_TOKENS = 100_000  # settings' NER_MAX_TOKENS
MAX_TEXTS = 50  # settings' NER_MAX_TEXTS


def heavy_texts() -> dict[str, str]:
    """A text of 10,000 characters (settings' NER_MAX_TEXT_CHARS) of each shape
    of bench/bounded_requests.py (heavy_bodies), and a semicolon list."""
    sentences = [" ".join(s.words) for s in read_conll(DEFAULT_DATA_DIR / "test.txt")]
    url = "https://example.com/" + "x" * 90
    cities = ", ".join(["Paris", "London", "New York", "Berlin", "Tokyo", "Moscow"] * 300)[: 9_999 - len(url)]
    return {
        "a, list": "a," * 4984 + "b" * 32,
        "a; list": "a;" * 5000,
        "one sentence of 2,000 words": " ".join(["word"] * 2000) + ".",
        "city names and a URL": cities + " " + url,
        "news": " ".join(sentences)[:10_000],
    }


def token_count(text: str) -> int:
    return sum(len(sentence) for sentence in tokenize(text))


HOSTILE = [
    "", " ", "\n\n", ",", ",,,", ";a", "a;", "a;;b", "a,;b", ",a,", "1,000", "1,a", "a,1", "a1,2b", "1,000,000.",
    "U.S.", "U.S., U.K.; E.U.", "Anglo-Dutch", "a-,b", "a_,b", "a-b,c", "well-known,", "x - , y",
    "O'Gorman, McCague;", "Germany 's,", "don't,", "can't;do", "rock'n'roll,", "ʼa,b", "aʼ,b", "a,ʼb",
    "https://example.com/a,b;c?d=1,2", "mailto:a,b@example.com", "C$,US$;+44,",
    "a\u200b,b", "a,\u200bb", "a\u200b\u200b;", "a\x1c,b", "a,\x1cb", "\x1c\x1d\x1e\x1f", "a\x00,b", "a,\x07b",
    "Bogota\u0301,", "a,\u0301b", "\u0301,a", "e\u0301;e\u0301", "café,naïve;", "\U0001f600,a", "a,\U0001f600",
    "東京,大阪;京都", "東京, a,b", "a,東京", "١,٢", "a,١", "Ⅻ,a", "²,a",
    "a\xa0,b", "a,\xa0b", "a\u3000,\u3000b", "a\u2028,\u2029b", "a\x85,b", "a,\r\nb", "a,\n\nb;\n\n;c",
    "(a),[b];{c}", "a),b", "a,(b", "a...,b", "a,...b", "a,.b", "a.,b", "Inc.,", "ST. LOUIS, a", "P., a;",
    "a.A,b", "aB,c", "a,B", "A,b", "\"a\",b", "a,\"b\"", "a\u00ad,b", "a,\u2010b", "a\u2011;b",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_the_bound_is_never_over_the_count_on_hostile_text(text):
    assert min_token_count(text) <= token_count(text)


@settings(max_examples=2000, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("aZ09,;.-_'’ʼ$+()\"\u200b\x1c\xa0\n\t\u0301\u00ad\u2010東١")), max_size=30))
def test_the_bound_is_never_over_the_count_on_text_made_of_what_syntok_splits_on(text):
    assert min_token_count(text) <= token_count(text)


@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=60))
def test_the_bound_is_never_over_the_count_on_any_text(text):
    assert min_token_count(text) <= token_count(text)


def test_the_bound_cuts_chunks_only_where_syntok_does():
    every_character = "".join(map(chr, range(sys.maxunicode + 1)))
    cut_here = set(every_character) - set("".join(_CHUNK.findall(every_character)))
    cut_by_syntok = set(every_character) - set("".join(Tokenizer._spaces.findall(every_character)))
    assert cut_here <= cut_by_syntok


@pytest.mark.parametrize("split", ["train", "valid", "test"])
def test_the_bound_is_never_over_the_count_on_conll(split):
    sentences = read_conll(DEFAULT_DATA_DIR / f"{split}.txt")
    texts = [text for s in sentences for text in (" ".join(s.words), detokenize(s.words))]
    counts = {text: (min_token_count(text), token_count(text)) for text in texts}
    assert [text for text, (bound, count) in counts.items() if bound > count] == []
    # Words, and commas and semicolons as prose writes them: 96% of the tokens of valid.txt.
    assert sum(bound for bound, _ in counts.values()) >= 0.9 * sum(count for _, count in counts.values())


@pytest.mark.parametrize("shape", heavy_texts())
def test_the_bound_is_never_over_the_count_on_the_heavy_shapes(shape):
    text = heavy_texts()[shape]
    assert len(text) <= 10_000 and min_token_count(text) <= token_count(text)


def count_tokenizing(monkeypatch) -> list[str]:
    """The texts read_documents tokenizes from now on."""
    tokenized: list[str] = []
    monkeypatch.setattr(pipeline, "tokenize", lambda text: tokenized.append(text) or tokenize(text))
    return tokenized


@pytest.mark.parametrize("shape", ["a, list", "a; list", "city names and a URL"])
def test_a_request_far_over_the_budget_is_refused_without_tokenizing(shape, monkeypatch):
    texts = [heavy_texts()[shape]] * MAX_TEXTS
    tokenized = count_tokenizing(monkeypatch)
    with pytest.raises(TooManyTokens) as refused:
        read_documents(texts, MAX_TOKENS)
    assert tokenized == []
    # The count it stopped at is one the texts have at least.
    assert MAX_TOKENS < refused.value.counted <= token_count(texts[0]) * MAX_TEXTS


def test_a_request_near_the_budget_is_tokenized_until_its_count_passes_it(monkeypatch):
    texts = [heavy_texts()["one sentence of 2,000 words"]] * MAX_TEXTS  # 2,001 tokens a text, 100,000 bounded
    tokenized = count_tokenizing(monkeypatch)
    with pytest.raises(TooManyTokens) as refused:
        read_documents(texts, MAX_TOKENS)
    assert len(tokenized) == 1 and refused.value.counted == 100_001


def test_texts_within_the_budget_are_all_tokenized():
    texts = [heavy_texts()["news"]] * MAX_TEXTS
    total = token_count(texts[0]) * MAX_TEXTS
    assert [d.sentences for d in read_documents(texts, total)] == [d.sentences for d in read_documents(texts)]
    with pytest.raises(TooManyTokens) as refused:
        read_documents(texts, total - 1)
    assert refused.value.counted == total
