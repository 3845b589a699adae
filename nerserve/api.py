"""The model behind the web API, as the seed's api_ner called it: text in;
tokens, tags and entities out.

`get_model_api()` loads the model (once a process) and returns `model_api`:

    model_api = get_model_api()
    model_api("I love Paris")            # one result
    model_api(["I love Paris", "..."])   # a list of results, tagged together

A thin wrapper over nerserve.tagger.pipeline, the one text pipeline that the web
app, tag.py and spark_tag.py use too. No Flask here: nerserve.web does the HTTP.
`from nerserve import get_model_api` and the seed's `serve.get_model_api` are this one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from nerserve import settings
from nerserve.tagger.pipeline import process_pipeline

DEFAULT_MODEL_DIR = settings.defaults()["NER_MODEL_DIR"]

Result = dict[str, Any]


class ModelApi(Protocol):
    """`model_api(text)` gives one result dict, `model_api([text, ...])` a list
    of them; entities scored below min_score are left out. `info` describes the model."""

    info: dict[str, Any]

    def __call__(self, texts: str | list[str], min_score: float = 0.0) -> Result | list[Result]: ...


def get_model_api(model_dir: str | Path | None = None, backend: str | None = None) -> ModelApi:
    """Load the model, once a process, and return `model_api`.

    model_dir and backend default to $NER_MODEL_DIR and $NER_BACKEND (nerserve/settings.py).
    """
    environment = settings.current()
    pipeline = process_pipeline(model_dir or environment["NER_MODEL_DIR"], backend or environment["NER_BACKEND"])

    def model_api(texts: str | list[str], min_score: float = 0.0) -> Result | list[Result]:
        if isinstance(texts, str):
            return pipeline.tag([texts], min_score)[0]
        if isinstance(texts, list) and all(isinstance(text, str) for text in texts):
            return pipeline.tag(texts, min_score)
        raise TypeError(f"model_api takes a string or a list of strings, not {type(texts).__name__}")

    api: Any = model_api
    api.info = pipeline.info
    return api
