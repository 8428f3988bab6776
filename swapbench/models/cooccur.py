"""The co-occurrence patch discriminator: is this crop a patch of the same texture as those reference
patches? It is what makes the texture code carry texture (Park et al. 2020, Sec. 3.2)."""

from __future__ import annotations

import torch
from torch import nn

from swapbench.nn.layers import ConvLayer, EqualLinear, ResBlock, channel_table
from swapbench.registry import DISCRIMINATORS


@DISCRIMINATORS.register("cooccur", description="Co-occurrence patch discriminator (crop vs. averaged reference patches).")
class CooccurDiscriminator(nn.Module):
    """A patch encoder (1x1 stem, residual blocks down to 4x4, a 4x4 valid conv to a feature vector)
    shared by crops and references; the reference features of one texture image are averaged, and an
    MLP judges each crop feature jointly with that average."""

    def __init__(self, patch_size: int, channels: int, max_channels: int):
        super().__init__()
        ch = channel_table(patch_size, channels, max_channels, min_resolution=4)
        layers, res = [ConvLayer(3, ch[patch_size], 1)], patch_size
        while res > 4:
            layers.append(ResBlock(ch[res], ch[res // 2]))
            res //= 2
        feat = ch[4]
        layers.append(ConvLayer(feat, feat, 4, padding="valid"))
        self.encoder = nn.Sequential(*layers, nn.Flatten())
        self.classifier = nn.Sequential(
            EqualLinear(feat * 2, feat * 2, activate=True),
            EqualLinear(feat * 2, feat, activate=True),
            EqualLinear(feat, 1),
        )

    def encode(self, patches: torch.Tensor) -> torch.Tensor:
        """(B, n, C, p, p) -> (B, n, F)"""
        b, n = patches.shape[:2]
        return self.encoder(patches.flatten(0, 1)).view(b, n, -1)

    # -- the interface the trainer uses (features of crops, then a judgement against references) --
    def extract_features(self, patches: torch.Tensor, aggregate: bool = False) -> torch.Tensor:
        """(B, T, C, p, p) -> (B*T, F); with ``aggregate`` each image's T features become their mean."""
        b, t = patches.shape[:2]
        features = self.encoder(patches.flatten(0, 1))
        if aggregate:
            features = features.view(b, t, -1).mean(dim=1, keepdim=True).expand(-1, t, -1).reshape(b * t, -1)
        return features

    def discriminate(self, reference: torch.Tensor, judged: torch.Tensor) -> torch.Tensor:
        """Logits (B*T, 1): row i judges crop feature ``judged[i]`` against ``reference[i]``."""
        return self.classifier(torch.cat([judged, reference], dim=-1))

    def reference_features(self, reference: torch.Tensor) -> torch.Tensor:
        """(B, n_ref, C, p, p) -> (B, F): the averaged feature of each image's reference patches."""
        return self.encode(reference).mean(dim=1)

    def forward(self, crops: torch.Tensor, reference: torch.Tensor | None = None,
                reference_features: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, n) for crops (B, n, C, p, p) given references (B, n_ref, C, p, p) or their features."""
        if reference_features is None:
            if reference is None:
                raise ValueError("CooccurDiscriminator needs reference patches or reference_features")
            reference_features = self.reference_features(reference)
        f = self.encode(crops)
        r = reference_features[:, None].expand(-1, f.shape[1], -1)
        return self.classifier(torch.cat([f, r], dim=-1)).squeeze(-1)
