"""What the entity scores cost: the lean runtime's tags alone (Viterbi) against
tags and scores (Viterbi, then forward-backward), side by side in one process, one thread.

    python bench/score_cost.py [--model results/crf] [--repeats 5]  # writes bench/results/score_cost.json

Prints the batched throughput on the CoNLL-2003 test set and the latency of
one 15-word sentence, medians of --repeats interleaved runs, and the differences.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common import machine, print_side_by_side, side_by_side, write_json

from nerserve.tagger import files
from nerserve.tagger.runtime import OnnxTagger
from nerserve.tagger.training.data import DEFAULT_DATA_DIR, read_conll

LATENCY_WORDS = 15  # the first test sentence of this length, as in model_speed.py
LATENCY_CALLS = 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", type=Path, default=files.COMMITTED_MODEL_DIR)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    sentences = [s.words for s in read_conll(DEFAULT_DATA_DIR / "test.txt")]
    tokens = sum(len(s) for s in sentences)
    latency_sentence = next(words for words in sentences if len(words) == LATENCY_WORDS)
    tagger = OnnxTagger(args.model, threads=1)
    medians = side_by_side({"tags": tagger.tag, "tags + scores": tagger.tag_scored}, sentences, latency_sentence,
                           args.repeats, LATENCY_CALLS)
    plain, scored = medians["tags"], medians["tags + scores"]
    result = {
        **machine(), "repeats": args.repeats, "tokens": tokens, "latency_words": LATENCY_WORDS,
        "medians": medians, "throughput_drop": 1 - scored["tok/s"] / plain["tok/s"],
        "latency_added_ms": scored["ms"] - plain["ms"],
    }
    print_side_by_side(medians, tokens, args.repeats, LATENCY_WORDS)
    print(f"scores cost {result['latency_added_ms']:.3f} ms a 15-word sentence and "
          f"{100 * result['throughput_drop']:.1f}% of the batched throughput")
    print(f"wrote {write_json('score_cost.json', result)}")


if __name__ == "__main__":
    main()
