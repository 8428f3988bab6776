"""What every command module of the CLI shares: the Typer app, its root options, the consoles, the
option types used by several commands, and small parsers of option text."""

from __future__ import annotations

import logging
import math
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from swapbench import __version__
from swapbench.errors import UserError

app = typer.Typer(
    name="swapbench",
    help="A research benchmark suite for the Swapping Autoencoder (Park et al., NeurIPS 2020).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

out = Console()
err = Console(stderr=True)

MULTI_PROCESS_COMMANDS = ("run", "train", "resume")  # the commands that train, and so can share the work

# Upper bounds of the count-like options: well past any sheet, figure or measurement a person uses, and refused
# up front in one line that names the limit (typer's range check) instead of running for hours or asking for
# terabytes. Memory for what stays within them is checked where the work is sized.
MAX_CELL = 1024  # px per image in a sheet or figure
MAX_ROWS = 256  # rows or frames of a sheet or figure: pairs, interpolation frames, PCA directions
MAX_GRID = 1_024  # images drawn into one picture, or held at once by a measurement
MAX_RESOLUTION = 2048  # image side, as data.resolution allows
MAX_IMAGES = 100_000  # images a command reads, writes or inverts
MAX_STEPS = 1_000_000  # optimisation steps
MAX_PROCESSES = 256  # worker processes or threads

SetOption = Annotated[
    Optional[list[str]],
    typer.Option("--set", "-s", help="Override a recipe setting, e.g. --set model.texture_dim=64 (repeatable)."),
]
DeviceOption = Annotated[str, typer.Option(help="auto, cpu or cuda.")]


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
    from swapbench.training.distributed import from_environment

    if from_environment().world_size > 1 and ctx.invoked_subcommand not in MULTI_PROCESS_COMMANDS:
        raise UserError(f"`swapbench {ctx.invoked_subcommand}` runs in one process; under torchrun start only "
                        f"{', '.join(MULTI_PROCESS_COMMANDS)}")


def scores_table(title: str, scores: dict[str, float]) -> Table:
    """The scores with their 95 % intervals (<score>_ci_low, <score>_ci_high) as one table."""
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


def csv(text: str | None) -> list[str] | None:
    """Split a comma-separated option; None or "" gives None."""
    return [x.strip() for x in text.split(",") if x.strip()] if text else None


def parse_floats(text: str, option: str) -> list[float]:
    """The comma-separated finite numbers of ``option``'s text."""
    try:
        values = [float(v) for v in csv(text) or []]
    except ValueError:
        raise UserError(f"{option} '{text}' must be comma-separated numbers, e.g. 0,0.5,1") from None
    if not values or not all(math.isfinite(v) for v in values):
        raise UserError(f"{option} '{text}' must be comma-separated finite numbers, e.g. 0,0.5,1")
    return values


RunsOption = Annotated[
    Optional[list[str]],
    typer.Option("--run", help="A trained run the methods use: an MLflow run id, a checkpoint or zoo:NAME (repeatable, "
                               "one run per model family; the family is read from the run's recipe)."),
]


def _replaced_by_run(ctx: typer.Context, param, value: str | None) -> None:
    if value:
        raise UserError(f"{'/'.join(param.opts)} was replaced by --run; pass --run REF (repeatable: one run per model family, "
                        f"read from each run's recipe)")


def replaced_run_option(*names: str):
    """A per-family run option that ``--run`` replaced (--sae-run, --sg2-run, ...): hidden, and a one-line error
    naming ``--run`` when given, for the scripts that still pass it."""
    return Annotated[Optional[str], typer.Option(*names, hidden=True, callback=_replaced_by_run)]


OldSaeRun = replaced_run_option("--sae-run")
OldSg2Run = replaced_run_option("--sg2-run")
OldEncoderRun = replaced_run_option("--encoder-run")


def trained_runs(refs: list[str] | None):
    """The runs of ``--run REF ...`` by model family (see :mod:`swapbench.experiments.runs`)."""
    from swapbench.experiments.runs import runs_by_family

    return runs_by_family(refs)


def device_name(name: str) -> str:
    from swapbench.runtime import resolve_device

    return str(resolve_device(name))
