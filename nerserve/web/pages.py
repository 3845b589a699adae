"""What a browser reads: the index (/ asked for HTML), the web page (/client), the API's OpenAPI document
(/openapi.json) and its interactive reference (/docs, Swagger UI from the
swagger-ui-py package: no CDN), each with headers that keep it from being
turned against its reader.

jQuery for the page and everything /docs loads are files of this app, so the
page works, and /docs renders, on a machine that reaches no CDN.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
from importlib.resources import files
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request, send_from_directory

# The page and the static files lie beside this module: package data once installed.
CLIENT_PAGE = Path(__file__).resolve().parent / "simple_client.html"
DOCS_PAGE = Path(__file__).resolve().parent / "static" / "docs.html"
SWAGGER_UI = Path(str(files("swagger_ui") / "static"))
# Where the page may take jQuery from: its CDN, else this app's copy (nerserve/web/static/).
JQUERY_CDN = "https://code.jquery.com"

pages = Blueprint("pages", __name__)


def inline_hashes(html: str, tag: str) -> str:
    """CSP sources for the inline <script> or <style> blocks of a page: their
    SHA-256 hashes, so that no other inline code (an injected one) runs."""
    blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.DOTALL)
    return " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(b.encode()).digest()).decode()}'" for b in blocks)


def content_security_policy(script_src: str, style_src: str, connect_src: str) -> str:
    return "; ".join([
        "default-src 'none'", f"script-src {script_src}", f"style-src {style_src}", f"connect-src {connect_src}",
        "img-src 'self' data:", "base-uri 'none'", "form-action 'none'", "frame-ancestors 'none'",
    ])


def client_page() -> tuple[str, str]:
    """The page and its policy: its own inline code, jQuery (its CDN or this
    app's copy), and calls to an http(s) API (the page takes only those, ?api=)."""
    html = CLIENT_PAGE.read_text(encoding="utf-8")
    policy = content_security_policy(
        script_src=f"'self' {JQUERY_CDN} {inline_hashes(html, 'script')}",
        style_src=inline_hashes(html, "style"),
        connect_src="http: https:",
    )
    return html, policy


INDEX_STYLE = "body { font-family: sans-serif; max-width: 40em; margin: 2em auto; line-height: 1.5 }"
# The index links these, for a reader who came with a browser.
INDEX_LINKS = {"/client": "try it in a web page", "/docs": "the API reference, interactive",
               "/openapi.json": "the OpenAPI 3.1 document"}


def prefers_html() -> bool:
    """Whether the client ranks HTML above JSON (a browser). curl's */*, no
    Accept at all, and application/json get JSON: ties go to JSON, the API's."""
    return request.accept_mimetypes.best_match(["application/json", "text/html"]) == "text/html"


def index_page(model: dict[str, Any] | None) -> Response:
    """GET / for a browser: the model's name and entity types, and links to
    the page, the reference and the document. Escaped: the name comes from
    the model directory's meta.json, which a user may have written. No script:
    the policy allows only its own inline style."""
    if model:
        types = ", ".join(model.get("entity_types") or [])
        about = f"<p>Model: {html.escape(str(model.get('name')))}; entity types: {html.escape(types)}.</p>"
    else:
        about = "<p>The model directory cannot be read: <code>/readyz</code> says more.</p>"
    links = "".join(f'<li><a href="{path}">{path}</a>: {html.escape(what)}</li>' for path, what in INDEX_LINKS.items())
    page = (f"<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Named-entity recognition API"
            f"</title><style>{INDEX_STYLE}</style></head><body><h1>Named-entity recognition API</h1>{about}"
            f"<ul>{links}</ul><p><code>POST /api</code> tags text; <code>GET /</code> with "
            f"<code>Accept: application/json</code> lists every route.</p></body></html>\n")
    policy = content_security_policy(script_src="'none'", style_src=inline_hashes(page, "style"),
                                     connect_src="'none'")
    return Response(page, mimetype="text/html", headers={"Content-Security-Policy": policy})


@pages.get("/client")
def client() -> Response:
    html, policy = current_app.extensions["ner_client_page"]  # read once, at start-up: the hashes match it
    return Response(html, mimetype="text/html", headers={"Content-Security-Policy": policy})


@pages.get("/openapi.json")
def openapi() -> Response:
    return jsonify(current_app.extensions["ner_openapi"])


@pages.get("/docs")
def docs() -> Response:
    response = send_from_directory(DOCS_PAGE.parent, DOCS_PAGE.name, mimetype="text/html")
    # Swagger UI sets style attributes and inlines its SVG icons as data: URLs.
    response.headers["Content-Security-Policy"] = content_security_policy(
        script_src="'self'", style_src="'self' 'unsafe-inline'", connect_src="'self'"
    )
    return response


@pages.get("/docs/assets/<path:name>")
def docs_asset(name: str) -> Response:
    return send_from_directory(SWAGGER_UI, name)


def register_pages(app: Flask, openapi_document: dict) -> None:
    app.extensions["ner_openapi"] = openapi_document
    app.extensions["ner_client_page"] = client_page()
    app.register_blueprint(pages)

    @app.after_request
    def no_sniffing(response: Response) -> Response:
        # A browser takes each answer for its declared type, never guesses a script.
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response
