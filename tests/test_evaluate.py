"""The conlleval-style scores agree with seqeval, and the command prints them."""

import subprocess
import sys

import numpy as np
import pytest
from seqeval.metrics import accuracy_score, classification_report

from nerserve.tagger.tags import entity_spans, score
from nerserve.tagger.training.data import DEFAULT_DATA_DIR, read_conll


def test_entity_spans_follow_conlleval():
    tags = ["B-PER", "I-PER", "O", "I-LOC", "I-LOC", "B-LOC", "I-ORG", "B-MISC"]
    assert [(s.type, s.start, s.end) for s in entity_spans(tags)] == [
        ("PER", 0, 2), ("LOC", 3, 5), ("LOC", 5, 6), ("ORG", 6, 7), ("MISC", 7, 8)]


@pytest.mark.parametrize("seed", range(3))
def test_scores_agree_with_seqeval(seed):
    """Gold dev tags against corrupted copies, with the invalid I- starts that
    conlleval and seqeval must both read as entity starts."""
    gold = [s.tags for s in read_conll(DEFAULT_DATA_DIR / "valid.txt")][:800]
    rng = np.random.default_rng(seed)
    tag_set = sorted({t for tags in gold for t in tags})
    predicted = [[t if rng.random() > 0.1 else str(rng.choice(tag_set)) for t in tags] for tags in gold]
    ours = score(gold, predicted)
    theirs = classification_report(gold, predicted, output_dict=True, digits=6)
    assert ours.overall.f1 == pytest.approx(100 * theirs["micro avg"]["f1-score"], abs=1e-6)
    assert ours.overall.precision == pytest.approx(100 * theirs["micro avg"]["precision"], abs=1e-6)
    assert ours.overall.recall == pytest.approx(100 * theirs["micro avg"]["recall"], abs=1e-6)
    for kind, figures in ours.by_type.items():
        assert figures.f1 == pytest.approx(100 * theirs[kind]["f1-score"], abs=1e-6)
        assert figures.support == theirs[kind]["support"]
    assert ours.token_accuracy == pytest.approx(100 * accuracy_score(gold, predicted), abs=1e-6)


def test_evaluate_command_on_a_two_column_file(tmp_path, model_dir):
    path = tmp_path / "mine.txt"
    path.write_text("I O\nlove O\nParis B-LOC\n\nAngela B-PER\nMerkel I-PER\n", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "nerserve.tagger.training.evaluate", "--model", str(model_dir), "--file", str(path), "--backend", "onnx"],
        capture_output=True, text=True, check=True, cwd=model_dir.parent.parent,
    )
    assert "FB1: 100.00" in result.stdout
    assert "     PER    100.00  100.00  100.00       1" in result.stdout


class WordsRecorder:
    """A tagger that tags every word O and keeps the words it was given."""

    def __init__(self):
        self.sentences = []

    def tag(self, sentences):
        self.sentences += sentences
        return [["O"] * len(s) for s in sentences]


@pytest.mark.parametrize(("casing", "words"), [
    ("as_written", [["I", "love", "Paris"], ["Angela", "Merkel", "met", "O'Neil"]]),
    ("lower", [["i", "love", "paris"], ["angela", "merkel", "met", "o'neil"]]),
    ("upper", [["I", "LOVE", "PARIS"], ["ANGELA", "MERKEL", "MET", "O'NEIL"]]),
    ("sentence", [["I", "love", "paris"], ["Angela", "merkel", "met", "o'neil"]]),
    ("title", [["I", "Love", "Paris"], ["Angela", "Merkel", "Met", "O'Neil"]]),
])
def test_evaluate_tags_the_words_in_the_casing_asked_for(monkeypatch, tmp_path, casing, words):
    from nerserve.tagger.training import evaluate

    path = tmp_path / "mine.txt"
    path.write_text("I O\nlove O\nParis B-LOC\n\nAngela B-PER\nMerkel I-PER\nmet O\nO'Neil B-PER\n", encoding="utf-8")
    recorder = WordsRecorder()
    monkeypatch.setattr(evaluate, "load_tagger", lambda directory, backend: recorder)
    evaluate.evaluate(tmp_path, path, case=casing)
    assert recorder.sentences == words


def test_evaluate_mixed_lowercases_whole_entities_the_same_way_every_run(monkeypatch, tmp_path):
    from nerserve.tagger.training import evaluate

    path = tmp_path / "mine.txt"
    path.write_text("Angela B-PER\nMerkel I-PER\nmet O\nParis B-LOC\n\n" * 20, encoding="utf-8")
    runs = []
    for _ in range(2):
        recorder = WordsRecorder()
        monkeypatch.setattr(evaluate, "load_tagger", lambda directory, backend, r=recorder: r)
        evaluate.evaluate(tmp_path, path, case="mixed")
        runs.append(recorder.sentences)
    assert runs[0] == runs[1]
    persons = {tuple(words[:2]) for words in runs[0]}
    assert persons == {("Angela", "Merkel"), ("angela", "merkel")}  # each entity lowercased whole, or kept
    assert {words[2] for words in runs[0]} == {"met"} and {words[3] for words in runs[0]} == {"Paris", "paris"}
