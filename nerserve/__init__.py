"""nerserve: named-entity recognition (a BiLSTM-CRF run with ONNX Runtime) as
a Python API, a web service and a corpus command.

    from nerserve import get_model_api
    model_api = get_model_api()     # the committed model, loaded once a process
    model_api("I love Paris")       # tokens, tags and entities

The modules, each importing only those listed before it:
  tagger    the model: its files, tokenizer, runtime and the text pipeline
            (tagger.training: the TensorFlow side, which serving never imports)
  errors    the one JSON error body
  settings  every environment variable, read once a process
  api       get_model_api
  web       the Flask app: routes, the API contract, keys and quotas, metrics, pages
  server    gunicorn's worker and settings, and the ner-serve command
  corpus    the ner-tag command (tag.py), its file formats, and the Spark job
"""

from __future__ import annotations

from typing import Any

__all__ = ["ModelApi", "get_model_api"]


def __getattr__(name: str) -> Any:
    # Imported when asked for, not with the package: a Spark executor or a
    # training run imports nerserve.tagger without the settings' dependencies.
    if name in __all__:
        from nerserve import api

        return getattr(api, name)
    raise AttributeError(f"module 'nerserve' has no attribute {name!r}")
