"""Model directories other than the committed one, made without training: a
user's model with a type that has only a B- tag, served through the pipeline,
HTTP and tag.py, and describing itself; and the directories the service
cannot use, each refused at start-up with one line naming what is wrong.

A user's model is the committed one with its tags renamed and one tag
dropped: from the vocabulary, from the CRF's scores, and from the network's
output, by a Gather node added to a copy of its ONNX graph.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from nerserve.tagger import files
from nerserve.tagger.files import COMMITTED_MODEL_DIR, ModelError
from nerserve.tagger.marginals import ForwardBackward, tag_marginals
from nerserve.tagger.pipeline import load_pipeline
from nerserve.web.app import ApiError, create_app, model_loader
from tests.launcher import ROOT

# LOC renamed PLACE, and every PLACE one word: the tag set has no I-PLACE.
# And MISC without B-MISC: each MISC opens with I-MISC, as conlleval reads it.
RENAMED = {"LOC": "PLACE"}
DROPPED = ("I-PLACE", "B-MISC")
META = {
    "name": "A user's tagger (places are one word)",
    "version": "0123456789abcdef",
    "members": 1,
    "dev_f1": None,
    "test_f1": 77.5,
    "training_data": [{"dir": "user-data", "files": ["train.txt"], "sentences": 1234}],
}
TEXTS = ["I love Paris.", "Angela Merkel flew from Berlin to Rome , Madrid and Lisbon on Monday.",
         "The World Cup final"]
# What the user's model finds in TEXTS: the types of one word, and one opened by an I- tag.
FOUND = [[("Paris", "PLACE")],
         [("Angela Merkel", "PER"), ("Berlin", "PLACE"), ("Rome", "PLACE"), ("Madrid", "PLACE"), ("Lisbon", "PLACE")],
         [("World Cup", "MISC")]]
SERVED_FILES = (files.VOCAB, files.WORD_VECTORS, files.CHARS_ONNX, files.ONNX, files.CRF, files.CALIBRATION,
                files.META)


def renamed(tag: str) -> str:
    prefix, _, kind = tag.partition("-")
    return f"{prefix}-{RENAMED.get(kind, kind)}" if kind else tag


def write_vocab(directory: Path, tags: object) -> None:
    """The committed vocabulary with these tags."""
    vocab = json.loads((COMMITTED_MODEL_DIR / files.VOCAB).read_text(encoding="utf-8"))
    (directory / files.VOCAB).write_text(json.dumps({**vocab, "tags": tags}), encoding="utf-8")


def keep_crf_tags(directory: Path, keep: list[int]) -> None:
    """The committed CRF's scores, only for the tag ids `keep`."""
    with np.load(COMMITTED_MODEL_DIR / files.CRF) as crf:
        np.savez(directory / files.CRF, transitions=crf["transitions"][np.ix_(keep, keep)],
                 start=crf["start"][keep], end=crf["end"][keep])


def keep_network_tags(directory: Path, keep: list[int]) -> None:
    """The committed network, scoring only the tag ids `keep`: a Gather node after its output."""
    network = onnx.load(COMMITTED_MODEL_DIR / files.ONNX)
    (last,) = [node for node in network.graph.node if "emissions" in node.output]
    last.output[list(last.output).index("emissions")] = "all_emissions"
    network.graph.initializer.append(numpy_helper.from_array(np.array(keep, np.int64), "kept_tags"))
    network.graph.node.append(helper.make_node("Gather", ["all_emissions", "kept_tags"], ["emissions"], axis=2))
    network.graph.output[0].type.tensor_type.shape.dim[2].dim_value = len(keep)
    onnx.save(network, directory / files.ONNX)


def link_served_files(directory: Path, source: Path) -> Path:
    """`directory` serving `source`'s model: links to its files, to be replaced one by one."""
    directory.mkdir()
    for name in SERVED_FILES:
        (directory / name).symlink_to(source / name)
    return directory


def replace(path: Path, write: Callable[[], None]) -> None:
    path.unlink()
    write()


@pytest.fixture(scope="module")
def user_model(tmp_path_factory) -> Path:
    directory = link_served_files(tmp_path_factory.mktemp("models") / "user", COMMITTED_MODEL_DIR)
    tags = [renamed(tag) for tag in files.read_json(COMMITTED_MODEL_DIR, files.VOCAB)["tags"]]
    keep = [i for i, tag in enumerate(tags) if tag not in DROPPED]
    replace(directory / files.VOCAB, lambda: write_vocab(directory, [tags[i] for i in keep]))
    replace(directory / files.CRF, lambda: keep_crf_tags(directory, keep))
    replace(directory / files.ONNX, lambda: keep_network_tags(directory, keep))
    replace(directory / files.META, lambda: files.write_json(directory, files.META, META))
    return directory


@pytest.fixture(scope="module")
def user_client(user_model):
    app = create_app({"NER_MODEL_DIR": str(user_model)})
    model_loader(app).wait(120)
    return app.test_client()


def places(result: dict) -> list[dict]:
    return [entity for entity in result["entities"] if entity["type"] == "PLACE"]


# A type with only B- tags, served.


def entities(result: dict) -> list[tuple[str, str]]:
    return [(entity["text"], entity["type"]) for entity in result["entities"]]


def test_types_without_b_or_i_tags_are_scored_by_the_pipeline(user_model):
    pipeline = load_pipeline(user_model)
    results = pipeline.tag(TEXTS)
    assert [entities(result) for result in results] == FOUND
    assert all(0 < entity["score"] <= 1 for result in results for entity in result["entities"])
    # A PLACE is one B-PLACE token that nothing continues: its probability is the tag's marginal.
    tagger, tag_id = pipeline.tagger, pipeline.tagger.vocab.tags.index("B-PLACE")
    for result in results:
        words = [token["text"] for token in result["tokens"]]
        emissions, lengths = tagger.emissions([words]) / tagger.scorer.temperature, np.array([len(words)])
        marginals = tag_marginals(*ForwardBackward(*tagger.scorer.crf)(emissions, lengths), lengths)[0]
        for entity in places(result):
            token = next(i for i, t in enumerate(result["tokens"]) if t["start"] == entity["start"])
            assert entity["score"] == round(float(marginals[token, tag_id]), 4)


def test_types_without_b_or_i_tags_are_answered_over_http(user_client):
    response = user_client.post("/api", json={"texts": TEXTS})
    assert response.status_code == 200
    results = response.get_json()["results"]
    assert [entities(result) for result in results] == FOUND
    single = user_client.post("/api", json=TEXTS[0])
    assert single.status_code == 200 and single.get_json() == results[0]


def test_types_without_b_or_i_tags_are_tagged_by_tag_py(user_model, tmp_path):
    (tmp_path / "texts.txt").write_text("\n".join(TEXTS) + "\n")
    run = subprocess.run([sys.executable, str(ROOT / "tag.py"), str(tmp_path / "texts.txt"), "--workers", "1",
                          "--model-dir", str(user_model)], capture_output=True, cwd=ROOT, timeout=300, check=False)
    assert run.returncode == 0, run.stderr.decode()
    results = [json.loads(line) for line in run.stdout.decode().splitlines()]
    assert [entities(result) for result in results] == FOUND
    assert all(0 < entity["score"] <= 1 for result in results for entity in result["entities"])


# The model describes itself.


def test_the_api_describes_the_model_it_serves(user_client):
    types = ["MISC", "ORG", "PER", "PLACE"]
    info = user_client.get("/api/model").get_json()
    assert info["name"] == META["name"] and info["entity_types"] == types
    assert not set(DROPPED) & set(info["tags"]) and {"B-PLACE", "I-MISC"} <= set(info["tags"])
    document = user_client.get("/openapi.json").get_json()
    entity_type = document["components"]["schemas"]["Entity"]["properties"]["type"]
    assert entity_type["enum"] == types
    description = document["info"]["description"]
    assert META["name"] in description and "PLACE" in description and "user-data" in description
    # Nothing of the committed model: its training data, nor its example answer (a LOC).
    assert "CoNLL" not in json.dumps(document) and "B-LOC" not in json.dumps(document)
    index = user_client.get("/").get_json()
    assert index["model"] == {"name": META["name"], "version": META["version"], "entity_types": types,
                              "training_data": META["training_data"], "dev_f1": None, "test_f1": 77.5}


# Directories the service cannot use: start-up stops, saying why in one line.


Breaker = Callable[[Path], None]


def calibration(value) -> Breaker:
    def write(directory: Path) -> None:
        path = directory / files.CALIBRATION
        replace(path, lambda: path.write_text(json.dumps({"temperature": value})))
    return write


def committed_tags() -> list[str]:
    return files.read_json(COMMITTED_MODEL_DIR, files.VOCAB)["tags"]


def vocab_tags(change: Callable[[list[str]], object]) -> Breaker:
    def write(directory: Path) -> None:
        replace(directory / files.VOCAB, lambda: write_vocab(directory, change(committed_tags())))
    return write


def without_the_last_tag(directory: Path) -> None:
    vocab_tags(lambda tags: tags[:-1])(directory)


def with_a_crf_without_the_last_tag(directory: Path) -> None:
    """The vocabulary and the CRF one tag short, the network not."""
    without_the_last_tag(directory)
    replace(directory / files.CRF, lambda: keep_crf_tags(directory, list(range(len(committed_tags()) - 1))))


def infinite_transition(directory: Path) -> None:
    with np.load(COMMITTED_MODEL_DIR / files.CRF) as crf:
        transitions, start, end = crf["transitions"].copy(), crf["start"], crf["end"]
    transitions[0, 0] = np.inf
    replace(directory / files.CRF, lambda: np.savez(directory / files.CRF, transitions=transitions, start=start,
                                                    end=end))


def in_caseless(breaker: Breaker) -> Breaker:
    """The break in a caseless sub-model (nerserve.tagger.casing), the cased one sound."""
    def write(directory: Path) -> None:
        breaker(link_served_files(directory / files.CASELESS, COMMITTED_MODEL_DIR / files.CASELESS))
    return write


REFUSALS = {
    "negative temperature": (calibration(-1.3), files.CALIBRATION, "temperature is -1.3"),
    "zero temperature": (calibration(0), files.CALIBRATION, "temperature is 0"),
    "NaN temperature": (calibration(float("nan")), files.CALIBRATION, "temperature is nan"),
    "temperature not a number": (calibration("1.3"), files.CALIBRATION, "temperature is '1.3'"),
    "no tags": (vocab_tags(lambda tags: None), files.VOCAB, "no list of tags"),
    "tags not IOB2": (vocab_tags(lambda tags: [t.replace("B-", "S-") for t in tags]), files.VOCAB, "not all IOB2"),
    "a tag twice": (vocab_tags(lambda tags: [*tags[:-1], tags[1]]), files.VOCAB, "more than once"),
    "only O": (vocab_tags(lambda tags: ["O"]), files.VOCAB, "no entity tag"),
    "a CRF for other tags": (without_the_last_tag, files.CRF, "has 8 tags"),
    "a network for other tags": (with_a_crf_without_the_last_tag, files.ONNX, "scores 9 tags a word"),
    "infinite CRF scores": (infinite_transition, files.CRF, "not finite"),
    "caseless: negative temperature": (in_caseless(calibration(-1.0)), f"{files.CASELESS}/{files.CALIBRATION}",
                                       "temperature is -1.0"),
    "caseless: other tags": (in_caseless(vocab_tags(lambda tags: [renamed(t) for t in tags])),
                             f"{files.CASELESS}/{files.VOCAB}", "B-PLACE"),
}


@pytest.mark.parametrize(("break_it", "file", "why"), REFUSALS.values(), ids=REFUSALS.keys())
def test_a_directory_the_service_cannot_use_stops_start_up_with_one_line(tmp_path, caplog, break_it, file, why):
    directory = link_served_files(tmp_path / "model", COMMITTED_MODEL_DIR)
    break_it(directory)
    with caplog.at_level(logging.ERROR, logger="nerserve.web.app"), pytest.raises(ApiError, match="failed to load"):
        model_loader(create_app({"NER_MODEL_DIR": str(directory)})).wait(120)
    (record,) = [record for record in caplog.records if record.name == "nerserve.web.app"]
    line = record.getMessage()
    assert record.exc_info is None and "\n" not in line, line
    assert line.startswith(f"the model failed to load: {directory / file}: ") and why in line, line
    with pytest.raises(ModelError, match="^" + re.escape(str(directory / file))):
        load_pipeline(directory)  # tag.py, serve.py and the Spark job load it so too


@pytest.mark.parametrize("workers", ["1", "2"])
def test_tag_py_names_what_is_wrong_with_a_model_directory_in_one_line(tmp_path, workers):
    directory = link_served_files(tmp_path / "model", COMMITTED_MODEL_DIR)
    calibration(-1.3)(directory)
    done = subprocess.run([sys.executable, str(ROOT / "tag.py"), "-", "--model-dir", str(directory),
                           "--workers", workers], input="I love Paris\n", capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    expected = f"tag.py: error: {directory / files.CALIBRATION}: the temperature is -1.3"
    assert any(line.startswith(expected) for line in done.stderr.splitlines()), done.stderr
