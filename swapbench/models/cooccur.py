"""The co-occurrence patch discriminator: is this crop a patch of the same texture as those reference
patches? It is what makes the texture code carry texture (Park et al. 2020, Sec. 3.2)."""

from __future__ import annotations

import torch
from torch import nn

from swapbench.models.widths import paper_patch_widths
from swapbench.nn.layers import ConvLayer, EqualLinear, ResBlock, channel_table
from swapbench.registry import DISCRIMINATORS


@DISCRIMINATORS.register("cooccur",
                         description="Co-occurrence patch discriminator: patch features, "
                                     "then an MLP on (reference, crop) feature pairs.")
class CooccurDiscriminator(nn.Module):
    """A patch encoder shared by judged and reference crops (a 3x3 stem, residual blocks halving the
    side down to 4x4, a residual block doubling the width, an unpadded 3x3 conv to a 2x2 map,
    flattened to the patch feature), and an MLP that judges each crop's feature concatenated after
    its reference feature (the authors' ``StyleGAN2PatchDiscriminator``).

    ``widths="paper"``: 1024 x ``capacity`` / side channels, capped at ``cooccur_max_channels`` from
    16 px down (authors: capacity 4, cap 384, so a 1536-value feature); ``"uniform"``:
    ``channel_table(channels, max_channels)``. ``head`` lists the MLP's hidden widths.
    """

    def __init__(self, patch_size: int, channels: int = 32, max_channels: int = 512, widths: str = "paper",
                 capacity: float = 4.0, cooccur_max_channels: int = 384, head: tuple[int, ...] = (2048, 2048, 1024),
                 resample: str = "fir"):
        super().__init__()
        if widths == "paper":
            ch = paper_patch_widths(patch_size, capacity, cooccur_max_channels)
        else:
            ch = channel_table(patch_size, channels, max_channels, min_resolution=4)
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
