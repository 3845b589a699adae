"""gunicorn as the service runs it: the buffered threaded worker, the settings
(gunicorn_config) and the ner-serve command."""
