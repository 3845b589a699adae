"""The model directory: its file names, the weights format, the members, the version and meta.json.

The one module that knows how a trained model lies on disk. Numpy only, so that
serving (nerserve.tagger.runtime, serve.py) and training (nerserve.tagger.training) share it.

A model directory holds:
  config.json        hyperparameters (nerserve.tagger.config.Config)
  vocab.json         words, characters and tags (nerserve.tagger.vocab.Vocab)
  word_vectors.npy   the frozen word vectors, float16, shared by every member
  weights.npz        every other weight of each member network, keyed
                     `<member>/<Keras variable path>`; a single network is member 0
  training.json      each member's seed and training history
and, once exported (python -m nerserve.tagger.training.export):
  chars.onnx         the words' character features, for ONNX Runtime
  tagger.onnx        the emission network from words and their features, for ONNX Runtime
  crf.npz            the CRF transition scores (the members' mean)
  saved_model/       the TensorFlow SavedModel, for TensorFlow Serving
  parity.json        the ONNX runtime against TensorFlow on dev and test
  meta.json          what /api/model reports: name, version, scores, members,
                     training data, parameters and the score temperature
  metrics.json       dev and test scores (python -m nerserve.tagger.training.evaluate)
and, once calibrated (python -m nerserve.tagger.training.calibration):
  calibration.json   the temperature of the entity scores and what it was fitted on
and, optionally:
  caseless/          a model directory of its own, networks trained
                     on recased text, for sentences all in lower or upper case
                     (nerserve.tagger.casing)
  typed/             another, networks trained on text as people type it
                     (sentence case, Title Case, names half lowercased), for
                     Title Case and the names the cased networks miss
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

# The repository's root (in a clone), for every module that names a path in it.
REPOSITORY = Path(__file__).resolve().parents[2]
# Where an installed package (pip install .) has the committed model's serving
# files: pyproject.toml maps results/crf there.
INSTALLED_MODEL_DIR = Path(__file__).resolve().parent / "committed_model"


def committed_model_dir() -> Path:
    """The model the repository carries and serves by default: results/crf in
    a clone, or the copy installed with the package (no results/ beside it)."""
    return INSTALLED_MODEL_DIR if INSTALLED_MODEL_DIR.is_dir() else REPOSITORY / "results" / "crf"


COMMITTED_MODEL_DIR = committed_model_dir()

CONFIG = "config.json"
VOCAB = "vocab.json"
WORD_VECTORS = "word_vectors.npy"
WEIGHTS = "weights.npz"
TRAINING = "training.json"
ONNX = "tagger.onnx"
CHARS_ONNX = "chars.onnx"
CRF = "crf.npz"
SAVED_MODEL = "saved_model"
PARITY = "parity.json"
CALIBRATION = "calibration.json"
META = "meta.json"
METRICS = "metrics.json"
CASELESS = "caseless"
TYPED = "typed"

# Files the members of an ensemble must have byte for byte the same.
SHARED_FILES = (VOCAB, WORD_VECTORS)
# The files that make up the model, hashed into its version (the JSON reports
# are about the model, not part of it; calibration.json changes its scores).
MODEL_FILES = (CONFIG, VOCAB, WORD_VECTORS, WEIGHTS, CHARS_ONNX, ONNX, CRF, CALIBRATION)


def join(members: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """One weights dict for the members, in order."""
    return {f"{i}/{name}": value for i, weights in enumerate(members) for name, value in weights.items()}


def split(weights: Mapping[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """The members' weights, in order, from a weights dict made by join()."""
    members: dict[int, dict[str, np.ndarray]] = {}
    for key, value in weights.items():
        member, name = key.split("/", 1)
        members.setdefault(int(member), {})[name] = value
    return [members[i] for i in range(len(members))]


def write_weights(directory: Path, members: list[dict[str, np.ndarray]]) -> None:
    np.savez(directory / WEIGHTS, **join(members))


def read_weights(directory: Path) -> list[dict[str, np.ndarray]]:
    with np.load(directory / WEIGHTS) as saved:
        return split(saved)


def count_members(directory: Path) -> int:
    with np.load(directory / WEIGHTS) as saved:
        return len({key.split("/", 1)[0] for key in saved.files})


def version(directory: Path) -> str:
    """A hash of the model's files: it changes whenever the model's answers may."""
    digest = hashlib.sha256()
    for name in [*MODEL_FILES, *(f"{inner}/{name}" for inner in (CASELESS, TYPED) for name in MODEL_FILES)]:
        path = directory / name
        if path.exists():
            digest.update(name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


class ModelError(ValueError):
    """A model directory that cannot be served; the message names the file and
    what is wrong with it, on one line, for the log line that stops start-up."""


def temperature(directory: Path) -> float:
    """What the entity scores' CRF is divided by (nerserve.tagger.marginals.EntityScorer);
    1, the scores as trained, without calibration.json. ModelError unless it is
    a positive number: 0 or NaN would score every entity NaN, a negative one 0."""
    value = read_json(directory, CALIBRATION).get("temperature", 1.0)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise ModelError(f"{directory / CALIBRATION}: the temperature is {value!r}, not a positive number")
    return float(value)


def read_crf(directory: Path, num_tags: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """crf.npz's transition, start and end scores; ModelError unless they are
    finite and of the shapes `num_tags` tags need."""
    path = directory / CRF
    shapes = {"transitions": (num_tags, num_tags), "start": (num_tags,), "end": (num_tags,)}
    with np.load(path) as crf:
        missing = sorted(set(shapes) - set(crf.files))
        if missing:
            raise ModelError(f"{path}: no {', '.join(missing)}")
        arrays = {name: crf[name] for name in shapes}
    for name, shape in shapes.items():
        if arrays[name].shape != shape:
            raise ModelError(f"{path}: {name} has shape {arrays[name].shape}, but {VOCAB} has {num_tags} tags")
        if not np.isfinite(arrays[name]).all():
            raise ModelError(f"{path}: {name} holds scores that are not finite")
    return arrays["transitions"], arrays["start"], arrays["end"]


def read_json(directory: Path, name: str) -> dict[str, Any]:
    """A JSON file of the directory; {} when the model has none (not exported or not scored yet)."""
    path = directory / name
    return json.loads(path.read_text()) if path.exists() else {}


def write_json(directory: Path, name: str, data: dict[str, Any]) -> None:
    (directory / name).write_text(json.dumps(data, indent=2) + "\n")
