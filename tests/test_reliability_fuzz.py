"""Fuzzing POST /api through Flask's test client, with the real model.

Whatever the body, the answer is a 2xx or a 4xx with a JSON body: never a 5xx,
never a hang past CALL_TIMEOUT_S. A 200 answer is checked for consistency:
token and entity offsets slice the text that was sent.
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nerserve.web.app import create_app, model_loader

CALL_TIMEOUT_S = 60  # a hang fails the test instead of stalling CI
EXAMPLES = 150
# Limits high enough that the big inputs reach the tokenizer and the model.
ROOMY_LIMITS = {"MAX_CONTENT_LENGTH": 8 * 2**20, "NER_MAX_TEXT_CHARS": 200_000, "NER_MAX_TEXTS": 10_000}
FUZZ = settings(max_examples=EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# Text of every kind: any code point but lone surrogates (JSON escapes those, below),
# and the troublemakers on purpose.
TRICKY = [
    "", " ", "\x00", "Paris\x00London", "\t\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029",
    "👩‍👩‍👧‍👦 visited Paris 🇫🇷🏳️‍🌈", "مرحبا Angela Merkel שלום", "\u202eParis\u202c",
    "e\u0301\u0301\u0301 Pa\u0301ris \u0301", "\u200b\u200d\ufeffParis\ufeff", "\ufffe\uffff\U0010ffff\ue000",
    "Ｐａｒｉｓ", "ǅungla İstanbul ß ﬃ", "U.S.-based O'Neil's McDonald's", "--- ... !!! ???", "'s n't",
    "a" * 5000, "A" * 999, "Paris. " * 140, "\\ud800", "{\"text\": \"Paris\"}",
]
texts = st.one_of(
    st.text(alphabet=st.characters(codec="utf-8"), max_size=300),
    st.sampled_from(TRICKY),
    st.lists(st.sampled_from(TRICKY), max_size=8).map(" ".join),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | texts,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(texts, children, max_size=5),
    max_leaves=25,
)
# Bodies close to the accepted shapes, and beside them.
payloads = st.one_of(
    texts,
    st.fixed_dictionaries({"text": texts}),
    st.fixed_dictionaries({"texts": st.lists(texts, max_size=8)}),
    st.fixed_dictionaries({"text": json_values}),
    st.fixed_dictionaries({"texts": st.lists(json_values, max_size=5) | json_values}),
    st.dictionaries(st.sampled_from(["text", "texts", "TEXT", "", "extra"]), json_values, max_size=3),
    json_values,
)
# Lone surrogates exist only as JSON escapes ("\ud800"): made into the raw bytes of the body.
surrogate_texts = st.lists(
    st.one_of(st.integers(0xD800, 0xDFFF).map(lambda c: f"\\u{c:04x}"), st.sampled_from(["Paris", " ", "\\n"])),
    min_size=1, max_size=10,
).map("".join)


@pytest.fixture(scope="module")
def small_client(app):
    """The session app's client (tests/service_fixtures.py: small limits), shared by every example."""
    return app.test_client()


@pytest.fixture(scope="module")
def roomy_client():
    app = create_app(ROOMY_LIMITS)
    model_loader(app).wait(timeout=120)
    return app.test_client()


def post(client, body: bytes, content_type: str = "application/json"):
    """The response to POST /api, failing the test if it takes past CALL_TIMEOUT_S."""
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        return pool.submit(client.post, "/api", data=body, content_type=content_type).result(CALL_TIMEOUT_S)
    finally:
        pool.shutdown(wait=False)  # a hung call must not hang the test too


def check_result(text: str, result: dict) -> None:
    for token in result["tokens"]:
        assert text[token["start"]: token["end"]] == token["text"]
    for entity in result["entities"]:
        assert text[entity["start"]: entity["end"]] == entity["text"]
    assert len(result["tags"]) == len(result["tokens"])


def check_answer(response, sent=None) -> dict:
    """2xx or 4xx, JSON body; a 4xx says why as {"error": {"code", "message"}}."""
    assert response.status_code < 500, response.get_data(as_text=True)[:500]
    assert response.status_code in range(200, 300) or response.status_code in range(400, 500)
    assert response.mimetype == "application/json"
    answer = json.loads(response.get_data())
    if response.status_code >= 400:
        assert set(answer["error"]) == {"code", "message"}
    elif isinstance(sent, str):
        check_result(sent, answer)
    elif isinstance(sent, dict) and "text" in sent:
        check_result(sent["text"], answer)
    elif isinstance(sent, dict):
        for text, result in zip(sent["texts"], answer["results"], strict=True):
            check_result(text, result)
    return answer


@FUZZ
@given(payload=payloads)
def test_any_json_gets_2xx_or_4xx_with_json(small_client, payload):
    check_answer(post(small_client, json.dumps(payload).encode()), payload)


@FUZZ
@given(payload=payloads)
def test_any_json_as_raw_utf8_gets_2xx_or_4xx_with_json(small_client, payload):
    # Unescaped (ensure_ascii=False): the characters go as UTF-8 bytes, not \u escapes.
    check_answer(post(small_client, json.dumps(payload, ensure_ascii=False).encode()), payload)


@FUZZ
@given(escaped=surrogate_texts, wrap=st.sampled_from(['"{}"', '{{"text": "{}"}}', '{{"texts": ["{}", "{}"]}}']))
def test_escaped_lone_surrogates_get_2xx_or_4xx_with_json(small_client, escaped, wrap):
    body = wrap.format(escaped, escaped).encode("ascii")
    check_answer(post(small_client, body), json.loads(body))


@FUZZ
@given(body=st.binary(max_size=500), content_type=st.sampled_from(["application/json", "text/plain", ""]))
def test_any_bytes_get_2xx_or_4xx_with_json(small_client, body, content_type):
    check_answer(post(small_client, body, content_type))


@FUZZ
@given(depth=st.integers(1, 3000), opener=st.sampled_from(["[", '{"text":', '{"texts":[', '{"a":']))
def test_deep_nesting_gets_4xx_with_json(roomy_client, depth, opener):
    closer = {"[": "]", '{"text":': "}", '{"texts":[': "]}", '{"a":': "}"}[opener]
    body = (opener * depth + '"Paris"' + closer * depth).encode()
    answer = check_answer(post(roomy_client, body))
    assert "error" in answer or depth == 1


@pytest.mark.parametrize("depth", [10_000, 200_000])
def test_very_deep_nesting_is_400(roomy_client, depth):
    response = post(roomy_client, b"[" * depth + b"]" * depth)
    assert response.status_code == 400 and check_answer(response)["error"]["code"] == "invalid_json"


def test_a_100k_character_word_with_no_spaces(roomy_client):
    for word in ["a" * 100_000, "Ab1-" * 25_000, "é" * 100_000, "😀" * 100_000]:
        result = check_answer(post(roomy_client, json.dumps({"text": word}).encode()), {"text": word})
        assert len(result["tokens"]) >= 1 and len(result["tags"]) == len(result["tokens"])


def test_thousands_of_one_word_sentences_in_one_text(roomy_client):
    text = "Paris. London! Berlin? " * 2000
    result = check_answer(post(roomy_client, json.dumps(text).encode()), text)
    assert len(result["tokens"]) == 12_000
    # Every city, in order, at its own offset: no sentence lost or shifted. (Whether
    # the "!" of the two-word sentence "London !" joins the entity is the model's call.)
    cities = [m.start() for m in re.finditer("Paris|London|Berlin", text)]
    assert [e["start"] for e in result["entities"]] == cities
    assert {e["type"] for e in result["entities"]} == {"LOC"}


def test_thousands_of_one_word_texts(roomy_client):
    payload = {"texts": ["Paris", "x", "\x00", "😀", ""] * 1000}
    answer = check_answer(post(roomy_client, json.dumps(payload).encode()), payload)
    assert len(answer["results"]) == 5000


def test_the_small_limits_refuse_big_inputs_with_413(small_client):
    # The session app's small limits (tests/service_fixtures.py): 4 KiB body, 1000 chars, 5 texts.
    for payload in ["a" * 100_000, {"texts": ["Paris"] * 3000}, "Paris. " * 500]:
        response = post(small_client, json.dumps(payload).encode())
        assert response.status_code == 413 and check_answer(response)["error"]["code"]
