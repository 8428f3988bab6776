"""``swapbench swaps`` (every swap method on the same test pairs, scored and timed) and ``swapbench swap``
(one structure image and one texture image through one method)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from swapbench.cli.common import DeviceOption, OldSg2Run, RunsOption, app, csv, out, replaced_run_option, trained_runs
from swapbench.errors import UserError

OldSaeModel = replaced_run_option("--sae-run", "--sae-model")
Settings = Annotated[Optional[list[str]], typer.Option("--set", help="A method's setting, SECTION.KEY=VALUE (e.g. "
                                                       "gatys.steps=100, strotss.steps_per_scale=50, inversion.crossover=4); "
                                                       "repeat for several.")]


@app.command()
def swaps(
    methods: Annotated[str, typer.Option(help="Comma-separated swap methods (`swapbench registry swap_method`).")] = "sae,gatys,strotss",
    n: Annotated[int, typer.Option("--n", min=4, help="Test pairs to swap (drawn from as many test images), the same for every method.")] = 8,
    run: RunsOption = None,
    recipe: Annotated[Optional[str], typer.Option(help="Recipe whose test split is swapped, when no method uses a trained run.")] = None,
    reference: Annotated[Optional[int], typer.Option(min=6, help="Held-out reference images for realism (default: the recipe's eval.reference_images).")] = None,
    settings: Settings = None,
    out_file: Annotated[Optional[Path], typer.Option("--out", help="Also write the table (.md), the figure (.png) and its provenance (.json) here (a path without suffix).")] = None,
    device: DeviceOption = "auto",
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
    sae_run: OldSaeModel = None,
    sg2_run: OldSg2Run = None,
) -> None:
    """Every swap method on the same N test pairs at batch size 1: swap scores with intervals next to the copy
    controls, seconds and FLOPs per swap and each method's time over the autoencoder's, a figure of the pairs."""
    import json

    from swapbench.experiments.swaps import run_swaps
    from swapbench.outputs import writable_file

    if out_file is not None:
        writable_file(out_file.with_suffix(".md"), "--out")
    runs = trained_runs(run)
    _, markdown, run_id, figure, provenance = run_swaps(csv(methods) or [], n, runs, recipe, settings or [], reference,
                                                        device=device, progress=progress)
    print(markdown, end="")
    if out_file is not None:
        out_file.parent.mkdir(parents=True, exist_ok=True)
        out_file.with_suffix(".md").write_text(f"MLflow run {run_id} (experiment 'swaps').\n\n" + markdown)
        figure.save(out_file.with_suffix(".png"))
        out_file.with_suffix(".json").write_text(json.dumps(provenance, indent=1) + "\n")
        out.print(f"wrote {out_file.with_suffix('.md')}, .png and .json")
    out.print(f"logged to MLflow run {run_id} (experiment 'swaps')")


@app.command()
def swap(
    structure: Annotated[Path, typer.Argument(help="The structure image A (layout).")],
    texture: Annotated[Path, typer.Argument(help="The texture image B, of the same size as A.")],
    out_file: Annotated[Path, typer.Option("--out", help="PNG file for the swap.")],
    method: Annotated[str, typer.Option(help="A swap method (`swapbench registry swap_method`).")] = "gatys",
    run: RunsOption = None,
    settings: Settings = None,
    device: DeviceOption = "auto",
    sae_run: OldSaeModel = None,
    sg2_run: OldSg2Run = None,
) -> None:
    """Swap one pair of image files with one method: A's structure, B's texture."""
    import numpy as np
    import torch
    from PIL import Image

    from swapbench.data.image_io import read_image
    from swapbench.experiments.swaps import load_runs, method_classes, split_overrides
    from swapbench.outputs import writable_file
    from swapbench.runtime import resolve_device
    from swapbench.swaps import check_pair, settings_of, swap_settings

    if out_file.suffix.lower() != ".png":
        raise UserError(f"--out {out_file} must be a .png file")
    writable_file(out_file, "--out")
    cls = method_classes([method])[method]
    chosen = swap_settings(method, split_overrides(settings or [], [method]).get(settings_of(method)[0]))
    a, b = (torch.from_numpy(read_image(p).copy()).permute(2, 0, 1)[None].float() / 127.5 - 1 for p in (structure, texture))
    check_pair(a, b)
    loaded = load_runs({method: cls}, trained_runs(run))
    model = loaded[cls.needs][0] if cls.needs is not None else None
    if cls.needs is not None and loaded[cls.needs][1].data.resolution != a.shape[-1]:
        raise UserError(f"method '{method}' was trained at {loaded[cls.needs][1].data.resolution} px and the images are "
                        f"{a.shape[-1]} px; resize them to the model's resolution")
    result = cls(model, chosen, resolve_device(device)).swap(a, b)
    pixels = ((result[0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
    out_file.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(pixels)).save(out_file)
    out.print(f"wrote {out_file}")
