"""IOB2 tag sequences to entity spans, and conlleval-style scoring.

Pure Python: serving uses `entity_spans` to turn tags into entities.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Span:
    type: str
    start: int  # first token
    end: int  # one past the last token


def entity_types(tags: Iterable[str]) -> list[str]:
    """The entity types of an IOB2 tag set, sorted: a type counts with a B- tag, an I- tag or both."""
    return sorted({tag[2:] for tag in tags if tag != "O"})


def check_tag_set(tags: Sequence[str]) -> None:
    """ValueError, saying why, unless `tags` is an IOB2 tag set as training
    accepts one (nerserve.tagger.training.data.read_conll): O, B-TYPE and I-TYPE tags,
    each once, in any order, at least one of them an entity tag. A type may
    lack its B- tag or its I- tag (a training set whose every LOC is one word
    has no I-LOC): its entities are read as conlleval reads them (entity_spans)."""
    if not all(isinstance(tag, str) and (tag == "O" or (tag[:2] in ("B-", "I-") and len(tag) > 2)) for tag in tags):
        raise ValueError(f"tags {list(tags)} are not all IOB2 (O, B-TYPE or I-TYPE)")
    repeated = sorted(tag for tag, count in Counter(tags).items() if count > 1)
    if repeated:
        raise ValueError(f"tags {repeated} appear more than once")
    if not entity_types(tags):
        raise ValueError("no entity tag (B-TYPE or I-TYPE): the model would find nothing")


def entity_spans(tags: list[str]) -> list[Span]:
    """Entity spans as conlleval reads them: an entity starts at B-X, or at an
    I-X that does not continue an entity of type X, and runs over the I-X after it."""
    spans: list[Span] = []
    start, kind = None, None
    for i, tag in enumerate([*tags, "O"]):
        prefix, _, tag_type = tag.partition("-")
        continues = prefix == "I" and tag_type == kind
        if kind is not None and not continues:
            spans.append(Span(kind, start, i))
            start, kind = None, None
        if prefix in ("B", "I") and not continues:
            start, kind = i, tag_type
    return spans


@dataclass(frozen=True)
class Score:
    precision: float
    recall: float
    f1: float
    support: int  # gold entities


@dataclass
class Report:
    overall: Score
    by_type: dict[str, Score]
    token_accuracy: float


def score(gold: list[list[str]], predicted: list[list[str]]) -> Report:
    """Entity-level micro precision, recall and F1 (in %), per type and overall."""
    found, correct, expected = Counter(), Counter(), Counter()
    tokens = right_tokens = 0
    for gold_tags, predicted_tags in zip(gold, predicted, strict=True):
        gold_spans = set(entity_spans(gold_tags))
        predicted_spans = set(entity_spans(predicted_tags))
        expected.update(s.type for s in gold_spans)
        found.update(s.type for s in predicted_spans)
        correct.update(s.type for s in gold_spans & predicted_spans)
        tokens += len(gold_tags)
        right_tokens += sum(g == p for g, p in zip(gold_tags, predicted_tags, strict=True))
    types = sorted(set(expected) | set(found))
    by_type = {t: _score(correct[t], found[t], expected[t]) for t in types}
    overall = _score(sum(correct.values()), sum(found.values()), sum(expected.values()))
    return Report(overall, by_type, 100.0 * right_tokens / max(tokens, 1))


def _score(correct: int, found: int, expected: int) -> Score:
    precision = 100.0 * correct / found if found else 0.0
    recall = 100.0 * correct / expected if expected else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return Score(precision, recall, f1, expected)


def format_report(report: Report) -> str:
    """A conlleval-style table."""
    overall = report.overall
    summary = (
        f"accuracy: {report.token_accuracy:6.2f}%; precision: {overall.precision:6.2f}%; "
        f"recall: {overall.recall:6.2f}%; FB1: {overall.f1:6.2f}"
    )
    lines = [
        summary,
        f"{'type':>8} {'precision':>9} {'recall':>7} {'FB1':>7} {'support':>7}",
    ]
    for name, s in [*report.by_type.items(), ("overall", report.overall)]:
        lines.append(f"{name:>8} {s.precision:9.2f} {s.recall:7.2f} {s.f1:7.2f} {s.support:7d}")
    return "\n".join(lines)
