"""The layers of docs/architecture.md are the import-linter contracts of pyproject.toml, and they hold."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:  # Python 3.10 (pytest brings tomli there)
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent


def _contracts() -> dict[str, dict]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return {c["id"]: c for c in config["contracts"]}


def _in_order(text: str, names: list[str], after: str) -> None:
    """Each name appears as a code span in ``text`` after the heading ``after``, in the given order."""
    at = text.index(after)
    for name in names:
        found = text.find(f"`{name}`", at)
        assert found > at, f"docs/architecture.md does not list the layer `{name}` (in this place) after {after!r}"
        at = found


def test_the_architecture_page_lists_every_layer_of_the_contracts_in_order():
    contracts, page = _contracts(), (ROOT / "docs" / "architecture.md").read_text()
    _in_order(page, contracts["core-layers"]["layers"], "## The core")
    _in_order(page, contracts["baselines-layers"]["layers"], "Inside `baselines`")
    for contract_id in contracts:
        assert f"`{contract_id}`" in page, f"docs/architecture.md does not name the contract {contract_id}"


def test_every_module_of_the_core_has_a_layer():
    """The core's contract is exhaustive: a new top-level module fails it until it is placed."""
    core = _contracts()["core-layers"]
    assert core["exhaustive"] is True
    placed = {name.strip() for layer in core["layers"] for name in layer.replace("|", ":").split(":")}
    package = ROOT / "swapbench"
    children = {p.stem for p in package.glob("*.py") if p.stem != "__init__"}
    children |= {p.parent.name for p in package.glob("*/__init__.py")}
    assert children == placed


def test_the_contracts_hold():
    # the test extra installs import-linter on Python 3.11 and later (the versions that have the contracts used here)
    pytest.importorskip("importlinter.cli", reason="import-linter needs Python 3.11")
    # in a process of its own: import-linter configures logging with dictConfig, which disables every logger that
    # exists already (swapbench's), and later tests that read swapbench's warnings through caplog would see none
    code = ("import sys; from importlinter.cli import lint_imports; "
            f"sys.exit(lint_imports(config_filename={str(ROOT / 'pyproject.toml')!r}, no_cache=True, no_logo=True))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
