"""Settings of the StyleGAN2 baseline: the recipe section ``stylegan2``, declared by the generator and
trainer ``stylegan2`` and the W+ encoder ``sg2_pyramid`` when they register."""

from __future__ import annotations

from pydantic import Field

from swapbench.recipe import COUNT_LIMIT, WIDTH_LIMIT, Section


class StyleGAN2Config(Section):
    """Settings of the StyleGAN2 baseline (model.family 'stylegan2'); other families ignore them."""

    w_dim: int = Field(512, ge=1, le=WIDTH_LIMIT, description="Size of z and of the intermediate latent w.")
    mapping_layers: int = Field(8, ge=1, le=COUNT_LIMIT, description="Fully connected layers of the mapping network z -> w.")
    mapping_lr_mul: float = Field(0.01, ge=1e-4, le=1, description="Learning-rate multiplier of the mapping network "
                                  "(its weights start at N(0, 1) / this).")
    style_mixing: float = Field(0.9, ge=0, le=1, description="Probability that a training sample mixes two w at a random layer.")
    path_length: float = Field(2.0, ge=0, description="Path-length regularisation weight; 0 disables.")
    path_length_interval: int = Field(4, ge=1, description="Lazy path-length regularisation: every this many G steps.")
    path_length_decay: float = Field(0.01, gt=0, lt=1, description="Decay of the running mean path length.")
    w_avg_beta: float = Field(0.995, gt=0, lt=1, description="Decay of the tracked mean w used for truncation.")
