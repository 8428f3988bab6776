"""The committed run records as one table: results/runs/*.json (``swapbench archive write``) and the zoo
manifests (each records its own run's id, commits and final scores).

What results/ cites must be backed by these records (tests/test_records.py), and results/claims.md is
made from them alone (swapbench.experiments.claims), so both work on a fresh clone without the MLflow
store the runs were logged to.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pandas as pd

from swapbench.experiments.archive import load_archive
from swapbench.recipe import migrate_flat

RUNS_DIR = Path("results/runs")
ZOO_DIR = Path("zoo")

# a run id as results/ cites it: 32 hex digits, or (in prose and tables) its first 8 in backticks, maybe with "…"
FULL_ID = re.compile(r"(?<![0-9a-fA-F])[0-9a-f]{32}(?![0-9a-fA-F])")
SHORT_ID = re.compile(r"`([0-9a-f]{8})(?:…|\.\.\.)?`")
# ids that are examples, not citations (the table of bad inputs, docs/reference/bad-inputs.md, names a run that does not exist)
EXAMPLE_IDS = frozenset({"0123456789abcdef0123456789abcdef"})


def _zoo_record(manifest: Path) -> dict[str, Any]:
    m = json.loads(manifest.read_text())
    data = m.get("data") if isinstance(m.get("data"), dict) else {}
    return {
        "run_id": m["run_id"], "experiment": f"zoo:{m['name']}", "run_name": m["name"], "status": "FINISHED",
        "source": str(manifest),
        "tags": {"swapbench.recipe": m.get("recipe"), "swapbench.variant": f"zoo:{m['name']}",
                 "swapbench.git_commit": m.get("git_commit"), "swapbench.score_git_commit": m.get("score_git_commit"),
                 "swapbench.recipe_hash": m.get("recipe_hash")},
        "params": {"data.dataset": m.get("dataset") or data.get("dataset"),
                   "data.resolution": str(m.get("resolution") or data.get("resolution"))},
        "metrics": dict(m.get("scores") or {}),
    }


def load_records(runs_dir: Path = RUNS_DIR, zoo_dir: Path = ZOO_DIR) -> dict[str, dict[str, Any]]:
    """run id -> record (run_id, experiment, tags, params, metrics, source file) of every archived run and
    every zoo model's run. An archived record wins over a zoo manifest of the same run."""
    records: dict[str, dict[str, Any]] = {}
    for manifest in sorted(zoo_dir.glob("*/manifest.json")) if zoo_dir.is_dir() else []:
        rec = _zoo_record(manifest)
        records[rec["run_id"]] = rec
    for path in sorted(runs_dir.glob("*.json")) if runs_dir.is_dir() else []:
        data = load_archive(path)
        for run in data["runs"]:
            records[run["run_id"]] = {**run, "experiment": data["experiment"], "source": str(path)}
    return records


def cited_ids(text: str) -> tuple[set[str], set[str]]:
    """(full run ids, 8-digit run id prefixes) that ``text`` cites; example ids are left out."""
    full = set(FULL_ID.findall(text)) - EXAMPLE_IDS
    return full, set(SHORT_ID.findall(text))


def resolve(prefix: str, records: dict[str, dict[str, Any]]) -> list[str]:
    """The record ids that start with ``prefix``."""
    return [rid for rid in records if rid.startswith(prefix)]


def records_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Records shaped as :func:`swapbench.experiments.leaderboard.load_runs` returns MLflow runs
    (run_id, status, start_time, params.*, tags.*, metrics.*), FINISHED ones only."""
    rows = []
    for rec in records:
        if rec.get("status") != "FINISHED":
            continue
        row: dict[str, Any] = {"run_id": rec["run_id"], "status": rec.get("status"), "start_time": rec.get("start_time"),
                               "experiment": rec.get("experiment")}
        row.update({f"params.{k}": v for k, v in migrate_flat(rec.get("params") or {}).items()})  # today's keys
        row.update({f"tags.{k}": v for k, v in (rec.get("tags") or {}).items()})
        row.update({f"metrics.{k}": v for k, v in (rec.get("metrics") or {}).items()})
        rows.append(row)
    return pd.DataFrame(rows)
