"""Combine trained models into one: `python -m model.training.ensemble --out results/crf MODEL...`.

The members are networks trained alike from different seeds; they share the
vocabulary and the frozen word vectors. The ensemble scores a tag path by the
mean of the members' path scores. A path score is a sum of emission and
transition scores, so that mean is the score of one CRF whose emissions and
transitions are the members' means: decoding stays a single Viterbi pass.

In a model directory, weights.npz holds every member's weights, keyed
`<member>/<variable path>`; a single trained network is member 0. Numpy only,
so that the export reads the weights without TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from model.config import Config

WEIGHTS = "weights.npz"
# Files every member must have byte for byte the same; they are copied once.
SHARED_FILES = ("vocab.json", "word_vectors.npy")


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


def read_weights(directory: Path) -> list[dict[str, np.ndarray]]:
    with np.load(directory / WEIGHTS) as saved:
        return split(saved)


def count_members(directory: Path) -> int:
    with np.load(directory / WEIGHTS) as saved:
        return len({key.split("/", 1)[0] for key in saved.files})


def mean_crf(members: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The members' mean transition, start and end scores."""
    return {name: np.mean([m[name] for m in members], axis=0) for name in ("transitions", "start", "end")}


def combine(models: list[Path], out_dir: Path) -> None:
    """Write the models' ensemble into out_dir (without the serving files)."""
    configs = [Config.load(model / "config.json") for model in models]
    if len({json.dumps({**c.__dict__, "seed": 0}, sort_keys=True) for c in configs}) > 1:
        raise ValueError("the members must be trained with the same hyperparameters (seeds aside)")
    for name in SHARED_FILES:
        if len({(model / name).read_bytes() for model in models}) > 1:
            raise ValueError(f"the members must share {name}: train them on the same data and vectors")
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in SHARED_FILES:
        shutil.copy(models[0] / name, out_dir / name)
    configs[0].save(out_dir / "config.json")
    np.savez(out_dir / WEIGHTS, **join([weights for model in models for weights in read_weights(model)]))
    members = [member for model, c in zip(models, configs, strict=True) for member in _member_histories(model, c)]
    (out_dir / "training.json").write_text(json.dumps({"members": members}, indent=2) + "\n")


def _member_histories(model: Path, config: Config) -> list[dict]:
    """Each network's seed and training history; an ensemble given as a model
    brings its members' own."""
    history = json.loads((model / "training.json").read_text())
    return history.get("members", [{"seed": config.seed, **history}])


def main() -> None:
    # Imported here: model.training.export imports this module.
    from model.training.data import DEFAULT_DATA_DIR
    from model.training.export import export

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", type=Path, nargs="+", help="trained model directories (python -m model.training.train)")
    parser.add_argument("--out", type=Path, required=True, help="where the ensemble goes")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="dev and test sets for the parity check")
    parser.add_argument("--no-parity-check", action="store_true", help="export without the check (minutes)")
    args = parser.parse_args()
    combine(args.models, args.out)
    report = export(args.out, None if args.no_parity_check else args.data_dir)
    print("exported for serving; parity with TensorFlow:", report or "not checked")


if __name__ == "__main__":
    main()
