"""Tagging more text than requests carry: the ner-tag command (tag.py), its file
formats, and the Spark job with its workers' side."""
