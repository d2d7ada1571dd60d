"""One conformance test set over every registered intrinsic module and Rove-like observation spaces.

A new module registered in ``rove.intrinsic`` gets these tests for free. A (module, space) pair is skipped
only when the module says it does not support the space (``get(name).supports(space)`` is False).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from gymnasium import spaces

import rove.intrinsic as ri
from rove.envs.core import caption_space, encode_caption, state_key_space
from rove.intrinsic import IntrinsicModule, Rollout
from rove.intrinsic.registry import builtin_names

T, E = 4, 2
CAPTIONS = ["", "You open the door.", "You see here a key.", "It's a wall."]

# Modules that need options to be built at all.
KWARGS: dict[str, dict[str, Any]] = {"fusion": {"modules": [("icm", {}), ("e3b", {})]}}
# Modules with networks that must train on every update.
LEARNS = {"icm", "disagreement", "e3b", "ride", "rnd", "noveld", "ngu", "rdd", "byol_explore", "byol_hindsight"}


def _caption(n: int, gen: torch.Generator) -> torch.Tensor:
    picks = torch.randint(len(CAPTIONS), (n,), generator=gen).tolist()
    return torch.as_tensor(np.stack([encode_caption(CAPTIONS[i]) for i in picks]))


def _state_key(n: int, gen: torch.Generator) -> torch.Tensor:
    return torch.randint(0, 5, (n, 1), generator=gen)  # few keys, so that states repeat


def _minigrid(n: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    return {
        "image": torch.randint(0, 11, (n, 7, 7, 3), generator=gen, dtype=torch.uint8),
        "direction": torch.randint(0, 4, (n,), generator=gen),
        "caption": _caption(n, gen),
        "state_key": _state_key(n, gen),
    }


def _nethack(n: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    blstats = torch.randint(0, 20, (n, 27), generator=gen)
    blstats[:, 0] = torch.randint(0, 79, (n,), generator=gen)
    return {
        "glyphs": torch.randint(2359, 2400, (n, 21, 79), generator=gen).to(torch.int16),
        "blstats": blstats,
        "caption": _caption(n, gen),
        "state_key": _state_key(n, gen),
    }


def _crafter(n: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    return {
        "image": torch.randint(0, 256, (n, 64, 64, 3), generator=gen, dtype=torch.uint8),
        "caption": _caption(n, gen),
        "state_key": _state_key(n, gen),
    }


def _box(n: int, gen: torch.Generator) -> torch.Tensor:
    return torch.rand(n, 6, generator=gen) * 2 - 1


def _features(n: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    return {"features": _box(n, gen), "caption": _caption(n, gen), "state_key": _state_key(n, gen)}


Sampler = Callable[[int, torch.Generator], Any]
SPACES: dict[str, tuple[spaces.Space, spaces.Discrete, Sampler]] = {
    "minigrid": (
        spaces.Dict(
            {
                "image": spaces.Box(0, 255, (7, 7, 3), np.uint8),
                "direction": spaces.Discrete(4),
                "caption": caption_space(),
                "state_key": state_key_space(),
            }
        ),
        spaces.Discrete(7),
        _minigrid,
    ),
    "nethack": (
        spaces.Dict(
            {
                "glyphs": spaces.Box(0, 5976, (21, 79), np.int16),
                "blstats": spaces.Box(np.iinfo(np.int64).min, np.iinfo(np.int64).max, (27,), np.int64),
                "caption": caption_space(),
                "state_key": state_key_space(),
            }
        ),
        spaces.Discrete(23),
        _nethack,
    ),
    "crafter": (
        spaces.Dict(
            {
                "image": spaces.Box(0, 255, (64, 64, 3), np.uint8),
                "caption": caption_space(),
                "state_key": state_key_space(),
            }
        ),
        spaces.Discrete(17),
        _crafter,
    ),
    "box": (spaces.Box(-1.0, 1.0, (6,), np.float32), spaces.Discrete(4), _box),
    # A user's own env: float features plus Rove's keys (so caption-reading modules also meet a float input).
    "features": (
        spaces.Dict(
            {
                "features": spaces.Box(-1.0, 1.0, (6,), np.float32),
                "caption": caption_space(),
                "state_key": state_key_space(),
            }
        ),
        spaces.Discrete(4),
        _features,
    ),
}
CASES = [pytest.param(name, space, id=f"{name}-{space}") for name in builtin_names() for space in SPACES]


def _stack(obs: list[Any]) -> Any:
    if isinstance(obs[0], dict):
        return {k: torch.stack([o[k] for o in obs]) for k in obs[0]}
    return torch.stack(obs)


def make_rollout(
    space: str, seed: int, *, fresh_start: bool = False, end_all: bool = False, constant: bool = False
) -> Rollout:
    """``T x E`` transitions: env 0's episode ends at t=1 and autoresets at t=2 (``valid`` False).

    ``end_all``: every env's episode ends at the last step; ``fresh_start``: every env autoresets at t=0 (the
    step after such an end). ``constant``: every observation is the same.
    """
    _, action_space, sample = SPACES[space]
    gen = torch.Generator().manual_seed(seed)
    frames = [sample(E, gen) for _ in range(T + 1)]
    if constant:
        frames = [frames[0]] * (T + 1)
    obs = _stack(frames)
    obs_t = _index(obs, slice(0, T))
    next_obs = _index(obs, slice(1, T + 1))
    actions = torch.randint(int(action_space.n), (T, E), generator=gen)
    dones = torch.zeros(T, E, dtype=torch.bool)
    valid = torch.ones(T, E, dtype=torch.bool)
    dones[1, 0] = True
    valid[2, 0] = False
    if fresh_start:
        valid[0] = False
    if end_all:
        dones[-1] = True
    return Rollout(obs_t, actions, next_obs, torch.zeros(T, E), dones, valid)


def _index(obs: Any, index: slice) -> Any:
    return {k: v[index] for k, v in obs.items()} if isinstance(obs, dict) else obs[index]


def build(name: str, space: str, seed: int = 0) -> IntrinsicModule:
    observation_space, action_space, _ = SPACES[space]
    if not ri.get(name).supports(observation_space):
        pytest.skip(f"{name} does not support the {space} space")
    return ri.make(name, observation_space, action_space, seed=seed, **KWARGS.get(name, {}))


def run(module: IntrinsicModule, rollout: Rollout, *, update: bool = True) -> tuple[torch.Tensor, dict[str, float]]:
    """Drives the module through one rollout as an agent does: observe each step, compute, update."""
    for t in range(rollout.num_steps):
        module.observe(rollout.step(t))
    reward = module.compute(rollout)
    losses = module.update(rollout) if update else {}
    return reward, losses


def trainable(module: IntrinsicModule) -> dict[str, torch.Tensor]:
    return {k: p.detach().clone() for k, p in module.named_parameters() if p.requires_grad}


@pytest.mark.parametrize(("name", "space"), CASES)
def test_compute_shape_dtype_device_finite_and_zero_on_invalid(name: str, space: str) -> None:
    module = build(name, space)
    rollout = make_rollout(space, seed=1)
    reward, _ = run(module, rollout, update=False)
    assert reward.shape == (T, E)
    assert reward.dtype == torch.float32
    assert reward.device.type == module.device.type
    assert bool(torch.isfinite(reward).all())
    assert bool((reward[~rollout.valid] == 0).all()), "autoreset steps must earn no intrinsic reward"


@pytest.mark.parametrize(("name", "space"), CASES)
def test_update_returns_float_losses_and_trains(name: str, space: str) -> None:
    module = build(name, space)
    before = trainable(module)
    _, losses = run(module, make_rollout(space, seed=1))
    assert isinstance(losses, dict)
    assert all(isinstance(k, str) and isinstance(v, float) and np.isfinite(v) for k, v in losses.items()), losses
    if name in LEARNS:
        assert losses, f"{name} learns but update() reported no losses"
        after = trainable(module)
        assert any(not torch.equal(before[k], after[k]) for k in before), f"{name}.update changed no parameter"


@pytest.mark.parametrize(("name", "space"), CASES)
def test_state_dict_round_trip_gives_identical_rewards(name: str, space: str) -> None:
    trained = build(name, space, seed=0)
    run(trained, make_rollout(space, seed=1, end_all=True))
    restored = build(name, space, seed=123)
    restored.load_state_dict(trained.state_dict())
    nxt = make_rollout(space, seed=2, fresh_start=True)
    torch.testing.assert_close(run(restored, nxt, update=False)[0], run(trained, nxt, update=False)[0])


@pytest.mark.parametrize(("name", "space"), CASES)
def test_same_seed_gives_identical_rewards(name: str, space: str) -> None:
    a, b = build(name, space, seed=7), build(name, space, seed=7)
    for seed in (1, 2):
        rollout = make_rollout(space, seed=seed)
        torch.testing.assert_close(run(a, rollout)[0], run(b, rollout)[0])


@pytest.mark.parametrize(("name", "space"), CASES)
def test_constant_observations_give_finite_rewards_and_losses(name: str, space: str) -> None:
    module = build(name, space)
    for _ in range(2):
        reward, losses = run(module, make_rollout(space, seed=1, constant=True))
        assert bool(torch.isfinite(reward).all())
        assert all(np.isfinite(v) for v in losses.values()), losses


@pytest.mark.parametrize(("name", "space"), [c for c in CASES if c.values[1] in ("box", "features")])
def test_nan_observation_raises_clear_error(name: str, space: str) -> None:
    module = build(name, space)
    rollout = make_rollout(space, seed=1)
    if isinstance(rollout.next_obs, dict):
        bad_next = dict(rollout.next_obs, features=rollout.next_obs["features"].clone())
        bad_next["features"][1, 0, 0] = float("nan")
    else:
        bad_next = rollout.next_obs.clone()
        bad_next[1, 0, 0] = float("nan")
    bad = Rollout(rollout.obs, rollout.actions, bad_next, rollout.rewards, rollout.dones, rollout.valid)
    with pytest.raises(ValueError, match="NaN"):
        module.observe(bad.step(1))
    with pytest.raises(ValueError, match="NaN"):
        module.compute(bad)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", builtin_names())
def test_runs_on_cuda(name: str) -> None:
    observation_space, action_space, _ = SPACES["minigrid"]
    if not ri.get(name).supports(observation_space):
        pytest.skip(f"{name} does not support the minigrid space")
    module = ri.make(name, observation_space, action_space, seed=0, device="cuda", **KWARGS.get(name, {}))
    reward, losses = run(module, make_rollout("minigrid", seed=1))  # CPU inputs: the module moves them
    assert reward.device.type == "cuda"
    assert bool(torch.isfinite(reward).all()) and all(np.isfinite(v) for v in losses.values())


def test_make_with_a_typo_lists_the_names() -> None:
    observation_space, action_space, _ = SPACES["box"]
    with pytest.raises(KeyError) as info:
        ri.make("icmm", observation_space, action_space)
    message = str(info.value)
    assert "'icm'" in message
    assert all(name in message for name in ri.names())
