"""``swapbench bench``: one table of what swapbench costs on this machine, every cost next to a limit
measured in the same process at the same thread count.

Sections (``--only`` picks some): ``peaks`` (the machine's FLOP/s limits, always measured), ``train``
(:mod:`.training`, with the CUDA row), ``data`` (:mod:`.loading`), ``score`` (:mod:`.scoring`),
``embed`` (:mod:`.embedding`) and ``scaling`` (torchrun rows, :mod:`.training`). The table is printed, written as
JSON (:data:`SCHEMA`) and logged to the MLflow experiment ``bench`` (params: the header and the
settings; metrics: ``<section>.<row>.<column>``; artifacts: ``bench.json`` and ``bench.md``).
"""

from __future__ import annotations

import json
import re
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from swapbench.bench.embedding import EMBED_COLUMNS
from swapbench.bench.loading import DATA_COLUMNS
from swapbench.bench.scoring import SCORE_COLUMNS
from swapbench.bench.training import PROFILE_COLUMNS, SCALING_COLUMNS, TRAIN_COLUMNS
from swapbench.errors import UserError
from swapbench.experiments.runs import TrainedRun
from swapbench.recipe import BENCH_QUICK, BenchConfig

SCHEMA = "swapbench.bench/1"
EXPERIMENT = "bench"
PEAK_COLUMNS = ("probe", "device", "gflops", "what")
COLUMNS: dict[str, tuple[str, ...]] = {"peaks": PEAK_COLUMNS, "train": TRAIN_COLUMNS, "data": DATA_COLUMNS,
                                       "score": SCORE_COLUMNS, "embed": EMBED_COLUMNS, "scaling": SCALING_COLUMNS,
                                       "profile": PROFILE_COLUMNS}
SECTIONS = ("train", "embed", "score", "data", "scaling", "profile")  # what --only chooses from; peaks always run
DEVICE_SECTIONS = ("train", "score")  # what --device cuda measures on the GPU (the others are CPU work)
ROW_KEYS = {"peaks": "probe", "train": ("recipe", "device"), "data": ("dataset", "recipe"), "score": "score",
            "embed": "method", "scaling": "processes", "profile": ("recipe", "rank")}
TITLES = {
    "peaks": "Machine limits: fp32 FLOP/s of a 3x3 conv (oneDNN; batch 8, 128->128, 64x64) and a 2048 matmul",
    "train": "Training: full steps (both D updates, G update, lazy R1 over its interval, EMA) vs the limits",
    "data": "Data: each dataset's training loader vs the training rate (share_of_step target <= 0.1)",
    "score": "Scoring: end to end through the evaluator vs the bare forward passes of the same networks",
    "embed": "Embedding: seconds per image at batch 1 (swapbench project's timing) and the FLOP ratio",
    "scaling": "Scaling: training under torchrun (gloo), 1 and 2 processes sharing the same cores",
    "profile": "Profile: where a training step's time goes (torch.profiler, operators by self CPU time)",
}


@dataclass
class BenchReport:
    header: dict[str, Any]
    settings: dict[str, Any]
    command: str
    sections: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # wall time of each section, measuring included
    run_id: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BenchReport:
        """The report a bench JSON file holds (the inverse of :meth:`to_json`)."""
        sections = data["sections"]
        return cls(data["header"], data["settings"], data["command"],
                   {name: s["rows"] for name, s in sections.items()},
                   {name: s["note"] for name, s in sections.items() if s.get("note")},
                   {name: s["seconds"] for name, s in sections.items() if s.get("seconds") is not None},
                   data.get("mlflow_run_id"))

    def to_json(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "command": self.command, "header": self.header, "settings": self.settings,
                "sections": {name: {"columns": list(COLUMNS[name]), "rows": rows, "note": self.notes.get(name, ""),
                                    "seconds": self.seconds.get(name)}
                             for name, rows in self.sections.items()},
                "mlflow_run_id": self.run_id}


def bench_settings(quick: bool, recipes: Sequence[str] | None = None, score_recipe: str | None = None) -> BenchConfig:
    values = dict(BENCH_QUICK) if quick else {}
    if recipes:
        values["recipes"] = list(recipes)
    if score_recipe:
        values["score_recipe"] = score_recipe
    return BenchConfig(**values)


def parse_only(text: str | None) -> list[str]:
    if not text:
        return list(SECTIONS)
    chosen = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown or not chosen:
        raise UserError(f"--only {text}: unknown section(s) {', '.join(unknown) or '(none given)'}; choose from "
                        f"{','.join(SECTIONS)}")
    return chosen


def check_inputs(settings: BenchConfig, json_path: Path | None) -> dict[str, Any]:
    """Every recipe and output path checked before any measuring; the loaded recipes by name."""
    from swapbench.recipe import load_recipe

    if json_path is not None and not json_path.parent.is_dir():
        raise UserError(f"--json {json_path}: folder {json_path.parent} does not exist; create it or write elsewhere")
    names = [*settings.recipes, settings.score_recipe, settings.scaling_recipe, settings.cuda_recipe]
    return {name: load_recipe(name) for name in dict.fromkeys(names)}


def check_device(name: str, only: Sequence[str]) -> torch.device:
    """The device the train and score sections run on: 'cpu', or 'cuda' when one is present."""
    if name not in ("cpu", "cuda"):
        raise UserError(f"--device {name}: choose cpu or cuda")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise UserError("--device cuda: torch sees no CUDA device here; run on a GPU machine or use --device cpu")
        cpu_only = [s for s in only if s not in DEVICE_SECTIONS]
        if cpu_only:
            raise UserError(f"--device cuda measures {','.join(DEVICE_SECTIONS)} only; add --only train,score "
                            f"(not {','.join(cpu_only)})")
    return torch.device(name)


def run_bench(only: Sequence[str], settings: BenchConfig, *, quick: bool = False, threads: int | None = None,
              json_path: Path | None = None, runs: dict[str, TrainedRun] | None = None,
              command: str = "swapbench bench", device: str = "cpu", log_run: bool = True, log=print) -> BenchReport:
    """Measure the chosen sections on ``device``, log them to MLflow (unless ``log_run`` is false),
    write ``json_path``; the report. ``runs``: trained runs by model family (``--run``), for the embedding
    rows of their families' methods and, when there is one, as the model scored."""
    from swapbench.bench import machine

    target = check_device(device, only)
    check_inputs(settings, json_path)
    runs = runs or {}
    if "score" in only and len(runs) > 1:
        raise UserError(f"section score measures one model and {len(runs)} runs were given "
                        f"({', '.join(r.ref for r in runs.values())}); measure score apart: --only score --run REF")
    if threads is not None:
        torch.set_num_threads(threads)
    threads = torch.get_num_threads()
    report = BenchReport(machine.header(threads, quick), settings.model_dump(mode="json"), command)

    sections = {"peaks": _peaks, "train": _train, "data": _data, "score": _score, "embed": _embed, "scaling": _scaling,
                "profile": _profile}
    context = {"settings": settings, "threads": threads, "only": only, "runs": runs, "device": target}
    for name, measure in sections.items():
        if name != "peaks" and name not in only:
            continue
        log(f"measuring {name} ...")
        start = time.perf_counter()
        rows, note = measure(report, **context)
        report.sections[name], report.seconds[name] = rows, time.perf_counter() - start
        if note:
            report.notes[name] = note
    torch.set_num_threads(threads)
    if log_run:
        log_to_mlflow(report)
    if json_path is not None:
        write_json(report, json_path)
    return report


def _peaks(report: BenchReport, settings: BenchConfig, device: torch.device, **_) -> tuple[list[dict], str]:
    from swapbench.bench import machine

    peaks = machine.peak_flops(device, settings.peak_repeats)
    side = machine.MATMUL_SIDE
    return [{"probe": "conv3x3", "device": device.type, "gflops": peaks["conv_gflops"], "what": str(machine.CONV_PROBE)},
            {"probe": "matmul", "device": device.type, "gflops": peaks["matmul_gflops"],
             "what": f"{side}x{side} @ {side}x{side}"}], "each training row measures its own limits again just before it"


def _train(report: BenchReport, settings: BenchConfig, threads: int, device: torch.device, **_) -> tuple[list[dict], str]:
    from swapbench.bench.training import cuda_row, train_row

    rows = [train_row(name, settings, device, threads) for name in settings.recipes]
    if device.type == "cpu":
        rows.append(cuda_row(settings, threads))
    return rows, ("FLOPs by torch's FlopCounterMode formulas (convolutions and matrix products, forward and "
                  "backward; element-wise work not counted) over exactly the timed steps; memory: " + _memory_note(rows))


def _data(report: BenchReport, settings: BenchConfig, threads: int, only: Sequence[str], **_) -> tuple[list[dict], str]:
    from swapbench.bench.loading import data_rows
    from swapbench.bench.training import training_recipe

    recipes = {n: training_recipe(n, settings, torch.device("cpu"), threads) for n in settings.recipes}
    rows = data_rows(settings, report.sections.get("train", []), recipes)
    return rows, "" if "train" in only else "train was not measured in this call: no training rate to compare with"


def _score(report: BenchReport, settings: BenchConfig, threads: int, runs: dict[str, TrainedRun], device: torch.device,
           **_) -> tuple[list[dict], str]:
    from swapbench.bench.scoring import score_rows

    rows, described = score_rows(settings, device, threads, next(iter(runs.values()), None))
    return rows, f"model: {described}"


def _embed(report: BenchReport, settings: BenchConfig, threads: int, runs: dict[str, TrainedRun],
           **_) -> tuple[list[dict], str]:
    from swapbench.bench.embedding import embed_rows

    return embed_rows(settings, torch.device("cpu"), threads, runs), ""


def _scaling(report: BenchReport, settings: BenchConfig, threads: int, **_) -> tuple[list[dict], str]:
    from swapbench.bench.training import missing_row, scaling_rows

    if settings.scaling_processes:
        return scaling_rows(settings, threads), ""
    return [missing_row(SCALING_COLUMNS, "not run: scaling_processes is empty (--quick)",
                        recipe=settings.scaling_recipe, processes=n) for n in (1, 2)], ""


def _profile(report: BenchReport, settings: BenchConfig, threads: int, **_) -> tuple[list[dict], str]:
    from swapbench.bench.training import profile_rows

    rows = [row for name in settings.recipes for row in profile_rows(name, settings, threads)]
    return rows, (f"{settings.profile_steps} steps per recipe after the warm-up, R1 steps included as they fall; "
                  "self time: in the operator itself, not in the operators it calls; share: of the profiled steps' "
                  "wall time (the profiler's own overhead included, so shares are a guide, not a measurement)")


def _memory_note(rows: list[dict]) -> str:
    from swapbench.bench.machine import PeakMemory

    devices = sorted({r["device"].split(":")[0] for r in rows if r.get("peak_memory_mib") is not None})
    return "; ".join(f"{d}: {PeakMemory.describe(d)}" for d in devices) or "not measured"


def write_json(report: BenchReport, path: Path) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(report.to_json(), indent=1))
    tmp.replace(path)


def metric_key(*parts: Any) -> str:
    """An MLflow metric name: letters, digits and _ - . / only."""
    return ".".join(re.sub(r"[^A-Za-z0-9_\-/]+", "_", str(p)).strip("_") for p in parts)


def _row_name(section: str, row: dict) -> str:
    key = ROW_KEYS[section]
    return "/".join(str(row.get(k)) for k in key) if isinstance(key, tuple) else str(row.get(key))


def record(path: Path) -> BenchReport:
    """Log a bench JSON measured elsewhere with ``--no-log`` (a machine without MLflow, such as a lent GPU
    machine) to this MLflow store, unchanged; the report with its new run id."""
    try:
        data = json.loads(path.read_text())
        if data.get("schema") != SCHEMA:
            raise ValueError(f"schema {data.get('schema')!r}, expected {SCHEMA!r}")
        report = BenchReport.from_json(data)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"--record {path}: not a bench JSON written by `swapbench bench --json` ({exc}); "
                        "point it at such a file") from None
    if report.run_id:
        raise UserError(f"--record {path}: this table is already logged (MLflow run {report.run_id}); record only "
                        "tables measured with --no-log")
    log_to_mlflow(report, recorded_from=path.name)
    return report


def log_to_mlflow(report: BenchReport, recorded_from: str | None = None) -> None:
    from swapbench.tracking import open_tool_run

    tags = {"swapbench.tool": "bench", "swapbench.bench.sections": ",".join(report.sections),
            "swapbench.bench.quick": str(report.header["quick"])}
    if recorded_from:  # measured on another machine, logged here afterwards
        tags["swapbench.bench.recorded_from"] = recorded_from
    with open_tool_run(EXPERIMENT, tags) as tracker:
        report.run_id = tracker.run_id
        tracker.log_params({**{f"header.{k}": v for k, v in report.header.items()},
                            **{f"bench.{k}": v for k, v in report.settings.items()}, "command": report.command})
        metrics = {}
        for section, rows in report.sections.items():
            for row in rows:
                for column, value in row.items():
                    if isinstance(value, (int, float)) and not isinstance(value, bool) and column not in ROW_KEYS[section]:
                        metrics[metric_key(section, _row_name(section, row), column)] = float(value)
        tracker.log_metrics(metrics)
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "bench.json").write_text(json.dumps(report.to_json(), indent=1))
            (Path(tmp) / "bench.md").write_text(render_markdown(report))
            for name in ("bench.json", "bench.md"):
                tracker.log_artifact(Path(tmp) / name)


def format_value(value: Any, column: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if column.startswith("of_") or column == "share_of_step":
            return f"{100 * value:.1f} %"
        if column.endswith(("_vs_sae", "vs_bare", "vs_one_process")):
            return f"{value:,.0f}x" if value >= 100 else f"{value:.3g}x"
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    return str(value)


def header_lines(header: dict[str, Any]) -> list[str]:
    vec = "AVX-512" if header["avx512"] else ("AVX2 (no AVX-512)" if header["avx2"] else "neither AVX2 nor AVX-512")
    if not header.get("cpu_flags_known"):
        vec = "CPU flags unknown"
    return [f"CPU: {header['cpu_model']} ({header['cpu_count']} cores visible; {vec})",
            f"torch {header['torch']}, {header['threads']} threads, oneDNN {'on' if header['mkldnn'] else 'off'}, "
            f"CUDA: {header['cuda_device'] or 'none'}",
            f"swapbench {header['swapbench']} at commit {header['git_commit']}, {header['date']}"
            + (" (--quick: tiny sizes, not for comparison)" if header["quick"] else "")]


def render_markdown(report: BenchReport) -> str:
    lines = [f"`{report.command}`", "", *[f"- {line}" for line in header_lines(report.header)], ""]
    for name, rows in report.sections.items():
        cols = COLUMNS[name]
        lines += [f"### {TITLES[name]}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(format_value(r.get(c), c) for c in cols) + " |" for r in rows]
        if report.notes.get(name):
            lines += ["", report.notes[name]]
        lines += ["", f"({report.seconds.get(name, 0):.0f} s for this section)", ""]
    return "\n".join(lines)

