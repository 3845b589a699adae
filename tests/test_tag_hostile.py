"""tag.py on hostile input (issue 32): an output that is its input, runs that
fail or are killed, huge lines, JSON that Python reads but cannot write back,
too many workers, CoNLL tokens with Unicode spaces. A real subprocess on real
files and the real model, as a user runs it."""

from __future__ import annotations

import gzip
import io
import json
import os
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import psutil
import pytest

from nerserve.corpus import formats as corpus
from tests.launcher import ROOT
from tests.test_tag import TAG, json_lines, summary

RUN_TIMEOUT_S = 300
# Long enough for the model to load and the first chunks to be written on a shared machine.
STARTED_TIMEOUT_S = 120
EXIT_TIMEOUT_S = 30
SENTENCE = "Angela Merkel met Emmanuel Macron in Berlin."


def run_tag(*args: str | Path, cwd: Path = ROOT, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([*TAG, *map(str, args)], capture_output=True, cwd=cwd, timeout=RUN_TIMEOUT_S,
                          check=False, **kwargs)


def strict_json(line: str):
    """json.loads as the JSON standard reads: NaN and Infinity are not JSON."""
    def refuse(constant: str):
        raise ValueError(f"{constant} is not JSON")
    return json.loads(line, parse_constant=refuse)


# --- an output that is the input -------------------------------------------------------------

@pytest.mark.parametrize("spelling", ["same", "dot-slash", "symlink", "hard link"])
def test_an_output_that_is_the_input_is_refused_and_the_input_kept(tmp_path, spelling):
    data = b"Angela Merkel visited Paris.\nEU rejects German call.\n"
    (tmp_path / "t.txt").write_bytes(data)
    output = {"same": "t.txt", "dot-slash": "./t.txt", "symlink": "link.txt", "hard link": "hard.txt"}[spelling]
    if spelling == "symlink":
        (tmp_path / "link.txt").symlink_to("t.txt")
    if spelling == "hard link":
        os.link(tmp_path / "t.txt", tmp_path / "hard.txt")
    run = run_tag("t.txt", "-o", output, "--workers", "1", cwd=tmp_path)
    assert run.returncode == 2
    assert run.stderr.decode().splitlines() == [
        f"tag.py: error: the output {output} is the input file t.txt: write it elsewhere"]
    assert (tmp_path / "t.txt").read_bytes() == data


def test_stdout_appended_to_the_input_is_refused(tmp_path):
    """`tag.py t.txt >> t.txt` would read its own output for ever; so would `tag.py - -o t.txt < t.txt`
    overwrite what it reads."""
    data = b"Angela Merkel visited Paris.\n"
    (tmp_path / "t.txt").write_bytes(data)
    with open(tmp_path / "t.txt", "ab") as appended:
        run = subprocess.run([*TAG, "t.txt", "--workers", "1"], stdout=appended, stderr=subprocess.PIPE,
                             cwd=tmp_path, timeout=RUN_TIMEOUT_S, check=False)
    assert run.returncode == 2
    assert run.stderr.decode().splitlines() == [
        "tag.py: error: the output - is the input file t.txt: write it elsewhere"]
    with open(tmp_path / "t.txt", "rb") as stdin:
        run = subprocess.run([*TAG, "-", "-o", "t.txt", "--workers", "1"], stdin=stdin, capture_output=True,
                             cwd=tmp_path, timeout=RUN_TIMEOUT_S, check=False)
    assert run.returncode == 2 and b"is the input file -" in run.stderr
    assert (tmp_path / "t.txt").read_bytes() == data


# --- no partial file at the output path -------------------------------------------------------

def test_a_run_stopped_by_a_malformed_line_leaves_no_file_at_the_output_path(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"text": "Paris"}\n{"text": "Oslo"\n')
    out = tmp_path / "out"
    out.mkdir()
    run = run_tag(tmp_path / "bad.jsonl", "-o", out / "tagged.jsonl", "--workers", "1")
    assert run.returncode == 1
    assert f"tag.py: error: {tmp_path / 'bad.jsonl'}:2: not JSON" in run.stderr.decode()
    assert list(out.iterdir()) == []  # neither the output nor its temporary file
    # A file already there is left as it was.
    (out / "tagged.jsonl").write_text("an earlier run\n")
    run = run_tag(tmp_path / "bad.jsonl", "-o", out / "tagged.jsonl", "--workers", "1")
    assert run.returncode == 1
    assert [p.name for p in out.iterdir()] == ["tagged.jsonl"]
    assert (out / "tagged.jsonl").read_text() == "an earlier run\n"


def test_a_finished_run_renames_its_file_into_place_with_the_usual_mode(tmp_path):
    (tmp_path / "texts.txt").write_text(SENTENCE + "\n")
    (tmp_path / "link.jsonl").symlink_to("target.jsonl")
    run = run_tag(tmp_path / "texts.txt", "-o", tmp_path / "link.jsonl", "--workers", "1")
    assert run.returncode == 0, run.stderr
    # Through a symlink, the file it names is written, and the link kept.
    assert (tmp_path / "link.jsonl").is_symlink()
    [result] = json_lines((tmp_path / "target.jsonl").read_bytes())
    assert result["text"] == SENTENCE
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "target.jsonl").stat().st_mode & 0o777 == 0o666 & ~umask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.jsonl", "target.jsonl", "texts.txt"]


def test_the_output_is_on_disk_before_its_name_and_its_name_before_the_run_ends(tmp_path, monkeypatch):
    # A crash or a power cut between the rename and the kernel's writeback would
    # otherwise leave an empty or partial file under the output's name.
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(descriptor: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{descriptor}")))
        real_fsync(descriptor)

    def replace(source: str, target: str) -> None:
        events.append(("replace", target))
        real_replace(source, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    output = corpus.Output(str(tmp_path / "tagged.jsonl"))
    output.open().write("{}\n")
    temporary = output.temporary
    output.finish()
    assert events == [("fsync", temporary), ("replace", str(tmp_path / "tagged.jsonl")), ("fsync", str(tmp_path))]
    assert Path(temporary).name.startswith(".tagged.jsonl.") and not Path(temporary).exists()
    assert (tmp_path / "tagged.jsonl").read_text() == "{}\n"


def test_a_gzip_output_names_the_output_in_its_header(tmp_path):
    (tmp_path / "texts.txt").write_text(SENTENCE + "\n")
    run = run_tag(tmp_path / "texts.txt", "-o", tmp_path / "tagged.jsonl.gz", "--workers", "1")
    assert run.returncode == 0, run.stderr
    data = (tmp_path / "tagged.jsonl.gz").read_bytes()
    # FNAME, as gzip.open(path) writes it: the name without .gz, not the temporary file's.
    assert data[3] & 0x08 and data[10:].split(b"\0")[0] == b"tagged.jsonl"
    assert json_lines(gzip.decompress(data))[0]["text"] == SENTENCE


# --- killed runs: no orphans, no file at the output path --------------------------------------

# Long enough for the workers to finish their chunks and fill the result pipe with a result (~130 KB,
# the pipe holds 64 KB) while the parent is stopped.
FILL_THE_PIPE_S = 3


@pytest.mark.parametrize(("signum", "mid_send"), [(signal.SIGTERM, False), (signal.SIGTERM, True),
                                                  (signal.SIGKILL, False)])
def test_a_killed_run_leaves_no_worker_and_no_file_at_the_output_path(tmp_path, signum, mid_send):
    """mid_send: the workers are stopped halfway through sending a result (as
    if killed there), whose rest the pool's result thread then waits for."""
    (tmp_path / "texts.txt").write_text((SENTENCE + "\n") * 20_000)
    out = tmp_path / "out"
    out.mkdir()
    process = subprocess.Popen([*TAG, str(tmp_path / "texts.txt"), "-o", str(out / "tagged.jsonl"),
                                "--workers", "2"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    parent = psutil.Process(process.pid)
    descendants: list[psutil.Process] = []
    try:
        descendants = wait_for_tagging(parent, out)
        if mid_send:
            parent.suspend()
            time.sleep(FILL_THE_PIPE_S)
            for worker in workers(descendants):
                worker.suspend()
        process.send_signal(signum)
        parent.resume()
        process.wait(timeout=EXIT_TIMEOUT_S)
        survivors = wait_for_exit(descendants)
        assert survivors == [], f"still running after {EXIT_TIMEOUT_S} s: {survivors}"
        assert not (out / "tagged.jsonl").exists()
        if signum == signal.SIGTERM:
            # Cleaned up, and said so in one line: no traceback. Mid-send, tag.py ends with os._exit, and
            # the resource tracker warns of the pool's semaphores as it removes them.
            assert list(out.iterdir()) == []
            assert process.returncode == 128 + signum
            stderr = process.stderr.read().decode()
            assert stderr.splitlines()[0] == f"tag.py: stopped by SIGTERM: nothing written to {out / 'tagged.jsonl'}"
            assert len(stderr.splitlines()) == 1 or "leaked semaphore" in stderr and "Traceback" not in stderr
    finally:
        for survivor in [parent, *descendants]:
            kill_quietly(survivor)
        process.wait(timeout=EXIT_TIMEOUT_S)


def wait_for_tagging(parent: psutil.Process, out: Path) -> list[psutil.Process]:
    """The run's processes, once both workers run and some output is written."""
    deadline = time.monotonic() + STARTED_TIMEOUT_S
    while time.monotonic() < deadline:
        descendants = parent.children(recursive=True)
        if len(workers(descendants)) == 2 and any(p.stat().st_size for p in out.iterdir()):
            return descendants
        time.sleep(0.1)
    raise AssertionError(f"no output in {STARTED_TIMEOUT_S} s")


def workers(processes: list[psutil.Process]) -> list[psutil.Process]:
    return [p for p in processes if "spawn_main" in " ".join(cmdline(p))]


def wait_for_exit(processes: list[psutil.Process]) -> list[psutil.Process]:
    _, alive = psutil.wait_procs(processes, timeout=EXIT_TIMEOUT_S)
    return alive


def cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:
        return []


def kill_quietly(process: psutil.Process) -> None:
    try:
        process.kill()
    except psutil.Error:
        pass


# --- huge lines ----------------------------------------------------------------------------------

OVER_THE_CAP = 2 * 2**20  # bytes: over corpus.MAX_LINE_BYTES, tagged in seconds if it were not


def test_a_line_over_the_cap_stops_the_run_or_is_skipped_naming_its_line(tmp_path):
    huge = json.dumps({"id": 2, "text": "Paris " * (OVER_THE_CAP // 6)})
    lines = ['{"id": 1, "text": "Paris"}', huge, '{"id": 3, "text": "Rome"}']
    path = tmp_path / "huge.jsonl.gz"
    path.write_bytes(gzip.compress("\n".join(lines).encode() + b"\n"))
    stopped = run_tag(path, "--workers", "1")
    assert stopped.returncode == 1
    assert f"tag.py: error: {path}:2: a line over 1,048,576 bytes" in stopped.stderr.decode()
    assert [r["id"] for r in json_lines(stopped.stdout)] == [1]
    skipped = run_tag(path, "--workers", "1", "--skip-errors")
    assert skipped.returncode == 0, skipped.stderr
    results = json_lines(skipped.stdout)
    assert [r.get("id") for r in results] == [1, None, 3]
    assert results[1]["error"]["line"] == 2 and "over 1,048,576 bytes" in results[1]["error"]["message"]
    assert summary(skipped).startswith("tag.py: 3 inputs: 2 tagged, 1 malformed skipped;")


def test_a_huge_line_is_never_held_whole(tmp_path):
    """A 64 MB line of a gzip file (a 64 KB file) is read a bounded block at a time and dropped."""
    huge = b"a" * (64 * 2**20)
    stream = io.BytesIO(gzip.compress(huge + b"\nParis\n", compresslevel=1))
    tracemalloc.start()
    try:
        items = list(corpus.read(gzip.GzipFile(fileobj=stream), "text", "huge.txt.gz"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [type(item).__name__ for item in items] == ["Malformed", "Text"]
    assert str(items[0]) == "huge.txt.gz:1: a line over 1,048,576 bytes"
    assert items[1].text == "Paris"
    # Bounded by the cap (the reader's and gzip's buffers), not by the line, which is 64 times it.
    assert peak < 8 * corpus.MAX_LINE_BYTES


def test_a_huge_gzip_line_is_refused_in_bounded_memory(tmp_path):
    path = tmp_path / "bomb.txt.gz"
    path.write_bytes(gzip.compress(b"a " * (64 * 2**20) + b"\n"))
    # The most memory tag.py took, as its parent sees it: no process but tag.py's (one worker: no pool).
    measure = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], capture_output=True); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    run = subprocess.run([sys.executable, "-c", measure, *TAG, str(path), "--workers", "1", "--skip-errors"],
                         capture_output=True, cwd=ROOT, timeout=RUN_TIMEOUT_S, check=True)
    peak_mb = int(run.stdout) / 1024
    assert peak_mb < 250  # the model and a few blocks of the line; ~85 MB of it is the model


# --- JSON that Python reads but cannot write back, or crashes on --------------------------------

HOSTILE_JSON = {
    "deep": "[" * 100_000,
    "long int": '{"id": 5, "text": "Paris", "n": ' + "7" * 5_000 + "}",
    "NaN": '{"id": 6, "text": "Paris", "score": NaN}',
    "1e400": '{"id": 7, "text": "Paris", "score": 1e400}',
    "-Infinity": '{"id": 8, "text": "Paris", "score": -Infinity}',
    "nested, readable": '{"id": 9, "text": "Paris", "x": ' + "[" * 980 + "]" * 980 + "}",
    "unterminated": '{"id": 10, "text": "Oslo',
}
HOSTILE_MESSAGES = {
    "deep": "nested deeper than 100 levels",
    "long int": "a number too long to read",
    "NaN": "not JSON (NaN is not a JSON number)",
    "1e400": "not JSON (1e400 is out of a double's range)",
    "-Infinity": "not JSON (-Infinity is not a JSON number)",
    "nested, readable": "nested deeper than 100 levels",
    "unterminated": "not JSON (Unterminated string starting at column 20)",
}


@pytest.mark.parametrize("workers", ["1", "2"])
def test_hostile_json_is_a_malformed_line_not_a_crash(tmp_path, workers):
    good = '{"id": 0, "text": "Angela Merkel visited Paris."}'
    lines = [good, *HOSTILE_JSON.values(), good]
    (tmp_path / "hostile.jsonl").write_text("\n".join(lines) + "\n")
    skipped = run_tag(tmp_path / "hostile.jsonl", "--skip-errors", "--workers", workers)
    assert skipped.returncode == 0, skipped.stderr
    assert b"Traceback" not in skipped.stderr
    results = [strict_json(line) for line in skipped.stdout.decode().splitlines()]  # all of it JSON
    assert len(results) == len(lines)
    errors = [r["error"] for r in results[1:-1]]
    assert [e["line"] for e in errors] == list(range(2, 2 + len(HOSTILE_JSON)))
    for error, name in zip(errors, HOSTILE_JSON, strict=True):
        assert error["message"].startswith(HOSTILE_MESSAGES[name]), name
    assert "at at" not in skipped.stderr.decode()
    # The input's id is kept where the line was read far enough to have one.
    assert [r.get("id") for r in results] == [0, None, None, None, None, None, 9, None, 0]


@pytest.mark.parametrize("name", ["deep", "NaN"])
def test_hostile_json_without_skip_errors_stops_with_one_line(tmp_path, name):
    (tmp_path / "one.jsonl").write_text('{"text": "Paris"}\n' + HOSTILE_JSON[name] + "\n")
    stopped = run_tag(tmp_path / "one.jsonl", "--workers", "1")
    assert stopped.returncode == 1
    assert stopped.stderr.decode().splitlines()[0] == (
        f"tag.py: error: {tmp_path / 'one.jsonl'}:2: {HOSTILE_MESSAGES[name]}"
        " (what came before it is written; --skip-errors goes on)")
    assert len(stopped.stderr.decode().splitlines()) == 2  # and the summary


def test_blank_lines_in_json_lines_are_skipped(tmp_path):
    (tmp_path / "blanks.jsonl").write_text('{"text": "Paris"}\n\n  \t\n{"text": "Rome"}\n\n')
    run = run_tag(tmp_path / "blanks.jsonl", "--workers", "1")
    assert run.returncode == 0, run.stderr
    assert [r["text"] for r in json_lines(run.stdout)] == ["Paris", "Rome"]
    assert summary(run).startswith("tag.py: 2 inputs: 2 tagged, 0 malformed skipped;")


# --- workers and CoNLL columns -------------------------------------------------------------------

def test_workers_are_capped_at_the_available_cores(tmp_path):
    from nerserve.corpus.tag import available_cores

    (tmp_path / "texts.txt").write_text(SENTENCE + "\n")
    run = run_tag(tmp_path / "texts.txt", "--workers", "999")
    assert run.returncode == 0, run.stderr
    cores = available_cores()
    assert run.stderr.decode().splitlines()[0] == (
        f"tag.py: --workers 999 is more than the {cores} cores available: {cores} workers")


def test_a_conll_file_without_blank_lines_is_never_held_whole():
    """Past MAX_CONLL_SENTENCE_ROWS a sentence is malformed and its rows dropped
    as they are read: 4 times as many rows take no more memory than the cap's."""
    def peak_reading(rows: int) -> tuple[list, int]:
        conll = b"Paris NNP B-NP B-LOC\n" * rows + b"\nRome NNP B-NP B-LOC\n"
        tracemalloc.start()
        try:
            items = [item for item in corpus.read(io.BytesIO(conll), "conll", "one.conll")]
            return items, tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    cap = corpus.MAX_CONLL_SENTENCE_ROWS
    items, peak_at_the_cap = peak_reading(cap)
    assert [len(item.rows) for item in items] == [cap, 1]
    items, peak = peak_reading(4 * cap)
    assert [type(item).__name__ for item in items] == ["Malformed", "Sentence"]
    assert str(items[0]) == (f"one.conll:{cap + 1}: a sentence of more than {cap:,} rows "
                             "(are its sentences separated by blank lines?)")
    assert items[1].rows == [["Rome", "NNP", "B-NP", "B-LOC"]]
    assert peak < 1.5 * peak_at_the_cap


def test_a_conll_token_with_a_no_break_space_stays_one_column(tmp_path):
    conll = "New\u00a0York NNP B-NP B-LOC\nis VBZ B-VP O\n\n"
    (tmp_path / "nbsp.conll").write_text(conll)
    run = run_tag(tmp_path / "nbsp.conll", "--workers", "1")
    assert run.returncode == 0, run.stderr
    rows = [line.split(" ") for line in run.stdout.decode().splitlines() if line]
    assert [row[:-1] for row in rows] == [["New\u00a0York", "NNP", "B-NP", "B-LOC"], ["is", "VBZ", "B-VP", "O"]]
