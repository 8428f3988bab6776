"""StyleGAN2 baselines for swapbench, registered into swapbench's registries as a plugin
(entry point ``swapbench.plugins``, see pyproject.toml):

- ``stylegan2``: generator and trainer (Karras et al. 2020) from swapbench's own layers;
- inversion methods ``sg2_w`` (StyleGAN2-ADA projector), ``sg2_wplus`` (Image2StyleGAN-style W+),
  ``sg2_encoder`` and ``sg2_encoder_opt`` (pSp-like encoder, then optional refinement), compared by
  ``swapbench project`` with the Swapping Autoencoder's one encoder pass (``sae``).
"""

from baselines import inversion, stylegan2, swaps  # noqa: F401  (registers the entries)
