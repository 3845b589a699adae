"""Sentences with no word capitalised as a name go to the caseless tagger, the rest to the cased one."""

import pytest

from model.casing import CaseRouter, is_caseless


@pytest.mark.parametrize(("words", "caseless"), [
    (["barack", "obama", "was", "born", "in", "hawaii"], True),
    (["ANGELA", "MERKEL", "VISITED", "WASHINGTON"], True),
    (["LONDON", "1996-08-30"], True),
    (["I", "love", "Paris"], False),
    (["i", "met", "Obama"], False),
    # Chat keeps acronyms; a name capitalised as news would have it is the cue.
    (["i", "think", "NATO", "should", "meet", "in", "brussels"], True),
    (["barack", "obama", "visited", "PARIS"], True),
    (["I", "saw", "McCague"], False),
    (["iPhone", "sales"], True),
    (["1996-08-30", "(", "4-1", ")"], False),  # no cased letter: the cased tagger, as before
    (["東京", "2020"], False),
    (["straße", "über"], True),
    ([], False),
])
def test_is_caseless(words, caseless):
    assert is_caseless(words) is caseless


class Recorder:
    """A tagger that tags every word with its own name and records its calls."""

    vocab = None

    def __init__(self, name: str):
        self.name, self.calls = name, []

    def tag(self, sentences):
        self.calls.append(sentences)
        return [[self.name] * len(s) for s in sentences]


def test_each_sentence_goes_to_one_tagger_in_one_call_and_comes_back_in_order():
    cased, caseless = Recorder("cased"), Recorder("caseless")
    sentences = [["I", "love", "Paris"], ["paris", "!"], ["Rome"], ["ROME", "."]]
    assert CaseRouter(cased, caseless).tag(sentences) == [
        ["cased"] * 3, ["caseless"] * 2, ["cased"], ["caseless"] * 2]
    assert cased.calls == [[["I", "love", "Paris"], ["Rome"]]]
    assert caseless.calls == [[["paris", "!"], ["ROME", "."]]]


def test_a_tagger_with_no_sentences_is_not_called():
    cased, caseless = Recorder("cased"), Recorder("caseless")
    assert CaseRouter(cased, caseless).tag([["Paris"]]) == [["cased"]]
    assert caseless.calls == []
