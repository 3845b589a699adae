"""Adding a type without losing the committed model's (`train --keep-types`):
the data it builds, with the committed model through the ONNX runtime (no
TensorFlow), and the simulated user set of the experiment (MODEL.md)."""

import numpy as np

from nerserve.tagger.training import keep_types, new_type
from nerserve.tagger.training.data import Sentence, read_conll, write_conll
from tests.test_data import sentences_of


def test_the_old_model_fills_in_its_types_only_where_the_user_says_o():
    user = Sentence(["Angela", "Merkel", "liked", "Oktoberfest", "in", "Munich"], ["O", "O", "O", "B-FEST", "O", "O"])
    predicted = ["B-PER", "I-PER", "O", "B-MISC", "O", "B-LOC"]
    filled, added = keep_types.fill_in(user, predicted, {"PER", "LOC", "ORG"})
    assert filled.tags == ["B-PER", "I-PER", "O", "B-FEST", "O", "B-LOC"]
    assert added == {"PER": 1, "LOC": 1}


def test_an_old_entity_overlapping_the_users_is_left_out():
    user = Sentence(["New", "York", "Marathon"], ["B-RACE", "I-RACE", "I-RACE"])
    filled, added = keep_types.fill_in(user, ["B-LOC", "I-LOC", "O"], {"LOC"})
    assert filled == user and not added


def test_the_users_types_are_made_o_in_the_base_data():
    base = sentences_of("German/B-MISC officials/O met/O Anna/B-PER Smith/I-PER")
    assert keep_types.without(base, {"MISC"})[0].tags == ["O", "O", "O", "B-PER", "I-PER"]


def test_prepare_joins_the_users_sentences_tagged_by_the_committed_model_with_the_base_data(tmp_path):
    user_dir, base = tmp_path / "mydata", tmp_path / "base.txt"
    user_dir.mkdir()
    mine = sentences_of("Angela/O Merkel/O opened/O the/O Oktoberfest/B-FEST in/O Munich/O ./O")
    write_conll(user_dir / "train.txt", mine)
    write_conll(user_dir / "valid.txt", sentences_of("Barack/O Obama/O loved/O Oktoberfest/B-FEST ./O"))
    write_conll(base, sentences_of("""
        German/B-MISC officials/O met/O Anna/B-PER Smith/I-PER ./O
        Angela/B-PER Merkel/I-PER opened/O the/O Oktoberfest/B-MISC in/O Munich/B-LOC ./O
    """))
    data_dir = keep_types.prepare(user_dir, tmp_path / "run", base_data=base)
    assert data_dir.parent == tmp_path / "run" and data_dir.name.startswith("mydata+")
    # The user's sentences, PER and LOC filled in by the committed model where the user said O.
    assert [s.tags for s in read_conll(data_dir / "train.txt")] == [
        ["B-PER", "I-PER", "O", "O", "B-FEST", "O", "B-LOC", "O"]]
    assert read_conll(data_dir / "valid.txt")[0].tags == ["B-PER", "I-PER", "O", "B-FEST", "O"]
    # The base data less the sentence the user has (FEST is no type of the base data's).
    base_set, open_types = keep_types.read_base(data_dir)
    assert [s.tags for s in base_set] == [["B-MISC", "O", "O", "B-PER", "I-PER", "O"]]
    assert open_types == {"FEST"}


def test_a_data_directory_not_prepared_has_no_base_data(tmp_path):
    assert keep_types.read_base(tmp_path) == ([], set())


def test_an_o_of_the_base_data_may_be_a_new_type_and_nothing_else_may_change():
    tags = ["O", "B-LOC", "I-LOC", "B-FEST", "I-FEST", "B-PER"]
    tag_ids = np.array([[1, 0, 5], [0, 3, 0]])  # B-LOC O PER; O B-FEST O (padding is O too)
    allowed = keep_types.allowed_tags(tag_ids, np.array([True, False]), tags, {"FEST"})
    assert allowed.shape == (2, 3, 6)
    assert [[tags[i] for i in np.flatnonzero(token)] for token in allowed[0]] == [
        ["B-LOC"], ["O", "B-FEST", "I-FEST"], ["B-PER"]]
    assert (allowed[1] == np.eye(6)[tag_ids[1]]).all(), "the user's own sentence keeps its tags"


def test_the_simulated_user_set_keeps_one_type_of_a_seeded_choice(tmp_path):
    conll = tmp_path / "conll"
    conll.mkdir()
    sentences = [Sentence([f"Name{i}", "visited", "German", "towns"], ["B-PER", "O", "B-MISC", "O"]) for i in range(50)]
    write_conll(conll / "train.txt", sentences)
    write_conll(conll / "valid.txt", sentences[:5])
    new_type.make(tmp_path / "user", "MISC", 10, seed=3, conll=conll)
    chosen = read_conll(tmp_path / "user" / "train.txt")
    assert len(chosen) == 10 and all(s.tags == ["O", "O", "B-MISC", "O"] for s in chosen)
    new_type.make(tmp_path / "again", "MISC", 10, seed=3, conll=conll)
    assert read_conll(tmp_path / "again" / "train.txt") == chosen
    assert [s.tags for s in read_conll(tmp_path / "user" / "valid.txt")] == [["O", "O", "B-MISC", "O"]] * 5
