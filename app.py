"""The WSGI app for the Procfile's `gunicorn app:app` (nerserve.web.app builds it).

`python app.py` serves it with Flask's development server instead, on loopback only.
"""

from nerserve.web.app import app

__all__ = ["app"]

if __name__ == "__main__":
    # Local development only: Flask's server, no debugger, loopback only.
    app.run(host="127.0.0.1", port=app.config["PORT"], debug=False)
