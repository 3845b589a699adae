"""The model behind the web API: text in; tokens, tags and entities out.

`get_model_api()` loads the tagger once and returns `model_api`, which tags many
texts in one call. No Flask here: app.py does the HTTP.
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from syntok import segmenter

import settings
from model import files
from model.backends import load_tagger
from model.marginals import ScoredTags
from model.tags import entity_spans
from model.windows import cut, stitch, windows

DEFAULT_MODEL_DIR = settings.defaults()["NER_MODEL_DIR"]
# Entity scores are rounded: more digits would be noise (the backends agree to ~1e-6).
SCORE_DIGITS = 4

try:
    _LIBC: ctypes.CDLL | None = ctypes.CDLL("libc.so.6")
except OSError:  # not glibc (macOS, musl)
    _LIBC = None
_M_ARENA_MAX = -8  # mallopt's parameter number, from glibc's malloc.h

# syntok splits some words that CoNLL-2003 keeps whole; the model was trained on
# CoNLL tokens, so tokenize() joins them back (see _joins_previous).
_HYPHENS = frozenset("\u00ad\u058a\u05be\u0f0c\u1400\u1806\u2010\u2011\u2012\u2e17\u30a0-_")
_APOSTROPHES = "'\u2019"
_CLITICS = frozenset({"'s", "'re", "'ve", "'ll", "'d", "'m"})
_SENTENCE_ENDS = frozenset({".", "!", "?", "...", "\u2026"})
_CLOSERS = frozenset("\"')]}\u00bb\u201d\u2019")
# Words that CoNLL-2003 writes with a period inside a sentence ("Inc.", "vs.").
_ABBREVIATIONS = frozenset({
    "vs", "vol", "inc", "corp", "co", "ltd", "bros", "st", "mr", "mrs", "ms", "dr", "jr", "sr",
    "lt", "gen", "rev", "no", "calif", "fla", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept",
    "oct", "nov", "dec",
})
_CURRENCY_PREFIX = 3  # letters before a dollar sign that name its country


@dataclass(frozen=True, slots=True)  # slots: a heavy request makes 500,000 of them
class Token:
    text: str
    start: int  # character offset into the input
    end: int  # one past the last character


class ModelApi(Protocol):
    """`model_api(texts, min_score)` gives one result dict a text, without the
    entities scored below min_score; `info` describes the model."""

    info: dict[str, Any]

    def __call__(self, texts: list[str], min_score: float = 0.0) -> list[dict[str, Any]]: ...


def tokenize(text: str) -> list[list[Token]]:
    """Split text into sentences of tokens, with character offsets into `text`.

    syntok segments and tokenizes, keeping punctuation as tokens and "n't" and
    "'s" apart as CoNLL does. Where syntok splits what CoNLL keeps whole, the
    pieces are joined again: hyphenated words ("Anglo-Dutch"), inner capitals
    ("McCague"), apostrophes inside names ("O'Gorman"), the period of an
    abbreviation inside a sentence ("U.S.", "P."), clitics written apart
    ("Germany 's"), currencies ("C$") and phone prefixes ("+44"). Sentences
    that syntok split where no sentence ends are joined again (_continues).
    """
    sentences: list[list[Token]] = []
    for paragraph in segmenter.analyze(text):
        paragraph_start = len(sentences)
        for sentence in paragraph:
            pieces = [t for t in sentence if t.value]  # syntok ends a text with an empty token
            tokens: list[Token] = []
            for i, piece in enumerate(pieces):
                end = piece.offset + len(piece.value)
                if tokens and _joins_previous(tokens[-1].text, piece.spacing, piece.value, i == len(pieces) - 1):
                    tokens[-1] = Token(text[tokens[-1].start : end], tokens[-1].start, end)
                else:
                    tokens.append(Token(piece.value, piece.offset, end))
            if not tokens:
                continue
            if len(sentences) > paragraph_start and _continues(sentences[-1], tokens, text):
                previous = sentences[-1]
                if _period_after_abbreviation(previous):
                    word, period = previous[-2:]
                    previous[-2:] = [Token(text[word.start : period.end], word.start, period.end)]
                previous += tokens
            else:
                sentences.append(tokens)
    return sentences


def _continues(previous: list[Token], tokens: list[Token], text: str) -> bool:
    """Whether syntok split a sentence where none ends: after no final
    punctuation ("Mladost (L) | 4 2 1 1", a table's row), after an
    abbreviation's period ("ST. | LOUIS", in upper-case text), or before a lone
    closing quote; a line break always ends a sentence (lists, headlines)."""
    if "\n" in text[previous[-1].end : tokens[0].start]:
        return False
    if not any(ch.isalnum() for token in tokens for ch in token.text) or _period_after_abbreviation(previous):
        return True
    last = next((t.text for t in reversed(previous) if t.text not in _CLOSERS), "")
    return last not in _SENTENCE_ENDS


def _joins_previous(previous: str, spacing: str, value: str, last_in_sentence: bool) -> bool:
    if spacing:
        # syntok drops a hyphen or underscore between two words into the
        # spacing of the second; any other spacing is whitespace.
        return set(spacing) <= _HYPHENS
    if previous[-1].isalpha() and value[0].isupper():
        return True
    if len(previous) == 1 and previous in _APOSTROPHES:
        # A clitic written apart from its word ("Germany 's"): syntok splits
        # off the apostrophe, CoNLL keeps "'s" whole.
        return "'" + value.lower() in _CLITICS
    if value == "$" and previous.isalpha() and len(previous) <= _CURRENCY_PREFIX:
        return True  # "C$", "US$", "HK$"
    if previous == "+" and value[0].isdigit():
        return True  # "+44"
    if value[0] in _APOSTROPHES and len(value) > 1:
        clitic = "'" + value[1:].lower()
        return previous[-1].isalpha() and clitic not in _CLITICS
    # A period the segmenter did not end the sentence with, after what looks
    # like an abbreviation; not after any word, as "paris. angela" (syntok
    # does not end a sentence before a lower-case word) must stay "paris" ".".
    return value == "." and not last_in_sentence and _abbreviation(previous)


def _period_after_abbreviation(sentence: list[Token]) -> bool:
    """The sentence ends with a period right after an abbreviation or an
    initial ("ST" ".", "INC" "."); not after a number ("in 1996.")."""
    if len(sentence) < 2:
        return False
    word, period = sentence[-2:]
    return period.text == "." and word.end == period.start and word.text.isalpha() and _abbreviation(word.text)


def _abbreviation(word: str) -> bool:
    """"U.S" (of "U.S."), an initial ("P"), a number ("1." in a list) or a
    common abbreviation ("Inc", "vs")."""
    return "." in word or (len(word) == 1 and word.isalpha()) or word.isdigit() or word.lower() in _ABBREVIATIONS


def align_data(data: dict[str, list[str]]) -> dict[str, str]:
    """Sequences of equal length as strings whose items line up in columns, as
    the original api_ner did: {"input": tokens, "output": tags} ->
    {"input": "I love Paris", "output": "O O    B-LOC"}."""
    widths = [max(len(item) for item in column) for column in zip(*data.values(), strict=True)]
    return {key: " ".join(item.ljust(w) for item, w in zip(seq, widths, strict=True)) for key, seq in data.items()}


def annotate(text: str, sentences: list[list[Token]], tagged: list[ScoredTags], min_score: float = 0.0) -> dict[str, Any]:
    """The result for one text, from its tokenized sentences and their scored
    tags; entities scored below min_score are left out of `entities` (not out of `tags`)."""
    tokens = [token for sentence in sentences for token in sentence]
    entities = []
    for sentence, sentence_tagged in zip(sentences, tagged, strict=True):
        # Spans are decoded per sentence: an entity never crosses a sentence boundary.
        for span in entity_spans(sentence_tagged.tags):
            score = float(sentence_tagged.scores[span.start])
            # NaN: a model whose tag set lacks this type's I- tag cannot score it.
            score = None if math.isnan(score) else round(score, SCORE_DIGITS)
            if score is None or score >= min_score:
                start, end = sentence[span.start].start, sentence[span.end - 1].end
                entities.append({"text": text[start:end], "type": span.type, "start": start, "end": end,
                                 "score": score})
    flat_tags = [tag for sentence_tagged in tagged for tag in sentence_tagged.tags]
    return {
        **align_data({"input": [t.text for t in tokens], "output": flat_tags}),
        "tokens": [{"text": t.text, "start": t.start, "end": t.end} for t in tokens],
        "tags": flat_tags,
        "entities": entities,
    }


def model_info(directory: Path, backend: str, tags: list[str]) -> dict[str, Any]:
    """What the export wrote in meta.json (name, version, members, scores,
    training data, hyperparameters), and how this service runs the model."""
    return {
        **files.read_json(directory, files.META),
        "directory": directory.name,
        "backend": backend,
        "tags": tags,
        "entity_types": sorted({tag[2:] for tag in tags if tag != "O"}),
    }


def tag_sentences(tag_scored: Callable[[list[list[str]]], list[ScoredTags]],
                  sentences: list[list[str]]) -> list[ScoredTags]:
    """The tags and entity scores of every sentence of every text, in one call of
    a tagger's `tag_scored`: the tagger pads them in batches of similar size.
    Over-long sentences are tagged in windows (model.windows), so that no
    sequence is longer than the network handles well and a call's cost follows
    the text's size. An entity that crosses a cut is scored within its window."""
    parts = windows([len(s) for s in sentences])
    pieces = cut(sentences, parts)
    tagged = tag_scored(pieces) if pieces else []
    tags = stitch(parts, [t.tags for t in tagged], len(sentences))
    scores = stitch(parts, [t.scores for t in tagged], len(sentences))
    return [ScoredTags(t, np.array(s, dtype=float)) for t, s in zip(tags, scores, strict=True)]


def give_back_memory() -> None:
    """Hand the pages that malloc keeps after a big request back to the system.

    glibc keeps freed memory in its heap for reuse, so without this a worker
    would stay at the peak of its largest request (BENCHMARKS.md, "Heavy
    requests and slow clients"). Not worth it after a small request: the next
    one faults the pages back in, which cost a short request ~15% of its time.
    Elsewhere than glibc, nothing to do.
    """
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def limit_malloc_arenas(count: int = 2) -> None:
    """Let glibc keep at most `count` malloc arenas in this process.

    glibc gives threads that allocate at once arenas of their own (up to 8 a
    core), and each keeps what is freed in it: with gunicorn's threads a
    worker's RSS crept up 19 MB over 20,000 requests, against 6 to 11 MB with
    two arenas (tests/test_reliability_gunicorn.py). The same as Heroku's
    advice to set MALLOC_ARENA_MAX=2, without a variable to remember.
    Elsewhere than glibc, nothing to do.
    """
    if _LIBC is not None:
        _LIBC.mallopt(_M_ARENA_MAX, count)


def get_model_api(model_dir: str | Path | None = None, backend: str | None = None) -> ModelApi:
    """Load the model once and return `model_api(texts) -> [result, ...]`.

    model_dir and backend default to $NER_MODEL_DIR and $NER_BACKEND (settings.py).
    """
    environment = settings.load()
    directory = Path(model_dir or environment["NER_MODEL_DIR"])
    backend = backend or environment["NER_BACKEND"]
    tagger = load_tagger(directory, backend)

    def model_api(texts: list[str], min_score: float = 0.0) -> list[dict[str, Any]]:
        tokenized = [tokenize(text) for text in texts]
        sentences = [[t.text for t in sentence] for text_sentences in tokenized for sentence in text_sentences]
        tagged = iter(tag_sentences(tagger.tag_scored, sentences))
        return [
            annotate(text, text_sentences, [next(tagged) for _ in text_sentences], min_score)
            for text, text_sentences in zip(texts, tokenized, strict=True)
        ]

    api: Any = model_api
    api.info = model_info(directory, backend, list(tagger.vocab.tags))
    return api

