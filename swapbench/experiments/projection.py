"""``swapbench project``: how fast, and how well, each inversion method finds the latent code of the
same N test images, on the same device with the same threads.

Every method inverts one image per call (batch size 1), after one untimed warm-up call. Seconds per
image count only the search for the latent (see :mod:`swapbench.inversion`). Reconstructions and
style-mixing swaps (A's coarse layers or structure, B's fine layers or texture) of every method are
then scored by the same registered metrics as a trained model, on the same pairs. The optimisers also
record LPIPS after 10, 30, 100, 300 and 1000 steps: the quality-vs-steps curve.

One MLflow run (experiment ``projection``) holds the table (markdown and csv), the curve, a strip of
reconstructions per method, the pairs, and every number as metrics named ``<method>.<score>``.
"""

from __future__ import annotations

import inspect
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from swapbench.data import data_differences
from swapbench.errors import UserError
from swapbench.experiments.cells import with_interval
from swapbench.experiments.runs import TrainedRun, check_all_used, load_run, run_of
from swapbench.inversion import default_methods, inversion_settings, speed_reference
from swapbench.recipe import Recipe
from swapbench.registry import INVERSIONS, METRICS

# the groups of registered scores in the table (each score that applies to an inverted image and to the
# data): swap realism always comes with texture-transfer and structure scores, and the controls are rows of
# the same table
GROUPS = ("reconstruction", "realism", "texture", "structure", "truth")
EXPERIMENT = "projection"


@dataclass
class MethodResult:
    name: str
    steps: int | None
    seconds: list[float]
    reconstructions: torch.Tensor
    latents: list[Any]
    curve: dict[int, list[float]] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)
    flops: float | None = None  # of finding one image's latent (see search_flops)

    def row(self, sae_median: float | None) -> dict[str, Any]:
        s = np.asarray(self.seconds)
        q25, q50, q75 = np.percentile(s, [25, 50, 75])
        return {"method": self.name, "steps": self.steps if self.steps is not None else "1 pass",
                "seconds_per_image": float(q50), "seconds_iqr": float(q75 - q25),
                "gflop_per_image": self.flops / 1e9 if self.flops is not None else None,
                **score_cells(self.scores),
                "sae_speedup": float(q50 / sae_median) if sae_median else None}

    def control_rows(self, copies: bool) -> list[dict[str, Any]]:
        """Reference rows: recon_a of this method and, with ``copies``, copy_a and copy_b (the same for
        every method: same images, same pairs)."""
        controls = (["copy_a", "copy_b"] if copies else []) + ["recon_a"]
        rows = []
        for c in controls:
            prefix = f"control/{c}/"
            scores = {k[len(prefix):]: v for k, v in self.scores.items() if k.startswith(prefix)}
            if scores:
                label = f"control: {c}" + (f" ({self.name})" if c == "recon_a" else "")
                rows.append({"method": label, "steps": "-", **score_cells(scores)})
        return rows


def table_scores() -> list[str]:
    """The registered scores of the table's :data:`GROUPS`, group by group."""
    return [name for group in GROUPS for name in METRICS.in_group(group)]


def score_cells(scores: dict[str, float]) -> dict[str, float]:
    """The table's scores with their intervals (<score>_ci_low, <score>_ci_high)."""
    return {k: scores[k] for s in table_scores() for k in (s, f"{s}_ci_low", f"{s}_ci_high") if k in scores}


def load_method(name: str, runs: dict[str, TrainedRun], settings: Any,
                device: torch.device) -> tuple[Any, Recipe, str]:
    """(method object, recipe of the run it uses, that run's reference); ``runs``: the trained runs by
    model family (:func:`swapbench.experiments.runs.runs_by_family`)."""
    cls = INVERSIONS.get(name)
    run = run_of(runs, cls.needs, f"method '{name}'")
    model, recipe, _ = load_run(run)
    return cls(model, settings, device), recipe, run.ref


def check_same_data(recipes: dict[str, Recipe]) -> Recipe:
    """Every run must have been trained and tested on the same data at the same resolution."""
    names = list(recipes)
    first = recipes[names[0]]
    for other in names[1:]:
        differ = data_differences(recipes[other], first, ignore=("test_images",))  # --n sets the count
        if differ:
            raise UserError(f"the runs for {names[0]} and {other} use different data (data.{', data.'.join(differ)}); "
                            "project compares methods on the same test images, so train them on the same data")
    return first


def _counted_flops(fn) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def search_flops(method: Any, image: torch.Tensor) -> float:
    """FLOPs of finding the latent of one image, counted like the timing: the search alone, without
    the final decode and without the quality checkpoints of the curve. Counted by torch's
    FlopCounterMode: convolutions and matrix products, forward and backward (element-wise work is not
    counted).

    Only the public interface is used: the FLOPs of ``invert`` minus those of one decode
    (``swap(latents, latents)`` decodes exactly as the final reconstruction does). An optimiser's
    work per step is the same at every step, so it is counted at 1 and 2 steps (before the first
    curve checkpoint) and f(steps) = f(1) + (steps - 1) (f(2) - f(1)). The global random state is
    left as it was, so counting does not change what the methods measured after it draw."""

    def one(**kwargs) -> float:
        holder = {}
        total = _counted_flops(lambda: holder.setdefault("inv", method.invert(image, **kwargs)))
        if holder["inv"].curve:
            raise RuntimeError("search_flops counts steps before the first curve checkpoint; got a checkpoint")
        latents = holder["inv"].latents
        return total - _counted_flops(lambda: method.swap(latents, latents))

    steps = getattr(method, "steps", None)
    devices = [image.device] if image.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        if not steps or "steps" not in inspect.signature(method.invert).parameters:
            return one()
        f1, f2 = one(steps=1), one(steps=2)
    return f1 + (steps - 1) * (f2 - f1)


def invert_all(method: Any, name: str, images: torch.Tensor, progress=None) -> MethodResult:
    """Warm up on the first image (untimed), then invert each image alone."""
    warm_steps = min(getattr(method, "steps", None) or 1, 5)
    if "steps" in inspect.signature(method.invert).parameters:
        method.invert(images[:1], steps=warm_steps)
    else:
        method.invert(images[:1])
    seconds, recons, latents, curve = [], [], [], {}
    for i in range(images.shape[0]):
        inv = method.invert(images[i : i + 1])
        seconds.append(inv.seconds)
        recons.append(inv.reconstructions)
        latents.append(inv.latents)
        for k, v in inv.curve.items():
            curve.setdefault(k, []).append(v)
        if progress is not None:
            progress(i + 1)
    return MethodResult(name, getattr(method, "steps", None), seconds, torch.cat(recons), latents, curve)


def score_method(result: MethodResult, method: Any, images: torch.Tensor, recipe: Recipe,
                 pairs: list[tuple[int, int]], device: torch.device, test_set) -> dict[str, float]:
    from swapbench.evaluation.evaluate import build_context, evaluate
    from swapbench.inversion import InvertedImages

    model = InvertedImages(method, images, result.latents, result.reconstructions)
    ctx = build_context(model, recipe, device, test_set, pairs, images)
    return evaluate(ctx, [m for m in table_scores() if METRICS.applies_to(m, model)])


def curve_figure(results: list[MethodResult]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for r in results:
        if r.curve:
            ks = sorted(r.curve)
            ax.plot(ks, [float(np.mean(r.curve[k])) for k in ks], marker="o", label=r.name)
        elif "recon_lpips_vgg" in r.scores:
            ax.axhline(r.scores["recon_lpips_vgg"], linestyle="--", color="gray" if r.name != speed_reference() else "black",
                       label=f"{r.name} (one pass)")
    ax.set_xscale("log")
    ax.set_xlabel("optimisation steps")
    ax.set_ylabel("LPIPS-VGG to the target ↓")
    ax.set_title("Inversion quality vs steps (mean over images)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def run_projection(methods: list[str] | None, n: int, runs: dict[str, TrainedRun], steps: int | None = None,
                   device: str = "auto", progress: bool = True) -> tuple[pd.DataFrame, str, str]:
    """Invert ``n`` test images with every method, score them, log one MLflow run; (table, its
    markdown with the settings it was measured under, run id). ``methods`` None: the registered
    defaults (:func:`swapbench.inversion.default_methods`)."""
    from rich.console import Console
    from rich.progress import Progress

    from swapbench.data import build_dataset, test_images
    from swapbench.data.pairs import draw_pairs, pairs_record
    from swapbench.evaluation.evaluate import held_out_split, reference_record
    from swapbench.runtime import resolve_device
    from swapbench.tracking import open_tool_run
    from swapbench.visualize import labelled_columns

    if methods is None:
        methods = default_methods()
    if not methods:
        raise UserError("no methods given; pass --methods sae,sg2_w,...")
    dev = resolve_device(device)
    settings = inversion_settings(**({} if steps is None else {"steps": steps}))
    loaded = {m: load_method(m, runs, settings, dev) for m in methods}  # every run checked before work
    check_all_used(runs, {m: INVERSIONS.get(m).needs for m in methods}, "inversion method")
    recipe = check_same_data({m: r for m, (_, r, _) in loaded.items()})
    test_set = build_dataset(recipe, "test")
    available = len(test_set)
    if n > available:
        raise UserError(f"--n {n} is more than the {available} images of the test split; use at most {available}")
    recipe = recipe.with_test_images(n)
    test_set, reference = held_out_split(recipe)  # the n scored images, then the held-out reference
    images = test_images(recipe, test_set)
    pairs = draw_pairs(n, n, recipe.eval.pairs_seed)

    results: list[MethodResult] = []
    with Progress(console=Console(stderr=True), disable=not progress) as bar:
        for name, (method, _, _) in loaded.items():
            task = bar.add_task(f"{name}", total=n)
            torch.manual_seed(recipe.seed)  # each method's random draws do not depend on the methods before it
            result = invert_all(method, name, images, lambda i, t=task: bar.update(t, completed=i))
            result.scores = score_method(result, method, images, recipe, pairs, dev, test_set)
            result.flops = search_flops(method, images[:1])
            results.append(result)
    baseline = next((r for r in results if r.name == speed_reference()), None)  # (``reference`` is the held-out split)
    sae_median = float(np.median(baseline.seconds)) if baseline else None
    table = pd.DataFrame([r.row(sae_median) for r in results]
                         + [row for i, r in enumerate(results) for row in r.control_rows(copies=i == 0)])

    markdown = render_table(table, n, settings, str(dev))
    tags = {"swapbench.tool": "project", "swapbench.methods": ",".join(methods), "swapbench.dataset": recipe.data.dataset}
    with open_tool_run(EXPERIMENT, tags) as tracker:
        tracker.log_params({"methods": ",".join(methods), "n": n, "steps": getattr(settings, "steps", None),
                            "refine_steps": getattr(settings, "refine_steps", None), "device": str(dev),
                            "threads": torch.get_num_threads(), "data.dataset": recipe.data.dataset,
                            "data.resolution": recipe.data.resolution,
                            **{f"run.{m}": ref for m, (_, _, ref) in loaded.items()}})
        for r, row in zip(results, table.to_dict("records")):
            tracker.log_metrics({f"{r.name}.{k}": v for k, v in {**row, **r.scores}.items()
                                 if isinstance(v, (int, float)) and v == v and k != "steps"})
            for k, values in r.curve.items():
                tracker.log_metrics({f"{r.name}.curve_lpips": float(np.mean(values))}, step=k)
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            (tmp / "projection.md").write_text(markdown)
            table.to_csv(tmp / "projection.csv", index=False)
            curve_figure(results).savefig(tmp / "quality_vs_steps.png", dpi=120)
            (tmp / "curves.json").write_text(json.dumps({r.name: {str(k): v for k, v in r.curve.items()}
                                                         for r in results if r.curve}, indent=1))
            for path in tmp.iterdir():
                tracker.log_artifact(path)
        manifest = test_set.manifest() if hasattr(test_set, "manifest") else None
        record = pairs_record(pairs, recipe.eval.pairs_seed, reference=reference_record(recipe, reference, manifest))
        tracker.log_text(json.dumps(record, indent=1), "pairs.json")
        side = images.shape[-1]  # tiles scaled by a whole factor, so no pixel is dropped or doubled unevenly
        strip = labelled_columns([images[:8], *[r.reconstructions[:8] for r in results]],
                                 ["target", *[r.name for r in results]], cell=side * max(1, 128 // side))
        tracker.log_image(np.asarray(strip), "reconstructions.png")
        run_id = tracker.run_id
    return table, markdown, run_id


def render_table(table: pd.DataFrame, n: int, settings: Any, device: str) -> str:
    shown = table.copy()
    timed = shown["seconds_per_image"].notna()
    shown["seconds_per_image"] = [f"{m:.4g} (IQR {q:.2g})" if t else "-"
                                  for m, q, t in zip(table["seconds_per_image"], table["seconds_iqr"], timed)]
    shown = shown.drop(columns=["seconds_iqr"])
    shown["gflop_per_image"] = [("-" if pd.isna(v) else f"{v:,.0f}" if v >= 100 else f"{v:.3g}")
                                for v in table["gflop_per_image"]]
    if "sae_speedup" in shown:
        shown["sae_speedup"] = [f"{v:,.0f}x" if pd.notna(v) and v >= 10 else (f"{v:.2g}x" if pd.notna(v) and v else "-")
                                for v in table["sae_speedup"]]
    for s in table_scores():
        if s in shown:
            shown[s] = [with_interval(row, s) for _, row in table.iterrows()]
            shown = shown.drop(columns=[c for c in (f"{s}_ci_low", f"{s}_ci_high") if c in shown])
    shown = shown.rename(columns={"seconds_per_image": "s/image (median)", "gflop_per_image": "GFLOP/image",
                                  "sae_speedup": f"{speed_reference()} is faster by"})
    note = (f"N = {n} test images, batch size 1, device {device}, {torch.get_num_threads()} threads; "
            f"optimisers ran {getattr(settings, 'steps', '-')} steps "
            f"(sg2_encoder_opt: {getattr(settings, 'refine_steps', '-')}). Scores: value "
            f"[95 % interval: bootstrap; jackknife for FID/KID]. Rows 'control: ...' score, on the same pairs, "
            f"copying the structure "
            f"image A (copy_a), copying the texture image B (copy_b) and a method's reconstruction of A "
            f"(recon_a): a swap beats copying only where it transfers texture (swap_texture_dist, sifid) "
            f"better than copy_a while keeping structure (swap_structure_dist) better than copy_b.")
    return note + "\n\n" + shown.to_markdown(index=False, floatfmt=".4g") + "\n"

