"""The committed model: it loads without the data or GloVe, tags well, and
the lean runtime and the SavedModel agree with TensorFlow."""

import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from model.backends import load_tagger
from model.tags import score
from model.training.data import DEFAULT_DATA_DIR, read_conll
from model.vocab import batches_by_length

pytestmark = pytest.mark.tensorflow



@pytest.fixture(scope="module")
def reference(model_dir):
    return load_tagger(model_dir, "tensorflow")


@pytest.fixture(scope="module")
def lean(model_dir):
    return load_tagger(model_dir, "onnx")


@pytest.fixture(scope="module")
def dev():
    return read_conll(DEFAULT_DATA_DIR / "valid.txt")


def test_dev_f1_of_the_committed_model(reference, dev):
    predicted = reference.tag([s.words for s in dev])
    assert score([s.tags for s in dev], predicted).overall.f1 >= 90.0


@pytest.mark.parametrize("backend", ["tensorflow", "onnx"])
def test_obvious_entities(model_dir, backend):
    tagger = load_tagger(model_dir, backend)
    assert tagger.tag([["I", "love", "Paris"]]) == [["O", "O", "B-LOC"]]
    assert tagger.tag([["Angela", "Merkel", "visited", "Washington"]]) == [["B-PER", "I-PER", "O", "B-LOC"]]


def test_lean_runtime_matches_tensorflow_on_a_dev_sample(reference, lean, dev):
    sample = [s.words for s in dev[::10]]
    assert lean.tag(sample) == reference.tag(sample)
    for indices in batches_by_length(sample, 64):
        batch = [sample[i] for i in indices]
        expected, got = reference.emissions(batch), lean.emissions(batch)
        for i, sentence in enumerate(batch):
            np.testing.assert_allclose(got[i, : len(sentence)], expected[i, : len(sentence)], atol=1e-4)


def test_full_parity_report_of_the_export(model_dir):
    report = json.loads((model_dir / "parity.json").read_text())
    for split in ("valid", "test"):
        assert report[split]["identical_tags"] == report[split]["sentences"] > 3000
        assert report[split]["max_abs_emission_diff"] < 1e-4


def test_saved_model_serving_signature(model_dir, reference):
    serve = tf.saved_model.load(str(model_dir / "saved_model")).signatures["serving_default"]
    sentences = [["EU", "rejects", "German", "call"], ["Peter", "Blackburn"]]
    batch = reference.vocab.encode(sentences)
    outputs = serve(word_ids=tf.constant(batch.word_ids), char_ids=tf.constant(batch.char_ids),
                    casing_ids=tf.constant(batch.casing_ids), lengths=tf.constant(batch.lengths))
    tags = [[reference.vocab.tags[t] for t in row[:n]] for row, n in zip(outputs["tag_ids"].numpy(), batch.lengths)]
    assert tags == reference.tag(sentences)
    np.testing.assert_allclose(outputs["emissions"].numpy()[0], reference.emissions(sentences)[0], atol=1e-5)


def test_metrics_hold_dev_and_test_f1(model_dir):
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["dev"]["f1"] >= 90.0
    assert set(metrics["test"]["by_type"]) == {"LOC", "MISC", "ORG", "PER"}


def test_lean_runtime_never_imports_tensorflow(model_dir):
    code = (
        "import sys\n"
        "from model.runtime import OnnxTagger\n"
        f"tags = OnnxTagger({str(model_dir)!r}).tag([['I', 'love', 'Paris']])\n"
        "assert tags == [['O', 'O', 'B-LOC']], tags\n"
        "loaded = [m for m in ('tensorflow', 'keras') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=model_dir.parent.parent)
