"""Plugins: an intrinsic module from a file outside the package (``--import``) and from an installed package's
``rove.intrinsic`` entry point, usable by ``rove train``, sweeps and ``rove eval``."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from rove.cli import main
from rove.experiments import plugins
from rove.experiments.runs import read_jsonl
from rove.experiments.sweep import load_config, run_sweep

TINY = ["--steps", "128", "--n-envs", "2", "--n-steps", "64", "--batch-size", "64", "--device", "cpu", "--no-progress"]

MODULE = '''
import torch
import rove.intrinsic as ri


@ri.register("{name}")
class StepBonus(ri.IntrinsicModule):
    """0.01 for every valid step."""

    def _compute(self, rollout):
        return 0.01 * rollout.valid.float().to(self.device)
'''


@pytest.fixture
def clean_plugins(monkeypatch: pytest.MonkeyPatch):
    """Each test starts with no plugin imported and leaves the registry as it found it."""
    from rove.intrinsic import registry

    monkeypatch.delenv(plugins.ENV_VAR, raising=False)
    monkeypatch.setattr(plugins, "_IMPORTED", {})
    monkeypatch.setattr(registry, "_REGISTERED", dict(registry._REGISTERED))
    yield


def _forget_plugin(name: str) -> None:
    """What a fresh process is without the plugin: the name unregistered, no import recorded or inherited,
    and no module of a plugin file in ``sys.modules`` (the checkpoint's class path would find it there)."""
    from rove.intrinsic import registry

    registry._REGISTERED.pop(name)
    plugins._IMPORTED.clear()
    os.environ.pop(plugins.ENV_VAR)
    for module in [m for m in sys.modules if m.startswith("rove_plugin_")]:
        del sys.modules[module]


def test_a_module_in_a_file_trains_and_evaluates(
    tmp_path: Path, clean_plugins: None, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "my_bonus.py"
    path.write_text(MODULE.format(name="step_bonus_file"))
    out = tmp_path / "runs"
    argv = ["train", "MiniGrid-Empty-5x5-v0", "--intrinsic", "step_bonus_file", "--import", str(path)]
    assert main([*argv, "--out", str(out), *TINY]) == 0
    (run,) = out.iterdir()
    assert json.loads((run / "config.json").read_text())["intrinsic"] == "step_bonus_file"
    assert json.loads((run / plugins.RECORD_FILE).read_text())["imports"] == [str(path.resolve())]

    # A fresh process state: nothing imported, the name unknown. `rove eval` imports what the run recorded.
    _forget_plugin("step_bonus_file")
    capsys.readouterr()
    assert main(["eval", str(run), "--episodes", "1", "--device", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out)["episodes"] == 1

    # Without the record (or the file), a clear error instead of a raw KeyError.
    _forget_plugin("step_bonus_file")
    (run / plugins.RECORD_FILE).unlink()
    assert main(["eval", str(run), "--episodes", "1", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "unknown intrinsic module 'step_bonus_file'" in err and "--import PATH_OR_MODULE" in err


def test_a_missing_plugin_file_is_a_clear_error(tmp_path: Path, clean_plugins: None, capsys) -> None:
    assert main(["train", "--import", str(tmp_path / "nope.py"), "--steps", "64"]) == 2
    assert "no such file" in capsys.readouterr().err


@pytest.mark.slow  # the SLURM test (tests/experiments/test_slurm.py) covers a plugin in a fresh job process
def test_sweep_workers_import_the_plugin(tmp_path: Path, clean_plugins: None) -> None:
    path = tmp_path / "sweep_bonus.py"
    path.write_text(MODULE.format(name="step_bonus_sweep"))
    plugins.activate([str(path)])
    config_file = tmp_path / "sweep.toml"
    config_file.write_text(
        'envs = ["Rove/MiniGrid-Empty-5x5-v0"]\nmethods = ["step_bonus_sweep"]\nseeds = 1\ntotal_timesteps = 64\n'
        'n_envs = 2\ndevice = "cpu"\n[agent]\nn_steps = 32\nbatch_size = 64\nn_epochs = 1\n'
    )
    summary = run_sweep(load_config(config_file), tmp_path / "out", progress=False, log=lambda _: None)
    assert not summary["failed"], summary["failed"]  # the spawned worker registered the module itself
    (result,) = summary["results"]
    progress = read_jsonl(Path(result["run_dir"]) / "progress.jsonl")
    assert progress and progress[-1]["intrinsic/step_bonus_sweep/reward_mean"] > 0


def test_an_entry_point_registers_a_module(
    tmp_path: Path, clean_plugins: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "site"
    (package / "rove_ep_demo").mkdir(parents=True)
    (package / "rove_ep_demo" / "__init__.py").write_text(MODULE.replace('@ri.register("{name}")\n', ""))
    dist = package / "rove_ep_demo-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: rove-ep-demo\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[rove.intrinsic]\nstep_bonus_ep = rove_ep_demo:StepBonus\n")
    monkeypatch.syspath_prepend(str(package))
    from rove.intrinsic import names

    assert "step_bonus_ep" not in names()
    assert "step_bonus_ep" in plugins.load_entry_points()
    assert "step_bonus_ep" in names()
    out = tmp_path / "runs"
    assert main(["train", "MiniGrid-Empty-5x5-v0", "--intrinsic", "step_bonus_ep", "--out", str(out), *TINY]) == 0
    (run,) = out.iterdir()
    assert json.loads((run / plugins.RECORD_FILE).read_text())["entry_points"] == ["step_bonus_ep"]
    sys.modules.pop("rove_ep_demo", None)
