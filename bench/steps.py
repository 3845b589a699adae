"""What each speed step bought (issue 29 and after): the CoNLL-2003 test set tagged by the
pipeline of each commit in STEPS, then of HEAD, each with its own committed model.

    python bench/steps.py [--rounds 3] [--limit N] [--head-label HEAD] [--core 0]

Each step runs from a git worktree of its commit, .cache/steps/<sha> (made if
missing, detached), in a fresh process a step and round: this checkout's Python
with the worktree first on its path, pinned to one core (taskset -c 0),
process_pipeline("results/crf") of that commit's files. It warms up on the
first chunk, then tags every text (a test sentence's words joined by spaces)
through pipeline.tag in chunks of the commit's CHUNK_INPUTS (128), as tag.py
sends them: wall clock and CPU time. The tokens are counted once, by this
checkout's tokenizer, so that every step divides the same count. In the same
process: the p50 of SMALL_CALLS (200) calls pipeline.tag([text]) on one
15-word text (the first of the test set), what one small request costs
inside a worker. The rounds take the steps in turn (round 1 every step, then
round 2...); medians. HEAD is left out where it is a commit of STEPS.
Writes bench/results/steps.json.
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

# The steps in order, (label, commit): a new step is one line here.
STEPS = [
    ("before (the pipeline of issue 28's first half)", "61559b2"),
    ("character features once a distinct word, at its own width (chars.onnx)", "22aebcb"),
    ("413 from a lower bound of the tokens; JSON by orjson", "7478a00"),
    ("chars.onnx runs of words of near widths", "8719a23"),
    ("the typed network of issue 28: one more network on most sentences", "b88bf6c"),
    ("Viterbi without masks where no sentence is padded", "4781d95"),
    ("the typed network's entities scored only where it may add one", "1ed6a08"),
]
SMALL_CALLS = 200
MODEL_DIR = "results/crf"  # in each worktree: the commit's committed model
STEPS_DIR = Path(__file__).resolve().parent.parent / ".cache" / "steps"


# --- In the step's process (its worktree first on sys.path; nothing of this checkout imported) -----------------

def time_step(texts_file: Path) -> dict:
    """Tag the texts in chunks and one small text SMALL_CALLS times with this process's nerserve."""
    import nerserve
    from nerserve.corpus.tag import CHUNK_INPUTS
    from nerserve.tagger.pipeline import process_pipeline

    data = json.loads(texts_file.read_text())
    texts, small = data["texts"], [data["small_text"]]
    chunks = [texts[i:i + CHUNK_INPUTS] for i in range(0, len(texts), CHUNK_INPUTS)]
    pipeline = process_pipeline(MODEL_DIR)
    pipeline.tag(chunks[0])
    pipeline.tag(small)
    wall, cpu = time.perf_counter(), time.process_time()
    for chunk in chunks:
        pipeline.tag(chunk)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    small_ms = []
    for _ in range(SMALL_CALLS):
        started = time.perf_counter()
        pipeline.tag(small)
        small_ms.append((time.perf_counter() - started) * 1000)
    return {"tagging_s": wall, "tagging_cpu_s": cpu, "small_p50_ms": statistics.median(small_ms),
            "chunk_texts": CHUNK_INPUTS, "nerserve": str(Path(nerserve.__file__).parent)}


# --- In this process ------------------------------------------------------------------------------------------

def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def steps(root: Path, head_label: str) -> list[tuple[str, str]]:
    """STEPS with each commit as `git rev-parse --short` writes it, then HEAD unless it is one of them."""
    resolved = [(label, git("rev-parse", "--short", commit, cwd=root)) for label, commit in STEPS]
    head = git("rev-parse", "--short", "HEAD", cwd=root)
    return resolved + ([(head_label, head)] if head not in {sha for _, sha in resolved} else [])


def worktree(root: Path, sha: str) -> Path:
    """A detached worktree of `sha` under .cache/steps/, made if missing."""
    path = STEPS_DIR / sha
    if not (path / ".git").exists():
        git("worktree", "add", "--detach", str(path), sha, cwd=root)
    return path


def run_step(path: Path, texts_file: Path, core: int) -> dict:
    """time_step in a fresh process in the worktree `path`, on one core."""
    command = ["taskset", "-c", str(core), sys.executable, __file__, "--inside", str(texts_file)]
    result = subprocess.run(command, cwd=path, env={**os.environ, "PYTHONPATH": str(path)},
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.exit(f"{path}: {' '.join(command)} failed:\n{result.stderr[-3000:]}")
    run = json.loads(result.stdout.splitlines()[-1])
    if Path(run["nerserve"]) != path / "nerserve":
        sys.exit(f"{path}: the step imported {run['nerserve']}, not its worktree's nerserve")
    return run


def summarize(label: str, sha: str, runs: list[dict], tokens: int) -> dict:
    seconds = statistics.median(run["tagging_s"] for run in runs)
    cpu = statistics.median(run["tagging_cpu_s"] for run in runs)
    return {"label": label, "commit": sha, "tokens_per_s": tokens / seconds, "tokens_per_cpu_s": tokens / cpu,
            "small_p50_ms": statistics.median(run["small_p50_ms"] for run in runs), "runs": runs}


def print_table(rows: list[dict], tokens: int, rounds: int) -> None:
    print(f"{tokens:,} tokens; medians of {rounds} round{'s' if rounds > 1 else ''}; one core")
    print(f"{'step':<72} {'commit':<8} {'tokens/s':>9} {'tok/CPU-s':>9} {'ratio':>6} {'small p50 ms':>12}")
    for row in rows:
        print(f"{row['label'][:72]:<72} {row['commit']:<8} {row['tokens_per_s']:9,.0f} "
              f"{row['tokens_per_cpu_s']:9,.0f} {row['ratio']:6.2f} {row['small_p50_ms']:12.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds, each running every step once; medians")
    parser.add_argument("--limit", type=int, help="only the first N texts (a quick check)")
    parser.add_argument("--head-label", default="HEAD", help="the label of HEAD's step")
    parser.add_argument("--core", type=int, default=0, help="the core the steps run on (taskset -c)")
    parser.add_argument("--inside", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside:
        print(json.dumps(time_step(args.inside)))
        return
    # This checkout's modules only here: a step's process imports its worktree's nerserve instead.
    from common import DEFAULT_DATA_DIR, LOAD_WORDS, ROOT, machine, read_conll, write_json

    from nerserve.tagger.pipeline import read_documents

    about = machine()
    sentences = read_conll(DEFAULT_DATA_DIR / "test.txt")
    texts = [" ".join(s.words) for s in sentences][:args.limit]
    small_text = next(" ".join(s.words) for s in sentences if len(s.words) == LOAD_WORDS)
    tokens = sum(document.token_count for document in read_documents(texts))
    labelled = steps(ROOT, args.head_label)
    paths = {sha: worktree(ROOT, sha) for _, sha in labelled}
    runs: dict[str, list[dict]] = {sha: [] for sha in paths}
    with tempfile.TemporaryDirectory() as tmp:
        texts_file = Path(tmp) / "texts.json"
        texts_file.write_text(json.dumps({"texts": texts, "small_text": small_text}))
        for round_ in range(args.rounds):
            for sha, path in paths.items():
                runs[sha].append(run_step(path, texts_file, args.core))
                print(f"round {round_ + 1}: {sha}: {runs[sha][-1]['tagging_s']:.2f} s", file=sys.stderr)
    rows = [summarize(label, sha, runs[sha], tokens) for label, sha in labelled]
    for row in rows:
        row["ratio"] = row["tokens_per_s"] / rows[0]["tokens_per_s"]
        row["cpu_ratio"] = row["tokens_per_cpu_s"] / rows[0]["tokens_per_cpu_s"]
    print_table(rows, tokens, args.rounds)
    write_json("steps.json", {**about, "load_average_at_end": os.getloadavg(), "texts": len(texts),
                              "tokens": tokens, "rounds": args.rounds, "core": args.core,
                              "small_text_words": LOAD_WORDS, "small_calls": SMALL_CALLS, "steps": rows})


if __name__ == "__main__":
    main()
