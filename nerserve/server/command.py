"""ner-serve: the service under gunicorn with the project's own settings, as
the Procfile's `gunicorn app:app` serves it from a clone, for an installed
package (where no gunicorn.conf.py lies in the working directory).

    ner-serve [GUNICORN OPTIONS]      # e.g. ner-serve --bind 127.0.0.1:8000
"""

from __future__ import annotations

import os
import sys

GUNICORN_CONFIG = "python:nerserve.server.gunicorn_config"
APP = "nerserve.web.app:app"


def main() -> None:
    """Become gunicorn (exec, so that the platform's signals reach its master
    directly); the command's arguments go to gunicorn before the app."""
    os.execvp(sys.executable, [sys.executable, "-m", "gunicorn", "--config", GUNICORN_CONFIG, *sys.argv[1:], APP])
