"""Run records that outlive their MLflow store: ``swapbench archive`` writes, per experiment, one JSON
file with every run's id, name, status, times, swapbench tags, params, final metric values and (for a run
that trained) the training time summed over its parts (a resumed run's final values are its last part's), so the
run ids that results/ cites can still be looked up after the store they were logged to is gone.

Only what identifies and describes a run is kept: MLflow's own ``mlflow.*`` tags (the user name, the
launching script's path) are left out except the run name and the parent run, and params and tags go
through :func:`swapbench.trackers.redact`. Artifacts (checkpoints, images) are not copied. The files are
a record, not a store: tables and figures are still made from MLflow (``swapbench leaderboard``).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from swapbench.errors import UserError
from swapbench.outputs import replace_text

FORMAT = "swapbench.run_records/1"
KEPT_MLFLOW_TAGS = {"mlflow.runName": "run_name", "mlflow.parentRunId": "parent_run_id"}


def _utc(ms: int | None) -> str | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="seconds")


def run_record(run, totals: dict[str, float] | None = None) -> dict[str, Any]:
    """One MLflow run (``mlflow.entities.Run``) as a plain dict: identity, times, tags, params, metrics, and
    ``totals`` (:func:`swapbench.tracking.training_totals`: the sums over a resumed run's training parts, whose
    final metric values are the last part's) as ``training_totals`` where the run trained."""
    from swapbench.trackers import redact

    tags = run.data.tags
    record: dict[str, Any] = {"run_id": run.info.run_id}
    record.update({field: tags.get(tag) for tag, field in KEPT_MLFLOW_TAGS.items()})
    record.update(status=run.info.status, start_time=_utc(run.info.start_time), end_time=_utc(run.info.end_time),
                  tags=dict(sorted(redact({k: v for k, v in tags.items() if not k.startswith("mlflow.")}).items())),
                  params=dict(sorted(redact(run.data.params).items())),
                  metrics=dict(sorted(run.data.metrics.items())))
    if totals is not None:
        record["training_totals"] = totals
    return record


def merged(existing: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """``record`` (an experiment's runs in this store) with the runs of ``existing`` (the same experiment's
    file) that this store does not hold, oldest first: records of one experiment kept in several stores
    (machines, sessions) in one file. Where both hold a run, this store's record wins."""
    runs = {r["run_id"]: r for r in existing["runs"]}
    runs.update({r["run_id"]: r for r in record["runs"]})
    return {**record, "runs": sorted(runs.values(), key=lambda r: (r.get("start_time") or "", r["run_id"]))}


def archive(experiments: list[str] | None, out_dir: Path, uri: str | None = None, merge: bool = False) -> list[Path]:
    """Write ``<out_dir>/<experiment>.json`` (every active run of the experiment, oldest first) for each
    experiment (default: every experiment with runs); returns the files written. ``merge`` keeps the runs an
    existing file holds that this store does not (:func:`merged`); without it the file is replaced. An
    unknown experiment, one whose name cannot be a file name, or (``merge``) an existing file that is not a
    record file of that experiment is refused before anything is written."""
    import mlflow

    from swapbench.store import use_store
    from swapbench.tracking import every_run, tracking_uri, training_totals

    use_store(uri or tracking_uri(), create=False)
    client = mlflow.MlflowClient()
    if experiments:
        found = [client.get_experiment_by_name(name) for name in experiments]
        for name, experiment in zip(experiments, found):
            if experiment is None:
                raise UserError(f"no MLflow experiment '{name}' in {mlflow.get_tracking_uri()}; "
                                "`mlflow experiments search` lists them")
    else:
        found = sorted(client.search_experiments(), key=lambda e: e.name)
    for experiment in found:
        if not experiment.name or "/" in experiment.name or experiment.name.startswith("."):
            raise UserError(f"experiment name '{experiment.name}' cannot be used as a file name; archive it under "
                            "another experiment name or export it with the MLflow API")
    records = [{"format": FORMAT, "experiment": e.name,
                "runs": [run_record(r, training_totals(client, r.info.run_id)) for r in every_run(client, e.experiment_id)]}
               for e in found]  # every lookup first: no half-written folder
    if not experiments:
        records = [r for r in records if r["runs"]]  # by default only experiments that hold runs
    if not records:
        raise UserError("the MLflow store holds no runs to archive; run a recipe first or check MLFLOW_TRACKING_URI")
    if merge:
        for i, record in enumerate(records):
            path = out_dir / f"{record['experiment']}.json"
            if path.exists():
                existing = load_archive(path)
                if existing.get("experiment") != record["experiment"]:
                    raise UserError(f"{path} holds the records of experiment '{existing.get('experiment')}', not "
                                    f"'{record['experiment']}'; move it away or write without --merge")
                records[i] = merged(existing, record)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for record in records:
        path = out_dir / f"{record['experiment']}.json"
        replace_text(path, json.dumps(record, indent=1) + "\n")
        written.append(path)
    return written


def load_archive(path: Path) -> dict[str, Any]:
    """A file written by :func:`archive`, checked for its format."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read run records {path}: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UserError(f"{path} is not a swapbench run-record file (format {FORMAT}); write one with `swapbench archive`")
    return data


def find_run(run_id: str, folder: Path) -> dict[str, Any] | None:
    """The record of ``run_id`` (a full id or a prefix of at least 8 characters) in the archive files of
    ``folder``, with its experiment's name, or None."""
    if len(run_id) < 8:
        raise UserError(f"run id '{run_id}' is too short to look up; give at least 8 characters")
    matches = [{**run, "experiment": data["experiment"]}
               for data in map(load_archive, sorted(folder.glob("*.json"))) for run in data["runs"]
               if run["run_id"].startswith(run_id)]
    if len(matches) > 1:
        raise UserError(f"run id prefix '{run_id}' matches {len(matches)} archived runs; give more characters")
    return matches[0] if matches else None
