"""Score a trained model: `python -m nerserve.tagger.training.evaluate --split test [--model results/crf]`.

Prints a conlleval-style table for a split of the data directory (train,
valid, test) or for any CoNLL file (--file). `--case` recases the words first
(nerserve.tagger.casing.CASINGS: lower, upper, sentence, title, mixed), to score the
model on text without normal case. Scores of the dev
and test splits are also written to <model>/metrics.json (as written under
"dev" and "test", recased under "dev_lower", "test_upper" and so on), and the
F1 as written to meta.json, which the service reports.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

from nerserve.tagger import files
from nerserve.tagger.backends import BACKENDS, load_tagger
from nerserve.tagger.casing import CASINGS, recase_sentences
from nerserve.tagger.tags import Report, format_report, score
from nerserve.tagger.training.data import DEFAULT_DATA_DIR, read_conll
from nerserve.tagger.training.export import write_meta

METRICS_KEYS = {"valid": "dev", "test": "test"}


def evaluate(directory: Path, path: Path, backend: str = "onnx", case: str = "as_written") -> Report:
    sentences = read_conll(path)
    recased = recase_sentences([(s.words, s.tags) for s in sentences], case)
    predicted = load_tagger(directory, backend).tag(recased)
    return score([s.tags for s in sentences], predicted)


def metrics_key(split: str, case: str) -> str:
    """Where a split's scores go in metrics.json: "dev", "test_lower", ..."""
    return METRICS_KEYS[split] if case == "as_written" else f"{METRICS_KEYS[split]}_{case}"


def record(directory: Path, split: str, path: Path, report: Report, case: str = "as_written") -> None:
    """Keep the split's figures in metrics.json beside the model (and the F1 in meta.json)."""
    metrics = files.read_json(directory, files.METRICS)
    training = files.read_json(directory, files.TRAINING)
    # An ensemble lists its members; one network's training.json is its own (as in export.write_meta).
    members = training.get("members", [training] if training else [])
    trained_on = {name for member in members for name in member.get("data", {}).get("files", [])}
    metrics[metrics_key(split, case)] = {
        "file": path.name,
        # False for dev when the networks were trained on train + dev: then only test is a fair measure.
        "held_out": path.name not in trained_on,
        "f1": round(report.overall.f1, 2),
        "precision": round(report.overall.precision, 2),
        "recall": round(report.overall.recall, 2),
        "token_accuracy": round(report.token_accuracy, 2),
        "by_type": {t: {k: round(v, 2) for k, v in asdict(s).items()} for t, s in report.by_type.items()},
    }
    files.write_json(directory, files.METRICS, metrics)
    write_meta(directory)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=files.COMMITTED_MODEL_DIR, help="trained model directory")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--split", choices=["train", "valid", "test"], default="valid")
    source.add_argument("--file", type=Path, help="any CoNLL file (2 or 4 columns)")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--backend", choices=BACKENDS, default="onnx")
    parser.add_argument("--case", choices=CASINGS, default="as_written", help="recase the words before tagging")
    args = parser.parse_args()
    path = args.file or args.data_dir / f"{args.split}.txt"
    report = evaluate(args.model, path, args.backend, args.case)
    print(f"{path}, {args.case.replace('_', ' ')} ({args.backend} backend)")
    print(format_report(report))
    if args.file is None and args.split in METRICS_KEYS:
        record(args.model, args.split, path, report, args.case)


if __name__ == "__main__":
    main()
