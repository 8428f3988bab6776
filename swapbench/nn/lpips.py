"""LPIPS (Zhang et al. 2018) with the backbones it was calibrated on, resolved offline.

The ``lpips`` package's own network is used unchanged (its v0.1 linear layers ship inside it); only
the ImageNet backbone, which it would otherwise download through torchvision, comes from the
hash-checked file of :mod:`swapbench.weights`, converted once to safetensors in the cache.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from swapbench.cache import load_cached, save_cached
from swapbench.weights import WEIGHT_FILES, cache_dir, load_numpy_pickle, resolve

NETS = {"alex": ("lpips_alex", "AlexNet_0"), "vgg": ("lpips_vgg", "VGG16_0")}
# the smallest square side each backbone accepts (its strides and pools leave nothing below that)
MIN_SIDE = {"alex": 31, "vgg": 16}


def backbone_state(net: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """[(weight OIHW, bias)] of the backbone's convolutions in order, from the safetensors cache
    (written from the verified numpy pickle on first use)."""
    weight_name, root = NETS[net]
    converted = cache_dir() / f"{weight_name}_backbone.safetensors"
    tensors = load_cached(converted)  # None when absent or damaged (its contents are hashed)
    if tensors is None:
        path, _ = resolve(weight_name)
        tree = load_numpy_pickle(path)[root]
        tensors = {}
        for i in range(len(tree)):
            conv = tree[f"Conv_{i}"]
            tensors[f"conv{i}.weight"] = torch.from_numpy(conv["kernel"]).permute(3, 2, 0, 1).contiguous()
            tensors[f"conv{i}.bias"] = torch.from_numpy(conv["bias"]).contiguous()
        save_cached(converted, tensors, {"source_sha256": WEIGHT_FILES[weight_name].sha256})
    n = len(tensors) // 2
    return [(tensors[f"conv{i}.weight"], tensors[f"conv{i}.bias"]) for i in range(n)]


@functools.lru_cache(maxsize=None)
def _cpu_lpips(net: str) -> nn.Module:
    import warnings

    import lpips

    with warnings.catch_warnings():  # torchvision's note on its deprecated `pretrained` argument
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
    convs = [m for m in model.net.modules() if isinstance(m, nn.Conv2d)]
    state = backbone_state(net)
    if len(convs) != len(state):
        raise RuntimeError(f"LPIPS {net}: {len(convs)} backbone convs but {len(state)} converted weights")
    with torch.no_grad():
        for conv, (w, b) in zip(convs, state):
            conv.weight.copy_(w)
            conv.bias.copy_(b)
    return model.eval().requires_grad_(False)


def build_lpips(net: str = "vgg", device: torch.device | str = "cpu") -> nn.Module:
    """The ``lpips`` package's LPIPS network (inputs in [-1, 1]) with the calibrated backbone."""
    if net not in NETS:
        raise ValueError(f"LPIPS net must be one of {sorted(NETS)}, got {net!r}")
    import copy

    return copy.deepcopy(_cpu_lpips(net)).to(device)


class LpipsToTarget(nn.Module):
    """LPIPS from images to fixed ``targets``, with the targets' features computed once.

    An optimiser compares a changing image to the same target at every step; recomputing the
    target's backbone features each time would spend a third of each step on a constant (StyleGAN2-ADA's
    projector also computes them once). Same value as ``lpips_model(images, targets)``, per image
    as (N, 1, 1, 1)."""

    def __init__(self, lpips_model: nn.Module, targets: torch.Tensor):
        super().__init__()
        if lpips_model.version != "0.1" or not lpips_model.lpips or lpips_model.spatial:
            raise ValueError("LpipsToTarget reproduces LPIPS v0.1 with linear layers and a spatial mean "
                             "(what build_lpips returns); got another configuration")
        self.model = lpips_model
        with torch.no_grad():
            self.targets = [f.detach() for f in self._features(targets)]

    def _features(self, images: torch.Tensor) -> list[torch.Tensor]:
        from lpips import normalize_tensor

        return [normalize_tensor(f) for f in self.model.net(self.model.scaling_layer(images))]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        layers = zip(self.model.lins, self._features(images), self.targets)
        return sum(lin((f - t).square()).mean(dim=(2, 3), keepdim=True) for lin, f, t in layers)
