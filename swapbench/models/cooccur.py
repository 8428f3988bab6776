"""The co-occurrence patch discriminator: is this crop a patch of the same texture as those reference
patches? It is what makes the texture code carry texture (Park et al. 2020, Sec. 3.2)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import torch
from pydantic import Field
from torch import nn

from swapbench.models.widths import paper_patch_widths
from swapbench.nn.layers import ConvLayer, EqualLinear, ResBlock, channel_table
from swapbench.recipe import COUNT_LIMIT, WIDTH_LIMIT, Section
from swapbench.registry import DISCRIMINATORS


class CooccurConfig(Section):
    """Settings of patch discriminator 'cooccur' (recipe section ``cooccur``); the swap_ae trainer reads the
    crop settings too (it cuts the crops)."""

    patch_size: int = Field(128, ge=4, le=2048, description="Side the random crops are resized to (a power of two).")
    crop_min: float = Field(0.125, gt=0, le=1, description="Smallest crop side as a fraction of the image side.")
    crop_max: float = Field(0.25, gt=0, le=1, description="Largest crop side as a fraction of the image side.")
    n_crops: int = Field(8, ge=1, le=COUNT_LIMIT, description="Crops judged per swapped image.")
    n_ref: int = Field(4, ge=1, le=COUNT_LIMIT, description="Reference crops of the texture image averaged into one feature.")
    channels: int = Field(
        32, ge=1, le=WIDTH_LIMIT, description="Width of the patch discriminator at patch resolution (model.widths=uniform)."
    )
    # -- patch discriminator architecture (issue 13): the defaults are the authors'
    capacity: float = Field(
        4.0, gt=0, le=256, description="Patch discriminator width multiplier (authors' netPatchD_scale_capacity): "
        "1024 x this / side channels at each side (widths=paper)."
    )
    max_channels: int = Field(
        384, ge=1, le=WIDTH_LIMIT, description="Cap on the patch discriminator's width at 16 px and below, and width of "
        "its feature layers (authors' netPatchD_max_nc); the patch feature has 4 x this values (widths=paper)."
    )
    head: list[Annotated[int, Field(ge=1, le=WIDTH_LIMIT)]] = Field(
        [2048, 2048, 1024], min_length=1, description="Hidden widths of the MLP that judges a (reference, crop) "
        "feature pair (authors: 2048, 2048, 1024)."
    )


@DISCRIMINATORS.register("cooccur", settings=CooccurConfig,
                         description="Co-occurrence patch discriminator: patch features, "
                                     "then an MLP on (reference, crop) feature pairs.")
class CooccurDiscriminator(nn.Module):
    """A patch encoder shared by judged and reference crops (a 3x3 stem, residual blocks halving the
    side down to 4x4, a residual block doubling the width, an unpadded 3x3 conv to a 2x2 map,
    flattened to the patch feature), and an MLP that judges each crop's feature concatenated after
    its reference feature (the authors' ``StyleGAN2PatchDiscriminator``).

    ``widths="paper"``: 1024 x ``capacity`` / side channels, capped at ``max_channels`` from
    16 px down (authors: capacity 4, cap 384, so a 1536-value feature); ``"uniform"``:
    ``channel_table(channels, model_max_channels)`` (the cap of the image networks, model.max_channels).
    ``head`` lists the MLP's hidden widths.
    """

    def __init__(self, patch_size: int, channels: int = 32, model_max_channels: int = 512, widths: str = "paper",
                 capacity: float = 4.0, max_channels: int = 384, head: Sequence[int] = (2048, 2048, 1024),
                 resample: str = "fir"):
        super().__init__()
        if widths == "paper":
            ch = paper_patch_widths(patch_size, capacity, max_channels)
        else:
            ch = channel_table(patch_size, channels, model_max_channels, min_resolution=4)
        layers, res = [ConvLayer(3, ch[patch_size], 3)], patch_size
        while res > 4:
            layers.append(ResBlock(ch[res], ch[res // 2], resample=resample))
            res //= 2
        top = ch[4]
        layers.append(ResBlock(top, 2 * top, downsample=False, resample=resample))
        layers.append(ConvLayer(2 * top, top, 3, padding="valid"))
        self.encoder = nn.Sequential(*layers, nn.Flatten())
        self.feature_dim = top * 4
        mlp, width = [], 2 * self.feature_dim
        for hidden in head:
            mlp.append(EqualLinear(width, hidden, activate=True))
            width = hidden
        mlp.append(EqualLinear(width, 1))
        self.classifier = nn.Sequential(*mlp)

    def extract_features(self, patches: torch.Tensor) -> torch.Tensor:
        """patches (B, T, 3, p, p) -> features (B*T, F)."""
        return self.encoder(patches.flatten(0, 1))

    def discriminate(self, reference: torch.Tensor, judged: torch.Tensor) -> torch.Tensor:
        """reference, judged (B*T, F) -> logits (B*T, 1); row i judges crop i against reference i."""
        return self.classifier(torch.cat([reference, judged], dim=1))

    # -- conveniences over the two methods above (the trainer of this branch uses them) ---------
    def reference_features(self, reference: torch.Tensor) -> torch.Tensor:
        """(B, n_ref, C, p, p) -> (B, F): the mean feature of each image's reference patches."""
        b, n = reference.shape[:2]
        return self.extract_features(reference).view(b, n, -1).mean(dim=1)

    def forward(self, crops: torch.Tensor, reference: torch.Tensor | None = None,
                reference_features: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, n) for crops (B, n, C, p, p), each judged against the mean feature of its
        image's references (B, n_ref, C, p, p), or against given ``reference_features`` (B, F)."""
        if reference_features is None:
            if reference is None:
                raise ValueError("CooccurDiscriminator needs reference patches or reference_features")
            reference_features = self.reference_features(reference)
        b, n = crops.shape[:2]
        judged = self.extract_features(crops)
        ref = reference_features[:, None].expand(-1, n, -1).reshape(b * n, -1)
        return self.discriminate(ref, judged).view(b, n)
