"""What cutting long sequences into windows (nerserve.tagger.windows) costs in F1, on CoNLL-2003 dev.

    python bench/windowing_f1.py [--model results/crf]

Rows: dev sentences as they are, tagged whole and through serving's windows
(no dev sentence is long enough to be cut, so both must agree); dev sentences
cut into small windows, with and without context, to show what the context at a
cut buys; and runs of consecutive dev sentences joined into sequences of about
1,000 tokens (a long text the segmenter could not split), tagged whole and in
serving's windows. Lean runtime, one thread.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common import machine, write_json

from nerserve.tagger import files
from nerserve.tagger.runtime import OnnxTagger
from nerserve.tagger.tags import score
from nerserve.tagger.training.data import DEFAULT_DATA_DIR, read_conll
from nerserve.tagger.windows import CONTEXT, MAX_TOKENS, cut, stitch_tagged, windows

JOINED_TOKENS = 1000


def tag_in_windows(tagger: OnnxTagger, sequences: list[list[str]], max_tokens: int, context: int) -> list[list[str]]:
    parts = windows([len(s) for s in sequences], max_tokens, context)
    return [t.tags for t in stitch_tagged(parts, tagger.tag_scored(cut(sequences, parts)), len(sequences))]


def joined(words: list[list[str]], tags: list[list[str]]) -> tuple[list[list[str]], list[list[str]]]:
    """Consecutive sentences joined into sequences of at least JOINED_TOKENS tokens."""
    sequences, sequence_tags = [[]], [[]]
    for w, t in zip(words, tags, strict=True):
        if len(sequences[-1]) >= JOINED_TOKENS:
            sequences.append([])
            sequence_tags.append([])
        sequences[-1].extend(w)
        sequence_tags[-1].extend(t)
    return sequences, sequence_tags


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=files.COMMITTED_MODEL_DIR)
    args = parser.parse_args()
    sentences = read_conll(DEFAULT_DATA_DIR / "valid.txt")
    words, gold = [s.words for s in sentences], [s.tags for s in sentences]
    tagger = OnnxTagger(args.model)
    rows = []

    def row(sequences: str, windowing: str, predicted: list[list[str]], truth: list[list[str]]) -> None:
        rows.append({"sequences": sequences, "windows": windowing, "dev_f1": score(truth, predicted).overall.f1})
        print(f"| {sequences} | {windowing} | {rows[-1]['dev_f1']:.2f} |", flush=True)

    print("| sequences | windows (tokens, context) | dev F1 |\n|---|---|---|")
    whole = tagger.tag(words)
    row("dev sentences", "none", whole, gold)
    served = tag_in_windows(tagger, words, MAX_TOKENS, CONTEXT)
    row("dev sentences", f"serving's ({MAX_TOKENS}, {CONTEXT})", served, gold)
    for max_tokens, context in ((16, 0), (16, 4), (32, 8)):
        row("dev sentences", f"({max_tokens}, {context})", tag_in_windows(tagger, words, max_tokens, context), gold)
    long_words, long_gold = joined(words, gold)
    label = f"{len(long_words)} runs of sentences joined, ≥{JOINED_TOKENS} tokens each"
    row(label, "none", tagger.tag(long_words), long_gold)
    for max_tokens, context in ((MAX_TOKENS, 0), (MAX_TOKENS, CONTEXT)):
        row(label, f"({max_tokens}, {context})", tag_in_windows(tagger, long_words, max_tokens, context), long_gold)
    results = {"machine": machine(), "sentences": len(words), "longest": max(map(len, words)),
               "cut_by_serving": sum(len(w) > MAX_TOKENS for w in words), "served_equals_whole": served == whole,
               "rows": rows}
    print(f"{results['cut_by_serving']} dev sentences cut by serving; its tags equal the whole sentences' tags: "
          f"{results['served_equals_whole']}")
    print(f"written to {write_json('windowing_f1.json', results)}")


if __name__ == "__main__":
    main()
