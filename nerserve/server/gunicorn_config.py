"""gunicorn's settings for the service, with why each is what it is.

The root's gunicorn.conf.py (read from the working directory by the Procfile's
`gunicorn app:app`) takes them all from here, and ner-serve names this module
as gunicorn's config (`-c python:nerserve.server.gunicorn_config`), so that a
clone and an installed package serve alike. Read once in gunicorn's master.
"""

import os
import re
import shutil
import socket
import sys
import tempfile

from gunicorn.arbiter import Arbiter
from gunicorn.glogging import Logger, SafeAtoms

from nerserve import settings
from nerserve.server.buffered_worker import MAX_REQUEST_ID_CHARS, BufferedThreadWorker

try:
    environment = settings.current()
except settings.ConfigError as error:
    sys.exit(str(error))  # one line naming the variable, and a non-zero exit

# prometheus_client's multiprocess mode (nerserve/web/metrics.py): each worker writes its
# values to files in this directory, and GET /metrics sums them. Set before
# anything imports prometheus_client (the app is preloaded after this file is
# read). The master reads this file again on each HUP; the environment, where
# the master notes its pid, outlives that.
METRICS_OWNER_VARIABLE = "NER_METRICS_MASTER_PID"


def metrics_dir() -> str:
    """The master's one directory: fresh when it starts, so that every count
    starts at zero; the same after a HUP, so that no count drops to zero and
    no directory is left behind (on_exit removes it). A master started by
    USR2 (another pid) makes its own: the old one removes its own as it exits."""
    if os.environ.get(METRICS_OWNER_VARIABLE) == str(os.getpid()):
        return os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.environ[METRICS_OWNER_VARIABLE] = str(os.getpid())
    return tempfile.mkdtemp(prefix="ner-metrics-")


METRICS_DIR = metrics_dir()
os.environ["PROMETHEUS_MULTIPROC_DIR"] = METRICS_DIR


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
# gunicorn's threaded worker, with each request read whole and each answer
# written by the worker's event loop (nerserve/server/buffered_worker.py): a slow or stalled
# client costs a socket, never a thread. Tagging is CPU-bound, so app.py tags
# one slice at a time a worker whatever the threads (nerserve/web/scheduler.py).
BufferedThreadWorker.max_body_bytes = environment["NER_MAX_BODY_BYTES"]
BufferedThreadWorker.max_request_tokens = environment["NER_MAX_TOKENS"]  # bounds a request's work (admission)
BufferedThreadWorker.allow_any_origin = environment["NER_CORS_ORIGINS"] == "*"
worker_class = BufferedThreadWorker
threads = 32
# Connections a worker holds at once, most of them waiting on their clients;
# each is a file descriptor (ulimit -n: 10,000 on a Heroku dyno).
worker_connections = 4000
# The event loop writes answers from memory: no sendfile.
sendfile = False
# A threaded worker's main loop beats this heartbeat, so it bounds a stuck
# worker, not a request (a request is bounded: NER_MAX_TOKENS, nerserve.tagger.pipeline's slices).
# Under Heroku's 30 s router limit.
timeout = 25
# On SIGTERM a worker refuses new connections at once and answers those in
# flight for this long at most (it logs any it could not answer); Heroku sends
# SIGKILL 30 s after SIGTERM.
graceful_timeout = 28
# Longer than Router 2.0's 90 s idle timeout, so the router, not gunicorn,
# closes an idle kept-alive connection (no request lost in a race with a close).
keepalive = 100
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
# X-Request-Id, how much text was tagged and the API key's id (app.py and
# nerserve/web/access.py put them in the WSGI environ), never the text or the key itself.
accesslog = "-"
access_log_format = (
    'method=%(m)s path="%(U)s" status=%(s)s duration=%(M)sms request_id="%({x-request-id}i)s" '
    "text_chars=%({ner.text_chars}e)s tokens=%({ner.tokens}e)s key_id=%({ner.key_id}e)s"
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
    """gunicorn's log atoms, escaped as above; SafeAtoms then escapes double
    quotes. A request id is cut to what Heroku's router would pass."""

    def __init__(self, atoms):
        atoms = {key: _escape(value) for key, value in atoms.items()}
        if isinstance(atoms.get("{x-request-id}i"), str):
            atoms["{x-request-id}i"] = atoms["{x-request-id}i"][:MAX_REQUEST_ID_CHARS]
        super().__init__(atoms)


class EscapingLogger(Logger):
    """Access-log lines that a client cannot forge, and that log an answer cut
    short by a failure after its 200 was sent as the 500 it is (metrics.ANSWER_FAILED)."""

    atoms_wrapper_class = EscapedAtoms

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        if environ.get("ner.answer_failed"):
            atoms["s"] = "500"
        return atoms


logger_class = EscapingLogger


def post_worker_init(worker):
    from nerserve.tagger.memory import limit_malloc_arenas
    from nerserve.web.app import model_loader

    limit_malloc_arenas()  # before the worker's threads start allocating

    # A model that cannot load is not something a retry fixes: the worker exits
    # with gunicorn's boot-error code, the master then stops with an error, and
    # the platform reports a crash and restarts the dyno.
    model_loader(worker.wsgi).start(on_failure=lambda: os._exit(Arbiter.WORKER_BOOT_ERROR))


def child_exit(server, worker):
    # The worker's gauges (requests in flight) leave the sums; its counters stay.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
    if isinstance(worker, BufferedThreadWorker):  # not when GUNICORN_CMD_ARGS names another worker class
        worker.connection_counts.release(worker.counts_slot)


def on_exit(server):
    shutil.rmtree(METRICS_DIR, ignore_errors=True)
