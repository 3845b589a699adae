"""Where OnnxTagger's time goes at each batch size: encode, word-vector gather,
ONNX Runtime run, Viterbi, tag lookup; how much padding each batch size adds;
and, as a what-if, batches capped by padded size instead of sentence count.

    python bench/batch_profile.py [--batch-sizes 8 32 128 512] [--repeats 5]

Replays OnnxTagger.tag stage by stage over the CoNLL test set, one thread,
and checks that the tags are the tagger's own. Prints medians over the repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections import defaultdict
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np
from common import machine

from nerserve.tagger import files
from nerserve.tagger.runtime import OnnxTagger, viterbi
from nerserve.tagger.training.data import DEFAULT_DATA_DIR, read_conll
from nerserve.tagger.vocab import batches_by_length

MODEL_DIR = files.COMMITTED_MODEL_DIR
STAGES = ("encode", "gather", "onnx_run", "viterbi", "tags")


def budget_batches(sentences: list[list[str]], word_slots: int) -> list[list[int]]:
    """What-if batching: sorted by length as batches_by_length, but a batch ends
    before its padded size (sentences x longest) would pass `word_slots`."""
    order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
    batches: list[list[int]] = [[]]
    for i in order:
        if batches[-1] and (len(batches[-1]) + 1) * len(sentences[i]) > word_slots:
            batches.append([])
        batches[-1].append(i)
    return batches


def profile_once(tagger: OnnxTagger, sentences: list[list[str]],
                 batches: list[list[int]]) -> tuple[dict, dict, list]:
    """Seconds a stage, padding counts, the slowest batch, and the tags, for one pass."""
    seconds: dict[str, float] = defaultdict(float)
    padded = {"word_slots": 0, "char_slots": 0, "batches": 0, "slowest_ms": 0.0, "slowest_shape": None}
    tags: list[list[str]] = [[] for _ in sentences]
    for indices in batches:
        batch = [sentences[i] for i in indices]
        t0 = time.perf_counter()
        encoded = tagger.vocab.encode(batch)
        t1 = time.perf_counter()
        vectors = tagger.word_vectors[encoded.word_ids].astype(np.float32)
        t2 = time.perf_counter()
        (emissions,) = tagger.session.run(None, {
            "word_vectors": vectors, "char_ids": encoded.char_ids,
            "casing_ids": encoded.casing_ids, "lengths": encoded.lengths,
        })
        t3 = time.perf_counter()
        lengths = np.array([len(s) for s in batch])
        paths = viterbi(emissions, lengths, tagger.transitions, tagger.start, tagger.end)
        t4 = time.perf_counter()
        for i, path, length in zip(indices, paths, lengths, strict=True):
            tags[i] = [tagger.vocab.tags[t] for t in path[:length]]
        t5 = time.perf_counter()
        for stage, (a, b) in zip(STAGES, [(t0, t1), (t1, t2), (t2, t3), (t3, t4), (t4, t5)], strict=True):
            seconds[stage] += b - a
        padded["word_slots"] += encoded.word_ids.size
        padded["char_slots"] += encoded.char_ids.size
        padded["batches"] += 1
        if t3 - t2 > padded["slowest_ms"] / 1000:
            padded["slowest_ms"], padded["slowest_shape"] = 1000 * (t3 - t2), list(encoded.char_ids.shape)
    return seconds, padded, tags


def run_ms(tagger: OnnxTagger, sentences: list[list[str]], repeats: int) -> float:
    """Median ms of the ONNX run alone on one padded batch."""
    encoded = tagger.vocab.encode(sentences)
    feed = {"word_vectors": tagger.word_vectors[encoded.word_ids].astype(np.float32),
            "char_ids": encoded.char_ids, "casing_ids": encoded.casing_ids, "lengths": encoded.lengths}
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        tagger.session.run(None, feed)
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def split_check(tagger: OnnxTagger, sentences: list[list[str]], batch_size: int, repeats: int) -> dict:
    """The batch of the longest sentences at `batch_size`, run whole and as two
    interleaved halves (every other sentence, so both keep its width): if the
    halves take less than the whole, a slot costs more in a bigger batch."""
    batch = [sentences[i] for i in batches_by_length(sentences, batch_size)[-1]]
    whole = run_ms(tagger, batch, repeats)
    halves = run_ms(tagger, batch[0::2], repeats) + run_ms(tagger, batch[1::2], repeats)
    return {"batch_size": batch_size, "sentences": len(batch), "whole_ms": whole, "two_halves_ms": halves}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 32, 128, 512])
    parser.add_argument("--budgets", type=int, nargs="*", default=[2048, 4096],
                        help="what-if: batches capped at this many padded word slots")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model-dir", type=Path, default=MODEL_DIR)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    sentences = [s.words for s in read_conll(DEFAULT_DATA_DIR / "test.txt")]
    tokens = sum(len(s) for s in sentences)
    chars = sum(min(len(w), 32) for s in sentences for w in s)
    tagger = OnnxTagger(args.model_dir, threads=1)
    reference = tagger.tag(sentences)
    strategies = {str(size): batches_by_length(sentences, size) for size in args.batch_sizes}
    strategies |= {f"≤{budget} slots": budget_batches(sentences, budget) for budget in args.budgets}

    runs: dict[str, list[dict]] = defaultdict(list)
    padding: dict[str, dict] = {}
    for _ in range(args.repeats):
        for name, batches in strategies.items():  # interleaved, so drift hits every one alike
            seconds, padded, tags = profile_once(tagger, sentences, batches)
            assert tags == reference, f"batching {name} changed the tags"
            runs[name].append(seconds)
            padding[name] = padded

    rows = []
    print(f"{len(sentences)} sentences, {tokens} tokens; medians of {args.repeats} runs, ms for the whole set")
    print(f"{'batch':>12} {'batches':>7} {'word pad':>8} {'char pad':>8} "
          + " ".join(f"{s:>9}" for s in STAGES) + f" {'total':>8} {'tok/s':>8} {'run µs/slot':>11}  slowest batch (run ms, shape)")
    for size in strategies:
        median = {s: statistics.median(r[s] for r in runs[size]) for s in STAGES}
        total = sum(median.values())
        pad = padding[size]
        row = {
            "batching": size, "batches": pad["batches"],
            "word_padding": pad["word_slots"] / tokens, "char_padding": pad["char_slots"] / chars,
            **{f"{s}_ms": 1000 * median[s] for s in STAGES},
            "total_ms": 1000 * total, "tokens_per_s": tokens / total,
            "onnx_us_per_word_slot": 1e6 * median["onnx_run"] / pad["word_slots"],
        }
        rows.append(row)
        row["slowest_batch_ms"], row["slowest_batch_shape"] = pad["slowest_ms"], pad["slowest_shape"]
        print(f"{size:>12} {row['batches']:>7} {row['word_padding']:>8.2f} {row['char_padding']:>8.2f} "
              + " ".join(f"{row[s + '_ms']:>9.1f}" for s in STAGES)
              + f" {row['total_ms']:>8.1f} {row['tokens_per_s']:>8.0f} {row['onnx_us_per_word_slot']:>11.2f}"
              + f"  {pad['slowest_ms']:.0f} ms {pad['slowest_shape']}")
    split = split_check(tagger, sentences, max(args.batch_sizes), args.repeats)
    print(f"longest batch at {split['batch_size']} ({split['sentences']} sentences): whole {split['whole_ms']:.0f} ms,"
          f" as two interleaved halves {split['two_halves_ms']:.0f} ms")
    if args.json:
        args.json.write_text(json.dumps({**machine(), "repeats": args.repeats, "tokens": tokens,
                                         "sentences": len(sentences), "rows": rows, "split": split}, indent=2))


if __name__ == "__main__":
    main()
