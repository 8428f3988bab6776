"""``swapbench edit swap|grid|interpolate|region|texture-pca|attribute|translate``: editing image files with
a trained swap_ae run (the sheets are made in :mod:`swapbench.editing.sheets`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from swapbench.cli.common import MAX_CELL, MAX_IMAGES, MAX_ROWS, DeviceOption, app, out, parse_floats

edit_app = typer.Typer(help="Edit image files with a trained swap_ae run: texture swap, interpolation, region and "
                       "global edits, domain translation. Each writes a labelled PNG and a .json of its inputs.",
                       no_args_is_help=True)
app.add_typer(edit_app, name="edit")

EditRun = Annotated[str, typer.Option("--run", help="MLflow run id, checkpoint .safetensors, or zoo:NAME (`swapbench zoo list`) of a trained swap_ae recipe.")]
EditOut = Annotated[Path, typer.Option("--out", help="PNG file to write (a .json naming the inputs goes beside it).")]
EditCell = Annotated[int, typer.Option(min=16, max=MAX_CELL, help="Pixels per image in the sheet.")]
Files = Annotated[list[str], typer.Option(help="Image file or folder of images (repeatable).")]


def _edit_model(run: str, device: str, out_file: Path):
    """The run's model, after checking the output path (so a bad --out fails before any work)."""
    from swapbench.editing.sheets import load_edit_model
    from swapbench.experiments.figures import png_output_path

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
    from swapbench.editing.sheets import swap_sheet

    _wrote(swap_sheet(_edit_model(run, device, out_file), structure, texture, parse_floats(alpha, "--alpha"), out_file, cell))


@edit_app.command("grid")
def edit_grid(run: EditRun, structure: Files, texture: Files, out_file: EditOut, cell: EditCell = 128,
              device: DeviceOption = "auto") -> None:
    """Every --structure image (rows) with every --texture image (columns): the paper's swap grid."""
    from swapbench.editing.sheets import grid_sheet

    _wrote(grid_sheet(_edit_model(run, device, out_file), structure, texture, out_file, cell))


@edit_app.command("interpolate")
def edit_interpolate(
    run: EditRun, a: Files, b: Files, out_file: EditOut,
    steps: Annotated[int, typer.Option(max=MAX_ROWS, help="Frames from A to B, both ends included.")] = 5,
    part: Annotated[str, typer.Option(help="Which code moves: both, structure or texture.")] = "both",
    cell: EditCell = 128, device: DeviceOption = "auto",
) -> None:
    """From A to B in the structure code, the texture code, or both."""
    from swapbench.editing.sheets import interpolate_sheet

    _wrote(interpolate_sheet(_edit_model(run, device, out_file), a, b, steps, part, out_file, cell))


@edit_app.command("region")
def edit_region(
    run: EditRun, target: Files, source: Files, out_file: EditOut,
    box: Annotated[Optional[str], typer.Option(help="Region as left,top,right,bottom fractions of the side, e.g. 0,0,0.5,1.")] = None,
    mask: Annotated[Optional[str], typer.Option(help="Region as an image file: white is edited, black kept.")] = None,
    cell: EditCell = 128, device: DeviceOption = "auto",
) -> None:
    """Local edit: inside the region, the structure code of --source replaces the target's; the texture stays."""
    from swapbench.editing.sheets import region_sheet

    _wrote(region_sheet(_edit_model(run, device, out_file), target, source, out_file, box=box, mask_file=mask, cell=cell))


@edit_app.command("texture-pca")
def edit_texture_pca(
    run: EditRun, image: Files, out_file: EditOut,
    components: Annotated[int, typer.Option(min=1, max=MAX_ROWS, help="Principal directions shown, one row block each.")] = 3,
    strengths: Annotated[str, typer.Option(help="Comma-separated steps along each direction, in standard deviations.")] = "-2,-1,0,1,2",
    n: Annotated[int, typer.Option("--n", min=2, max=MAX_IMAGES, help="Training crops of the run whose texture codes the directions are fitted to.")] = 512,
    fit: Annotated[Optional[list[str]], typer.Option(help="Fit the directions to these images instead (file or folder, repeatable).")] = None,
    cell: EditCell = 128, device: DeviceOption = "auto",
) -> None:
    """Global edit: move the texture code along the principal directions of the texture codes of
    the run's training crops (or of --fit images)."""
    from swapbench.editing.sheets import pca_sheet

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
    from swapbench.editing.sheets import attribute_sheet

    _wrote(attribute_sheet(_edit_model(run, device, out_file), image, with_, without, parse_floats(strengths, "--strengths"), out_file, cell))


@edit_app.command("translate")
def edit_translate(
    run: EditRun, image: Files, domain: Files, out_file: EditOut,
    cell: EditCell = 128, device: DeviceOption = "auto",
) -> None:
    """Each image's structure with the mean texture code of the --domain images."""
    from swapbench.editing.sheets import translate_sheet

    _wrote(translate_sheet(_edit_model(run, device, out_file), image, domain, out_file, cell))
