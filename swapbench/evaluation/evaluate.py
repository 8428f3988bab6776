"""The evaluator: runs registered metrics on a trained model and returns flat {name: value} scores.

Each metric is one function ``fn(ctx: EvalContext) -> dict[str, float]`` in the ``metric`` registry.
Expensive shared work (reconstructions, swaps, features, codes) is computed once, lazily, by the
context, so adding a metric never adds a second pass over the test set.

The test split is read as two disjoint parts: the first ``data.test_images`` items are the scored
images (reconstructed, and the structure and texture sources of the swap pairs); the items after
them, up to ``eval.reference_images``, are the *reference*: real images of the same distribution that
are never a swap source, against which swap FID/KID are measured.

Every score of the swaps (registered with ``scores="swaps"``) is also computed for the controls on exactly
the model's pairs (see :data:`CONTROLS`: copying A, copying B, the model's reconstruction of A and, on data
with a known swap, the true swap without patterns) and logged as ``control/<control>/<score>``; every
score of the reconstructions likewise for :data:`RECON_CONTROLS` (a 4x thumbnail of each test image). A
control's context computes afresh everything derived from the output it replaces: the context's own caches
say what they derive from (:func:`derived`), and anything else a score keeps on the context is dropped too.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import Any

import numpy as np
import torch
from torch import nn

from swapbench.errors import UserError
from swapbench.evaluation.metrics import CONTROLS, OPT_IN_CONTROLS, RECON_CONTROLS, applies_to, needs
from swapbench.recipe import Recipe
from swapbench.registry import METRICS


class DerivedValue(cached_property):
    """A cached value of :class:`EvalContext` computed from one of the model's outputs (``output``: "swaps"
    or "reconstructions"); see :func:`derived`."""

    def __init__(self, fn, output: str):
        super().__init__(fn)
        self.output = output


def derived(output: str):
    """Decorates a cached value of :class:`EvalContext` computed from the model's ``output`` ("swaps" or
    "reconstructions"): a control's context, which replaces that output, computes it afresh. The context's
    other cached values derive from no output and are shared with the controls. This is the one place that
    says what derives from the swaps."""
    return lambda fn: DerivedValue(fn, output)


@dataclass
class EvalContext:
    model: nn.Module  # an autoencoder (encode/reconstruct/swap) or a generator (sample)
    images: torch.Tensor  # the scored test images, (N, 3, H, W) in [-1, 1], on the CPU
    recipe: Recipe
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    batch_size: int = 16
    pairs: list[tuple[int, int]] = field(default_factory=list)  # (structure A, texture B) test indices
    dataset: Any = None  # the test split, for datasets that know more (e.g. synthetic ground truth)
    reference: range = range(0)  # test-split indices held out as the real reference (never a pair source)
    notes: dict[str, str] = field(default_factory=dict)  # score -> why it is missing or not comparable
    copied_rows: list[int] | None = None  # a copy control: the outputs are these scored images, unchanged
    _lpips: dict[str, torch.nn.Module] = field(default_factory=dict, repr=False)

    @property
    def n(self) -> int:
        return self.images.shape[0]

    @torch.no_grad()
    def batched(self, fn, *tensors: torch.Tensor) -> torch.Tensor:
        """Apply ``fn`` over aligned batches of ``tensors`` on the device; results on the CPU."""
        outs = []
        for i in range(0, tensors[0].shape[0], self.batch_size):
            outs.append(fn(*(t[i : i + self.batch_size].to(self.device) for t in tensors)).float().cpu())
        return torch.cat(outs)

    @cached_property
    def reconstructions(self) -> torch.Tensor:
        """G(E(x)) for every test image, (N, 3, H, W) on the CPU."""
        return self.batched(self.model.reconstruct, self.images)

    @cached_property
    def structure_indices(self) -> list[int]:
        return [a for a, _ in self.pairs]

    @cached_property
    def texture_indices(self) -> list[int]:
        return [b for _, b in self.pairs]

    @derived("swaps")
    def swaps(self) -> torch.Tensor:
        """G(s(A_i), t(B_i)) for every evaluation pair, (len(pairs), 3, H, W) on the CPU."""
        return self.batched(self.model.swap, self.images[self.structure_indices], self.images[self.texture_indices])

    # -- Inception features ------------------------------------------------------------------
    @cached_property
    def inception(self):
        from swapbench.evaluation.metrics.inception import InceptionFeatures

        return InceptionFeatures(self.device, batch_size=self.batch_size)

    def _feature_key(self, part: str, resize: str, n: int, start: int = 0) -> dict[str, Any]:
        manifest = self.dataset.manifest() if hasattr(self.dataset, "manifest") else None
        return {"features": "inception_pool", "resize": resize, "extractor": self.inception.sha256,
                "part": part, "start": start, "n": n, "manifest": manifest,
                "data": self.recipe.data.model_dump(mode="json", exclude={"num_workers"})}

    def _test_features(self, resize: str) -> np.ndarray:
        from swapbench.evaluation.metrics.distances import cached_features

        return cached_features(self._feature_key("sources", resize, self.n),
                               lambda: self.inception.pool(self.images, resize))

    @cached_property
    def real_features(self) -> np.ndarray:
        """Inception pool features of the scored test images (the swap sources), cached on disk."""
        return self._test_features("clean")

    @cached_property
    def real_features_legacy(self) -> np.ndarray:
        """The same through clean-fid's legacy_pytorch resize (pytorch-fid's), cached on disk."""
        return self._test_features("legacy_pytorch")

    @cached_property
    def reference_features(self) -> np.ndarray:
        """Pool features of the held-out reference images (never a swap source), cached on disk."""
        from swapbench.evaluation.metrics.distances import cached_features

        ref = self.reference

        def compute() -> np.ndarray:
            chunks = [self.inception.pool(torch.stack([self.dataset[i] for i in ref[k : k + self.batch_size]]))
                      for k in range(0, len(ref), self.batch_size)]
            return np.concatenate(chunks) if chunks else np.zeros((0, 2048))

        return cached_features(self._feature_key("reference", "clean", len(ref), ref.start if ref else 0), compute)

    @derived("swaps")
    def swap_features(self) -> np.ndarray:
        if self.copied_rows is not None:
            return self.real_features[self.copied_rows]
        return self.inception.pool(self.swaps)

    @derived("swaps")
    def swap_features_legacy(self) -> np.ndarray:
        if self.copied_rows is not None:
            return self.real_features_legacy[self.copied_rows]
        return self.inception.pool(self.swaps, "legacy_pytorch")

    @cached_property
    def samples(self) -> torch.Tensor:
        """``n`` samples of a generator from seeds fixed by eval.pairs_seed, on the CPU."""
        return self.model.sample(self.n, seed=self.recipe.eval.pairs_seed, batch_size=self.batch_size)

    @cached_property
    def sample_features(self) -> np.ndarray:
        return self.inception.pool(self.samples)

    # -- LPIPS and structure ------------------------------------------------------------------
    def lpips(self, net: str) -> torch.nn.Module:
        """The LPIPS network ('alex' or 'vgg') on the evaluation device, built once per context."""
        if net not in self._lpips:
            from swapbench.nn.lpips import build_lpips

            self._lpips[net] = build_lpips(net, self.device)
        return self._lpips[net]

    def networks_used(self) -> list[str]:
        """Names (as in swapbench.weights) of the pretrained networks the scores have used so far."""
        used = ["inception"] if "inception" in self.__dict__ else []
        return used + [f"lpips_{net}" for net in sorted(self._lpips)]

    def lpips_distance(self, net: str, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Per-image LPIPS between aligned [-1, 1] batches (inputs clamped), on the CPU."""
        model = self.lpips(net)
        return self.batched(lambda x, y: model(x.clamp(-1, 1), y.clamp(-1, 1)).flatten(), a, b)

    def selfsim(self, images: torch.Tensor) -> torch.Tensor:
        """Self-similarity matrices of LPIPS-VGG relu3_3 features (see metrics.disentanglement)."""
        from swapbench.evaluation.metrics.disentanglement import self_similarity

        model = self.lpips("vgg")
        return self.batched(lambda x: self_similarity(model, x.clamp(-1, 1)), images)

    def grams(self, images: torch.Tensor) -> torch.Tensor:
        """Gram matrices of LPIPS-VGG features (see metrics.disentanglement)."""
        from swapbench.evaluation.metrics.disentanglement import gram_matrices

        model = self.lpips("vgg")
        return self.batched(lambda x: gram_matrices(model, x.clamp(-1, 1)), images)

    @cached_property
    def image_grams(self) -> torch.Tensor:
        return self.grams(self.images)

    @derived("swaps")
    def swap_grams(self) -> torch.Tensor:
        return self.image_grams[self.copied_rows] if self.copied_rows is not None else self.grams(self.swaps)

    @cached_property
    def image_selfsim(self) -> torch.Tensor:
        return self.selfsim(self.images)

    @derived("swaps")
    def swap_selfsim(self) -> torch.Tensor:
        return self.image_selfsim[self.copied_rows] if self.copied_rows is not None else self.selfsim(self.swaps)

    # -- codes ---------------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(structure codes, texture codes) of the model's encoder, flattened per image, on the CPU."""
        s, t = [], []
        for i in range(0, images.shape[0], self.batch_size):
            codes = self.model.encode(images[i : i + self.batch_size].to(self.device))
            s.append(codes[0].flatten(1).float().cpu())
            t.append(codes[1].flatten(1).float().cpu())
        return torch.cat(s), torch.cat(t)

    @cached_property
    def image_codes(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encode(self.images)

    @derived("swaps")
    def swap_codes(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.copied_rows is not None:
            return self.image_codes[0][self.copied_rows], self.image_codes[1][self.copied_rows]
        return self.encode(self.swaps)

    @cached_property
    def gt_swaps(self) -> torch.Tensor | None:
        """render(layout(A_i), style(B_i)) for every pair, when the dataset knows its factors; else None."""
        if not hasattr(self.dataset, "gt_swap"):
            return None
        return self.dataset.gt_swap(self.structure_indices, self.texture_indices)

    @cached_property
    def gt_regions(self) -> torch.Tensor | None:
        """A_i's region masks (edges left out) for every pair, when the dataset knows its layouts; else None."""
        if not hasattr(self.dataset, "gt_regions"):
            return None
        return self.dataset.gt_regions(self.structure_indices)

    # -- intervals -----------------------------------------------------------------------------
    @cached_property
    def sources(self) -> list[str] | None:
        """The source (e.g. photograph) of each scored image, when the dataset says (``source_ids``);
        None where every image is its own source. Intervals resample sources (metrics.intervals)."""
        if not hasattr(self.dataset, "source_ids"):
            return None
        return [str(s) for s in self.dataset.source_ids(range(self.n))]

    def clusters(self, over: str) -> list[tuple[str, ...]] | None:
        """The sources of each row: (source,) per image (``over='images'``), (source of A_i, source of B_i)
        per pair (``over='pairs'``), (source,) per held-out reference image (``'reference'``); None without
        sources, and for generated samples (``'samples'``), which have none."""
        if self.sources is None or over not in ("images", "pairs", "reference"):
            return None
        if over == "images":
            return [(s,) for s in self.sources]
        if over == "reference":
            return [(str(s),) for s in self.dataset.source_ids(self.reference)]
        return [(self.sources[a], self.sources[b]) for a, b in self.pairs]

    def resamples(self, n: int) -> np.ndarray:
        """(eval.bootstrap_samples, n) row indices drawn with replacement from eval.bootstrap_seed."""
        from swapbench.evaluation.metrics.intervals import bootstrap_indices

        return bootstrap_indices(n, self.recipe.eval.bootstrap_samples, self.recipe.eval.bootstrap_seed)

    def source_weights(self, over: str) -> tuple[np.ndarray, int] | None:
        """(resample weights, number of sources) of a bootstrap over sources, or None (rows are independent)."""
        from swapbench.evaluation.metrics.intervals import cluster_bootstrap_weights

        clusters = self.clusters(over)
        if clusters is None:
            return None
        weights = cluster_bootstrap_weights(clusters, self.recipe.eval.bootstrap_samples, self.recipe.eval.bootstrap_seed)
        return weights, len({s for row in clusters for s in row})

    def jackknife_subsets(self, n: int, over: str = "pairs") -> list[np.ndarray]:
        """The kept rows of each delete-a-group recomputation of a distance (FID, KID) over ``n`` rows: with
        sources, each source left out in turn; else groups drawn at random from eval.bootstrap_seed; none
        when eval.bootstrap_samples is 0."""
        from swapbench.evaluation.metrics.intervals import cluster_jackknife_subsets, jackknife_subsets

        if not self.recipe.eval.bootstrap_samples:
            return []
        clusters = self.clusters(over)
        if clusters is not None and len(clusters) == n:
            return cluster_jackknife_subsets(clusters)
        return jackknife_subsets(n, self.recipe.eval.bootstrap_seed)

    def mean_score(self, name: str, per_item: torch.Tensor | np.ndarray, over: str = "pairs") -> dict[str, float]:
        """{name: mean, name_ci_low/high: bootstrap 95 % interval, name_n (and name_n_sources where images share
        sources)} of per-pair (``over='pairs'``), per-image (``'images'``) or per-reference-image (``'reference'``) values."""
        from swapbench.evaluation.metrics.intervals import mean_with_interval, weighted_mean_with_interval

        clustered = self.source_weights(over)
        if clustered is not None:
            return weighted_mean_with_interval(name, per_item, *clustered)
        return mean_with_interval(name, per_item, self.resamples(len(per_item)))

    def ratio_score(self, name: str, numerator: np.ndarray, denominator: np.ndarray) -> dict[str, float]:
        """1 - mean(numerator) / mean(denominator) over pairs, with its interval (resampling sources where
        images share them)."""
        from swapbench.evaluation.metrics.intervals import ratio_with_interval, weighted_ratio_with_interval

        clustered = self.source_weights("pairs")
        if clustered is not None:
            return weighted_ratio_with_interval(name, numerator, denominator, *clustered)
        return ratio_with_interval(name, numerator, denominator, self.resamples(len(numerator)))

    # -- controls ------------------------------------------------------------------------------
    def with_outputs(self, outputs: torch.Tensor, copied_rows: list[int] | None = None,
                     output: str = "swaps") -> EvalContext:
        """This context with ``outputs`` in place of ``output`` (the swaps or the reconstructions; for a
        control). It shares the settings and the cached values that derive from no output (features of
        the test and reference images, LPIPS nets, the images' codes); the values :func:`derived` from
        ``output``, and anything else a score kept on the context, are computed afresh. With
        ``copied_rows`` the outputs are those scored images, and their features and codes are taken from
        the images' own (cached) ones."""
        child = copy.copy(self)
        child.__dict__.clear()
        child.__dict__.update({k: v for k, v in self.__dict__.items() if k in _shared(output)})
        child.__dict__[output] = outputs
        child.copied_rows = copied_rows
        return child

    def control(self, name: str) -> EvalContext:
        a, b = self.structure_indices, self.texture_indices
        if name == "copy_a":
            return self.with_outputs(self.images[a], copied_rows=a)
        if name == "copy_b":
            return self.with_outputs(self.images[b], copied_rows=b)
        if name == "recon_a":
            return self.with_outputs(self.reconstructions[a])
        if name == "blend":
            return self.with_outputs(0.5 * self.images[a] + 0.5 * self.images[b])
        if name == "code_midpoint":
            def midpoint(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
                (sx, tx), (sy, ty) = self.model.encode(x), self.model.encode(y)
                return self.model.decode((sx + sy) / 2, (tx + ty) / 2)

            return self.with_outputs(self.batched(midpoint, self.images[a], self.images[b]))
        if name == "truth_flat":
            return self.with_outputs(self.dataset.gt_swap(a, b, flat_patterns=True))
        if name == "thumbnail_4x":  # a reconstruction control: it replaces G(E(x)), not the swaps
            from swapbench.evaluation.metrics.reconstruction import thumbnail

            return self.with_outputs(thumbnail(self.images, 4), output="reconstructions")
        raise ValueError(f"unknown control {name!r}; controls are {', '.join([*CONTROLS, *RECON_CONTROLS])}")


def _shared(output: str) -> set[str]:
    """What a control's context that replaces ``output`` shares with the model's: the context's settings
    (its dataclass fields) and its cached values that are not :func:`derived` from ``output``."""
    cached = {k: v for k, v in vars(EvalContext).items() if isinstance(v, cached_property)}
    return ({f.name for f in fields(EvalContext)}
            | {k for k, v in cached.items() if not (isinstance(v, DerivedValue) and v.output == output)}) - {output}


def held_out_split(recipe: Recipe, test_set=None, split: str = "test") -> tuple[Any, range]:
    """(held-out split, reference indices): the ``split`` (test or validation) long enough to hold the
    ``data.test_images`` sources followed by up to ``eval.reference_images`` reference items, and the
    indices of those items.

    Generated test splits (photos, synthetic) are rebuilt longer: their item i depends only on i, so
    the sources are unchanged. A folder's test split has a fixed list of files; the reference is the
    files after the sources, as many as there are."""
    from swapbench.data import build_dataset

    sources, wanted = recipe.data.test_images, recipe.eval.reference_images
    generated = test_set is None or len(test_set) == sources  # a folder's split has its own length
    if generated and wanted > 0:
        longer = recipe.model_copy(update={"data": recipe.data.model_copy(update={"test_images": sources + wanted})})
        test_set = build_dataset(longer, split)
    elif test_set is None:
        test_set = build_dataset(recipe, split)
    start = min(sources, len(test_set))
    return test_set, range(start, min(len(test_set), sources + wanted))


def reference_record(recipe: Recipe, reference: range, split_manifest: dict[str, Any] | None = None) -> dict[str, Any]:
    """How the reference set was drawn, for pairs.json."""
    record: dict[str, Any] = {
        "n": len(reference), "indices": [reference.start, reference.stop] if reference else [],
        "drawn": ("test-split items data.test_images .. data.test_images + eval.reference_images - 1 (capped by the "
                  "split), after the scored sources; each item is drawn from the dataset's fixed test seed, so no "
                  "reference image is a structure or texture source of any pair"),
        "requested": recipe.eval.reference_images,
    }
    files = (split_manifest or {}).get("files")
    if files and reference:
        record["files"] = files[reference.start : reference.stop]
    return record


def build_context(model: nn.Module, recipe: Recipe, device: torch.device, test_set=None,
                  pairs: list[tuple[int, int]] | None = None, images: torch.Tensor | None = None,
                  split: str = "test") -> EvalContext:
    """The evaluation context of ``recipe`` on ``split`` (test or validation): its scored images, its
    pairs and its held-out reference."""
    from swapbench.data import test_images
    from swapbench.data.pairs import draw_pairs

    test_set, reference = held_out_split(recipe, test_set, split)
    images = test_images(recipe, test_set) if images is None else images
    pairs = draw_pairs(recipe.eval.swap_pairs, images.shape[0], recipe.eval.pairs_seed) if pairs is None else pairs
    return EvalContext(model, images, recipe, device, recipe.eval.batch_size, pairs, test_set, reference)


def metric_names(requested: Sequence[str] | str, skip: Sequence[str] = ()) -> list[str]:
    """The metric names ``requested`` means ('all': every registered one but those in ``skip``)."""
    if requested == "all":
        for name in skip:
            METRICS.get(name)
        return [n for n in METRICS.names() if n not in skip]
    for name in requested:
        METRICS.get(name)  # unknown names fail here, before any work
    return list(requested)


def applicable(names: Sequence[str], model: nn.Module, requested: Sequence[str] | str) -> list[str]:
    """The metrics that apply to ``model``. With 'all' the others are left out silently; a metric
    asked for by name that cannot apply is a user error."""
    if requested == "all":
        return [n for n in names if applies_to(n, model)]
    for n in names:
        if not applies_to(n, model):
            need = ", ".join(needs(n))
            raise UserError(f"metric '{n}' needs a model that can {need}; this {type(model).__name__} cannot. "
                            f"Leave it out of eval.metrics (or use 'all')")
    return list(names)


def controls_for(ctx: EvalContext) -> list[str]:
    """The controls of :data:`CONTROLS` that ``ctx`` can produce: recon_a needs a model that reconstructs,
    code_midpoint one that encodes and decodes, truth_flat a dataset that knows its true swap."""
    can = {"recon_a": hasattr(ctx.model, "reconstruct"), "truth_flat": hasattr(ctx.dataset, "gt_swap"),
           "code_midpoint": hasattr(ctx.model, "encode") and hasattr(ctx.model, "decode")}
    return [c for c in CONTROLS if can.get(c, True)]


def evaluate(ctx: EvalContext, metrics: Sequence[str] | str = "all", skip: Sequence[str] = ()) -> dict[str, float]:
    """Every applicable metric on the model (of ``metrics``, less ``skip``), then every swap metric on each swap
    control (same pairs) and every reconstruction metric on each reconstruction control."""
    scores: dict[str, float] = {}
    was_training = ctx.model.training
    ctx.model.eval()
    try:
        names = applicable(metric_names(metrics, skip), ctx.model, metrics)
        for name in names:
            scores.update(METRICS.get(name)(ctx))
        # scores of the swaps for the swap controls, of the reconstructions for the reconstruction controls
        for controls, output in ((controls_for(ctx), "swaps"), (list(RECON_CONTROLS), "reconstructions")):
            controlled = [n for n in names if METRICS.scores(n) == output]
            for control in controls if controlled else []:
                scored = [n for n in controlled if control not in OPT_IN_CONTROLS or control in METRICS.controls(n)]
                if not scored:
                    continue
                child = ctx.control(control)
                for name in scored:
                    scores.update({f"control/{control}/{k}": v for k, v in METRICS.get(name)(child).items()})
    finally:
        ctx.model.train(was_training)
    return scores
