"""The committed model: it loads without the data or GloVe, tags well in every
case, its scores are what metrics.json says, and the lean runtime and the
SavedModel agree with TensorFlow, for the cased and the caseless networks."""

import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from nerserve.tagger import files
from nerserve.tagger.backends import load_tagger
from nerserve.tagger.casing import CaseRouter, recase_sentences
from nerserve.tagger.runtime import OnnxTagger
from nerserve.tagger.tags import score
from nerserve.tagger.training.artifact import TensorFlowTagger
from nerserve.tagger.training.data import DEFAULT_DATA_DIR, read_conll
from nerserve.tagger.training.evaluate import metrics_key
from nerserve.tagger.vocab import batches_by_length

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


def networks(model_dir):
    """The model's own directory, its caseless and its typed one: each is a full model."""
    return [model_dir, model_dir / files.CASELESS, model_dir / files.TYPED]


def test_the_committed_model_routes_caseless_sentences(reference, lean):
    assert isinstance(reference, CaseRouter) and isinstance(lean, CaseRouter)
    # Trained on the same data, the three share one vocabulary and one copy of the vectors.
    for other in (lean.caseless, lean.typed):
        assert other.vocab is lean.cased.vocab and other.word_vectors is lean.cased.word_vectors


@pytest.mark.parametrize(("split", "case"), [("valid", "lower"), ("test", "as_written"), ("test", "mixed")])
def test_scores_reproduce_metrics_json(model_dir, lean, split, case):
    """Re-scoring gives what metrics.json (and the README) report; the model is
    trained on train + dev, so test is its real measure and dev F1 is no check."""
    sentences = read_conll(DEFAULT_DATA_DIR / f"{split}.txt")
    predicted = lean.tag(recase_sentences([(s.words, s.tags) for s in sentences], case))
    f1 = score([s.tags for s in sentences], predicted).overall.f1
    assert round(f1, 2) == files.read_json(model_dir, files.METRICS)[metrics_key(split, case)]["f1"]


def test_lowercased_dev_f1_of_the_committed_model(lean, dev):
    predicted = lean.tag(recase_sentences([(s.words, s.tags) for s in dev], "lower"))
    assert score([s.tags for s in dev], predicted).overall.f1 >= 85.0


@pytest.mark.parametrize("backend", ["tensorflow", "onnx"])
def test_obvious_entities_in_every_case(model_dir, backend):
    tagger = load_tagger(model_dir, backend)
    assert tagger.tag([
        ["I", "love", "Paris"],
        ["Angela", "Merkel", "visited", "Washington"],
        ["barack", "obama", "was", "born", "in", "hawaii"],
        ["ANGELA", "MERKEL", "VISITED", "WASHINGTON"],
    ]) == [
        ["O", "O", "B-LOC"],
        ["B-PER", "I-PER", "O", "B-LOC"],
        ["B-PER", "I-PER", "O", "O", "O", "B-LOC"],
        ["B-PER", "I-PER", "O", "B-LOC"],
    ]


@pytest.mark.parametrize("network", [0, 1, 2], ids=["cased", "caseless", "typed"])
def test_lean_runtime_matches_tensorflow_on_a_dev_sample(model_dir, dev, network):
    directory = networks(model_dir)[network]
    reference, lean = TensorFlowTagger(directory), OnnxTagger(directory)
    sample = [s.words for s in dev[::10]]
    assert lean.tag(sample) == reference.tag(sample)
    for indices in batches_by_length(sample, 64):
        batch = [sample[i] for i in indices]
        expected, got = reference.emissions(batch), lean.emissions(batch)
        for i, sentence in enumerate(batch):
            np.testing.assert_allclose(got[i, : len(sentence)], expected[i, : len(sentence)], atol=1e-4)


@pytest.mark.parametrize("network", [0, 1, 2], ids=["cased", "caseless", "typed"])
def test_full_parity_report_of_the_export(model_dir, network):
    report = json.loads((networks(model_dir)[network] / "parity.json").read_text())
    for split in ("valid", "test"):
        assert report[split]["identical_tags"] == report[split]["sentences"] > 3000
        assert report[split]["max_abs_emission_diff"] < 1e-4


@pytest.mark.parametrize("network", [0, 1, 2], ids=["cased", "caseless", "typed"])
def test_saved_model_serving_signature(model_dir, network):
    directory = networks(model_dir)[network]
    reference = TensorFlowTagger(directory)
    serve = tf.saved_model.load(str(directory / "saved_model")).signatures["serving_default"]
    sentences = [["EU", "rejects", "German", "call"], ["Peter", "Blackburn"]]
    batch = reference.vocab.encode(sentences)
    outputs = serve(word_ids=tf.constant(batch.word_ids), char_ids=tf.constant(batch.char_ids),
                    casing_ids=tf.constant(batch.casing_ids), lengths=tf.constant(batch.lengths))
    tags = [[reference.vocab.tags[t] for t in row[:n]] for row, n in zip(outputs["tag_ids"].numpy(), batch.lengths)]
    assert tags == reference.tag(sentences)
    np.testing.assert_allclose(outputs["emissions"].numpy()[0], reference.emissions(sentences)[0], atol=1e-5)


def test_metrics_and_meta_say_what_the_model_was_trained_on(model_dir):
    metrics = files.read_json(model_dir, files.METRICS)
    assert {f"{split}{suffix}" for split in ("dev", "test") for suffix in ("", "_lower", "_upper")} <= set(metrics)
    assert set(metrics["test"]["by_type"]) == {"LOC", "MISC", "ORG", "PER"}
    meta = files.read_json(model_dir, files.META)
    for described in (meta, meta["caseless"]):
        assert [sorted(d["files"]) for d in described["training_data"]] == [["train.txt", "valid.txt"]]


def test_lean_runtime_never_imports_tensorflow(model_dir):
    code = (
        "import sys\n"
        "from nerserve.tagger.runtime import OnnxTagger\n"
        f"tags = OnnxTagger({str(model_dir)!r}).tag([['I', 'love', 'Paris']])\n"
        "assert tags == [['O', 'O', 'B-LOC']], tags\n"
        "loaded = [m for m in ('tensorflow', 'keras') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=model_dir.parent.parent)
