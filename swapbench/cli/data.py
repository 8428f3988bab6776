"""``swapbench datasets list|preview|export|bench`` and ``swapbench sync``: the registered datasets
(see :mod:`swapbench.data.samples`), and uploading what a run logged while its tracking server was away."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from swapbench.cli.common import MAX_GRID, MAX_IMAGES, MAX_PROCESSES, MAX_RESOLUTION, SetOption, app, out

datasets_app = typer.Typer(help="List, preview and benchmark the registered datasets.", no_args_is_help=True)
app.add_typer(datasets_app, name="datasets")


@datasets_app.command("list")
def datasets_list() -> None:
    """Each dataset with its description, splits and sizes."""
    from swapbench.data.samples import dataset_summaries

    table = Table()
    for col in ("name", "description", "splits and sizes"):
        table.add_column(col)
    for row in dataset_summaries():
        table.add_row(*row)
    out.print(table)


@datasets_app.command("preview")
def datasets_preview(
    name: Annotated[str, typer.Argument(help="Dataset name (see `swapbench datasets list`).")],
    out_path: Annotated[Path, typer.Option("--out", help="PNG file to write.")] = Path("grid.png"),
    split: Annotated[str, typer.Option(help="train or test.")] = "test",
    n: Annotated[int, typer.Option(min=1, max=MAX_GRID, help="Images in the grid.")] = 16,
    resolution: Annotated[int, typer.Option(min=16, max=MAX_RESOLUTION, help="Image side in pixels.")] = 64,
    set_: SetOption = None,
) -> None:
    """Write a grid of a dataset's first images; for `synthetic` also the layout x style ground truth."""
    from swapbench.data.samples import preview

    for line in preview(name, out_path, split, n, resolution, set_ or []):
        out.print(line)


@datasets_app.command("export")
def datasets_export(
    name: Annotated[str, typer.Argument(help="Dataset name (see `swapbench datasets list`).")],
    out_dir: Annotated[Path, typer.Option("--out-dir", help="Folder to write the PNG files into.")],
    split: Annotated[str, typer.Option(help="train or test.")] = "test",
    n: Annotated[int, typer.Option(min=1, max=MAX_IMAGES, help="Images to write (the split's first n).")] = 16,
    resolution: Annotated[int, typer.Option(min=16, max=MAX_RESOLUTION, help="Image side in pixels.")] = 64,
    set_: SetOption = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite PNG files of the same names in --out-dir.")] = False,
) -> None:
    """Write a dataset's first images as lossless PNG files (<split>_0000.png, ...): inputs for
    `swapbench edit` and `swapbench score`."""
    from swapbench.data.samples import export_png

    count = export_png(name, out_dir, split, n, resolution, set_ or [], force=force)
    out.print(f"wrote {count} {split} images of '{name}' at {resolution} px to {out_dir}/")


@datasets_app.command("bench")
def datasets_bench(
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    resolution: Annotated[int, typer.Option(min=16, max=MAX_RESOLUTION)] = 64,
    n: Annotated[int, typer.Option(min=1, max=10 * MAX_IMAGES, help="Images to load (after one warm-up batch).")] = 2048,
    batch: Annotated[int, typer.Option(min=1, max=MAX_IMAGES)] = 256,
    workers: Annotated[int, typer.Option(min=0, max=MAX_PROCESSES, help="DataLoader worker processes.")] = 0,
    set_: SetOption = None,
) -> None:
    """Measure how many training images per second a dataset delivers through a DataLoader."""
    from swapbench.data.samples import loader_speed

    seen, seconds = loader_speed(name, resolution, n, batch, workers, set_ or [])
    out.print(f"{name} train at {resolution} px: {seen / seconds:.0f} images/s "
              f"({seen} images in {seconds:.2f} s, batch {batch}, {workers} workers)")


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
