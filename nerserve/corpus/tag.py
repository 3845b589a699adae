"""Tag a corpus file with the service's model, through the same pipeline as POST /api.

    python tag.py INPUT [-o OUTPUT] [--format text|jsonl|conll] [--text-field NAME]
                  [--entities-only] [--workers N] [--min-score S] [--skip-errors]

INPUT and OUTPUT may be `-` (stdin, stdout) and end in `.gz`. The format is
--format, else the name's extension, else (stdin) what its first line looks
like (formats.sniff_format). Plain text and
JSON Lines give JSON Lines, one result an input in input order: the input's
fields, then the API's (input, output, tokens, tags, entities; with
--entities-only, entities alone). CoNLL gives
CoNLL with a predicted-tag column (nerserve/corpus/formats.py). The file is read in chunks and
at most two chunks a worker are in flight, so memory stays bounded whatever
the file's size. Counts go to stderr at the end; a progress bar too, when
stderr is a terminal. A file output appears at its path only when the run
ends well (formats.Output); SIGTERM, SIGHUP and Ctrl-C stop the workers and
remove what was written.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, fields
from pathlib import Path
from typing import IO

from tqdm import tqdm

from nerserve.corpus import formats
from nerserve.corpus.formats import Item, Malformed, Output, Sentence, Text, Unreadable
from nerserve.tagger import files
from nerserve.tagger.backends import BACKENDS
from nerserve.tagger.files import ModelError
from nerserve.tagger.memory import give_back_memory, resident_bytes
from nerserve.tagger.pipeline import Pipeline, process_pipeline
from nerserve.tagger.tags import entity_spans

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
# Signals that stop a run cleanly: the workers stopped, the output's temporary file removed.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
# Linux's prctl(2) option: a signal for this process when its parent dies.
PR_SET_PDEATHSIG = 1
WORKER_STOP_TIMEOUT_S = 5
SIGNAL_CHECK_S = 0.5
THREADS_END_TIMEOUT_S = 2
# Exit statuses: a usage error (argparse's), and a run stopped by signal N: 128 + N, as shells report.
USAGE_ERROR = 2
SIGNALLED = 128


class UsageError(Exception):
    """A command line that cannot run as given, found once the input is open
    (stdin's format): one line, argparse's exit status."""


class Stopped(Exception):
    """A stop signal arrived (SIGTERM, SIGHUP): unwind, cleaning up on the way."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


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
_entities_only = False
_model_error: ModelError | None = None  # a model directory the worker cannot use
# Set in the parent by stop_workers. A worker killed halfway through sending a
# result leaves the pool's result thread waiting for the rest for ever, which
# would hold the interpreter's exit: exit_now then ends it with os._exit.
_workers_stopped = False


def start_pool_worker(parent: int, *setup) -> None:
    """A pool worker dies with the run: on Ctrl-C the parent stops it (a Ctrl-C
    in each worker would only add tracebacks), and on the parent's death, even
    by SIGKILL, the kernel sends it SIGTERM."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent(parent)
    start_worker(*setup)


def die_with_parent(parent: int) -> None:
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before prctl took hold
        os._exit(1)


def start_worker(model_dir: Path, backend: str, min_score: float, file_format: str,
                 entities_only: bool = False) -> None:
    global _pipeline, _min_score, _error_records, _entities_only, _model_error
    try:
        _pipeline = process_pipeline(model_dir, backend)
    except ModelError as error:
        # Raised with the first chunk, in the parent: one line (main), where a
        # pool worker failing to start would only say that the pool broke.
        _model_error = error
    _min_score, _error_records, _entities_only = min_score, file_format != "conll", entities_only


def tag_chunk(chunk: list[Item]) -> TaggedChunk:
    """The output lines of a chunk's inputs, in order; all its texts in one call, and its sentences in another."""
    if _model_error is not None:
        raise _model_error
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
                lines.append(formats.error_line(item))
            continue
        counts.tagged += 1
        if isinstance(item, Text):
            result = next(results)
            counts.tokens += len(result["tokens"])
            counts.entities += len(result["entities"])
            lines.append(formats.json_line(item, result, _entities_only))
        else:
            sentence_tags = [] if item.is_docstart else next(tags)
            counts.tokens += len(sentence_tags)
            counts.entities += len(entity_spans(sentence_tags))
            lines.append(formats.conll_lines(item, sentence_tags))
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
    yield from map(tag_chunk, work)


def tag_in_processes(work: Iterable[list[Item]], setup: tuple, workers: int) -> Iterator[TaggedChunk]:
    """The chunks' results in order, from `workers` processes with one model each.

    Chunks are submitted one by one, never more than IN_FLIGHT_PER_WORKER a
    worker ahead of the one written: Pool.imap would read the whole input
    ahead, and hold every result that the writer has not taken yet.
    "spawn": the workers start clean, not forked from a process with threads.
    Stopped early (an error, a signal, the generator closed), the workers are
    terminated, not waited for: they may be minutes into their chunks.
    """
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=start_pool_worker,
                               initargs=(os.getpid(), *setup))
    try:
        pending = deque()
        for chunk in work:
            pending.append(pool.submit(tag_chunk, chunk))
            if len(pending) >= IN_FLIGHT_PER_WORKER * workers:
                yield result_of(pending.popleft())
        while pending:
            yield result_of(pending.popleft())
    except BaseException:
        stop_workers(pool)
        raise
    pool.shutdown()


def result_of(future: Future) -> TaggedChunk:
    """future.result(), waited for a while at a time: a signal that the kernel
    hands to another thread (the pool's) runs its Python handler only when this
    one, the main thread, wakes."""
    while True:
        try:
            return future.result(timeout=SIGNAL_CHECK_S)
        except TimeoutError:
            continue


def stop_workers(pool: ProcessPoolExecutor) -> None:
    """SIGTERM to each worker, SIGKILL to one still there after
    WORKER_STOP_TIMEOUT_S (a stopped one cannot act on SIGTERM)."""
    global _workers_stopped
    _workers_stopped = True
    # The pool's processes are this process's only multiprocessing children.
    children = multiprocessing.active_children()
    for child in children:
        child.terminate()
    pool.shutdown(wait=False, cancel_futures=True)
    deadline = time.monotonic() + WORKER_STOP_TIMEOUT_S
    for child in children:
        child.join(max(0.0, deadline - time.monotonic()))
        if child.is_alive():
            child.kill()
            child.join()


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def worker_count(requested: int) -> int:
    """At most a worker a core: more only add a model's memory each, and no speed."""
    cores = available_cores()
    if requested > cores:
        print(f"tag.py: --workers {requested} is more than the {cores} cores available: {cores} workers",
              file=sys.stderr)
    return min(requested, cores)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("input", help="the file to tag; - for stdin; .gz for gzip")
    parser.add_argument("-o", "--output", default="-", help="where to write; - for stdout (default); .gz for gzip")
    parser.add_argument("--format", choices=formats.FORMATS,
                        help="the input's format (default: jsonl for .jsonl and .ndjson, conll for .conll, else "
                             "text; for stdin, from its first line: jsonl for a JSON object, conll for -DOCSTART-)")
    parser.add_argument("--text-field", default=formats.TEXT_FIELD, metavar="NAME",
                        help="the JSON Lines field that holds the text; plain text is written under this name "
                             "(default: %(default)s)")
    parser.add_argument("--entities-only", action="store_true",
                        help="write the input's fields and the entities, without the rest of the result "
                             "(input, output, tokens, tags); not for CoNLL")
    parser.add_argument("--workers", type=int, default=available_cores(),
                        help="processes, each with one model; at most the number of cores (the default, "
                             "%(default)s)")
    parser.add_argument("--min-score", type=float, default=0.0, help="leave out entities scored below this")
    parser.add_argument("--skip-errors", action="store_true",
                        help="write an error record for a malformed line and go on, instead of stopping")
    parser.add_argument("--model-dir", type=Path, default=files.COMMITTED_MODEL_DIR,
                        help="the model directory (default: the committed model)")
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
    """tag.py's exit status; its failures as one line on stderr, never a traceback."""
    args = parse_args(argv)
    if formats.same_file(args.input, args.output):
        print(f"tag.py: error: the output {args.output} is the input file {args.input}: write it elsewhere",
              file=sys.stderr)
        return USAGE_ERROR
    try:
        return tag_corpus(args)
    except UsageError as error:
        print(f"tag.py: error: {error}", file=sys.stderr)
        return USAGE_ERROR
    except Stopped as stopped:
        print(f"tag.py: stopped by {stopped}: {what_is_kept(args.output)}", file=sys.stderr)
        return SIGNALLED + stopped.signum
    except KeyboardInterrupt:
        print(f"tag.py: interrupted: {what_is_kept(args.output)}", file=sys.stderr)
        return SIGNALLED + signal.SIGINT
    except BrokenPipeError:
        # The reader went away (`tag.py ... | head`): stop quietly, as Unix tools do;
        # stdout to /dev/null, so that the interpreter's last flush cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (Unreadable, OSError, ModelError) as error:  # ModelError: a model directory it cannot use
        print(f"tag.py: error: {error} ({what_is_kept(args.output)})", file=sys.stderr)
        return 1
    except BrokenProcessPool:
        print(f"tag.py: error: a worker process died (killed? out of memory?) ({what_is_kept(args.output)})",
              file=sys.stderr)
        return 1


def input_format(args: argparse.Namespace, stream: IO[bytes]) -> tuple[IO[bytes], str]:
    """The stream to read and its format: --format, else the name's, else
    (stdin, which has no name to go by) its first line's, kept to be read again."""
    if args.format:
        file_format = args.format
    elif args.input != "-":
        file_format = formats.guess_format(args.input)
    else:
        stream = formats.FirstLineKept(stream)
        try:
            file_format = formats.sniff_format(stream.first_line)
        except formats.UnknownFormat as unknown:
            raise UsageError(f"cannot tell stdin's format from its first line ({unknown}): "
                             f"give --format {', '.join(formats.FORMATS[:-1])} or {formats.FORMATS[-1]}") from None
    if args.entities_only and file_format == "conll":
        raise UsageError("--entities-only is for text and JSON Lines input: CoNLL is written back with a tag column")
    return stream, file_format


def tag_corpus(args: argparse.Namespace) -> int:
    workers = worker_count(args.workers)
    counts, started = Counts(), time.perf_counter()
    bar = tqdm(unit=" texts", file=sys.stderr, disable=not sys.stderr.isatty())
    output = Output(args.output)
    try:
        with formats.open_input(args.input) as opened, bar:
            # Before the output is opened: a usage error leaves no file behind.
            stream, file_format = input_format(args, opened)
            setup = (args.model_dir, args.backend, args.min_score, file_format, args.entities_only)
            items = Checked(formats.read(stream, file_format, args.input, args.text_field), args.skip_errors)
            with output.open() as written:
                work = chunks(items)
                tagged = tag_here(work, setup) if workers == 1 else tag_in_processes(work, setup, workers)
                with contextlib.closing(tagged):  # on an error here, the workers stop at once
                    for chunk in tagged:
                        written.write(chunk.text)
                        counts.add(chunk.counts)
                        bar.update(chunk.counts.inputs)
                        bar.set_postfix_str(f"{counts.tokens / (time.perf_counter() - started):,.0f} tokens/s",
                                            refresh=False)
        if not items.problem:
            output.finish()
    finally:
        output.discard()
    if items.problem:
        print(f"tag.py: error: {items.problem} ({what_is_kept(args.output)}; --skip-errors goes on)",
              file=sys.stderr)
    print(summary(counts, time.perf_counter() - started), file=sys.stderr)
    return 1 if items.problem else 0


def what_is_kept(output: str) -> str:
    return "what came before it is written" if output == "-" else f"nothing written to {output}"


def stop_on_signals() -> None:
    """A stop signal raises Stopped, so that the run unwinds: workers stopped,
    temporary file removed. A second one, while that runs, is ignored."""
    def stop(signum: int, _frame) -> None:
        for each in STOP_SIGNALS:
            signal.signal(each, signal.SIG_IGN)
        raise Stopped(signum)

    for signum in STOP_SIGNALS:
        signal.signal(signum, stop)


def exit_now(status: int) -> None:
    """sys.exit; or os._exit where the workers were stopped and a thread of the
    pool's is still there after THREADS_END_TIMEOUT_S (see _workers_stopped).
    By then the output is closed and stderr written: nothing is lost, but the
    resource tracker may warn of the pool's semaphores, which it removes."""
    if _workers_stopped and not threads_ended(THREADS_END_TIMEOUT_S):
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)


def threads_ended(timeout_s: float) -> bool:
    """Whether every thread that the interpreter waits for at exit ends within timeout_s."""
    deadline = time.monotonic() + timeout_s
    waited = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    for thread in waited:
        thread.join(max(0.0, deadline - time.monotonic()))
    return not any(thread.is_alive() for thread in waited)


def run() -> None:
    """The command line (python tag.py, ner-tag): main's exit status, and the
    workers stopped on a signal."""
    stop_on_signals()
    exit_now(main())


if __name__ == "__main__":  # python -m nerserve.corpus.tag, as tag.py and ner-tag
    run()
