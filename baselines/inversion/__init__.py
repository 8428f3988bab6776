"""StyleGAN2 inversion methods registered in swapbench's ``inversion`` registry: ``sg2_w``,
``sg2_wplus`` (optimisation), ``sg2_encoder``, ``sg2_encoder_opt`` (learned encoder), and the
``sg2_encoder`` trainer and ``sg2_pyramid`` encoder."""

from baselines.inversion import encoder, projector  # noqa: F401  (registers the entries)
