"""A tiny model trains on a file the test writes, resumes, saves, loads, exports
and joins an ensemble."""

import json
import random
import shutil
import sys

import numpy as np
import pytest

from nerserve.tagger import files
from nerserve.tagger.backends import load_tagger
from nerserve.tagger.config import Config
from nerserve.tagger.runtime import viterbi
from nerserve.tagger.training import artifact, ensemble, glove
from nerserve.tagger.training import export as export_module
from nerserve.tagger.training.data import Sentence
from nerserve.tagger.training.export import export
from nerserve.tagger.training.train import choice_f1, recased_at_random, train
from nerserve.tagger.vocab import Vocab

pytestmark = [pytest.mark.tensorflow, pytest.mark.slow]

SENTENCES = [
    ("Peter lives in Paris .", "B-PER O O B-LOC O"),
    ("Anna Smith visited London", "B-PER I-PER O B-LOC"),
    ("The EU met in Berlin .", "O B-ORG O O B-LOC O"),
    ("German officials said so", "B-MISC O O O"),
]
PRETRAINED = ["the", "in", ".", "paris", "london", "berlin", "said", "peter", "officials", "lives"]


def write_split(path, sentences):
    blocks = ["\n".join(f"{w} {t}" for w, t in zip(s.split(), tags.split(), strict=True)) for s, tags in sentences]
    path.write_text("\n\n".join(blocks), encoding="utf-8")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, monkeypatch_module):
    root = tmp_path_factory.mktemp("tiny")
    data = root / "data"
    data.mkdir()
    write_split(data / "train.txt", SENTENCES * 8)
    write_split(data / "valid.txt", SENTENCES)
    write_split(data / "test.txt", SENTENCES[::-1])
    vectors = np.random.default_rng(0).normal(size=(len(PRETRAINED), 100)).astype(np.float32)
    monkeypatch_module.setattr(glove, "load", lambda: (PRETRAINED, vectors))
    config = Config(lstm_units=16, char_filters=8, batch_size=8, max_epochs=1, keep_pretrained=5)
    train(config, data, root / "out", root / "run")
    first = json.loads((root / "run" / "last" / "state.json").read_text())
    train(Config(**{**config.__dict__, "max_epochs": 6}), data, root / "out", root / "run")
    return root, first


@pytest.fixture(scope="module")
def tiny_ensemble(tiny_run):
    """Two frozen-vector models from different seeds, and their ensemble."""
    root, _ = tiny_run
    members = []
    for seed in (1, 2):
        config = Config(lstm_units=16, char_filters=8, batch_size=8, max_epochs=2, keep_pretrained=5, seed=seed)
        train(config, root / "data", root / f"member{seed}", root / f"run{seed}")
        members.append(root / f"member{seed}")
    ensemble.combine(members, root / "ensemble")
    return root, members


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_loss_falls_and_training_resumes(tiny_run):
    root, first = tiny_run
    assert first["epoch"] == 1
    state = json.loads((root / "run" / "last" / "state.json").read_text())
    history = state["history"]
    assert [h["epoch"] for h in history] == list(range(1, len(history) + 1))
    assert len(history) > 1, "the second run resumed after epoch 1 and went on"
    assert history[-1]["loss"] < history[0]["loss"]
    assert "resumed after epoch 1" in (root / "run" / "train.log").read_text()


def test_save_load_round_trip_gives_identical_predictions(tiny_run):
    root, _ = tiny_run
    (tagger,), vocab, config = artifact.load(root / "out")
    artifact.save([tagger], vocab, config, root / "copy")
    (again,), _, _ = artifact.load(root / "copy")
    batch = vocab.encode([s.split() for s, _ in SENTENCES])
    first = tagger(batch.word_ids, batch.char_ids, batch.casing_ids).numpy()
    second = again(batch.word_ids, batch.char_ids, batch.casing_ids).numpy()
    np.testing.assert_array_equal(first, second)


def test_export_matches_tensorflow(tiny_run):
    root, _ = tiny_run
    report = export(root / "out", data_dir=root / "data")
    assert report["valid"]["identical_tags"] == report["valid"]["sentences"] == len(SENTENCES)
    assert report["test"]["max_abs_emission_diff"] < 1e-4
    sentences = [s.split() for s, _ in SENTENCES] + [["x" * 50, "Paris"], ["Paris"]]
    reference, lean = load_tagger(root / "out", "tensorflow"), load_tagger(root / "out", "onnx")
    expected, got = reference.emissions(sentences), lean.emissions(sentences)
    for i, sentence in enumerate(sentences):  # padding positions differ and do not matter
        np.testing.assert_allclose(expected[i, : len(sentence)], got[i, : len(sentence)], atol=1e-4)
    assert reference.tag(sentences) == lean.tag(sentences)


def test_export_checks_the_splits_that_a_users_data_has(tiny_run):
    root, _ = tiny_run
    dev_only = root / "dev_only"
    dev_only.mkdir()
    write_split(dev_only / "valid.txt", SENTENCES)
    report = export(root / "out", data_dir=dev_only)
    assert list(report) == ["valid"]
    assert report["valid"]["identical_tags"] == len(SENTENCES)


def test_ensemble_scores_paths_by_the_members_mean(tiny_ensemble):
    root, members = tiny_ensemble
    sentences = [s.split() for s, _ in SENTENCES]
    combined = load_tagger(root / "ensemble", "tensorflow")
    mean_emissions = np.mean([load_tagger(m, "tensorflow").emissions(sentences) for m in members], axis=0)
    np.testing.assert_allclose(combined.emissions(sentences), mean_emissions, atol=1e-5)
    weights = [w for m in members for w in files.read_weights(m)]
    transitions, start, end = (np.mean([w[name] for w in weights], axis=0) for name in ("transitions", "start", "end"))
    lengths = np.array([len(s) for s in sentences])
    paths = viterbi(mean_emissions, lengths, transitions, start, end)
    vocab = Vocab.load(root / "ensemble" / "vocab.json")
    expected = [[vocab.tags[t] for t in path[:n]] for path, n in zip(paths, lengths, strict=True)]
    assert combined.tag(sentences) == expected


def test_ensemble_export_matches_tensorflow(tiny_ensemble):
    root, _ = tiny_ensemble
    report = export(root / "ensemble", data_dir=root / "data")
    for split in ("valid", "test"):
        assert report[split]["identical_tags"] == report[split]["sentences"] == len(SENTENCES)
        assert report[split]["max_abs_emission_diff"] < 1e-4
    history = json.loads((root / "ensemble" / "training.json").read_text())
    assert [m["seed"] for m in history["members"]] == [1, 2]


def test_an_ensemble_given_as_a_model_joins_member_by_member(tiny_ensemble):
    root, members = tiny_ensemble
    ensemble.combine([root / "ensemble", members[0]], root / "nested")
    assert files.count_members(root / "nested") == 3
    history = json.loads((root / "nested" / "training.json").read_text())
    assert [m["seed"] for m in history["members"]] == [1, 2, 1]
    assert all(m["history"] for m in history["members"])


def test_ensemble_refuses_members_trained_differently(tiny_ensemble, tmp_path):
    root, members = tiny_ensemble
    wider = tmp_path / "wider"
    shutil.copytree(members[1], wider)
    Config(**{**Config.load(wider / files.CONFIG).__dict__, "lstm_units": 32}).save(wider / files.CONFIG)
    with pytest.raises(ValueError, match="same hyperparameters"):
        ensemble.combine([members[0], wider], root / "mixed")


def test_ensemble_members_may_train_for_different_epochs(tiny_ensemble, tmp_path):
    _, members = tiny_ensemble
    longer = tmp_path / "longer"
    shutil.copytree(members[1], longer)
    Config(**{**Config.load(longer / files.CONFIG).__dict__, "max_epochs": 9, "decay_epochs": (4,)}).save(
        longer / files.CONFIG)
    ensemble.combine([members[0], longer], tmp_path / "joined")
    assert files.count_members(tmp_path / "joined") == 2


def test_recasing_at_random_keeps_the_tags_and_follows_the_proportions():
    sentences = [Sentence(["Anna", "Smith", "visited", "London"], ["B-PER", "I-PER", "O", "B-LOC"])] * 4000
    config = Config(recase_lower=0.2, recase_upper=0.3)
    recased = recased_at_random(sentences, config, np.random.default_rng(0), random.Random(0))
    assert all(s.tags == sentences[0].tags for s in recased)
    written = [" ".join(s.words) for s in recased]
    shares = {text: written.count(text) / len(written) for text in set(written)}
    assert set(shares) == {"Anna Smith visited London", "anna smith visited london", "ANNA SMITH VISITED LONDON"}
    assert shares["anna smith visited london"] == pytest.approx(0.2, abs=0.03)
    assert shares["ANNA SMITH VISITED LONDON"] == pytest.approx(0.3, abs=0.03)
    again = recased_at_random(sentences, config, np.random.default_rng(0), random.Random(0))
    assert [s.words for s in again] == [s.words for s in recased]


def test_recasing_at_random_writes_text_as_people_type_it():
    sentences = [Sentence(["Anna", "Smith", "visited", "London"], ["B-PER", "I-PER", "O", "B-LOC"])] * 4000
    config = Config(recase_lower=0, recase_upper=0, recase_sentence=0.1, recase_title=0.2, recase_mixed=0.4)
    recased = recased_at_random(sentences, config, np.random.default_rng(0), random.Random(0))
    written = [" ".join(s.words) for s in recased]
    shares = {text: written.count(text) / len(written) for text in set(written)}
    # "mixed" lowercases each of the two names with probability 0.5: a quarter
    # of its sentences keep both as written.
    assert shares == {
        "Anna Smith visited London": pytest.approx(0.3 + 0.4 / 4, abs=0.03),
        "Anna smith visited london": pytest.approx(0.1, abs=0.03),
        "Anna Smith Visited London": pytest.approx(0.2, abs=0.03),
        "anna smith visited London": pytest.approx(0.4 / 4, abs=0.03),
        "Anna Smith visited london": pytest.approx(0.4 / 4, abs=0.03),
        "anna smith visited london": pytest.approx(0.4 / 4, abs=0.03),
    }


def test_training_on_train_and_dev_runs_the_fixed_epochs_and_keeps_the_last(tiny_run):
    root, _ = tiny_run
    config = Config(lstm_units=16, char_filters=8, batch_size=8, max_epochs=3, patience=1, keep_pretrained=5,
                    train_on_dev=True, decay_epochs=(2,))
    train(config, root / "data", root / "final", root / "run-final")
    state = json.loads((root / "final" / "training.json").read_text())
    assert [h["epoch"] for h in state["history"]] == [1, 2, 3]
    assert state["best_epoch"] == 3
    assert state["lr_decays"] == [2]
    assert "dev_f1" not in state["history"][0]
    assert state["data"]["files"] == ["train.txt", "valid.txt"]


def test_the_export_describes_the_model_in_meta_json(tiny_ensemble):
    root, _ = tiny_ensemble
    export(root / "ensemble", data_dir=None, saved_model=False)
    meta = files.read_json(root / "ensemble", files.META)
    assert meta["version"] == files.version(root / "ensemble") and meta["members"] == 2
    assert meta["config"] == files.read_json(root / "ensemble", files.CONFIG)
    assert meta["training_data"] == [{"dir": "data", "files": ["train.txt"], "sentences": 32}]
    assert meta["dev_f1"] is None  # not evaluated yet
    assert meta["temperature"] == 1.0  # not calibrated


def run_main(module, monkeypatch, *args: str) -> None:
    monkeypatch.setattr(sys, "argv", [module.__name__, *args])
    module.main()


@pytest.fixture
def exported_copy(tiny_run, tmp_path):
    """A copy of the tiny model, exported with parity checked."""
    root, _ = tiny_run
    model = tmp_path / "model"
    shutil.copytree(root / "out", model)
    export(model, data_dir=root / "data", saved_model=False)
    return model


def broken_onnx(build_onnx):
    """build_onnx on weights whose emission bias is off by one: the runtimes disagree."""
    def build(members):
        return build_onnx([{**m, "emission/bias": m["emission/bias"] + 1.0} for m in members])
    return build


def test_an_export_that_fails_parity_exits_non_zero_and_leaves_the_model(tiny_run, exported_copy, monkeypatch):
    root, _ = tiny_run
    before = {path.name: path.read_bytes() for path in exported_copy.iterdir() if path.is_file()}
    monkeypatch.setattr(export_module, "build_onnx", broken_onnx(export_module.build_onnx))
    with pytest.raises(SystemExit, match="parity check failed") as failure:
        run_main(export_module, monkeypatch, "--model", str(exported_copy), "--data-dir", str(root / "data"))
    assert failure.value.code != 0
    assert {path.name: path.read_bytes() for path in exported_copy.iterdir() if path.is_file()} == before
    assert sorted(p.name for p in exported_copy.parent.iterdir()) == ["model"]  # no staging left behind


def test_an_ensemble_that_fails_parity_leaves_the_previous_one(tiny_ensemble, exported_copy, monkeypatch):
    root, members = tiny_ensemble
    before = files.read_json(exported_copy, files.META)
    monkeypatch.setattr(export_module, "build_onnx", broken_onnx(export_module.build_onnx))
    with pytest.raises(SystemExit, match="parity check failed"):
        run_main(ensemble, monkeypatch, "--out", str(exported_copy), "--data-dir", str(root / "data"), *map(str, members))
    assert files.read_json(exported_copy, files.META) == before and files.count_members(exported_copy) == 1


def test_an_ensemble_that_passes_parity_replaces_the_model(tiny_ensemble, exported_copy, monkeypatch):
    root, members = tiny_ensemble
    run_main(ensemble, monkeypatch, "--out", str(exported_copy), "--data-dir", str(root / "data"), *map(str, members))
    assert files.count_members(exported_copy) == 2
    assert files.read_json(exported_copy, files.META)["version"] == files.version(exported_copy)
    assert (exported_copy / files.SAVED_MODEL).is_dir() and (exported_copy / files.PARITY).exists()
    assert load_tagger(exported_copy, "onnx").tag([["Paris"]]) == load_tagger(exported_copy, "tensorflow").tag([["Paris"]])



def test_a_cased_network_is_chosen_on_text_as_written_a_recased_one_on_every_case():
    by_case = {"as_written": 94.0, "lower": 0.0, "upper": 80.0}
    assert choice_f1(by_case, Config(recase_lower=0, recase_upper=0)) == 94.0
    assert choice_f1(by_case, Config(recase_lower=0.25, recase_upper=0.25)) == pytest.approx(58.0)
    people = {"as_written": 94.0, "lower": 0.0, "upper": 0.0, "sentence": 90.0, "title": 85.0, "mixed": 94.0}
    assert choice_f1(people, Config(recase_lower=0, recase_upper=0, recase_title=0.1, recase_mixed=0.2)) == 91.0
