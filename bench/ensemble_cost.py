"""What the ensemble costs: the committed model against its first network alone,
side by side in one process, the lean runtime with one thread.

    python bench/ensemble_cost.py [--model results/crf] [--repeats 5]  # writes bench/results/ensemble_cost.json

The single network is cut out of the model directory (its weights, the shared
vocabulary and vectors) into a temporary one. Prints the batched throughput on
the CoNLL-2003 test set and the latency of one 15-word sentence, medians of
--repeats interleaved runs, and the ratios.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from common import machine, print_side_by_side, side_by_side, write_json

from nerserve.tagger import files
from nerserve.tagger.runtime import OnnxTagger
from nerserve.tagger.training.data import DEFAULT_DATA_DIR, read_conll
from nerserve.tagger.training.export import export

LATENCY_WORDS = 15  # the first test sentence of this length, as in model_speed.py
LATENCY_CALLS = 500


def first_member(model: Path, target: Path) -> Path:
    """A model directory holding only the first network of `model`."""
    for name in (files.CONFIG, *files.SHARED_FILES):
        shutil.copy(model / name, target / name)
    files.write_weights(target, files.read_weights(model)[:1])
    export(target, data_dir=None, saved_model=False)
    return target


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", type=Path, default=files.COMMITTED_MODEL_DIR)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    sentences = [s.words for s in read_conll(DEFAULT_DATA_DIR / "test.txt")]
    tokens = sum(len(s) for s in sentences)
    latency_sentence = next(words for words in sentences if len(words) == LATENCY_WORDS)
    with tempfile.TemporaryDirectory() as single_dir:
        taggers = {"one network": OnnxTagger(first_member(args.model, Path(single_dir))),
                   "ensemble": OnnxTagger(args.model)}
        medians = side_by_side({name: tagger.tag for name, tagger in taggers.items()}, sentences, latency_sentence,
                               args.repeats, LATENCY_CALLS)
    one, ensemble = medians["one network"], medians["ensemble"]
    result = {
        **machine(), "repeats": args.repeats, "tokens": tokens, "latency_words": LATENCY_WORDS,
        "members": files.count_members(args.model), "medians": medians,
        "batched_time_ratio": one["tok/s"] / ensemble["tok/s"], "latency_ratio": ensemble["ms"] / one["ms"],
    }
    print_side_by_side(medians, tokens, args.repeats, LATENCY_WORDS)
    print(f"the ensemble of {result['members']}: {result['batched_time_ratio']:.2f}x the batched time, "
          f"{result['latency_ratio']:.2f}x the latency")
    print(f"wrote {write_json('ensemble_cost.json', result)}")


if __name__ == "__main__":
    main()
