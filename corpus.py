"""The files that tag.py reads and writes: plain text, JSON Lines and CoNLL.

Readers turn a file into a stream of items, one for each text (a line of plain
text, a JSON Lines record) or CoNLL sentence, each with the line number it
starts on; a line that cannot be read becomes a `Malformed` item, so that the
caller decides whether to stop or go on. Writers turn a tagged item into the
lines of the output. `-` is stdin or stdout; a name ending in `.gz` is gzip.
"""

from __future__ import annotations

import gzip
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

FORMATS = ("text", "jsonl", "conll")
# CoNLL's document separator: written back as it came, tagged O, as conlleval expects.
DOCSTART = "-DOCSTART-"


@dataclass(frozen=True, slots=True)
class Text:
    """A text to tag, with the fields of its JSON Lines record (plain text: {"text": line})."""

    line: int
    record: dict[str, Any]

    @property
    def text(self) -> str:
        return self.record["text"]


@dataclass(frozen=True, slots=True)
class Sentence:
    """A CoNLL sentence: its rows of columns, the token first; a -DOCSTART- line is a sentence too."""

    line: int
    rows: list[list[str]]

    @property
    def words(self) -> list[str]:
        return [] if self.is_docstart else [row[0] for row in self.rows]

    @property
    def is_docstart(self) -> bool:
        return self.rows[0][0] == DOCSTART


@dataclass(frozen=True, slots=True)
class Malformed:
    """A line that could not be read: where, and why."""

    line: int
    message: str
    file: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


Item = Text | Sentence | Malformed


def guess_format(path: str) -> str:
    """jsonl for .jsonl or .ndjson, conll for .conll, else text (a .gz suffix is looked through)."""
    name = path.removesuffix(".gz")
    if name.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    return "conll" if name.endswith(".conll") else "text"


def open_input(path: str) -> IO[bytes]:
    if path == "-":  # closefd=False: closing the file leaves stdin open
        return open(sys.stdin.fileno(), "rb", closefd=False)
    return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")


def open_output(path: str) -> IO[str]:
    """UTF-8 whatever the locale."""
    if path == "-":
        return open(sys.stdout.fileno(), "w", encoding="utf-8", closefd=False)
    if path.endswith(".gz"):
        return gzip.open(path, "wt", encoding="utf-8")
    return open(path, "w", encoding="utf-8")


def read(stream: IO[bytes], file_format: str, name: str) -> Iterator[Item]:
    """The items of a file, lazily: one line in memory at a time (a CoNLL sentence's lines)."""
    lines = _decoded_lines(stream, name)
    if file_format == "text":
        return (line if isinstance(line, Malformed) else Text(number, {"text": line})
                for number, line in lines)
    if file_format == "jsonl":
        return (line if isinstance(line, Malformed) else _json_record(number, line, name)
                for number, line in lines)
    return _conll_sentences(lines, name)


def _decoded_lines(stream: IO[bytes], name: str) -> Iterator[tuple[int, str | Malformed]]:
    """Numbered lines without their line break; one that is not UTF-8 is Malformed.
    Lines are split on "\\n" only, so a text may hold other line separators."""
    for number, raw in enumerate(stream, start=1):
        try:
            yield number, raw.decode("utf-8").removesuffix("\n").removesuffix("\r")
        except UnicodeDecodeError as error:
            yield number, Malformed(number, f"not UTF-8 ({error.reason} at byte {error.start})", name)


def _json_record(number: int, line: str, name: str) -> Text | Malformed:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        return Malformed(number, f"not JSON ({error.msg} at column {error.colno})", name)
    if not isinstance(record, dict) or not isinstance(record.get("text"), str):
        return Malformed(number, 'not a JSON object with a string "text" field', name)
    if ("\\ud" in line or "\\uD" in line) and not _utf8_writable(record):
        return Malformed(number, "a lone surrogate escape (\\ud800 to \\udfff), which UTF-8 cannot hold", name)
    return Text(number, record)


def _utf8_writable(record: dict[str, Any]) -> bool:
    """False where a \\u escape left half a surrogate pair, which the output could not encode."""
    try:
        json.dumps(record, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _conll_sentences(lines: Iterable[tuple[int, str | Malformed]], name: str) -> Iterator[Sentence | Malformed]:
    """Sentences are separated by blank lines; a -DOCSTART- line is one of its
    own. Every row must have as many columns as the file's first; a sentence
    with a row that does not, or that is not UTF-8, is Malformed (at that row)."""
    columns = 0
    start, rows, problem = 0, [], None  # the sentence being read; start 0: none
    for number, line in lines:
        if isinstance(line, Malformed):
            start, problem = start or number, problem or line
            continue
        row = line.split()
        if not row or row[0] == DOCSTART:
            if start:
                yield problem or Sentence(start, rows)
            start, rows, problem = 0, [], None
            if row:
                yield Sentence(number, [row])
            continue
        columns = columns or len(row)
        if len(row) != columns:
            problem = problem or Malformed(number, f"{len(row)} columns where the file's rows have {columns}", name)
        start = start or number
        rows.append(row)
    if start:
        yield problem or Sentence(start, rows)


def json_line(text: Text, result: dict[str, Any]) -> str:
    """The input record's fields, then the API's result fields (which win a clash)."""
    return json.dumps({**text.record, **result}, ensure_ascii=False) + "\n"


def error_line(problem: Malformed) -> str:
    """The error record of --skip-errors, shaped as the service's errors."""
    error = {"code": "malformed_line", "message": problem.message, "file": problem.file, "line": problem.line}
    return json.dumps({"error": error}, ensure_ascii=False) + "\n"


def conll_lines(sentence: Sentence, tags: list[str]) -> str:
    """The sentence's rows with the predicted tag as a last column, then a blank
    line: the layout conlleval and seqeval score (gold tag, then predicted)."""
    if sentence.is_docstart:
        tags = ["O"]
    return "".join(" ".join([*row, tag]) + "\n" for row, tag in zip(sentence.rows, tags, strict=True)) + "\n"
