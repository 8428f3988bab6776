"""``swapbench recipes list|show|validate|options``, ``registry``, ``model`` and ``import-official``:
what recipes, registered components and models there are, and what a recipe's networks cost."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from swapbench.cli.common import SetOption, app, out
from swapbench.errors import UserError

recipes_app = typer.Typer(help="List, show and validate recipes.", no_args_is_help=True)
app.add_typer(recipes_app, name="recipes")


@recipes_app.command("list")
def recipes_list() -> None:
    """List the recipes that ship with swapbench."""
    from swapbench.recipe import recipe_descriptions

    table = Table()
    table.add_column("name")
    table.add_column("description")
    for name, description in recipe_descriptions().items():
        table.add_row(name, description)
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
    """Every recipe setting with its default, the numbers it takes, its description and the components that read it."""
    from swapbench.recipe import allowed_numbers, describe_fields, read_by

    table = Table()
    for col in ("key", "default", "takes", "description", "read by"):
        table.add_column(col)
    for key, default, desc in describe_fields():
        table.add_row(key, json.dumps(default) if not isinstance(default, str) else default, allowed_numbers(key), desc,
                      read_by(key))
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
