"""Reading CoNLL-style files: one token a line, a blank line between sentences."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nerserve.tagger import files
from nerserve.tagger.tags import entity_spans

# Inside the repository (data/conll2003/README.md says where it comes from).
DEFAULT_DATA_DIR = files.REPOSITORY / "data" / "conll2003"


# Without a valid.txt, this share of train.txt is held out to choose the epoch,
# drawn with a seed of its own: every network trained on the same data (the
# members of an ensemble) is then chosen on the same sentences.
HELD_OUT_SHARE = 0.1
HELD_OUT_SEED = 0


class DataFormatError(ValueError):
    """A line of a data file that is not `word ... tag`."""


@dataclass(frozen=True)
class Sentence:
    words: list[str]
    tags: list[str]


def read_conll(path: str | Path) -> list[Sentence]:
    """Read sentences from a CoNLL file.

    Accepts two-column `word tag` and four-column `word POS chunk tag` lines
    (the tag is always the last column), skips `-DOCSTART-` lines, and does not
    need a trailing newline or a blank line at the end.
    """
    path = Path(path)
    sentences: list[Sentence] = []
    words: list[str] = []
    tags: list[str] = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            columns = line.split()
            if not columns or columns[0] == "-DOCSTART-":
                if words:
                    sentences.append(Sentence(words, tags))
                    words, tags = [], []
                continue
            if len(columns) not in (2, 4):
                raise DataFormatError(
                    f"{path}:{number}: expected 2 or 4 space-separated columns, "
                    f"got {len(columns)}: {line.rstrip()!r}"
                )
            tag = columns[-1]
            if tag != "O" and not (tag[:2] in ("B-", "I-") and len(tag) > 2):
                raise DataFormatError(f"{path}:{number}: tag {tag!r} is not IOB2 (O, B-X or I-X)")
            words.append(columns[0])
            tags.append(tag)
    if words:
        sentences.append(Sentence(words, tags))
    return sentences


def read_training_file(path: str | Path) -> list[Sentence]:
    """The sentences of a training or dev file, which must hold entities: a
    file without any is most likely mislabelled (every tag O, or the tags in
    the wrong column), and would teach the network to find nothing."""
    path = Path(path)
    sentences = read_conll(path)
    if not any(tag != "O" for s in sentences for tag in s.tags):
        with path.open(encoding="utf-8") as lines:
            last = sum(1 for _ in lines)
        raise DataFormatError(f"{path}:{last}: no entities in the file's {len(sentences)} sentences "
                              "(every tag is O; the tag must be the last column, IOB2: B-X, I-X or O)")
    return sentences


def read_splits(data_dir: Path) -> tuple[list[Sentence], list[Sentence], str]:
    """The training and dev sentences of a data directory, and where dev comes
    from: valid.txt, or else a seeded tenth of train.txt held out."""
    if not (data_dir / "train.txt").is_file():
        raise DataFormatError(f"{data_dir}: no train.txt there")
    train_set = read_training_file(data_dir / "train.txt")
    if (data_dir / "valid.txt").exists():
        return train_set, read_training_file(data_dir / "valid.txt"), "valid.txt"
    train_set, dev_set = hold_out(train_set, HELD_OUT_SHARE, HELD_OUT_SEED)
    return train_set, dev_set, f"{len(dev_set)} sentences of train.txt held out (seed {HELD_OUT_SEED})"


def hold_out(sentences: list[Sentence], share: float, seed: int) -> tuple[list[Sentence], list[Sentence]]:
    """A seeded random `share` of the sentences (at least one) apart from the
    rest; both keep the file's order."""
    count = max(1, round(share * len(sentences)))
    chosen = set(np.random.default_rng(seed).choice(len(sentences), size=count, replace=False).tolist())
    kept = [s for i, s in enumerate(sentences) if i not in chosen]
    return kept, [s for i, s in enumerate(sentences) if i in chosen]


def entity_lengths(sentences: Iterable[Sentence]) -> dict[str, Counter]:
    """For each entity type, how many of its entities have each length in words."""
    lengths: dict[str, Counter] = {}
    for sentence in sentences:
        for span in entity_spans(sentence.tags):
            lengths.setdefault(span.type, Counter())[span.end - span.start] += 1
    return dict(sorted(lengths.items()))


def summary(name: str, sentences: list[Sentence]) -> str:
    """Sentences, tokens, entities by type, and the types seen only as single
    words: a model cannot learn an I- tag it never saw, so it will tag such a
    type one word at a time."""
    lengths = entity_lengths(sentences)
    by_type = ", ".join(f"{kind} {sum(counts.values()):,}" for kind, counts in lengths.items())
    single = [kind for kind, counts in lengths.items() if set(counts) == {1}]
    return (f"{name}: {len(sentences):,} sentences, {sum(len(s.words) for s in sentences):,} tokens, "
            f"{sum(sum(c.values()) for c in lengths.values()):,} entities ({by_type}); "
            f"types seen only as single words: {', '.join(single) or 'none'}")


def write_conll(path: Path, sentences: Iterable[Sentence]) -> None:
    """Two-column `word tag` lines, a blank line after each sentence."""
    blocks = ("".join(f"{w} {t}\n" for w, t in zip(s.words, s.tags, strict=True)) for s in sentences)
    path.write_text("\n".join(blocks), encoding="utf-8")
