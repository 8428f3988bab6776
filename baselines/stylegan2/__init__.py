"""StyleGAN2 (Karras et al., CVPR 2020) for swapbench: generator ``stylegan2`` and trainer ``stylegan2``.

The discriminator is swapbench's own ``stylegan2`` discriminator; every layer comes from
:mod:`swapbench.nn.layers`.
"""

from baselines.stylegan2 import generator, trainer  # noqa: F401  (registers the entries)
