"""The model zoo: trained reference models that ship with swapbench, used by name.

A zoo model is a folder ``<zoo>/<name>/`` holding

- ``model.safetensors``: the networks inference needs (the EMA copy when the run scored it), in the
  swapbench checkpoint format (safetensors, the state's layout and the recipe in its header);
- ``recipe.yaml``: the resolved recipe it was trained with;
- ``manifest.json``: where it came from and what it scored (run id, commits, images, time, CPU,
  data, the sha256 and size of ``model.safetensors``); see :mod:`swapbench.publish`.

Commands that take a run id or a checkpoint take ``zoo:NAME`` too (the prefix is the whole rule: a
run id or a file path never starts with it). The weights' sha256 is checked against the manifest
before anything is read from them. Zoo folders are looked up in the folders of ``$SWAPBENCH_ZOO``
(separated like ``PATH``), then the checkout's ``zoo/``, then the copy a wheel installs
(``swapbench/_zoo``); the first folder that has a name wins.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from swapbench.checkpoint import ZOO_MANIFEST, sha256_file
from swapbench.errors import UserError, did_you_mean

PREFIX = "zoo:"
MODEL_FILE = "model.safetensors"
RECIPE_FILE = "recipe.yaml"
MANIFEST_FILE = ZOO_MANIFEST
FORMAT = "swapbench-zoo-1"
ENV = "SWAPBENCH_ZOO"
NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")

_ROOT = Path(__file__).resolve().parent.parent
# the checkout's zoo/ (an editable install runs from the checkout); a wheel ships it as swapbench/_zoo
CHECKOUT_ZOO = _ROOT / "zoo" if (_ROOT / "pyproject.toml").is_file() else None
INSTALLED_ZOO = Path(__file__).resolve().parent / "_zoo"


def zoo_dirs() -> list[Path]:
    """Where zoo names are looked up, in order: $SWAPBENCH_ZOO's folders, the checkout's, the installed copy."""
    extra = [Path(p) for p in os.environ.get(ENV, "").split(os.pathsep) if p]
    return [d for d in (*extra, CHECKOUT_ZOO, INSTALLED_ZOO) if d is not None and d.is_dir()]


def is_zoo_ref(ref: str | Path) -> bool:
    """True for ``zoo:NAME``: the one way a command argument names a zoo model."""
    return str(ref).startswith(PREFIX)


def check_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise UserError(f"zoo name '{name}' is not allowed; use 1 to 64 lower-case letters, digits, '_', '-' or '.', "
                        "starting with a letter or digit")
    return name


class _Record(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")  # the manifest's own types: no string read as a number


class _Weights(_Record):
    sha256: str
    bytes: int = 0


class _Training(_Record):
    images: int = 0
    planned_images: int = 0
    finished: bool = True
    wall_minutes: float | None = None


class _Manifest(_Record):
    """The parts of manifest.json that swapbench reads (``zoo list``, the hash check), with their types."""

    weights: _Weights
    training: _Training = _Training()


@dataclass(frozen=True)
class ZooModel:
    name: str
    folder: Path

    @property
    def model_path(self) -> Path:
        return self.folder / MODEL_FILE

    @property
    def manifest_path(self) -> Path:
        return self.folder / MANIFEST_FILE

    def manifest(self) -> dict[str, Any]:
        """The manifest; an unreadable one is a user error naming the folder."""
        path = self.manifest_path
        if not path.is_file():
            raise UserError(f"zoo model '{self.name}' has no {MANIFEST_FILE} in {self.folder}; restore the folder "
                            f"(e.g. `git checkout -- {self.folder}`) or publish the model again")
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise UserError(f"zoo model '{self.name}': {path} is not readable JSON ({exc}); restore the folder "
                            "or publish the model again") from None
        if not isinstance(data, dict) or not isinstance(data.get("weights"), dict) or not data["weights"].get("sha256"):
            raise UserError(f"zoo model '{self.name}': {path} records no weights sha256; restore the folder or "
                            "publish the model again")
        try:
            _Manifest.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            raise UserError(f"zoo model '{self.name}': {path} is damaged ({'.'.join(map(str, err['loc']))}: {err['msg']}, "
                            f"got {err.get('input')!r:.60}); restore the folder or publish the model again") from None
        return data

    def verified_model_path(self) -> Path:
        """``model.safetensors`` after checking it is there and has the manifest's sha256."""
        expected = self.manifest()["weights"]["sha256"]
        path = self.model_path
        if not path.is_file():
            raise UserError(f"zoo model '{self.name}' has no {MODEL_FILE} in {self.folder}; restore the folder "
                            f"(e.g. `git checkout -- {self.folder}`) or publish the model again")
        actual = sha256_file(path)
        if actual != expected:
            raise UserError(f"zoo model '{self.name}': {path} has sha256 {actual} but {MANIFEST_FILE} records "
                            f"{expected}; the file was changed or damaged, restore it (e.g. `git checkout -- {path}`) "
                            "or publish the model again")
        return path


def models() -> dict[str, ZooModel]:
    """Every zoo model by name: a folder with a manifest.json (hidden ones, a publish in progress, are not);
    the first zoo folder that has a name wins."""
    found: dict[str, ZooModel] = {}
    for root in zoo_dirs():
        for folder in sorted(p for p in root.iterdir() if not p.name.startswith(".") and (p / MANIFEST_FILE).is_file()):
            found.setdefault(folder.name, ZooModel(folder.name, folder))
    return found


def get(name: str) -> ZooModel:
    """The zoo model ``name``; an unknown name is a user error listing the known ones."""
    known = models()
    if name in known:
        return known[name]
    if not known:
        raise UserError(f"no zoo model '{name}': the zoo holds no model yet (looked in "
                        f"{', '.join(map(str, zoo_dirs())) or 'no zoo folder'}); publish one with "
                        "`swapbench zoo publish RUN_ID NAME`, or pass a run id or checkpoint")
    raise UserError(f"no zoo model '{name}'{did_you_mean(name, known)}; known: {', '.join(sorted(known))} "
                    "(`swapbench zoo list`)")


def model_path(ref: str) -> Path:
    """The verified weights file of ``zoo:NAME`` (or a bare NAME)."""
    name = str(ref).removeprefix(PREFIX)
    if not name:
        raise UserError(f"'{ref}' names no zoo model; write zoo:NAME (`swapbench zoo list` shows the names)")
    return get(name).verified_model_path()


def load(name: str, prefer_ema: bool = True, map_location: str = "cpu"):
    """(network in eval mode, recipe, metadata) of a zoo model, after its hash check."""
    from swapbench.models.build import load_model

    return load_model(model_path(name), prefer_ema=prefer_ema, map_location=map_location)
