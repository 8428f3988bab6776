"""The recipe schema: every setting of a swapbench run, once, with its default and a description.

A recipe YAML only overrides these defaults. ``extends: other.yaml`` merges a parent recipe first
(an ablation is a few lines), ``--set a.b=value`` overrides from the command line, an unknown key
is an error naming the closest valid key, and cross-field checks reject impossible combinations
before any work starts.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from swapbench.errors import UserError, did_you_mean
from swapbench.registry import settings_sections
from swapbench.store import CONNECT_TIMEOUT


class Section(BaseModel):
    # every float setting of every section (component sections included) is a finite number: no setting
    # gives infinity a meaning (where "no limit" makes sense, the setting takes null instead)
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


# Bounds that numbers are checked against once, here (the code that reads a setting relies on them).
SEED_LIMIT = 2**32 - 1  # numpy's legacy generators (bootstrap, KID subsets) take seeds in [0, 2**32)
Seed = Annotated[int, Field(ge=-SEED_LIMIT, le=SEED_LIMIT)]  # the recipe seed: negative ones work too
DrawSeed = Annotated[int, Field(ge=0, le=SEED_LIMIT)]  # seeds handed to numpy's RandomState directly
WIDTH_LIMIT = 65_536  # channels of a layer or length of a code: 32 x the widest layer of the authors' models
COUNT_LIMIT = 1_024  # crops, blocks, sinusoids, threads, workers: small counts a recipe repeats per step


# training augmentations (swapbench/data/augment.py), in the order they are applied
AugmentName = Literal["hue", "saturation", "rot90"]


def _as_set(order: Sequence[str] | None = None) -> AfterValidator:
    """A list setting read as a set: duplicates dropped and one order (``order``'s, else sorted), so that
    settings that mean the same give one recipe hash."""
    return AfterValidator(lambda names: sorted(set(names), key=None if order is None else order.index))


class DataConfig(Section):
    dataset: str = Field("photos", description="Registered dataset name.")
    resolution: int = Field(
        256, ge=16, le=2048, description="Image side in pixels: a power of two, or for swap_ae any multiple of "
        "model.structure_downsample (the authors' FFHQ 1024 model trains on 768 px crops)."
    )
    test_images: int = Field(64, ge=2, description="Fixed test-split images scored by the evaluator.")
    scale: tuple[float, float] = Field(
        (0.2, 0.6), description="Random crop side as a fraction of the source photo's shorter side."
    )
    hflip: bool = Field(True, description="Random horizontal flips of training crops.")
    augment: Annotated[list[AugmentName], _as_set(get_args(AugmentName))] = Field(
        [], description="Training-split augmentations after the crop and flip (swapbench/data/augment.py): hue "
        "(rotate colours about the grey axis), saturation (x 1/2 to 2), rot90 (quarter turns); the test split never."
    )
    preprocess: Literal["square", "resize", "resize_and_crop", "scale_width", "scale_width_and_crop",
                        "scale_shortside", "scale_shortside_and_crop", "scale_shortside_and_centercrop",
                        "crop"] = Field(
        "square", description="Training images of datasets 'folder'/'lmdb': 'square' takes a square of data.scale x "
        "the short side (data.crop random or center); the others are the authors' modes: scale (resize: both sides, "
        "scale_width: the width, scale_shortside: the short side) to data.load_size with PIL bicubic, then '_and_crop' "
        "or 'crop' takes a random data.resolution square (the test split: centred), '_and_centercrop' the centred square."
    )
    load_size: int | None = Field(
        None, ge=8, le=8192, description="Side the authors' preprocess modes scale to before cropping; null: data.resolution."
    )
    root: str | None = Field(
        None, description="Image folder for dataset 'folder' (searched recursively); the LMDB database of dataset 'lmdb'."
    )
    crop: Literal["random", "center"] = Field(
        "random", description="Training crop of folder images: random (scale jitter) or center; test is always center."
    )
    limit: int | None = Field(None, ge=2, description="Use at most this many image files of a folder (sorted by path).")
    test_fraction: float = Field(0.1, gt=0, lt=1, description="Share of a folder's files held out as the test split.")
    validation_fraction: float = Field(
        0.0, ge=0, lt=1, description="Share of a folder's (or LMDB's) files taken out of training as the validation "
        "split (0: none). Datasets photos and synthetic always have one (whole photographs / unseen factors)."
    )
    manifest: str | None = Field(
        None, description="Split manifest (JSON) to reuse; every run writes its own next to its checkpoint."
    )
    skip_corrupt: bool = Field(
        False, description="Skip unreadable image files (each reported by name) instead of stopping before training."
    )
    num_workers: int = Field(0, ge=0, le=COUNT_LIMIT, description="DataLoader worker processes (0: load in the main process).")


class ModelConfig(Section):
    """The components a run builds, by registered name, and the sizes that several of them read. A component's
    own settings live in the section it declares when it registers (``encoder``, ``generator``,
    ``discriminator``, ``cooccur``, ``timm``, ``stylegan2``, ...; see :data:`RENAMED_KEYS` for where the
    settings that used to live here went)."""

    family: str = Field(
        "swap_ae", description="Registered trainer: what is trained ('swap_ae'; baselines add 'stylegan2', 'sg2_encoder')."
    )
    encoder: str = Field("swap_ae", description="Registered encoder name.")
    generator: str = Field("swap_ae", description="Registered generator name.")
    discriminator: str = Field("stylegan2", description="Registered image discriminator name.")
    cooccur_discriminator: str | None = Field(
        "cooccur", description="Registered co-occurrence patch discriminator; null disables it."
    )
    # -- sizes shared by several networks (models/build.py:model_settings hands them to every component)
    channels: int = Field(
        32, ge=1, description="Width at full resolution, doubling per halving of the side: the StyleGAN2 baselines' "
        "networks, and the Swapping Autoencoder's with model.widths=uniform."
    )
    max_channels: int = Field(512, ge=1, le=WIDTH_LIMIT,
        description="Upper bound on any layer's width where model.channels applies.")
    structure_channels: int = Field(8, ge=1, le=WIDTH_LIMIT, description="Channels of the spatial structure code.")
    structure_downsample: int = Field(
        16, ge=1, le=2048, description="Structure code side = resolution / this (a power of two)."
    )
    texture_dim: int = Field(2048, ge=1, le=WIDTH_LIMIT, description="Length of the texture code vector.")
    # -- Swapping Autoencoder architecture (issue 13): the defaults build the authors' networks; the
    # -- other values are swapbench's cheaper CPU variants, chosen explicitly by the CPU recipes.
    widths: Literal["paper", "uniform"] = Field(
        "paper", description="'paper': each network's width table as in the authors' code, scaled by its capacity "
        "(encoder.capacity, generator.capacity, discriminator.capacity, cooccur.capacity); 'uniform' (CPU): encoder, "
        "generator and image discriminator all use model.channels / model.max_channels, the patch discriminator "
        "cooccur.channels / model.max_channels."
    )
    resample: Literal["fir", "average"] = Field(
        "fir", description="Resampling of encoder, generator and both discriminators: 'fir' blurs around strided "
        "convolutions ([1,2,1] in the encoder, [1,3,3,1] elsewhere, as the authors); 'average' (CPU) pools 2x2 and "
        "upsamples bilinearly."
    )


class OptimConfig(Section):
    name: str = Field("adam", description="Registered optimizer name.")
    lr: float = Field(0.002, gt=0, le=1, description="Learning rate (the discriminators' is lazy-R1 corrected); at most "
                      "1: Adam moves every weight by about this much per step, and the weights are of order 1.")
    betas: tuple[float, float] = Field((0.0, 0.99), description="Adam betas.")
    eps: float = Field(1e-8, gt=0, le=1, description="Adam epsilon.")


class TrainConfig(Section):
    images: int = Field(25_000_000, ge=1, description="Training length in images seen (as the paper counts).")
    batch_size: int = Field(16, ge=2, description="Images per step; swaps pair each image with another.")
    ema: float = Field(0.999, ge=0, lt=1, description=(
        "Largest per-step EMA decay of encoder+generator; 0 disables. The decay warms up as "
        "min(ema, 1 - (1 + step)^(-2/3)) (timm's ModelEmaV3 warm-up): 0.99 at step 1,000, 0.998 at 10,000, "
        "so 0.999 applies only after about 31,600 steps and shorter runs see the warm-up value."))
    cpu_minutes: float | None = Field(None, gt=0, description=(
        "Also end training (FINISHED, then scored) at the first step boundary after the training loop has used "
        "this many CPU minutes, summed over resumed parts (user + system time of the process; rank 0's under "
        "torchrun): for comparisons at equal CPU cost. Where it ends depends on the machine; train.images stays "
        "the upper bound. null: no CPU budget."))
    log_every: int = Field(10, ge=1, description="Steps between logged training metrics.")
    image_every: int = Field(500, ge=1, description="Steps between swap grids logged to MLflow.")
    checkpoint_every: int = Field(1000, ge=1, description="Steps between checkpoints (one is always written at the end).")
    amp: bool = Field(False, description="bfloat16 autocast on CUDA (opt-in; the authors train in fp32); ignored on the CPU.")
    schedule: Literal["same_batch", "alternate"] = Field(
        "same_batch", description="Update order of the swap_ae trainer. 'alternate': discriminator and generator "
        "steps alternate on different minibatches, each step counting its batch in train.images (the authors' "
        "optimizer); 'same_batch': each batch drives both updates through one E/G forward pass (the CPU recipes).")
    threads: int | None = Field(None, ge=1, le=COUNT_LIMIT, description="torch CPU threads; null keeps torch's default.")
    on_nonfinite: Literal["stop", "skip_step"] = Field(
        "stop", description="A non-finite loss or gradient: stop (the run FAILED, its last good checkpoint kept) "
        "or skip_step (no update from that step; counted as train/skipped_steps)."
    )


class EvalConfig(Section):
    metrics: list[str] | Literal["all"] = Field("all", description="Registered metrics to compute, or 'all'.")
    skip_metrics: Annotated[list[str], _as_set()] = Field(
        [], description="With metrics 'all': registered metrics to leave out (e.g. a slow one that "
        "`swapbench evaluate RUN_ID --metrics NAME` can add later)."
    )
    batch_size: int = Field(16, ge=1, description="Images per evaluation batch.")
    use_ema: bool = Field(True, description="Score the EMA copy of encoder+generator when there is one.")
    grid_size: int = Field(4, ge=2, description="Structure and texture images per side of the swap grid.")
    swap_pairs: int = Field(64, ge=1, description="Test (structure, texture) pairs, A != B, that swap scores use.")
    pairs_seed: DrawSeed = Field(0, description="Seed of the test pairs; fixed so every method swaps the same pairs.")
    split: Literal["test", "validation", "both"] = Field(
        "test", description="Split the scores are of: test (logged under their names), validation (logged as "
        "val/<score>), or both. Choose settings on validation scores; report test scores."
    )
    reference_images: int = Field(
        1000, ge=0, description="Real images held out as the swap FID/KID reference: the test-split items after the "
        "data.test_images sources (never a swap source), at most this many, as many as the split has."
    )
    bootstrap_samples: int = Field(
        1000, ge=0, le=100_000, description="Bootstrap resamples of the 95 % interval logged beside every mean score "
        "(over pairs; over images for reconstruction); FID and KID use a 20-group jackknife instead "
        "(evaluation/metrics/intervals.py); 0 logs no intervals; at most 100,000."
    )
    bootstrap_seed: DrawSeed = Field(
        0, description="Seed of the bootstrap resamples and jackknife groups; fixed so intervals are reproducible."
    )


class BenchConfig(Section):
    """Settings of ``swapbench bench`` (the performance table). A tool setting, not part of a recipe:
    recipes and their hashes do not change with it. ``--quick`` applies :data:`BENCH_QUICK`."""

    recipes: list[str] = Field(
        ["small", "swap_ae", "swap_ae_256"], description="Recipes whose training step is measured (--recipe replaces them); "
        "small, not quickstart, whose first images are reconstruction-only warm-up steps."
    )
    cpu_batch_at_256: int = Field(
        2, ge=2, description="Training batch on the CPU for recipes of 256 px or more (their own batch on CUDA)."
    )
    warmup_steps: int = Field(1, ge=1, description="Untimed training steps before the timed window (the first is an R1 step).")
    train_steps: int | None = Field(
        None, ge=2, description="Timed training steps, starting with a lazy-R1 step; null: one whole R1 interval."
    )
    train_seconds: float = Field(
        120.0, gt=0, description="The timed window stops early (after one R1 and one plain step at least) past this."
    )
    peak_repeats: int = Field(5, ge=1, description="Timed calls of the conv and matmul peak probes (best taken).")
    profile_steps: int = Field(
        8, ge=1, description="Training steps of each recipe run under torch.profiler (section 'profile'), after the warm-up."
    )
    profile_top: int = Field(12, ge=1, description="Operators listed per recipe in section 'profile' (by self CPU time).")
    embed_methods: list[str] | Literal["all"] = Field(
        "all", description="Inversion methods timed at batch 1; 'all': every registered one but those registered "
        "with bench=False."
    )
    embed_images: int = Field(3, ge=1, description="Test images each inversion method inverts (after a warm-up image).")
    embed_steps: int | None = Field(None, ge=1, description="Steps of sg2_w / sg2_wplus; null: inversion.steps (1000).")
    embed_refine_steps: int | None = Field(
        None, ge=1, description="Steps of sg2_encoder_opt; null: inversion.refine_steps (100)."
    )
    score_recipe: str = Field(
        "small", description="Recipe of the freshly built model scored when no --run is given (every score applies to it)."
    )
    score_metrics: list[str] | Literal["all"] = Field("all", description="Scores timed, or 'all' that apply.")
    score_images: int | None = Field(None, ge=2, description="Test images scored; null: the recipe's data.test_images.")
    fid_alone: bool = Field(True, description="Also time the Frechet distance alone on the swap features.")
    data_batches: int = Field(20, ge=1, description="Batches each dataset's loader delivers in the timed window.")
    scaling_recipe: str = Field("swap_ae", description="Recipe trained under torchrun with 1 and 2 processes (gloo).")
    scaling_processes: list[int] = Field([1, 2], description="Process counts of the torchrun rows; [] skips them.")
    cuda_recipe: str = Field("swap_ae_256", description="Recipe of the CUDA training row (when a CUDA device is present).")


# What --quick changes: every column still present, tiny sizes, about a minute on 2 cores. No
# swap_fid: below 2048 samples scipy's sqrtm takes minutes on such a machine (issue 16).
BENCH_QUICK: dict[str, Any] = {
    "recipes": ["small"], "train_steps": 2, "train_seconds": 20.0, "peak_repeats": 2,
    "embed_images": 1, "embed_steps": 2, "embed_refine_steps": 2, "score_metrics": ["recon_psnr", "recon_lpips_alex", "swap_kid"],
    "score_images": 8, "fid_alone": False, "data_batches": 2, "scaling_processes": [], "profile_steps": 2,
    "profile_top": 5,
}


class TrackingConfig(Section):
    uri: str | None = Field(
        None, description="MLflow tracking URI; null uses $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db."
    )
    experiment: str | None = Field(None, description="MLflow experiment; null uses the recipe name.")
    run_name: str | None = Field(None, description="MLflow run name; null: '<variant>-seed<seed>', the variant being "
                                 "the sweep's name for it or the recipe's name.")
    log_checkpoint: bool = Field(True, description="Log the final checkpoint as a run artifact.")
    checkpoint_dir: str = Field("checkpoints", description="Local folder for checkpoints; each run writes <dir>/<run id>/.")
    connect_timeout: float = Field(
        CONNECT_TIMEOUT, gt=0, le=3600, description="Seconds a tracking server may take to answer before a run starts (else a "
        "one-line error); at most an hour."
    )
    retry_seconds: float = Field(
        10.0, gt=0, le=3600, description="While the tracking server is away, seconds between attempts to upload the "
        "journal; at most an hour."
    )
    flush_timeout: float = Field(
        120.0, ge=0, le=86_400, description="Seconds a finished run waits for the server to take its journal; then it "
        "finishes locally and `swapbench sync` uploads the rest; at most a day."
    )


def is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


class Recipe(Section):
    name: str = Field("recipe", description="Recipe name (defaults to the file name).")
    description: str = Field("", description="One line on what the recipe is for.")
    seed: Seed = Field(0, description="Seed for weights, data order, crops and evaluation pairs: an integer of at most "
                       "32 bits, sign aside (numpy's legacy generator takes 32 bits).")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="'auto' uses CUDA when present.")
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    # Besides these sections a recipe holds one section per settings class that registered components
    # declare (``encoder``, ``generator``, ``discriminator``, ``cooccur``, ``timm`` from the networks in
    # swapbench/models/; ``loss``, read by the trainers; ``stylegan2``, ``inversion`` from baselines/; a
    # plugin's own): see component_sections().
    model_config = ConfigDict(extra="allow", validate_assignment=True)

    @model_validator(mode="before")
    @classmethod
    def _component_sections(cls, data: Any) -> Any:
        """Every section a registered component declares, validated by its settings class (its defaults
        when the recipe does not set it); any other unknown top-level key is an error."""
        if not isinstance(data, Mapping):
            return data
        data = migrate(data)
        sections = component_sections()
        for key, settings in sections.items():
            value = data.get(key, {})
            if isinstance(value, settings):
                continue
            if not isinstance(value, Mapping):
                raise ValueError(f"'{key}' is a section and needs a mapping of keys, got {value!r}")
            check_keys(value, "recipe", settings, f"{key}.")
            try:
                data[key] = settings.model_validate(value)
            except ValidationError as exc:
                raise ValueError(first_error(exc, f"{key}.")) from None
        unknown = [k for k in data if k not in cls.model_fields and k not in sections]
        if unknown:
            raise ValueError(f"unknown key '{unknown[0]}'{did_you_mean(unknown[0], [*cls.model_fields, *sections])}; "
                             f"`swapbench recipes options` lists every key")
        return data

    def sections(self) -> dict[str, BaseModel]:
        """The settings of registered components by section key (``recipe.stylegan2`` reads one too)."""
        return dict(self.__pydantic_extra__ or {})

    @model_validator(mode="after")
    def _cross_checks(self) -> Recipe:
        res = self.data.resolution
        family_checks = family_check(self.model.family)  # registered with the family's trainer (check=)
        if not is_pow2(res) and family_checks is None:  # a family with checks of its own checks its sizes
            raise ValueError(f"data.resolution={res} must be a power of two (e.g. 32, 64, 256)")
        lo, hi = self.data.scale
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"data.scale={list(self.data.scale)} must satisfy 0 < min <= max <= 1")
        load = self.data.load_size or res
        if self.data.preprocess in ("resize_and_crop", "scale_shortside_and_crop") and load < res:
            raise ValueError(
                f"data.load_size={load} is smaller than data.resolution={res}, so preprocess "
                f"{self.data.preprocess} cannot crop a {res} px square; raise data.load_size to at least {res}"
            )
        if self.data.preprocess in ("resize", "scale_width", "scale_shortside", "scale_shortside_and_centercrop") \
                and load != res:
            raise ValueError(
                f"data.preprocess={self.data.preprocess} gives images of data.load_size={load} px, so it must equal "
                f"data.resolution={res}; set it to {res} or use a random crop (scale_shortside_and_crop)"
            )
        if self.optim.betas[0] < 0 or not 0 <= self.optim.betas[1] < 1:
            raise ValueError(f"optim.betas={list(self.optim.betas)} must lie in [0, 1)")
        if family_checks is not None:
            family_checks(self)
        if self.eval.grid_size > self.data.test_images:
            raise ValueError(
                f"eval.grid_size={self.eval.grid_size} needs at least that many data.test_images "
                f"(have {self.data.test_images})"
            )
        return self

    # -- derived values -----------------------------------------------------------------------
    @property
    def steps(self) -> int:
        """Optimisation steps implied by ``train.images`` and ``train.batch_size``."""
        return math.ceil(self.train.images / self.train.batch_size)

    def with_test_images(self, n: int) -> Recipe:
        """This recipe scored on ``n`` test images and ``n`` swap pairs (the swap grid shrinks to fit)."""
        data = {**self.data.model_dump(), "test_images": n}
        evaluation = {**self.eval.model_dump(), "swap_pairs": n, "grid_size": min(self.eval.grid_size, n)}
        return Recipe.model_validate({**self.model_dump(), "data": data, "eval": evaluation})

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def flat(self) -> dict[str, Any]:
        """Dotted-key view, e.g. ``{"model.texture_dim": 2048, ...}`` (what MLflow logs as params)."""
        return dict(_flatten(self.to_dict()))

    def hash(self) -> str:
        """sha256 of the canonical JSON of the resolved recipe (names excluded, and the settings of
        :data:`HASH_NEUTRAL` at their neutral value, so that adding a setting to the schema does not
        change the hash of every recipe, and with it sweep keys, resume checks and zoo manifests)."""
        d = self.to_dict()
        d.pop("name", None)
        d.pop("description", None)
        for key, neutral in HASH_NEUTRAL.items():
            *sections, leaf = key.split(".")
            parent = d
            for section in sections:
                parent = parent.get(section) or {}
            if leaf in parent and parent[leaf] == neutral:
                del parent[leaf]
        # a renamed setting is hashed at its old key, so that recipes keep their hashes across the rename
        for old, new in RENAMED_KEYS.items():
            (old_section, old_leaf), (new_section, new_leaf) = old.split("."), new.split(".")
            if new_leaf in d.get(new_section, {}):
                d.setdefault(old_section, {})[old_leaf] = d[new_section].pop(new_leaf)
        for section in {new.split(".")[0] for new in RENAMED_KEYS.values()}:
            if d.get(section) == {}:  # a section made of renamed settings only was not hashed before them
                del d[section]
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()


# Settings that moved out of the flat model.* section into the section of the component that reads them
# (issue 33): old dotted key -> new dotted key. A recipe, --set or sweep variant that names an old key is an
# error naming the new one (check_keys); a stored recipe (a checkpoint's, a zoo model's, an MLflow run's) is
# read with its keys moved (migrate); Recipe.hash hashes each at its old key, so no recipe's hash changed.
RENAMED_KEYS: dict[str, str] = {
    "model.encoder_capacity": "encoder.capacity",
    "model.encoder_padding": "encoder.padding",
    "model.texture_convs": "encoder.texture_convs",
    "model.generator_blocks": "generator.blocks",
    "model.generator_capacity": "generator.capacity",
    "model.generator_noise": "generator.noise",
    "model.rgb_every_scale": "generator.rgb_every_scale",
    "model.generator_fourier": "generator.fourier",
    "model.discriminator_capacity": "discriminator.capacity",
    "model.discriminator_mbstd": "discriminator.mbstd",
    "model.backbone": "timm.backbone",
    "model.backbone_weights": "timm.weights",
}


def migrate(data: Mapping[str, Any]) -> dict[str, Any]:
    """A stored recipe's settings with every key of :data:`RENAMED_KEYS` moved to its new place (a value
    already at the new key wins); settings in today's layout come back unchanged."""
    data = dict(data)
    for old, new in RENAMED_KEYS.items():
        (old_section, old_leaf), (new_section, new_leaf) = old.split("."), new.split(".")
        section = data.get(old_section)
        if not isinstance(section, Mapping) or old_leaf not in section:
            continue
        data[old_section] = {k: v for k, v in section.items() if k != old_leaf}
        target = data.get(new_section)
        if isinstance(target, BaseModel):
            continue
        target = dict(target) if isinstance(target, Mapping) else {}
        target.setdefault(new_leaf, section[old_leaf])
        data[new_section] = target
    return data


def migrate_flat(params: Mapping[str, Any]) -> dict[str, Any]:
    """Flat (dotted) settings, e.g. an MLflow run's params, with the keys of :data:`RENAMED_KEYS` renamed."""
    return {RENAMED_KEYS.get(k, k): v for k, v in params.items()}


# Settings added to the schema after recipes were first hashed, with the value that does what the
# schema did before them: at that value they are left out of Recipe.hash. A new setting whose default
# keeps the old behaviour belongs here (at its key of today: a renamed one is left out before RENAMED_KEYS
# puts the others back at their old keys).
HASH_NEUTRAL: dict[str, Any] = {"train.cpu_minutes": None, "loss.texture_cycle": 0.0, "generator.fourier": 0,
                                 "loss.recon_lpips_net": "vgg", "loss.recon_warmup_images": 0,
                                 "data.augment": [], "eval.skip_metrics": [], "data.validation_fraction": 0.0,
                                 "eval.split": "test"}


def _flatten(d: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            yield from _flatten(v, key + ".")
        else:
            yield key, v


def component_sections() -> dict[str, type[BaseModel]]:
    """The recipe sections that registered components declare with their settings class (key -> class):
    part of every recipe, at their defaults unless the recipe sets them."""
    sections = {key: s.settings for key, s in settings_sections().items()}
    clash = sorted(k for k in sections if k in Recipe.model_fields)
    if clash:
        raise ValueError(f"registered components declare recipe section(s) {', '.join(clash)}, which the core schema "
                         f"already has; register them under another section name")
    return sections


def _schema(model: type[BaseModel]) -> dict[str, type[BaseModel] | None]:
    """Key -> its section's class (None for a plain setting) at one level of the schema; the recipe's top
    level includes the component sections."""
    keys: dict[str, type[BaseModel] | None] = {}
    for name, field in model.model_fields.items():
        ann = field.annotation
        keys[name] = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
    if model is Recipe:
        keys.update(component_sections())
    return keys


def describe_fields(model: type[BaseModel] = Recipe, prefix: str = "") -> list[tuple[str, Any, str]]:
    """(dotted key, default, description) for every setting, component sections included: the full list
    of options (:func:`read_by` says which component reads a key)."""
    rows = []
    for name, section in _schema(model).items():
        if section is not None:
            rows.extend(describe_fields(section, f"{prefix}{name}."))
        else:
            field = model.model_fields[name]
            rows.append((f"{prefix}{name}", field.get_default(call_default_factory=True), field.description or ""))
    return rows


def allowed_numbers(key: str) -> str:
    """The numbers the schema lets the dotted setting ``key`` take, e.g. ``1 <= x <= 65536`` or ``finite``
    (empty for a setting that is not a number): what `swapbench recipes options` shows."""
    import annotated_types as at

    *sections, leaf = key.split(".")
    model: type[BaseModel] = Recipe
    for section in sections:
        model = _schema(model)[section]
    field = model.model_fields[leaf]
    kinds = {t for t in get_args(field.annotation) or (field.annotation,)}
    if not kinds & {int, float}:
        return ""
    bounds = {type(m): m for m in field.metadata if isinstance(m, (at.Gt, at.Ge, at.Lt, at.Le))}
    num = lambda v: f"{v:,}" if isinstance(v, int) else f"{v:g}"  # noqa: E731
    low = (f"{num(bounds[at.Ge].ge)} <= " if at.Ge in bounds else f"{num(bounds[at.Gt].gt)} < " if at.Gt in bounds else "")
    high = (f" <= {num(bounds[at.Le].le)}" if at.Le in bounds else f" < {num(bounds[at.Lt].lt)}" if at.Lt in bounds else "")
    text = f"{low}x{high}" if low or high else ""
    if float in kinds:
        text = f"finite, {text}" if text else "finite"
    return text


def family_check(family: str) -> Callable[[Recipe], None] | None:
    """The cross-checks that model family ``family`` registers with its trainer (``check=``), or None. A
    family with checks checks its own image sizes; the others need a power-of-two data.resolution. An
    unknown family has none here: check_names reports it."""
    from swapbench.registry import TRAINERS

    return TRAINERS.entry(family).info.get("check") if family in TRAINERS else None


def read_by(key: str) -> str:
    """Who reads the dotted ``key``: the registered components that declared its section, or 'swapbench'."""
    declared = settings_sections().get(key.split(".", 1)[0])
    return ", ".join(declared.owners) if declared is not None else "swapbench"


# ---------------------------------------------------------------------------------------------
# Loading: files, names, extends, overrides
# ---------------------------------------------------------------------------------------------

CHECKOUT_RECIPES = Path(__file__).resolve().parent.parent / "recipes"
# a wheel ships recipes/ as package data at swapbench/_recipes (see pyproject.toml)
INSTALLED_RECIPES = Path(__file__).resolve().parent / "_recipes"


def recipe_dirs() -> list[Path]:
    """Where recipe names are looked up: the checkout's recipes/, then the installed copy."""
    return [d for d in (CHECKOUT_RECIPES, INSTALLED_RECIPES) if d.is_dir()]


SWEEPS_FOLDER = "sweeps"  # sweep files live beside the recipes but are not recipes


def list_recipes(sweeps: bool = False) -> dict[str, Path]:
    """Recipe name (path relative to the recipes folder, without .yaml) -> file; with ``sweeps``,
    the sweep files of the ``sweeps/`` folder instead."""
    found: dict[str, Path] = {}
    for d in recipe_dirs():
        for path in sorted(d.rglob("*.yaml")):
            if (path.relative_to(d).parts[0] == SWEEPS_FOLDER) != sweeps:
                continue
            name = path.relative_to(d).with_suffix("").as_posix()
            found.setdefault(name, path)
    return found


def recipe_descriptions() -> dict[str, str]:
    """Shipped recipe name -> its ``description`` line (read without resolving extends or checking it)."""
    return {name: str((yaml.safe_load(path.read_text()) or {}).get("description", ""))
            for name, path in list_recipes().items()}


def find_recipe(ref: str | Path, relative_to: Path | None = None) -> Path:
    """Resolve a recipe file path or a recipe name (``ablation_no_cooc``) to a file."""
    ref = str(ref)
    candidates = [Path(ref)]
    if relative_to is not None:
        candidates.insert(0, relative_to / ref)
    for c in candidates:
        if c.is_file():
            return c.resolve()
    name = ref[:-5] if ref.endswith((".yaml", ".yml")) else ref
    name = name.removeprefix("recipes/")
    known = list_recipes()
    if name in known:
        return known[name]
    raise UserError(
        f"recipe '{ref}' not found{did_you_mean(name, known)}; give a path to a YAML file or one of "
        f"the names that `swapbench recipes list` prints"
    )


def yaml_problem(exc: yaml.YAMLError, text: str) -> tuple[str, str]:
    """(" line N" or "", what is wrong) of a YAML error, each on one line: PyYAML's own message spans
    several lines, and a character YAML refuses (a NUL byte, say) comes with a position, not a line."""
    mark = getattr(exc, "problem_mark", None)
    if isinstance(exc, yaml.reader.ReaderError):
        line = text.count("\n", 0, exc.position) + 1
        return f" line {line}", f"it holds the character #x{exc.character:04x}, which YAML does not allow ({exc.reason})"
    problem = getattr(exc, "problem", None) or "syntax error"
    return (f" line {mark.line + 1}" if mark else ""), " ".join(str(problem).split())


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
        data = yaml.safe_load(text)
    except UnicodeDecodeError:
        raise UserError(f"recipe {path} is not a text file (it holds binary data); give a YAML recipe") from None
    except yaml.YAMLError as exc:
        where, what = yaml_problem(exc, text)
        raise UserError(f"recipe {path}{where} is not valid YAML: {what}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"recipe {path} must be a YAML mapping of settings, not a {type(data).__name__}")
    return data


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in override.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def _load_tree(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    if path in chain:
        cycle = " -> ".join(p.name for p in (*chain, path))
        raise UserError(f"recipe extends itself in a cycle: {cycle}; remove one of the 'extends' keys")
    data = _read_yaml(path)
    parent_ref = data.pop("extends", None)
    if parent_ref is None:
        return data
    if not isinstance(parent_ref, str):
        raise UserError(f"recipe {path}: 'extends' must be one recipe name or path, got {parent_ref!r}")
    parent = _load_tree(find_recipe(parent_ref, relative_to=path.parent), (*chain, path))
    parent.pop("name", None)  # a name is never inherited
    parent.pop("description", None)
    return deep_merge(parent, data)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"model.texture_dim=64"`` -> (["model", "texture_dim"], 64); the value is parsed as YAML."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise UserError(f"--set '{text}' must look like key=value, e.g. --set model.texture_dim=64")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    for text in overrides:
        keys, value = parse_override(text)
        patch = _nest(keys, value)
        check_keys(patch, source=f"--set {text}")
        data = deep_merge(data, patch)
    return data


def _nest(keys: list[str], value: Any) -> dict[str, Any]:
    out: Any = value
    for k in reversed(keys):
        out = {k: out}
    return out


def check_keys(data: Mapping[str, Any], source: str, model: type[BaseModel] = Recipe, prefix: str = "") -> None:
    """Reject keys the schema does not have, naming the closest valid key (or the new name of a renamed one)."""
    fields = _schema(model)
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if key not in fields and dotted in RENAMED_KEYS:
            new = RENAMED_KEYS[dotted]
            raise UserError(f"{source}: {dotted} is now {new} (read by {read_by(new)}); rename it")
        if key not in fields:
            valid = [f"{prefix}{f}" for f in fields]
            raise UserError(
                f"{source}: unknown key '{dotted}'{did_you_mean(dotted, valid)}; "
                f"`swapbench recipes options` lists every key"
            )
        section = fields[key]
        if section is not None:
            if not isinstance(value, Mapping):
                raise UserError(f"{source}: '{dotted}' is a section and needs a mapping of keys, got {value!r}")
            check_keys(value, source, section, dotted + ".")


def first_error(exc: ValidationError, prefix: str = "") -> str:
    """The first problem of a validation error in one line: ``<prefix><key>: <what> (got <value>)``."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    msg = err["msg"].removeprefix("Value error, ")
    if loc:
        return f"{prefix}{loc}: {msg} (got {err.get('input')!r})"
    return f"{prefix.rstrip('.')}: {msg}" if prefix else msg


def validate_recipe(data: Mapping[str, Any], source: str) -> Recipe:
    check_keys(data, source)
    try:
        return Recipe.model_validate(data)
    except ValidationError as exc:
        raise UserError(f"{source}: {first_error(exc)}") from None


def check_names(recipe: Recipe) -> None:
    """Every registry name the recipe uses exists (unknown names fail here, before any work)."""
    from swapbench.registry import DATASETS, DISCRIMINATORS, ENCODERS, GENERATORS, LOSSES, METRICS, OPTIMIZERS, TRAINERS

    TRAINERS.get(recipe.model.family)
    DATASETS.get(recipe.data.dataset)
    ENCODERS.get(recipe.model.encoder)
    GENERATORS.get(recipe.model.generator)
    DISCRIMINATORS.get(recipe.model.discriminator)
    if recipe.model.cooccur_discriminator is not None:
        DISCRIMINATORS.get(recipe.model.cooccur_discriminator)
    LOSSES.get(recipe.loss.gan)
    if recipe.loss.recon_lpips > 0:
        LOSSES.get("lpips")
    OPTIMIZERS.get(recipe.optim.name)
    if recipe.eval.metrics != "all":
        for name in recipe.eval.metrics:
            METRICS.get(name)
        if recipe.eval.skip_metrics:
            raise UserError(f"eval.skip_metrics={recipe.eval.skip_metrics} applies to eval.metrics 'all' only, and an "
                            "eval.metrics list is set; add --set eval.skip_metrics=[] to score just that list (or set "
                            "eval.metrics=all to score every metric but those)")
    for name in recipe.eval.skip_metrics:
        METRICS.get(name)


def load_recipe(ref: str | Path, overrides: Sequence[str] = ()) -> Recipe:
    """Load a recipe by path or name, resolve ``extends``, apply ``--set`` overrides, validate the
    values, the cross-field rules and every registry name."""
    path = find_recipe(ref)
    data = _load_tree(path)
    data.setdefault("name", path.stem)
    return recipe_from_dict(data, overrides, source=f"recipe {path.name}")


def recipe_from_dict(data: Mapping[str, Any], overrides: Sequence[str] = (), source: str = "recipe") -> Recipe:
    """A recipe from settings already in memory: the same key, value, cross-field and name checks
    as a file, with ``source`` naming where the settings came from in error messages."""
    check_keys(data, source=source)
    recipe = validate_recipe(apply_overrides(dict(data), overrides), source=source)
    check_names(recipe)
    return recipe
