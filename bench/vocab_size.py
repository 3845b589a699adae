"""How many GloVe words beyond the training words should the model keep?

The word vectors are frozen, so one trained model can be scored with its
vocabulary cut at any size: words past the cut become the unknown word. Prints
dev F1, the share of dev tokens left unknown, and the size of the vectors.

    PYTHONPATH=. python bench/vocab_size.py [--model results/crf]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nerserve.tagger import files
from nerserve.tagger.runtime import OnnxTagger
from nerserve.tagger.tags import score
from nerserve.tagger.training.data import DEFAULT_DATA_DIR, read_conll
from nerserve.tagger.vocab import UNK

CUTS = (0, 10_000, 25_000, 50_000, 100_000)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", type=Path, default=files.COMMITTED_MODEL_DIR)
    args = parser.parse_args()
    tagger = OnnxTagger(args.model)
    words = tagger.vocab.words
    training = {w.lower() for s in read_conll(DEFAULT_DATA_DIR / "train.txt") for w in s.words}
    first_extra = 2 + sum(w in training for w in words)  # training words come first
    dev = read_conll(DEFAULT_DATA_DIR / "valid.txt")
    dev_words = [w.lower() for s in dev for w in s.words]
    print(f"{'GloVe words kept':>16} {'vocabulary':>10} {'dev tokens unknown':>18} {'dev F1':>7} {'vectors MB':>10}")
    for cut in CUTS:
        size = min(first_extra + cut, len(words))
        tagger.vocab.word_index = {w: i for i, w in enumerate(words[:size])}
        tagger.vocab.word_index[UNK] = 1
        unknown = sum(w not in tagger.vocab.word_index for w in dev_words) / len(dev_words)
        f1 = score([s.tags for s in dev], tagger.tag([s.words for s in dev])).overall.f1
        megabytes = size * tagger.word_vectors.shape[1] * tagger.word_vectors.itemsize / 1e6
        print(f"{cut:>16,} {size:>10,} {unknown:>17.2%} {f1:>7.2f} {megabytes:>10.1f}")


if __name__ == "__main__":
    main()
