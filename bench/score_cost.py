"""What the entity scores cost: the lean runtime's tags alone (Viterbi) against
tags and scores (Viterbi, then forward-backward), side by side in one process, one thread.

    python bench/score_cost.py [--model results/crf] [--repeats 5]  # writes bench/results/score_cost.json

Prints the batched throughput on the CoNLL-2003 test set and the latency of
one 15-word sentence, medians of --repeats interleaved runs, and the differences.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import call_times_ms, machine, throughput, write_json

from model import files
from model.runtime import OnnxTagger
from model.training.data import DEFAULT_DATA_DIR, read_conll

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
    ways = {"tags": tagger.tag, "tags + scores": tagger.tag_scored}
    figures: dict[str, dict[str, list[float]]] = {n: {"tok/s": [], "ms": []} for n in ways}
    for tag in ways.values():  # warm-up: every batch shape once
        tag(sentences)
    for _ in range(args.repeats):
        for name, tag in ways.items():
            figures[name]["tok/s"].append(throughput(tag, sentences, tokens))
            figures[name]["ms"].append(statistics.median(call_times_ms(tag, [latency_sentence], LATENCY_CALLS)))
    medians = {n: {k: statistics.median(v) for k, v in f.items()} for n, f in figures.items()}
    plain, scored = medians["tags"], medians["tags + scores"]
    result = {
        **machine(), "repeats": args.repeats, "tokens": tokens, "latency_words": LATENCY_WORDS,
        "medians": medians, "throughput_drop": 1 - scored["tok/s"] / plain["tok/s"],
        "latency_added_ms": scored["ms"] - plain["ms"],
    }
    print(f"test set, {tokens:,} tokens; medians of {args.repeats} runs; ONNX Runtime, one thread")
    print(f"{'':<14} {'batched tok/s':>14} {f'{LATENCY_WORDS}-word sentence p50 ms':>24}")
    for name, m in medians.items():
        print(f"{name:<14} {m['tok/s']:>14,.0f} {m['ms']:>24.3f}")
    print(f"scores cost {result['latency_added_ms']:.3f} ms a 15-word sentence and "
          f"{100 * result['throughput_drop']:.1f}% of the batched throughput")
    print(f"wrote {write_json('score_cost.json', result)}")


if __name__ == "__main__":
    main()
