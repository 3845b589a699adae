"""Dev, on CoNLL's tokens: typed networks and ways of joining them to the cased
ones, tried after the typed network was committed (MODEL.md, "After the typed
network").

    python bench/typed_dev_rules.py [--cased .cache/previous_crf] [--caseless results/crf/caseless]
                                    [--typed runs/typed-dev/out ...] [--model results/crf]

For each typed network (train-only dev runs): its F1 alone and behind the
CaseRouter, as written, in Title Case and with names half lowercased. For the
first: the router with each of RULES in place of the committed one, and how
many entities it finds among the names lowercased in mixed case and among
those left as written. The cased networks are train-only (the ensemble
committed before, .cache/previous_crf); the caseless networks are the
committed ones, trained on dev too, and the same in every row.

Last, what each tagger of the committed model costs: tag_scored over CoNLL's
test sentences (the caseless one on them with capitals lowercased), one core,
the median of 3; nothing is scored on test.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from common import DEFAULT_DATA_DIR, read_conll

from nerserve.tagger.casing import (
    CaseRouter,
    has_upper,
    is_sentence_case,
    lowercase_capitalised,
    recase_sentences,
    with_entities_added,
)
from nerserve.tagger.marginals import ScoredTags
from nerserve.tagger.pipeline import process_pipeline
from nerserve.tagger.runtime import OnnxTagger, viterbi
from nerserve.tagger.tags import entity_spans, score

CASES = ("as_written", "title", "mixed")
BATCH = 32


def lowercase_words_only(extra: ScoredTags, words: list[str]) -> ScoredTags:
    """extra without the entities that hold an upper-case letter."""
    tags = list(extra.tags)
    for span in entity_spans(extra.tags):
        if any(has_upper(word) for word in words[span.start : span.end]):
            tags[span.start : span.end] = ["O"] * (span.end - span.start)
    return ScoredTags(tags, extra.scores)


class ThresholdRouter(CaseRouter):
    """The typed network's entities joined at another score."""

    def __init__(self, *taggers, min_score: float):
        super().__init__(*taggers)
        self.min_score = min_score

    def _cased(self, batch, call):
        return [with_entities_added(base, extra, self.min_score)
                for base, extra in zip(call(self.cased, batch), self.typed.tag_scored(batch), strict=True)]


class LowercaseOnlyRouter(CaseRouter):
    """Only the typed network's entities of words with no upper-case letter joined."""

    def _cased(self, batch, call):
        return [with_entities_added(base, lowercase_words_only(extra, words))
                for words, base, extra in zip(batch, call(self.cased, batch), self.typed.tag_scored(batch), strict=True)]


class AveragedRouter(CaseRouter):
    """The typed network as one more member of the cased ensemble, weighted
    `weight` against the cased networks' 3: emissions and CRF averaged."""

    def __init__(self, *taggers, weight: float):
        super().__init__(*taggers)
        self.weight = weight

    def mean(self, cased: np.ndarray, typed: np.ndarray) -> np.ndarray:
        return (3 * cased + self.weight * typed) / (3 + self.weight)

    def _cased(self, batch, call):
        crf = [self.mean(getattr(self.cased, name), getattr(self.typed, name))
               for name in ("transitions", "start", "end")]
        tagged = []
        for i in range(0, len(batch), BATCH):
            part = batch[i : i + BATCH]
            lengths = np.array([len(words) for words in part])
            paths = viterbi(self.mean(self.cased.emissions(part), self.typed.emissions(part)), lengths, *crf)
            tagged += [[self.vocab.tags[t] for t in path[:n]] for path, n in zip(paths, lengths, strict=True)]
        return tagged


class SentenceCaseUnionRouter(CaseRouter):
    """Sentence case to the caseless networks, with the cased networks'
    entities (scored 0.5 or more) that overlap none of theirs."""

    def _route(self, sentences, call):
        return [with_entities_added(result, self.cased.tag_scored([words])[0]) if is_sentence_case(words) else result
                for words, result in zip(sentences, super()._route(sentences, call), strict=True)]


def f1s(tag: Callable[[list[list[str]]], list[list[str]]], gold: list[list[str]],
        recased: dict[str, list[list[str]]], cases=CASES) -> str:
    return " / ".join(f"{score(gold, tag(recased[case])).overall.f1:.2f}" for case in cases)


def found(words: list[list[str]], gold: list[list[str]], predicted: list[list[str]]) -> dict[str, str]:
    """Recall among the gold entities written in lowercase and among the rest."""
    hits, totals = {"lowercased": 0, "as written": 0}, {"lowercased": 0, "as written": 0}
    for sentence, gold_tags, tags in zip(words, gold, predicted, strict=True):
        spans = {(s.start, s.end, s.type) for s in entity_spans(tags)}
        for s in entity_spans(gold_tags):
            kind = "as written" if any(has_upper(w) for w in sentence[s.start : s.end]) else "lowercased"
            totals[kind] += 1
            hits[kind] += (s.start, s.end, s.type) in spans
    return {kind: f"{100 * hits[kind] / totals[kind]:.2f}% of {totals[kind]:,}" for kind in totals}


def seconds(tag: Callable[[list[list[str]]], object], sentences: list[list[str]], runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        tag(sentences)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def tagger_costs(model: Path) -> str:
    router = process_pipeline(model).tagger
    test = [s.words for s in read_conll(DEFAULT_DATA_DIR / "test.txt")]
    return (f"cased {seconds(router.cased.tag_scored, test):.2f} s, typed {seconds(router.typed.tag_scored, test):.2f} s, "
            f"caseless {seconds(router.caseless.tag_scored, [lowercase_capitalised(w) for w in test]):.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cased", type=Path, default=Path(".cache/previous_crf"))
    parser.add_argument("--caseless", type=Path, default=Path("results/crf/caseless"))
    parser.add_argument("--typed", type=Path, nargs="+", default=[Path("runs/typed-dev/out")])
    parser.add_argument("--model", type=Path, default=Path("results/crf"), help="the committed model, for the costs")
    args = parser.parse_args()
    sentences = read_conll(DEFAULT_DATA_DIR / "valid.txt")
    gold = [s.tags for s in sentences]
    recased = {case: recase_sentences([(s.words, s.tags) for s in sentences], case)
               for case in (*CASES, "sentence")}
    cased, caseless = OnnxTagger(args.cased), OnnxTagger(args.caseless)
    print(f"dev F1: {' / '.join(CASES)}")
    for directory in args.typed:
        typed = OnnxTagger(directory)
        print(f"{directory}: alone {f1s(typed.tag, gold, recased)}; "
              f"routed {f1s(CaseRouter(cased, caseless, typed).tag, gold, recased)}")
    taggers = (cased, caseless, OnnxTagger(args.typed[0]))
    rules = {
        "committed: entities scored 0.5 or more": CaseRouter(*taggers),
        "scored 0.3 or more": ThresholdRouter(*taggers, min_score=0.3),
        "scored 0.7 or more": ThresholdRouter(*taggers, min_score=0.7),
        "0.5 or more, of words with no capital": LowercaseOnlyRouter(*taggers),
        "emissions averaged, typed 1 against 3": AveragedRouter(*taggers, weight=1),
        "emissions averaged, typed 3 against 3": AveragedRouter(*taggers, weight=3),
    }
    for name, router in rules.items():
        print(f"{name}: {f1s(router.tag, gold, recased)}")
    print("sentence case, dev F1 as written / sentence: committed "
          f"{f1s(rules['committed: entities scored 0.5 or more'].tag, gold, recased, ('as_written', 'sentence'))}; "
          f"with the cased entities {f1s(SentenceCaseUnionRouter(*taggers).tag, gold, recased, ('as_written', 'sentence'))}")
    print("mixed case, entities found (recall), committed rule:",
          found(recased["mixed"], gold, rules["committed: entities scored 0.5 or more"].tag(recased["mixed"])),
          "typed network alone:", found(recased["mixed"], gold, taggers[2].tag(recased["mixed"])))
    print(f"{args.model}, tag_scored on CoNLL's test sentences:", tagger_costs(args.model))


if __name__ == "__main__":
    main()
