"""A user's data set for a new type, simulated from CoNLL-2003:
`python -m nerserve.tagger.training.new_type --out runs/misc-user [--type MISC] [--sentences 1000] [--seed 0]`.

Writes train.txt, a seeded choice of CoNLL's training sentences, and valid.txt,
CoNLL's dev set, labelled as a user who only cares about the new type would
label them: that type kept, every other type made O. (MODEL.md, "Adding a type
without losing the four", trains on it with and without `--keep-types`.)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from nerserve.tagger.training.data import DEFAULT_DATA_DIR, Sentence, read_conll, summary, write_conll
from nerserve.tagger.training.keep_types import types_of, without

NEW_TYPE = "MISC"
SENTENCES = 1000
SEED = 0


def only(sentences: list[Sentence], kind: str) -> list[Sentence]:
    """The sentences labelled for `kind` alone."""
    return without(sentences, types_of(sentences) - {kind})


def make(out: Path, kind: str = NEW_TYPE, count: int = SENTENCES, seed: int = SEED,
         conll: Path = DEFAULT_DATA_DIR) -> None:
    train_set = read_conll(conll / "train.txt")
    chosen = sorted(np.random.default_rng(seed).choice(len(train_set), size=count, replace=False).tolist())
    out.mkdir(parents=True, exist_ok=True)
    user_train = only([train_set[i] for i in chosen], kind)
    write_conll(out / "train.txt", user_train)
    write_conll(out / "valid.txt", only(read_conll(conll / "valid.txt"), kind))
    print(summary(str(out / "train.txt"), user_train))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--type", default=NEW_TYPE, help="the type kept; every other type becomes O")
    parser.add_argument("--sentences", type=int, default=SENTENCES, help="how many training sentences")
    parser.add_argument("--seed", type=int, default=SEED, help="seeds the choice of sentences")
    args = parser.parse_args()
    make(args.out, args.type, args.sentences, args.seed)


if __name__ == "__main__":
    main()
