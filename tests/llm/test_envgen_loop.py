"""The EnvGen loop (rove/llm/envgen_train.py): budget accounting, the worlds reaching the envs, the real CPU
model end to end, and a killed run resuming to the same result as an uninterrupted one."""

from __future__ import annotations

import itertools
import json

import pytest
import torch

from rove.envs.crafter.world import WorldConfig
from rove.llm.envgen import EnvGenLog, parse_worlds
from rove.llm.envgen_train import FINAL_FILE, EnvGenConfig, EnvGenRun, baseline_of, run_envgen

ROLLOUT = 4 * 64  # n_envs * n_steps below


def _config(**overrides) -> EnvGenConfig:
    values = {
        "total_timesteps": 4 * ROLLOUT,
        "cycles": 1,
        "num_worlds": 2,
        "steps_generated": ROLLOUT,
        "steps_original": ROLLOUT,
        "generated_max_steps": 100,
        "n_envs": 4,
        "agent": {"n_steps": 64, "batch_size": 128, "n_epochs": 1},
        "env_kwargs": {"observation_keys": ["image"], "area": 32},
        **overrides,
    }
    return EnvGenConfig.from_mapping(values)


def _check_budget(result: dict, config: EnvGenConfig) -> None:
    phases = result["phases"]
    assert [p["kind"] for p in phases] == [k for k, _, _ in config.phases()]
    assert phases[0]["start"] == 0
    assert all(a["end"] == b["start"] for a, b in itertools.pairwise(phases))  # contiguous
    lengths = {"generated": 0, "original": 0}
    for p in phases:
        lengths["generated" if p["kind"] == "generated" else "original"] += p["end"] - p["start"]
    assert result["transitions"] == lengths
    assert sum(lengths.values()) == result["total_transitions"] == phases[-1]["end"]
    # Each phase stops at the first update at or past its planned end, as plain PPO stops at its budget.
    for p, (_, _, end) in zip(phases, config.phases(), strict=True):
        assert end <= p["end"] < end + ROLLOUT


def _run_summary(argv: list) -> str:
    import contextlib
    import io
    import runpy
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "experiments" / "envgen_summary.py"
    out, saved = io.StringIO(), sys.argv
    sys.argv = [str(script), *map(str, argv)]
    try:
        with contextlib.redirect_stdout(out):
            runpy.run_path(str(script), run_name="__main__")
    finally:
        sys.argv = saved
    return out.getvalue()


def _toml(values: dict) -> str:
    lines = [f"{k} = {json.dumps(v)}" for k, v in values.items() if not isinstance(v, dict)]
    for table in ("agent", "env_kwargs"):
        lines += [f"[{table}]", *(f"{k} = {json.dumps(v)}" for k, v in values.get(table, {}).items())]
    return "\n".join(lines) + "\n"


def test_the_baseline_spends_the_same_budget_in_the_original_game(tmp_path, capsys):
    from rove.cli import main

    values = _config().to_dict()
    values.pop("score_window")
    (tmp_path / "envgen.toml").write_text(_toml(values))
    code = main(
        ["envgen", str(tmp_path / "envgen.toml"), "--baseline", "--run-dir", str(tmp_path / "ppo"), "--no-progress"]
    )
    assert code == 0 and "Crafter score over steps 512-1024" in capsys.readouterr().out
    config = baseline_of(_config())
    result = json.loads((tmp_path / "ppo" / "result.json").read_text())
    _check_budget(result, config)
    assert result["transitions"]["generated"] == 0 and result["score_window"] == [2 * ROLLOUT, 4 * ROLLOUT]
    assert (tmp_path / "ppo" / FINAL_FILE).is_file()
    summary = _run_summary([tmp_path / "ppo", "--out", tmp_path / "table"])  # experiments/envgen_summary.py
    assert "| PPO | 1 |" in summary and "| collect_wood |" in summary
    assert (tmp_path / "table" / "ppo_result.json").is_file()
    with pytest.raises(ValueError, match="finished"):
        run_envgen(config, tmp_path / "ppo")
    (tmp_path / "ppo" / "result.json").unlink()
    with pytest.raises(ValueError, match=r"another config.*total_timesteps"):
        run_envgen(baseline_of(_config(total_timesteps=5 * ROLLOUT)), tmp_path / "ppo")


def test_the_command_refuses_an_unknown_config_key(tmp_path, capsys, monkeypatch):
    from rove.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.toml").write_text("cycle = 2\n")
    assert main(["envgen", str(tmp_path / "bad.toml")]) == 2
    err = capsys.readouterr().err
    assert "unknown envgen config key(s) ['cycle']" in err and "cycles" in err
    assert not (tmp_path / "runs").exists()  # refused before any run folder
    (tmp_path / "bad_env.toml").write_text('[env_kwargs]\nobservation_keys = ["pixels"]\n')
    assert main(["envgen", str(tmp_path / "bad_env.toml"), "--run-dir", str(tmp_path / "r")]) == 2
    assert "pixels" in capsys.readouterr().err and not (tmp_path / "r" / "envgen.json").exists()


def test_generated_phases_build_envs_from_the_llms_worlds(tmp_path):
    worlds = [WorldConfig(biome="mountain"), WorldConfig(inventory=(("wood", 3),))]
    run = EnvGenRun(_config(), tmp_path)
    vec = run._env(0, worlds)
    try:
        built = [env.unwrapped.world for env in vec.envs]
        limits = [env.unwrapped._env._length for env in vec.envs]
    finally:
        vec.close()
    assert built == [worlds[0], worlds[1], worlds[0], worlds[1]] and limits == [100] * 4
    original = run._env(1, None)
    try:
        assert all(env.unwrapped.world.is_default for env in original.envs)
    finally:
        original.close()


# -- the real CPU model --
@pytest.fixture(scope="module")
def designer(smollm2_dir):
    from rove.llm.backends import TransformersBackend

    return TransformersBackend(smollm2_dir, max_new_tokens=120, temperature=0.0, device="cpu")


class _KilledAt:
    """Fault injection: the real model, but the process is 'killed' (KeyboardInterrupt) at call ``n``."""

    def __init__(self, backend, n: int) -> None:
        self.backend, self.n, self.calls = backend, n, 0

    def complete(self, conversations):
        self.calls += 1
        if self.calls == self.n:
            raise KeyboardInterrupt
        return self.backend.complete(conversations)


def _progress_steps(run_dir) -> list[int]:
    return [json.loads(line)["step"] for line in (run_dir / "agent" / "progress.jsonl").read_text().splitlines()]


def _episodes(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "agent" / "episodes.jsonl").read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.timeout(3600)  # 4-6 calls of the CPU model (each ~10 s on a free core) and 6 short PPO phases
def test_envgen_with_smollm2_end_to_end_and_resumed_equals_uninterrupted(tmp_path, designer):
    config = _config(cycles=2, total_timesteps=6 * ROLLOUT)
    torch.manual_seed(0)
    result = run_envgen(config, tmp_path / "a", backend=designer)
    _check_budget(result, config)
    state = json.loads((tmp_path / "a" / "envgen.json").read_text())
    calls = EnvGenLog(tmp_path / "a" / "llm.sqlite").calls()
    assert {c["cycle"] for c in calls} == {0, 1}
    first = next(c for c in calls if c["cycle"] == 0 and c["worlds"])
    # The worlds trained in are the ones read from the model's own answer.
    assert state["cycles"][0]["worlds"] == [w.to_dict() for w in parse_worlds(first["answer"])[0]][:2]
    feedback = [m["content"] for m in state["conversation"] if m["role"] == "user"]
    assert state["cycles"][1]["fell_back"] or any("collect_wood:" in t for t in feedback)
    assert "rates" in state["cycles"][0] and state["cycles"][0]["episodes"] >= 0

    # Killed when asking for the second cycle's worlds (the first cycle's original-game phase is done but
    # not yet checkpointed): the resumed run redoes that phase and ends where the uninterrupted one did.
    torch.manual_seed(0)
    killed = _KilledAt(designer, 1 + sum(1 for c in calls if c["cycle"] == 0))  # the first call of cycle 1
    with pytest.raises(KeyboardInterrupt):
        run_envgen(config, tmp_path / "b", backend=killed)
    assert json.loads((tmp_path / "b" / "envgen.json").read_text())["phase"] == 1
    resumed = run_envgen(config, tmp_path / "b", backend=designer)
    assert resumed == result
    assert _episodes(tmp_path / "b") == _episodes(tmp_path / "a")
    assert _progress_steps(tmp_path / "b") == _progress_steps(tmp_path / "a")  # the redone phase logged once
    a = torch.load(tmp_path / "a" / FINAL_FILE, weights_only=False)
    b = torch.load(tmp_path / "b" / FINAL_FILE, weights_only=False)
    assert a["num_timesteps"] == b["num_timesteps"]
    for key, value in a["policy"].items():
        torch.testing.assert_close(b["policy"][key], value, rtol=0, atol=0)
