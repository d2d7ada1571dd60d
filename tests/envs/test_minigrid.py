"""Tests of the MiniGrid/BabyAI adapter (rove/envs/minigrid): interface, captions, state keys, statistics."""

from __future__ import annotations

import pickle
from collections import deque

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import rove  # noqa: F401  (registers the Rove/ ids)
from rove.envs.core import decode_caption
from rove.envs.minigrid import MiniGridEnv
from rove.envs.minigrid.captions import DROP, FORWARD, LEFT, PICKUP, RIGHT, TOGGLE

DOORKEY = "MiniGrid-DoorKey-8x8-v0"
DIR_TO_VEC = ((1, 0), (0, 1), (-1, 0), (0, -1))
# A handful of ids with different mechanics; tests/envs of the suite-wide conformance run covers every id.
CHECK_IDS = (
    "MiniGrid-Empty-5x5-v0",
    "MiniGrid-DoorKey-5x5-v0",
    "MiniGrid-LavaGapS5-v0",
    "MiniGrid-KeyCorridorS3R1-v0",
    "MiniGrid-ObstructedMaze-1Dlhb-v0",
    "MiniGrid-Dynamic-Obstacles-5x5-v0",
    "BabyAI-GoToRedBallGrey-v0",
    "BabyAI-UnlockLocal-v0",
)


# -- a small planner over the seeded grid --
def _passable(cell) -> bool:
    return cell is None or (cell.can_overlap() and cell.type != "lava")


def _path_to_face(env: MiniGridEnv, target: tuple[int, int]) -> list[tuple[int, int]] | None:
    """Shortest list of cells from the agent to a cell next to ``target`` (BFS over passable cells)."""
    start = env.agent_pos
    goals = {(target[0] + dx, target[1] + dy) for dx, dy in DIR_TO_VEC}
    prev: dict[tuple[int, int], tuple[int, int] | None] = {start: None}
    queue = deque([start])
    while queue:
        cell = queue.popleft()
        if cell in goals:
            path = []
            while cell is not None:
                path.append(cell)
                cell = prev[cell]
            return path[::-1][1:]
        for dx, dy in DIR_TO_VEC:
            nxt = (cell[0] + dx, cell[1] + dy)
            if nxt not in prev and _passable(env.grid.get(*nxt)):
                prev[nxt] = cell
                queue.append(nxt)
    return None


def _turn_to(env: MiniGridEnv, cell: tuple[int, int]) -> list[str]:
    x, y = env.agent_pos
    want = DIR_TO_VEC.index((cell[0] - x, cell[1] - y))
    captions = []
    while env.agent_dir != want:
        turn = RIGHT if (want - env.agent_dir) % 4 == 1 else LEFT
        captions.append(env.step(turn)[4]["caption"])
    return captions


def face(env: MiniGridEnv, target: tuple[int, int]) -> list[str]:
    """Walks the agent next to ``target`` and turns it to face it; returns the captions on the way."""
    path = _path_to_face(env, target)
    assert path is not None, f"no path to {target}"
    captions = []
    for cell in path:
        captions += _turn_to(env, cell)
        captions.append(env.step(FORWARD)[4]["caption"])
        assert env.agent_pos == cell
    captions += _turn_to(env, target)
    return captions


def find(env: MiniGridEnv, obj_type: str) -> tuple[int, int]:
    grid = env.grid
    for x in range(grid.width):
        for y in range(grid.height):
            cell = grid.get(x, y)
            if cell is not None and cell.type == obj_type:
                return x, y
    raise AssertionError(f"no {obj_type} in the grid")


# -- interface --
@pytest.mark.parametrize("env_id", CHECK_IDS)
def test_check_env(env_id):
    env = gym.make(f"Rove/{env_id}", observation_keys=("image", "direction", "mission", "caption", "state_key"))
    check_env(env.unwrapped, skip_render_check=True)
    obs, info = env.reset(seed=0)
    assert obs in env.observation_space
    assert decode_caption(obs["mission"]) == env.unwrapped.mission
    assert info["caption"] == ""


def test_default_keys_and_spaces():
    env = gym.make(f"Rove/{DOORKEY}")
    assert set(env.observation_space.spaces) == {"image", "direction", "caption", "state_key"}
    assert env.observation_space["image"].shape == (7, 7, 3)
    assert env.observation_space["direction"] == gym.spaces.Discrete(4)
    assert env.action_space == gym.spaces.Discrete(7)


def test_minigrid_kwargs_pass_through():
    env = MiniGridEnv(DOORKEY, agent_view_size=5, max_steps=3)
    assert env.observation_space["image"].shape == (5, 5, 3)
    obs, _ = env.reset(seed=0)
    assert obs["image"].shape == (5, 5, 3)
    results = [env.step(LEFT) for _ in range(3)]
    assert [r[3] for r in results] == [False, False, True]  # truncated at max_steps
    assert not any(r[2] for r in results)
    episode = results[-1][4]["episode"]
    assert episode["l"] == 3 and episode["success"] is False and episode["r"] == 0.0


@pytest.mark.parametrize("keys", [("image",), ("state_key",), ("mission", "caption")])
def test_only_requested_keys(keys):
    env = MiniGridEnv(DOORKEY, observation_keys=keys)
    assert tuple(env.observation_space.spaces) == tuple(sorted(keys))
    obs, _ = env.reset(seed=1)
    assert set(obs) == set(keys)
    obs, *_ = env.step(FORWARD)
    assert set(obs) == set(keys)
    assert obs in env.observation_space


def _rollout(env: MiniGridEnv, seed: int, actions) -> tuple[list, list]:
    obs, _ = env.reset(seed=seed)
    observations, rewards = [obs], []
    for a in actions:
        obs, reward, terminated, truncated, _ = env.step(a)
        observations.append(obs)
        rewards.append(reward)
        if terminated or truncated:
            obs, _ = env.reset()
            observations.append(obs)
    return observations, rewards


def _same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(
        x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x) for x, y in zip(a, b, strict=True)
    )


def test_seed_determinism():
    actions = np.random.default_rng(0).integers(0, 6, size=200)
    env = MiniGridEnv(DOORKEY, max_steps=60)
    obs_a, rew_a = _rollout(env, 3, actions)
    obs_b, rew_b = _rollout(MiniGridEnv(DOORKEY, max_steps=60), 3, actions)
    assert _same(obs_a, obs_b) and rew_a == rew_b
    obs_c, _ = _rollout(env, 4, actions)
    assert not _same(obs_a, obs_c)


def test_pickle_mid_episode():
    env = MiniGridEnv(DOORKEY)
    env.reset(seed=5)
    for a in (LEFT, FORWARD, RIGHT, FORWARD):
        env.step(a)
    clone = pickle.loads(pickle.dumps(env))
    for a in (FORWARD, LEFT, FORWARD, PICKUP, TOGGLE):
        got, want = clone.step(a), env.step(a)
        assert all(np.array_equal(got[0][k], want[0][k]) for k in want[0])
        assert got[1:] == want[1:]


# -- captions, state keys and statistics on scripted scenarios --
def test_doorkey_scripted_captions_and_success():
    env = MiniGridEnv(DOORKEY)
    env.reset(seed=0)
    key_pos, door_pos = find(env, "key"), find(env, "door")
    key_color = env.grid.get(*key_pos).color
    door_color = env.grid.get(*door_pos).color

    # Nothing happened while walking and turning: empty captions.
    assert set(face(env, door_pos)) == {""}
    obs, _, _, _, info = env.step(TOGGLE)
    assert info["caption"] == f"The {door_color} door is locked. You need a {door_color} key."
    assert decode_caption(obs["caption"]) == info["caption"]

    face(env, key_pos)
    obs, _, _, _, info = env.step(PICKUP)
    assert info["caption"] == f"You picked up the {key_color} key."
    assert decode_caption(obs["caption"]) == info["caption"]
    assert env.step(LEFT)[4]["caption"] == ""

    face(env, door_pos)
    assert env.step(TOGGLE)[4]["caption"] == f"You unlocked the {door_color} door."
    assert env.step(TOGGLE)[4]["caption"] == f"You closed the {door_color} door."
    assert env.step(TOGGLE)[4]["caption"] == f"You opened the {door_color} door."

    # Drop the key on a free cell next to the agent.
    for _ in range(4):
        fx, fy = env.minigrid_env.front_pos
        if env.grid.get(fx, fy) is None:
            break
        env.step(LEFT)
    assert env.step(DROP)[4]["caption"] == f"You dropped the {key_color} key."

    face(env, find(env, "goal"))
    _, reward, terminated, truncated, info = env.step(FORWARD)
    assert info["caption"] == "You reached the goal."
    assert terminated and not truncated and reward > 0
    assert info["episode"]["success"] is True
    assert info["episode"]["r"] == pytest.approx(reward)
    assert info["episode"]["l"] == env.minigrid_env.step_count


def test_lava_caption_and_failure():
    env = MiniGridEnv("MiniGrid-LavaGapS5-v0")
    env.reset(seed=0)
    face(env, find(env, "lava"))
    _, reward, terminated, _, info = env.step(FORWARD)
    assert terminated and reward == 0
    assert info["caption"] == "You walked into lava."
    assert info["episode"]["success"] is False


def test_box_caption():
    env = MiniGridEnv("MiniGrid-ObstructedMaze-1Dlhb-v0")
    env.reset(seed=0)
    box = env.grid.get(*find(env, "box"))
    face(env, find(env, "box"))
    caption = env.step(TOGGLE)[4]["caption"]
    assert caption == f"You opened the {box.color} box. It contained a {box.contains.color} {box.contains.type}."


def test_state_key_tracks_pose_carrying_and_doors():
    env = MiniGridEnv(DOORKEY, observation_keys=("state_key",))
    obs, _ = env.reset(seed=0)
    start = int(obs["state_key"][0])
    turned = int(env.step(LEFT)[0]["state_key"][0])
    assert turned != start
    assert int(env.step(RIGHT)[0]["state_key"][0]) == start  # same pose, same key

    face(env, find(env, "key"))
    before = env.state_key()
    carrying = int(env.step(PICKUP)[0]["state_key"][0])
    assert carrying != before

    face(env, find(env, "door"))
    locked = env.state_key()
    opened = int(env.step(TOGGLE)[0]["state_key"][0])
    closed = int(env.step(TOGGLE)[0]["state_key"][0])  # same pose and key: only the door state differs
    assert len({locked, opened, closed}) == 3
    assert int(env.step(TOGGLE)[0]["state_key"][0]) == opened

    # Keys are exact, not salted per process or instance: a fresh env seeded alike starts on the same key.
    other = MiniGridEnv(DOORKEY, observation_keys=("state_key",))
    other.reset(seed=0)
    assert other.state_key() == start


# -- errors --
def test_errors():
    env = MiniGridEnv(DOORKEY)
    env.reset(seed=0)
    for bad in (7, -1, 1.5, "left", None):
        with pytest.raises(ValueError, match="invalid action"):
            env.step(bad)
    with pytest.raises(ValueError, match="unknown observation key 'imag'"):
        MiniGridEnv(DOORKEY, observation_keys=("imag",))
    with pytest.raises(TypeError, match="string"):
        MiniGridEnv(DOORKEY, observation_keys="image")
    with pytest.raises(TypeError, match="agent_veiw_size"):
        MiniGridEnv(DOORKEY, agent_veiw_size=5)
    with pytest.raises(ValueError, match="MiniGrid-DoorKey-8x8-v0"):
        MiniGridEnv("MiniGrid-DoorKey-8x9-v0")
    with pytest.raises(gym.error.Error):
        gym.make("Rove/MiniGrid-DoorKey-8x9-v0")


def _full_state(env: MiniGridEnv) -> bytes:
    """The complete state, computed apart from the adapter: every grid cell, the agent's pose, the carried object."""
    inner = env.minigrid_env
    cells = [cell.encode() if cell is not None else None for cell in inner.grid.grid]
    carried = inner.carrying.encode() if inner.carrying is not None else None
    return repr((cells, tuple(int(v) for v in inner.agent_pos), int(inner.agent_dir), carried)).encode()


@pytest.mark.parametrize(
    "env_id",
    ["MiniGrid-DoorKey-8x8-v0", "MiniGrid-UnlockPickup-v0", "BabyAI-GoToLocal-v0", "MiniGrid-Dynamic-Obstacles-8x8-v0"],
)
def test_state_key_is_exact_and_pose_key_is_not(env_id):
    """Random rollouts: a state key never stands for two different states; the pose key does (a moved key...)."""
    env = MiniGridEnv(env_id, observation_keys=("state_key", "pose_key"))
    rng = np.random.default_rng(0)
    by_state_key: dict[int, bytes] = {}
    by_pose_key: dict[int, set[bytes]] = {}
    for episode in range(15):
        obs, _ = env.reset(seed=episode)
        for _ in range(300):
            full = _full_state(env)
            assert by_state_key.setdefault(int(obs["state_key"][0]), full) == full
            by_pose_key.setdefault(int(obs["pose_key"][0]), set()).add(full)
            obs, _, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
            if terminated or truncated:
                break
    assert any(len(states) > 1 for states in by_pose_key.values())  # pose keys collide on these rollouts
    assert len(by_state_key) > len(by_pose_key)


def test_text_places_the_key_relative_to_the_agent():
    env = MiniGridEnv(DOORKEY, observation_keys=("image", "text"))
    obs, info = env.reset(seed=0)
    assert decode_caption(obs["text"]) == info["text"]
    assert info["text"].startswith(f"Mission: {env.mission}\n")
    kx, ky = find(env, "key")
    ax, ay = env.agent_pos
    fx, fy = [(1, 0), (0, 1), (-1, 0), (0, -1)][env.agent_dir]  # minigrid's DIR_TO_VEC
    rx, ry = -fy, fx  # the agent's right hand
    ahead, right = (kx - ax) * fx + (ky - ay) * fy, (kx - ax) * rx + (ky - ay) * ry
    words = [f"{abs(ahead)} {'ahead' if ahead > 0 else 'behind'}"] * bool(ahead)
    words += [f"{abs(right)} {'right' if right > 0 else 'left'}"] * bool(right)
    assert f"yellow key: {', '.join(words)}\n" in info["text"]
    face(env, (kx, ky))
    env.step(PICKUP)
    assert env.step(LEFT)[4]["text"].endswith("You carry: yellow key")
