"""results/claims.md: the paper's claims, each with a verdict per scale, made from the committed run records
alone (results/runs/*.json and the zoo manifests; swapbench.experiments.records), never typed by hand.

``swapbench claims --out results/claims.md`` writes it; tests/test_claims.py checks the committed file is
what the command writes. A claim is read on the study sweeps of issue 31 (recipes/sweeps/study_*.yaml,
each in its own MLflow experiment; their runs score validation and test, and the claims read test scores),
at two scales: quickstart (32 px) and reference (64 px, the reference_* recipes' settings). Its verdict
at a scale is one of

- **holds** / **does not hold**: the compared variants' 95 % intervals (the leaderboard's: mean over
  seeds, union of the seeds' intervals) are apart, in the claimed direction or against it, and the
  model the claim is about swaps (:func:`swapbench.evaluation.protocol.swap_works`);
- **inconclusive at this scale**, with one line why: intervals overlap, the model does not swap, a
  variant has no finished run, or no run was made at this scale.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from swapbench.evaluation.protocol import swap_works
from swapbench.experiments.cells import with_interval
from swapbench.experiments.records import RUNS_DIR, ZOO_DIR, load_records, records_frame
from swapbench.registry import METRICS

SCALES = ("quickstart", "reference")
DATASETS = ("synthetic", "photos")
HOLDS, FAILS, INCONCLUSIVE = "holds", "does not hold", "inconclusive at this scale"

# the scores a claim is read on, by dataset: texture transfer, structure kept, realism
TEXTURE = {"synthetic": "gt_pattern", "photos": "swap_texture_dist"}
COLOUR = {"synthetic": "gt_colour_error", "photos": "swap_texture_dist"}
STRUCTURE = {"synthetic": "gt_layout", "photos": "swap_structure_dist"}
REALISM = "swap_kid"
CONTROL_ROWS = ("copy_a", "copy_b", "blend", "code_midpoint", "truth_flat")


def study(kind: str, scale: str, dataset: str) -> str:
    """The MLflow experiment (and sweep file name) of a study: study_<kind>_<scale>_<dataset>."""
    return f"study_{kind}_{scale}_{dataset}"


@dataclass
class Outcome:
    verdict: str
    why: str
    rows: list[str] = field(default_factory=list)  # markdown table rows: numbers with intervals, controls
    run_ids: list[str] = field(default_factory=list)
    commits: list[str] = field(default_factory=list)


@dataclass
class Study:
    """The leaderboard table of one study's runs (test scores): model rows by variant, control rows."""

    frame: pd.DataFrame
    metrics: list[str]

    def has(self, variant: str) -> bool:
        return variant in set(self.frame["variant"])

    def scores(self, variant: str) -> dict[str, float]:
        """A variant's row and the control rows as one flat dict, as a run logs them (for swap_works)."""
        out: dict[str, float] = {}
        for _, row in self.frame.iterrows():
            name = str(row["variant"])
            prefix = "" if name == variant else (f"control/{name.removeprefix('control: ')}/"
                                                 if name.startswith("control: ") else None)
            if prefix is None:
                continue
            for m in self.metrics:
                for suffix in ("", "_ci_low", "_ci_high"):
                    v = row.get(f"{m}{suffix}")
                    if v is not None and not pd.isna(v):
                        out[f"{prefix}{m}{suffix}"] = float(v)
        return out

    def row(self, variant: str) -> pd.Series:
        return self.frame[self.frame["variant"] == variant].iloc[0]


def load_study(records: dict[str, dict[str, Any]], experiment: str, metrics: list[str]) -> Study | None:
    """The study's table, or None when the records hold no finished run of it (or none logged these scores)."""
    from swapbench.errors import UserError
    from swapbench.experiments.leaderboard import build_tables
    from swapbench.experiments.sweep import SWEEP_KEYS_TAG

    # a sweep's parent run holds no scores of its own: left out, it would make a table of its own
    runs = [r for r in records.values()
            if r.get("experiment") == experiment and SWEEP_KEYS_TAG not in (r.get("tags") or {})]
    df = records_frame(runs)
    if df.empty:
        return None
    available = [m for m in metrics if f"metrics.{m}" in df.columns]
    if not available:
        return None
    try:
        tables = build_tables(df, available)
    except UserError:
        return None
    table = tables[0]
    return Study(table.frame, table.metrics)


def table_rows(st: Study, variants: list[str], metrics: list[str]) -> list[str]:
    """Markdown rows: a header, each variant (seeds, numbers with intervals, run ids, commits), then the controls."""
    rows = ["| variant | seeds | " + " | ".join(metrics) + " | run ids | commits |",
            "| --- | --- | " + " | ".join("---" for _ in metrics) + " | --- | --- |"]
    for v in variants:
        if st.has(v):
            r = st.row(v)
            rows.append(f"| {v} | {int(r['seeds'])} | " + " | ".join(with_interval(r, m) for m in metrics)
                        + f" | {r['run_ids']} | {r['commits']} |")
    for c in CONTROL_ROWS:
        name = f"control: {c}"
        if st.has(name):
            r = st.row(name)
            rows.append(f"| {name} | - | " + " | ".join(with_interval(r, m) for m in metrics) + " | (reference row) | |")
    return rows


def compare(st: Study, better: str, worse: str, score: str) -> tuple[bool | None, str]:
    """(True: ``better`` beats ``worse`` on ``score`` with intervals apart; False: the reverse, apart; None:
    overlapping or missing) and a few words saying which."""
    a, b = st.row(better), st.row(worse)
    lo_a, hi_a, lo_b, hi_b = (a.get(f"{score}_ci_low"), a.get(f"{score}_ci_high"),
                              b.get(f"{score}_ci_low"), b.get(f"{score}_ci_high"))
    if any(x is None or pd.isna(x) for x in (lo_a, hi_a, lo_b, hi_b)):
        return None, f"{score} has no interval for {better} or {worse}"
    down = METRICS.direction(score) == "down"
    if (hi_a < lo_b) if down else (lo_a > hi_b):
        return True, f"{better} {with_interval(a, score)} beats {worse} {with_interval(b, score)} on {score}, intervals apart"
    if (hi_b < lo_a) if down else (lo_b > hi_a):
        return False, f"{worse} {with_interval(b, score)} beats {better} {with_interval(a, score)} on {score}, intervals apart"
    return None, f"{score}: {better} {with_interval(a, score)} and {worse} {with_interval(b, score)} overlap"


def variant_claim(records, kind: str, scale: str, dataset: str, better: str, worse: str,
                  score: Callable[[str], str], swapper: str) -> Outcome:
    """``better`` beats ``worse`` on ``score(dataset)`` in study ``kind``; read only where ``swapper`` swaps."""
    experiment = study(kind, scale, dataset)
    texture, structure = TEXTURE[dataset], STRUCTURE[dataset]
    metrics = list(dict.fromkeys([score(dataset), texture, structure, COLOUR[dataset], REALISM]))
    st = load_study(records, experiment, metrics)
    if st is None:
        return Outcome(INCONCLUSIVE, f"no runs yet: experiment `{experiment}` has no record "
                                     f"(`swapbench sweep recipes/sweeps/{experiment}.yaml`, then `swapbench archive write`)")
    rows = table_rows(st, [better, worse], st.metrics)
    ids = sorted({i for v in (better, worse) if st.has(v) for i in str(st.row(v)["run_ids"]).split()})
    commits = sorted({c for v in (better, worse) if st.has(v) for c in str(st.row(v)["commits"]).split()})
    missing = [v for v in (better, worse) if not st.has(v)]
    if missing:
        return Outcome(INCONCLUSIVE, f"variant {', '.join(missing)} has no finished run", rows, ids, commits)
    verdict = swap_works(st.scores(swapper), texture, structure)
    if not verdict.works:
        return Outcome(INCONCLUSIVE, f"{swapper} does not swap ({verdict.why()})", rows, ids, commits)
    won, why = compare(st, better, worse, score(dataset))
    return Outcome({True: HOLDS, False: FAILS, None: INCONCLUSIVE}[won], why, rows, ids, commits)


def inversion_claim(records, scale: str) -> Outcome:
    """The encoder embeds far faster than optimisation (the paper: about 10^4x) at reconstruction accuracy no
    worse: speed holds at a speed-up of 1,000x or more; accuracy from recon_lpips_vgg intervals."""
    resolution = {"quickstart": "32", "reference": "64"}[scale]
    runs = [r for r in records.values() if r.get("experiment") == "projection" and r.get("status") == "FINISHED"
            and str((r.get("params") or {}).get("data.resolution")) == resolution]
    if not runs:
        return Outcome(INCONCLUSIVE, "no runs yet: no `swapbench project` run (experiment `projection`) at "
                                     f"{resolution} px has a record")
    run = sorted(runs, key=lambda r: r.get("start_time") or "")[-1]
    m = run["metrics"]
    optimisers = sorted({k.split(".")[0] for k in m if k.endswith(".sae_speedup")} - {"sae", "sg2_encoder"})
    rows = ["| method | seconds per image | sae is faster by | recon_lpips_vgg |", "| --- | --- | --- | --- |"]
    for method in ["sae", *optimisers]:
        rows.append(f"| {method} | {m.get(f'{method}.seconds_per_image', float('nan')):.4g} s | "
                    f"{m.get(f'{method}.sae_speedup', float('nan')):.4g}x | "
                    + with_interval(pd.Series({k.split('.', 1)[1]: v for k, v in m.items() if k.startswith(method + '.')}),
                            "recon_lpips_vgg") + " |")
    commit = (run.get("tags") or {}).get("swapbench.git_commit") or "?"
    if not optimisers:
        return Outcome(INCONCLUSIVE, "the projection run compared no optimisation-based method", rows,
                       [run["run_id"]], [commit[:12]])
    slowest_ratio = min(m[f"{o}.sae_speedup"] for o in optimisers)
    sae = _get3(m, "sae.recon_lpips_vgg")
    best = min(optimisers, key=lambda o: m.get(f"{o}.recon_lpips_vgg", math.inf))
    opt = _get3(m, f"{best}.recon_lpips_vgg")
    speed = slowest_ratio >= 1000
    if any(math.isnan(x) for x in (*sae, *opt)):
        accuracy: bool | None = None
    else:
        accuracy = True if sae[2] < opt[1] else (False if sae[1] > opt[2] else None)
    why = (f"sae {slowest_ratio:.3g}x faster than the fastest optimiser; recon_lpips_vgg sae "
           f"{sae[0]:.3g} [{sae[1]:.3g}, {sae[2]:.3g}] against {best} {opt[0]:.3g} [{opt[1]:.3g}, {opt[2]:.3g}]")
    if not speed or accuracy is False:
        verdict = FAILS
        why += (" (" + ", ".join(part for part, bad in (("the speed-up is under 1,000x", not speed),
                                                        ("sae reconstructs worse, intervals apart", accuracy is False))
                                  if bad) + ")")
    elif accuracy is None:
        verdict, why = INCONCLUSIVE, why + " (accuracy intervals overlap)"
    else:
        verdict = HOLDS
    return Outcome(verdict, why, rows, [run["run_id"]], [commit[:12]])


def swap_methods_claim(records, scale: str, dataset: str) -> Outcome:
    """The autoencoder's swaps are more realistic than every other swap method's on the same pairs (REALISM,
    intervals apart), read on the latest ``swapbench swaps`` run of ``dataset`` at the scale's resolution and only
    where the autoencoder swaps by the controls' rule; the seconds per swap of each method ride along."""
    resolution = {"quickstart": "32", "reference": "64"}[scale]
    runs = [r for r in records.values() if r.get("experiment") == "swaps" and r.get("status") == "FINISHED"
            and str((r.get("params") or {}).get("data.dataset")) == dataset
            and str((r.get("params") or {}).get("data.resolution")) == resolution]
    if not runs:
        return Outcome(INCONCLUSIVE, f"no runs yet: no `swapbench swaps` run (experiment `swaps`) on {dataset} at "
                                     f"{resolution} px has a record")
    run = sorted(runs, key=lambda r: r.get("start_time") or "")[-1]
    m = run["metrics"]
    methods = [x for x in str((run.get("params") or {}).get("methods", "")).split(",") if x]
    others = [x for x in methods if x != "sae"]
    commit = ((run.get("tags") or {}).get("swapbench.git_commit") or "?")[:12]
    texture, structure = TEXTURE[dataset], STRUCTURE[dataset]
    shown = list(dict.fromkeys([REALISM, texture, structure]))
    rows = ["| method | seconds per swap | " + " | ".join(shown) + " |",
            "| --- | --- | " + " | ".join("---" for _ in shown) + " |"]
    by_method = {x: {k.split(".", 1)[1]: v for k, v in m.items() if k.startswith(x + ".")} for x in methods}
    for method in methods:
        rows.append(f"| {method} | {m.get(f'{method}.seconds_per_swap', math.nan):.3g} s | "
                    + " | ".join(with_interval(pd.Series(by_method[method]), s) for s in shown) + " |")
    sae = by_method.get("sae", {})
    for control in CONTROL_ROWS:
        row = pd.Series({k.removeprefix(f"control/{control}/"): v for k, v in sae.items()
                         if k.startswith(f"control/{control}/")})
        if not row.empty:
            rows.append(f"| control: {control} | - | " + " | ".join(with_interval(row, s) for s in shown) + " |")
    outcome = Outcome(INCONCLUSIVE, "", rows, [run["run_id"]], [commit])
    if "sae" not in methods or not others:
        outcome.why = "the swaps run compared no other method with sae"
        return outcome
    verdict = swap_works(sae, texture, structure)
    if not verdict.works:
        outcome.why = f"sae does not swap ({verdict.why()})"
        return outcome
    table = pd.DataFrame([{"variant": x, **by_method[x]} for x in methods])
    results = {x: compare(Study(table, [REALISM]), "sae", x, REALISM) for x in others}
    speed = "; ".join(f"sae {m[f'{x}.time_vs_sae']:.3g}x faster than {x}" for x in others if f"{x}.time_vs_sae" in m)
    why = "; ".join(w for _, w in results.values()) + (f"; {speed}" if speed else "")
    won = [r for r, _ in results.values()]
    outcome.verdict = FAILS if False in won else (HOLDS if all(won) else INCONCLUSIVE)
    outcome.why = why
    return outcome


def _get3(m: dict[str, float], name: str) -> tuple[float, float, float]:
    return tuple(float(m.get(k, math.nan)) for k in (name, f"{name}_ci_low", f"{name}_ci_high"))  # type: ignore[return-value]


@dataclass
class Claim:
    key: str
    statement: str
    read: str
    outcome: Callable[[dict, str, str], Outcome]  # (records, scale, dataset) -> Outcome
    datasets: tuple[str, ...] = DATASETS


def _not_studied(why: str) -> Callable[[dict, str, str], Outcome]:
    return lambda records, scale, dataset: Outcome(INCONCLUSIVE, why)


def _losses(better, worse, score, scales=SCALES):
    def outcome(records, scale, dataset):
        if scale not in scales:
            return Outcome(INCONCLUSIVE, f"not studied at this scale: study_losses_{scale}_* has only full and no_cooc")
        return variant_claim(records, "losses", scale, dataset, better, worse, score, "full")
    return outcome


def _codes(better, worse, score, swapper):
    def outcome(records, scale, dataset):
        if scale != "quickstart":
            return Outcome(INCONCLUSIVE, "not studied at this scale: the code-size study runs at quickstart size")
        return variant_claim(records, "codes", scale, dataset, better, worse, score, swapper)
    return outcome


CLAIMS = [
    Claim("cooccur", "The co-occurrence patch discriminator makes swaps take the texture image's patterns: "
          "without it, texture transfer is worse.",
          "full against no_cooc on texture transfer (synthetic: gt_pattern; photos: swap_texture_dist), read only "
          "where the full model swaps.", _losses("full", "no_cooc", lambda d: TEXTURE[d])),
    Claim("swap_gan", "The GAN loss on swaps makes swaps realistic: without it (no_swap), swaps are less realistic.",
          "full against no_swap on swap_kid (realism against held-out real images), read only where the full model "
          "swaps.", _losses("full", "no_swap", lambda d: REALISM, scales=("quickstart",))),
    Claim("structure_code", "A larger structure code keeps more of the structure image and transfers less of "
          "the texture image (the paper's structure/texture trade-off).",
          "structure code 16x16 (model.structure_downsample 2) against 4x4 (8) at 32 px: the larger code must "
          "keep structure better; read where the larger-code model swaps.",
          _codes("structure_16x16", "structure_4x4", lambda d: STRUCTURE[d], "structure_16x16")),
    Claim("structure_code_texture", "A smaller structure code transfers more of the texture image (the same "
          "trade-off, read from the texture side).",
          "structure code 4x4 against 16x16 on texture transfer: the smaller code must transfer more; read where the "
          "smaller-code model swaps.",
          _codes("structure_4x4", "structure_16x16", lambda d: TEXTURE[d], "structure_4x4")),
    Claim("texture_code", "A larger texture code carries more of the texture image.",
          "texture code 2048 against 8 on colour/texture transfer (synthetic: gt_colour_error; photos: "
          "swap_texture_dist); read where the 2048 model swaps.",
          _codes("texdim_2048", "texdim_8", lambda d: COLOUR[d], "texdim_2048")),
    Claim("swap_methods", "The autoencoder's swaps are more realistic than those of optimisation-based style "
          "transfer (Gatys et al.; STROTSS) and of StyleGAN2 style mixing after inversion (the paper: lower FID, "
          "preferred by people), on the same pairs.",
          "the latest `swapbench swaps` run of each dataset with the 64 px zoo model and a StyleGAN2 of equal "
          "training CPU: sae against every other method on swap_kid (realism against held-out real images), "
          "intervals apart; read only where sae swaps. The seconds per swap are measured in the same run.",
          lambda records, scale, dataset: (swap_methods_claim(records, scale, dataset) if scale == "reference" else
                                           Outcome(INCONCLUSIVE, "not studied at this scale: `swapbench swaps` "
                                                   "runs with the 64 px zoo models"))),
    Claim("inversion", "The encoder embeds an image orders of magnitude faster than optimisation-based inversion "
          "(the paper: about 10^4x) at reconstruction accuracy no worse.",
          "`swapbench project` runs: sae's speed-up over every optimiser (>= 1,000x holds) and recon_lpips_vgg "
          "of sae against the most accurate optimiser.",
          lambda records, scale, dataset: inversion_claim(records, scale), datasets=("photos",)),
]


def render(records: dict[str, dict[str, Any]], source: str) -> str:
    """The whole claims.md."""
    lines = ["# The paper's claims, tested", "",
             f"Generated by `swapbench claims --out results/claims.md` from {source} ({len(records)} run records); "
             "do not edit by hand (tests/test_claims.py checks it is current).", "",
             "Each claim of the Swapping Autoencoder paper (Park et al., NeurIPS 2020) about its variants, with the "
             "measured outcome at quickstart size (32 px) and reference size (64 px, the `reference_*` recipes), on "
             "the synthetic data and on photos: **holds**, **does not hold**, or **inconclusive at this scale** with "
             "one line why. Numbers are test scores: the mean over seeds with the union of the seeds' 95 % intervals "
             "(photos: intervals resample source photographs), beside the controls on the same pairs (copy A, copy B, "
             "the pixel blend, the code midpoint, truth_flat on synthetic data). A result is read only where the model "
             "it is about swaps: it beats copy A on texture, copy B on structure and the middle control on both, "
             "intervals apart (swapbench.evaluation.protocol.swap_works). Settings are chosen on validation scores; "
             "the studies' sweeps are recipes/sweeps/study_*.yaml.", ""]
    summary = ["| claim | " + " | ".join(f"{s}, {d}" for s in SCALES for d in DATASETS) + " |",
               "| --- | " + " | ".join("---" for _ in SCALES for _ in DATASETS) + " |"]
    sections = []
    for claim in CLAIMS:
        cells = []
        sections += [f"## {claim.key}: {claim.statement}", "", f"Read: {claim.read}", ""]
        for scale in SCALES:
            for dataset in DATASETS:
                if dataset not in claim.datasets:
                    cells.append("(photos only)")
                    continue
                o = claim.outcome(records, scale, dataset)
                cells.append(o.verdict + (" (no runs yet)" if o.why.startswith("no runs yet") else ""))
                sections.append(f"- **{scale}, {dataset}: {o.verdict}.** {o.why}.")
                if o.rows:
                    sections += [""] + [f"  {r}" for r in o.rows]
                    sections.append("")
                if o.run_ids:
                    sections.append(f"  Runs: {', '.join(f'`{i}`' for i in o.run_ids)}; commits: "
                                    f"{', '.join(f'`{c}`' for c in o.commits) or '-'}.")
                    sections.append("")  # its own paragraph: the record test reads a run id with its paragraph
        sections.append("")
        summary.append(f"| {claim.key} | " + " | ".join(cells) + " |")
    return "\n".join([*lines, *summary, "", *sections]).rstrip() + "\n"


def source_text(runs_dir: Path, zoo_dir: Path) -> str:
    return f"`{runs_dir.as_posix()}` and `{zoo_dir.as_posix()}/*/manifest.json`"


def write_claims(out: Path, runs_dir: Path = RUNS_DIR, zoo_dir: Path = ZOO_DIR) -> str:
    """Render claims.md from the records under ``runs_dir`` and ``zoo_dir`` and write it to ``out``."""
    text = render(load_records(runs_dir, zoo_dir), source_text(runs_dir, zoo_dir))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return text
