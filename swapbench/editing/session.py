"""An editing session: one loaded model and the images a person edits with it, as `swapbench ui` serves them.

The page's logic lives here, not in the web server: every operation is one call of
:mod:`swapbench.editing.manipulate` on images held by the session, and returns an :class:`Edit`
(the image and the provenance record the CLI sheets write beside their PNGs: model, commits, inputs,
settings). The server only turns requests into these calls and the results into PNG and JSON.

- Images come from uploads (bytes checked for size, decodability and pixel count, written into the
  session's folder, then read exactly as ``swapbench edit`` reads a file, so a swap on the page is the
  swap of the CLI to the pixel) or from the model's dataset (its test split, as a gallery).
- :meth:`EditSession.swap`, :meth:`~EditSession.region`, :meth:`~EditSession.global_edit` and
  :meth:`~EditSession.grid` are the page's operations; :meth:`~EditSession.distances` scores a shown
  result against its two sources.
"""

from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from swapbench.editing import manipulate as M
from swapbench.editing.sheets import EditModel, _record, load_edit_model, training_crops
from swapbench.errors import UserError

MAX_UPLOAD_BYTES = 20 * 1024 * 1024  # an upload larger than this is refused before it is decoded
MAX_UPLOAD_PIXELS = 40_000_000  # width x height; larger images are refused (PIL's decompression-bomb guard is ~89M)
GALLERY_SIZE = 12  # test images of the model's dataset offered as a gallery
PCA_COMPONENTS = 3  # texture-PCA sliders on the page
PCA_FIT_CROPS = 512  # training crops the directions are fitted to (the CLI's default)
REGION_PARTS = ("structure", "texture")


@dataclass
class SessionImage:
    """An input image: ``tensor`` (1, 3, R, R) in [-1, 1] at the model's resolution, ``source`` how
    the provenance record names it."""

    id: str
    label: str
    tensor: torch.Tensor
    source: dict[str, Any]


@dataclass
class Edit:
    """A result: ``image`` (1, 3, R, R) in [-1, 1] (or an HWC uint8 array for a grid) and its record."""

    image: torch.Tensor | np.ndarray
    record: dict[str, Any]
    extra: dict[str, torch.Tensor] = field(default_factory=dict)  # e.g. the region mask that was used


def _check_run_store(source: str) -> None:
    """A run id needs an MLflow store; looking one up where none exists would create an empty one
    (the page writes nothing outside its upload folder), so that is an error instead."""
    import os

    from swapbench import zoo

    if zoo.is_zoo_ref(source) or Path(source).exists() or source.endswith((".safetensors", ".json")) or "/" in source:
        return  # a zoo name or a file path: checked where it is read
    if not os.environ.get("MLFLOW_TRACKING_URI") and not Path("mlflow.db").is_file():
        raise UserError(f"no run '{source}': there is no MLflow store here ({Path.cwd() / 'mlflow.db'} does not exist and "
                        "MLFLOW_TRACKING_URI is not set); start `swapbench ui` in the folder the run was trained in, "
                        "or give a checkpoint file or zoo:NAME")


def _sniff_image(data: bytes, name: str) -> None:
    """A one-line error unless ``data`` is an image PIL can decode within the pixel limit."""
    from PIL import Image

    from swapbench.data.image_io import read_error

    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
            if w * h > MAX_UPLOAD_PIXELS:
                raise UserError(f"'{name}' is {w}x{h} px, over the limit of {MAX_UPLOAD_PIXELS / 1e6:g} megapixels; "
                                "upload a smaller image")
            im.verify()
    except UserError:
        raise
    except Exception as exc:  # any decoding failure is the upload's problem
        raise UserError(f"'{name}' is not an image ({read_error(exc)}); upload a PNG, JPEG, WebP or BMP file") from None


class EditSession:
    """One model and the images of one page. Thread-safe: operations run one at a time."""

    def __init__(self, em: EditModel, folder: Path):
        self.em = em
        self.folder = Path(folder)
        self.images: dict[str, SessionImage] = {}
        self._lock = threading.RLock()
        self._directions: tuple[M.TextureDirections, str] | None = None
        self._vgg = None

    @classmethod
    def open(cls, source: str, folder: Path, device: str = "auto") -> EditSession:
        """The session of a run id, checkpoint file or ``zoo:NAME`` (hash-checked), as `swapbench edit` loads it."""
        source = source.strip()
        if not source:
            raise UserError("no model given; choose a zoo model or a run, or enter a run id or checkpoint path")
        _check_run_store(source)
        return cls(load_edit_model(source, device), folder)

    @property
    def resolution(self) -> int:
        return self.em.resolution

    def describe(self) -> dict[str, Any]:
        return {"source": self.em.source, "commit": self.em.commit, "resolution": self.resolution,
                "recipe": self.em.recipe.name, "dataset": self.em.recipe.data.dataset}

    # -- inputs --------------------------------------------------------------------------------
    def image(self, image_id: str) -> SessionImage:
        if image_id not in self.images:
            raise UserError(f"no image '{image_id}' in this session; upload it or pick it from the gallery again")
        return self.images[image_id]

    def _add(self, label: str, tensor: torch.Tensor, source: dict[str, Any]) -> SessionImage:
        image = SessionImage(f"img{len(self.images)}", label, tensor, source)
        self.images[image.id] = image
        return image

    def add_upload(self, data: bytes, filename: str) -> SessionImage:
        """An uploaded file, checked, saved into the session folder and read at the model's resolution."""
        name = Path(filename or "upload").name or "upload"
        if len(data) > MAX_UPLOAD_BYTES:
            raise UserError(f"'{name}' is {len(data) / 2**20:.1f} MiB, over the limit of {MAX_UPLOAD_BYTES // 2**20} MiB; "
                            "upload a smaller image")
        if not data:
            raise UserError(f"'{name}' is empty; upload an image file")
        _sniff_image(data, name)
        with self._lock:
            sha = hashlib.sha256(data).hexdigest()
            path = self.folder / f"{len(self.images):04d}-{sha[:12]}{Path(name).suffix.lower()[:8]}"
            path.write_bytes(data)
            try:
                tensor = M.load_image(path, self.resolution)
            except UserError as exc:
                path.unlink(missing_ok=True)
                raise UserError(str(exc).replace(str(path), f"'{name}'")) from None
            return self._add(name, tensor, {"file": name, "sha256": sha})

    def add_gallery(self, n: int = GALLERY_SIZE) -> list[SessionImage]:
        """The first ``n`` test images of the model's dataset (added once; later calls return them again)."""
        with self._lock:
            have = [im for im in self.images.values() if im.source.get("split") == "test"]
            if have:
                return have
            from swapbench.data import build_dataset

            try:
                dataset = build_dataset(self.em.recipe, "test")
            except UserError as exc:
                raise UserError(f"cannot open the test images of {self.em.source}'s dataset ({exc}); "
                                "upload images instead") from None
            name = self.em.recipe.data.dataset
            return [self._add(f"{name} test {i}", dataset[i].unsqueeze(0), {"dataset": name, "split": "test", "item": i})
                    for i in range(min(n, len(dataset)))]

    # -- operations ----------------------------------------------------------------------------
    def _record(self, operation: str, **settings: Any) -> dict[str, Any]:
        return _record(self.em, operation, **settings)

    def swap(self, a: str, b: str, alpha: float = 1.0) -> Edit:
        """G(s(A), lerp(t(A), t(B), alpha)), as `swapbench edit swap`."""
        ia, ib = self.image(a), self.image(b)
        with self._lock:
            out = M.swap_texture(self.em.model, ia.tensor, ib.tensor, alpha)
        return Edit(out, self._record("swap", structure=ia.source, texture=ib.source, alpha=float(alpha)))

    def region(self, a: str, b: str, mask: torch.Tensor, part: str = "structure") -> Edit:
        """Inside ``mask`` (1, 1, R, R), B's structure (or texture) replaces A's; the rest stays A's reconstruction."""
        if part not in REGION_PARTS:
            raise UserError(f"region part '{part}' is not one of {', '.join(REGION_PARTS)}")
        ia, ib = self.image(a), self.image(b)
        paste = M.paste_structure if part == "structure" else M.paste_texture
        with self._lock:
            out = paste(self.em.model, ia.tensor, ib.tensor, mask)
            recon = M.reconstruct(self.em.model, ia.tensor)
        inside, outside = M.change_inside_and_outside(recon, out, mask)
        record = self._record("region", target=ia.source, source=ib.source, part=part,
                              region_fraction=float(mask.mean()),
                              mean_change_inside=float(inside[0]), mean_change_outside=float(outside[0]))
        return Edit(out, record, {"mask": mask, "reconstruction": recon})

    def mask_from_png(self, data: bytes) -> torch.Tensor:
        """The painted region from a PNG (white or opaque strokes mark it), at the model's resolution."""
        from PIL import Image

        try:
            with Image.open(io.BytesIO(data)) as im:
                rgba = np.asarray(im.convert("RGBA"))
        except Exception:
            raise UserError("the painted region could not be read as a PNG; clear it and paint again") from None
        return M.mask_from_rgba(rgba, self.resolution, "the painted region")

    def directions(self) -> tuple[M.TextureDirections, str]:
        """Texture-PCA directions fitted once to the training crops of the model's dataset (cached)."""
        with self._lock:
            if self._directions is None:
                crops = training_crops(self.em, PCA_FIT_CROPS)
                k = min(PCA_COMPONENTS, crops.shape[0] - 1)
                fitted_on = f"{crops.shape[0]} training crops of {self.em.source} (items 0 to {crops.shape[0] - 1})"
                self._directions = (M.texture_pca(self.em.model, crops, k), fitted_on)
            return self._directions

    def global_edit(self, a: str, pca: Sequence[float] = (), attribute: float = 0.0,
                    with_ids: Sequence[str] = (), without_ids: Sequence[str] = ()) -> Edit:
        """A's texture code moved by ``pca[k]`` standard deviations along principal direction k, plus
        ``attribute`` times mean t(with) - mean t(without) (when both groups are given)."""
        ia = self.image(a)
        with self._lock:
            step = torch.zeros(M.encode(self.em.model, ia.tensor).texture.shape[1])
            settings: dict[str, Any] = {"image": ia.source}
            if any(float(v) != 0 for v in pca):
                dirs, fitted_on = self.directions()
                if len(pca) > dirs.directions.shape[0]:
                    raise UserError(f"{len(pca)} PCA strengths for {dirs.directions.shape[0]} directions")
                for k, v in enumerate(pca):
                    step += float(v) * dirs.direction(k)
                settings.update(pca_strengths=[float(v) for v in pca], pca_fitted_on=fitted_on, pca_std=dirs.std.tolist())
            if attribute != 0:
                if not with_ids or not without_ids:
                    raise UserError("the attribute slider needs images marked 'with' and 'without' the attribute")
                w = torch.cat([self.image(i).tensor for i in with_ids])
                wo = torch.cat([self.image(i).tensor for i in without_ids])
                step += float(attribute) * M.attribute_direction(self.em.model, w, wo)
                settings.update(attribute_strength=float(attribute),
                                with_attribute=[self.image(i).source for i in with_ids],
                                without_attribute=[self.image(i).source for i in without_ids])
            out = M.edit_texture(self.em.model, ia.tensor, step, [1.0])[0]
        return Edit(out, self._record("global", **settings))

    def grid(self, a_ids: Sequence[str], b_ids: Sequence[str]) -> Edit:
        """The swap grid of several A's (rows) against several B's (columns), as `swapbench edit grid`."""
        from swapbench.visualize import swap_grid

        if not a_ids or not b_ids:
            raise UserError("the grid needs at least one structure image (rows) and one texture image (columns)")
        rows, cols = [self.image(i) for i in a_ids], [self.image(i) for i in b_ids]
        with self._lock:
            grid = swap_grid(self.em.model, torch.cat([r.tensor for r in rows]), torch.cat([c.tensor for c in cols]))
        return Edit(grid, self._record("grid", structure=[r.source for r in rows], texture=[c.source for c in cols]))

    # -- scores of a shown result --------------------------------------------------------------
    def distances(self, a: str, b: str, result: torch.Tensor) -> dict[str, Any]:
        """How far ``result`` is from A in structure and from B in texture, and the reverse.

        - structure_code / texture_code (the model's own encoder, as the swap_reencode scores):
          |s(E(result)) - s(E(A))| / |s(E(A)) - s(E(B))|, and |t(E(result)) - t(E(B))| / |t(E(A)) - t(E(B))|;
          0 = A's structure (B's texture) recovered, 1 = as far as the other source.
        - structure_dist_A / _B: swap_structure_dist's self-similarity distance of LPIPS-VGG relu3_3 to A and
          to B; texture_dist_B / _A: swap_texture_dist's Gram distance to B and to A (need the LPIPS-VGG
          weights, `swapbench weights fetch`).
        """
        from swapbench.evaluation.metrics import disentanglement as D
        from swapbench.nn.lpips import MIN_SIDE, build_lpips

        ia, ib = self.image(a), self.image(b)
        scores: dict[str, Any] = {}
        with self._lock:
            codes = M.encode(self.em.model, torch.cat([ia.tensor, ib.tensor, result]))
            s, t = codes.structure.flatten(1).double(), codes.texture.double()
            scores["structure_code"] = float((s[2] - s[0]).norm() / (s[0] - s[1]).norm().clamp_min(1e-12))
            scores["texture_code"] = float((t[2] - t[1]).norm() / (t[0] - t[1]).norm().clamp_min(1e-12))
            if self.resolution < MIN_SIDE["vgg"]:
                scores["note"] = f"the VGG distances are not defined below {MIN_SIDE['vgg']} px"
                return scores
            if self._vgg is None:
                try:
                    self._vgg = build_lpips("vgg", "cpu")
                except UserError as exc:
                    scores["note"] = f"no VGG distances: {exc}"
                    return scores
            x = torch.cat([ia.tensor, ib.tensor, result]).float().cpu().clamp(-1, 1)
            with torch.no_grad():
                sim = D.self_similarity(self._vgg, x)
                grams = D.gram_matrices(self._vgg, x)
            scores["structure_dist_A"] = float((sim[2] - sim[0]).abs().mean())
            scores["structure_dist_B"] = float((sim[2] - sim[1]).abs().mean())
            scores["texture_dist_B"] = float(D.gram_distance(grams[2:3], grams[1:2])[0])
            scores["texture_dist_A"] = float(D.gram_distance(grams[2:3], grams[0:1])[0])
        return scores


def png_bytes(image: torch.Tensor | np.ndarray) -> bytes:
    """PNG of a (1, 3, H, W) [-1, 1] tensor, a (1, 1, H, W) [0, 1] mask, or an HWC uint8 array."""
    from PIL import Image

    from swapbench.visualize import to_uint8

    if isinstance(image, torch.Tensor):
        if image.shape[1] == 1:  # a mask
            array = (image[0, 0].float().clamp(0, 1) * 255).round().to(torch.uint8).numpy()
        else:
            array = to_uint8(image[0]).permute(1, 2, 0).cpu().numpy()
    else:
        array = image
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()
