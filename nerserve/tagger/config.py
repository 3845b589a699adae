"""Hyperparameters, named once. Saved with the trained model as config.json."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path


@dataclass(frozen=True)
class Config:
    # Pretrained GloVe rows kept besides the training words: words the service
    # meets outside CoNLL still get a vector (the vectors stay frozen).
    keep_pretrained: int = 100_000
    # Training words seen once are replaced by the unknown word with this
    # probability, so the network learns what to do with unknown words.
    singleton_unk: float = 0.5
    # Each epoch, a training sentence is written in one casing of
    # nerserve.tagger.casing.CASINGS with the probability given here, else kept
    # as written, so that the network learns to tag text as people type it:
    # lowercased, uppercased, in sentence case, in Title Case, or with its
    # names half lowercased ("mixed").
    recase_lower: float = 0.25
    recase_upper: float = 0.25
    recase_sentence: float = 0.0
    recase_title: float = 0.0
    recase_mixed: float = 0.0
    # Train on train + dev for a fixed max_epochs (no early stopping): only for
    # final networks, once the epochs were fixed by a run that stopped on dev.
    train_on_dev: bool = False
    # With train_on_dev, the epochs after which the learning rate decays, copied
    # from the dev run that fixed the epochs (its training.json, "lr_decays").
    decay_epochs: tuple[int, ...] = ()
    char_dim: int = 30
    char_filters: int = 50
    char_kernel: int = 3
    casing_dim: int = 8
    lstm_units: int = 100
    dropout: float = 0.5
    batch_size: int = 32
    learning_rate: float = 1e-3
    clipnorm: float = 5.0
    # The learning rate is multiplied by lr_decay after every decay_patience
    # epochs without a better dev F1.
    lr_decay: float = 0.5
    decay_patience: int = 3
    max_epochs: int = 60
    patience: int = 8
    # In an ensemble's config.json (nerserve.tagger.training.ensemble), the first member's seed;
    # training.json lists every member's.
    seed: int = 42

    def recasings(self) -> dict[str, float]:
        """The casings a training sentence may be written in, with their probabilities."""
        shares = {"lower": self.recase_lower, "upper": self.recase_upper, "sentence": self.recase_sentence,
                  "title": self.recase_title, "mixed": self.recase_mixed}
        return {casing: share for casing, share in shares.items() if share}

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> Config:
        """A saved configuration. Keys of experiments that were dropped
        (OBSOLETE) are skipped; any other unknown key is an error. Fields added
        since a model was saved take their defaults."""
        saved = json.loads(path.read_text())
        unknown = set(saved) - {f.name for f in fields(cls)} - OBSOLETE
        if unknown:
            raise ValueError(f"{path}: unknown hyperparameters {sorted(unknown)}")
        return cls(**{k: v for k, v in saved.items() if k not in OBSOLETE})


# Hyperparameters of experiments not kept (MODEL.md), still in the config.json of
# models saved before their code was removed: fine-tuning the training words'
# vectors and averaging the weights. Ignoring them is exact: saving folded the
# tuned offsets into the word vectors and stored the averages as the weights.
OBSOLETE = frozenset({"tune_training_words", "tuned_words", "average_decay"})
