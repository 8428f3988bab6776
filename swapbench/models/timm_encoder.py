"""An encoder built on any timm backbone, for the "swap the encoder through the registry" ablation."""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from swapbench.errors import UserError
from swapbench.nn.layers import ConvLayer, EqualLinear
from swapbench.recipe import Section
from swapbench.registry import ENCODERS


class TimmConfig(Section):
    """Settings of encoder 'timm' (recipe section ``timm``)."""

    backbone: str = Field("resnet18", description="timm model for encoder 'timm' (random init, features_only).")
    weights: str | None = Field(
        None, description="Local safetensors state dict for the 'timm' encoder's backbone; null: random init."
    )


@ENCODERS.register("timm", settings=TimmConfig,
                   description="A timm backbone (features_only, random init) with the SAE's structure and texture heads.")
class TimmEncoder(nn.Module):
    """The backbone's feature map at 1/``structure_downsample`` of the image side feeds a structure
    head (two 1x1 convs) and a texture head (global average pooling and a linear layer).

    ``timm.backbone`` names the timm model. Weights are randomly initialised: nothing is downloaded;
    ``timm.weights`` may name a local safetensors file of the backbone's state dict.
    """

    def __init__(self, structure_channels: int, structure_downsample: int, texture_dim: int,
                 backbone: str = "resnet18", weights: str | None = None):
        super().__init__()
        import timm

        if not timm.is_model(backbone):
            raise UserError(f"timm has no model '{backbone}'; set timm.backbone to a name from timm.list_models()")
        probe = timm.create_model(backbone, pretrained=False, features_only=True)
        reductions = probe.feature_info.reduction()
        if structure_downsample not in reductions:
            raise UserError(f"backbone {backbone} has feature maps at 1/{reductions} of the side, not "
                            f"1/{structure_downsample}; set model.structure_downsample to one of those")
        index = reductions.index(structure_downsample)
        self.backbone = timm.create_model(backbone, pretrained=False, features_only=True, out_indices=(index,))
        if weights:
            from safetensors.torch import load_file

            self.backbone.load_state_dict(load_file(weights), strict=False)
        ch = probe.feature_info.channels()[index]
        self.structure_head = nn.Sequential(ConvLayer(ch, ch, 1), ConvLayer(ch, structure_channels, 1, activate=False))
        self.texture_head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), EqualLinear(ch, texture_dim))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.backbone(image)[0]
        return self.structure_head(features), self.texture_head(features)
