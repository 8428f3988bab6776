"""The LPIPS network moved to :mod:`swapbench.nn.lpips` (the training loss and the recipe's checks use it
too, below the scores); this old path still works for code outside swapbench that imports it."""

from swapbench.nn.lpips import MIN_SIDE, NETS, LpipsToTarget, backbone_state, build_lpips  # noqa: F401
