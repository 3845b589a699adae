"""tag.py, run as a user runs it (a subprocess), on the real model: every input
format, stdin/stdout and gzip, order and pass-through fields, malformed lines,
and the same results as POST /api and the pipeline."""

from __future__ import annotations

import fcntl
import gzip
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest
from seqeval.metrics import f1_score

from nerserve.tagger.pipeline import Pipeline, load_pipeline
from nerserve.tagger.training.data import DEFAULT_DATA_DIR, read_conll
from tests.launcher import ROOT

TAG = [sys.executable, str(ROOT / "tag.py")]
RESULT_FIELDS = ("input", "output", "tokens", "tags", "entities")
DEV_SENTENCES = 300


def tag(*args: str | Path, stdin: bytes = b"") -> subprocess.CompletedProcess:
    return subprocess.run([*TAG, *map(str, args)], input=stdin, capture_output=True, cwd=ROOT, timeout=300,
                          check=False)


def json_lines(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.decode().splitlines()]


def summary(run: subprocess.CompletedProcess) -> str:
    return run.stderr.decode().strip().splitlines()[-1]


@pytest.fixture(scope="module")
def pipeline(model_dir) -> Pipeline:
    return load_pipeline(model_dir)


@pytest.fixture(scope="module")
def dev_sentences():
    return read_conll(DEFAULT_DATA_DIR / "valid.txt")[:DEV_SENTENCES]


def test_plain_text_gives_one_result_a_line_in_order(tmp_path):
    lines = ["Angela Merkel visited Paris.", "", "John Smith works for Google in London."]
    (tmp_path / "texts.txt").write_text("\n".join(lines) + "\n")
    run = tag(tmp_path / "texts.txt", "--workers", "1")
    assert run.returncode == 0, run.stderr
    results = json_lines(run.stdout)
    assert [r["text"] for r in results] == lines
    assert results[1]["tokens"] == [] and results[1]["entities"] == []
    assert {(e["text"], e["type"], e["start"], e["end"]) for e in results[0]["entities"]} == {
        ("Angela Merkel", "PER", 0, 13), ("Paris", "LOC", 22, 27)}
    assert summary(run).startswith("tag.py: 3 inputs: 3 tagged, 0 malformed skipped;")
    # stderr is no terminal: no progress bar, the summary alone.
    assert len(run.stderr.decode().splitlines()) == 1


def test_json_lines_keep_order_and_fields_and_agree_with_the_api(tmp_path, dev_sentences, client):
    """Two workers, chunks of 128: a later chunk may be done first; the
    output is still in input order, and each result is what POST /api answers."""
    texts = [" ".join(sentence.words) for sentence in dev_sentences]
    records = [{"id": f"dev-{i}", "text": text, "source": {"split": "valid", "n": i}} for i, text in enumerate(texts)]
    (tmp_path / "dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    run = tag(tmp_path / "dev.jsonl", "-o", tmp_path / "tagged.jsonl", "--workers", "2")
    assert run.returncode == 0, run.stderr
    tagged = json_lines((tmp_path / "tagged.jsonl").read_bytes())
    assert [{k: r[k] for k in ("id", "text", "source")} for r in tagged] == records
    for start in range(0, len(texts), 5):  # the test app takes 5 texts a request
        response = client.post("/api", json={"texts": texts[start : start + 5]})
        assert response.status_code == 200
        for api_result, result in zip(response.get_json()["results"], tagged[start : start + 5], strict=True):
            assert {k: result[k] for k in RESULT_FIELDS} == api_result
    assert sum(len(r["entities"]) for r in tagged) > DEV_SENTENCES  # CoNLL dev has ~1.9 entities a sentence


def test_conll_gets_a_predicted_column_that_seqeval_scores(tmp_path, dev_sentences, pipeline):
    source = (DEFAULT_DATA_DIR / "valid.txt").read_text().split("\n\n")
    conll = "\n\n".join(source[:DEV_SENTENCES]) + "\n"
    (tmp_path / "dev.conll").write_text(conll)
    run = tag(tmp_path / "dev.conll", "-o", tmp_path / "tagged.conll", "--workers", "2")
    assert run.returncode == 0, run.stderr
    blocks = (tmp_path / "tagged.conll").read_text().strip("\n").split("\n\n")
    rows = [[line.split() for line in block.splitlines()] for block in blocks]
    # Input rows, as written, and one more column.
    assert [[row[:-1] for row in sentence] for sentence in rows] == [
        [line.split() for line in block.splitlines()] for block in conll.strip("\n").split("\n\n")]
    predicted = [[row[-1] for row in sentence] for sentence in rows]
    assert predicted == pipeline.tag_tokens([sentence.words for sentence in dev_sentences])
    gold = [[row[-2] for row in sentence] for sentence in rows]
    assert f1_score(gold, predicted) > 0.85  # ~0.99: the committed model was trained on dev too
    assert summary(run).startswith(f"tag.py: {DEV_SENTENCES} inputs: {DEV_SENTENCES} tagged")


def test_stdin_stdout_and_gzip_give_the_same_results(tmp_path):
    data = b'{"id": 1, "text": "EU rejects German call to boycott British lamb."}\n{"id": 2, "text": "Peter Blackburn"}\n'
    (tmp_path / "in.jsonl").write_bytes(data)
    (tmp_path / "in.jsonl.gz").write_bytes(gzip.compress(data))
    from_file = tag(tmp_path / "in.jsonl", "--workers", "1")
    from_stdin = tag("-", "--format", "jsonl", "--workers", "1", stdin=data)
    to_gzip = tag(tmp_path / "in.jsonl.gz", "-o", tmp_path / "out.jsonl.gz", "--workers", "1")
    assert from_file.returncode == from_stdin.returncode == to_gzip.returncode == 0
    assert to_gzip.stdout == b""
    results = json_lines(from_file.stdout)
    assert [r["id"] for r in results] == [1, 2] and results[1]["entities"][0]["type"] == "PER"
    assert json_lines(from_stdin.stdout) == results
    assert json_lines(gzip.decompress((tmp_path / "out.jsonl.gz").read_bytes())) == results


def test_a_text_over_the_service_limit_is_tagged_in_windows(tmp_path, pipeline):
    text = " ".join(["Angela Merkel met Emmanuel Macron in Berlin."] * 600)  # ~26,000 characters, 4,800 tokens
    run = tag("-", "--workers", "1", stdin=text.encode() + b"\n")
    assert run.returncode == 0, run.stderr
    [result] = json_lines(run.stdout)
    assert len(result["entities"]) == 1800
    assert result == {"text": text, **pipeline.tag([text])[0]}


def test_a_malformed_line_stops_the_run_and_names_its_line(tmp_path):
    lines = [b'{"text": "Paris"}', b'{"text": "Rome"}', b'{"text": "Oslo"', b'{"text": "Bern"}']
    (tmp_path / "bad.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    run = tag(tmp_path / "bad.jsonl", "--workers", "2")
    assert run.returncode == 1
    stderr = run.stderr.decode()
    assert f"tag.py: error: {tmp_path / 'bad.jsonl'}:3: not JSON" in stderr
    assert [r["text"] for r in json_lines(run.stdout)] == ["Paris", "Rome"]  # what came before is written
    assert summary(run).startswith("tag.py: 2 inputs: 2 tagged, 0 malformed skipped;")


def test_skip_errors_writes_error_records_and_the_counts_add_up(tmp_path):
    lines = [b'{"id": 1, "text": "Paris"}', b"not json", b'{"id": 3, "text": "Rome"}', b'{"id": 4, "txt": "x"}',
             b'{"id": 5, "text": "caf\xe9"}', b'["text"]', b'{"id": 7, "text": "Oslo"}',
             b'{"id": 8, "text": "half a pair \\ud800"}', b'{"id": 9, "text": "a whole pair \\ud83d\\ude00"}']
    (tmp_path / "bad.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    run = tag(tmp_path / "bad.jsonl", "--skip-errors", "--workers", "1")
    assert run.returncode == 0, run.stderr
    results = json_lines(run.stdout)
    assert len(results) == len(lines)
    # An error record keeps the id of a record that was read (lines 4 and 8), and has none where there
    # was no record to read it from.
    assert [r.get("id") for r in results] == [1, None, 3, 4, None, None, 7, 8, 9]
    assert results[-1]["text"] == "a whole pair \U0001f600"
    errors = [r["error"] for r in results if "error" in r]
    assert [(e["code"], e["line"]) for e in errors] == [("malformed_line", n) for n in (2, 4, 5, 6, 8)]
    assert "not UTF-8" in errors[2]["message"] and "surrogate" in errors[4]["message"]
    assert summary(run).startswith("tag.py: 9 inputs: 4 tagged, 5 malformed skipped;")
    assert run.stderr.decode().count("tag.py: skipped ") == 5


def test_a_malformed_conll_row_names_its_line(tmp_path):
    conll = "EU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\nPeter NNP B-NP B-PER\nBlackburn NNP\n\nBRUSSELS NNP B-NP B-LOC\n"
    (tmp_path / "bad.conll").write_text(conll)
    stopped = tag(tmp_path / "bad.conll", "--workers", "1")
    assert stopped.returncode == 1
    assert f"{tmp_path / 'bad.conll'}:5: 2 columns where the file's rows have 4" in stopped.stderr.decode()
    skipped = tag(tmp_path / "bad.conll", "--workers", "1", "--skip-errors")
    assert skipped.returncode == 0
    # CoNLL has no place for an error record: the sentence is left out, and counted.
    assert skipped.stdout.decode() == "EU NNP B-NP B-ORG B-ORG\nrejects VBZ B-VP O O\n\nBRUSSELS NNP B-NP B-LOC B-LOC\n\n"
    assert summary(skipped).startswith("tag.py: 3 inputs: 2 tagged, 1 malformed skipped;")


def test_a_progress_bar_when_stderr_is_a_terminal(tmp_path):
    (tmp_path / "texts.txt").write_text("Angela Merkel visited Paris.\n" * 20)
    controller, terminal = pty.openpty()
    # A terminal of 120 columns: tqdm draws nothing on one of no size.
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    with subprocess.Popen([*TAG, str(tmp_path / "texts.txt"), "--workers", "1"], cwd=ROOT,
                          stdout=subprocess.DEVNULL, stderr=terminal) as process:
        os.close(terminal)
        shown = b""
        while chunk := read_terminal(controller):
            shown += chunk
        assert process.wait(timeout=120) == 0
    os.close(controller)
    assert re.search(r"\r20 texts \[[^]]* texts/s, [\d,]+ tokens/s\]", shown.decode())


def read_terminal(fd: int) -> bytes:
    try:
        return os.read(fd, 4096)
    except OSError:  # EIO: the process closed the terminal
        return b""
