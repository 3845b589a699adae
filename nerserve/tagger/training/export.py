"""Export the trained model for serving: `python -m nerserve.tagger.training.export [--model results/crf]`.

Writes, beside the Keras weights:
  chars.onnx     the character CNN of every member, run once a distinct word
                 (its convolution of embeddings as table lookups)
  tagger.onnx    the rest of the emission network, from the words' vectors,
                 character features and casings (ONNX's own bidirectional
                 LSTM op; for an ensemble, every member's and their mean);
                 both ONNX graphs are built from the weights, for the lean runtime
  crf.npz        the CRF transition scores (the members' mean, as TensorFlow
                 decodes with them), for Viterbi decoding and the entity
                 scores in numpy
  saved_model/   a TensorFlow SavedModel with a `serving_default` signature
                 (ids in, emissions and best tag ids out) for TensorFlow Serving
  parity.json    the check, on dev and test, that the ONNX runtime gives the
                 TensorFlow tags and emissions
  meta.json      what the service reports about the model (nerserve.tagger.files)
Parity is a gate: the command builds the export in a new directory and puts it
in place of the model only when the check passes; otherwise it exits non-zero
and the model is left as it was. Building the ONNX graph needs numpy and onnx
only; TensorFlow is imported for the CRF, the SavedModel and the parity check.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from nerserve.tagger import files
from nerserve.tagger.runtime import OnnxTagger
from nerserve.tagger.training.data import DEFAULT_DATA_DIR, read_conll
from nerserve.tagger.vocab import batches_by_length

if TYPE_CHECKING:  # the network imports TensorFlow; the export does only when it needs it
    from nerserve.tagger.training.network import Ensemble

OPSET = 18
IR_VERSION = 10  # the newest that onnxruntime 1.31 loads
NAME = "BiLSTM-CRF named-entity tagger (CoNLL-2003 English)"
# The largest difference between the runtimes' emission scores that parity
# allows: float32 rounding in a different order of operations stays far below.
PARITY_TOLERANCE = 1e-4


class ParityError(RuntimeError):
    """The lean runtime does not give TensorFlow's tags and emissions."""


def lstm_weights(kernel: np.ndarray, recurrent: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, ...]:
    """One direction of a Keras LSTM as ONNX W, R, B: transposed, gate blocks
    reordered from Keras [i, f, c, o] to ONNX [i, o, f, c], no recurrent bias."""
    def reorder(matrix):
        i, f, c, o = np.split(matrix, 4, axis=-1)
        return np.concatenate([i, o, f, c], axis=-1)
    return reorder(kernel).T, reorder(recurrent).T, np.concatenate([reorder(bias), np.zeros_like(bias)])


def member_graph(weights: dict[str, np.ndarray], prefix: str, chars_from: int
                 ) -> tuple[list[onnx.NodeProto], dict[str, np.ndarray]]:
    """One member's sentence network: the graph's inputs in (its character
    features are `char_features`[..., chars_from : chars_from + filters]),
    `<prefix>emissions` out."""
    filters = weights["char_conv/kernel"].shape[2]
    directions = [
        lstm_weights(*(weights[f"bilstm/{d}_lstm/lstm_cell/{n}"] for n in ("kernel", "recurrent_kernel", "bias")))
        for d in ("forward", "backward")
    ]
    units = directions[0][1].shape[1]
    W, R, B = (np.stack(parts) for parts in zip(*directions, strict=True))
    initializers = {
        "chars_from": np.array([chars_from], np.int64), "chars_to": np.array([chars_from + filters], np.int64),
        "casing_table": weights["casing_embedding/embeddings"],
        "lstm_W": W, "lstm_R": R, "lstm_B": B,
        "dense_w": weights["emission/kernel"], "dense_b": weights["emission/bias"],
        "features_shape": np.array([0, 0, 2 * units], np.int64),
    }
    def node(op, inputs, outputs, **attributes):
        """Names in CONSTANTS and the graph's inputs are shared; the rest are the member's."""
        def own(name):
            return name if name in CONSTANTS or name in INPUTS else prefix + name
        return helper.make_node(op, [own(n) for n in inputs], [own(n) for n in outputs], **attributes)

    nodes = [
        # Word features, in the network's order: word vector, characters, casing.
        node("Slice", ["char_features", "chars_from", "chars_to", "axis_2"], ["chars"]),
        node("Gather", ["casing_table", "casing_ids"], ["casings"]),
        node("Concat", ["word_vectors", "chars", "casings"], ["features"], axis=-1),
        # The bidirectional LSTM runs time-major and stops at each length.
        node("Transpose", ["features"], ["features_tm"], perm=[1, 0, 2]),
        node("LSTM", ["features_tm", "lstm_W", "lstm_R", "lstm_B", "lengths"], ["lstm_out"],
             direction="bidirectional", hidden_size=units),  # [words, 2, batch, units]
        node("Transpose", ["lstm_out"], ["lstm_bm"], perm=[2, 0, 1, 3]),
        node("Reshape", ["lstm_bm", "features_shape"], ["hidden"]),
        node("MatMul", ["hidden", "dense_w"], ["scores"]),
        node("Add", ["scores", "dense_b"], ["emissions"]),
    ]
    return nodes, {prefix + name: value for name, value in initializers.items()}


# Constants every member's graph shares.
CONSTANTS = {
    "neg_inf": np.array(-1e9, np.float32), "zero": np.array(0.0, np.float32), "zero_int": np.array(0, np.int32),
    "axis_1": np.array([1], np.int64), "axis_2": np.array([2], np.int64),
}
INPUTS = ("word_vectors", "char_features", "casing_ids", "lengths")


def onnx_model(nodes: list[onnx.NodeProto], initializers: dict[str, np.ndarray], name: str,
               inputs: list[onnx.ValueInfoProto], outputs: list[onnx.ValueInfoProto]) -> onnx.ModelProto:
    """One graph as a checked model; of the initializers, those its nodes use
    (ONNX Runtime warns of the others, at every start)."""
    used = {name for node in nodes for name in node.input}
    graph = helper.make_graph(nodes, name, inputs=inputs, outputs=outputs, initializer=[
        numpy_helper.from_array(np.asarray(value), key) for key, value in initializers.items() if key in used])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION,
                             producer_name="nerserve.tagger.training.export")
    onnx.checker.check_model(model, full_check=True)
    return model


def conv_tables(members: list[dict[str, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """The character embeddings and the convolution as one table an offset:
    tables[k, c] is what character c adds at offset k of the kernel to every
    member's filters, side by side [kernel, chars, members x filters]; and the
    members' biases. A convolution of embeddings is a sum of such rows, so the
    encoder looks them up instead of convolving."""
    tables = []
    for weights in members:
        char_table = weights["char_embedding/embeddings"].astype(np.float64)
        char_table[0] = 0.0  # the network zeroes padding characters; so does this row
        kernel = weights["char_conv/kernel"].astype(np.float64)  # [width, in, filters]
        tables.append(np.einsum("ci,kif->kcf", char_table, kernel))
    biases = np.concatenate([weights["char_conv/bias"] for weights in members])
    return np.concatenate(tables, axis=-1).astype(np.float32), biases


def build_chars_onnx(members: list[dict[str, np.ndarray]]) -> onnx.ModelProto:
    """The character encoder: the character ids of words [words, chars] in;
    every member's character features, side by side, out [words, members x
    filters]: the CNN (conv_tables) max-pooled over the real characters, 0 for
    a word without any. A word's features depend on its characters alone, so
    the runtime runs this once a distinct word, at the word's own width."""
    tables, biases = conv_tables(members)
    width = tables.shape[0]
    # Padded as Keras pads "same": the extra position, for an even width, on the right.
    pads = np.array([0, (width - 1) // 2, 0, width // 2], np.int64)
    initializers = {**CONSTANTS, "pads": pads, "conv_b": biases}
    nodes = [
        helper.make_node("Greater", ["char_ids", "zero_int"], ["char_mask"]),
        helper.make_node("Pad", ["char_ids", "pads"], ["padded_ids"]),
        helper.make_node("Shape", ["char_ids"], ["chars"], start=1, end=2),
    ]
    for k in range(width):
        initializers |= {f"table_{k}": tables[k], f"offset_{k}": np.array([k], np.int64)}
        nodes += [
            helper.make_node("Add", ["chars", f"offset_{k}"], [f"end_{k}"]),
            helper.make_node("Slice", ["padded_ids", f"offset_{k}", f"end_{k}", "axis_1"], [f"ids_{k}"]),
            helper.make_node("Gather", [f"table_{k}", f"ids_{k}"], [f"part_{k}"]),  # [words, chars, filters]
        ]
    nodes += [
        helper.make_node("Sum", [f"part_{k}" for k in range(width)], ["conv"]),
        # The bias and tanh after the max-pool, on one row a word: the same
        # result, as tanh never decreases and the bias is the same at every position.
        helper.make_node("Unsqueeze", ["char_mask", "axis_2"], ["char_mask_3d"]),
        helper.make_node("Where", ["char_mask_3d", "conv", "neg_inf"], ["masked_conv"]),
        helper.make_node("ReduceMax", ["masked_conv", "axis_1"], ["conv_max"], keepdims=0),  # [words, filters]
        helper.make_node("Add", ["conv_max", "conv_b"], ["conv_biased"]),
        helper.make_node("Tanh", ["conv_biased"], ["pooled"]),
        helper.make_node("Cast", ["char_mask"], ["char_mask_float"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMax", ["char_mask_float", "axis_1"], ["has_chars_float"], keepdims=1),
        helper.make_node("Cast", ["has_chars_float"], ["has_chars"], to=TensorProto.BOOL),
        helper.make_node("Where", ["has_chars", "pooled", "zero"], ["char_features"]),
    ]
    return onnx_model(
        nodes, initializers, "character_features",
        inputs=[helper.make_tensor_value_info("char_ids", TensorProto.INT32, ["words", "chars"])],
        outputs=[helper.make_tensor_value_info("char_features", TensorProto.FLOAT, ["words", char_width(members)])],
    )


def char_width(members: list[dict[str, np.ndarray]]) -> int:
    return sum(weights["char_conv/kernel"].shape[2] for weights in members)


def build_onnx(members: list[dict[str, np.ndarray]]) -> onnx.ModelProto:
    """The sentence network: word vectors (looked up by the caller), the
    words' character features (build_chars_onnx), casing ids and lengths in;
    the members' mean emission scores [batch, words, tags] out."""
    nodes, initializers = [], dict(CONSTANTS)
    chars_from = 0
    for i, weights in enumerate(members):
        member_nodes, member_initializers = member_graph(weights, f"m{i}_", chars_from)
        nodes += member_nodes
        initializers.update(member_initializers)
        chars_from += weights["char_conv/kernel"].shape[2]
    initializers["members"] = np.array(len(members), np.float32)
    nodes += [
        helper.make_node("Sum", [f"m{i}_emissions" for i in range(len(members))], ["emission_sum"]),
        helper.make_node("Div", ["emission_sum", "members"], ["emissions"]),
    ]
    first = members[0]
    word_dim = (first["bilstm/forward_lstm/lstm_cell/kernel"].shape[0] - first["char_conv/kernel"].shape[2]
                - first["casing_embedding/embeddings"].shape[1])
    num_tags = first["emission/bias"].shape[0]
    return onnx_model(
        nodes, initializers, "bilstm_emissions",
        inputs=[
            helper.make_tensor_value_info("word_vectors", TensorProto.FLOAT, ["batch", "words", word_dim]),
            helper.make_tensor_value_info("char_features", TensorProto.FLOAT, ["batch", "words", char_width(members)]),
            helper.make_tensor_value_info("casing_ids", TensorProto.INT32, ["batch", "words"]),
            helper.make_tensor_value_info("lengths", TensorProto.INT32, ["batch"]),
        ],
        outputs=[helper.make_tensor_value_info("emissions", TensorProto.FLOAT, ["batch", "words", num_tags])],
    )


def export_saved_model(directory: Path, tagger: Ensemble) -> None:
    """A SavedModel for TensorFlow Serving: padded ids in, emissions and the
    Viterbi tag ids out."""
    import tensorflow as tf

    from nerserve.tagger.training.network import INPUT_SIGNATURE, LENGTHS_SPEC

    members = tagger.members

    class Serving(tf.Module):
        def __init__(self):
            super().__init__()
            # The plain variables, tracked once (Keras' own export stores them
            # twice); the members share the word vectors.
            self.tagger_variables = list({id(v): v.value for m in members for v in m.weights}.values())

        @tf.function(input_signature=[*INPUT_SIGNATURE, LENGTHS_SPEC])
        def serve(self, word_ids, char_ids, casing_ids, lengths):
            emissions = tagger(word_ids, char_ids, casing_ids)
            return {"emissions": emissions, "tag_ids": tagger.decode(emissions, lengths)}

    module = Serving()
    target = directory / files.SAVED_MODEL
    shutil.rmtree(target, ignore_errors=True)
    tf.saved_model.save(module, str(target), signatures={"serving_default": module.serve})


def write_crf(directory: Path, tagger: Ensemble) -> None:
    transitions, start, end = (t.numpy() for t in tagger.mean_crf())
    np.savez(directory / files.CRF, transitions=transitions, start=start, end=end)


def check_parity(directory: Path, data_dir: Path) -> dict:
    """Tags and emissions of the ONNX runtime against TensorFlow, sentence by
    sentence, over the dev and test sets that data_dir has (a user's own data
    may have no test set)."""
    from nerserve.tagger.training.artifact import TensorFlowTagger

    reference, lean = TensorFlowTagger(directory), OnnxTagger(directory)
    report = {}
    for split in ("valid", "test"):
        path = data_dir / f"{split}.txt"
        if not path.exists():
            continue
        sentences = [s.words for s in read_conll(path)]
        largest = 0.0
        for indices in batches_by_length(sentences, 128):
            batch = [sentences[i] for i in indices]
            difference = np.abs(reference.emissions(batch) - lean.emissions(batch))
            for row, sentence in zip(difference, batch, strict=True):
                largest = max(largest, float(row[: len(sentence)].max()))
        same = sum(a == b for a, b in zip(reference.tag(sentences), lean.tag(sentences), strict=True))
        report[split] = {"sentences": len(sentences), "identical_tags": same, "max_abs_emission_diff": largest}
    return report


def parity_holds(report: dict) -> bool:
    return all(f["identical_tags"] == f["sentences"] and f["max_abs_emission_diff"] <= PARITY_TOLERANCE
               for f in report.values())


def write_meta(directory: Path) -> None:
    """meta.json, from the model's files: what /api/model reports. Rewritten by
    the export, by each evaluation (nerserve.tagger.training.evaluate), which adds scores,
    and by the calibration (nerserve.tagger.training.calibration)."""
    metrics = files.read_json(directory, files.METRICS)
    training = files.read_json(directory, files.TRAINING)
    # Networks trained before training.json recorded their data say nothing of it.
    data = [m["data"] for m in training.get("members", [training]) if "data" in m]
    # Only splits the networks never saw: dev is no measure of networks trained on
    # train + dev (metrics.json keeps its figures, with "held_out": false).
    held_out = {key: figures["f1"] for key, figures in metrics.items() if figures.get("held_out", True)}
    files.write_json(directory, files.META, {
        "name": NAME,
        "version": files.version(directory),
        "members": files.count_members(directory),
        "dev_f1": held_out.get("dev"),
        "test_f1": held_out.get("test"),
        # Every held-out split and case scored: "test", "test_lower", ... (nerserve.tagger.training.evaluate --case).
        "f1_by_split_and_case": held_out,
        "training_data": [d for i, d in enumerate(data) if d not in data[:i]] or None,
        "config": files.read_json(directory, files.CONFIG),
        "temperature": files.temperature(directory),
        # The networks for sentences all in lower or upper case, and for text
        # as people type it (nerserve.tagger.casing), where the model has them.
        "caseless": inner_model(directory / files.CASELESS),
        "typed": inner_model(directory / files.TYPED),
    })


def inner_model(directory: Path) -> dict | None:
    """What meta.json says of a model inside the model (caseless/, typed/), if it is there."""
    if not directory.is_dir():
        return None
    return {
        "members": files.count_members(directory),
        "temperature": files.temperature(directory),
        "training_data": files.read_json(directory, files.META).get("training_data"),
        "config": files.read_json(directory, files.CONFIG),
    }


def export(directory: Path, data_dir: Path | None = DEFAULT_DATA_DIR, saved_model: bool = True) -> dict | None:
    """Write the serving files into a trained model directory, in place; check
    parity on data_dir's dev and test sets unless data_dir is None, and raise
    ParityError if it fails (parity.json says where). Use `staged` to keep the
    previous export until the new one passed."""
    from nerserve.tagger.training.artifact import load
    from nerserve.tagger.training.network import Ensemble

    members = files.read_weights(directory)
    onnx.save(build_chars_onnx(members), directory / files.CHARS_ONNX)
    onnx.save(build_onnx(members), directory / files.ONNX)
    tagger = Ensemble(load(directory)[0])
    write_crf(directory, tagger)
    if saved_model:
        export_saved_model(directory, tagger)
    report = None
    if data_dir is not None:
        report = check_parity(directory, data_dir)
        files.write_json(directory, files.PARITY, report)
    write_meta(directory)
    if report is not None and not parity_holds(report):
        raise ParityError(f"the ONNX runtime differs from TensorFlow in {directory}: {report}")
    return report


@contextmanager
def staged(target: Path) -> Iterator[Path]:
    """A new directory beside target to build a model in. It takes target's
    place when the block ends without an error; after an error it is removed
    and target is left as it was."""
    staging, previous = target.with_name(target.name + ".new"), target.with_name(target.name + ".old")
    for leftover in (staging, previous):
        shutil.rmtree(leftover, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if target.exists():
        target.rename(previous)
    staging.rename(target)
    shutil.rmtree(previous, ignore_errors=True)


def print_parity(report: dict) -> None:
    for split, figures in report.items():
        print(f"{split}: {figures['identical_tags']}/{figures['sentences']} sentences with identical tags, "
              f"largest emission difference {figures['max_abs_emission_diff']:.2e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=files.COMMITTED_MODEL_DIR, help="trained model directory")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="dev and test sets for the parity check")
    args = parser.parse_args()
    try:
        with staged(args.model) as staging:
            # The previous export's SavedModel is rebuilt, not copied.
            shutil.copytree(args.model, staging, dirs_exist_ok=True, ignore=shutil.ignore_patterns(files.SAVED_MODEL))
            print_parity(export(staging, args.data_dir))
    except ParityError as error:
        sys.exit(f"parity check failed; {args.model} is left as it was.\n{error}")


if __name__ == "__main__":
    main()
