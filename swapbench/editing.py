"""What the ``swapbench edit`` commands do: load a trained swap_ae run, read image files at its
resolution, apply one operation of :mod:`swapbench.manipulate`, and write a labelled PNG sheet with
a ``.json`` beside it naming the run, its commit, the input files and the settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from swapbench import manipulate as M
from swapbench.errors import UserError
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

    def images(self, paths: Sequence[str | Path]) -> torch.Tensor:
        return M.load_images(paths, self.resolution)


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
    from swapbench.figures import png_output_path, write_provenance

    png = png_output_path(out)
    labelled_columns(columns, labels, cell=cell).save(png)
    write_provenance(png, record)
    return png


def _record(em: EditModel, operation: str, **settings: Any) -> dict:
    return {"operation": operation, "run": em.source, "commit": em.commit, "resolution": em.resolution, **settings}


def _label(alpha: float, name: str = "alpha") -> str:
    return f"{name} {alpha:g}"


def swap_sheet(em: EditModel, structure: Sequence[str], texture: Sequence[str], alphas: Sequence[float],
               out: str | Path, cell: int = 128) -> Path:
    """Rows: structure images; columns: structure, texture, then the swap at each alpha."""
    a, b = em.images(structure), em.images(texture)
    results = [M.swap_texture(em.model, a, b, alpha) for alpha in alphas]
    return write_sheet(out, [a, b.expand_as(a), *results], ["structure", "texture", *map(_label, alphas)],
                       _record(em, "swap", structure=list(structure), texture=list(texture), alphas=list(alphas)), cell)


def interpolate_sheet(em: EditModel, a_files: Sequence[str], b_files: Sequence[str], steps: int, part: str,
                      out: str | Path, cell: int = 128) -> Path:
    """Rows: image pairs; columns: A, the interpolation at ``steps`` evenly spaced alphas, B."""
    if steps < 2:
        raise UserError(f"--steps {steps}: an interpolation needs at least 2 steps (its two ends)")
    a, b = em.images(a_files), em.images(b_files)
    alphas = [i / (steps - 1) for i in range(steps)]
    frames = M.interpolate(em.model, a, b, alphas, part)
    return write_sheet(out, [a, *frames, b.expand_as(a)], ["A", *map(_label, alphas), "B"],
                       _record(em, "interpolate", a=list(a_files), b=list(b_files), alphas=alphas, part=part), cell)


def region_sheet(em: EditModel, target: Sequence[str], source: Sequence[str], out: str | Path,
                 box: str | None = None, mask_file: str | None = None, cell: int = 128) -> Path:
    """Rows: target images; columns: target, source, the region (the target darkened outside it), the
    edited target."""
    if (box is None) == (mask_file is None):
        raise UserError("give the region as exactly one of --box left,top,right,bottom or --mask FILE")
    mask = M.box_mask(box, em.resolution) if box is not None else M.load_mask(mask_file, em.resolution)
    t, s = em.images(target), em.images(source)
    edited = M.paste_structure(em.model, t, s, mask)
    shown_region = (t + 1) * (0.3 + 0.7 * mask) - 1  # the target, darkened outside the region
    return write_sheet(out, [t, s.expand_as(t), shown_region, edited], ["target", "source", "region", "edited"],
                       _record(em, "region", target=list(target), source=list(source), box=box, mask=mask_file), cell)


def training_images(em: EditModel, n: int) -> torch.Tensor:
    """The first ``n`` images of the run's training split (the texture codes PCA is fitted to)."""
    from swapbench.data import build_dataset

    dataset = build_dataset(em.recipe, "train")
    n = min(n, len(dataset))
    return torch.stack([dataset[i] for i in range(n)])


def pca_sheet(em: EditModel, image_files: Sequence[str], components: int, strengths: Sequence[float], n: int,
              out: str | Path, cell: int = 128) -> Path:
    """One sheet per call, rows: (image, component) pairs; columns: the image, then the edit at
    each strength in standard deviations along that principal direction of the texture codes of
    ``n`` training images."""
    images = em.images(image_files)
    pca = M.texture_pca(em.model, training_images(em, n), components)
    rows = [M.edit_texture(em.model, images, pca.direction(k), strengths) for k in range(components)]
    # row order: component-major, then image
    by_strength = [torch.cat([r[j] for r in rows]) for j in range(len(strengths))]
    originals = images.repeat(components, 1, 1, 1)
    record = _record(em, "texture-pca", images=list(image_files), components=components, strengths=list(strengths),
                     fitted_on=f"first {n} training images", std=pca.std.tolist(),
                     rows=[f"component {k}, {Path(f).name}" for k in range(components) for f in image_files])
    return write_sheet(out, [originals, *by_strength], ["input", *[_label(s, "x std") for s in strengths]], record, cell)


def attribute_sheet(em: EditModel, image_files: Sequence[str], with_files: Sequence[str], without_files: Sequence[str],
                    strengths: Sequence[float], out: str | Path, cell: int = 128) -> Path:
    """Rows: images; columns: the image, then the edit at each strength along mean t(with) - mean t(without)."""
    images = em.images(image_files)
    direction = M.attribute_direction(em.model, em.images(with_files), em.images(without_files))
    edits = M.edit_texture(em.model, images, direction, strengths)
    record = _record(em, "attribute", images=list(image_files), with_attribute=list(with_files),
                     without_attribute=list(without_files), strengths=list(strengths),
                     direction_norm=float(direction.norm()))
    return write_sheet(out, [images, *edits], ["input", *[_label(s, "strength") for s in strengths]], record, cell)


def translate_sheet(em: EditModel, image_files: Sequence[str], domain_files: Sequence[str], out: str | Path,
                    cell: int = 128) -> Path:
    """Rows: images; columns: the image, its reconstruction, and its translation to the domain."""
    images = em.images(image_files)
    domain = em.images(domain_files)
    translated = M.translate_domain(em.model, images, domain)
    recon = M.reconstruct(em.model, images)
    record = _record(em, "translate", images=list(image_files), domain=list(domain_files), domain_images=domain.shape[0])
    return write_sheet(out, [images, recon, translated], ["input", "reconstruction", "translated"], record, cell)
