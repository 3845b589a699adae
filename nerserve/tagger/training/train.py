"""Train one network: `python -m nerserve.tagger.training.train [--data-dir DIR] [--run-dir runs/crf] [--out DIR]`.

The data is checked first (a malformed line, a tag not in IOB2 or a file
without entities stops it, naming the file and line) and summarised. Early
stopping on dev F1: valid.txt, or without one a seeded tenth of train.txt held
out. The best epoch is kept, with its ONNX graph and CRF scores
(nerserve.tagger.training.export, without the SavedModel and the parity check: the
ensemble of the networks gets those), ready to serve from --out. Every epoch
leaves a checkpoint in --run-dir, and a rerun of the same command resumes from
it. Progress goes to the terminal and to <run-dir>/train.log.

With --keep-types, the data directory holds only new types, and the network
learns them together with the committed model's own (nerserve.tagger.training.keep_types).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import shutil
import time
from collections import Counter
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from nerserve.tagger import files
from nerserve.tagger.casing import recase_sentence, recase_sentences
from nerserve.tagger.config import Config
from nerserve.tagger.tags import format_report, score
from nerserve.tagger.training import artifact, glove, keep_types
from nerserve.tagger.training.data import (
    DEFAULT_DATA_DIR,
    DataFormatError,
    Sentence,
    read_splits,
    summary,
)
from nerserve.tagger.training.evaluate import evaluate, record
from nerserve.tagger.training.export import export
from nerserve.tagger.training.network import (
    INPUT_SIGNATURE,
    LENGTHS_SPEC,
    TAGS_SPEC,
    Tagger,
    frozen_word_embedding,
)
from nerserve.tagger.vocab import UNK, Vocab

log = logging.getLogger("train")


def word_vectors_for(vocab: Vocab, glove_words: list[str], glove_vectors: np.ndarray) -> np.ndarray:
    """Rows of GloVe in vocabulary order: the mean vector for unknown words,
    zeros for padding."""
    index = {w: i for i, w in enumerate(glove_words)}
    vectors = np.zeros((len(vocab.words), glove_vectors.shape[1]), dtype=np.float32)
    vectors[1] = glove_vectors.mean(axis=0)
    for i, word in enumerate(vocab.words[2:], start=2):
        if word in index:
            vectors[i] = glove_vectors[index[word]]
    return vectors


def shuffled_batches(sentences: list[Sentence], batch_size: int, rng: np.random.Generator) -> list[list[int]]:
    """Batches of near-equal length in random order; lengths are jittered so the
    batches differ from epoch to epoch."""
    jittered = [len(s.words) + rng.uniform(-2, 2) for s in sentences]
    order = np.argsort(jittered)
    batches = [order[i : i + batch_size].tolist() for i in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return batches


def singleton_ids(vocab: Vocab, sentences: list[Sentence]) -> np.ndarray:
    """Vocabulary ids of the words seen once in training."""
    counts = Counter(w.lower() for s in sentences for w in s.words)
    return np.array([vocab.word_index[w] for w, n in counts.items() if n == 1 and w in vocab.word_index])


def drop_singletons(word_ids: np.ndarray, singletons: np.ndarray, unk_id: int, rate: float,
                    rng: np.random.Generator) -> np.ndarray:
    dropped = np.isin(word_ids, singletons) & (rng.random(word_ids.shape) < rate)
    return np.where(dropped, unk_id, word_ids).astype(word_ids.dtype)


# With --keep-types: the tags each token may have, [batch, time, tags], instead of its tag.
ALLOWED_SPEC = tf.TensorSpec([None, None, None], tf.float32, "allowed")


def make_train_step(tagger: Tagger, optimizer: keras.optimizers.Optimizer, marginal: bool = False):
    """One step on a batch, on the log-likelihood of its tags; with marginal,
    on the marginal log-likelihood of the tags each token may have."""
    likelihood = tagger.crf.marginal_log_likelihood if marginal else tagger.crf.log_likelihood

    @tf.function(input_signature=[*INPUT_SIGNATURE, ALLOWED_SPEC if marginal else TAGS_SPEC, LENGTHS_SPEC])
    def train_step(word_ids, char_ids, casing_ids, targets, lengths):
        with tf.GradientTape() as tape:
            emissions = tagger(word_ids, char_ids, casing_ids, training=True)
            loss = -tf.reduce_mean(likelihood(emissions, targets, lengths))
        gradients = tape.gradient(loss, tagger.trainable_variables)
        optimizer.apply(gradients, tagger.trainable_variables)
        return loss

    return train_step


def recased_at_random(sentences: list[Sentence], config: Config, rng: np.random.Generator,
                      names_rng: random.Random) -> list[Sentence]:
    """Each sentence written in one of config.recasings(), with its probability,
    else as written; drawn anew each epoch. names_rng draws the names that
    "mixed" lowercases."""
    recasings = config.recasings()
    draws = rng.random(len(sentences))
    bounds = np.cumsum(list(recasings.values()))
    casings = [*recasings, "as_written"]
    return [Sentence(recase_sentence(s.words, s.tags, casings[k], names_rng), s.tags)
            for s, k in zip(sentences, np.searchsorted(bounds, draws, side="right"), strict=True)]


def dev_f1_by_case(directory: Path, sentences: list[Sentence], casings: list[str]) -> dict[str, float]:
    """Dev F1 in each casing (nerserve.tagger.casing.CASINGS)."""
    tagger = artifact.TensorFlowTagger(directory)
    gold = [s.tags for s in sentences]
    pairs = [(s.words, s.tags) for s in sentences]
    return {casing: score(gold, tagger.tag(recase_sentences(pairs, casing))).overall.f1 for casing in casings}


def dev_casings(config: Config) -> list[str]:
    """The casings a network's dev F1 is taken in: as written and those it is
    trained on; lowercase and uppercase always, as every dev run logged them."""
    return list(dict.fromkeys(["as_written", "lower", "upper", *config.recasings()]))


def choice_f1(by_case: dict[str, float], config: Config) -> float:
    """The dev F1 that the epoch is chosen on. A network trained on recased
    text: the mean over as written and the casings it is trained on, so that
    none is given up. A cased network (no recasing) is chosen on text as
    written, as the committed cased networks' dev runs were: lowercase and
    uppercase text is the caseless networks' (nerserve/tagger/casing.py), and
    a cased network's scores there are noise."""
    return float(np.mean([by_case[casing] for casing in ("as_written", *config.recasings())]))


class Checkpoint:
    """The last finished epoch: weights, optimizer state and training history."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.state_file = directory / "state.json"

    def exists(self) -> bool:
        return self.state_file.exists()

    def save(self, tagger: Tagger, optimizer, state: dict) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        np.savez(self.directory / "weights.npz", **artifact.trained_weights(tagger))
        np.savez(self.directory / "optimizer.npz", *[v.numpy() for v in optimizer.variables])
        self.state_file.write_text(json.dumps(state, indent=2))

    def restore(self, tagger: Tagger, optimizer) -> dict:
        with np.load(self.directory / "weights.npz") as weights:
            artifact.set_weights(tagger, dict(weights))
        optimizer.build(tagger.trainable_variables)
        with np.load(self.directory / "optimizer.npz") as saved:
            for variable, value in zip(optimizer.variables, saved.values(), strict=True):
                variable.assign(value)
        return json.loads(self.state_file.read_text())


def train(config: Config, data_dir: Path, out_dir: Path, run_dir: Path) -> float:
    """Train, or resume the run in run_dir; the best model goes to out_dir.
    Returns the best dev F1."""
    run_dir.mkdir(parents=True, exist_ok=True)
    log_file = logging.FileHandler(run_dir / "train.log")
    log_file.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    log.addHandler(log_file)
    log.setLevel(logging.INFO)
    try:
        return _train(config, data_dir, out_dir, run_dir)
    finally:
        log.removeHandler(log_file)
        log_file.close()


def _train(config: Config, data_dir: Path, out_dir: Path, run_dir: Path) -> float:
    keras.utils.set_random_seed(config.seed)
    train_set, dev_set, dev_source = read_splits(data_dir)
    if config.train_on_dev:
        train_set += dev_set
    log.info(summary(f"{data_dir}/train.txt", train_set))
    log.info(summary(f"dev ({dev_source})", dev_set))
    # With --keep-types, the base data, whose O may be a new type (nerserve.tagger.training.keep_types).
    base_set, open_types = keep_types.read_base(data_dir)
    if base_set:
        log.info(summary(f"{data_dir}/{keep_types.BASE_FILE}, whose O may be {', '.join(sorted(open_types))}",
                         base_set))
    partial = np.array([False] * len(train_set) + [True] * len(base_set))
    train_set = train_set + base_set
    glove_words, glove_vectors = glove.load()
    pairs = [(s.words, s.tags) for s in train_set]
    vocab = Vocab.build(pairs, glove_words, config.keep_pretrained)
    word_embedding = frozen_word_embedding(word_vectors_for(vocab, glove_words, glove_vectors))
    tagger = artifact.build_tagger(config, vocab, word_embedding)
    log.info("vocabulary: %d words, %d chars, tags %s", len(vocab.words), len(vocab.chars), vocab.tags)
    singletons = singleton_ids(vocab, train_set)
    optimizer = keras.optimizers.Adam(config.learning_rate, clipnorm=config.clipnorm)
    train_step = make_train_step(tagger, optimizer, marginal=bool(open_types))

    checkpoint = Checkpoint(run_dir / "last")
    best_dir = run_dir / "best"
    data = {"dir": data_dir.resolve().name, "files": ["train.txt", "valid.txt"] if config.train_on_dev else ["train.txt"],
            "sentences": len(train_set)}
    if base_set:
        data.update(files=[*data["files"], keep_types.BASE_FILE], new_types=sorted(open_types))
    state = {"epoch": 0, "best_f1": -1.0, "best_epoch": 0, "lr_decays": [], "data": data, "history": []}
    if checkpoint.exists():
        state = checkpoint.restore(tagger, optimizer)
        log.info("resumed after epoch %d (best dev F1 %.2f)", state["epoch"], state["best_f1"])

    while state["epoch"] < config.max_epochs and (
        config.train_on_dev or state["epoch"] - state["best_epoch"] < config.patience
    ):
        epoch = state["epoch"] + 1
        rng = np.random.default_rng(config.seed + epoch)
        started = time.time()
        losses = []
        epoch_set = recased_at_random(train_set, config, rng, random.Random(config.seed + epoch))
        progress = tqdm(shuffled_batches(epoch_set, config.batch_size, rng), desc=f"epoch {epoch}", leave=False)
        for indices in progress:
            sentences = [epoch_set[i] for i in indices]
            batch = vocab.encode([s.words for s in sentences])
            tag_ids = vocab.encode_tags([s.tags for s in sentences])
            if open_types:
                tag_ids = keep_types.allowed_tags(tag_ids, partial[indices], list(vocab.tags), open_types)
            word_ids = drop_singletons(batch.word_ids, singletons, vocab.word_index[UNK], config.singleton_unk, rng)
            loss = train_step(word_ids, batch.char_ids, batch.casing_ids, tag_ids, batch.lengths)
            losses.append(float(loss))
            progress.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}")
        artifact.save([tagger], vocab, config, run_dir / "epoch")
        state["epoch"] = epoch
        entry = {"epoch": epoch, "loss": float(np.mean(losses))}
        if config.train_on_dev:
            improved = True  # dev is training data here: the last epoch is the model
        else:
            by_case = dev_f1_by_case(run_dir / "epoch", dev_set, dev_casings(config))
            f1 = choice_f1(by_case, config)
            entry.update({"dev_f1": by_case["as_written"], "dev_f1_by_case": by_case, "dev_f1_choice": f1})
            improved = f1 > state["best_f1"]
            if improved:
                state["best_f1"] = f1
        state["history"].append({**entry, "seconds": round(time.time() - started, 1)})
        if improved:
            state["best_epoch"] = epoch
            shutil.rmtree(best_dir, ignore_errors=True)
            shutil.copytree(run_dir / "epoch", best_dir)
        stalled = epoch - state["best_epoch"]
        decays = epoch in config.decay_epochs if config.train_on_dev else stalled and stalled % config.decay_patience == 0
        if decays:
            optimizer.learning_rate.assign(optimizer.learning_rate * config.lr_decay)
            state["lr_decays"].append(epoch)
            log.info("learning rate now %.2e", float(optimizer.learning_rate))
        checkpoint.save(tagger, optimizer, state)
        log.info("epoch %d: loss %.4f, %s, %.0fs", epoch, np.mean(losses),
                 "trained on train + dev" if config.train_on_dev else
                 f"dev F1 {entry['dev_f1_by_case']}, chosen on {entry['dev_f1_choice']:.2f} "
                 f"(best {state['best_f1']:.2f} at epoch {state['best_epoch']})", time.time() - started)

    out_dir.mkdir(parents=True, exist_ok=True)
    for name in (files.CONFIG, files.VOCAB, files.WORD_VECTORS, files.WEIGHTS):
        shutil.copy(best_dir / name, out_dir / name)
    files.write_json(out_dir, files.TRAINING, state)
    log.info("best dev F1 %.2f at epoch %d, model in %s", state["best_f1"], state["best_epoch"], out_dir)
    return state["best_f1"]


def score_splits(model_dir: Path, data_dir: Path) -> None:
    """The exported model's per-type scores on the data's valid.txt and
    test.txt, where they exist: printed, and kept in <model>/metrics.json."""
    for split in ("valid", "test"):
        path = data_dir / f"{split}.txt"
        if path.exists():
            report = evaluate(model_dir, path)
            record(model_dir, split, path, report)
            log.info("%s (kept in %s):\n%s", path, model_dir / files.METRICS, format_report(report))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                        help="holds train.txt and valid.txt (without it, a tenth of train.txt is held out)")
    parser.add_argument("--keep-types", nargs="?", type=Path, const=keep_types.BASE_MODEL, metavar="MODEL",
                        help="the data labels only new types: learn them together with MODEL's own types "
                             f"(default {keep_types.BASE_MODEL.relative_to(files.REPOSITORY)}), "
                             "which tags the data where it says O; trained with --keep-data")
    parser.add_argument("--keep-data", type=Path, default=keep_types.BASE_DATA,
                        help="with --keep-types: the data MODEL learnt from, its labels of the new types made O")
    # Not results/crf by default: one network must not silently replace the
    # committed ensemble (nerserve.tagger.training.ensemble writes that).
    parser.add_argument("--out", type=Path, help="where the best model goes (default: <run-dir>/out)")
    parser.add_argument("--run-dir", type=Path, default=Path("runs/crf"), help="checkpoints and log")
    parser.add_argument("--max-epochs", type=int, default=Config.max_epochs)
    parser.add_argument("--lstm-units", type=int, default=Config.lstm_units)
    parser.add_argument("--batch-size", type=int, default=Config.batch_size)
    parser.add_argument("--singleton-unk", type=float, default=Config.singleton_unk)
    parser.add_argument("--seed", type=int, default=Config.seed)
    parser.add_argument("--recase-lower", type=float, default=Config.recase_lower)
    parser.add_argument("--recase-upper", type=float, default=Config.recase_upper)
    parser.add_argument("--recase-sentence", type=float, default=Config.recase_sentence)
    parser.add_argument("--recase-title", type=float, default=Config.recase_title)
    parser.add_argument("--recase-mixed", type=float, default=Config.recase_mixed,
                        help="probability that a sentence has each of its names lowercased with probability 0.5")
    parser.add_argument("--patience", type=int, default=Config.patience)
    parser.add_argument("--train-on-dev", action="store_true",
                        help="train on train + dev for exactly --max-epochs (final networks only)")
    parser.add_argument("--decay-epochs", type=int, nargs="*", default=[],
                        help="with --train-on-dev: epochs after which the learning rate decays")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    config = Config(max_epochs=args.max_epochs, lstm_units=args.lstm_units, batch_size=args.batch_size,
                    singleton_unk=args.singleton_unk, seed=args.seed, recase_lower=args.recase_lower,
                    recase_upper=args.recase_upper, recase_sentence=args.recase_sentence,
                    recase_title=args.recase_title, recase_mixed=args.recase_mixed, patience=args.patience,
                    train_on_dev=args.train_on_dev,
                    decay_epochs=tuple(args.decay_epochs))
    out = args.out or args.run_dir / "out"
    try:
        data_dir = args.data_dir
        if args.keep_types:
            data_dir = keep_types.prepare(data_dir, args.run_dir, args.keep_types, args.keep_data)
        train(config, data_dir, out, args.run_dir)
        export(out, data_dir=None, saved_model=False)
        log.info("exported for serving (ONNX and CRF; no SavedModel, no parity check) into %s", out)
        score_splits(out, data_dir)
    except DataFormatError as error:
        # The user's data is wrong, not the program: one line, no traceback.
        raise SystemExit(f"error: {error}") from None


if __name__ == "__main__":
    main()
