"""Tag a corpus file with the service's model, through the same pipeline as POST /api.

    python tag.py INPUT [-o OUTPUT] [--format text|jsonl|conll] [--workers N]
                  [--min-score S] [--skip-errors]

INPUT and OUTPUT may be `-` (stdin, stdout) and end in `.gz`. Plain text and
JSON Lines give JSON Lines, one result an input in input order: the input's
fields, then the API's (input, output, tokens, tags, entities). CoNLL gives
CoNLL with a predicted-tag column (corpus.py). The file is read in chunks and
at most two chunks a worker are in flight, so memory stays bounded whatever
the file's size. Counts go to stderr at the end; a progress bar too, when
stderr is a terminal.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path

from tqdm import tqdm

import corpus
from corpus import Item, Malformed, Sentence, Text
from model import files
from model.backends import BACKENDS
from model.memory import give_back_memory, resident_bytes
from model.pipeline import Pipeline, load_pipeline
from model.tags import entity_spans

# A chunk closes at this many inputs or characters, whichever comes first: big
# enough for the tagger to batch sentences of similar length, small enough
# that a worker stays under 200 MB (256 texts of a sentence took it to ~205 MB
# in a one-off run; BENCHMARKS.md, "Tagging a corpus", has the RSS at 128).
CHUNK_INPUTS = 128
CHUNK_CHARS = 100_000
IN_FLIGHT_PER_WORKER = 2
# Above this, a worker hands the pages that malloc keeps back to the system
# before its next chunk. Over 30,000 texts, one worker's peak RSS was 196 MB
# without it (glibc's heap, fragmented by the model calls' buffers), 180 MB
# with it, for ~10% more CPU time; a fixed MALLOC_MMAP_THRESHOLD_ got to
# 134-145 MB but tripled the system time.
GIVE_BACK_ABOVE_BYTES = 150 * 2**20


@dataclass
class Counts:
    inputs: int = 0  # texts or sentences read
    tagged: int = 0
    errors: int = 0  # malformed lines skipped (--skip-errors)
    tokens: int = 0
    entities: int = 0

    def add(self, other: Counts) -> None:
        for name in (f.name for f in fields(self)):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class TaggedChunk:
    text: str  # the output lines
    counts: Counts


# This process's model (one a worker) and settings, set by start_worker.
_pipeline: Pipeline | None = None
_min_score = 0.0
_error_records = True  # JSON Lines has a place for them, CoNLL none


def start_worker(model_dir: Path, backend: str, min_score: float, file_format: str) -> None:
    global _pipeline, _min_score, _error_records
    _pipeline, _min_score = load_pipeline(model_dir, backend), min_score
    _error_records = file_format != "conll"


def tag_chunk(chunk: list[Item]) -> TaggedChunk:
    """The output lines of a chunk's inputs, in order; all its texts in one call, and its sentences in another."""
    if resident_bytes() > GIVE_BACK_ABOVE_BYTES:
        give_back_memory()
    texts = [item for item in chunk if isinstance(item, Text)]
    sentences = [item for item in chunk if isinstance(item, Sentence) and not item.is_docstart]
    results = iter(_pipeline.tag([t.text for t in texts], _min_score) if texts else [])
    tags = iter(_pipeline.tag_tokens([s.words for s in sentences]) if sentences else [])
    lines, counts = [], Counts(inputs=len(chunk))
    for item in chunk:
        if isinstance(item, Malformed):
            counts.errors += 1
            if _error_records:
                lines.append(corpus.error_line(item))
            continue
        counts.tagged += 1
        if isinstance(item, Text):
            result = next(results)
            counts.tokens += len(result["tokens"])
            counts.entities += len(result["entities"])
            lines.append(corpus.json_line(item, result))
        else:
            sentence_tags = [] if item.is_docstart else next(tags)
            counts.tokens += len(sentence_tags)
            counts.entities += len(entity_spans(sentence_tags))
            lines.append(corpus.conll_lines(item, sentence_tags))
    return TaggedChunk("".join(lines), counts)


class Checked:
    """The items, up to a malformed one: that stops the reading, and is kept in
    `problem`. With skip_errors, a malformed item is reported on stderr and
    passed on, for an error record."""

    def __init__(self, items: Iterable[Item], skip_errors: bool):
        self.items, self.skip_errors = items, skip_errors
        self.problem: Malformed | None = None

    def __iter__(self) -> Iterator[Item]:
        for item in self.items:
            if isinstance(item, Malformed):
                if not self.skip_errors:
                    self.problem = item
                    return
                print(f"tag.py: skipped {item}", file=sys.stderr)
            yield item


def chunks(items: Iterable[Item]) -> Iterator[list[Item]]:
    chunk: list[Item] = []
    chars = 0
    for item in items:
        chunk.append(item)
        chars += len(item.text) if isinstance(item, Text) else 0
        if len(chunk) >= CHUNK_INPUTS or chars >= CHUNK_CHARS:
            yield chunk
            chunk, chars = [], 0
    if chunk:
        yield chunk


def tag_here(work: Iterable[list[Item]], setup: tuple) -> Iterator[TaggedChunk]:
    """One worker: this process."""
    start_worker(*setup)
    return map(tag_chunk, work)


def tag_in_processes(work: Iterable[list[Item]], setup: tuple, workers: int) -> Iterator[TaggedChunk]:
    """The chunks' results in order, from `workers` processes with one model each.

    Chunks are submitted one by one, never more than IN_FLIGHT_PER_WORKER a
    worker ahead of the one written: Pool.imap would read the whole input
    ahead, and hold every result that the writer has not taken yet.
    "spawn": the workers start clean, not forked from a process with threads.
    """
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=start_worker, initargs=setup) as pool:
        pending = deque()
        for chunk in work:
            pending.append(pool.submit(tag_chunk, chunk))
            if len(pending) >= IN_FLIGHT_PER_WORKER * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("input", help="the file to tag; - for stdin; .gz for gzip")
    parser.add_argument("-o", "--output", default="-", help="where to write; - for stdout (default); .gz for gzip")
    parser.add_argument("--format", choices=corpus.FORMATS,
                        help="the input's format (default: jsonl for .jsonl and .ndjson, conll for .conll, else text)")
    parser.add_argument("--workers", type=int, default=available_cores(),
                        help="processes, each with one model (default: the number of cores, %(default)s)")
    parser.add_argument("--min-score", type=float, default=0.0, help="leave out entities scored below this")
    parser.add_argument("--skip-errors", action="store_true",
                        help="write an error record for a malformed line and go on, instead of stopping")
    parser.add_argument("--model-dir", type=Path, default=files.COMMITTED_MODEL_DIR)
    parser.add_argument("--backend", choices=BACKENDS, default="onnx")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers takes 1 or more")
    if not args.model_dir.is_dir():
        parser.error(f"--model-dir {args.model_dir} is not a directory")
    return args


def summary(counts: Counts, seconds: float) -> str:
    return (f"tag.py: {counts.inputs:,} inputs: {counts.tagged:,} tagged, {counts.errors:,} malformed skipped; "
            f"{counts.tokens:,} tokens, {counts.entities:,} entities; {seconds:.1f} s, "
            f"{counts.inputs / seconds:,.0f} texts/s, {counts.tokens / seconds:,.0f} tokens/s")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    file_format = args.format or corpus.guess_format(args.input)
    setup = (args.model_dir, args.backend, args.min_score, file_format)
    counts, started = Counts(), time.perf_counter()
    bar = tqdm(unit=" texts", file=sys.stderr, disable=not sys.stderr.isatty())
    with corpus.open_input(args.input) as stream, corpus.open_output(args.output) as output, bar:
        items = Checked(corpus.read(stream, file_format, args.input), args.skip_errors)
        work = chunks(items)
        tagged = tag_here(work, setup) if args.workers == 1 else tag_in_processes(work, setup, args.workers)
        for chunk in tagged:
            output.write(chunk.text)
            counts.add(chunk.counts)
            bar.update(chunk.counts.inputs)
            bar.set_postfix_str(f"{counts.tokens / (time.perf_counter() - started):,.0f} tokens/s", refresh=False)
    if items.problem:
        print(f"tag.py: error: {items.problem} (what came before it is written; --skip-errors goes on)",
              file=sys.stderr)
    print(summary(counts, time.perf_counter() - started), file=sys.stderr)
    return 1 if items.problem else 0

if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:
        # The reader went away (`tag.py ... | head`): stop quietly, as Unix tools do;
        # stdout to /dev/null, so that the interpreter's last flush cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
