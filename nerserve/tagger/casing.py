"""Each sentence goes to the tagger trained for text written as it is.

The cased networks use capitals, the strongest cue for a name, and find almost
nothing in lowercase text. Networks trained on sentences recased at random
(nerserve.tagger.training.train) tag lowercase and UPPERCASE text well, but lose about
1.3 dev F1 on text written as news is (MODEL.md, "Text without normal case").
So a sentence that shows no sign of being written with normal case goes to
the caseless tagger: no word capitalised as a name ("Paris") but its first
word (a sentence's capital) and "I", or Title Case with its small words
capitalised. The caseless tagger gets such a sentence with its capitalised
words lowercased: it was trained on lowercase, not on Sentence or Title case.

Where the model has one, the typed tagger (networks trained on text as people
type it: sentence case, Title Case, names half lowercased) takes the rest of
Title Case, and adds to the cased tagger's entities the names it misses
because they were typed in lowercase (MODEL.md, "Text as people type it").

This module also recases text, to train and to score a tagger in each CASINGS.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from nerserve.tagger.marginals import ScoredTags
from nerserve.tagger.tags import Span, entity_spans

Result = TypeVar("Result")

# How text is written: to train on (nerserve.tagger.training.train) and to score
# a tagger on each (nerserve.tagger.training.evaluate, bench/case_scores.py).
CASINGS = ("as_written", "lower", "upper", "sentence", "title", "mixed")
# "mixed": each gold entity lowercased with this probability, drawn in corpus
# order from a generator seeded once, so every run recases the same entities.
MIXED_LOWER_PROBABILITY = 0.5
MIXED_SEED = 28


def lower_char(ch: str) -> str:
    """ch lowercased, or ch itself where lowercasing gives more than one character
    ("İ" gives "i̇"): recasing must keep every character's offset."""
    lowered = ch.lower()
    return lowered if len(lowered) == 1 else ch


def upper_char(ch: str) -> str:
    """ch upper-cased, or ch itself where that gives more than one character ("ß" gives "SS")."""
    upper = ch.upper()
    return upper if len(upper) == 1 else ch


def lower_text(text: str) -> str:
    return "".join(map(lower_char, text))


def sentence_case(text: str) -> str:
    """The text lowercased, then its first letter upper-cased: "going to Paris" -> "Going to paris"."""
    lowered = lower_text(text)
    first = next((i for i, ch in enumerate(lowered) if ch.isalpha()), None)
    if first is None:
        return lowered
    return lowered[:first] + upper_char(lowered[first]) + lowered[first + 1 :]


def title_case(text: str) -> str:
    """Each word's first letter upper-cased and the rest lowercased, a letter being a
    word's first when the character before it is not a letter or digit (as str.title,
    which does not keep lengths): "o'neil of the U.S." -> "O'Neil Of The U.S."."""
    return "".join(
        upper_char(ch) if i == 0 or not text[i - 1].isalnum() else lower_char(ch) for i, ch in enumerate(text)
    )


def lower_spans(text: str, spans: list[tuple[int, int]]) -> str:
    """The text with the characters of each (start, end) span lowercased, the rest as written."""
    chars = list(text)
    for start, end in spans:
        chars[start:end] = lower_text(text[start:end])
    return "".join(chars)


def mixed_case(text: str, entities: list[tuple[int, int]], rng: random.Random) -> str:
    """The text with each entity's (start, end) characters lowercased with probability
    MIXED_LOWER_PROBABILITY, one draw an entity: names typed half carefully."""
    return lower_spans(text, [span for span in entities if rng.random() < MIXED_LOWER_PROBABILITY])


def recase_sentence(words: list[str], tags: list[str], casing: str, rng: random.Random) -> list[str]:
    """The words of one sentence written in `casing` (one of CASINGS), the sentence
    being one text: its words joined by spaces, as bench/case_scores.py sends them.
    Every word keeps its length but in "lower" and "upper", which recase each word
    with str.lower and str.upper, as every earlier score was taken. rng draws
    "mixed"'s entities."""
    if casing == "as_written":
        return list(words)
    if casing == "lower":
        return [word.lower() for word in words]
    if casing == "upper":
        return [word.upper() for word in words]
    text = " ".join(words)
    if casing == "sentence":
        text = sentence_case(text)
    elif casing == "title":
        text = title_case(text)
    elif casing == "mixed":
        text = mixed_case(text, entity_character_spans(words, tags), rng)
    else:
        raise ValueError(f"casing must be one of {', '.join(CASINGS)}, not {casing!r}")
    return split_like(text, words)


def recase_sentences(sentences: list[tuple[list[str], list[str]]], casing: str) -> list[list[str]]:
    """Each (words, tags) sentence's words in `casing`; "mixed" draws from MIXED_SEED,
    so a corpus is recased the same way every time."""
    rng = random.Random(MIXED_SEED)
    return [recase_sentence(words, tags, casing, rng) for words, tags in sentences]


def entity_character_spans(words: list[str], tags: list[str]) -> list[tuple[int, int]]:
    """The (start, end) characters of each entity of the tags in " ".join(words)."""
    starts = [sum(len(w) + 1 for w in words[:i]) for i in range(len(words))]
    return [(starts[s.start], starts[s.end - 1] + len(words[s.end - 1])) for s in entity_spans(tags)]


def split_like(text: str, words: list[str]) -> list[str]:
    """`text`, the words joined by spaces and recased keeping lengths, cut back into words."""
    cut, start = [], 0
    for word in words:
        cut.append(text[start : start + len(word)])
        start += len(word) + 1
    return cut


# "I" and its contractions are capitalised in text of any case but all caps.
PRONOUN_I = re.compile(r"I(['’](m|ll|d|ve|s))?")
# Title Case: at least this many words with case, this share of them starting
# with a capital, and a small word capitalised after the first word ("Going To
# Paris"): lines of names ("Breen , Staunton , Irwin") and headings ("Lead
# Underwriter Bear Stearns & Co Inc") have none, and the cased tagger knows them.
TITLE_MIN_WORDS = 3
TITLE_CAPITALISED_SHARE = 0.75
SMALL_WORDS = frozenset(
    ["a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "from", "has", "have", "he", "her",
     "his", "in", "is", "it", "its", "of", "on", "or", "our", "she", "that", "the", "their", "they",
     "this", "to", "was", "we", "were", "will", "with", "you", "your"]
)
# The routes of a sentence (CaseRouter.route).
CASED, CASELESS, TYPED = "cased", "caseless", "typed"
# The typed tagger's entities joined to the cased tagger's: those scored at
# least this, more likely right than not (dev, names half lowercased: 93.11
# against 93.14 with every entity; as written 94.79 against 94.75).
ADDED_MIN_SCORE = 0.5
# Where a tokenizer leaves two sentences as one: it starts a sentence at a
# capital only ("Tim Cook. the european union ..." is one sentence).
SENTENCE_ENDS = frozenset(".!?")


def has_case(word: str) -> bool:
    return word.lower() != word.upper()


def has_upper(word: str) -> bool:
    return word.lower() != word


def is_capitalised(word: str) -> bool:
    """An upper-case letter then a lower-case one, as names are written: "Paris", "McCague"."""
    return len(word) > 1 and word[0].isupper() and word[1].islower()


def starts_with_capital(word: str) -> bool:
    return next((ch for ch in word if ch.isalpha()), "").isupper()


def first_word_with_a_letter(words: list[str]) -> int | None:
    return next((i for i, word in enumerate(words) if any(ch.isalpha() for ch in word)), None)


def is_sentence_case(words: list[str]) -> bool:
    """Nothing upper-case but the first word, capitalised, and "I": "Going to paris with john"."""
    first = first_word_with_a_letter(words)
    return (first is not None and is_capitalised(words[first]) and not any(
        has_upper(word) and not PRONOUN_I.fullmatch(word)
        for i, word in enumerate(words) if i != first))


def looks_title_case(words: list[str]) -> bool:
    """Nearly every word with case starting with a capital: "Japan Coach Says
    Team Ready", and lines of names and headings too."""
    cased = [word for word in words if has_case(word)]
    return (len(cased) >= TITLE_MIN_WORDS
            and sum(map(starts_with_capital, cased)) >= TITLE_CAPITALISED_SHARE * len(cased))


def is_title_case(words: list[str]) -> bool:
    """Nearly every word capitalised, small words too: "Going To Paris With John Smith"."""
    if not looks_title_case(words):
        return False
    first = first_word_with_a_letter(words)
    return any(is_capitalised(word) and word.lower() in SMALL_WORDS for i, word in enumerate(words) if i != first)


def is_caseless(words: list[str]) -> bool:
    """True when some letter has case but the sentence is not written with
    normal case: no word capitalised as a name ("barack obama", "ANGELA MERKEL
    VISITED", chat that keeps its acronyms: "i think NATO should meet in
    brussels"), or only its first word and "I" ("I met john in paris"), or
    Title Case. Digits, punctuation and scripts without case do not count."""
    if not any(map(has_case, words)):
        return False
    return not any(map(is_capitalised, words)) or is_sentence_case(words) or is_title_case(words)


def lowercase_capitalised(words: list[str]) -> list[str]:
    """The words for the caseless tagger: each word whose first letter is a
    capital, and that has a lower-case letter, lowercased ("Going", "Paris").
    It tags lowercase text far better than Sentence or Title case (dev F1
    95.0 against 86.7 and 82.2); all-capital words stay, as it knows those."""
    return [lower_text(word) if starts_with_capital(word) and any(ch.islower() for ch in word) else word
            for word in words]


def clauses(words: list[str]) -> list[list[str]]:
    """The sentence cut after each sentence-ending mark that a lowercase word follows."""
    cuts = [i + 1 for i in range(len(words) - 1)
            if words[i] in SENTENCE_ENDS and words[i + 1][:1].islower()]
    return [words[start:end] for start, end in zip([0, *cuts], [*cuts, len(words)], strict=True)]


def join_results(pieces: list[Any]) -> Any:
    """The tags (or ScoredTags) of a sentence's clauses as one sentence's."""
    if pieces and isinstance(pieces[0], ScoredTags):
        return ScoredTags([tag for piece in pieces for tag in piece.tags],
                          np.concatenate([piece.scores for piece in pieces]))
    return [tag for piece in pieces for tag in piece]


def entities_outside(base_tags: list[str], tags: list[str]) -> list[Span]:
    """The entities of `tags` that overlap none of `base_tags`'s."""
    return [span for span in entity_spans(tags) if all(tag == "O" for tag in base_tags[span.start : span.end])]


def with_entities_added(base: Result, extra: ScoredTags, min_score: float = ADDED_MIN_SCORE) -> Result:
    """base's tags (or ScoredTags), and each entity of extra's scored at least
    min_score that overlaps none of base's, with its score: the names a
    second tagger finds where the first found nothing."""
    scored = isinstance(base, ScoredTags)
    base_tags = base.tags if scored else base
    tags = list(base_tags)
    scores = base.scores.copy() if scored else None
    for span in entities_outside(base_tags, extra.tags):
        if extra.scores[span.start] >= min_score:
            tags[span.start : span.end] = [f"B-{span.type}", *extra.tags[span.start + 1 : span.end]]
            if span.end < len(tags) and tags[span.end] == f"I-{span.type}":
                tags[span.end] = f"B-{span.type}"  # base's entity after it stays an entity of its own
            if scores is not None:
                scores[span.start : span.end] = extra.scores[span.start : span.end]
    return ScoredTags(tags, scores) if scored else tags


class CaseRouter:
    """Taggers as one, each sentence tagged by the one its case calls for (route()):
    - caseless: the caseless tagger, given the sentence with its capitalised
      words lowercased;
    - typed: a tagger trained on text as people type it (sentence case, Title
      Case, names half lowercased), for Title Case that the caseless route
      does not take (no small word capitalised: "Japan Coach Says Team Ready");
    - cased: the cased tagger, which tags text written as news is best, and
      finds next to nothing in a name typed in lowercase; with a typed tagger,
      its entities are joined by each of the typed tagger's that overlaps none
      of them (with_entities_added).
    Without a typed tagger, Title Case of the second kind goes the cased route.
    Results come back in input order. A sentence whose clauses (clauses())
    route differently is tagged a clause at a time: "Angela Merkel met Tim
    Cook. the european union fined google" is, to a tokenizer, one sentence."""

    def __init__(self, cased: Any, caseless: Any, typed: Any = None):
        self.cased, self.caseless, self.typed = cased, caseless, typed
        self.vocab = cased.vocab  # the tag set, which all share

    def tag(self, sentences: list[list[str]]) -> list[list[str]]:
        return self._route(sentences, lambda tagger, batch: tagger.tag(batch))

    def tag_scored(self, sentences: list[list[str]]) -> list:
        return self._route(sentences, lambda tagger, batch: tagger.tag_scored(batch))

    def route(self, words: list[str]) -> str:
        """CASELESS, TYPED or CASED: the route of a sentence (or clause) by its case."""
        if is_caseless(words):
            return CASELESS
        return TYPED if self.typed is not None and looks_title_case(words) else CASED

    def _route(self, sentences: list[list[str]], call: Callable[[Any, list[list[str]]], list[Result]]) -> list[Result]:
        pieces, owners, routes = split_where_routes_differ(sentences, self.route)
        results: list[Any] = [None] * len(pieces)
        taggers = {
            CASED: lambda batch: self._cased(batch, call),
            TYPED: lambda batch: call(self.typed, batch),
            CASELESS: lambda batch: call(self.caseless, [lowercase_capitalised(words) for words in batch]),
        }
        for name, tag in taggers.items():
            indices = [i for i, piece_route in enumerate(routes) if piece_route == name]
            if indices:
                for i, result in zip(indices, tag([pieces[i] for i in indices]), strict=True):
                    results[i] = result
        by_sentence: list[list[Any]] = [[] for _ in sentences]
        for owner, result in zip(owners, results, strict=True):
            by_sentence[owner].append(result)
        return [join_results(parts) if len(parts) > 1 else parts[0] for parts in by_sentence]

    def _cased(self, batch: list[list[str]], call: Callable[[Any, list[list[str]]], list[Result]]) -> list[Result]:
        tagged = call(self.cased, batch)
        if self.typed is None:
            return tagged
        base_tags = [base.tags if isinstance(base, ScoredTags) else base for base in tagged]
        # Only a sentence where the typed tagger finds an entity outside the cased
        # tagger's is scored: text as written has few (10 of dev's 1,717 sentences).
        extra = self.typed.tag_scored(batch, scored_if=lambda i, tags: bool(entities_outside(base_tags[i], tags)))
        return [with_entities_added(base, more) for base, more in zip(tagged, extra, strict=True)]


def split_where_routes_differ(sentences: list[list[str]], route: Callable[[list[str]], str]
                              ) -> tuple[list[list[str]], list[int], list[str]]:
    """Each sentence, or its clauses where they do not all take one route; the
    sentence each piece comes from; and each piece's route. Clauses of one
    route stay one sentence, so that the tagger sees the whole context."""
    pieces: list[list[str]] = []
    owners: list[int] = []
    routes: list[str] = []
    for owner, sentence in enumerate(sentences):
        parts = clauses(sentence)
        part_routes = [route(part) for part in parts] if len(parts) > 1 else []
        if len(set(part_routes)) < 2:
            parts, part_routes = [sentence], [route(sentence)]
        pieces += parts
        owners += [owner] * len(parts)
        routes += part_routes
    return pieces, owners, routes
