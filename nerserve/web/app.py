"""The NER web service: a Flask application factory and `app`, which the root's
app.py hands to `gunicorn app:app` (and ner-serve serves as nerserve.web.app:app).

The model is loaded once per process, in a background thread, when a gunicorn
worker starts (nerserve.server.gunicorn_config) or at the first request otherwise:
importing this module is cheap and never imports TensorFlow.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

from flask import Flask, Response, after_this_request, jsonify, request
from flask_compress import Compress
from flask_cors import CORS
from gunicorn.http.errors import ParseException
from pydantic import TypeAdapter
from werkzeug.exceptions import ClientDisconnected, HTTPException, RequestEntityTooLarge

from nerserve import settings
from nerserve.errors import error_body
from nerserve.tagger.description import describe_if_readable
from nerserve.tagger.files import ModelError
from nerserve.tagger.memory import give_back_memory_if_grown, resident_bytes
from nerserve.tagger.pipeline import Document, Pipeline, TooManyTokens, process_pipeline, read_documents
from nerserve.web import access, contract, metrics
from nerserve.web.contract import ApiError
from nerserve.web.json_provider import OrjsonProvider
from nerserve.web.pages import index_page, prefers_html, register_pages
from nerserve.web.scheduler import Abandoned, ShortestWorkFirst

log = logging.getLogger(__name__)

# Heroku's router answers 503 itself (H12) to a request not answered within
# this: tagging it after that is work for no one.
ROUTER_TIMEOUT_S = 30
# A body this small (a few hundred tokens at most) cannot grow a worker enough
# to hand memory back after it (give_back_memory_after_a_large_request).
SMALL_BODY_BYTES = 4096


def flask_config() -> dict[str, Any]:
    """The service's settings (nerserve/settings.py) as Flask config."""
    config = dict(settings.current())
    # Flask answers 413 by itself for a body over MAX_CONTENT_LENGTH bytes.
    config["MAX_CONTENT_LENGTH"] = config.pop("NER_MAX_BODY_BYTES")
    # Flask-Compress: answers gzipped when the client accepts gzip, as JSON
    # compresses ~10 times (a 5 MB answer to 0.5 MB); small answers stay as they are.
    config["COMPRESS_ALGORITHM"] = config["COMPRESS_ALGORITHM_STREAMING"] = "gzip"
    config["COMPRESS_MIMETYPES"] = ["application/json"]
    return config


class ModelLoader:
    """The model of one process, loaded and warmed up once in a background thread.

    A thread, not the request, loads it so that /healthz and /readyz answer
    meanwhile. It is started after gunicorn forks its workers, never before:
    threads do not survive a fork.
    """

    def __init__(self, load: Callable[[], Pipeline]):
        self._load = load
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._done = threading.Event()  # set when loading ends, ready or failed
        self._on_failure: Callable[[], None] | None = None
        self.pipeline: Pipeline | None = None
        self.failure: str | None = None  # why the model failed to load

    def start(self, on_failure: Callable[[], None] | None = None) -> None:
        """Start loading, once; `on_failure` is called in the loader thread if it fails."""
        with self._lock:
            if self._thread is None:
                self._on_failure = on_failure
                self._thread = threading.Thread(target=self._run, name="model-loader", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        try:
            pipeline = self._load()
            pipeline.warm_up()  # every sub-model, so that none fails first in a request
        except (ModelError, FileNotFoundError) as error:
            # A model directory the service cannot use: one line that names the
            # file and what is wrong with it says more than a traceback.
            log.error("the model failed to load: %s", error)
            self._fail(error)
        except Exception as error:
            log.exception("the model failed to load")
            self._fail(error)
        else:
            self.pipeline = pipeline
            # A model exported before meta.json existed has no version to report.
            log.info("model ready: %s", pipeline.info.get("version", "(no meta.json)"))
            self._done.set()

    def _fail(self, error: Exception) -> None:
        self.failure = f"the model failed to load: {type(error).__name__}"
        self._done.set()
        if self._on_failure is not None:
            self._on_failure()

    @property
    def failed(self) -> bool:
        return self.failure is not None

    @property
    def ready(self) -> bool:
        return self._done.is_set() and not self.failed

    def wait(self, timeout: float) -> Pipeline:
        """The loaded model; ApiError 503 if it failed to load, or is not ready
        within `timeout` seconds."""
        self.start()
        if self._done.wait(timeout) and self.failure is None:
            return self.pipeline
        if self.failure is not None:
            # For good: no Retry-After, and /healthz says so, so that the platform can tell.
            raise ApiError(503, "model_failed", self.failure)
        raise ApiError(503, "not_ready", "the model is still loading; retry shortly", retry_after_s=1)


def create_app(config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.json = OrjsonProvider(app)  # compact, in the documented field order, and 10 times faster
    app.config.update(flask_config())
    app.config.update(config or {})

    origins = app.config["NER_CORS_ORIGINS"]  # settings.cors_origins
    CORS(app, resources={r"/api*": {"origins": list(origins) if origins != "*" else "*"}}, methods=["GET", "POST"],
         allow_headers=["Content-Type", "Authorization", "X-API-Key"], expose_headers=access.EXPOSED_HEADERS)

    Compress(app)
    loader = ModelLoader(lambda: process_pipeline(app.config["NER_MODEL_DIR"], app.config["NER_BACKEND"]))
    app.extensions["ner_model"] = loader

    body_type = contract.request_body_type(app.config["NER_MAX_TEXT_CHARS"], app.config["NER_MAX_TEXTS"])
    register_error_handlers(app)
    # Metrics first: their hooks then time and count what access refuses.
    metrics.init_app(app, lambda: loader.pipeline.info if loader.ready else None)
    access.init_app(app)
    register_routes(app, loader, body_type)
    register_pages(app, contract.openapi_document(app.config, body_type))
    return app


def vary_on_accept(response: Response) -> Response:
    response.vary.add("Accept")
    return response


def model_loader(app: Flask) -> ModelLoader:
    """The app's model loader; gunicorn's post_worker_init (nerserve.server.gunicorn_config) starts it in each worker."""
    return app.extensions["ner_model"]


def register_routes(app: Flask, loader: ModelLoader, body_type: TypeAdapter) -> None:
    # One slice of tagging at a time a process (nerserve.tagger.pipeline.SLICE_TOKENS),
    # the request with the least work left first: gunicorn's threads are there
    # to wait on clients, tagging is CPU-bound, and a model call's memory is
    # bounded only one at a time.
    scheduler = ShortestWorkFirst()

    @app.before_request
    def start_loading() -> None:
        # Servers other than gunicorn (python app.py, flask run) load at the first request.
        loader.start()

    @app.get("/")
    def index() -> Response:
        # The reading of the model directory that the loader shares (nerserve.tagger.description): no wait for the model.
        model = describe_if_readable(app.config["NER_MODEL_DIR"])
        summary = model.summary() if model else None
        # One URL, two answers (a page for a browser, JSON for the rest): caches must key on Accept.
        after_this_request(vary_on_accept)
        if prefers_html():
            return index_page(summary)
        return jsonify(
            name="Named-entity recognition API",
            model=summary,
            endpoints={
                "POST /api": 'tag a JSON string, {"text": "..."} or {"texts": ["...", ...]}; optional "min_score"',
                "GET /api/model": "the model: version, tags, held-out F1",
                "GET /client": "a web page to try the API",
                "GET /docs": "the API reference, interactive",
                "GET /openapi.json": "the API's OpenAPI 3.1 document",
                "GET /healthz": "the process is alive",
                "GET /readyz": "the model is loaded and warmed up (503 before)",
                "GET /metrics": "Prometheus metrics",
            },
        )

    @app.get("/healthz")
    def healthz() -> Response | tuple[Response, int]:
        # A model that cannot load is no passing state: the process is unhealthy.
        if loader.failed:
            return jsonify(status="failed", reason=loader.failure), 503
        return jsonify(status="ok")

    @app.get("/readyz")
    def readyz() -> Response | tuple[Response, int]:
        if loader.ready:
            return jsonify(status="ready")
        status = "failed" if loader.failed else "loading"
        return jsonify(status=status), 503

    @app.get("/api/model")
    def api_model() -> Response:
        return jsonify(loader.wait(app.config["NER_LOAD_WAIT_S"]).info)

    @app.post("/api")
    def api() -> Response:
        give_back_memory_after_a_large_request()
        data = parse_json(read_body(app.config["MAX_CONTENT_LENGTH"]))
        # Form, types and limits: the schemas that GET /openapi.json publishes.
        texts, single, min_score = contract.parse_request(body_type, data)
        # For gunicorn's access log line (nerserve/server/gunicorn_config.py): how much text, never the text.
        request.environ["ner.text_chars"] = sum(len(t) for t in texts)
        documents = tokenize_within_budget(texts, app.config["NER_MAX_TOKENS"])
        request.environ["ner.tokens"] = sum(document.token_count for document in documents)
        access.charge(request.environ["ner.tokens"], request.environ["ner.text_chars"])
        pipeline = loader.wait(app.config["NER_LOAD_WAIT_S"])
        turn = partial(scheduler.turn, abandoned=abandonment_check(request.environ))
        results = metrics.counted(pipeline.tag_documents(documents, min_score, turn=turn))
        if single:
            return jsonify(next(results))
        return app.response_class(json_results(app, results, request.environ), mimetype="application/json")


def abandonment_check(environ: dict[str, Any]) -> Callable[[], str | None]:
    """Why a request is no longer worth tagging, asked at each of its turns
    (nerserve/web/scheduler.py): its client has left, or the router has given up on it.
    Under nerserve/server/buffered_worker.py its socket knows when the request came in and
    whether the client is still there; elsewhere only the time is known."""
    sock = environ.get("gunicorn.socket")
    received_at = getattr(sock, "received_at", time.monotonic())
    client_left = getattr(sock, "client_left", lambda: False)

    def why() -> str | None:
        if client_left():
            return "its client left"
        waited_s = time.monotonic() - received_at
        if waited_s > ROUTER_TIMEOUT_S:
            return f"it waited {waited_s:.1f} s, past the router's {ROUTER_TIMEOUT_S} s"
        return None

    return why


def give_back_memory_after_a_large_request() -> None:
    """Once the answer is sent, whatever its status, hand back the memory the
    request left malloc holding if it grew the worker (nerserve.tagger.memory). A body
    under SMALL_BODY_BYTES cannot: it is not worth the two reads of /proc."""
    if request.content_length is not None and request.content_length < SMALL_BODY_BYTES:
        return
    resident_before = resident_bytes()

    @after_this_request
    def give_back(response: Response) -> Response:
        response.call_on_close(lambda: give_back_memory_if_grown(resident_before))
        return response


def json_results(app: Flask, results: Iterator[dict[str, Any]], environ: dict[str, Any]) -> Iterator[str]:
    """{"results": [...]}, sent a text's result at a time: a worker holds one
    text's result, as objects and as JSON, not a whole request's (up to 100,000
    tokens of results, some 40 MB of objects).

    A failure after the first byte comes too late to change the status, 200,
    sent already: it is logged, marked in the environ so that the metrics and
    the access log count a 500 (metrics.ANSWER_FAILED), and raised on, so that
    the server cuts the answer short and no client takes it for whole."""
    yield '{"results":['
    sent = 0
    try:
        for result in results:
            yield ("," if sent else "") + app.json.dumps(result)  # compact, as jsonify
            sent += 1
    except Exception as error:
        environ[metrics.ANSWER_FAILED] = True
        # One line: the server logs the traceback as it cuts the answer.
        log.error("a many-text answer failed, its 200 and %d results sent: %s: %s", sent,
                  type(error).__name__, error)
        raise
    yield "]}\n"


def tokenize_within_budget(texts: list[str], max_tokens: int) -> list[Document]:
    """The texts tokenized; 413 as soon as they pass the request's token budget,
    before any model call (a token costs the model ~7 times what it costs the
    tokenizer), or the client's whole token quota (over_token_quota_size). The
    tokens a 413 counted (at least: read_documents stops at a lower bound) are
    charged too, so that the quota bounds tokenizing."""
    chars = sum(len(text) for text in texts)
    budget = access.token_budget(max_tokens, chars)
    try:
        return read_documents(texts, budget)
    except TooManyTokens as error:
        access.charge_refused(error.counted, chars)
        if budget < max_tokens:  # the whole token quota stopped the count
            access.refuse_over_token_quota_size(error.counted)
        raise ApiError(
            413, "too_many_tokens",
            f"the request has over {error.limit} tokens (at least {error.counted}); "
            f"split it into requests of at most {error.limit} tokens",
            tokens=error.counted, limit=error.limit,
        ) from None


def read_body(limit: int) -> bytes:
    """The request body; 413 when it is over `limit` bytes.

    Flask refuses a declared Content-Length over the limit before reading, but
    a chunked body has none: it is read one byte past the limit, so that a body
    of the limit passes as it does with a Content-Length. Under gunicorn the
    worker has read the body whole already (nerserve/server/buffered_worker.py), so a body that
    cannot be read here is malformed (a bad chunk), or, under another server,
    ends early.
    """
    try:
        if request.content_length is None:
            body = request.input_stream.read(limit + 1)
        else:
            body = request.get_data(cache=False)
    except ClientDisconnected:  # Werkzeug: the body ended before its Content-Length
        raise ApiError(400, "incomplete_body", "the request body ended before its Content-Length") from None
    except (ParseException, OSError) as error:  # a chunked body: gunicorn's InvalidChunkSize...
        log.info("unreadable request body: %s", type(error).__name__)
        raise ApiError(400, "invalid_body", "the request body could not be read") from None
    if len(body) > limit:
        raise RequestEntityTooLarge()
    return body


def parse_json(body: bytes) -> Any:
    """The request body as JSON, in UTF-8 without a byte-order mark (RFC 8259
    for JSON sent between systems); json.loads alone would also take UTF-16,
    UTF-32 and a BOM. The Content-Type is not checked, so that a plain
    `curl -d` works too."""
    try:
        text = body.decode("utf-8")  # strict: surrogates written as bytes are refused too
    except UnicodeDecodeError:
        text = None
    if text is None or text.startswith("\ufeff"):
        raise ApiError(400, "invalid_encoding", "the request body must be UTF-8, without a byte-order mark")
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise ApiError(400, "invalid_json", "the request body is not valid JSON") from None


def register_error_handlers(app: Flask) -> None:
    """Every error, ours or Flask's, as JSON {"error": {"code", "message"}}."""

    def error_response(status: int, code: str, message: str, **details: Any) -> tuple[Response, int]:
        return jsonify(error_body(code, message, **details)), status

    @app.errorhandler(ApiError)
    def api_error(error: ApiError) -> tuple[Response, int]:
        response, status = error_response(error.status, error.code, error.message, **error.details)
        if error.retry_after_s is not None:
            response.headers["Retry-After"] = str(error.retry_after_s)
        return response, status

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        # Keep Werkzeug's response for its headers (Allow on a 405), with a JSON body.
        response = error.get_response()
        code, message = (error.name or "error").lower().replace(" ", "_"), error.description
        if error.code == 413:
            code, message = "body_too_large", f"the request body is over {app.config['MAX_CONTENT_LENGTH']} bytes"
        response.data = json.dumps(error_body(code, message))
        response.content_type = "application/json"
        return response

    @app.errorhandler(Abandoned)
    def abandoned(error: Abandoned) -> tuple[Response, int]:
        # Logged, not computed: the worker's socket drops the answer if the client has gone.
        log.warning("dropped %s %s before tagging it all: %s", request.method, request.path, error)
        return error_response(503, "abandoned", f"the request was dropped: {error}")

    @app.errorhandler(Exception)
    def internal_error(error: Exception) -> tuple[Response, int]:
        # The trace goes to the log, never to the client.
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal_error", "internal server error")


app = create_app()
