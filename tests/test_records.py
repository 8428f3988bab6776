"""Every run README.md, docs/ or results/ cites has its record, and every interval it prints beside a cited run is
that run's (DESIGN.md, "A protocol that can tell"). Records: results/runs/*.json and the zoo manifests."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from swapbench.experiments.records import cited_ids, load_records, resolve

ROOT = Path(__file__).resolve().parents[1]
TEXT = (".md", ".json", ".csv", ".html", ".txt", ".tex")
# "value [low, high]" as tables and prose print a score with its 95 % interval
INTERVAL = re.compile(r"(?<![\w.])(-?\d+(?:\.\d+)?) \[(-?\d+(?:\.\d+)?), (-?\d+(?:\.\d+)?)\]")


def citing_files() -> list[Path]:
    results = [p for p in sorted((ROOT / "results").rglob("*"))
               if p.is_file() and p.suffix in TEXT and "runs" not in p.relative_to(ROOT / "results").parts]
    # docs/reference/settings.md is generated from the schema's defaults: an 8-digit default there is no run id
    docs = [p for p in sorted((ROOT / "docs").rglob("*.md")) if p != ROOT / "docs" / "reference" / "settings.md"]
    return [ROOT / "README.md", *docs, *results]


@pytest.fixture(scope="module")
def records():
    return load_records(ROOT / "results" / "runs", ROOT / "zoo")


def test_every_cited_run_id_has_a_record(records):
    missing = []
    for path in citing_files():
        full, short = cited_ids(path.read_text())
        missing += [f"{path.relative_to(ROOT)}: {rid}" for rid in sorted(full) if rid not in records]
        missing += [f"{path.relative_to(ROOT)}: {p}…" for p in sorted(short) if not resolve(p, records)]
    assert not missing, "cited run ids without a record in results/runs/ or zoo/*/manifest.json:\n" + "\n".join(missing)


def _decimals(text: str) -> int:
    return len(text.split(".")[1]) if "." in text else 0


def _close(printed: str, value: float) -> bool:
    """``value`` rounds to ``printed`` (half a unit of its last digit, with room for the float)."""
    return abs(float(printed) - value) <= 0.5 * 10 ** -_decimals(printed) + 1e-9


def _matches(triple: tuple[str, str, str], metrics: dict[str, float]) -> bool:
    value, low, high = triple
    for name, v in metrics.items():
        if name.endswith(("_ci_low", "_ci_high")) or not isinstance(v, (int, float)):
            continue
        lo, hi = metrics.get(f"{name}_ci_low"), metrics.get(f"{name}_ci_high")
        if lo is not None and hi is not None and _close(value, v) and _close(low, lo) and _close(high, hi):
            return True
    return False


def units(text: str) -> list[tuple[int, str]]:
    """(first line number, text) of each unit a number is read in: a table row, or a paragraph of prose (a
    cited run and its numbers may sit on different lines of one paragraph)."""
    out: list[tuple[int, str]] = []
    start, block = 0, []
    for number, line in enumerate([*text.splitlines(), ""], 1):
        row = line.lstrip().startswith("|")  # a table row, also one indented under a list item
        if row or not line.strip():
            if block:
                out.append((start, " ".join(block)))
                block = []
            if row:
                out.append((number, line))
        else:
            start = start if block else number
            block.append(line)
    return out


def aggregate(runs: list[dict]) -> dict[str, float]:
    """Several runs' scores as a leaderboard row shows them: the mean, and the union of their intervals."""
    names = set.intersection(*(set(r["metrics"]) for r in runs))
    out = {}
    for name in names:
        values = [r["metrics"][name] for r in runs]
        if all(isinstance(v, (int, float)) for v in values):
            reduce = min if name.endswith("_ci_low") else max if name.endswith("_ci_high") else None
            out[name] = reduce(values) if reduce else sum(values) / len(values)
    return out


def test_every_interval_printed_beside_a_cited_run_is_that_runs(records):
    """Each "value [low, high]" on a line that cites runs is a score of one of them, or (a row over seeds) their
    mean with the union of their intervals."""
    wrong = []
    for path in citing_files():
        if path.suffix != ".md":
            continue
        for number, line in units(path.read_text()):
            full, short = cited_ids(line)
            runs = [records[r] for r in full if r in records] + [records[r] for p in short for r in resolve(p, records)]
            if not runs:
                continue
            candidates = [run["metrics"] for run in runs] + ([aggregate(runs)] if len(runs) > 1 else [])
            for triple in INTERVAL.findall(line):
                if not any(_matches(triple, metrics) for metrics in candidates):
                    wrong.append(f"{path.relative_to(ROOT)}:{number}: {triple[0]} [{triple[1]}, {triple[2]}] is no score "
                                 f"of {', '.join(r['run_id'][:8] for r in runs)}")
    assert not wrong, "printed intervals that disagree with the cited runs' records:\n" + "\n".join(wrong)


def test_the_checks_catch_an_unbacked_id_and_a_wrong_number(records):
    rid = next(iter(records))
    run = records[rid]
    name = next(k for k in run["metrics"] if f"{k}_ci_low" in run["metrics"])
    m = run["metrics"]
    good = (f"{m[name]:.3f}", f"{m[name + '_ci_low']:.3f}", f"{m[name + '_ci_high']:.3f}")
    assert _matches(good, m)
    assert not _matches((f"{m[name] + 0.01:.3f}", good[1], good[2]), m)
    full, short = cited_ids(f"run `{'ab' * 16}` and `{rid[:8]}…`, example `0123456789abcdef0123456789abcdef`")
    assert full == {"ab" * 16} and short == {rid[:8]} and "ab" * 16 not in records
