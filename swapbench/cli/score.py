"""``swapbench score fid|kid|lpips|sifid|speed``: scores of any images, without training."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from swapbench.cli.common import MAX_GRID, MAX_RESOLUTION, DeviceOption, app, device_name, out
from swapbench.errors import UserError

score_app = typer.Typer(help="Scores for any images, without training: fid, kid, lpips, sifid.", no_args_is_help=True)
app.add_typer(score_app, name="score")

JsonOption = Annotated[bool, typer.Option("--json", help='Print {"metric": ..., "value": ..., "n": ...}.')]


def _print_score(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result))
    else:
        extra = ", ".join(f"{k} {v}" for k, v in result.items() if k not in ("metric", "value"))
        out.print(f"{result['metric']}: {result['value']:.6g} ({extra})")


@score_app.command("fid")
def score_fid(dir_a: Path, dir_b: Path, as_json: JsonOption = False, device: DeviceOption = "auto") -> None:
    """FID between two folders (clean-fid "clean" resize, TF FID Inception pool features)."""
    from swapbench.evaluation.metrics.standalone import fid_folders

    _print_score(fid_folders(dir_a, dir_b, device_name(device)), as_json)


@score_app.command("kid")
def score_kid(dir_a: Path, dir_b: Path, as_json: JsonOption = False, device: DeviceOption = "auto") -> None:
    """KID (mean and std over 100 subsets) between two folders."""
    from swapbench.evaluation.metrics.standalone import kid_folders

    _print_score(kid_folders(dir_a, dir_b, device_name(device)), as_json)


@score_app.command("lpips")
def score_lpips(img_a: Path, img_b: Path, net: Annotated[str, typer.Option(help="alex or vgg.")] = "alex",
                as_json: JsonOption = False, device: DeviceOption = "auto") -> None:
    """LPIPS between two image files of the same size."""
    from swapbench.evaluation.metrics.standalone import lpips_files

    if net not in ("alex", "vgg"):
        raise UserError(f"--net {net} is not an LPIPS network; use alex or vgg")
    _print_score(lpips_files(img_a, img_b, net, device_name(device)), as_json)


@score_app.command("sifid")
def score_sifid(dir_a: Path, dir_b: Path, as_json: JsonOption = False, device: DeviceOption = "auto") -> None:
    """Mean SIFID (Inception conv_4, own resolution) over files paired by name."""
    from swapbench.evaluation.metrics.standalone import sifid_folders

    _print_score(sifid_folders(dir_a, dir_b, device_name(device)), as_json)


@score_app.command("speed")
def score_speed(
    resolution: Annotated[int, typer.Option(min=16, max=MAX_RESOLUTION)] = 64,
    n: Annotated[int, typer.Option(min=2, max=MAX_GRID, help="Test images per pass.")] = 32,
    device: DeviceOption = "auto",
) -> None:
    """Seconds per image of each score network on this machine (best of 3 passes after a warm-up)."""
    from swapbench.evaluation.metrics.standalone import network_speed

    table = Table()
    for col in ("network", "seconds / image", "n", "threads"):
        table.add_column(col)
    for row in network_speed(resolution, n, device=device_name(device)):
        table.add_row(row["network"], f"{row['seconds_per_image']:.4f}", str(row["n"]), str(row["threads"]))
    out.print(table)
