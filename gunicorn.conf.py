# gunicorn's configuration file, read from the working directory by the
# Procfile's `web: gunicorn app:app`.
# https://docs.gunicorn.org/en/stable/configure.html#configuration-file
# https://docs.gunicorn.org/en/stable/settings.html
#
# Every setting lives in nerserve/server/gunicorn_config.py, each with why it
# is what it is, so that `ner-serve` (the installed package's command) serves
# with the same ones. In short: bind [::]:$PORT, $WEB_CONCURRENCY workers
# (default 2) of the buffered threaded worker with 32 threads, timeout 25 s and
# graceful_timeout 28 s (under Heroku's 30 s), keepalive 100 s (over the
# router's 90 s idle timeout), the app preloaded and the model loaded in each
# worker, one logfmt access-log line a request.
from nerserve.server.gunicorn_config import *
