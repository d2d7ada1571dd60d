"""Smoke test of experiments/noisy_tv_curiosity.py: a --quick run writes the documented JSON and figure."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from rove.envs import MINIGRID_IMAGE_HIGH
from rove.experiments.plugins import import_plugin

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "noisy_tv_curiosity.py"


def load_script():
    return import_plugin(str(SCRIPT))


def test_quick_run_reports_noisy_and_ordinary_rewards_per_module(tmp_path):
    script = load_script()
    out, figure = tmp_path / "ntv.json", tmp_path / "ntv.png"
    results = script.main(["--quick", "--modules", "icm,byol_hindsight", "--out", str(out), "--figure", str(figure)])
    saved = json.loads(out.read_text())
    assert saved["modules"].keys() == results["modules"].keys() == {"icm", "byol_hindsight"}
    assert saved["args"]["rollouts"] == 3 and saved["transitions"] > 0
    for summary in saved["modules"].values():
        history = summary["history"]
        assert [h["rollout"] for h in history] == [0, 1, 2]
        assert all(h["ordinary"] > 0 for h in history)
        for h in history:  # the ratio is what it says, where the rollout had noisy transitions
            assert math.isnan(h["noisy"]) or math.isclose(h["ratio"], h["noisy"] / h["ordinary"])
        assert summary["seconds"] > 0
        # held out: the trained module on new rollouts of the training env and of an env it never saw
        assert math.isclose(summary["held_out_ratio"], summary["held_out_noisy"] / summary["held_out_ordinary"])
        assert math.isclose(summary["novel_ratio"], summary["novel_ordinary"] / summary["held_out_ordinary"])
    info = saved["hindsight_information"]  # byol_hindsight's Z, scored on a held-out rollout
    assert {"noisy_own", "noisy_swapped", "ordinary_own", "ordinary_swapped"} <= info.keys()
    assert math.isclose(info["ordinary_gain"], info["ordinary_swapped"] - info["ordinary_own"])
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    combined = tmp_path / "seeds.png"  # several runs' JSON plotted together, without training
    assert script.main(["--combine", f"{out},{out}", "--figure", str(combined)])["runs"] == [saved, saved]
    assert combined.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_tv_changes_exactly_on_the_remote_steps():
    script = load_script()
    args = script.parse_args(["--quick"])
    envs = script.make_envs(args)
    obs, _ = envs.reset(seed=0)
    import numpy as np

    rollout, noisy, _ = script.collect(envs, {k: v.copy() for k, v in obs.items()}, 32, np.random.default_rng(1))
    envs.close()
    tv = rollout.next_obs["image"][:, :, :, : args.tv_rows] != rollout.obs["image"][:, :, :, : args.tv_rows]
    changed = tv.flatten(2).any(-1)
    assert bool(noisy.any()) and bool((changed[rollout.valid] == noisy[rollout.valid]).all())
    tv_cells = rollout.obs["image"][:, :, :, : args.tv_rows].reshape(-1, 3)
    assert (tv_cells.max(0).values <= torch.tensor(MINIGRID_IMAGE_HIGH)).all()  # real object/colour/state codes
    assert len(torch.unique(tv_cells, dim=0)) > 50  # and varied ones, not one clamped code
