"""Training: the shared loop, the swap_ae step, optimisers, losses, checkpoints, multi-process."""
