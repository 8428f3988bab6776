"""What the ``swapbench edit`` commands do: load a trained swap_ae run, read image files at its
resolution, apply one operation of :mod:`swapbench.editing.manipulate`, and write a labelled PNG sheet with
a ``.json`` beside it naming the run, its commit, the input files and the settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from swapbench.editing import manipulate as M
from swapbench.errors import UserError
from swapbench.outputs import replacing
from swapbench.visualize import labelled_columns


@dataclass
class EditModel:
    model: M.SwappingAutoencoder
    recipe: Any  # swapbench.recipe.Recipe
    source: str  # the run id or checkpoint given
    commit: str

    @property
    def resolution(self) -> int:
        return self.recipe.data.resolution

    def images(self, paths: Sequence[str | Path]) -> tuple[torch.Tensor, list[str]]:
        """The images ``paths`` name (files or folders) at the model's resolution, and their files."""
        files = M.image_files(paths)
        return torch.cat([M.load_image(f, self.resolution) for f in files]), [str(f) for f in files]


def load_edit_model(run: str, device: str = "auto") -> EditModel:
    """The (EMA) autoencoder of a swap_ae run id or checkpoint file, on ``device``."""
    from swapbench.models.build import load_model
    from swapbench.runtime import resolve_device
    from swapbench.tracking import checkpoint_of

    model, recipe, meta = load_model(checkpoint_of(run))
    M.require_autoencoder(model, f"run {run} ('{recipe.model.family}')")
    return EditModel(model.to(resolve_device(device)), recipe, run, str(meta.get("git_commit", "unknown")))


def write_sheet(out: str | Path, columns: list[torch.Tensor], labels: list[str], record: dict, cell: int = 128) -> Path:
    """Save the labelled columns as PNG and ``record`` as the .json beside it; returns the PNG path."""
    from swapbench.experiments.figures import png_output_path, write_provenance
    from swapbench.outputs import make_parent

    png = make_parent(png_output_path(out))
    with replacing(png) as tmp:
        labelled_columns(columns, labels, cell=cell).save(tmp)
    write_provenance(png, record)
    return png


def _record(em: EditModel, operation: str, **settings: Any) -> dict:
    from swapbench.runtime import git_commit

    return {"operation": operation, "run": em.source, "commit": em.commit, "made_by_commit": git_commit(),
            "resolution": em.resolution, **settings}


def _rows(images: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``images`` as a column as long as ``like`` (one input image repeated down every row)."""
    return images.expand(like.shape[0], *images.shape[1:]) if images.shape[0] == 1 else images


def _label(alpha: float, name: str = "alpha") -> str:
    return f"{name} {alpha:g}"


def swap_sheet(em: EditModel, structure: Sequence[str], texture: Sequence[str], alphas: Sequence[float],
               out: str | Path, cell: int = 128) -> Path:
    """Rows: structure images; columns: structure, texture, then the swap at each alpha."""
    (a, a_files), (b, b_files) = em.images(structure), em.images(texture)
    results = [M.swap_texture(em.model, a, b, alpha) for alpha in alphas]
    return write_sheet(out, [_rows(a, results[0]), _rows(b, results[0]), *results],
                       ["structure", "texture", *map(_label, alphas)],
                       _record(em, "swap", structure=a_files, texture=b_files, alphas=list(alphas)), cell)


def grid_sheet(em: EditModel, structure: Sequence[str], texture: Sequence[str], out: str | Path, cell: int = 128) -> Path:
    """The swap grid: row i keeps the structure of structure image i, column j takes the texture of
    texture image j (the sources on the top row and the left column); cells of at least ``cell`` px."""
    from PIL import Image

    from swapbench.experiments.figures import png_output_path, write_provenance
    from swapbench.outputs import make_parent
    from swapbench.visualize import swap_grid

    (a, a_files), (b, b_files) = em.images(structure), em.images(texture)
    png = make_parent(png_output_path(out))
    with replacing(png) as tmp:
        Image.fromarray(swap_grid(em.model, a, b, min_cell=cell)).save(tmp)
    write_provenance(png, _record(em, "grid", structure=a_files, texture=b_files))
    return png


def interpolate_sheet(em: EditModel, a_files: Sequence[str], b_files: Sequence[str], steps: int, part: str,
                      out: str | Path, cell: int = 128) -> Path:
    """Rows: image pairs; columns: A, the interpolation at ``steps`` evenly spaced alphas, B."""
    if steps < 2:
        raise UserError(f"--steps {steps}: an interpolation needs at least 2 steps (its two ends)")
    (a, a_used), (b, b_used) = em.images(a_files), em.images(b_files)
    alphas = [i / (steps - 1) for i in range(steps)]
    frames = M.interpolate(em.model, a, b, alphas, part)
    return write_sheet(out, [_rows(a, frames[0]), *frames, _rows(b, frames[0])], ["A", *map(_label, alphas), "B"],
                       _record(em, "interpolate", a=a_used, b=b_used, alphas=alphas, part=part), cell)


def region_sheet(em: EditModel, target: Sequence[str], source: Sequence[str], out: str | Path,
                 box: str | None = None, mask_file: str | None = None, cell: int = 128) -> Path:
    """Rows: target images; columns: target, source, the region (the target darkened outside it), the
    edited target."""
    if (box is None) == (mask_file is None):
        raise UserError("give the region as exactly one of --box left,top,right,bottom or --mask FILE")
    mask = M.box_mask(box, em.resolution) if box is not None else M.load_mask(mask_file, em.resolution)
    (t, t_files), (s, s_files) = em.images(target), em.images(source)
    edited = M.paste_structure(em.model, t, s, mask)
    t = _rows(t, edited)
    inside, outside = M.change_inside_and_outside(M.reconstruct(em.model, t), edited, mask)
    shown_region = (t + 1) * (0.3 + 0.7 * mask) - 1  # the target, darkened outside the region
    return write_sheet(out, [t, _rows(s, edited), shown_region, edited], ["target", "source", "region", "edited"],
                       _record(em, "region", target=t_files, source=s_files, box=box, mask=mask_file,
                               mean_change_inside=inside.tolist(), mean_change_outside=outside.tolist()), cell)


def training_crops(em: EditModel, n: int) -> torch.Tensor:
    """``n`` images of the run's training data as its trainer draws them (for photos and folders:
    the first ``n`` seeded random crops)."""
    from swapbench.data import build_dataset

    try:
        dataset = build_dataset(em.recipe, "train")
    except UserError as exc:
        raise UserError(f"cannot open run {em.source}'s training data ({exc}); "
                        "pass --fit FILES to fit the directions to images of your own") from None
    return torch.stack([dataset[i] for i in range(min(n, len(dataset)))])


def pca_sheet(em: EditModel, image_files: Sequence[str], components: int, strengths: Sequence[float], n: int,
              out: str | Path, fit_files: Sequence[str] | None = None, cell: int = 128) -> Path:
    """Rows: (component, image) pairs, component-major; columns: the image, then the edit at each
    strength, in standard deviations along that principal direction of the texture codes of
    ``fit_files``, or else of ``n`` of the run's training crops."""
    images, used = em.images(image_files)
    if fit_files:
        fit, fitted_on = em.images(fit_files)
    else:
        fit = training_crops(em, n)
        fitted_on = f"{fit.shape[0]} training crops of run {em.source} (items 0 to {fit.shape[0] - 1})"
    pca = M.texture_pca(em.model, fit, components)
    rows = [M.edit_texture(em.model, images, pca.direction(k), strengths) for k in range(components)]
    by_strength = [torch.cat([r[j] for r in rows]) for j in range(len(strengths))]
    originals = images.repeat(components, 1, 1, 1)
    record = _record(em, "texture-pca", images=used, components=components, strengths=list(strengths),
                     fitted_on=fitted_on, std=pca.std.tolist(),
                     rows=[f"component {k}, {Path(f).name}" for k in range(components) for f in used])
    return write_sheet(out, [originals, *by_strength], ["input", *[_label(s, "x std") for s in strengths]], record, cell)


def attribute_sheet(em: EditModel, image_files: Sequence[str], with_files: Sequence[str], without_files: Sequence[str],
                    strengths: Sequence[float], out: str | Path, cell: int = 128) -> Path:
    """Rows: images; columns: the image, then the edit at each strength along mean t(with) - mean t(without)."""
    (images, used), (with_images, with_used), (without_images, without_used) = (
        em.images(image_files), em.images(with_files), em.images(without_files))
    direction = M.attribute_direction(em.model, with_images, without_images)
    edits = M.edit_texture(em.model, images, direction, strengths)
    record = _record(em, "attribute", images=used, with_attribute=with_used,
                     without_attribute=without_used, strengths=list(strengths),
                     direction_norm=float(direction.norm()))
    return write_sheet(out, [images, *edits], ["input", *[_label(s, "strength") for s in strengths]], record, cell)


def translate_sheet(em: EditModel, image_files: Sequence[str], domain_files: Sequence[str], out: str | Path,
                    cell: int = 128) -> Path:
    """Rows: images; columns: the image, its reconstruction, and its translation to the domain."""
    (images, used), (domain, domain_used) = em.images(image_files), em.images(domain_files)
    translated = M.translate_domain(em.model, images, domain)
    recon = M.reconstruct(em.model, images)
    record = _record(em, "translate", images=used, domain=domain_used)
    return write_sheet(out, [images, recon, translated], ["input", "reconstruction", "translated"], record, cell)
