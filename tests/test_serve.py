"""The text pipeline (nerserve.tagger.tokenizer, nerserve.tagger.pipeline) and serve.py's model_api:
tokenization, alignment, entity offsets, batching, and the real model."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

import serve
from nerserve.tagger import pipeline
from nerserve.tagger.marginals import ScoredTags
from nerserve.tagger.pipeline import align_data, annotate
from nerserve.tagger.tags import entity_spans
from nerserve.tagger.tokenizer import Token, tokenize
from nerserve.tagger.training.data import DEFAULT_DATA_DIR, read_conll


def words(text: str) -> list[list[str]]:
    return [[t.text for t in sentence] for sentence in tokenize(text)]


def test_punctuation_is_kept_as_tokens_with_offsets():
    text = "Hello, world! (Really?)"
    assert words(text) == [["Hello", ",", "world", "!"], ["(", "Really", "?", ")"]]
    for token in (t for sentence in tokenize(text) for t in sentence):
        assert text[token.start : token.end] == token.text


def test_sentences_are_split():
    assert words("I love Paris. Angela Merkel visited Washington.\n\nNew paragraph here") == [
        ["I", "love", "Paris", "."],
        ["Angela", "Merkel", "visited", "Washington", "."],
        ["New", "paragraph", "here"],
    ]


def test_conll_conventions():
    # CoNLL splits clitics off; it keeps hyphenated words, inner capitals,
    # apostrophes inside names and abbreviations whole.
    assert words("Britain's prime minister doesn't like Anglo-Dutch talks") == [
        ["Britain", "'s", "prime", "minister", "does", "n't", "like", "Anglo-Dutch", "talks"]
    ]
    assert words("M. McCague and Tim O'Gorman of the U.S. team won") == [
        ["M.", "McCague", "and", "Tim", "O'Gorman", "of", "the", "U.S.", "team", "won"]
    ]
    # A sentence-final period stays a token of its own.
    assert words("He lives in Paris.") == [["He", "lives", "in", "Paris", "."]]


def test_conll_tokens_written_apart_stay_whole():
    # Text written as CoNLL's tokens joined by spaces, as the case scores feed it.
    assert words("Germany 's team won C$ 5 , call +44 171 .") == [
        ["Germany", "'s", "team", "won", "C$", "5", ",", "call", "+44", "171", "."]
    ]
    # A period after a word that is no abbreviation stays apart in lowercase
    # text too, where syntok ends no sentence before the next word.
    assert words("i love paris. angela merkel left.") == [["i", "love", "paris", ".", "angela", "merkel", "left", "."]]
    assert words("Apple Inc. beat Samsung Co. on Monday") == [["Apple", "Inc.", "beat", "Samsung", "Co.", "on", "Monday"]]


def test_sentences_split_where_none_ends_are_joined_again():
    # syntok ends a sentence after a table row's ")" and before a lone closing quote.
    assert words("Mladost ( L ) 4 2 1 1 8 5 7") == [["Mladost", "(", "L", ")", "4", "2", "1", "1", "8", "5", "7"]]
    assert words('SHARETSKY \'S CHARGE . "') == [["SHARETSKY", "'S", "CHARGE", ".", '"']]
    # In upper-case text syntok ends a sentence at an abbreviation's period; not so after a number.
    assert words("ST. LOUIS-BASED MERCANTILE BANCORP INC. BY") == [["ST.", "LOUIS-BASED", "MERCANTILE", "BANCORP", "INC.", "BY"]]
    assert words("He left in 1996. Then he came back.") == [["He", "left", "in", "1996", "."], ["Then", "he", "came", "back", "."]]
    # A line break still ends a sentence.
    assert words("Mladost (L)\n4 2 1") == [["Mladost", "(", "L", ")"], ["4", "2", "1"]]


def test_empty_and_whitespace_text_have_no_sentences():
    assert tokenize("") == []
    assert tokenize(" \n\t ") == []


# Whitespace as syntok sees it: Unicode White_Space and the zero-width space
# (Python's str.isspace() also counts the control characters \x1c-\x1f).
SPACE = regex.compile(r"[\s\u200b]+")


@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=200))
def test_offsets_always_point_at_the_token_text(text):
    tokens = [t for sentence in tokenize(text) for t in sentence]
    previous_end = 0
    for token in tokens:
        assert token.text and text[token.start : token.end] == token.text
        assert not SPACE.search(token.text)
        assert token.start >= previous_end
        previous_end = token.end
    assert "".join(t.text for t in tokens) == SPACE.sub("", text), "only whitespace is left out"


def detokenize(tokens: list[str]) -> str:
    """Text as it would be written, from CoNLL tokens."""
    text = " ".join(tokens)
    text = re.sub(r" ([.,:;!?%)\]}]|'s|'S|n't|'re|'ve|'ll|'d|'m)(?= |$)", r"\1", text)
    return re.sub(r"([(\[{$]) ", r"\1", text)


def test_detokenized_dev_sentences_tokenize_back_to_conll_tokens():
    sentences = read_conll(DEFAULT_DATA_DIR / "valid.txt")
    same = sum(
        [t.text for sentence in tokenize(detokenize(s.words)) for t in sentence] == s.words for s in sentences
    )
    # 95.5% when written: most of the rest are sports tables (".596", "+44").
    assert same / len(sentences) >= 0.93, f"{same} of {len(sentences)}"


def test_align_data_pads_tokens_and_tags_to_the_same_width():
    aligned = align_data({"input": ["I", "love", "Paris", "'s"], "output": ["O", "O", "B-LOC", "O"]})
    assert aligned == {"input": "I love Paris 's", "output": "O O    B-LOC O "}
    assert align_data({"input": [], "output": []}) == {"input": "", "output": ""}


def test_entities_have_character_offsets_into_the_original_text():
    text = "  Angela   Merkel\nvisited  New-York.  Smith left."
    sentences = tokenize(text)
    assert len(sentences) == 2
    tags = [["B-PER", "I-PER", "O", "B-LOC", "O"], ["I-PER", "O", "O"]]
    scores = [np.array([0.9, np.nan, np.nan, 0.25, np.nan]), np.array([0.5, np.nan, np.nan])]
    result = annotate(text, sentences, [ScoredTags(t, s) for t, s in zip(tags, scores, strict=True)])
    assert result["entities"] == [
        {"text": "Angela   Merkel", "type": "PER", "start": 2, "end": 17, "score": 0.9},
        {"text": "New-York", "type": "LOC", "start": 27, "end": 35, "score": 0.25},
        # An I- tag opening a sentence starts an entity (conlleval), which never
        # reaches back into the sentence before.
        {"text": "Smith", "type": "PER", "start": 38, "end": 43, "score": 0.5},
    ]
    assert result["tags"] == [tag for sentence in tags for tag in sentence]
    assert result["input"].split() == [t["text"] for t in result["tokens"]]


class RecordingTagger:
    """Tags every token O and records the calls."""

    def __init__(self):
        self.calls: list[list[list[str]]] = []
        self.vocab = type("Vocab", (), {"tags": ["O", "B-LOC", "I-LOC"]})()

    def tag_scored(self, sentences):
        self.calls.append(sentences)
        return [ScoredTags(["O"] * len(s), np.full(len(s), np.nan)) for s in sentences]


def test_all_sentences_of_all_texts_go_to_the_tagger_in_one_call(monkeypatch, tmp_path):
    tagger = RecordingTagger()
    monkeypatch.setattr(pipeline, "load_tagger", lambda directory, backend: tagger)
    (tmp_path / "vocab.json").write_text(json.dumps({"words": [], "chars": [], "tags": tagger.vocab.tags}))
    model_api = serve.get_model_api(tmp_path, "onnx")
    results = model_api(["One. Two three.", "", "Four"])
    assert tagger.calls == [[["One", "."], ["Two", "three", "."], ["Four"]]]
    assert [r["tags"] for r in results] == [["O"] * 5, [], ["O"]]
    # No meta.json in this directory: the service says only what it knows itself.
    assert model_api.info == {"directory": tmp_path.name, "backend": "onnx", "tags": ["O", "B-LOC", "I-LOC"],
                              "entity_types": ["LOC"]}


def test_an_unknown_backend_is_refused(model_dir):
    with pytest.raises(ValueError, match="pytorch"):
        serve.get_model_api(model_dir, "pytorch")


def test_the_model_finds_obvious_entities(model_api):
    paris, merkel = model_api(["I love Paris", "Angela Merkel visited Washington."])
    assert paris["tags"] == ["O", "O", "B-LOC"]
    assert paris["input"] == "I love Paris" and paris["output"] == "O O    B-LOC"
    assert {(e["text"], e["type"]) for e in merkel["entities"]} >= {("Angela Merkel", "PER"), ("Washington", "LOC")}


def test_a_batch_gives_what_texts_one_at_a_time_give(model_api):
    texts = [
        "Angela Merkel visited Washington. She met Barack Obama.",
        "",
        "The European Union said on Monday it would not follow Germany's call.",
        "Manchester United beat Arsenal 2-0 at Old Trafford on Saturday.",
    ]
    assert model_api(texts) == [model_api([text])[0] for text in texts]


def test_results_for_empty_and_whitespace_texts_are_empty(model_api):
    for text in ("", "   \n "):
        assert model_api([text]) == [{"input": "", "output": "", "tokens": [], "tags": [], "entities": []}]


def test_entity_offsets_slice_the_input(model_api):
    text = "Reuters reported from  Paris that Angela Merkel and the U.N. agreed.\nBritain's Tony Blair disagreed."
    (result,) = model_api([text])
    assert result["entities"], "no entities found"
    for entity in result["entities"]:
        assert text[entity["start"] : entity["end"]] == entity["text"]
    assert [Token(t["text"], t["start"], t["end"]) for t in result["tokens"]] == [
        t for sentence in tokenize(text) for t in sentence
    ]


def test_every_entity_has_a_score_and_min_score_drops_the_lower_ones(model_api):
    text = "Reuters reported from Paris that Angela Merkel and the U.N. agreed with Zwingmann of Bonn."
    (result,) = model_api([text])
    scores = [e["score"] for e in result["entities"]]
    assert len(scores) >= 4 and all(0 <= s <= 1 for s in scores)
    threshold = sorted(scores)[len(scores) // 2]
    (kept,) = model_api([text], min_score=threshold)
    assert kept["entities"] == [e for e in result["entities"] if e["score"] >= threshold]
    assert kept["tags"] == result["tags"]  # the decoded tags stay whole


@pytest.mark.tensorflow
def test_both_backends_give_the_same_scores(model_dir):
    texts = ["Angela Merkel visited Washington.", "Reuters reported from Paris that the U.N. agreed with Bonn.",
             "Zwingmann of Duesseldorf met Papandreou in Athens on Tuesday."]
    onnx, tensorflow = (serve.get_model_api(model_dir, backend)(texts) for backend in ("onnx", "tensorflow"))
    for a, b in zip(onnx, tensorflow, strict=True):
        assert [(e["start"], e["end"], e["type"]) for e in a["entities"]] == [
            (e["start"], e["end"], e["type"]) for e in b["entities"]]
        np.testing.assert_allclose([e["score"] for e in a["entities"]], [e["score"] for e in b["entities"]],
                                   atol=2e-4)


def test_a_sentence_too_long_for_one_window_keeps_its_entities_near_the_cuts(model_api):
    # One comma list of thousands of tokens is tagged in windows. An item of 9
    # tokens, while windows keep 224 tokens each: the cuts fall at every place
    # in the item, inside the names too, and each item is tagged as it is alone.
    item = "Angela Merkel , Paris , New York City , "
    alone = model_api([item])[0]
    assert len(alone["tokens"]) == 9 and len(alone["entities"]) == 3
    result = model_api([item * 400])[0]
    assert len(result["tokens"]) == 3600
    assert result["tags"] == alone["tags"] * 400
    assert len(result["entities"]) == 3 * 400


def test_model_api_takes_a_string_or_a_list_of_strings(model_api):
    one = model_api("I love Paris")
    assert one["tags"] == ["O", "O", "B-LOC"]
    assert model_api(["I love Paris"]) == [one]
    for wrong in (("I love Paris",), b"I love Paris", ["Paris", 7], None):
        with pytest.raises(TypeError, match="a string or a list of strings"):
            model_api(wrong)


def test_an_accent_written_as_its_own_code_point_stays_with_its_word():
    text = "He flew to Bogota\u0301 on Monday."
    assert words(text) == [["He", "flew", "to", "Bogota\u0301", "on", "Monday", "."]]


def test_an_entity_across_a_window_cut_keeps_its_words_and_its_score(model_api):
    # The cuts of a long comma list fall inside "new york" for some repetitions.
    result = model_api("Paris , " + "new york , " * 100)
    assert all(e["score"] is not None and 0 <= e["score"] <= 1 for e in result["entities"])
    assert {e["text"] for e in result["entities"] if "york" in e["text"]} == {"new york"}  # never "york" alone


@given(st.integers(0, 300), st.sampled_from(["new york , ", "Angela Merkel met Bill Clinton in New York City , ",
                                              "the united nations and the european union , "]))
@settings(max_examples=20, deadline=None)
def test_wherever_windows_cut_a_long_sentence_every_entity_is_scored_and_decodes_from_its_tags(model_api, shift,
                                                                                                item):
    # A prefix of `shift` filler tokens moves every cut to another place in the items.
    text = "x , " * shift + item * 60
    result = model_api(text)
    sentence_tags = result["tags"]
    spans = entity_spans(sentence_tags)
    assert len(spans) == len(result["entities"])
    for span, entity in zip(spans, result["entities"], strict=True):
        assert entity["score"] is not None and 0 <= entity["score"] <= 1
        assert (entity["start"], entity["end"]) == (result["tokens"][span.start]["start"],
                                                    result["tokens"][span.end - 1]["end"])
        assert entity["type"] == span.type
