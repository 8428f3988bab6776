"""A supervised bound on the synthetic swap score: what a recipe's encoder and generator reach in a CPU
budget when they are *told* the answer.

On the synthetic data the true swap render(layout(A), style(B)) is known. Here E and G are trained on it
directly, no discriminators: for random training layouts and styles, A = render(layout_a, style_a),
B = render(layout_b, style_b) and the target T = render(layout_a, style_b); the loss is L1 + LPIPS-AlexNet
of G(s(A), t(B)) against T plus the same of G(s(A), t(A)) against A. An unsupervised Swapping Autoencoder
gets strictly less information, so where this bound stays above a target score after a budget, that
network at that budget cannot meet the target whatever its unsupervised objective (issue 18).

The model is scored by swapbench's evaluator on the recipe's own test pairs (gt_swap_lpips with the
copy and truth_flat controls, reconstruction with its thumbnail control) and logged to MLflow as a run
of experiment ``bounds`` with the recipe, the budget and the training curve.

    python -m baselines.bounds.supervised_swap reference_synthetic --cpu-seconds 1800 --threads 1
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from swapbench.data import synthetic
from swapbench.errors import UserError
from swapbench.recipe import Recipe, load_recipe
from swapbench.runtime import process_cpu_seconds

METRICS = ["gt_swap_lpips", "gt_swap_psnr", "recon_lpips_vgg", "recon_psnr"]


def supervised_batch(n: int, resolution: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """(A, B, T) for ``n`` random training layouts and styles: T has A's layout and B's style."""
    layouts_a, layouts_b = torch.randint(synthetic.TRAIN_LAYOUTS, (2, n), generator=generator).tolist()
    styles_a, styles_b = torch.randint(synthetic.TRAIN_STYLES, (2, n), generator=generator).tolist()
    la, lb = synthetic.layouts("train", layouts_a), synthetic.layouts("train", layouts_b)
    sa, sb = synthetic.styles("train", styles_a), synthetic.styles("train", styles_b)
    return (synthetic.render(la, sa, resolution), synthetic.render(lb, sb, resolution),
            synthetic.render(la, sb, resolution))


def train(recipe: Recipe, cpu_seconds: float, log_every: int = 100) -> tuple[torch.nn.Module, dict]:
    """E and G of ``recipe`` trained on the true swap until ``cpu_seconds`` of process CPU time."""
    from swapbench.models.build import build_autoencoder
    from swapbench.registry import LOSSES

    torch.manual_seed(recipe.seed)
    model = build_autoencoder(recipe)
    optim = torch.optim.Adam(model.parameters(), lr=recipe.optim.lr, betas=tuple(recipe.optim.betas))
    lpips = LOSSES.build("lpips", net="alex").requires_grad_(False)
    batches = torch.Generator().manual_seed(recipe.seed)
    distance = lambda out, target: (out - target).abs().mean() + lpips(out, target).mean()  # noqa: E731
    start, images, curve = process_cpu_seconds(), 0, []
    while process_cpu_seconds() - start < cpu_seconds:
        a, b, truth = supervised_batch(recipe.train.batch_size, recipe.data.resolution, batches)
        structure_a, texture_a = model.encode(a)
        texture_b = model.encode(b).texture
        loss = distance(model.decode(structure_a, texture_b), truth) + distance(model.decode(structure_a, texture_a), a)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        images += a.shape[0]
        if (images // a.shape[0]) % log_every == 0:
            curve.append({"images": images, "cpu_seconds": process_cpu_seconds() - start, "loss": float(loss.detach())})
    return model.eval(), {"images": images, "cpu_seconds": process_cpu_seconds() - start, "curve": curve}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recipe", help="a synthetic-data recipe (name or path)")
    parser.add_argument("--cpu-seconds", type=float, required=True, help="process CPU time to train for")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="recipe override key=value")
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from swapbench.evaluation.evaluate import build_context, evaluate
    from swapbench.tracking import open_run

    recipe = load_recipe(args.recipe, args.overrides)
    if recipe.data.dataset != "synthetic":
        raise UserError(f"recipe {recipe.name} trains on {recipe.data.dataset}; the supervised bound needs the "
                        f"synthetic data's true swap: use a synthetic recipe or --set data.dataset=synthetic")
    if args.threads:
        torch.set_num_threads(args.threads)
    recipe = recipe.model_validate({**recipe.to_dict(), "tracking": {**recipe.tracking.model_dump(), "experiment": "bounds"}})
    with open_run(recipe, tags={"swapbench.variant": "supervised_swap_bound",
                                "swapbench.bound": "E and G trained on the true swap (baselines/bounds/supervised_swap.py)",
                                "swapbench.threads": str(torch.get_num_threads())}) as tracker:
        began = time.time()
        model, info = train(recipe, args.cpu_seconds)
        tracker.log_metrics({"train/cpu_seconds": info["cpu_seconds"], "train/images_seen": info["images"],
                             "train/wall_seconds": time.time() - began})
        for point in info["curve"]:
            tracker.log_metrics({"train/loss": point["loss"]}, step=point["images"])
        scores = evaluate(build_context(model, recipe, torch.device("cpu")), METRICS)
        tracker.log_metrics(scores)
    shown = ["gt_swap_lpips", "control/copy_a/gt_swap_lpips", "control/copy_b/gt_swap_lpips",
             "control/truth_flat/gt_swap_lpips", "recon_lpips_vgg"]
    print(f"{info['images']} images in {info['cpu_seconds']:.0f} CPU s: "
          + ", ".join(f"{k} {scores[k]:.3f}" for k in shown if k in scores))
    return 0


if __name__ == "__main__":
    sys.exit(main())
