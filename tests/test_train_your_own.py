"""README, "Train on your own data": every command of the section, on a tiny
data set the test writes. One command trains, exports and scores a model; the
model then loads, tags a corpus with tag.py, scores with
nerserve.tagger.training.evaluate and serves over HTTP with gunicorn. Malformed data
stops training with one line naming the file and line.

One type (PRODUCT) is only ever one word long, so the model's tag set has
B-PRODUCT and no I-PRODUCT: the service must still score its entities."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import numpy as np
import pytest

from nerserve.tagger import files
from nerserve.tagger.pipeline import load_pipeline
from nerserve.tagger.training import evaluate, glove, train
from nerserve.tagger.training.data import Sentence, write_conll
from tests.launcher import ROOT, gunicorn
from tests.service_fixtures import post_json
from tests.test_training import run_main

pytestmark = [pytest.mark.tensorflow, pytest.mark.slow]

PEOPLE = [("Anna", "Smith"), ("Peter", "Brown"), ("Maria", "Lopez"), ("John", "Miller")]
PRODUCTS = ["Zorblax", "Quantix", "Fernwick", "Glimmer"]
VERBS = ["bought", "sold", "reviewed", "liked"]
# A few dozen sentences: enough for the held-out tenth and two quick epochs.
SENTENCES = 48
WORDS = ["the", "a", "new", "bought", "sold", "reviewed", "liked", "anna", "smith", "peter"]
# What the README's command adds to train in seconds; the rest is as written there.
QUICK = ["--max-epochs", "2", "--lstm-units", "16", "--batch-size", "8"]


def generated(count: int, offset: int = 0) -> list[Sentence]:
    """`First Last VERB the PRODUCT .`: PER two words long, PRODUCT one."""
    sentences = []
    for i in range(offset, offset + count):
        first, last = PEOPLE[i % len(PEOPLE)]
        words = [first, last, VERBS[i // len(PEOPLE) % len(VERBS)], "the", PRODUCTS[i // 3 % len(PRODUCTS)], "."]
        sentences.append(Sentence(words, ["B-PER", "I-PER", "O", "O", "B-PRODUCT", "O"]))
    return sentences


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """mydata/ (train.txt and test.txt, no valid.txt) and the model the
    README's one command makes of it, with its log."""
    root = tmp_path_factory.mktemp("own")
    data, model = root / "mydata", root / "mymodel"
    data.mkdir()
    write_conll(data / "train.txt", generated(SENTENCES))
    write_conll(data / "test.txt", generated(8, offset=1))
    vectors = np.random.default_rng(0).normal(size=(len(WORDS), 100)).astype(np.float32)
    log = root / "train.out"
    handler = logging.FileHandler(log)
    logging.getLogger("train").addHandler(handler)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(glove, "load", lambda: (WORDS, vectors))  # no 100 MB download in a test
        # The README's command: python -m nerserve.tagger.training.train --data-dir mydata --out mymodel --run-dir runs/mymodel
        run_main(train, patch, "--data-dir", str(data), "--out", str(model), "--run-dir", str(root / "run"), *QUICK)
    logging.getLogger("train").removeHandler(handler)
    return root, data, model, log.read_text()


def test_the_data_is_summarised_before_the_first_epoch(trained):
    _, _, _, log = trained
    summary = log.index("sentences, ")
    assert summary < log.index("epoch 1:")
    assert "PER 43, PRODUCT 43" in log and "types seen only as single words: PRODUCT" in log
    assert "5 sentences of train.txt held out" in log


def test_the_model_is_exported_and_scored_by_type(trained):
    _, _, model, log = trained
    metrics = files.read_json(model, files.METRICS)
    assert set(metrics["test"]["by_type"]) <= {"PER", "PRODUCT"} and metrics["test"]["held_out"]
    assert "PRODUCT" in log[log.index("test.txt (kept in"):]
    pipeline = load_pipeline(model)
    assert "B-PRODUCT" in pipeline.tagger.vocab.tags and "I-PRODUCT" not in pipeline.tagger.vocab.tags
    assert len(pipeline.tag_tokens([["Anna", "Smith", "liked", "the", "Zorblax", "."]])[0]) == 6


def test_evaluate_prints_the_per_type_scores(trained, monkeypatch, capsys):
    _, data, model, _ = trained
    run_main(evaluate, monkeypatch, "--model", str(model), "--file", str(data / "test.txt"))
    assert "PER" in capsys.readouterr().out


def test_tag_py_tags_a_corpus_with_it(trained):
    root, _, model, _ = trained
    (root / "texts.txt").write_text("Maria Lopez reviewed the Quantix.\n")
    subprocess.run([sys.executable, "tag.py", str(root / "texts.txt"), "-o", str(root / "tagged.jsonl"),
                    "--model-dir", str(model), "--workers", "1"], cwd=ROOT, check=True)
    result = json.loads((root / "tagged.jsonl").read_text())
    assert len(result["tags"]) == len(result["tokens"]) == 6


def test_gunicorn_serves_it_with_entity_scores_between_0_and_1(trained):
    root, _, model, _ = trained
    with gunicorn(root / "gunicorn.log", workers=1, NER_MODEL_DIR=str(model)) as server:
        status, result = post_json(server.url + "/api", {"text": "Anna Smith liked the Zorblax. Peter Brown sold it."})
    assert status == 200, result
    assert all(0.0 <= entity["score"] <= 1.0 for entity in result["entities"])


def test_malformed_data_stops_training_with_one_line_naming_file_and_line(tmp_path):
    data = tmp_path / "bad"
    data.mkdir()
    (data / "train.txt").write_text("Anna B-PER\nSmith I-PER\nliked O\nthe O\nZorblax PRODUCT\n")
    done = subprocess.run([sys.executable, "-m", "nerserve.tagger.training.train", "--data-dir", str(data),
                           "--run-dir", str(tmp_path / "run")], cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: {data / 'train.txt'}:5: tag 'PRODUCT' is not IOB2 (O, B-X or I-X)")
    assert "Traceback" not in done.stderr


def test_keep_types_gives_a_model_of_the_old_types_and_the_new(tmp_path):
    data, base = tmp_path / "mydata", tmp_path / "base.txt"
    data.mkdir()
    # The user labels only PRODUCT; the committed model finds the people.
    write_conll(data / "train.txt", [Sentence(s.words, ["O", "O", "O", "O", "B-PRODUCT", "O"]) for s in generated(24)])
    write_conll(base, [Sentence(["Peter", "flew", "to", "Paris", "."], ["B-PER", "O", "O", "B-LOC", "O"])] * 8)
    vectors = np.random.default_rng(0).normal(size=(len(WORDS), 100)).astype(np.float32)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(glove, "load", lambda: (WORDS, vectors))
        run_main(train, patch, "--keep-types", "--keep-data", str(base), "--data-dir", str(data),
                 "--out", str(tmp_path / "mymodel"), "--run-dir", str(tmp_path / "run"), *QUICK)
    tags = load_pipeline(tmp_path / "mymodel").tagger.vocab.tags
    assert {"B-PER", "I-PER", "B-LOC", "B-PRODUCT"} <= set(tags)
    trained_on = next((tmp_path / "run").glob("mydata+*"))
    assert "Anna B-PER\nSmith I-PER" in (trained_on / "train.txt").read_text()
