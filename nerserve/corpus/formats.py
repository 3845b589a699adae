"""The files that tag.py reads and writes: plain text, JSON Lines and CoNLL.

Readers turn a file into a stream of items, one for each text (a line of plain
text, a JSON Lines record) or CoNLL sentence, each with the line number it
starts on; a line that cannot be read becomes a `Malformed` item, so that the
caller decides whether to stop or go on. Writers turn a tagged item into the
lines of the output. `-` is stdin or stdout; a name ending in `.gz` is gzip.
A file output is written beside its path and renamed onto it at the end
(`Output`), so that a run that fails or is killed leaves no partial file there.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import os
import re
import secrets
import stat
import sys
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from nerserve.errors import error_body

FORMATS = ("text", "jsonl", "conll")
# CoNLL's document separator: written back as it came, tagged O, as conlleval expects.
DOCSTART = "-DOCSTART-"
# A longer line is malformed, and read a block at a time and dropped, never held
# whole. A text of 1 MB took a worker to ~215 MB RSS (9 s) in a one-off run, the
# peak a worker reaches on ordinary text; 2 MB took it to ~340 MB: memory grows
# with the line (its result line is ~17 times its size), so the cap bounds it.
MAX_LINE_BYTES = 2**20
# JSON nested deeper is malformed: Python's reader stops at ~1,000 levels with a
# RecursionError, and pickling a record to a worker process at fewer.
MAX_JSON_DEPTH = 100
# JSON's whitespace: a JSON Lines line of it alone holds no record.
JSON_WHITESPACE = " \t\r\n"
# The field of a JSON Lines record that holds its text (--text-field), and the
# field a plain-text line's text is given in the output.
TEXT_FIELD = "text"
# An IOB tag, the last column of a CoNLL row: how stdin's first line looks like CoNLL.
IOB_TAG = re.compile(r"O|[BIES]-[A-Za-z_]+")
# A CoNLL row's columns: the token and at most a few annotations (CoNLL-2003 has 4).
MAX_CONLL_COLUMNS = 6
# A CoNLL sentence of more rows is malformed, its rows dropped as they are
# read: a file without blank lines is one sentence, which would otherwise be
# held whole. A request's token budget (NER_MAX_TOKENS), some 30 MB of rows.
MAX_CONLL_SENTENCE_ROWS = 100_000


@dataclass(frozen=True, slots=True)
class Text:
    """A text to tag, with the fields of its JSON Lines record (plain text: {"text": line})."""

    line: int
    record: dict[str, Any]
    text_field: str = TEXT_FIELD

    @property
    def text(self) -> str:
        return self.record[self.text_field]


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
    # The fields of the record kept in its error record: its "id", where it has one.
    kept: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


Item = Text | Sentence | Malformed


class Unreadable(Exception):
    """The input cannot be read on (a corrupt or truncated gzip file): no line after it can be."""


def guess_format(path: str) -> str:
    """jsonl for .jsonl or .ndjson, conll for .conll, else text (a .gz suffix is looked through)."""
    name = path.removesuffix(".gz")
    if name.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    return "conll" if name.endswith(".conll") else "text"


class UnknownFormat(Exception):
    """stdin's first line says neither which format it is nor, reliably, that it is plain text."""


def sniff_format(first_line: bytes) -> str:
    """stdin's format, from its first line: jsonl for a JSON object; conll for
    CoNLL's -DOCSTART-; text for anything else that cannot be either. A line
    that may be either (a JSON object cut short, a row of a token and tag
    columns) is UnknownFormat: guessed wrong, a whole corpus would be tagged
    as the wrong thing, silently."""
    line = first_line.decode("utf-8", errors="replace").strip()
    if line.startswith("{"):
        try:
            if isinstance(json.loads(line), dict):
                return "jsonl"
        except ValueError:  # RecursionError too
            pass
        raise UnknownFormat("it starts as a JSON object but is not one")
    columns = _conll_columns(line)
    if columns and columns[0] == DOCSTART:
        return "conll"
    if 2 <= len(columns) <= MAX_CONLL_COLUMNS and IOB_TAG.fullmatch(columns[-1]):
        raise UnknownFormat(f"it may be a CoNLL row, its last column {columns[-1]!r} a tag, or a text")
    return "text"


class FirstLineKept:
    """A binary stream whose first line has been read (to sniff its format) and
    is read again, as if it had not been: stdin may be a pipe, which cannot
    seek back. Only readline, which the readers use."""

    def __init__(self, stream: IO[bytes], limit: int = MAX_LINE_BYTES + 1):
        self.stream = stream
        self.first_line = stream.readline(limit)
        self._kept = self.first_line

    def readline(self, limit: int = -1) -> bytes:
        if not self._kept:
            return self.stream.readline(limit)
        size = len(self._kept) if limit < 0 else limit
        line, self._kept = self._kept[:size], self._kept[size:]
        return line


def open_input(path: str) -> IO[bytes]:
    if path == "-":  # closefd=False: closing the file leaves stdin open
        return open(sys.stdin.fileno(), "rb", closefd=False)
    return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")


def same_file(input_path: str, output_path: str) -> bool:
    """Whether the output is the input file, however spelled (./, a symlink, a
    hard link; `-` is stdin or stdout, which may be redirected to it)."""
    try:
        read = os.fstat(sys.stdin.fileno()) if input_path == "-" else os.stat(input_path)
        written = os.fstat(sys.stdout.fileno()) if output_path == "-" else os.stat(output_path)
    except (OSError, ValueError):  # no such output yet; or no stdin/stdout at all
        return False
    # A terminal or pipe can be both stdin and stdout: only a regular file is refused.
    return stat.S_ISREG(read.st_mode) and os.path.samestat(read, written)


class Output:
    """Where tag.py writes, UTF-8 whatever the locale: stdout (`-`), streamed;
    or a file, written as a temporary file beside it (a hidden `.NAME.*.part`)
    that `finish` renames onto it, and `discard` removes. A path that is not a
    regular file (/dev/null, a FIFO) is written as it is."""

    def __init__(self, path: str):
        self.path = path
        self.temporary: str | None = None
        self._raw: IO[bytes] | None = None
        self._text: IO[str] | None = None

    def open(self) -> IO[str]:
        if self.path == "-":  # closefd=False: closing the file leaves stdout open
            self._text = open(sys.stdout.fileno(), "w", encoding="utf-8", closefd=False)  # noqa: SIM115
            return self._text
        self._raw = self._open_file()
        # The gzip header names the output (as gzip.open(path) does), not the temporary file.
        binary = gzip.GzipFile(self.path, "wb", fileobj=self._raw) if self.path.endswith(".gz") else self._raw
        self._text = io.TextIOWrapper(binary, encoding="utf-8")
        return self._text

    def _open_file(self) -> IO[bytes]:
        final = os.path.realpath(self.path)  # the file a symlink names is written, the link kept
        if os.path.exists(final) and not stat.S_ISREG(os.stat(final).st_mode):
            return open(final, "wb")
        self.temporary, raw = _create_beside(final)
        return raw

    def finish(self) -> None:
        """Everything is written: the file takes its place. Its bytes reach the
        disk before its name does, and the name before this returns, so that a
        crash or a power cut leaves the earlier file or the whole new one."""
        self._close()
        if self.temporary:
            final = os.path.realpath(self.path)
            _sync(self.temporary)
            os.replace(self.temporary, final)
            _sync(os.path.dirname(final))
            self.temporary = None

    def discard(self) -> None:
        """The run failed or was stopped: no file at the output's path. Nothing to do after finish."""
        try:
            self._close()
        finally:
            if self.temporary:
                os.remove(self.temporary)
                self.temporary = None

    def _close(self) -> None:
        for stream in (self._text, self._raw):
            if stream is not None and not stream.closed:
                stream.close()


def _sync(path: str) -> None:
    """The file's (or the directory's) data on disk, not only in the page cache."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _create_beside(path: str) -> tuple[str, IO[bytes]]:
    """A new file in path's directory (the rename is then within one file
    system), with the mode that open(path, "w") would give: 0o666 less umask."""
    directory, name = os.path.split(path)
    temporary = os.path.join(directory, f".{name}.{secrets.token_hex(4)}.part")
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as error:  # named as the output, which the user knows
        raise OSError(error.errno, error.strerror, path) from None
    return temporary, open(descriptor, "wb")


def read(stream: IO[bytes], file_format: str, name: str, text_field: str = TEXT_FIELD) -> Iterator[Item]:
    """The items of a file, lazily: one line in memory at a time (a CoNLL sentence's lines).
    A text is the record's `text_field`; a plain-text line is given under that name."""
    lines = _decoded_lines(stream, name)
    if file_format == "text":
        return (line if isinstance(line, Malformed) else Text(number, {text_field: line}, text_field)
                for number, line in lines)
    if file_format == "jsonl":
        return (line if isinstance(line, Malformed) else _json_record(number, line, name, text_field)
                for number, line in lines if not _blank_json_line(line))
    return _conll_sentences(lines, name)


def _decoded_lines(stream: IO[bytes], name: str) -> Iterator[tuple[int, str | Malformed]]:
    """Numbered lines without their line break; one that is not UTF-8, or over
    MAX_LINE_BYTES, is Malformed. Lines are split on "\\n" only, so a text may
    hold other line separators."""
    for number in range(1, sys.maxsize):
        raw = _read_line(stream, name, number)
        if not raw:
            return
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            _skip_rest_of_line(stream, name, number)
            yield number, Malformed(number, f"a line over {MAX_LINE_BYTES:,} bytes", name)
            continue
        try:
            yield number, raw.decode("utf-8").removesuffix("\n").removesuffix("\r")
        except UnicodeDecodeError as error:
            yield number, Malformed(number, f"not UTF-8 ({error.reason} at byte {error.start})", name)


def _read_line(stream: IO[bytes], name: str, number: int, limit: int = MAX_LINE_BYTES + 1) -> bytes:
    """At most `limit` bytes of the line; b"" at the end of the file."""
    try:
        return stream.readline(limit)
    except (OSError, EOFError, zlib.error) as error:  # gzip's: corrupt, truncated
        raise Unreadable(f"{name}:{number}: unreadable ({error})") from error


def _skip_rest_of_line(stream: IO[bytes], name: str, number: int) -> None:
    """Reads the line to its end, MAX_LINE_BYTES at a time, keeping none of it."""
    while (block := _read_line(stream, name, number)) and not block.endswith(b"\n"):
        pass


def _blank_json_line(line: str | Malformed) -> bool:
    return isinstance(line, str) and not line.strip(JSON_WHITESPACE)


class _NotJsonNumber(ValueError):
    """NaN, Infinity, or a number beyond a double's range, which Python reads
    (as nan or inf) but JSON cannot hold: written back, it would be no JSON."""


def _refuse_constant(constant: str) -> float:
    raise _NotJsonNumber(f"{constant} is not a JSON number")


def _finite_float(number: str) -> float:
    value = float(number)
    if math.isinf(value):
        raise _NotJsonNumber(f"{number} is out of a double's range")
    return value


def _json_record(number: int, line: str, name: str, text_field: str = TEXT_FIELD) -> Text | Malformed:
    """A record, or why the line is none. NaN, Infinity and numbers out of a
    double's range are refused as malformed rather than written back as
    something else: the user learns which line holds them, and the output is
    JSON that any reader reads."""
    try:
        record = json.loads(line, parse_constant=_refuse_constant, parse_float=_finite_float)
    except json.JSONDecodeError as error:  # its msg may end in "starting at"
        return Malformed(number, f"not JSON ({error.msg.removesuffix(' at')} at column {error.colno})", name)
    except _NotJsonNumber as error:
        return Malformed(number, f"not JSON ({error})", name)
    except RecursionError:
        return Malformed(number, f"nested deeper than {MAX_JSON_DEPTH} levels", name)
    except ValueError as error:  # int(): over sys.get_int_max_str_digits() digits
        return Malformed(number, f"a number too long to read ({str(error).split(';')[0]})", name)
    kept = _kept_fields(record)
    if _nested_deeper(record, MAX_JSON_DEPTH, line):
        return Malformed(number, f"nested deeper than {MAX_JSON_DEPTH} levels", name, kept)
    if not isinstance(record, dict) or not isinstance(record.get(text_field), str):
        return Malformed(number, f"not a JSON object with a string {json.dumps(text_field)} field", name, kept)
    if ("\\ud" in line or "\\uD" in line) and not _utf8_writable(record):
        return Malformed(number, "a lone surrogate escape (\\ud800 to \\udfff), which UTF-8 cannot hold", name,
                         kept)
    return Text(number, record, text_field)


def _kept_fields(record: Any) -> dict[str, Any]:
    """{"id": its id}, for an error record, where the id is a JSON scalar that the output can hold."""
    if not isinstance(record, dict) or not isinstance(record.get("id"), str | int | float | bool | None):
        return {}
    return {"id": record["id"]} if "id" in record and _utf8_writable(record["id"]) else {}


def _nested_deeper(value: Any, depth: int, line: str) -> bool:
    """Whether lists and objects nest more than `depth` levels. Iterative, so
    that no depth can overflow it; and only walked where the line has more
    brackets than that."""
    if line.count("[") + line.count("{") <= depth:
        return False
    stack = [(value, 1)]
    while stack:
        value, level = stack.pop()
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else None
        if children is not None:
            if level > depth:
                return True
            stack.extend((child, level + 1) for child in children)
    return False


def _utf8_writable(value: Any) -> bool:
    """False where a \\u escape left half a surrogate pair, which the output could not encode."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _conll_sentences(lines: Iterable[tuple[int, str | Malformed]], name: str) -> Iterator[Sentence | Malformed]:
    """Sentences are separated by blank lines; a -DOCSTART- line is one of its
    own. Every row must have as many columns as the file's first; a sentence
    with a row that does not, or that is not UTF-8, or with more than
    MAX_CONLL_SENTENCE_ROWS rows, is Malformed (at that row), and its rows are
    not kept."""
    columns = 0
    start, rows, problem = 0, [], None  # the sentence being read; start 0: none
    for number, line in lines:
        if isinstance(line, Malformed):
            start, problem = start or number, problem or line
            continue
        row = _conll_columns(line)
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
        if len(rows) == MAX_CONLL_SENTENCE_ROWS:
            problem = problem or Malformed(number, f"a sentence of more than {MAX_CONLL_SENTENCE_ROWS:,} rows "
                                                   "(are its sentences separated by blank lines?)", name)
        start = start or number
        if problem:
            rows = []  # a malformed sentence is not tagged: its rows are not kept
        else:
            rows.append(row)
    if start:
        yield problem or Sentence(start, rows)


def _conll_columns(line: str) -> list[str]:
    """Columns are separated by spaces and tabs, not by every Unicode space
    (str.split()), so that a token may hold a no-break space (U+00A0)."""
    return [column for column in line.replace("\t", " ").split(" ") if column]


def json_line(text: Text, result: dict[str, Any], entities_only: bool = False) -> str:
    """The input record's fields, then the API's result fields (which win a
    clash); entities_only: the `entities` field alone, the record's other
    fields with it (--entities-only: without the tokens and tags, most of a result's size).
    allow_nan=False: the reader refuses NaN and infinities, so a score that
    was neither finite nor JSON would be a bug, to stop at, not to write."""
    added = {"entities": result["entities"]} if entities_only else result
    return json.dumps({**text.record, **added}, ensure_ascii=False, allow_nan=False) + "\n"


def error_line(problem: Malformed) -> str:
    """The error record of --skip-errors, shaped as the service's errors; with
    the input record's id where it had one, to find which record it was."""
    error = error_body("malformed_line", problem.message, file=problem.file, line=problem.line)
    return json.dumps({**problem.kept, **error}, ensure_ascii=False, allow_nan=False) + "\n"


def conll_lines(sentence: Sentence, tags: list[str]) -> str:
    """The sentence's rows with the predicted tag as a last column, then a blank
    line: the layout conlleval and seqeval score (gold tag, then predicted)."""
    if sentence.is_docstart:
        tags = ["O"]
    return "".join(" ".join([*row, tag]) + "\n" for row, tag in zip(sentence.rows, tags, strict=True)) + "\n"
