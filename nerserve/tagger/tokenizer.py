"""Text to sentences of tokens, with character offsets, as CoNLL-2003 writes them.

syntok segments and tokenizes; the rules below join back what syntok splits and
CoNLL keeps whole, as the model was trained on CoNLL's tokens.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from syntok import segmenter

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

# What syntok cuts a text at before anything else: Unicode White_Space (the
# `regex` module's \s) and the zero-width space. Written out, as Python's \s
# also takes U+001C..U+001F, which syntok keeps inside a chunk.
_SYNTOK_SPACES = "\t-\r \x85\xa0\u1680\u2000-\u200b\u2028\u2029\u202f\u205f\u3000"
_CHUNK = re.compile(f"[^{_SYNTOK_SPACES}]+")
# A comma or semicolon that is a token of its own whatever surrounds it (see
# min_token_count): after a letter or digit, and before a letter, the end of
# the chunk, or (after a letter) a digit; not between digits ("1,000"). ASCII
# only, where syntok's \p{L} and \p{Nd} and Python's isalnum() agree in any
# Unicode version. The comma comes first, lookbehinds after, so that re scans
# for it rather than trying every position (20 times faster on prose).
_SPLIT_OFF = re.compile(
    f"[,;](?:(?<=[A-Za-z0-9][,;])(?=[A-Za-z{_SYNTOK_SPACES}]|\\Z)|(?<=[A-Za-z][,;])(?=[0-9]))")


@dataclass(frozen=True, slots=True)  # slots: a heavy request makes 500,000 of them
class Token:
    text: str
    start: int  # character offset into the input
    end: int  # one past the last character


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


def min_token_count(text: str) -> int:
    """A lower bound on the tokens of tokenize(text), in two passes of re: a
    fiftieth of the time tokenizing takes, so that a request far over its
    token budget is refused without being tokenized (pipeline.read_documents).

    Why it is one: syntok cuts the text at _SYNTOK_SPACES into chunks, and
    yields at least one piece for each, never one across two. The first piece
    of a chunk starts a token: it starts its sentence, or follows spacing that
    is not hyphens, which _joins_previous never joins across. A comma or
    semicolon that _SPLIT_OFF finds is a piece of its own (syntok splits off
    each character after a chunk's last letter or digit, and its _separation
    one between a letter and a letter or digit), never a chunk's first, and
    _joins_previous never joins it to the piece before. Of the tokens these
    start, tokenize() joins none back: _continues merges only a period.
    tests/test_tokenizer_bound.py checks the bound on CoNLL and hostile text.
    """
    return len(_CHUNK.findall(text)) + len(_SPLIT_OFF.findall(text))


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
    if unicodedata.combining(value[0]):
        return True  # an accent written as its own code point (NFD "Bogota\u0301") belongs to its letter
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
