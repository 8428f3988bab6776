"""results/claims.md is what `swapbench claims` makes from the committed records, and its verdicts follow
the intervals, the controls and whether the model swaps."""

from __future__ import annotations

from pathlib import Path

from conftest import run_cli

from swapbench.experiments.claims import FAILS, HOLDS, INCONCLUSIVE, TEXTURE, render, source_text, variant_claim
from swapbench.experiments.records import RUNS_DIR, ZOO_DIR, load_records

ROOT = Path(__file__).resolve().parents[1]


def test_the_committed_claims_are_what_the_command_makes(monkeypatch):
    monkeypatch.chdir(ROOT)
    expected = render(load_records(RUNS_DIR, ZOO_DIR), source_text(RUNS_DIR, ZOO_DIR))
    assert (ROOT / "results" / "claims.md").read_text() == expected, \
        "results/claims.md is stale: run `swapbench claims --out results/claims.md` and commit it"


def test_the_command_writes_the_file(tmp_path):
    out = tmp_path / "claims.md"
    result = run_cli("claims", "--out", str(out), cwd=ROOT)
    assert result.returncode == 0 and out.read_text() == (ROOT / "results" / "claims.md").read_text()
    bad = run_cli("claims", "--out", str(out), "--runs", str(tmp_path / "nowhere"), cwd=ROOT)
    assert bad.returncode == 2 and bad.stderr.startswith("error:") and "--runs" in bad.stderr


CONTROLS = {"copy_a": (1.2, 0.0), "copy_b": (0.0, 0.135), "blend": (0.6, 0.07)}


def record(variant: str, seed: int, texture: float, structure: float, half: float = 0.02) -> dict:
    metrics = {}
    for prefix, (t, s) in [("", (texture, structure)), *((f"control/{c}/", v) for c, v in CONTROLS.items())]:
        for name, v in (("swap_texture_dist", t), ("swap_structure_dist", s), ("swap_kid", 0.1)):
            metrics.update({f"{prefix}{name}": v, f"{prefix}{name}_ci_low": v - half, f"{prefix}{name}_ci_high": v + half,
                            f"{prefix}{name}_n": 64})
    return {"run_id": f"{variant}{seed}".ljust(32, "0"), "experiment": "study_losses_quickstart_photos",
            "status": "FINISHED", "start_time": f"2026-12-01T00:00:0{seed}",
            "params": {"data.dataset": "photos", "data.resolution": "32", "data.test_images": "64",
                       "eval.swap_pairs": "64", "seed": str(seed)},
            "tags": {"swapbench.variant": variant, "swapbench.recipe": "quickstart", "swapbench.git_commit": "c" * 40},
            "metrics": metrics}


def outcome(full: tuple[float, float], no_cooc: tuple[float, float]):
    recs = [record("full", s, *full) for s in (0, 1)] + [record("no_cooc", s, *no_cooc) for s in (0, 1)]
    records = {r["run_id"]: r for r in recs}
    return variant_claim(records, "losses", "quickstart", "photos", "full", "no_cooc", lambda d: TEXTURE[d], "full")


def test_verdicts_follow_intervals_and_whether_the_model_swaps():
    held = outcome(full=(0.3, 0.02), no_cooc=(0.5, 0.05))
    assert held.verdict == HOLDS and "intervals apart" in held.why and len(held.run_ids) == 4
    assert any("control: blend" in row for row in held.rows) and any("full | 2 |" in row for row in held.rows)
    assert outcome(full=(0.3, 0.02), no_cooc=(0.2, 0.05)).verdict == FAILS
    overlap = outcome(full=(0.3, 0.02), no_cooc=(0.31, 0.05))
    assert overlap.verdict == INCONCLUSIVE and "overlap" in overlap.why
    # the full model keeps structure no better than the blend: it does not swap, so nothing is read
    no_swap = outcome(full=(0.3, 0.1), no_cooc=(0.5, 0.05))
    assert no_swap.verdict == INCONCLUSIVE and "does not swap" in no_swap.why and "blend" in no_swap.why
    assert variant_claim({}, "losses", "quickstart", "photos", "full", "no_cooc", lambda d: TEXTURE[d],
                         "full").why.startswith("no runs yet")


def test_a_sweeps_parent_run_does_not_hide_its_children():
    """A sweep's parent run (tagged with its jobs' keys, no scores, other params) is in the archived records; the
    study must still be read from the children (it once made a table of its own and every variant looked missing)."""
    recs = [record("full", s, 0.3, 0.02) for s in (0, 1)] + [record("no_cooc", s, 0.5, 0.05) for s in (0, 1)]
    parent = {"run_id": "p".ljust(32, "0"), "experiment": "study_losses_quickstart_photos", "status": "FINISHED",
              "start_time": "2026-12-01T00:00:00", "params": {"sweep": "study_losses_quickstart_photos"},
              "tags": {"swapbench.sweep_keys": "a,b,c,d"}, "metrics": {}}
    records = {r["run_id"]: r for r in [parent, *recs]}
    held = variant_claim(records, "losses", "quickstart", "photos", "full", "no_cooc", lambda d: TEXTURE[d], "full")
    assert held.verdict == HOLDS and len(held.run_ids) == 4
