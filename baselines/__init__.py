"""StyleGAN2 baselines for swapbench: the StyleGAN2 generator and the GAN-inversion methods
(W projection, W+ optimisation, encoder-based inversion) that the Swapping Autoencoder's one-pass
encoder is compared against. They register into swapbench's registries like any built-in.

Not built yet: this package is reserved by the project's layout and filled by the baselines work.
"""
