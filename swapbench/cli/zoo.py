"""``swapbench zoo list|publish|verify``: the reference models (see swapbench.zoo)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from swapbench.cli.common import app, err

zoo_app = typer.Typer(help="Reference models trained by swapbench, usable by name (zoo:NAME) wherever a command "
                      "takes a run id or checkpoint: evaluate, edit, project, figure swaps.", no_args_is_help=True)
app.add_typer(zoo_app, name="zoo")
out = Console(soft_wrap=True)  # paths and sizes stay on one line


def _minutes(value) -> str:
    return "-" if value is None else f"{value:g}"


@zoo_app.command("list")
def zoo_list() -> None:
    """Every zoo model: name, recipe, resolution, images trained, wall minutes, size, run, description."""
    from swapbench.errors import UserError
    from swapbench.zoo import models, zoo_dirs

    found = models()
    if not found:
        where = ", ".join(map(str, zoo_dirs())) or "no zoo folder"
        out.print(f"the zoo holds no model yet (looked in {where}); `swapbench zoo publish RUN_ID NAME` adds one")
        return
    damaged = []
    for name, model in found.items():  # a block per model: readable at any terminal width
        try:
            m = model.manifest()
        except UserError as exc:  # one damaged folder does not hide the others: listed, then an error line each
            damaged.append(exc)
            continue
        t = m.get("training", {})
        planned = "" if t.get("finished", True) else f" of {t.get('planned_images', 0):,} planned"
        out.print(f"{name}  {m.get('recipe', '-')}, {m.get('resolution', '-')} px, {t.get('images', 0):,} images{planned}, "
                  f"{_minutes(t.get('wall_minutes'))} wall minutes, {m['weights'].get('bytes', 0) / 2**20:.1f} MiB, "
                  f"run {m.get('run_id', '-')}", markup=False, highlight=False)
        out.print(f"    {m.get('description', '')}  ({model.folder})", markup=False, highlight=False)
    out.print("use one by name: e.g. `swapbench edit swap --run zoo:NAME ...`, `swapbench evaluate zoo:NAME`",
              markup=False, highlight=False)
    for exc in damaged:
        err.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
    if damaged:
        raise typer.Exit(2)


@zoo_app.command("publish")
def zoo_publish(
    run_id: Annotated[str, typer.Argument(help="MLflow run id of a FINISHED training run (or a stopped one, with --unfinished).")],
    name: Annotated[str, typer.Argument(help="Zoo name: lower-case letters, digits, '_', '-', '.'.")],
    description: Annotated[Optional[str], typer.Option(help="One line on the model (default: its recipe's description).")] = None,
    into: Annotated[Optional[Path], typer.Option(help="Zoo folder to write into (default: the checkout's zoo/).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace a zoo model of the same name.")] = False,
    unfinished: Annotated[bool, typer.Option("--unfinished", help="Publish the last checkpoint of a run stopped before its planned images (KILLED or FAILED); score that checkpoint first with `swapbench evaluate CHECKPOINT`. The manifest records the images trained and planned.")] = False,
) -> None:
    """Export a finished run's scored network (EMA when scored) with its recipe and a manifest (run id,
    commits, images, time, CPU, data, sha256, scores) as <zoo>/NAME/."""
    from swapbench.publish import publish

    folder, manifest = publish(run_id, name, description=description, into=into, force=force, unfinished=unfinished)
    from swapbench.zoo import ENV, zoo_dirs

    w = manifest["weights"]
    found = folder.parent.resolve() in [d.resolve() for d in zoo_dirs()]
    out.print(f"wrote {folder}/: {w['file']} ({w['bytes']:,} bytes, {w['parameters']:,} parameters of '{w['network']}'), "
              f"recipe.yaml, manifest.json; use it as zoo:{name}"
              + ("" if found else f" once {folder.parent} is in ${ENV}"))


@zoo_app.command("verify")
def zoo_verify(
    names: Annotated[Optional[list[str]], typer.Argument(help="Zoo names (default: every model).")] = None,
) -> None:
    """Check each zoo model's files and its weights' sha256 against its manifest; exits 1 if any fails."""
    from swapbench.errors import UserError
    from swapbench.zoo import get, models

    chosen = [get(n) for n in names] if names else list(models().values())
    failed = 0
    for model in chosen:
        try:
            path = model.verified_model_path()
            out.print(f"{model.name}: OK {path}")
        except UserError as exc:
            failed += 1
            Console(stderr=True, soft_wrap=True).print(f"{model.name}: FAIL {exc}", markup=False, highlight=False)
    if not chosen:
        out.print("the zoo holds no model yet")
    if failed:
        raise typer.Exit(1)
