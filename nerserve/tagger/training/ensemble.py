"""Combine trained models into one: `python -m nerserve.tagger.training.ensemble --out results/crf MODEL...`.

The members are networks trained alike from different seeds; they share the
vocabulary and the frozen word vectors. The ensemble scores a tag path by the
mean of the members' path scores. A path score is a sum of emission and
transition scores, so that mean is the score of one CRF whose emissions and
transitions are the members' means: decoding stays a single Viterbi pass.

weights.npz holds every member's weights (nerserve.tagger.files). The ensemble is built
and exported in a new directory that replaces --out only when the parity check
passes (nerserve.tagger.training.export).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from nerserve.tagger import files
from nerserve.tagger.config import Config
from nerserve.tagger.training.data import DEFAULT_DATA_DIR
from nerserve.tagger.training.export import ParityError, export, print_parity, staged


def combine(models: list[Path], out_dir: Path) -> None:
    """Write the models' ensemble into out_dir (without the serving files)."""
    configs = [Config.load(model / files.CONFIG) for model in models]
    # Seeds differ, and so may the training's length: each network trains for
    # the epochs (and learning-rate decays) that its own dev run chose.
    own = {"seed": 0, "max_epochs": 0, "decay_epochs": ()}
    if len({json.dumps({**c.__dict__, **own}, sort_keys=True) for c in configs}) > 1:
        raise ValueError("the members must be trained with the same hyperparameters (seeds and epochs aside)")
    for name in files.SHARED_FILES:
        if len({(model / name).read_bytes() for model in models}) > 1:
            raise ValueError(f"the members must share {name}: train them on the same data and vectors")
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in files.SHARED_FILES:
        shutil.copy(models[0] / name, out_dir / name)
    configs[0].save(out_dir / files.CONFIG)
    files.write_weights(out_dir, [weights for model in models for weights in files.read_weights(model)])
    members = [member for model, c in zip(models, configs, strict=True) for member in _member_histories(model, c)]
    files.write_json(out_dir, files.TRAINING, {"members": members})


def _member_histories(model: Path, config: Config) -> list[dict]:
    """Each network's seed and training history; an ensemble given as a model
    brings its members' own."""
    history = files.read_json(model, files.TRAINING)
    return history.get("members", [{"seed": config.seed, **history}])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", type=Path, nargs="+", help="trained model directories (python -m nerserve.tagger.training.train)")
    parser.add_argument("--out", type=Path, required=True, help="where the ensemble goes")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="dev and test sets for the parity check")
    parser.add_argument("--no-parity-check", action="store_true",
                        help="export without the check (minutes) nor the SavedModel: for trying ensembles out")
    args = parser.parse_args()
    check = not args.no_parity_check
    try:
        with staged(args.out) as staging:
            combine(args.models, staging)
            report = export(staging, args.data_dir if check else None, saved_model=check)
    except ParityError as error:
        sys.exit(f"parity check failed; {args.out} is left as it was.\n{error}")
    if report:
        print_parity(report)


if __name__ == "__main__":
    main()
