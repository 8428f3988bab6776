"""Settings of the inversion baselines: the recipe section ``inversion``, declared by the optimisers
``sg2_w``, ``sg2_wplus``, ``sg2_wplus_i2s``, the encoder methods and the ``sg2_encoder`` trainer when they
register. ``swapbench project`` builds it with its defaults (and ``--steps``)."""

from __future__ import annotations

from pydantic import Field, field_validator

from swapbench.recipe import COUNT_LIMIT, Section


class InversionConfig(Section):
    """Finding latents for given images: the optimisers of baselines/ and the sg2_encoder's generator."""

    generator: str | None = Field(
        None, description="MLflow run id or checkpoint of a trained 'stylegan2' recipe (sg2_encoder training needs it)."
    )
    steps: int = Field(1000, ge=1, le=1_000_000,
        description="Optimisation steps of sg2_w / sg2_wplus (StyleGAN2-ADA's projector: 1000).")
    lr: float = Field(0.1, gt=0, le=10, description="Peak Adam learning rate of the optimisers.")
    betas: tuple[float, float] = Field((0.9, 0.999), description="Adam betas of the optimisers.")
    lr_rampup: float = Field(0.05, ge=0, le=1, description="Fraction of steps of linear learning-rate warm-up.")
    lr_rampdown: float = Field(0.25, ge=0, le=1, description="Fraction of steps of cosine learning-rate ramp-down.")
    w_avg_samples: int = Field(10_000, ge=2, le=1_000_000,
        description="Mapped samples that give the starting mean w and w's std.")
    initial_noise: float = Field(0.05, ge=0, description="Latent noise at step 0, as a multiple of w's std.")
    noise_ramp: float = Field(0.75, gt=0, le=1, description="Fraction of steps after which the latent noise is 0.")
    noise_reg: float = Field(1e5, ge=0, description="Weight of the noise-map autocorrelation penalty.")
    wplus_mse: float = Field(1.0, ge=0, description="sg2_wplus, sg2_wplus_i2s: MSE weight added to LPIPS (Image2StyleGAN).")
    image2stylegan_lr: float = Field(0.01, gt=0, le=10,
        description="sg2_wplus_i2s: constant Adam learning rate (Image2StyleGAN: 0.01).")
    image2stylegan_steps: int = Field(5000, ge=1, le=1_000_000,
        description="sg2_wplus_i2s: optimisation steps (Image2StyleGAN: 5,000).")
    refine_steps: int = Field(100, ge=1, le=1_000_000, description="sg2_encoder_opt: W+ optimisation steps after the encoder.")
    crossover: int | None = Field(
        None, ge=1, le=COUNT_LIMIT, description="Style-mixing swaps take w layers below this from A, the rest from B; null: "
        "half the layers."
    )
    lpips_side: int = Field(
        256, ge=16, le=2048, description="Images larger than this are area-downsampled before LPIPS (ADA's projector)."
    )

    @field_validator("betas")
    @classmethod
    def _betas(cls, betas: tuple[float, float]) -> tuple[float, float]:
        if not all(0 <= b < 1 for b in betas):
            raise ValueError("Adam betas must lie in [0, 1)")
        return betas
