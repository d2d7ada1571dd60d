"""Kill -9 at a random moment, resume from the last checkpoint: the finished run equals an uninterrupted one.

One test per suite (MiniGrid, Crafter, NetHack), each with an intrinsic module and a linear learning-rate
schedule. The uninterrupted run and the resumed one run in this process, the killed one in a subprocess;
every thread count is 1, so both processes compute the same floats.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import rove
from rove.agents import PPO, CheckpointCallback
from rove.agents.common.utils import linear_schedule

TRAIN = textwrap.dedent(
    """
    import json, sys, time, torch
    torch.set_num_threads(1)
    from rove.agents import PPO, BaseCallback, CheckpointCallback
    from rove.agents.common.utils import linear_schedule

    class Dawdle(BaseCallback):  # slows every env step (not the results) so the kill lands mid-run
        def _on_step(self):
            time.sleep(0.03)
            return True

    config = json.loads(sys.argv[1])
    env = config["env"]
    if config.get("vec"):  # a vector env the user builds (e.g. subprocess mode)
        import rove
        env = rove.make_vec(env, config["kwargs"]["n_envs"], seed=config["kwargs"]["seed"], copy=False, **config["vec"])
    model = PPO("auto", env, learning_rate=linear_schedule(1e-3), run_dir=sys.argv[2], verbose=0, **config["kwargs"])
    model.learn(config["total"], callback=[Dawdle(), CheckpointCallback(10**9)])
    """
)

SUITES = {
    "minigrid": {
        "env": "Rove/MiniGrid-DoorKey-5x5-v0",
        "kwargs": {"intrinsic": "rnd", "n_envs": 4, "n_steps": 8, "batch_size": 16, "n_epochs": 2, "seed": 3},
        "total": 4 * 30,
    },
    "minigrid_empowerment": {
        "env": "Rove/MiniGrid-Empty-5x5-v0",
        "kwargs": {"intrinsic": "empowerment", "n_envs": 4, "n_steps": 8, "batch_size": 16, "n_epochs": 1, "seed": 9},
        "total": 4 * 20,
    },
    "crafter": {
        "env": "Rove/CrafterReward-v1",
        "kwargs": {"intrinsic": "rnd", "n_envs": 2, "n_steps": 4, "batch_size": 8, "n_epochs": 1, "seed": 4},
        "total": 4 * 8,
    },
    "nethack": {
        "env": "Rove/NetHackScore-v0",
        "kwargs": {
            "intrinsic": "fusion",
            "intrinsic_kwargs": {"modules": ["rnd", "ride"]},
            "n_envs": 2,
            "n_steps": 8,
            "batch_size": 16,
            "n_epochs": 1,
            "seed": 5,
        },
        "total": 4 * 15,
    },
    "minigrid_airs": {  # the bandit (counts, window, choice, unfinished returns) comes back exactly
        "env": "Rove/MiniGrid-Empty-5x5-v0",
        "vec": {"max_steps": 12},  # episodes end every 1.5 rollouts: the bandit is credited and re-chooses
        "kwargs": {
            "intrinsic": "airs",
            "intrinsic_kwargs": {"candidates": ["none", "count", "rnd"]},
            "n_envs": 4,
            "n_steps": 8,
            "batch_size": 16,
            "n_epochs": 1,
            "seed": 9,
        },
        "total": 4 * 8 * 6,
    },
}


# Bigger runs (@slow): more updates and later kills, an LSTM policy, tuned coefficients, a subprocess-mode vector env.
SLOW_SUITES = {
    "minigrid_lstm": {
        "env": "Rove/MiniGrid-DoorKey-5x5-v0",
        "kwargs": {
            "intrinsic": "noveld",
            "n_envs": 4,
            "n_steps": 32,
            "batch_size": 64,
            "n_epochs": 2,
            "seed": 6,
            "policy_kwargs": {"lstm": True, "lstm_hidden_size": 32},
        },
        "total": 12 * 120,
        "kill_after": (2, 9),
    },
    "crafter_e3b": {
        "env": "Rove/CrafterReward-v1",
        "kwargs": {"intrinsic": "e3b", "n_envs": 2, "n_steps": 32, "batch_size": 32, "n_epochs": 2, "seed": 7},
        "total": 10 * 64,
        "kill_after": (2, 7),
    },
    "minigrid_byol_hindsight": {
        "env": "Rove/MiniGrid-DoorKey-5x5-v0",
        "kwargs": {
            "intrinsic": "byol_hindsight",
            "intrinsic_kwargs": {"features_dim": 32, "hidden_dim": 32, "num_epochs": 1, "num_minibatches": 2},
            "n_envs": 4,
            "n_steps": 16,
            "batch_size": 32,
            "n_epochs": 1,
            "seed": 9,
        },
        "total": 10 * 64,
        "kill_after": (2, 7),
    },
    "minigrid_maxinfo": {  # int_coef and ent_coef tuned per rollout (their values and Adam states resume too)
        "env": "Rove/MiniGrid-DoorKey-5x5-v0",
        "kwargs": {
            "intrinsic": "infogain",
            "int_coef": "auto",
            "ent_coef": "auto",
            "dual_lr": 0.1,
            "n_envs": 4,
            "n_steps": 16,
            "batch_size": 32,
            "n_epochs": 2,
            "seed": 9,
        },
        "total": 10 * 64,
        "kill_after": (2, 7),
    },
    "crafter_world": {  # a configured Crafter world (EnvGen's env option) is part of the env state
        "env": "Rove/CrafterReward-v1",
        "vec": {"world": {"biome": "grassland", "cow_rate": 3.0, "inventory": {"wood": 2}}},
        "kwargs": {"intrinsic": "rnd", "n_envs": 2, "n_steps": 32, "batch_size": 32, "n_epochs": 1, "seed": 9},
        "total": 10 * 64,
        "kill_after": (2, 7),
    },
    "nethack_subprocess": {
        "env": "Rove/NetHackScore-v0",
        "vec": {"mode": "subprocess", "num_workers": 2},
        "kwargs": {"intrinsic": "e3b", "n_envs": 4, "n_steps": 32, "batch_size": 64, "n_epochs": 1, "seed": 8},
        "total": 10 * 120,
        "kill_after": (2, 7),
    },
}


def make_env(config: dict[str, Any]) -> Any:
    if not config.get("vec"):
        return config["env"]
    kwargs = config["kwargs"]
    return rove.make_vec(config["env"], kwargs["n_envs"], seed=kwargs["seed"], copy=False, **config["vec"])


def training_state(model: PPO) -> dict[str, Any]:
    """Everything the run's outcome is: parameters, optimiser, module (networks, memory, generators), counters,
    tuned coefficients."""
    assert model.intrinsic is not None
    return {
        "policy": model.policy.state_dict(),
        "optimizer": model.optimizer.state_dict(),
        "intrinsic": model.intrinsic.state_dict(),
        "intrinsic_training": model.intrinsic.get_training_state(),
        "steps": (model.num_timesteps, model.num_updates),
        "tuned_coefs": {name: coef.state_dict() for name, coef in model._dual_coefs().items()},
    }


def assert_equal(a: Any, b: Any, where: str) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b), where
    elif isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b, err_msg=where)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{where}: {sorted(a)} != {sorted(b)}"
        for key in a:
            assert_equal(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_equal(x, y, f"{where}[{i}]")
    elif type(a).__module__.startswith("rove."):  # a module's state object (count table, memory)
        assert type(a) is type(b), where
        assert_equal(vars(a), vars(b), f"{where}.__dict__")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def one_thread() -> Any:
    class OneThread:
        def __enter__(self) -> None:
            self.threads = torch.get_num_threads()
            torch.set_num_threads(1)

        def __exit__(self, *exc: Any) -> None:
            torch.set_num_threads(self.threads)

    return OneThread()


def run_killed(config: dict[str, Any], run: Path, tmp_path: Path, kill_after: int) -> Path:
    """Trains in a subprocess and SIGKILLs it once ``kill_after`` updates were logged (plus a random delay)."""
    script = tmp_path / "train.py"
    script.write_text(TRAIN)
    proc = subprocess.Popen(
        [sys.executable, str(script), json.dumps(config), str(run)], stderr=subprocess.PIPE, text=True, cwd=tmp_path
    )
    progress = run / "progress.jsonl"
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline:
            logged = progress.exists() and len(progress.read_text().splitlines()) >= kill_after
            if logged and (run / "checkpoints" / "last.pt").exists():
                time.sleep(random.uniform(0.0, 0.2))
                break
            if proc.poll() is not None:
                raise AssertionError(
                    f"training exited before it was killed:\n{proc.stderr.read() if proc.stderr else ''}"
                )
            time.sleep(0.01)
        else:
            raise AssertionError("training logged no update in time")
    finally:
        proc.kill()  # SIGKILL
        proc.wait()
    assert proc.returncode == -9
    return run / "checkpoints" / "last.pt"


TEST_NAME = "test_a_run_killed_at_a_random_moment_resumes_bit_identical"


@pytest.fixture(scope="module")
def killed_runs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Starts the killed run of every selected suite at once, each watched by a thread that kills it, so that
    their start-up (seconds of imports and env construction) overlaps the uninterrupted runs in this process."""
    selected = {
        item.callspec.params["suite"]
        for item in request.session.items
        if getattr(item, "originalname", None) == TEST_NAME and hasattr(item, "callspec")
    }
    runs: dict[str, Any] = {}
    for suite in sorted(selected):
        folder = tmp_path_factory.mktemp(suite)
        result: dict[str, Any] = {}

        def watch(suite: str = suite, folder: Path = folder, result: dict[str, Any] = result) -> None:
            try:
                result["last"] = run_killed(SUITES[suite], folder / "run", folder, random.randint(1, 2))
            except BaseException as exc:
                result["error"] = exc

        thread = threading.Thread(target=watch, daemon=True)
        thread.start()
        runs[suite] = (thread, result)
    return runs


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_a_run_killed_at_a_random_moment_resumes_bit_identical(suite: str, killed_runs: dict[str, Any]) -> None:
    thread, result = killed_runs[suite]
    check_resume_is_exact(SUITES[suite], suite, lambda: join(thread, result))


@pytest.mark.slow
@pytest.mark.parametrize("suite", sorted(SLOW_SUITES))
def test_a_longer_run_killed_at_a_random_moment_resumes_bit_identical(suite: str, tmp_path: Path) -> None:
    config = SLOW_SUITES[suite]
    last = run_killed(config, tmp_path / "run", tmp_path, random.randint(*config["kill_after"]))
    check_resume_is_exact(config, suite, lambda: last)


def join(thread: threading.Thread, result: dict[str, Any]) -> Path:
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["last"]


def check_resume_is_exact(config: dict[str, Any], suite: str, killed_checkpoint: Any) -> None:
    """Trains uninterrupted here, then resumes the killed run's last checkpoint and compares."""
    config = json.loads(json.dumps(config))
    total = config["total"]
    with one_thread():
        env = make_env(config)
        reference = PPO("auto", env, learning_rate=linear_schedule(1e-3), verbose=0, **config["kwargs"])
        reference.learn(total)
        expected = training_state(reference)
        lrs = [group["lr"] for group in reference.optimizer.param_groups]
        reference.env.close()

    last = killed_checkpoint()
    saved = torch.load(last, map_location="cpu", weights_only=False)
    assert 0 < saved["num_timesteps"] < total, "the kill came after the run finished: make it longer"

    with one_thread(), warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # "resume: ... not restored" would fail the test
        model = PPO.load(last, env=make_env(config), device="cpu")
        model.learn(total - model.num_timesteps, callback=CheckpointCallback(10**9), reset_num_timesteps=False)
        got = training_state(model)
        model.env.close()
    assert_equal(got, expected, suite)
    # The schedule continued its decay: the final learning rate is the uninterrupted run's, not a restart's.
    assert [group["lr"] for group in model.optimizer.param_groups] == lrs
