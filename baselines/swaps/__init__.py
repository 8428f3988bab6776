"""Swap methods the Swapping Autoencoder paper compared its swaps with, registered into swapbench's
``swap_method`` registry: ``gatys`` (Gatys et al. 2016), ``strotss`` (Kolkin et al. 2019) and ``sg2_mix``
(StyleGAN2 style mixing after W+ inversion). ``swapbench swaps`` scores them beside ``sae``."""

from baselines.swaps import gatys, mixing, strotss  # noqa: F401  (registers the entries)
