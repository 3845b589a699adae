"""nerserve/server/buffered_worker.py builds on gunicorn's gthread worker: it overrides some
of its methods, calls them through super(), and reads some of its internals
(docs/security.md, "The buffered worker"). Each one's source is pinned here by
a digest, so that a gunicorn upgrade that changes any of them fails this fast
test, naming it, instead of only slow tests noticing, or none. After reading
the change and adapting nerserve/server/buffered_worker.py, write the new digest here."""

from __future__ import annotations

import hashlib
import importlib
import inspect

import gunicorn

GUNICORN_VERSION = "27.0.1"
# What nerserve/server/buffered_worker.py relies on, by dotted path: the digest of its source.
RELIED_ON = {
    # Overridden, and called through super().
    "gunicorn.workers.gthread.ThreadWorker.__init__": "5681b8b542ea91bf",
    "gunicorn.workers.gthread.ThreadWorker.enqueue_req": "c9f428953d24acef",
    "gunicorn.workers.gthread.ThreadWorker.handle_request": "6d0de5b919102efc",
    "gunicorn.workers.gthread.ThreadWorker.finish_request": "616e7bb15a009ff7",
    "gunicorn.workers.gthread.ThreadWorker.murder_pending": "7bf11f46454296e1",
    "gunicorn.workers.gthread.ThreadWorker.accept": "f8dcead3dce5c851",
    "gunicorn.workers.gthread.ThreadWorker.wait_for_and_dispatch_events": "ea969b352482bd5c",
    "gunicorn.workers.gthread.ThreadWorker.set_accept_enabled": "140150ebfd3cae34",
    "gunicorn.workers.gthread.ThreadWorker.run": "f92c7394d85715a4",
    "gunicorn.workers.base.Worker.handle_error": "75426448389bbac9",
    # Read or called: the thread's own handling of a connection, the
    # connection's fields, and how a request is parsed from the bytes read.
    "gunicorn.workers.gthread.ThreadWorker.handle": "ca85c9be3df75da4",
    "gunicorn.workers.gthread.TConn.__init__": "c8763d7c65974e1b",
    "gunicorn.workers.gthread.TConn.init": "5ff3d4ba451cfdf3",
    "gunicorn.workers.gthread.TConn.close": "6d1c334ed1979fcb",
    "gunicorn.http.parser.RequestParser": "7d4a7f9ad92587eb",
    "gunicorn.http.unreader.Unreader.take_buffered": "89cef5e60e6f09e1",
    "gunicorn.http.unreader.Unreader.unread": "8e325744dfcaca7f",
    # body_framing() reads a head as this does; the worker clears the flag that
    # wsgi.create() reads to send 100 Continue itself.
    "gunicorn.http.message.Request.set_body_reader": "db5c46d4c717f58a",
    "gunicorn.http.wsgi.create": "2c35d4a2dc629ede",
}


def resolve(path: str):
    """The object at a dotted path: the longest importable module, then attributes."""
    parts = path.split(".")
    for split in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for name in parts[split:]:
            target = getattr(target, name)
        return target
    raise ImportError(path)


def digest(path: str) -> str:
    return hashlib.sha256(inspect.getsource(resolve(path)).encode()).hexdigest()[:16]


def test_gunicorn_is_the_version_the_worker_was_written_for():
    assert gunicorn.__version__ == GUNICORN_VERSION, "read tests/test_gunicorn_internals.py's docstring"


def test_every_gunicorn_internal_the_worker_relies_on_is_unchanged():
    changed = [path for path, expected in RELIED_ON.items() if digest(path) != expected]
    assert not changed, f"gunicorn changed what nerserve/server/buffered_worker.py relies on: {changed}"
