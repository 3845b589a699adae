"""spark_tag.py under spark-submit on local[2], shipped as docs/readme-corpus.md
ships it to a cluster: the job and model/ zipped for --py-files, the lean
model unpacked from --archives, run from a directory outside the repository
(so nothing is imported from the checkout). Needs Java (make java)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nerserve.tagger.pipeline import load_pipeline
from nerserve.tagger.training.data import DEFAULT_DATA_DIR, read_conll
from tests.launcher import ROOT

SPARK_SUBMIT = os.path.join(os.path.dirname(sys.executable), "spark-submit")
ENTITY = pa.struct([("text", pa.string()), ("type", pa.string()), ("start", pa.int32()), ("end", pa.int32()),
                    ("score", pa.float64())])
# The driver and its UI on loopback only.
LOOPBACK = ["--conf", "spark.driver.host=127.0.0.1", "--conf", "spark.driver.bindAddress=127.0.0.1",
            "--conf", "spark.ui.enabled=false"]


@pytest.mark.slow
def test_spark_on_local_2_writes_the_pipelines_entities(tmp_path, model_dir):
    subprocess.run(["make", "-s", "spark-package"], cwd=ROOT, check=True, timeout=300)
    texts = [" ".join(sentence.words) for sentence in read_conll(DEFAULT_DATA_DIR / "valid.txt")[:200]]
    # The texts in "body" (--text-field), the format from the name (.jsonl), as tag.py takes them.
    records = [{"id": i, "body": text} for i, text in enumerate(texts)] + [{"id": len(texts)}]  # no text
    (tmp_path / "texts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    command = [SPARK_SUBMIT, "--master", "local[2]", *LOOPBACK,
               # Several partitions, so that a Python worker tags more than one task with its model.
               "--conf", "spark.sql.files.maxPartitionBytes=4096",
               "--py-files", str(ROOT / "dist/ner-code.zip"), "--archives", f"{ROOT / 'dist/ner-model.tar.gz'}#crf",
               str(ROOT / "spark_tag.py"), "texts.jsonl", "tagged", "--text-field", "body", "--model-dir", "crf",
               "--batch-size", "16"]
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYSPARK_PYTHON": sys.executable}
    run = subprocess.run(command, cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=600,
                         check=False)
    assert run.returncode == 0, run.stderr[-5000:]

    table = pq.read_table(tmp_path / "tagged")
    assert table.schema.field("entities").type == pa.list_(ENTITY)
    rows = sorted(table.to_pylist(), key=lambda row: row["id"])
    assert [row["id"] for row in rows] == list(range(len(records)))
    assert rows[-1]["body"] is None and rows[-1]["entities"] is None
    expected = [result["entities"] for result in load_pipeline(model_dir).tag(texts)]
    assert [row["entities"] for row in rows[:-1]] == expected
    assert sum(map(len, expected)) > len(texts)  # CoNLL dev has ~1.9 entities a sentence
    assert len(list((tmp_path / "tagged").glob("part-*.parquet"))) > 1

    readme_command_runs_as_written(tmp_path, texts[:3], expected[:3], environment)


def readme_command_runs_as_written(tmp_path, texts, expected, environment) -> None:
    """The README's spark-submit command, in the clone (where it runs), its
    two paths (texts.jsonl, tagged) moved to tmp_path: JSON Lines in and out."""
    section = (ROOT / "README.md").read_text().split("## Tag a corpus", 1)[1].split("\n## ", 1)[0]
    [command] = [re.sub(r"\s+#.*$", "", line) for line in section.replace("\\\n", " ").splitlines()
                 if "spark-submit" in line]
    assert " texts.jsonl tagged " in command, command
    (tmp_path / "readme").mkdir()
    (tmp_path / "readme/texts.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    command = command.replace(" texts.jsonl tagged ", f" {tmp_path}/readme/texts.jsonl {tmp_path}/readme/tagged ")
    run = subprocess.run(["bash", "-c", command.replace("--master ", " ".join(LOOPBACK) + " --master ")],
                         cwd=ROOT, env=environment, capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stderr[-5000:]
    rows = [json.loads(line) for part in sorted((tmp_path / "readme/tagged").glob("part-*.json"))
            for line in part.read_text().splitlines()]
    assert sorted((row["text"], row["entities"]) for row in rows) == sorted(zip(texts, expected, strict=True))
