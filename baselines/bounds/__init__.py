"""Bounds for the targets of issue 18: what the Swapping Autoencoder's networks reach in a budget when
they are given more than the unsupervised model gets (see each module)."""
