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


def test_stdin_without_format_goes_by_its_first_line(tmp_path):
    """JSON Lines piped in are JSON Lines, their first line kept; -DOCSTART- is
    CoNLL; other text is text; a line that may be either stops the run at once."""
    jsonl = b'{"id": 1, "text": "Peter Blackburn"}\n\n{"id": 2, "text": "EU rejects German call."}\n'
    (tmp_path / "in.jsonl").write_bytes(jsonl)
    from_stdin = tag("-", "--workers", "1", stdin=jsonl)
    assert from_stdin.returncode == 0, from_stdin.stderr
    assert json_lines(from_stdin.stdout) == json_lines(tag(tmp_path / "in.jsonl", "--workers", "1").stdout)
    assert [r["id"] for r in json_lines(from_stdin.stdout)] == [1, 2]

    conll = b"-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n"
    (tmp_path / "in.conll").write_bytes(conll)
    assert tag("-", "--workers", "1", stdin=conll).stdout == tag(tmp_path / "in.conll", "--workers", "1").stdout
    [text] = json_lines(tag("-", "--workers", "1", stdin=b'Paris wrote {"a": 1}\n').stdout)
    assert text["text"] == 'Paris wrote {"a": 1}'

    for first_line, why in [(b'{"id": 1, "text": "cut short\n', "it starts as a JSON object but is not one"),
                            (b"EU NNP B-NP B-ORG\n", "it may be a CoNLL row, its last column 'B-ORG' a tag")]:
        run = tag("-", "-o", tmp_path / "out.jsonl", "--workers", "1", stdin=first_line)
        assert run.returncode == 2
        assert run.stderr.decode() == (f"tag.py: error: cannot tell stdin's format from its first line ({why}"
                                       + ("" if why.endswith("one") else ", or a text")
                                       + "): give --format text, jsonl or conll\n")
        assert not (tmp_path / "out.jsonl").exists()
    assert tag("-", "--format", "conll", "--workers", "1", stdin=b"EU NNP B-NP B-ORG\n").returncode == 0


def test_text_field_names_the_field_of_texts(tmp_path):
    records = [{"id": 1, "body": "Angela Merkel visited Paris.", "text": "not this"}]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    run = tag(tmp_path / "in.jsonl", "--text-field", "body", "--workers", "1")
    assert run.returncode == 0, run.stderr
    [result] = json_lines(run.stdout)
    assert result["input"] == "Angela Merkel visited Paris ." and result["text"] == "not this"
    # Plain text is written under the name given, and a record without the field names it.
    [plain] = json_lines(tag("-", "--text-field", "body", "--workers", "1", stdin=b"Paris\n").stdout)
    assert plain["body"] == "Paris" and "text" not in plain
    missing = tag("-", "--text-field", "body", "--workers", "1", stdin=b'{"text": "Paris"}\n')
    assert missing.returncode == 1 and 'not a JSON object with a string "body" field' in missing.stderr.decode()


def test_entities_only_writes_the_input_fields_and_the_entities(tmp_path):
    records = [{"id": "a", "text": "Angela Merkel visited Paris.", "source": "x"}, {"id": "b", "text": ""}]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    full = json_lines(tag(tmp_path / "in.jsonl", "--workers", "1").stdout)
    run = tag(tmp_path / "in.jsonl", "--entities-only", "--workers", "1")
    assert run.returncode == 0, run.stderr
    assert json_lines(run.stdout) == [{**r, "entities": f["entities"]} for r, f in zip(records, full, strict=True)]
    conll = tag("-", "--format", "conll", "--entities-only", "--workers", "1", stdin=b"EU NNP B-NP B-ORG\n")
    assert conll.returncode == 2 and conll.stdout == b""
    assert "--entities-only is for text and JSON Lines input" in conll.stderr.decode()


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


def readme_corpus_commands() -> list[str]:
    """The README's "Tag a corpus" commands, continuation lines joined, comments dropped."""
    section = (ROOT / "README.md").read_text().split("## Tag a corpus", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.DOTALL).group(1)
    lines = block.replace("\\\n", " ").splitlines()
    return [re.sub(r"\s+#.*$", "", line) for line in lines if line.strip()]


def test_the_readmes_tag_commands_run_as_written(tmp_path):
    """Each tag.py command of the README's "Tag a corpus", in a directory with
    the files it names; spark-submit's is tests/test_spark.py's, and make
    spark-install the Makefile's (CI runs it)."""
    commands = [c for c in readme_corpus_commands() if "tag.py" in c and "spark_tag.py" not in c]
    assert len(commands) == 5, commands
    (tmp_path / "texts.txt").write_text("Angela Merkel visited Paris.\nEU rejects German call.\n")
    (tmp_path / "texts.jsonl").write_text('{"id": 1, "text": "Angela Merkel visited Paris."}\n')
    (tmp_path / "posts.jsonl").write_text('{"id": 1, "body": "Angela Merkel visited Paris."}\n')
    (tmp_path / "news.jsonl.gz").write_bytes(gzip.compress(b'{"id": 1, "text": "EU rejects German call."}\n'))
    (tmp_path / "data/conll2003").mkdir(parents=True)
    dev = (DEFAULT_DATA_DIR / "valid.txt").read_text().split("\n\n")[:20]
    (tmp_path / "data/conll2003/valid.txt").write_text("\n\n".join(dev) + "\n")
    outputs = {"tagged.jsonl": "json", "tagged.jsonl.gz": "gzip", "entities.jsonl": "json",
               "valid.pred.conll": "conll"}
    for command in commands:
        for output in outputs:
            (tmp_path / output).unlink(missing_ok=True)
        run = subprocess.run(["bash", "-c", command.replace(".venv/bin/python tag.py", " ".join(TAG))],
                             cwd=tmp_path, capture_output=True, timeout=300, check=False)
        assert run.returncode == 0, (command, run.stderr)
        written = [name for name in outputs if (tmp_path / name).exists()]
        assert len(written) == 1 and (tmp_path / written[0]).stat().st_size > 0, command
        if written == ["entities.jsonl"]:
            [record] = json_lines((tmp_path / "entities.jsonl").read_bytes())
            assert set(record) == {"id", "body", "entities"} and len(record["entities"]) == 2
