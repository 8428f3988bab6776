"""``swapbench swaps``: every swap method (``swap_method`` registry: ``sae``, ``gatys``, ``strotss``,
``sg2_mix``, ...) on the same test pairs of one dataset, scored by the same registered swap scores and
controls, timed at batch size 1 on one device with the same threads.

Per method: the swaps of the N pairs (``pairs.json``), seconds per swap (median and IQR over the
pairs; a one-pass method is warmed up once, untimed; an optimiser's first swap is timed like the rest),
FLOPs per swap (torch's FlopCounterMode: convolutions and matrix products, forward and backward), its
time as a multiple of the autoencoder's in the same run, and every swap score with its interval. The
copy controls (copy A, copy B; on data with a known swap, truth_flat) are scored on the same pairs
and shown as rows of the same table. One MLflow run (experiment ``swaps``) holds the table (markdown
and csv), a figure of the pairs side by side (rows: pairs; columns: A, B, each method), the pairs, the
settings of every method and every number as ``<method>.<score>``.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from swapbench.errors import UserError
from swapbench.experiments.cells import with_interval
from swapbench.experiments.runs import TrainedRun, check_all_used, load_run, run_of
from swapbench.recipe import Recipe
from swapbench.registry import METRICS

EXPERIMENT = "swaps"
# the groups of registered scores in the table (each score that applies to precomputed swaps and to the data):
# realism against the held-out reference, texture transfer, structure kept, the reference manifold's
# precision/recall/density/coverage, and the truth on synthetic data
GROUPS = ("realism", "texture", "structure", "manifold", "truth", "truth_parts")
DEFAULT_METHODS = ("sae", "gatys", "strotss")


@dataclass
class SwapResult:
    name: str
    outputs: torch.Tensor
    seconds: list[float]
    flops: float | None = None
    scores: dict[str, float] = field(default_factory=dict)

    def row(self, sae_median: float | None) -> dict[str, Any]:
        q25, q50, q75 = np.percentile(np.asarray(self.seconds), [25, 50, 75])
        return {"method": self.name, "seconds_per_swap": float(q50), "seconds_iqr": float(q75 - q25),
                "gflop_per_swap": self.flops / 1e9 if self.flops is not None else None,
                "time_vs_sae": float(q50 / sae_median) if sae_median else None, **score_cells(self.scores)}


def table_scores() -> list[str]:
    """The registered scores of the table's :data:`GROUPS`, group by group."""
    return [name for group in GROUPS for name in METRICS.in_group(group)]


def score_cells(scores: dict[str, float]) -> dict[str, float]:
    return {k: scores[k] for s in table_scores() for k in (s, f"{s}_ci_low", f"{s}_ci_high") if k in scores}


class PrecomputedSwaps(nn.Module):
    """Stands in for a model in the evaluator: ``swap`` returns the swaps a method already made of the
    scored pairs, looked up by the images' content, so every score runs the evaluator's own code path."""

    def __init__(self, images: torch.Tensor, pairs: list[tuple[int, int]], outputs: torch.Tensor):
        super().__init__()
        from swapbench.inversion import image_key

        self._key = image_key
        keys = [image_key(img) for img in images]
        self.rows = {(keys[a], keys[b]): i for i, (a, b) in enumerate(pairs)}
        self.outputs = outputs
        self._anchor = nn.Parameter(torch.zeros(()), requires_grad=False)

    def swap(self, structure: torch.Tensor, texture: torch.Tensor) -> torch.Tensor:
        try:
            rows = [self.rows[(self._key(a), self._key(b))] for a, b in zip(structure, texture)]
        except KeyError:
            raise ValueError("a pair that was not swapped was passed to PrecomputedSwaps") from None
        return self.outputs[rows].to(structure.device)


def method_classes(methods: list[str]) -> dict[str, Any]:
    """Each name's registered class; an unknown name is a user error before any work."""
    from swapbench.registry import SWAPS

    if not methods:
        raise UserError("no swap methods given; pass --methods sae,gatys,strotss (`swapbench registry swap_method`)")
    return {m: SWAPS.get(m) for m in methods}


def split_overrides(overrides: list[str], methods: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """``--set gatys.steps=100`` -> {"gatys": {"steps": 100}}, each section checked against a registered one and,
    given ``methods``, against the sections those methods read (a setting no chosen method reads would be
    ignored without a word)."""
    from swapbench.recipe import parse_override
    from swapbench.registry import SWAPS
    from swapbench.swaps import settings_of

    sections = {settings_of(n)[0] for n in SWAPS.names()} - {None}
    read = None if methods is None else {settings_of(m)[0] for m in methods} - {None}
    out: dict[str, dict[str, Any]] = {}
    for text in overrides:
        keys, value = parse_override(text)
        if len(keys) != 2 or keys[0] not in sections:
            raise UserError(f"--set {text}: give SECTION.SETTING=VALUE with a swap method's section "
                            f"({', '.join(sorted(sections))}), e.g. --set gatys.steps=100")
        if read is not None and keys[0] not in read:
            readers = sorted(n for n in SWAPS.names() if settings_of(n)[0] == keys[0])
            raise UserError(f"--set {text}: no method among {', '.join(methods)} reads {keys[0]}.*; add "
                            f"{' or '.join(readers)} to the methods, or drop the setting")
        out.setdefault(keys[0], {})[keys[1]] = value
    return out


def load_runs(classes: dict[str, Any], runs: dict[str, TrainedRun]) -> dict[str, tuple[Any, Recipe, str]]:
    """{model family: (model, recipe, reference)} of every trained run the methods need (``runs``: the runs of
    ``--run`` by family), checked before work; a run that no method uses is a user error."""
    needed = {family: run_of(runs, family, f"swap method '{name}'")
              for name, cls in classes.items() if (family := cls.needs) is not None}
    check_all_used(runs, {name: cls.needs for name, cls in classes.items()}, "swap method")
    loaded: dict[str, tuple[Any, Recipe, str]] = {}
    for family, run in needed.items():
        model, recipe, _ = load_run(run)
        loaded[family] = (model, recipe, run.ref)
    return loaded


def data_recipe(loaded: dict[str, tuple[Any, Recipe, str]], recipe_ref: str | None) -> Recipe:
    """The recipe whose test split is swapped: that of the given runs (which must agree), else ``--recipe``."""
    from swapbench.data import data_differences
    from swapbench.recipe import load_recipe

    recipes = {ref: r for _, r, ref in loaded.values()}
    if recipe_ref is not None:
        if recipes:
            raise UserError(f"--recipe {recipe_ref} is for methods without a trained run; the data here comes from "
                            f"{', '.join(recipes)}: drop --recipe")
        return load_recipe(recipe_ref)
    if not recipes:
        raise UserError("none of the methods uses a trained run, so there is no data to swap; pass --recipe NAME "
                        "(e.g. --recipe reference_photos) for its test split")
    refs = list(recipes)
    first = recipes[refs[0]]
    for other in refs[1:]:
        differ = data_differences(recipes[other], first, ignore=("test_images",))
        if differ:
            raise UserError(f"{refs[0]} and {other} were trained on different data (data.{', data.'.join(differ)}); "
                            "swaps compares methods on the same pairs, so give runs on the same data and resolution")
    return first


def step_flops(method: Any, settings: Any, a: torch.Tensor, b: torch.Tensor, evaluations: float) -> float:
    """FLOPs of one swap of an optimiser that made ``evaluations`` loss evaluations (mean over the pairs):
    counted on short runs (its ``steps_setting`` at 1 and 2) and extrapolated linearly in the evaluations,
    each of which costs the same; the random state is left as it was."""
    from swapbench.experiments.projection import _counted_flops

    key = method.steps_setting
    counts = []
    with torch.random.fork_rng(devices=[a.device] if a.device.type == "cuda" else []):
        for steps in (1, 2):
            short = type(method)(getattr(method, "model", None), settings.model_copy(update={key: steps}),
                                 getattr(method, "device", "cpu"))
            flops = _counted_flops(lambda m=short: m.swap(a, b))
            counts.append((short.evaluations, flops))
    (e1, f1), (e2, f2) = counts
    # a line search can spend the whole budget of both short runs (e2 == e1): then the cost of one
    # evaluation is f1 / e1, which counts the one-off target features once per evaluation (a slight over-count)
    per_evaluation = (f2 - f1) / (e2 - e1) if e2 > e1 else f1 / e1
    return f1 + (evaluations - e1) * per_evaluation


def swap_all(method: Any, images: torch.Tensor, pairs: list[tuple[int, int]], device: torch.device,
             progress=None) -> tuple[torch.Tensor, list[float], list[float]]:
    """(swaps, seconds per swap, loss evaluations per swap): one pair per call, batch size 1."""
    from swapbench.inversion import synchronize

    if not getattr(method, "iterative", False):  # one warm-up pass, untimed
        method.swap(images[:1], images[1:2])
    outs, seconds, evaluations = [], [], []
    for i, (a, b) in enumerate(pairs):
        synchronize(device)
        tick = time.perf_counter()
        out = method.swap(images[a : a + 1], images[b : b + 1])
        synchronize(device)
        seconds.append(time.perf_counter() - tick)
        outs.append(out)
        evaluations.append(getattr(method, "evaluations", 1))
        if progress is not None:
            progress(i + 1)
    return torch.cat(outs), seconds, evaluations


def run_swaps(methods: list[str], n: int, runs: dict[str, TrainedRun], recipe_ref: str | None = None,
              overrides: list[str] = (), reference_images: int | None = None, device: str = "auto",
              progress: bool = True) -> tuple[pd.DataFrame, str, str, Any, dict[str, Any]]:
    """Swap ``n`` test pairs with every method, score, log one MLflow run; (table, its markdown, run id,
    the figure as a PIL image, provenance)."""
    from rich.console import Console
    from rich.progress import Progress

    from swapbench.data import test_images
    from swapbench.data.pairs import draw_pairs, pairs_record
    from swapbench.evaluation.evaluate import build_context, evaluate, held_out_split, reference_record
    from swapbench.runtime import resolve_device
    from swapbench.swaps import settings_of, swap_settings
    from swapbench.tracking import open_tool_run
    from swapbench.visualize import labelled_columns

    classes = method_classes(methods)
    by_section = split_overrides(list(overrides), methods)
    settings = {m: swap_settings(m, by_section.get(settings_of(m)[0])) for m in methods}
    dev = resolve_device(device)
    loaded = load_runs(classes, runs)
    recipe = data_recipe(loaded, recipe_ref)
    if reference_images is not None:
        recipe = Recipe.model_validate({**recipe.model_dump(), "eval": {**recipe.eval.model_dump(),
                                                                        "reference_images": reference_images}})
    recipe = recipe.with_test_images(n)
    test_set, reference = held_out_split(recipe)  # the n sources, then the held-out reference
    images = test_images(recipe, test_set)
    pairs = draw_pairs(n, n, recipe.eval.pairs_seed)
    res = recipe.data.resolution
    for name, cls in classes.items():
        if cls.needs is not None:
            model_res = loaded[cls.needs][1].data.resolution
            if model_res != res:
                raise UserError(f"method '{name}' was trained at {model_res} px and the images are {res} px; "
                                "give runs trained at the data's resolution")

    results: list[SwapResult] = []
    with Progress(console=Console(stderr=True), disable=not progress) as bar:
        for name, cls in classes.items():
            model = loaded[cls.needs][0] if cls.needs is not None else None
            method = cls(model, settings[name], dev)
            task = bar.add_task(name, total=len(pairs))
            torch.manual_seed(recipe.seed)  # each method's draws do not depend on the methods before it
            outputs, seconds, evaluations = swap_all(method, images, pairs, dev,
                                                     lambda i, t=task: bar.update(t, completed=i))
            result = SwapResult(name, outputs, seconds)
            a, b = images[pairs[0][0] : pairs[0][0] + 1].to(dev), images[pairs[0][1] : pairs[0][1] + 1].to(dev)
            if getattr(method, "iterative", False) and getattr(method, "steps_setting", None):
                result.flops = step_flops(method, settings[name], a, b, float(np.mean(evaluations)))
            else:
                from swapbench.experiments.projection import _counted_flops

                result.flops = _counted_flops(lambda m=method, a=a, b=b: m.swap(a, b))
            swapped = PrecomputedSwaps(images, pairs, outputs)
            ctx = build_context(swapped, recipe, dev, test_set, pairs, images)
            result.scores = evaluate(ctx, [s for s in table_scores() if METRICS.applies_to(s, swapped)])
            results.append(result)
            del method

    sae = next((r for r in results if r.name == "sae"), None)
    sae_median = float(np.median(sae.seconds)) if sae else None
    controls = [c for c in ("copy_a", "copy_b", "blend", "truth_flat")
                if any(k.startswith(f"control/{c}/") for k in results[0].scores)]
    control_rows = [{"method": f"control: {c}", **score_cells({k.split("/", 2)[2]: v for k, v in results[0].scores.items()
                                                               if k.startswith(f"control/{c}/")})} for c in controls]
    table = pd.DataFrame([r.row(sae_median) for r in results] + control_rows)
    threads = torch.get_num_threads()
    cpu = _cpu_name()
    markdown = render_table(table, len(pairs), str(dev), threads, cpu, res, len(reference))

    side = images.shape[-1]
    a_idx, b_idx = [a for a, _ in pairs], [b for _, b in pairs]
    figure = labelled_columns([images[a_idx], images[b_idx], *[r.outputs for r in results]],
                              ["A (structure)", "B (texture)", *[r.name for r in results]],
                              cell=side * max(1, 128 // side))
    flat_settings = {f"{settings_of(m)[0]}.{k}": (json.dumps(v) if isinstance(v, (list, dict)) else v)
                     for m, s in settings.items() if s is not None for k, v in s.model_dump().items()}
    tags = {"swapbench.tool": "swaps", "swapbench.methods": ",".join(methods), "swapbench.dataset": recipe.data.dataset}
    with open_tool_run(EXPERIMENT, tags) as tracker:
        tracker.log_params({"methods": ",".join(methods), "n_pairs": len(pairs), "device": str(dev), "threads": threads,
                            "cpu": cpu, "data.dataset": recipe.data.dataset, "data.resolution": res,
                            "eval.reference_images": recipe.eval.reference_images, "reference_n": len(reference),
                            **{f"run.{family}": ref for family, (_, _, ref) in loaded.items()}, **flat_settings})
        for r, row in zip(results, table.to_dict("records")):
            tracker.log_metrics({f"{r.name}.{k}": v for k, v in {**row, **r.scores}.items()
                                 if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v})
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            (tmp / "swaps.md").write_text(markdown)
            table.to_csv(tmp / "swaps.csv", index=False)
            figure.save(tmp / "swaps.png")
            for path in tmp.iterdir():
                tracker.log_artifact(path)
        manifest = test_set.manifest() if hasattr(test_set, "manifest") else None
        record = pairs_record(pairs, recipe.eval.pairs_seed, reference=reference_record(recipe, reference, manifest))
        tracker.log_text(json.dumps(record, indent=1), "pairs.json")
        run_id = tracker.run_id
    provenance = {"run_id": run_id, "experiment": EXPERIMENT, "methods": methods, "n_pairs": len(pairs),
                  "pairs": [list(p) for p in pairs], "dataset": recipe.data.dataset, "resolution": res,
                  "runs": {family: ref for family, (_, _, ref) in loaded.items()}, "settings": flat_settings,
                  "device": str(dev), "threads": threads, "cpu": cpu, "reference_n": len(reference)}
    return table, markdown, run_id, figure, provenance


def _cpu_name() -> str:
    from swapbench.runtime import host_tags

    tags = host_tags()
    return tags["swapbench.host.cpu_model"] + (", AVX-512" if tags["swapbench.host.avx512"] == "true" else "")


def render_table(table: pd.DataFrame, n: int, device: str, threads: int, cpu: str, res: int, ref_n: int) -> str:
    shown = table.copy()
    timed = shown["seconds_per_swap"].notna()
    shown["seconds_per_swap"] = [f"{m:.3g} (IQR {q:.2g})" if t else "-"
                                 for m, q, t in zip(table["seconds_per_swap"], table["seconds_iqr"], timed)]
    shown = shown.drop(columns=["seconds_iqr"])
    shown["gflop_per_swap"] = [("-" if pd.isna(v) else f"{v:,.0f}" if v >= 100 else f"{v:.3g}")
                               for v in table["gflop_per_swap"]]
    shown["time_vs_sae"] = [("-" if pd.isna(v) else f"{v:,.0f}x" if v >= 10 else f"{v:.2g}x")
                            for v in table["time_vs_sae"]]
    for s in table_scores():
        if s in shown:
            shown[s] = [with_interval(row, s) for _, row in table.iterrows()]
            shown = shown.drop(columns=[c for c in (f"{s}_ci_low", f"{s}_ci_high") if c in shown])
    from swapbench.evaluation.metrics import arrow

    shown = shown.rename(columns={"seconds_per_swap": "s/swap (median)", "gflop_per_swap": "GFLOP/swap",
                                  "time_vs_sae": "time / sae's", **{s: f"{s} {arrow(s)}" for s in table_scores()}})
    note = (f"N = {n} test pairs at {res} px, batch size 1, device {device} ({cpu}), {threads} thread(s); reference "
            f"set: {ref_n} held-out test images. Scores: value [95 % interval: bootstrap over pairs (over reference "
            f"images for recall and coverage), resampling source photographs where scored images are crops of one; "
            f"jackknife for FID/KID]. Rows 'control: ...' score copying the structure image A (copy_a), the texture "
            f"image B (copy_b) and their pixel blend 0.5 A + 0.5 B (blend) on the same pairs: a method swaps where it "
            f"transfers texture (swap_texture_dist, sifid) better than copy_a, keeps structure (swap_structure_dist) "
            f"better than copy_b, and beats the blend on both, intervals apart. Times of one run, on one machine.")
    return note + "\n\n" + shown.to_markdown(index=False, floatfmt=".4g") + "\n"

