"""How well the entity scores are calibrated, from raw text through the API.

    python bench/calibration.py [--model results/crf]  # writes bench/results/calibration.json, bench/calibration.png

Each CoNLL-2003 dev and test sentence, its words joined by spaces, goes through
serve.py's model_api (syntok tokenization, the lean runtime, the temperature in
the model's calibration.json). A predicted entity is right when a gold entity
has exactly its character span and type. Prints the expected calibration error
over 10 equal-width bins, precision and recall of the entities kept at
min_score 0.5, 0.7 and 0.9, and draws the reliability diagram; then the same
figures on test in each casing of nerserve.tagger.casing.CASINGS (the words
recased, then joined), as people type text.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from common import ROOT, machine, pyplot, write_json

import serve
from nerserve.tagger import files
from nerserve.tagger.casing import CASINGS, recase_sentences
from nerserve.tagger.tags import entity_spans
from nerserve.tagger.training.calibration import expected_calibration_error
from nerserve.tagger.training.data import DEFAULT_DATA_DIR, read_conll

SPLITS = {"dev": "valid.txt", "test": "test.txt"}
THRESHOLDS = (0.5, 0.7, 0.9)
BINS = 10
FIGURE = ROOT / "bench" / "calibration.png"


def gold_entities(words: list[str], tags: list[str]) -> set[tuple[int, int, str]]:
    """(start, end, type) character spans of the gold entities in " ".join(words)."""
    starts = np.cumsum([0] + [len(w) + 1 for w in words[:-1]])
    return {(int(starts[s.start]), int(starts[s.end - 1]) + len(words[s.end - 1]), s.type)
            for s in entity_spans(tags)}


def scored_entities(model_api: serve.ModelApi, path: Path, casing: str = "as_written"
                    ) -> tuple[np.ndarray, np.ndarray, int]:
    """Every predicted entity's score and whether it is right; and how many
    gold entities there are. The sentences are written in `casing`."""
    pairs = [(s.words, s.tags) for s in read_conll(path)]
    sentences = [(words, tags) for words, (_, tags) in zip(recase_sentences(pairs, casing), pairs, strict=True)]
    results = model_api([" ".join(words) for words, _ in sentences])
    scores, correct, gold_count = [], [], 0
    for (words, tags), result in zip(sentences, results, strict=True):
        gold = gold_entities(words, tags)
        gold_count += len(gold)
        for entity in result["entities"]:
            scores.append(entity["score"])
            correct.append((entity["start"], entity["end"], entity["type"]) in gold)
    return np.array(scores), np.array(correct), gold_count


def reliability(scores: np.ndarray, correct: np.ndarray) -> list[dict]:
    """Per score bin: how many entities, their mean score, and the share that is right."""
    which = np.minimum((scores * BINS).astype(int), BINS - 1)
    return [{"bin": f"{i / BINS:.1f}-{(i + 1) / BINS:.1f}", "entities": int((which == i).sum()),
             "mean_score": float(scores[which == i].mean()), "accuracy": float(correct[which == i].mean())}
            for i in range(BINS) if (which == i).any()]


def summarize(scores: np.ndarray, correct: np.ndarray, gold_count: int) -> dict:
    kept = {t: scores >= t for t in THRESHOLDS}
    return {
        "entities": len(scores), "gold_entities": gold_count,
        "precision": float(correct.mean()), "recall": float(correct.sum() / gold_count),
        "ece": expected_calibration_error(scores, correct, BINS),
        "at_threshold": {str(t): {"kept": int(k.sum()), "precision": float(correct[k].mean()),
                                  "recall": float(correct[k].sum() / gold_count)} for t, k in kept.items()},
        "reliability": reliability(scores, correct),
    }


def draw(figures: dict, temperature: float) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfect calibration")
    for split, summary in figures.items():
        bins = summary["reliability"]
        ax.plot([b["mean_score"] for b in bins], [b["accuracy"] for b in bins], marker="o",
                label=f"{split} (ECE {summary['ece']:.3f}, {summary['entities']:,} entities)")
    ax.set(xlabel="entity score (mean in each of 10 bins)", ylabel="share of entities exactly right",
           title=f"Reliability of the entity scores (T = {temperature:g})", xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(FIGURE, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=files.COMMITTED_MODEL_DIR)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    args = parser.parse_args()
    model_api = serve.get_model_api(args.model, "onnx")
    figures = {split: summarize(*scored_entities(model_api, args.data_dir / name)) for split, name in SPLITS.items()}
    temperature = files.temperature(args.model)
    draw(figures, temperature)
    print(f"temperature {temperature:g} ({args.model / 'calibration.json'})")
    for split, f in figures.items():
        print(f"{split}: {f['entities']:,} entities, precision {f['precision']:.4f}, recall {f['recall']:.4f}, "
              f"ECE {f['ece']:.4f}")
        for t, at in f["at_threshold"].items():
            print(f"  min_score {t}: {at['kept']:,} kept, precision {at['precision']:.4f}, recall {at['recall']:.4f}")
    by_casing = {casing: summarize(*scored_entities(model_api, args.data_dir / SPLITS["test"], casing))
                 for casing in CASINGS}
    print("test by casing: ECE, and the precision of the entities scored 0.9 or more")
    for casing, f in by_casing.items():
        print(f"  {casing}: ECE {f['ece']:.4f}, precision at 0.9 {f['at_threshold']['0.9']['precision']:.4f}")
    result = {**machine(), "model": str(args.model), "version": model_api.info.get("version"),
              "temperature": temperature, "bins": BINS, "splits": figures, "test_by_casing": by_casing}
    print(f"wrote {write_json('calibration.json', result)} and {FIGURE}")


if __name__ == "__main__":
    main()
