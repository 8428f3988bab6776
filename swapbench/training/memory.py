"""Will a recipe fit this machine? A dry run on the meta device estimates the peak memory of a training
step and of scoring from the recipe's shapes alone, before any data is read, any weight allocated or any
MLflow run created (``model.channels=1e9`` would otherwise be killed by the kernel while its networks are
built, ``train.batch_size=1e8`` would start a step that never ends).

Training: the family's networks are built on the meta device (shapes, no storage) and run one forward
and backward pass of what a training step runs (for the Swapping Autoencoder: E, G for reconstructions
and swaps, the image discriminator on real, reconstructed and swapped images, the patch discriminator on
its crops); autograd's saved-tensor hooks count every tensor kept for the backward pass (each storage
once), which with the weights and their gradients is the step's peak (torch's MemTracker, following
every allocation, gave within 6 % of this on the quickstart and reference_photos recipes, 3-4x slower).
Adam's two moments per parameter, the EMA copy of the scored network and the memory the process already
holds (Python, torch, the imported libraries) are added.

Scoring: the test images and what is made of them (reconstructions and swaps) held at once, and the
peaks of the scored network's and the Inception network's forward passes on one evaluation batch
without gradients, as MemTracker follows them on the meta device.

docs/reliability.md says how far the estimates are from measured peaks.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass

import torch

from swapbench.errors import UserError
from swapbench.recipe import Recipe

log = logging.getLogger(__name__)

FLOAT = 4  # bytes per float32 value: every network trains and scores in fp32 on the CPU
ADAM_MOMENTS = 2  # Adam keeps two values per parameter
INCEPTION_SIDE = 299  # the FID/KID/SIFID features' input side (clean-fid's resize)


@dataclass(frozen=True)
class Estimate:
    """Estimated peak bytes of one piece of work, and what it is made of (for the message)."""

    what: str
    bytes: int
    parts: dict[str, int]


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def available_memory(device: torch.device) -> int | None:
    """Bytes free for new allocations on ``device``: the CUDA card's free memory, or the host's
    MemAvailable (Linux; else the physical memory); None where it cannot be read."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    with contextlib.suppress(ValueError, OSError, AttributeError):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    return None


def _parameter_bytes(*modules: torch.nn.Module | None) -> int:
    return sum(p.numel() * p.element_size() for m in modules if m is not None for p in m.parameters())


def _kept_bytes(run) -> int:
    """Bytes of every tensor autograd keeps for the backward pass of ``run()`` (each storage once). On the
    meta device nothing is allocated; with gradients enabled this bounds what a plain forward pass holds."""
    kept: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        kept[storage._cdata] = storage.nbytes()  # one entry per storage, however many views autograd keeps
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        run()
    return sum(kept.values())


def _forward_peak(module: torch.nn.Module, run) -> int:
    """The peak bytes of ``run()``, a forward pass of ``module`` without gradients on the meta device, as
    torch's MemTracker follows every allocation and release (weights included)."""
    from torch.distributed._tools.mem_tracker import MemTracker

    tracker = MemTracker()
    tracker.track_external(module)
    with tracker, torch.no_grad():
        run()
    return int(tracker.get_tracker_snapshot("peak")[torch.device("meta")]["Total"])


def _tracked_peak(modules, run) -> int:
    """The networks' weights and gradients and what the backward pass of ``run()`` reads: the memory at
    the start of the backward pass, the peak of a training step."""
    return 2 * _parameter_bytes(*modules) + _kept_bytes(run)


def _networks(recipe: Recipe):
    """(scored network, image discriminator, patch discriminator or None), built on the meta device."""
    from swapbench.models.build import build_cooccur_discriminator, build_discriminator
    from swapbench.registry import MODELS

    with torch.device("meta"):
        scored = MODELS.get(recipe.model.family)(recipe)
        discriminator = build_discriminator(recipe)
        cooccur = build_cooccur_discriminator(recipe) if recipe.model.family == "swap_ae" else None
    return scored, discriminator, cooccur


def _images(n: int, side: int) -> torch.Tensor:
    return torch.empty(n, 3, side, side, device="meta")


def training_estimate(recipe: Recipe, baseline: int = 0) -> Estimate:
    """Peak bytes of one training step of ``recipe`` (one process's share of the batch), plus ``baseline``."""
    scored, D, cooccur = _networks(recipe)
    b, side = recipe.train.batch_size, recipe.data.resolution

    def step() -> None:  # one call per network, the parts of a batch concatenated
        x = _images(b, side).requires_grad_(True)  # R1 differentiates through the real images
        if recipe.model.family != "swap_ae":
            D(x).sum().backward()
            return
        structure, texture = scored.encode(x)
        fakes = scored.decode(torch.cat([structure, structure]), torch.cat([texture, texture.roll(1, dims=0)]))
        loss = D(torch.cat([x, fakes])).sum()  # real, reconstructions, swaps
        if cooccur is not None:
            co, p = recipe.cooccur, recipe.cooccur.patch_size
            swap_crops = torch.nn.functional.interpolate(fakes[b:], size=(p, p)).repeat(co.n_crops, 1, 1, 1)
            crops = torch.cat([_images(b * (co.n_ref + co.n_crops), p), swap_crops])
            features = cooccur.extract_features(crops.unsqueeze(1))
            ref, judged = features.split([b * co.n_ref, features.shape[0] - b * co.n_ref])
            ref = ref.view(b, co.n_ref, -1).mean(dim=1).repeat(2 * co.n_crops, 1)
            loss = loss + cooccur.discriminate(ref, judged).sum()
        loss.backward()

    tracked = _tracked_peak([scored, D, cooccur], step)
    weights = _parameter_bytes(scored, D, cooccur)
    parts = {"networks, gradients and activations": tracked,
             "Adam moments": ADAM_MOMENTS * weights,
             "EMA copy": _parameter_bytes(scored) if recipe.train.ema > 0 else 0,
             "the process so far": baseline}
    return Estimate("a training step", sum(parts.values()), parts)


def scoring_estimate(recipe: Recipe, baseline: int = 0) -> Estimate:
    """Peak bytes of scoring ``recipe``'s test split, plus ``baseline``."""
    scored, _D, _co = _networks(recipe)
    e, side = recipe.eval, recipe.data.resolution
    n = recipe.data.test_images

    def forward() -> None:  # the other families' scored networks take latents, not images: weights only
        if recipe.model.family == "swap_ae":
            scored(_images(e.batch_size, side))

    from torchvision.models import inception_v3

    with torch.device("meta"):  # torchvision's Inception v3 has the map sizes of the TF-ported FID network
        inception = inception_v3(weights=None, aux_logits=False, init_weights=False).eval()

    image = 3 * side * side * FLOAT
    parts = {"network and one batch": _forward_peak(scored, forward),
             "test images, reconstructions and swaps": (2 * n + e.swap_pairs) * image,
             "Inception and one batch": _forward_peak(inception, lambda: inception(_images(e.batch_size, INCEPTION_SIDE))),
             "the process so far": baseline}
    return Estimate("scoring", sum(parts.values()), parts)


def process_bytes() -> int:
    """This process's resident memory now (Linux: /proc/self/statm), 0 where it cannot be read."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return 0


def check_fits(recipe: Recipe, device: torch.device, *, training: bool = True, scoring: bool = True,
               baseline: int | None = None) -> list[Estimate]:
    """Refuse (one line, :class:`UserError`) a recipe whose training step or scoring cannot fit the free
    memory of ``device``; the estimates otherwise. Builds nothing but meta tensors. ``baseline``: the bytes
    already held (default: this process's resident memory on the CPU, 0 on a GPU)."""
    free = available_memory(device)
    if baseline is None:
        baseline = process_bytes() if device.type == "cpu" else 0
    estimates = []
    for wanted, estimate in ((training, training_estimate), (scoring, scoring_estimate)):
        if not wanted:
            continue
        try:
            e = estimate(recipe, baseline)
        except (RuntimeError, OverflowError, TypeError) as exc:
            text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if "overflow" not in text.lower():  # not a size past what torch can index
                if isinstance(exc, RuntimeError) and "meta" in text.lower():  # an operator without a meta kernel
                    log.info("no memory estimate of %s for %s: %s", estimate.__name__, recipe.name, text)
                    continue
                raise
            raise UserError(f"recipe {recipe.name}: its networks or batches are too large for torch to build "
                            f"({text[:120]}); use smaller settings") from None
        log.info("memory estimate of %s: %s (%s)", e.what, gib(e.bytes),
                 ", ".join(f"{k} {gib(v)}" for k, v in e.parts.items()))
        if free is not None and e.bytes > free:
            biggest = max(e.parts, key=e.parts.get)
            raise UserError(f"recipe {recipe.name} does not fit this machine: {e.what} needs about {gib(e.bytes)} "
                            f"(mostly {biggest}, {gib(e.parts[biggest])}) and {device.type} has {gib(free)} free; "
                            f"lower the batch size, widths, resolution or data.test_images")
        estimates.append(e)
    return estimates
