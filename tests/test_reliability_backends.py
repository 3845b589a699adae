"""Both backends answer every request the service can make of them, and alike:
NER_BACKEND=tensorflow is the reference and the benchmarks' baseline."""

from __future__ import annotations

import pytest

from nerserve.api import get_model_api

pytestmark = pytest.mark.tensorflow


# Texts whose sentences are all one token long make a batch one word wide.
EDGE_TEXTS = ["Paris", "Paris.", "Paris. London.", "a" * 100, "😀", "\x00", "Angela Merkel visited Washington."]


@pytest.fixture(scope="module")
def apis(model_dir):
    return {backend: get_model_api(model_dir, backend) for backend in ("onnx", "tensorflow")}


@pytest.mark.parametrize("text", EDGE_TEXTS)
@pytest.mark.parametrize("backend", ["onnx", "tensorflow"])
def test_every_backend_tags_one_word_texts(apis, backend, text):
    (result,) = apis[backend]([text])
    assert len(result["tags"]) == len(result["tokens"]) >= 1


def test_the_backends_agree_on_the_edge_texts(apis):
    onnx = apis["onnx"](EDGE_TEXTS)
    tensorflow = [apis["tensorflow"]([text])[0] for text in EDGE_TEXTS]
    assert [r["tags"] for r in onnx] == [r["tags"] for r in tensorflow]
