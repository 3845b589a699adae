"""Tag a corpus file: `python tag.py INPUT [-o OUTPUT] ...` (`--help` has the
options). The command is nerserve.corpus.tag's; installed, it is `ner-tag`."""

from nerserve.corpus.tag import run

if __name__ == "__main__":
    run()
