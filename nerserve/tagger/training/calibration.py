"""One temperature that calibrates the entity scores, and how it is fitted.

    python -m nerserve.tagger.training.calibration --fit-on results/crf --write-to results/crf [--data valid.txt]

The CRF's scores are divided by the temperature before its marginals are
taken (nerserve.tagger.marginals.EntityScorer); the tags do not change, since dividing
every path score by the same T keeps the best path best. T is chosen to
minimise the negative log-likelihood of "this predicted entity is right"
(exact span and type) over a split the model was not trained on, from the
CoNLL tokens. Fit on a model trained without that split: when the served
model is trained on train + dev, fit on a train-only model of the same
recipe and write the result into the served model's directory.

calibration.json (nerserve.tagger.files) holds the temperature and where it came from;
meta.json is rewritten with it. Numpy and ONNX Runtime only, no TensorFlow:
it lies in nerserve.tagger.training because it reads the CoNLL data and fits the model.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from nerserve.tagger import files
from nerserve.tagger.casing import CASINGS, recase_sentences
from nerserve.tagger.marginals import EntityScorer
from nerserve.tagger.runtime import OnnxTagger
from nerserve.tagger.tags import entity_spans
from nerserve.tagger.training.data import DEFAULT_DATA_DIR, Sentence, read_conll
from nerserve.tagger.training.export import write_meta
from nerserve.tagger.vocab import batches_by_length


def negative_log_likelihood(scores: np.ndarray, correct: np.ndarray) -> float:
    """Mean binary cross-entropy of the scores against whether each entity is right."""
    scores = np.clip(scores, 1e-12, 1 - 1e-12)
    return float(-np.mean(np.where(correct, np.log(scores), np.log1p(-scores))))


def expected_calibration_error(scores: np.ndarray, correct: np.ndarray, bins: int = 10) -> float:
    """Sum over equal-width score bins of (share of entities) x |accuracy - mean score|."""
    which = np.minimum((np.asarray(scores) * bins).astype(int), bins - 1)
    error = 0.0
    for i in range(bins):
        inside = which == i
        if inside.any():
            error += inside.mean() * abs(correct[inside].mean() - scores[inside].mean())
    return error


def fit_temperature(nll_at: Callable[[float], float], low: float = 0.25, high: float = 4.0,
                    tolerance: float = 1e-3) -> float:
    """The temperature in [low, high] that minimises nll_at(T), by golden-section
    search over log T (the likelihood is smooth, with one minimum there)."""
    ratio = (math.sqrt(5) - 1) / 2
    a, b = math.log(low), math.log(high)
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    at_c, at_d = nll_at(math.exp(c)), nll_at(math.exp(d))
    while b - a > tolerance:
        if at_c <= at_d:
            b, d, at_d = d, c, at_c
            c = b - ratio * (b - a)
            at_c = nll_at(math.exp(c))
        else:
            a, c, at_c = c, d, at_d
            d = a + ratio * (b - a)
            at_d = nll_at(math.exp(d))
    return math.exp((a + b) / 2)


def fit(model: Path, data_file: Path, cases: tuple[str, ...] = ("as_written",)) -> dict:
    """Fit the temperature of `model` on a CoNLL file, its sentences written in
    each of `cases` (nerserve.tagger.casing.CASINGS: a caseless model sees only
    lower and upper case text); what calibration.json holds."""
    pairs = [(s.words, s.tags) for s in read_conll(data_file)]
    sentences = [Sentence(words, tags) for case in cases
                 for words, (_, tags) in zip(recase_sentences(pairs, case), pairs, strict=True)]
    tagger = OnnxTagger(model)
    # The network runs once; only the CRF's marginals change with T.
    batches = []
    correct = []
    for positions in batches_by_length([s.words for s in sentences], tagger.batch_size):
        emissions = tagger.emissions([sentences[i].words for i in positions])
        lengths = np.array([len(sentences[i].words) for i in positions])
        paths = tagger.best_paths(emissions, lengths)
        batches.append((emissions, lengths, paths))
        for i, path in zip(positions, paths, strict=True):
            gold = set(entity_spans(sentences[i].tags))
            correct += [span in gold for span in entity_spans([tagger.vocab.tags[t] for t in path])]
    correct = np.array(correct)

    def scores_at(temperature: float) -> np.ndarray:
        scorer = EntityScorer(tagger.vocab.tags, tagger.transitions, tagger.start, tagger.end, temperature)
        scores = np.concatenate([s for batch in batches for s in scorer.score(*batch)])
        return scores[~np.isnan(scores)]  # in the order of the spans above

    temperature = fit_temperature(lambda t: negative_log_likelihood(scores_at(t), correct))
    before, after = scores_at(1.0), scores_at(temperature)
    return {
        "temperature": round(temperature, 4),
        "fitted_on": {
            "model": str(model), "data": f"{data_file.parent.name}/{data_file.name}", "cases": list(cases),
            "entities": len(correct),
            "accuracy": round(float(correct.mean()), 4),
            "nll": {"at_1": round(negative_log_likelihood(before, correct), 4),
                    "fitted": round(negative_log_likelihood(after, correct), 4)},
            "ece": {"at_1": round(expected_calibration_error(before, correct), 4),
                    "fitted": round(expected_calibration_error(after, correct), 4)},
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fit-on", type=Path, default=files.COMMITTED_MODEL_DIR,
                        help="the model whose predictions are scored (not trained on --data)")
    parser.add_argument("--write-to", type=Path, default=files.COMMITTED_MODEL_DIR, help="the model that gets calibration.json")
    # Never the test set: its figures must stay a fair check (bench/calibration.py).
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR / "valid.txt",
                        help="CoNLL file the --fit-on model was not trained on")
    parser.add_argument("--cases", nargs="+", choices=CASINGS, default=["as_written"],
                        help="how the sentences are written (nerserve.tagger.casing.CASINGS)")
    args = parser.parse_args()
    calibration = fit(args.fit_on, args.data, tuple(args.cases))
    files.write_json(args.write_to, files.CALIBRATION, calibration)
    # The temperature changes the model's version and what /api/model reports.
    write_meta(args.write_to)
    print(json.dumps(calibration, indent=2))
    print(f"wrote {args.write_to / files.CALIBRATION} and {files.META}")


if __name__ == "__main__":
    main()
