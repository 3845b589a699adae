"""The one shape of an error, for every answer and record that reports one:
the web API's, the gunicorn worker's own refusals, and the corpus command's
error records."""

from __future__ import annotations

from typing import Any


def error_body(code: str, message: str, **details: Any) -> dict[str, dict[str, Any]]:
    """{"error": {"code": ..., "message": ..., **details}}; `code` is a stable
    name a client can test, `message` a sentence for a person."""
    return {"error": {"code": code, "message": message, **details}}
