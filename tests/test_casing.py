"""Sentences not written with normal case go to the caseless tagger, the rest to
the cased one; and text recased as people type it, to score the taggers."""


import numpy as np
import pytest

from nerserve.tagger.casing import (
    CASED,
    CASINGS,
    CaseRouter,
    ScoredTags,
    clauses,
    entity_character_spans,
    is_caseless,
    lower_char,
    lower_spans,
    lowercase_capitalised,
    mixed_case,
    recase_sentences,
    sentence_case,
    title_case,
    upper_char,
    with_entities_added,
)
from nerserve.tagger.pipeline import process_pipeline
from nerserve.tagger.training.data import DEFAULT_DATA_DIR, read_conll

# The sentences (28), typed as people type them, where the cased tagger alone failed.
TYPED_AS_PEOPLE_TYPE = [
    ("Going to paris with john smith tomorrow", [("paris", "LOC"), ("john smith", "PER")]),
    ("Meeting with microsoft in seattle next week", [("microsoft", "ORG"), ("seattle", "LOC")]),
    ("The european union fined google in brussels.",
     [("european union", "ORG"), ("google", "ORG"), ("brussels", "LOC")]),
    ("Angela Merkel met Tim Cook. the european union fined google in brussels.",
     [("Angela Merkel", "PER"), ("Tim Cook", "PER"), ("european union", "ORG"), ("google", "ORG"),
      ("brussels", "LOC")]),
    # The README's example: a name half lowercased, which the typed network adds to the cased ones'.
    ("Angela Merkel met tim cook. the european union fined google in brussels.",
     [("Angela Merkel", "PER"), ("tim cook", "PER"), ("european union", "ORG"), ("google", "ORG"),
      ("brussels", "LOC")]),
    # Title Case without a small word capitalised: the typed network's alone (the cased
    # networks gave "Syria Easily").
    ("Coach Says Japan Beat Syria Easily", [("Japan", "LOC"), ("Syria", "LOC")]),
]


@pytest.mark.parametrize(("words", "caseless"), [
    (["barack", "obama", "was", "born", "in", "hawaii"], True),
    (["ANGELA", "MERKEL", "VISITED", "WASHINGTON"], True),
    (["LONDON", "1996-08-30"], True),
    (["I", "love", "Paris"], False),
    (["i", "met", "Obama"], False),
    # Chat keeps acronyms; a name capitalised as news would have it is the cue.
    (["i", "think", "NATO", "should", "meet", "in", "brussels"], True),
    (["barack", "obama", "visited", "PARIS"], True),
    (["I", "saw", "McCague"], False),
    (["iPhone", "sales"], True),
    (["1996-08-30", "(", "4-1", ")"], False),  # no cased letter: the cased tagger, as before
    (["東京", "2020"], False),
    (["straße", "über"], True),
    ([], False),
    # Sentence case: a sentence's first word and "I" are capitals of any text.
    (["Going", "to", "paris", "with", "john", "smith", "tomorrow"], True),
    (["\"", "Meeting", "with", "microsoft", "in", "seattle"], True),
    (["I", "met", "john", "in", "paris"], True),
    (["So", "I", "'m", "told", "and", "I'll", "see", "I'm", "sure"], True),
    (["Germany", "beat", "italy"], True),
    (["Germany", "beat", "Italy"], False),
    (["Bernardin", "died", "from", "AIDS", "last", "year"], False),  # an acronym: written with care
    # Title Case: nearly every word capitalised, small words too.
    (["Going", "To", "Paris", "With", "John", "Smith"], True),
    (["The", "European", "Union", "Fined", "Google", "In", "Brussels", "."], True),
    (["Bank", "of", "America", "Names", "Its", "New", "Chief"], True),
    # ... but lines of names and headings, with no small word capitalised, are news as written.
    (["Given", ",", "Breen", ",", "Staunton", ",", "Irwin", "."], False),
    (["Lead", "Underwriter", "Bear", "Stearns", "&", "Co", "Inc"], False),
    (["The", "Hague"], False),
    (["Group", "A", ":", "Italy", "3", "Georgia", "0"], False),
])
def test_is_caseless(words, caseless):
    assert is_caseless(words) is caseless


class Recorder:
    """A tagger that tags every word with its own name and records its calls."""

    vocab = None

    def __init__(self, name: str):
        self.name, self.calls = name, []

    def tag(self, sentences):
        self.calls.append(sentences)
        return [[self.name] * len(s) for s in sentences]


def test_each_sentence_goes_to_one_tagger_in_one_call_and_comes_back_in_order():
    cased, caseless = Recorder("cased"), Recorder("caseless")
    sentences = [["I", "love", "Paris"], ["paris", "!"], ["Rome", "or", "Milan"], ["ROME", "."]]
    assert CaseRouter(cased, caseless).tag(sentences) == [
        ["cased"] * 3, ["caseless"] * 2, ["cased"] * 3, ["caseless"] * 2]
    assert cased.calls == [[["I", "love", "Paris"], ["Rome", "or", "Milan"]]]
    assert caseless.calls == [[["paris", "!"], ["ROME", "."]]]


def test_a_tagger_with_no_sentences_is_not_called():
    cased, caseless = Recorder("cased"), Recorder("caseless")
    assert CaseRouter(cased, caseless).tag([["I", "love", "Paris"]]) == [["cased"] * 3]
    assert caseless.calls == []


class ScoredRecorder(Recorder):
    def tag_scored(self, sentences):
        self.calls.append(sentences)
        return [ScoredTags([self.name] * len(s), np.arange(len(s), dtype=float)) for s in sentences]


def test_the_caseless_tagger_gets_capitalised_words_lowercased():
    cased, caseless = Recorder("cased"), Recorder("caseless")
    CaseRouter(cased, caseless).tag([["Going", "to", "Paris", "With", "NATO"], ["Going", "to", "Paris"]])
    assert cased.calls == [[["Going", "to", "Paris"]]]
    assert caseless.calls == [[["going", "to", "paris", "with", "NATO"]]]


class Typed:
    """A typed tagger: tags and scores given per sentence, by its first word."""

    def __init__(self, answers: dict[str, tuple[list[str], list[float]]]):
        self.answers, self.calls = answers, []

    def tag_scored(self, sentences, scored_if=None):
        """As the real taggers: a sentence that scored_if turns down keeps NaN
        scores (whether each was scored: self.scored)."""
        self.calls.append(sentences)
        answers = [(list(self.answers[s[0]][0]), np.array(self.answers[s[0]][1])) for s in sentences]
        self.scored = [scored_if is None or scored_if(i, tags) for i, (tags, _) in enumerate(answers)]
        return [ScoredTags(tags, scores if scored else np.full(len(tags), np.nan))
                for (tags, scores), scored in zip(answers, self.scored, strict=True)]

    def tag(self, sentences):
        return [scored.tags for scored in self.tag_scored(sentences)]


def test_with_a_typed_tagger_title_case_without_small_words_goes_to_it_alone():
    cased, caseless = Recorder("cased"), Recorder("caseless")
    headline = ["Japan", "Coach", "Says", "Team", "Ready"]
    typed = Typed({"Japan": (["B-LOC", "O", "O", "O", "O"], [0.9, np.nan, np.nan, np.nan, np.nan])})
    assert CaseRouter(cased, caseless, typed).tag([headline]) == [["B-LOC", "O", "O", "O", "O"]]
    assert cased.calls == [] and caseless.calls == [] and typed.calls == [[headline]]
    # Without a typed tagger it is the cased tagger's, as before.
    assert CaseRouter(cased, caseless).tag([headline]) == [["cased"] * 5]


def test_with_a_typed_tagger_the_cased_route_gains_the_names_it_missed():
    nan = np.nan
    cased = ScoredRecorder("cased")
    cased.tag_scored = lambda sentences: [ScoredTags(["B-PER", "I-PER", "O", "O", "O", "O", "O"],
                                                     np.array([0.99, nan, nan, nan, nan, nan, nan])) for _ in sentences]
    sentence = ["Angela", "Merkel", "met", "tim", "cook", "in", "paris"]
    typed = Typed({"Angela": (["B-ORG", "I-ORG", "O", "B-PER", "I-PER", "O", "B-LOC"],
                              [0.8, nan, nan, 0.7, nan, nan, 0.3])})
    [result] = CaseRouter(cased, Recorder("caseless"), typed).tag_scored([sentence])
    # "Angela Merkel" keeps the cased tags; "tim cook" is added; "paris", scored 0.3, is not.
    assert result.tags == ["B-PER", "I-PER", "O", "B-PER", "I-PER", "O", "O"]
    assert result.scores[[0, 3]].tolist() == [0.99, 0.7]


def test_the_typed_tagger_scores_only_sentences_where_it_could_add_a_name():
    # Scoring costs about as much as tagging, and in text written as news the
    # typed tagger rarely finds an entity the cased one did not.
    nan = np.nan
    cased = ScoredRecorder("cased")
    cased.tag_scored = lambda sentences: [ScoredTags(["B-PER", "I-PER", "O", "O"], np.array([0.99, nan, nan, nan]))
                                          for _ in sentences]
    typed = Typed({"Angela": (["B-PER", "I-PER", "O", "O"], [0.9, nan, nan, nan]),
                   "Tim": (["B-PER", "I-PER", "O", "B-LOC"], [0.9, nan, nan, 0.8])})
    results = CaseRouter(cased, Recorder("caseless"), typed).tag_scored(
        [["Angela", "Merkel", "met", "them"], ["Tim", "Cook", "visited", "paris"]])
    assert typed.scored == [False, True]  # the first sentence's one entity is the cased tagger's too
    assert results[1].tags == ["B-PER", "I-PER", "O", "B-LOC"]


@pytest.mark.parametrize(("base", "extra", "scores", "joined"), [
    (["O", "O", "O"], ["B-LOC", "I-LOC", "O"], [0.6, 0.6, 0.0], ["B-LOC", "I-LOC", "O"]),
    (["O", "B-PER", "O"], ["B-LOC", "I-LOC", "O"], [0.6, 0.6, 0.0], ["O", "B-PER", "O"]),  # overlaps: left out
    (["O", "O", "O"], ["B-LOC", "O", "O"], [0.49, 0.0, 0.0], ["O", "O", "O"]),  # scored under 0.5
    (["O", "I-LOC", "O"], ["B-LOC", "O", "O"], [0.9, 0.0, 0.0], ["B-LOC", "B-LOC", "O"]),  # two entities, not one
    (["O", "O"], ["I-ORG", "I-ORG"], [0.9, 0.9], ["B-ORG", "I-ORG"]),
])
def test_with_entities_added(base, extra, scores, joined):
    assert with_entities_added(base, ScoredTags(extra, np.array(scores))) == joined


@pytest.mark.parametrize(("words", "lowered"), [
    (["Going", "to", "paris"], ["going", "to", "paris"]),
    (["McCague", "NATO", "I", "iPhone", "'S", "(Reuters"], ["mccague", "NATO", "I", "iPhone", "'S", "(reuters"]),
    (["İstanbul"], ["İstanbul"]),  # "İ" lowercases to two characters: kept
])
def test_lowercase_capitalised(words, lowered):
    assert lowercase_capitalised(words) == lowered


@pytest.mark.parametrize(("words", "pieces"), [
    (["Tim", "Cook", ".", "the", "end", "."], [["Tim", "Cook", "."], ["the", "end", "."]]),
    (["Hi", "!", "ok", "?", "yes"], [["Hi", "!"], ["ok", "?"], ["yes"]]),
    (["Tim", "Cook", ".", "The", "end"], [["Tim", "Cook", ".", "The", "end"]]),  # the tokenizer splits those
    (["1.5", "pct", ".", "."], [["1.5", "pct", ".", "."]]),
    ([], [[]]),
])
def test_clauses(words, pieces):
    assert clauses(words) == pieces


def test_clauses_of_different_routes_are_tagged_apart_and_joined():
    cased, caseless = ScoredRecorder("cased"), ScoredRecorder("caseless")
    sentence = ["Angela", "Merkel", "met", "Tim", "Cook", ".", "the", "union", "fined", "google", "."]
    [result] = CaseRouter(cased, caseless).tag_scored([sentence])
    assert result.tags == ["cased"] * 6 + ["caseless"] * 5
    assert result.scores.tolist() == [0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4]
    assert cased.calls == [[sentence[:6]]] and caseless.calls == [[sentence[6:]]]


def test_clauses_of_one_route_stay_one_sentence():
    cased, caseless = Recorder("cased"), Recorder("caseless")
    sentence = ["Angela", "Merkel", "met", "Tim", "Cook", ".", "then", "Obama", "came", "."]
    assert CaseRouter(cased, caseless).tag([sentence]) == [["cased"] * 10]
    assert cased.calls == [[sentence]]


@pytest.mark.parametrize(("ch", "lower", "upper"), [
    ("A", "a", "A"), ("a", "a", "A"), ("1", "1", "1"),
    ("ß", "ß", "ß"),  # "SS" upper-cased: kept
    ("İ", "İ", "İ"),  # "i̇" lowercased: kept
    ("ŉ", "ŉ", "ŉ"),  # "ʼN" upper-cased: kept
    ("Σ", "σ", "Σ"),
])
def test_case_mappings_of_more_than_one_character_keep_the_character(ch, lower, upper):
    assert (lower_char(ch), upper_char(ch)) == (lower, upper)


@pytest.mark.parametrize(("text", "recased"), [
    ("Angela Merkel visited WASHINGTON .", "Angela merkel visited washington ."),
    ('" going to Paris', '" Going to paris'),
    ("1996-08-30 LONDON", "1996-08-30 London"),
    ("straße İSTANBUL", "Straße İstanbul"),
    ("", ""),
    ("1 - 0", "1 - 0"),
])
def test_sentence_case(text, recased):
    assert sentence_case(text) == recased


@pytest.mark.parametrize(("text", "recased"), [
    ("angela merkel visited WASHINGTON .", "Angela Merkel Visited Washington ."),
    ("o'neil of the U.S. 's", "O'Neil Of The U.S. 'S"),
    ("3rd 1990s mid-1996 x2", "3rd 1990s Mid-1996 X2"),
    ("mcCAGUE", "Mccague"),
    ("straße", "Straße"),
    ("ßa", "ßa"),  # "ß" upper-cased is "SS": kept
])
def test_title_case(text, recased):
    assert title_case(text) == recased


@pytest.mark.parametrize(("text", "spans", "recased"), [
    ("Angela Merkel met Tim Cook", [(0, 13)], "angela merkel met Tim Cook"),
    ("Angela Merkel met Tim Cook", [(18, 26), (0, 6)], "angela Merkel met tim cook"),
    ("NATO in PARIS", [], "NATO in PARIS"),
    ("İSTANBUL", [(0, 8)], "İstanbul"),
])
def test_lower_spans(text, spans, recased):
    assert lower_spans(text, spans) == recased


class Draws:
    """A random generator that gives the draws it was given."""

    def __init__(self, *draws: float):
        self.draws = list(draws)

    def random(self) -> float:
        return self.draws.pop(0)


@pytest.mark.parametrize(("draws", "recased"), [
    ((0.2, 0.7, 0.4), "angela merkel met Tim Cook in berlin"),
    ((0.5, 0.9, 0.5), "Angela Merkel met Tim Cook in Berlin"),
    ((0.0, 0.49, 0.99), "angela merkel met tim cook in Berlin"),
])
def test_mixed_case_lowercases_each_entity_whose_draw_is_below_one_half(draws, recased):
    text, entities = "Angela Merkel met Tim Cook in Berlin", [(0, 13), (18, 26), (30, 36)]
    assert mixed_case(text, entities, Draws(*draws)) == recased


def test_entity_character_spans():
    words, tags = ["Angela", "Merkel", "met", "Tim", "Cook"], ["B-PER", "I-PER", "O", "B-PER", "I-PER"]
    assert entity_character_spans(words, tags) == [(0, 13), (18, 26)]


@pytest.fixture(scope="module")
def dev_sentences():
    return [(s.words, s.tags) for s in read_conll(DEFAULT_DATA_DIR / "valid.txt")]


@pytest.mark.parametrize("casing", ["as_written", "mixed"])
def test_scoring_only_where_a_name_could_be_added_changes_no_result(model_dir, dev_sentences, casing):
    router = process_pipeline(model_dir).tagger
    sentences = [words for words in recase_sentences(dev_sentences[:1000], casing) if router.route(words) == CASED]
    every_entity_scored = [with_entities_added(base, extra) for base, extra in
                           zip(router.cased.tag_scored(sentences), router.typed.tag_scored(sentences), strict=True)]
    results = router.tag_scored(sentences)
    assert [r.tags for r in results] == [r.tags for r in every_entity_scored]
    np.testing.assert_array_equal(np.concatenate([r.scores for r in results]),
                                  np.concatenate([r.scores for r in every_entity_scored]))
    assert sum(r.tags != base for r, base in zip(results, router.cased.tag(sentences), strict=True)) > 0


@pytest.mark.parametrize("casing", ["sentence", "title", "mixed"])
def test_recasing_real_text_keeps_every_character_in_place(dev_sentences, casing):
    recased = recase_sentences(dev_sentences, casing)
    assert recased == recase_sentences(dev_sentences, casing)  # the same every run
    for (words, tags), new in zip(dev_sentences, recased, strict=True):
        assert [len(w) for w in new] == [len(w) for w in words]
        text, new_text = " ".join(words), " ".join(new)
        # The gold offsets still hold: each entity is the same letters, recased.
        for start, end in entity_character_spans(words, tags):
            assert lower_spans(new_text, [(start, end)])[start:end] == lower_spans(text, [(start, end)])[start:end]


def test_mixed_lowercases_about_half_the_entities_and_nothing_else(dev_sentences):
    recased = recase_sentences(dev_sentences, "mixed")
    lowered = total = 0
    for (words, tags), new in zip(dev_sentences, recased, strict=True):
        text, new_text = " ".join(words), " ".join(new)
        spans = entity_character_spans(words, tags)
        inside = {i for start, end in spans for i in range(start, end)}
        assert all(new_text[i] == text[i] for i in range(len(text)) if i not in inside)
        for start, end in spans:
            total += 1
            lowered += new_text[start:end] != text[start:end] or text[start:end] == text[start:end].lower()
    assert 0.45 < lowered / total < 0.55


def test_sentence_and_title_case_of_real_text(dev_sentences):
    words, tags = next((w, t) for w, t in dev_sentences if w[:3] == ["West", "Indian", "all-rounder"])
    assert recase_sentences([(words, tags)], "sentence")[0][:6] == [
        "West", "indian", "all-rounder", "phil", "simmons", "took"]
    assert recase_sentences([(words, tags)], "title")[0][:6] == [
        "West", "Indian", "All-Rounder", "Phil", "Simmons", "Took"]


def test_lower_and_upper_recase_each_word_as_str_does():
    words = ["Angela", "Merkel", "visited", "U.S.", "troops", "in", "Straße", "42"]
    tags = ["B-PER", "I-PER", "O", "B-LOC", "O", "O", "B-LOC", "O"]
    assert recase_sentences([(words, tags)], "lower") == [
        ["angela", "merkel", "visited", "u.s.", "troops", "in", "straße", "42"]]
    assert recase_sentences([(words, tags)], "upper") == [
        ["ANGELA", "MERKEL", "VISITED", "U.S.", "TROOPS", "IN", "STRASSE", "42"]]
    assert recase_sentences([(words, tags)], "as_written") == [words]


def test_every_casing_has_a_recasing(dev_sentences):
    for casing in CASINGS:
        assert len(recase_sentences(dev_sentences[:3], casing)) == 3
    with pytest.raises(ValueError, match="casing must be one of"):
        recase_sentences(dev_sentences[:1], "camel")


@pytest.mark.parametrize(("text", "entities"), TYPED_AS_PEOPLE_TYPE)
def test_text_typed_as_people_type_it_through_the_service(client, text, entities):
    result = client.post("/api", json={"text": text}).get_json()
    assert [(e["text"], e["type"]) for e in result["entities"]] == entities


@pytest.mark.parametrize("casing", CASINGS)
def test_entities_cut_the_text_exactly_in_every_casing(client, casing):
    words = ["Angela", "Merkel", "met", "Tim", "Cook", "of", "Apple", "in", "Berlin", "."]
    tags = ["B-PER", "I-PER", "O", "B-PER", "I-PER", "O", "B-ORG", "O", "B-LOC", "O"]
    text = " ".join(recase_sentences([(words, tags)], casing)[0])
    entities = client.post("/api", json={"text": text}).get_json()["entities"]
    assert entities and all(e["text"] == text[e["start"] : e["end"]] for e in entities)
    assert all(text[e["start"] : e["end"]].lower() in {"angela merkel", "tim cook", "apple", "berlin"}
               for e in entities)
