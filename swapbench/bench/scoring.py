"""Scoring rows: end-to-end seconds of each registered score through the evaluator, against the bare
forward passes of the same networks on the same tensors, and the Frechet/kernel distance alone.

End to end: a fresh :class:`~swapbench.evaluation.evaluate.EvalContext` per score and ``evaluate(ctx, [score])``,
exactly what ``swapbench evaluate`` runs (after a first call of all scores together, which loads the
networks and fills the real-image feature cache; that first call is its own row). Bare: the model's
own forward pass the score needs (reconstructions, swaps or samples) plus the score network's forward
pass on exactly the tensors it judges (Inception at 299 px on the swaps, conv_4 at the image's own
size, LPIPS on the image pairs), with everything else (resizing, uint8 rounding, statistics, the
real-image features, which come from the cache in the timed call) prepared untimed. The ratio is the
overhead a score adds over its networks."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from swapbench.experiments.runs import TrainedRun
from swapbench.recipe import BenchConfig

SCORE_COLUMNS = ("score", "n", "end_to_end_seconds", "bare_seconds", "vs_bare", "model_seconds",
                 "network_seconds", "networks", "note")
# score -> (the model's pass it needs, the score network on its inputs); None: no score network
BARE_PASSES: dict[str, tuple[str, str | None]] = {
    "recon_l1": ("reconstruct", None), "recon_psnr": ("reconstruct", None),
    "recon_lpips_alex": ("reconstruct", "lpips_alex"), "recon_lpips_vgg": ("reconstruct", "lpips_vgg"),
    "swap_fid": ("swap", "inception_pool"), "swap_kid": ("swap", "inception_pool"),
    "swap_fid_vs_structure": ("swap", "inception_pool"), "sifid": ("swap", "inception_conv4"),
    "gt_swap_lpips": ("swap", "lpips_vgg"), "gt_swap_psnr": ("swap", None),
    "sample_fid": ("sample", "inception_pool"), "sample_kid": ("sample", "inception_pool"),
}


def _seconds(fn: Callable[[], Any]) -> float:
    """Wall seconds of ``fn``, queued GPU work included (synchronised before and after)."""
    from swapbench.bench.machine import synchronize

    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def score_model_and_recipe(settings: BenchConfig, run: TrainedRun | None, threads: int):
    """(model in eval mode, recipe, description): a run's scored network, or a fresh one."""
    from swapbench.experiments.runs import load_run
    from swapbench.registry import MODELS

    if run is not None:
        model, recipe, _ = load_run(run)
        described = f"run {run.ref}"
    else:
        from swapbench.bench.training import bench_recipe

        recipe = bench_recipe(settings.score_recipe, [f"train.threads={threads}"])
        model = MODELS.get(recipe.model.family)(recipe).eval()
        described = f"fresh (untrained) {recipe.name}, {recipe.data.dataset} test images"
    if settings.score_images is not None:
        recipe = recipe.with_test_images(settings.score_images)
    return model, recipe, described


def _context(model, recipe, device, test_set, images, pairs):
    """The context `swapbench evaluate` builds: the scored sources, the pairs and the held-out reference."""
    from swapbench.evaluation.evaluate import build_context

    return build_context(model.to(device), recipe, device, test_set, pairs, images)


def _uint8_values(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> float [0, 255] rounded as a saved image is (what the score networks receive)."""
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round()


class BarePasses:
    """The bare forward passes of one score's networks; inputs prepared once, untimed."""

    def __init__(self, ctx):
        self.ctx = ctx

    def model_pass(self, kind: str) -> Callable[[], Any]:
        ctx, model = self.ctx, self.ctx.model
        if kind == "reconstruct":
            return lambda: ctx.batched(model.reconstruct, ctx.images)
        if kind == "swap":
            a, b = ctx.images[ctx.structure_indices], ctx.images[ctx.texture_indices]
            return lambda: ctx.batched(model.swap, a, b)
        return lambda: model.sample(ctx.n, seed=ctx.recipe.eval.pairs_seed, batch_size=ctx.batch_size)

    def judged(self, kind: str, score: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(images the score judges, what they are compared with) for the network's input."""
        ctx = self.ctx
        if kind == "reconstruct":
            return ctx.reconstructions, ctx.images
        if kind == "sample":
            return ctx.samples, ctx.images
        other = ctx.gt_swaps if score.startswith("gt_swap") else ctx.images[ctx.texture_indices]
        return ctx.swaps, other

    def network_pass(self, network: str, judged: torch.Tensor, other: torch.Tensor) -> Callable[[], Any]:
        ctx, bs = self.ctx, self.ctx.batch_size
        if network.startswith("lpips_"):
            net = network.removeprefix("lpips_")
            ctx.lpips(net)  # built untimed
            return lambda: ctx.lpips_distance(net, judged, other)
        layers = ctx.inception.layers
        device = next(layers.parameters()).device  # the inputs are placed on it untimed
        if network == "inception_pool":  # the 299 px inputs, resized untimed
            x = F.interpolate(_uint8_values(judged), size=(299, 299), mode="bicubic", align_corners=False).to(device)
            return lambda: _batched_no_grad(lambda t: layers((t - 128) / 128), x, bs)
        from swapbench.evaluation.metrics.inception import CONV4_LAYERS

        both = torch.cat([_uint8_values(judged), _uint8_values(other)]).to(device)

        def conv4(t):
            h = (t - 128) / 128
            for name in CONV4_LAYERS:
                h = getattr(layers, name)(h)
            return h

        return lambda: _batched_no_grad(conv4, both, bs)


@torch.no_grad()
def _batched_no_grad(fn, x: torch.Tensor, batch_size: int) -> None:
    for i in range(0, x.shape[0], batch_size):
        fn(x[i : i + batch_size])


def score_rows(settings: BenchConfig, device: torch.device, threads: int,
               run: TrainedRun | None = None) -> tuple[list[dict], str]:
    """(rows, what was scored)."""
    from swapbench.data import test_images
    from swapbench.data.pairs import draw_pairs
    from swapbench.evaluation.evaluate import applicable, evaluate, held_out_split, metric_names

    model, recipe, described = score_model_and_recipe(settings, run, threads)
    requested = settings.score_metrics
    names = applicable(metric_names(requested), model, requested)
    test_set, _ = held_out_split(recipe)  # the sources, then the held-out reference (as the pipeline builds it)
    images = test_images(recipe, test_set)
    pairs = draw_pairs(recipe.eval.swap_pairs, images.shape[0], recipe.eval.pairs_seed)
    new_ctx = lambda: _context(model, recipe, device, test_set, images, pairs)  # noqa: E731

    rows = []
    first = {}
    seconds = _seconds(lambda: first.update(evaluate(new_ctx(), names)))
    rows.append({"score": "all (first call)", "n": images.shape[0], "end_to_end_seconds": seconds,
                 "note": "every score together in one context, as `swapbench evaluate` runs them; loads the "
                         "score networks and fills the real-image feature cache when not done before"})
    for name in names:
        if name not in first:  # e.g. the ground-truth scores, which only the synthetic data can give
            rows.append({"score": name, "note": "gives no value on this data; not timed"})
            continue
        end_to_end = _seconds(lambda name=name: evaluate(new_ctx(), [name]))
        row = {"score": name, "n": first.get(f"{name}_n", images.shape[0]), "end_to_end_seconds": end_to_end}
        if name not in BARE_PASSES:
            rows.append({**row, "note": "no bare pass is defined for this score in swapbench.bench.scoring"})
            continue
        kind, network = BARE_PASSES[name]
        bare = BarePasses(new_ctx())
        model_seconds = _seconds(bare.model_pass(kind))
        network_seconds = 0.0
        if network is not None:
            judged, other = bare.judged(kind, name)  # computed untimed
            network_seconds = _seconds(bare.network_pass(network, judged, other))
        total = model_seconds + network_seconds
        rows.append({**row, "bare_seconds": total, "vs_bare": end_to_end / total if total > 0 else None,
                     "model_seconds": model_seconds, "network_seconds": network_seconds,
                     "networks": f"{kind}" + (f" + {network}" if network else ""), "note": ""})
    rows += distance_rows(settings, new_ctx, names)
    return [{c: r.get(c) for c in SCORE_COLUMNS} for r in rows], described


def distance_rows(settings: BenchConfig, new_ctx, names: list[str]) -> list[dict]:
    """The Frechet distance (FID) and the kernel distance (KID) alone, on the swap and real features."""
    swap_scores = {"swap_fid", "swap_kid", "swap_fid_vs_structure"} & set(names)
    if not swap_scores:
        return [{"score": s, "note": "no swap score was timed"} for s in ("fid_alone", "kid_alone")]
    from swapbench.evaluation.metrics.distances import frechet_distance, kernel_distance

    ctx = new_ctx()
    fake, real = ctx.swap_features, ctx.real_features  # untimed
    n = f"{len(fake)} vs {len(real)}"
    kid = {"score": "kid_alone", "n": len(fake), "end_to_end_seconds": _seconds(lambda: kernel_distance(fake, real)),
           "note": f"swapbench.evaluation.metrics.distances.kernel_distance on {n} features of {fake.shape[1]} dims"}
    if not settings.fid_alone:
        fid = {"score": "fid_alone", "n": len(fake), "note": "not timed (bench setting fid_alone is off)"}
    else:
        fid = {"score": "fid_alone", "n": len(fake), "end_to_end_seconds": _seconds(lambda: frechet_distance(fake, real)),
               "note": f"swapbench.evaluation.metrics.distances.frechet_distance on {n} features of {fake.shape[1]} dims"}
    return [fid, kid]
