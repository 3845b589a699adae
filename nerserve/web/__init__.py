"""The web service: the Flask app factory, its routes, the API contract, keys
and quotas, metrics, and the pages (/client, /docs)."""
