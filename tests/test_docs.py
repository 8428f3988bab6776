"""The documentation pages generated from the code (docs/reference/, `swapbench docs`) are the ones committed,
and `swapbench docs --check` tells a stale page from a current one."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from swapbench.cli import main
from swapbench.cli.docs import PAGES, REFERENCE, stale_pages

ROOT = Path(__file__).resolve().parents[1]


def test_committed_generated_pages_are_current():
    assert REFERENCE == ROOT / "docs" / "reference"
    assert not stale_pages(), "stale generated docs pages: run `swapbench docs` and commit docs/reference/"


def _swapbench(*argv: str) -> int:
    with pytest.raises(SystemExit) as done:
        main(list(argv))
    return done.value.code


def test_check_fails_on_a_stale_page_and_docs_rewrites_it(tmp_path, capsys):
    for name in PAGES:
        shutil.copy(REFERENCE / name, tmp_path / name)
    (tmp_path / "settings.md").write_text((tmp_path / "settings.md").read_text().replace("| `seed` |", "| `seeed` |"))
    assert _swapbench("docs", "--out-dir", str(tmp_path), "--check") == 1
    assert "stale: settings.md;" in capsys.readouterr().out
    assert _swapbench("docs", "--out-dir", str(tmp_path)) == 0
    assert stale_pages(tmp_path) == []
    assert (tmp_path / "settings.md").read_text() == (REFERENCE / "settings.md").read_text()


def test_generated_pages_hold_what_the_code_knows():
    from swapbench.recipe import describe_fields, list_recipes
    from swapbench.registry import ALL_REGISTRIES
    from swapbench.zoo import CHECKOUT_ZOO

    settings = (REFERENCE / "settings.md").read_text()
    assert all(f"| `{key}` |" in settings for key, _, _ in describe_fields())
    recipes = (REFERENCE / "recipes.md").read_text()
    assert all(f"| `{name}` |" in recipes for name in [*list_recipes(), *list_recipes(sweeps=True)])
    registry = (REFERENCE / "registry.md").read_text()
    assert all(f"| `{name}` |" in registry for reg in ALL_REGISTRIES.values() for name in reg.names())
    zoo = (REFERENCE / "zoo.md").read_text()
    names = [p.name for p in CHECKOUT_ZOO.iterdir() if (p / "manifest.json").is_file()]
    assert names and all(f"## {name}\n" in zoo for name in names)
    commands = (REFERENCE / "commands.md").read_text()
    assert all(f"## swapbench {c}\n" in commands for c in ("run", "docs", "zoo list", "recipes options", "sweep"))
