"""The seed's Python API, kept where it was: `serve.get_model_api()`. It is
nerserve.api's; from an installed package, `from nerserve import get_model_api`."""

from nerserve.api import DEFAULT_MODEL_DIR, ModelApi, get_model_api

__all__ = ["DEFAULT_MODEL_DIR", "ModelApi", "get_model_api"]
