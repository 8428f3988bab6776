"""``strotss``: Style Transfer by Relaxed Optimal Transport and Self-Similarity (Kolkin, Salavon and
Shakhnarovich, CVPR 2019) as a swap, following the objective and schedule of the authors' code.

Features: hypercolumns, i.e. an image's RGB values and its VGG-16 responses at ``strotss.layers``,
each map bilinearly resized to the image's side and stacked per position. At every step
``output_samples`` positions are drawn; the output x and the content image A are compared there and x
against ``style_samples`` positions of the texture image B (drawn once per scale):

- content, self-similarity: D_ij = cosine distance of the hypercolumns at positions i and j, each column
  divided by its sum; loss = n * mean |D(x) - D(A)|;
- style, relaxed earth mover's distance: C = cosine distances x-to-B; max(mean_i min_j C_ij, mean_j min_i C_ij);
- moment matching: mean |mu_x - mu_B| + mean |Sigma_x - Sigma_B| over the hypercolumn dimensions;
- palette: the relaxed EMD on the RGB values in YUV with cosine plus Euclidean cost, weight 1 / max(alpha, 1),
  added to the moment term;

    L = (alpha * content + remd + m * (moment + palette / max(alpha, 1))) / (alpha + 1 + m).

Multi-scale: from the coarsest scale to the image's side, each twice the one before; alpha starts at
``content_weight`` and halves at each scale. The output's Laplacian pyramid (``pyramid_levels``) is
optimised with RMSprop. The first scale starts at B's mean colour plus the finest level of A's
pyramid; each next scale at the previous result upsampled plus that level of A at the new side (the
last scale: upsampled only, at ``final_lr``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from baselines.swaps.settings import StrotssConfig
from baselines.swaps.vgg import VGG16Features
from swapbench.registry import SWAPS
from swapbench.swaps import check_pair

# RGB -> YUV (BT.601), for the palette term
YUV = torch.tensor([[0.299, 0.587, 0.114], [-0.14714119, -0.28886916, 0.43601035], [0.61497538, -0.51496512, -0.10001026]])


def resize(x: torch.Tensor, side: int) -> torch.Tensor:
    return x if x.shape[-1] == side else F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False,
                                                        antialias=side < x.shape[-1])


def half(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=(max(1, x.shape[2] // 2), max(1, x.shape[3] // 2)), mode="bilinear", align_corners=False)


def up_to(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


def laplacian_pyramid(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """[finest band, ..., coarsest band, low-pass residual]: ``levels`` band-pass images and the residual."""
    out = []
    for _ in range(levels):
        if min(x.shape[-2:]) < 2:
            break
        low = half(x)
        out.append(x - up_to(low, x))
        x = low
    return out + [x]


def collapse(pyramid: list[torch.Tensor]) -> torch.Tensor:
    x = pyramid[-1]
    for band in reversed(pyramid[:-1]):
        x = up_to(x, band) + band
    return x


def cosine_distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(n, d), (m, d) -> (n, m) 1 - cos."""
    return 1 - F.normalize(x, dim=1) @ F.normalize(y, dim=1).t()


def relaxed_emd(cost: torch.Tensor) -> torch.Tensor:
    return torch.maximum(cost.min(1).values.mean(), cost.min(0).values.mean())


def self_similarity_loss(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    dx, dc = cosine_distances(x, x), cosine_distances(c, c)
    dx = dx / dx.sum(0, keepdim=True)
    dc = dc / dc.sum(0, keepdim=True)
    return (dx - dc).abs().mean() * x.shape[0]


def moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (1, d) and covariance (d, d, divided by n) of samples (n, d)."""
    mean = x.mean(0, keepdim=True)
    return mean, (x - mean).t() @ (x - mean) / x.shape[0]


def moment_loss(x: torch.Tensor, y_moments: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    (mx, cx), (my, cy) = moments(x), y_moments
    return (mx - my).abs().mean() + (cx - cy).abs().mean()


def palette_loss(x_rgb: torch.Tensor, y_rgb: torch.Tensor) -> torch.Tensor:
    """Relaxed EMD of [0, 1] RGB samples in YUV, cost cosine + Euclidean distance / 3 (the authors' scaling)."""
    yuv = YUV.to(x_rgb)
    x, y = x_rgb @ yuv.t(), y_rgb @ yuv.t()
    euclid = torch.cdist(x, y).square().clamp(1e-5, 1e5).div(3).sqrt()
    return relaxed_emd(cosine_distances(x, y) + euclid)


@SWAPS.register("strotss", options=StrotssConfig, options_key="strotss",
                description="Kolkin et al. 2019: relaxed-EMD style loss on VGG-16 hypercolumns, self-similarity "
                            "content loss, moment and palette matching, multi-scale, RMSprop on a Laplacian pyramid.")
class StrotssSwap:
    needs = None
    iterative = True
    steps_setting = "steps_per_scale"

    def __init__(self, model=None, settings: StrotssConfig | None = None, device: torch.device | str = "cpu"):
        self.settings = settings or StrotssConfig()
        self.device = torch.device(device)
        self.vgg = VGG16Features("max").to(self.device)
        self.history: list[tuple[int, float]] = []  # (scale index, loss) at every step of the last swap

    @property
    def evaluations(self) -> int:
        """Loss evaluations (steps over all scales) of the last swap of one pair."""
        return len(self.history)

    def sides(self, side: int) -> list[int]:
        s = self.settings
        sides = [side // 2**k for k in reversed(range(s.scales))]
        return [v for v in sides if v >= s.min_side] or [side]

    def hypercolumns(self, x01: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """(1, 3, H, W) in [0, 1] -> (len(positions), 3 + channels): RGB and every layer's responses at the
        flat pixel indices ``positions``, each map read bilinearly as if resized to H x W (grid_sample at the
        pixel centres, borders clamped: the same values as resizing the map, without resizing it)."""
        side_h, side_w = x01.shape[-2:]
        rows, cols = positions // side_w, positions % side_w
        grid = torch.stack([(2 * cols + 1) / side_w - 1, (2 * rows + 1) / side_h - 1], -1).view(1, 1, -1, 2).to(x01)
        feats = self.vgg(x01 * 2 - 1, self.settings.layers)
        maps = [x01] + [feats[name] for name in self.settings.layers]
        sampled = [F.grid_sample(m, grid, mode="bilinear", padding_mode="border", align_corners=False) for m in maps]
        return torch.cat(sampled, 1)[0, :, 0].t()

    def objective(self, x01: torch.Tensor, content_cols: torch.Tensor, style: dict[str, torch.Tensor], alpha: float,
                  positions: torch.Tensor) -> torch.Tensor:
        """The loss of output ``x01`` at ``positions``: ``content_cols`` are A's hypercolumns at every position,
        ``style`` B's sampled hypercolumns ('cols') and their moments ('mean', 'cov')."""
        s = self.settings
        cols = self.hypercolumns(x01, positions)
        content = self_similarity_loss(cols, content_cols[positions])
        remd = relaxed_emd(cosine_distances(cols, style["cols"]))
        moment = (moment_loss(cols, (style["mean"], style["cov"]))
                  + palette_loss(cols[:, :3], style["cols"][:, :3]) / max(alpha, 1.0))
        return (alpha * content + remd + s.moment_weight * moment) / (alpha + 1 + s.moment_weight)

    def style_targets(self, b01: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        n = b01.shape[-2] * b01.shape[-1]
        positions = torch.randperm(n, generator=generator)[: self.settings.style_samples].to(self.device)
        with torch.no_grad():
            cols = self.hypercolumns(b01, positions)
        mean, cov = moments(cols)
        return {"cols": cols, "mean": mean, "cov": cov}

    def swap(self, structure: torch.Tensor, texture: torch.Tensor) -> torch.Tensor:
        check_pair(structure, texture)
        return torch.cat([self.swap_one(a[None], b[None]) for a, b in zip(structure, texture)])

    def swap_one(self, structure: torch.Tensor, texture: torch.Tensor) -> torch.Tensor:
        s = self.settings
        g = torch.Generator().manual_seed(s.seed)
        a01 = (structure.to(self.device).float() + 1) / 2
        b01 = (texture.to(self.device).float() + 1) / 2
        sides = self.sides(a01.shape[-1])
        alpha = s.content_weight
        self.history = []
        x = None
        for k, side in enumerate(sides):
            a_s, b_s = resize(a01, side), resize(b01, side)
            finest = laplacian_pyramid(a_s, 1)[0]
            if x is None:
                x = b_s.mean(dim=(2, 3), keepdim=True) + finest
            elif k < len(sides) - 1:
                x = up_to(x, a_s) + finest
            else:
                x = up_to(x, a_s)
            with torch.no_grad():
                content_cols = self.hypercolumns(a_s, torch.arange(side * side, device=self.device))
            style = self.style_targets(b_s, g)
            pyramid = [p.detach().requires_grad_(True) for p in laplacian_pyramid(x.detach(), s.pyramid_levels)]
            opt = torch.optim.RMSprop(pyramid, lr=s.final_lr if k == len(sides) - 1 and len(sides) > 1 else s.lr)
            n = side * side
            for _ in range(s.steps_per_scale):
                positions = torch.randperm(n, generator=g)[: s.output_samples].to(self.device)
                opt.zero_grad(set_to_none=True)
                loss = self.objective(collapse(pyramid), content_cols, style, alpha, positions)
                loss.backward()
                opt.step()
                self.history.append((k, float(loss.detach())))
            x = collapse(pyramid).detach()
            alpha /= 2
        return (x.clamp(0, 1) * 2 - 1).float().cpu()
