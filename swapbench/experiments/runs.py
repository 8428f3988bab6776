"""Trained runs named on the command line: ``--run REF``, repeatable, where REF is an MLflow run id, a
checkpoint or ``zoo:NAME``. Each run is keyed by the model family its checkpoint's recipe trains
(``model.family``), so no command has an option per family: a method that needs a family's model takes
the run of that family.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from swapbench.errors import UserError

RUN_OPTION = "--run"


@dataclass(frozen=True)
class TrainedRun:
    ref: str  # as the user gave it
    path: Path  # its checkpoint
    family: str  # model.family of the recipe stored in that checkpoint


def family_of(path: Path) -> str:
    """``model.family`` of the recipe stored in the checkpoint at ``path`` (its header alone is read)."""
    from swapbench.checkpoint import read_meta
    from swapbench.models.build import recipe_of_checkpoint

    meta = read_meta(path)
    if "recipe" not in meta:
        raise UserError(f"checkpoint {path} holds no recipe; pass a checkpoint a swapbench run wrote")
    return recipe_of_checkpoint(meta, path).model.family


def runs_by_family(refs: Sequence[str] | None) -> dict[str, TrainedRun]:
    """The runs of ``--run REF ...`` by model family. Two runs of one family are a user error: a method could
    not tell which to use."""
    from swapbench.tracking import checkpoint_of

    runs: dict[str, TrainedRun] = {}
    for ref in refs or ():
        try:
            path = checkpoint_of(ref)
            family = family_of(path)
        except UserError as exc:
            raise UserError(f"{RUN_OPTION} {ref}: {exc}") from None
        if family in runs:
            raise UserError(f"{RUN_OPTION} {runs[family].ref} and {RUN_OPTION} {ref} are both '{family}' runs; pass one "
                            f"run per model family")
        runs[family] = TrainedRun(ref, path, family)
    return runs


def run_of(runs: dict[str, TrainedRun], family: str, user: str) -> TrainedRun:
    """The run of ``family`` among ``runs``; a user error naming ``user`` (e.g. "method 'sg2_w'") and the
    fix when none is of that family."""
    run = runs.get(family)
    if run is None:
        given = ", ".join(f"{r.ref} ({r.family})" for r in runs.values())
        raise UserError(f"{user} needs a trained {family} run; pass {RUN_OPTION} REF (an MLflow run id, a checkpoint or "
                        f"zoo:NAME of a {family} recipe)" + (f" besides the runs given: {given}" if given else ""))
    return run


def check_all_used(runs: dict[str, TrainedRun], needed: dict[str, str | None], what: str = "method") -> None:
    """A user error when a run of ``--run`` is of a family that none of the chosen methods uses: it would be
    ignored silently, and the table would not say what the user meant to compare. ``needed``: {method name:
    the family its ``needs`` names, or None}."""
    used = {family for family in needed.values() if family}
    for run in runs.values():
        if run.family not in used:
            chosen = ", ".join(needed) or "none"
            raise UserError(f"{RUN_OPTION} {run.ref} is a '{run.family}' run and no {what} chosen uses one ({chosen}); "
                            f"drop it, or add a {what} that uses a '{run.family}' run to --methods")


def load_run(run: TrainedRun):
    """(model in eval mode, recipe, checkpoint metadata) of ``run``."""
    from swapbench.models.build import load_model

    return load_model(run.path)
