"""``synthetic``: procedural images with known structure and texture factors.

Every image is ``render(layout, style, resolution)``:

- the **layout** (structure factor) says where things are: a tilted horizon that splits the
  background into two regions, and three shapes (ellipses or rectangles) with their centres, sizes
  and rotations, drawn in order on top. That gives five regions per image.
- the **style** (texture factor) says how every region looks: for each of the five regions a pair of
  colours, a pattern (stripes, checker, dots or waves) with its frequency, orientation and phase;
  and a film grain strength for the whole image.

Both factors are drawn from generators seeded by (split, factor kind, factor id), so image i of a
split is the same on every machine. Geometry and patterns are defined in image coordinates [0, 1]^2,
so the same factors render the same scene at any resolution from 32 to 512 px (only the grain is
per pixel). Because ``render`` is public, the ground-truth swap ``render(layout(A), style(B))`` is
available to the scores.

Train and test are disjoint in both factors: the train split draws its layouts and styles from the
seed streams of split 0 (``TRAIN_LAYOUTS`` layouts, ``TRAIN_STYLES`` styles), the test split from the
streams of split 1 (its own ``test_images`` layouts and styles). No test layout or style is a
training one: each is a separate continuous random draw, and the test suite checks the parameters.

The validation split is disjoint from both: its item i is (layout, style) number
``VALIDATION_OFFSET + i`` of split 0's streams, far beyond the ``TRAIN_LAYOUTS`` / ``TRAIN_STYLES`` ids
that training uses, and test uses split 1's streams. Settings are chosen on it, never on test.

The training split pairs layout ``i mod TRAIN_LAYOUTS`` with style ``(i * 7919 + 1) mod TRAIN_STYLES``
for item i, so over an epoch every layout meets many styles. Test item i is (test layout i, test
style i), so any two test images differ in both factors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
from torch.utils.data import Dataset

from swapbench.errors import UserError
from swapbench.registry import DATASETS

N_SHAPES = 3
N_REGIONS = 2 + N_SHAPES
PATTERNS = ("stripes", "checker", "dots", "waves")
TRAIN_LAYOUTS = 20_000
TRAIN_STYLES = 20_000
TRAIN_LENGTH = 1_000_000
SPLIT_INDEX = {"train": 0, "test": 1}
SPLITS = ("train", "validation", "test")
# validation factors are ids of the training streams that training never draws (it uses < TRAIN_LAYOUTS)
VALIDATION_OFFSET = 2**29


@dataclass
class Layout:
    """Where things are; every field has a leading batch dimension N."""

    horizon: torch.Tensor  # (N,) height of the horizon at the image centre, in [0, 1] from the top
    slope: torch.Tensor  # (N,) horizon tilt (dy / dx)
    kind: torch.Tensor  # (N, S) 0 = ellipse, 1 = rectangle
    center: torch.Tensor  # (N, S, 2) x, y in [0, 1]
    size: torch.Tensor  # (N, S, 2) half-width, half-height in [0, 1] units
    angle: torch.Tensor  # (N, S) rotation in radians


@dataclass
class Style:
    """How everything looks, per region; every field has a leading batch dimension N."""

    color_a: torch.Tensor  # (N, R, 3) in [0, 1]
    color_b: torch.Tensor  # (N, R, 3) in [0, 1]
    pattern: torch.Tensor  # (N, R) index into PATTERNS
    frequency: torch.Tensor  # (N, R) cycles per image side
    angle: torch.Tensor  # (N, R) pattern orientation in radians
    phase: torch.Tensor  # (N, R, 2) in [0, 1)
    grain: torch.Tensor  # (N,) amplitude of per-pixel grain


def _stack(items: list) -> object:
    cls = type(items[0])
    return cls(**{f.name: torch.stack([getattr(it, f.name) for it in items]) for f in fields(cls)})


def _generator(split: str, kind: int, index: int) -> torch.Generator:
    # torch's CPU generator keeps only the low 32 bits of a seed, so the (split, kind) tag lives in
    # the low bits: the four factor streams are disjoint by construction for index < 2**30
    if not 0 <= index < 2**30:
        raise IndexError(f"factor index {index} out of range")
    return torch.Generator().manual_seed(index * 4 + SPLIT_INDEX[split] * 2 + kind)


def draw_layout(split: str, index: int) -> Layout:
    """Layout ``index`` of ``split`` (unbatched fields)."""
    g = _generator(split, 0, index)
    u = lambda *shape: torch.rand(*shape, generator=g)  # noqa: E731
    return Layout(
        horizon=0.3 + 0.4 * u(()),
        slope=(u(()) - 0.5) * 0.8,
        kind=(u(N_SHAPES) < 0.5).float(),
        center=0.15 + 0.7 * u(N_SHAPES, 2),
        size=0.08 + 0.17 * u(N_SHAPES, 2),
        angle=math.pi * u(N_SHAPES),
    )


def _hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    k = (torch.tensor([5.0, 3.0, 1.0]) + h[..., None] * 6) % 6
    return v[..., None] - v[..., None] * s[..., None] * (torch.minimum(k, 4 - k).clamp(0, 1))


def draw_style(split: str, index: int) -> Style:
    """Style ``index`` of ``split`` (unbatched fields)."""
    g = _generator(split, 1, index)
    u = lambda *shape: torch.rand(*shape, generator=g)  # noqa: E731
    base_hue = u(())
    hue_a = (base_hue + 0.35 * (u(N_REGIONS) - 0.5)) % 1.0  # a coherent palette per style
    hue_b = (hue_a + 0.08 + 0.25 * u(N_REGIONS)) % 1.0
    sat = 0.35 + 0.65 * u(N_REGIONS, 2)
    val_a = 0.25 + 0.75 * u(N_REGIONS)
    val_b = (val_a + 0.3 + 0.4 * u(N_REGIONS)) % 1.0 * 0.8 + 0.1  # contrast with colour a
    return Style(
        color_a=_hsv_to_rgb(hue_a, sat[:, 0], val_a),
        color_b=_hsv_to_rgb(hue_b, sat[:, 1], val_b),
        pattern=torch.randint(len(PATTERNS), (N_REGIONS,), generator=g),
        frequency=3.0 + 9.0 * u(N_REGIONS),
        angle=math.pi * u(N_REGIONS),
        phase=u(N_REGIONS, 2),
        grain=0.1 * u(()),
    )


def layouts(split: str, indices: list[int]) -> Layout:
    return _stack([draw_layout(split, i) for i in indices])


def styles(split: str, indices: list[int]) -> Style:
    return _stack([draw_style(split, i) for i in indices])


def region_weights(layout: Layout, resolution: int) -> torch.Tensor:
    """(N, R, H, W) soft region masks that sum to 1 per pixel (edges antialiased over ~1 px)."""
    n = layout.horizon.shape[0]
    t = (torch.arange(resolution, dtype=torch.float32) + 0.5) / resolution
    y, x = t.view(1, -1, 1), t.view(1, 1, -1)
    sharp = resolution * 1.5
    below = torch.sigmoid((y - layout.horizon.view(n, 1, 1) - layout.slope.view(n, 1, 1) * (x - 0.5)) * sharp)
    weights = [1 - below, below]
    rest = torch.ones(n, resolution, resolution)
    shape_masks = []
    for j in range(N_SHAPES):
        cx, cy = layout.center[:, j, 0].view(n, 1, 1), layout.center[:, j, 1].view(n, 1, 1)
        rx, ry = layout.size[:, j, 0].view(n, 1, 1), layout.size[:, j, 1].view(n, 1, 1)
        cos, sin = layout.angle[:, j].cos().view(n, 1, 1), layout.angle[:, j].sin().view(n, 1, 1)
        du, dv = (x - cx) * cos + (y - cy) * sin, -(x - cx) * sin + (y - cy) * cos
        ellipse = (1 - torch.sqrt((du / rx) ** 2 + (dv / ry) ** 2)) * torch.minimum(rx, ry)
        rect = torch.minimum(rx - du.abs(), ry - dv.abs())
        is_rect = layout.kind[:, j].view(n, 1, 1)
        shape_masks.append(torch.sigmoid((is_rect * rect + (1 - is_rect) * ellipse) * sharp))
    # later shapes cover earlier ones: walk from the top shape down
    covered = torch.zeros(n, resolution, resolution)
    out = [None] * N_REGIONS
    for j in reversed(range(N_SHAPES)):
        out[2 + j] = shape_masks[j] * (1 - covered)
        covered = covered + out[2 + j]
    rest = 1 - covered
    out[0], out[1] = weights[0] * rest, weights[1] * rest
    return torch.stack(out, dim=1)


def _pattern(kind: int, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Pattern ``PATTERNS[kind]`` in [0, 1] at rotated, scaled coordinates (u, v) in cycles."""
    two_pi = 2 * math.pi
    if kind == 0:  # stripes
        return torch.sin(two_pi * u).mul_(0.5).add_(0.5)
    if kind == 1:  # checker (soft edges)
        return torch.sigmoid(torch.sin(two_pi * u).mul_(torch.sin(two_pi * v)).mul_(8))
    if kind == 2:  # dots on a square lattice
        du, dv = u - torch.floor(u) - 0.5, v - torch.floor(v) - 0.5
        return torch.sigmoid((0.3 - torch.sqrt(du * du + dv * dv)) * 30)
    # waves: a sinusoid bent by a slower one across it, plus a second direction
    bent = torch.sin(two_pi * (u + 0.3 * torch.sin(math.pi * v)))
    return bent.add_(torch.sin(two_pi * 0.7 * v)).mul_(0.25).add_(0.5)


def pattern_values(style: Style, resolution: int) -> torch.Tensor:
    """(N, R, H, W) pattern value in [0, 1] of every region's own pattern over the whole image.

    Regions are grouped by pattern kind, so each map is computed once, by its own formula only.
    """
    n = style.frequency.shape[0]
    t = (torch.arange(resolution, dtype=torch.float32) + 0.5) / resolution
    y, x = t.view(1, -1, 1), t.view(1, 1, -1)
    flat = lambda a: a.reshape(n * N_REGIONS, *a.shape[2:])  # noqa: E731
    kinds, freq, angle, phase = flat(style.pattern), flat(style.frequency), flat(style.angle), flat(style.phase)
    out = torch.empty(n * N_REGIONS, resolution, resolution)
    for kind in range(len(PATTERNS)):
        idx = (kinds == kind).nonzero().squeeze(1)
        if idx.numel() == 0:
            continue
        f = freq[idx].view(-1, 1, 1)
        cos, sin = angle[idx].cos().view(-1, 1, 1) * f, angle[idx].sin().view(-1, 1, 1) * f
        u = x * cos + y * sin + phase[idx, 0].view(-1, 1, 1)
        v = y * cos - x * sin + phase[idx, 1].view(-1, 1, 1)
        out[idx] = _pattern(kind, u, v)
    return out.view(n, N_REGIONS, resolution, resolution)


def grain_noise(resolution: int) -> torch.Tensor:
    """(H, W) fixed pseudo-random values in [-0.5, 0.5) (a sine hash of the pixel position)."""
    t = torch.arange(resolution, dtype=torch.float64)
    h = torch.sin(t.view(-1, 1) * 12.9898 + t.view(1, -1) * 78.233) * 43758.5453
    return (h - torch.floor(h) - 0.5).float()


def render(layout: Layout, style: Style, resolution: int, flat_patterns: bool = False) -> torch.Tensor:
    """Images (N, 3, resolution, resolution) in [-1, 1] for batched ``layout`` and ``style``.

    With ``flat_patterns`` every region's pattern is replaced by its mean value over the image, so each
    region is one flat colour, the mix of its two colours that its pattern shows on average: the scene
    with the right layout and colours and no pattern (the ``truth_flat`` control of the swap scores)."""
    if not 8 <= resolution <= 2048:
        raise ValueError(f"render: resolution must lie in [8, 2048], got {resolution}")
    w = region_weights(layout, resolution)  # (N, R, H, W)
    p = pattern_values(style, resolution)  # (N, R, H, W)
    if flat_patterns:
        p = p.mean(dim=(2, 3), keepdim=True).expand_as(p)
    # sum_r w_r * (a_r + (b_r - a_r) * p_r), as two small batched matrix products over regions
    a, b = style.color_a, style.color_b  # (N, R, 3)
    image = torch.einsum("nrhw,nrc->nchw", w, a) + torch.einsum("nrhw,nrc->nchw", w * p, b - a)
    image = image + style.grain.view(-1, 1, 1, 1) * grain_noise(resolution)
    return (image.clamp(0, 1) * 2 - 1).contiguous()


@DATASETS.register("synthetic", description="Procedural layout x style images with a known ground-truth swap.")
class SyntheticDataset(Dataset):
    """Items are ``render(layout, style)`` of known factors; see the module docstring for the split."""

    SUMMARY = (f"train: {TRAIN_LENGTH:,} items over {TRAIN_LAYOUTS:,} layouts x {TRAIN_STYLES:,} styles; "
               f"test: data.test_images items with their own layouts and styles")

    def __init__(self, split: str, resolution: int, test_images: int = 64):
        if split not in SPLITS:
            raise UserError(f"dataset 'synthetic' has no split '{split}'; use one of {', '.join(SPLITS)}")
        if not 8 <= resolution <= 2048:
            raise UserError(f"dataset 'synthetic' renders 8 to 2048 px, not {resolution}; change data.resolution")
        self.split = split
        self.stream = "test" if split == "test" else "train"  # the factor streams (see the module docstring)
        self.resolution = resolution
        self.length = TRAIN_LENGTH if split == "train" else test_images

    def __len__(self) -> int:
        return self.length

    def factors(self, index: int) -> tuple[int, int]:
        """(layout id, style id) of item ``index`` within this split's factor pools."""
        if not 0 <= index < self.length:
            raise IndexError(index)
        if self.split == "test":
            return index, index
        if self.split == "validation":
            return VALIDATION_OFFSET + index, VALIDATION_OFFSET + index
        return index % TRAIN_LAYOUTS, (index * 7919 + 1) % TRAIN_STYLES

    def render_factors(self, layout_ids: list[int], style_ids: list[int], flat_patterns: bool = False) -> torch.Tensor:
        """Render any combination of this split's layouts and styles: the ground truth of a swap."""
        return render(layouts(self.stream, layout_ids), styles(self.stream, style_ids), self.resolution, flat_patterns)

    def gt_swap(self, structure_indices: list[int], texture_indices: list[int],
                flat_patterns: bool = False) -> torch.Tensor:
        """render(layout(A_i), style(B_i)) for items A_i, B_i of this split (patterns flattened to
        their mean with ``flat_patterns``: see :func:`render`)."""
        lay = [self.factors(i)[0] for i in structure_indices]
        sty = [self.factors(i)[1] for i in texture_indices]
        return self.render_factors(lay, sty, flat_patterns)

    def gt_regions(self, structure_indices: list[int]) -> torch.Tensor:
        """(N, R, H, W) hard 0/1 masks of the regions of each item's layout (the region with the largest
        weight), 0 within about a pixel of a region edge (where the antialiased edge mixes regions): the
        layout a swap of A_i must keep, as the part scores of swapbench.evaluation.metrics.parts use it."""
        lay = layouts(self.stream, [self.factors(i)[0] for i in structure_indices])
        weights = region_weights(lay, self.resolution)
        hard = torch.nn.functional.one_hot(weights.argmax(1), N_REGIONS).permute(0, 3, 1, 2).float()
        return hard * (weights.max(1, keepdim=True).values > 0.99).float()

    def __getitems__(self, indices: list[int]) -> list[torch.Tensor]:
        ids = [self.factors(i) for i in indices]
        return list(self.render_factors([a for a, _ in ids], [b for _, b in ids]).unbind(0))

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.__getitems__([index])[0]

    def manifest(self) -> dict:
        return {"dataset": "synthetic", "split": self.split, "resolution": self.resolution, "length": self.length,
                **({"factor_offset": VALIDATION_OFFSET} if self.split == "validation" else {}),
                "layouts": TRAIN_LAYOUTS if self.split == "train" else self.length,
                "styles": TRAIN_STYLES if self.split == "train" else self.length}
