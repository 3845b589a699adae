"""gunicorn settings, read from the working directory by `gunicorn app:app` (Procfile)."""

import os
import re
import socket
import sys

from gunicorn.arbiter import Arbiter
from gunicorn.glogging import Logger, SafeAtoms

import settings

try:
    environment = settings.current()
except settings.ConfigError as error:
    sys.exit(str(error))  # one line naming the variable, and a non-zero exit


def any_address() -> str:
    """[::] listens on IPv6 and IPv4 at once (dual-stack, as Heroku's own template
    binds); 0.0.0.0 on a machine without IPv6."""
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::", 0))
    except OSError:
        return "0.0.0.0"
    return "[::]"


bind = f"{any_address()}:{environment['PORT']}"
# Heroku sets WEB_CONCURRENCY from the dyno's memory.
workers = environment["WEB_CONCURRENCY"]
# Threaded workers: a thread waits on each connection, so clients that send
# slowly hold a thread each, not the worker. Tagging is CPU-bound, so app.py
# tags one slice at a time a worker whatever the threads (scheduler.py); 32 threads let
# dozens of slow connections wait beside it (BENCHMARKS.md, "Heavy requests
# and slow clients").
worker_class = "gthread"
threads = 32
# A threaded worker's main loop beats this heartbeat, so it bounds a stuck
# worker, not a request (a request is bounded: NER_MAX_TOKENS, model.pipeline's slices).
# Under Heroku's 30 s router limit.
timeout = 25
graceful_timeout = 20
# Longer than Router 2.0's 90 s idle timeout, so the router, not gunicorn,
# closes an idle kept-alive connection (no request lost in a race with a close).
keepalive = 100
# Seconds a body read may wait for the next bytes (pre_request): a body that
# stops short of its Content-Length is answered 400 (app.read_body) instead of
# holding a thread.
BODY_READ_TIMEOUT_S = 5
# Preloading imports Flask, syntok and the app once in the master. The model
# itself is loaded in each worker after the fork (post_worker_init). Loading it
# in the master was tried: the forked workers tag correctly and keep less
# memory of their own (8 MB against 44 MB), but a process forked after
# onnxruntime is imported hangs when it exits (a static destructor waits on a
# thread that the fork did not copy), so every shutdown or worker restart waited
# out graceful_timeout. The word vectors are memory-mapped, so the workers
# share those pages anyway.
preload_app = True
# One line a request to stdout in Heroku's logfmt style, with the router's
# X-Request-Id and how much text was tagged (app.py puts it in the WSGI
# environ), never the text itself.
accesslog = "-"
access_log_format = (
    'method=%(m)s path="%(U)s" status=%(s)s duration=%(M)sms request_id="%({x-request-id}i)s" '
    "text_chars=%({ner.text_chars}e)s tokens=%({ner.tokens}e)s"
)
# gunicorn 27's runtime control socket lives at one path in $HOME, shared by
# every gunicorn of the user (a test server beside a dev server); not needed here.
control_socket_disable = True

# A backslash and every control character (C0, DEL, C1: the WSGI path is
# decoded, so %0a is a newline), which could end a log line or fake a field.
_UNSAFE = re.compile(r"[\\\x00-\x1f\x7f-\x9f]")


def _escape(value):
    if not isinstance(value, str):
        return value
    return _UNSAFE.sub(lambda m: "\\\\" if m[0] == "\\" else f"\\x{ord(m[0]):02x}", value)


class EscapedAtoms(SafeAtoms):
    """gunicorn's log atoms, escaped as above; SafeAtoms then escapes double quotes."""

    def __init__(self, atoms):
        super().__init__({key: _escape(value) for key, value in atoms.items()})


class EscapingLogger(Logger):
    """Access-log lines that a client cannot forge."""

    atoms_wrapper_class = EscapedAtoms


logger_class = EscapingLogger


def post_worker_init(worker):
    from app import model_loader
    from model.memory import limit_malloc_arenas

    limit_malloc_arenas()  # before the worker's threads start allocating

    # A model that cannot load is not something a retry fixes: the worker exits
    # with gunicorn's boot-error code, the master then stops with an error, and
    # the platform reports a crash and restarts the dyno.
    model_loader(worker.wsgi).start(on_failure=lambda: os._exit(Arbiter.WORKER_BOOT_ERROR))


def pre_request(worker, req):
    req.unreader.sock.settimeout(BODY_READ_TIMEOUT_S)
