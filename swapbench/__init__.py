"""swapbench: a research benchmark suite for the Swapping Autoencoder (Park et al., NeurIPS 2020)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("swapbench")
except PackageNotFoundError:  # running from a checkout without an install
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
