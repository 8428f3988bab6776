"""Settings of the style-transfer swap methods, ``gatys.*`` and ``strotss.*`` for ``swapbench swaps --set``
(tool settings like ``swapbench project``'s, not training-recipe sections: a recipe's hash does not
depend on them). ``sg2_mix`` reads the inversion baselines' recipe section ``inversion`` (its W+
optimiser and ``inversion.crossover``). Defaults are the published ones; docs/swaps.md lists where a
CPU run departs from them."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from swapbench.recipe import Section


class GatysConfig(Section):
    """Gatys, Ecker and Bethge, "Image Style Transfer Using Convolutional Neural Networks", CVPR 2016."""

    content_layer: str = Field("relu4_2", description="VGG-16 layer whose responses to A the output keeps (paper: conv4_2).")
    style_layers: list[str] = Field(["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"],
                                    description="Layers whose Gram matrices match B's (paper: conv1_1 ... conv5_1).")
    style_layer_weights: list[float] | None = Field(None, description="w_l per style layer; null: 1/len each (paper).")
    content_weight: float = Field(1.0, gt=0, description="alpha of alpha L_content + beta L_style.")
    style_weight: float = Field(1e3, gt=0, description="beta (paper: alpha/beta = 1e-3 in its main figures).")
    optimizer: Literal["lbfgs", "adam"] = Field("lbfgs", description="L-BFGS (paper) or Adam.")
    steps: int = Field(500, ge=1, description="Loss evaluations (L-BFGS function evaluations, or Adam steps).")
    lbfgs_history: int = Field(100, ge=1, description="L-BFGS history size.")
    adam_lr: float = Field(0.02, gt=0, description="Adam's learning rate, in [-1, 1] pixel units.")
    init: Literal["structure", "noise"] = Field("structure", description="Start from A, or from white noise (paper's figures).")
    pool: Literal["avg", "max"] = Field("avg", description="VGG pooling (paper: average pooling instead of max-pooling).")


class StrotssConfig(Section):
    """Kolkin, Salavon and Shakhnarovich, "Style Transfer by Relaxed Optimal Transport and Self-Similarity",
    CVPR 2019, with the defaults of the authors' code (nkolkin13/STROTSS)."""

    scales: int = Field(4, ge=1, description="Scales, coarse to fine, each twice the side of the one before, the last at "
                                            "the image's side (authors: 4, long sides 64 to 512); fewer where a scale "
                                            "would be below min_side.")
    min_side: int = Field(16, ge=16, description="Smallest scale side (VGG-16's four pools need 16 px).")
    steps_per_scale: int = Field(250, ge=1, description="RMSprop steps at each scale (authors: 250).")
    lr: float = Field(2e-3, gt=0, description="RMSprop lr on the Laplacian pyramid, [0, 1] pixels (authors: 2e-3).")
    final_lr: float = Field(1e-3, gt=0, description="Learning rate at the last (finest) scale (authors: 1e-3).")
    pyramid_levels: int = Field(5, ge=1, description="Levels of the Laplacian pyramid that is optimised (authors: 5).")
    content_weight: float = Field(16.0, gt=0, description="Content weight at the first scale, halved at each next one "
                                                          "(authors: 1.0 x 16).")
    moment_weight: float = Field(1.0, ge=0, description="Weight of the moment-matching term (authors: 1).")
    layers: list[str] = Field(["relu1_1", "relu1_2", "relu2_1", "relu2_2", "relu3_1", "relu3_2", "relu3_3", "relu4_3",
                               "relu5_3"], description="VGG-16 layers of the hypercolumn, besides RGB (authors' list).")
    style_samples: int = Field(1000, ge=2, description="Positions of B whose hypercolumns are the style, per scale.")
    output_samples: int = Field(1024, ge=2, description="Positions of the output (and A) per step (authors: 32^2).")
    seed: int = Field(0, description="Seed of the sampled positions.")
