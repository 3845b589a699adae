"""Figures that cannot go stale: each measured figure of README.md,
docs/heroku.md and MODEL.md is checked against the file it came from (the
model's metrics.json, calibration.json, parity.json and meta.json,
bench/results/*.json), and BENCHMARKS.md is what bench/report.py makes of
bench/results/ now.

MODEL.md's figures of runs whose networks are not committed (the experiments on
dev in "How it was chosen") are records of those runs, and have no file here to
be checked against."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from nerserve import settings
from nerserve.tagger import files
from tests.launcher import ROOT, slug_files

MODEL_DIR = files.COMMITTED_MODEL_DIR


def read(relative: str) -> dict:
    return json.loads((ROOT / relative).read_text())


def metrics(key: str) -> dict:
    return files.read_json(MODEL_DIR, files.METRICS)[key]


def end_to_end(model: str, split: str, case: str) -> float:
    """F1 from raw text (bench/case_scores.py)."""
    return read("bench/results/case_scores.json")["scores"][model][split][case]["f1"]


def accepted() -> list[dict]:
    """The maximal bodies that the service answered (bench/request_cost.py)."""
    return [row for row in read("bench/results/request_cost.json")["maximal"] if row["status"] == 200]


def two(value: float) -> str:
    return f"{value:.2f}"


def megabytes(size: int) -> str:
    return f"{size / 1e6:.0f}"


@dataclass(frozen=True)
class Figure:
    document: str
    pattern: str  # a regular expression whose groups are the figures; the text's line breaks read as spaces
    source: str  # where the figures come from, for the message
    expected: Callable[[], list[str]]  # the figures as the document should write them


def scores_row(case_key: str, label: str) -> Figure:
    m = metrics(case_key)
    types = [m["by_type"][t]["f1"] for t in ("LOC", "MISC", "ORG", "PER")]
    return Figure("MODEL.md", rf"\| {label} \| ([\d.]+) \| ([\d.]+) \| \*\*([\d.]+)\*\* \| ([\d.]+) \| ([\d.]+) \| "
                  r"([\d.]+) \| ([\d.]+) \|", f"results/crf/metrics.json {case_key}",
                  lambda: [two(m["precision"]), two(m["recall"]), two(m["f1"]), *map(two, types)])


def end_to_end_row(label: str, split: str, model: str, bold: bool = False) -> Figure:
    cell = r"\*\*([\d.]+)\*\*" if bold else r"([\d.]+)"
    return Figure("MODEL.md", rf"\| {label} \| {split} \| {cell} \| {cell} \| {cell} \| {cell} \|",
                  f"bench/results/case_scores.json {model} {split}",
                  lambda: [two(end_to_end(model, "valid" if split == "dev" else split, case))
                           for case in ("as_written", "lower", "upper", "chat")])


def parity_row(label: str, split: str) -> Figure:
    parity = files.read_json(MODEL_DIR, files.PARITY)[split]
    return Figure("MODEL.md", rf"\| {label} \| (\d+) / (\d+) \| ([\d.e-]+) \|", f"results/crf/parity.json {split}",
                  lambda: [str(parity["identical_tags"]), str(parity["sentences"]),
                           f"{parity['max_abs_emission_diff']:.1e}"])


def steps_head() -> dict:
    """The last step of bench/steps.py: the committed pipeline."""
    return read("bench/results/steps.json")["steps"][-1]


def corpus_ratio() -> float:
    results = read("bench/results/corpus_throughput.json")["results"]
    return results["tag.py --workers 1"]["tokens_per_s"] / results["spaCy n_process=1"]["tokens_per_s"]


def calibration_test() -> dict:
    return read("bench/results/calibration.json")["splits"]["test"]


def slug(key: str) -> str:
    return megabytes(read("bench/results/slug_size.json")[key])


def figures() -> list[Figure]:
    e2e = "committed"
    return [
        # README.md: few figures; the rest are in MODEL.md and BENCHMARKS.md.
        Figure("README.md", r"F1 of ([\d.]+) as written, ([\d.]+) lowercased and ([\d.]+) uppercased",
               "bench/results/case_scores.json committed test",
               lambda: [two(end_to_end(e2e, "test", case)) for case in ("as_written", "lower", "upper")]),
        # ... and, beside them, /api/model's: F1 on CoNLL's tokens.
        Figure("README.md", r"metrics\.json: ([\d.]+), ([\d.]+) lowercased, ([\d.]+) uppercased",
               "results/crf/metrics.json test, test_lower, test_upper",
               lambda: [two(metrics(key)["f1"]) for key in ("test", "test_lower", "test_upper")]),
        # docs/heroku.md: the slug's size (bench/slug_size.py).
        Figure("docs/heroku.md", r"Those files take (\d+) MB", "bench/results/slug_size.json app_files_bytes",
               lambda: [slug("app_files_bytes")]),
        Figure("docs/heroku.md",
               r"the packages `requirements.txt` installs (\d+) MB, and both compress to (\d+) MB",
               "bench/results/slug_size.json packages_bytes, compressed_bytes",
               lambda: [slug("packages_bytes"), slug("compressed_bytes")]),
        # docs/heroku.md: the worst case a request may cost (bench/request_cost.py).
        Figure("docs/heroku.md",
               r"The heaviest bodies within the limits take up to ([\d.]+) s on one core and make a "
               r"worker peak at (\d+) MB; two workers each tagging one at once take (\d+) MB",
               "bench/results/request_cost.json maximal, two_at_once",
               lambda: [f"{max(r['seconds'] for r in accepted()):.1f}", f"{max(r['peak_rss_mb'] for r in accepted()):.0f}",
                        f"{read('bench/results/request_cost.json')['two_at_once']['peak_pss_mb']:.0f}"]),
        # MODEL.md: the committed model's speed beside its scores (bench/steps.py, bench/corpus_throughput.py).
        Figure("MODEL.md", r"the committed model tags ([\d,]+) tokens/s of raw text .* one 15-word text takes "
               r"([\d.]+) ms inside a worker \(p50\); `tag.py --workers 1` is ([\d.]+)x spaCy",
               "bench/results/steps.json, bench/results/corpus_throughput.json",
               lambda: [f"{steps_head()['tokens_per_s']:,.0f}", f"{steps_head()['small_p50_ms']:.2f}",
                        f"{corpus_ratio():.2f}"]),
        # MODEL.md: the committed model's scores, on CoNLL's tokens and from raw text.
        scores_row("test", "as written"),
        scores_row("test_lower", "lowercased"),
        scores_row("test_upper", "uppercased"),
        end_to_end_row(r"previous model \(cased ensemble, train only\)", "dev", "previous"),
        end_to_end_row(r"spaCy `en_core_web_sm` 3\.8\.0", "dev", "spacy_sm"),
        end_to_end_row("previous model", "test", "previous"),
        end_to_end_row(r"\*\*committed model\*\*", "test", e2e, bold=True),
        end_to_end_row(r"spaCy `en_core_web_sm` 3\.8\.0", "test", "spacy_sm"),
        Figure("MODEL.md", r"test scored once: ([\d.]+) / ([\d.]+) / ([\d.]+) end to end, ([\d.]+) / ([\d.]+) / ([\d.]+) "
               r"on CoNLL's tokens", "bench/results/case_scores.json, results/crf/metrics.json",
               lambda: [two(end_to_end(e2e, "test", case)) for case in ("as_written", "lower", "upper")]
               + [two(metrics(key)["f1"]) for key in ("test", "test_lower", "test_upper")]),
        Figure("MODEL.md", r"about one entity of test's ([\d,]+)", "bench/results/calibration.json test gold_entities",
               lambda: [f"{calibration_test()['gold_entities']:,}"]),
        Figure("MODEL.md", r"together \(([\d,]+) sentences", "results/crf/meta.json training_data",
               lambda: [f"{files.read_json(MODEL_DIR, files.META)['training_data'][0]['sentences']:,}"]),
        # The entity scores: temperatures and calibration on test.
        Figure("MODEL.md", r"T = ([\d.]+) for the cased networks", "results/crf/calibration.json",
               lambda: [two(files.temperature(MODEL_DIR))]),
        Figure("MODEL.md", r"T = ([\d.]+) for the caseless ones", "results/crf/caseless/calibration.json",
               lambda: [two(files.temperature(MODEL_DIR / files.CASELESS))]),
        Figure("MODEL.md", r"four caseless dev runs \(T = ([\d.]+)\)", "results/crf/caseless/calibration.json",
               lambda: [two(files.temperature(MODEL_DIR / files.CASELESS))]),
        Figure("MODEL.md", r"ECE of ([\d.]+) over (\d+) bins, and entities scored 0\.9 or more are ([\d.]+)% right",
               "bench/results/calibration.json test",
               lambda: [f"{calibration_test()['ece']:.3f}", str(read("bench/results/calibration.json")["bins"]),
                        f"{calibration_test()['at_threshold']['0.9']['precision']:.1%}".rstrip("%")]),
        parity_row("dev", "valid"),
        parity_row("test", "test"),
    ]


@pytest.mark.parametrize("figure", figures(), ids=lambda f: f"{f.document}: {f.pattern[:40]}")
def test_the_figure_is_the_one_its_file_gives(figure: Figure):
    text = " ".join((ROOT / figure.document).read_text().split())
    found = [match.groups() for match in re.finditer(figure.pattern, text)]
    assert found, f"{figure.document} no longer has /{figure.pattern}/: reword this table entry with the text"
    expected = figure.expected()
    stale = [list(groups) for groups in found if list(groups) != expected]
    assert not stale, f"{figure.document}: stale figure {stale[0]} where {figure.source} gives {expected}"


def test_the_slug_figure_is_the_size_of_the_files_now():
    # bench/slug_size.py's JSON, which docs/heroku.md quotes, against what the files weigh now.
    measured = sum((ROOT / name).stat().st_size for name in slug_files())
    assert slug("app_files_bytes") == megabytes(measured), \
        "the slug's files changed size: rerun `python bench/slug_size.py` and `python bench/report.py`"


def test_the_readme_lists_every_variable_with_its_default():
    rows = dict(re.findall(r"^\| `([A-Z_]+)` \| `([^`]*)` \|", (ROOT / "README.md").read_text(), re.MULTILINE))
    assert rows == {variable.name: variable.default for variable in settings.VARIABLES}


def test_benchmarks_md_is_what_bench_report_makes_of_the_results():
    code = "import sys; sys.path[:0] = ['bench']; import report; sys.stdout.write(report.render())"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                            check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout == (ROOT / "BENCHMARKS.md").read_text(), \
        "BENCHMARKS.md differs from bench/report.py's output: edit the generator, then `python bench/report.py`"
