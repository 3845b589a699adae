"""gunicorn settings, read from the working directory by `gunicorn app:app` (Procfile)."""

import socket
import sys

import settings

try:
    environment = settings.load()
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
# Heroku sets WEB_CONCURRENCY from the dyno's memory. Sync workers: tagging is
# CPU-bound, so one request a worker at a time is the right concurrency.
workers = environment["WEB_CONCURRENCY"]
# Under Heroku's 30 s router limit, so a stuck worker is replaced before the
# router gives up on the request.
timeout = 25
graceful_timeout = 20
# Longer than Router 2.0's 90 s idle timeout, so the router, not gunicorn,
# closes an idle kept-alive connection (no request lost in a race with a close).
# Sync workers close every connection after its answer; this matters to the
# worker classes that keep connections alive.
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
# One line a request to stdout, with how much text was tagged (app.py puts it
# in the WSGI environ), never the text itself.
accesslog = "-"
access_log_format = "%(m)s %(U)s %(s)s %(M)sms text_chars=%({ner.text_chars}e)s"
# gunicorn 27's runtime control socket lives at one path in $HOME, shared by
# every gunicorn of the user (a test server beside a dev server); not needed here.
control_socket_disable = True


def post_worker_init(worker):
    from app import model_loader

    model_loader(worker.wsgi).start()
