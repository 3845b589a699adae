"""Sentences without normal case go to a tagger trained for them.

The cased networks use capitals, the strongest cue for a name, and find almost
nothing in lowercase text. Networks trained on sentences recased at random
(model.training.train) tag lowercase and UPPERCASE text well, but lose about
1.3 dev F1 on text written as news is (MODEL.md, "Text without normal case").
So a sentence with no word capitalised as a name ("Paris") goes to the
caseless tagger, and every other sentence to the cased one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

Result = TypeVar("Result")


def is_caseless(words: list[str]) -> bool:
    """True when some letter has case but no word is capitalised as names are
    in text written with normal case, an upper-case letter then a lower-case
    one ("Paris", "McCague"): "barack obama", "ANGELA MERKEL VISITED", and
    chat that keeps its acronyms ("i think NATO should meet in brussels").
    Digits, punctuation and scripts without case do not count."""
    has_case = any(ch.lower() != ch.upper() for word in words for ch in word)
    return has_case and not any(len(word) > 1 and word[0].isupper() and word[1].islower() for word in words)


class CaseRouter:
    """Two taggers as one: each sentence is tagged by the caseless tagger if
    is_caseless(sentence), else by the cased one; results come back in input order."""

    def __init__(self, cased: Any, caseless: Any):
        self.cased, self.caseless = cased, caseless
        self.vocab = cased.vocab  # the tag set, which both share

    def tag(self, sentences: list[list[str]]) -> list[list[str]]:
        return self._route(sentences, lambda tagger, batch: tagger.tag(batch))

    def tag_scored(self, sentences: list[list[str]]) -> list:
        return self._route(sentences, lambda tagger, batch: tagger.tag_scored(batch))

    def _route(self, sentences: list[list[str]], call: Callable[[Any, list[list[str]]], list[Result]]) -> list[Result]:
        routed = [is_caseless(sentence) for sentence in sentences]
        results: list[Any] = [None] * len(sentences)
        for tagger, wanted in ((self.cased, False), (self.caseless, True)):
            indices = [i for i, caseless in enumerate(routed) if caseless == wanted]
            if indices:
                for i, result in zip(indices, call(tagger, [sentences[i] for i in indices]), strict=True):
                    results[i] = result
        return results
