"""Reading CoNLL-style files: one token a line, a blank line between sentences."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from model import files

# Inside the repository (data/conll2003/README.md says where it comes from).
DEFAULT_DATA_DIR = files.REPOSITORY / "data" / "conll2003"


# How a sentence's words are written: as in the source, or all lower/upper case
# (chat, search queries and transcripts; headlines).
CASES = ("as_written", "lower", "upper")


def recase(words: list[str], case: str) -> list[str]:
    """The words in the given case (one of CASES); the tags do not change."""
    if case == "lower":
        return [w.lower() for w in words]
    if case == "upper":
        return [w.upper() for w in words]
    if case == "as_written":
        return list(words)
    raise ValueError(f"case must be one of {', '.join(CASES)}, not {case!r}")


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
