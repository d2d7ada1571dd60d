"""NetHack adapter: Gymnasium conformance, seeding, captions, state keys, step limits and the task variants."""

from __future__ import annotations

import pickle

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from nle import nethack
from nle.env.tasks import TASK_ACTIONS

import rove
from rove.envs.core import CAPTION_BYTES, decode_caption
from rove.envs.nethack import (
    DEFAULT_KEYS,
    NetHackEnv,
    blstats_state_key,
    is_hallucinating,
    pack_state_key,
    staircase_success,
    unpack_state_key,
)

NETHACK_IDS = rove.rove_ids("nethack")
KICK = TASK_ACTIONS.index(nethack.Command.KICK)
N_TASK_ACTIONS = len(TASK_ACTIONS)


def rollout(env: gym.Env, seed: int, steps: int, action_seed: int = 0) -> tuple[list[dict], list[float]]:
    """Observations and rewards of a seeded rollout with a fixed random action sequence (resets on episode end)."""
    actions = np.random.default_rng(action_seed).integers(0, env.action_space.n, size=steps)
    obs, _ = env.reset(seed=seed)
    observations, rewards = [obs], []
    for a in actions:
        obs, reward, terminated, truncated, _ = env.step(int(a))
        observations.append(obs)
        rewards.append(reward)
        if terminated or truncated:
            obs, _ = env.reset()
            observations.append(obs)
    return observations, rewards


def test_every_task_is_registered():
    assert len(NETHACK_IDS) == 20  # 13 on nle's scale (-v0), Motif's 7 (-v1)
    assert "Rove/NetHackStaircaseLvl3-v0" in NETHACK_IDS and "Rove/NetHackOracleSober-v0" in NETHACK_IDS
    assert "Rove/Motif-NetHackStaircaseLvl3-v1" in NETHACK_IDS and "Rove/Motif-NetHackOracleSober-v1" in NETHACK_IDS


@pytest.mark.parametrize("env_id", NETHACK_IDS)
def test_check_env(env_id):
    env = gym.make(env_id)
    check_env(env.unwrapped, skip_render_check=True)
    env.close()


def test_make_with_observation_keys_and_module_prefix():
    env = gym.make("rove:Rove/NetHackScore-v0", observation_keys=("glyphs", "caption"))
    obs, info = env.reset(seed=0)
    assert set(obs) == {"glyphs", "caption"}
    assert set(env.observation_space.spaces) == {"glyphs", "caption"}
    assert env.observation_space.contains(obs)
    assert isinstance(info["caption"], str)
    env.close()


@pytest.mark.parametrize("task", ["NetHackScore", "NetHackChallenge"])
def test_same_seed_same_rollout(task):
    keys = ("glyphs", "blstats", "message", "caption", "state_key")
    env_a = NetHackEnv(task, observation_keys=keys)
    env_b = NetHackEnv(task, observation_keys=keys)
    obs_a, rew_a = rollout(env_a, seed=7, steps=200)
    obs_b, rew_b = rollout(env_b, seed=7, steps=200)
    # Replaying the seed on an env that already played must give the same episode too.
    obs_c, rew_c = rollout(env_a, seed=7, steps=200)
    assert rew_a == rew_b == rew_c
    for oa, ob, oc in zip(obs_a, obs_b, obs_c, strict=True):
        for key in keys:
            np.testing.assert_array_equal(oa[key], ob[key])
            np.testing.assert_array_equal(oa[key], oc[key])
    # The rollout must move the game, or the comparison above would be vacuous.
    assert any(not np.array_equal(obs_a[0][k], o[k]) for o in obs_a[1:] for k in ("glyphs", "message"))


def test_seeded_replay_does_not_inherit_the_previous_episodes_time_penalty():
    # "linear" penalties grow with nle's frozen-step counter, which nle carries over from one episode to the next.
    played = NetHackEnv("NetHackScore", observation_keys=("blstats",), penalty_mode="linear")
    played.reset(seed=0)
    for _ in range(3):
        played.step(KICK)  # "In what direction?": game time stands still
    played.reset(seed=0)
    fresh = NetHackEnv("NetHackScore", observation_keys=("blstats",), penalty_mode="linear")
    fresh.reset(seed=0)
    assert played.step(KICK)[1] == fresh.step(KICK)[1] < 0


def test_different_seeds_differ_and_unseeded_resets_differ():
    env = NetHackEnv("NetHackScore", observation_keys=("glyphs", "blstats"))
    first = [env.reset(seed=s)[0]["glyphs"] for s in (0, 1)]
    assert not np.array_equal(*first)
    env.reset(seed=0)
    follow_up = env.reset()[0]["glyphs"]  # Continues the seeded stream: a new game, not a replay.
    assert not np.array_equal(first[0], follow_up)
    unseeded = [NetHackEnv("NetHackScore", observation_keys=("glyphs",)).reset()[0]["glyphs"] for _ in range(2)]
    assert not np.array_equal(*unseeded)


def test_observations_stay_valid_unless_copy_obs_is_false():
    env = NetHackEnv("NetHackScore", observation_keys=("glyphs", "blstats", "state_key"))
    obs, _ = env.reset(seed=3)
    kept = {k: v.copy() for k, v in obs.items()}
    for a in range(1, 9):
        env.step(a)
    for key in kept:
        np.testing.assert_array_equal(obs[key], kept[key])

    shared = NetHackEnv("NetHackScore", observation_keys=("blstats",), copy_obs=False)
    first, _ = shared.reset(seed=3)
    second = shared.step(1)[0]
    assert second is first and second["blstats"] is first["blstats"]


def test_pickle_rebuilds_a_fresh_env_with_the_same_configuration():
    env = NetHackEnv("NetHackStaircaseLvl3", observation_keys=("blstats", "caption"), character="val-dwa-law-fem")
    obs, _ = env.reset(seed=5)
    env.step(1)
    clone = pickle.loads(pickle.dumps(env))
    assert clone.task == "NetHackStaircaseLvl3"
    assert clone.observation_space == env.observation_space and clone.action_space == env.action_space
    assert clone.nle_env.character == "val-dwa-law-fem"
    with pytest.raises(gym.error.ResetNeeded):
        clone.step(0)
    clone_obs, _ = clone.reset(seed=5)
    for key in obs:
        np.testing.assert_array_equal(obs[key], clone_obs[key])


def test_nle_step_limit_is_a_truncation_with_episode_stats():
    env = NetHackEnv("NetHackScore", max_episode_steps=5)
    env.reset(seed=0)
    for _ in range(4):
        _, _, terminated, truncated, info = env.step(19)  # wait (".")
        assert not (terminated or truncated) and "episode" not in info
    _, _, terminated, truncated, info = env.step(19)
    assert truncated and not terminated
    episode = info["episode"]
    assert episode["l"] == 5 and episode["end_reason"] == "aborted" and episode["depth"] == 1
    assert set(episode) == {"r", "l", "score", "depth", "end_reason", "progression"}
    with pytest.raises(gym.error.ResetNeeded):
        env.step(0)
    env.reset()  # A new game starts after the limit.
    assert not env.step(19)[3]


def test_game_over_is_a_termination():
    env = NetHackEnv("NetHackChallenge")  # Full keyboard: quit with M-q, confirm with "y".
    env.reset(seed=0)
    actions = nethack.ACTIONS
    _, _, terminated, truncated, info = env.step(actions.index(nethack.Command.QUIT))
    assert not (terminated or truncated) and "quit" in info["caption"]
    _, _, terminated, truncated, info = env.step(actions.index(nethack.CompassDirection.NW))  # "y"
    assert terminated and not truncated
    assert info["episode"]["end_reason"] == "quit" and info["episode"]["l"] == 2


def test_gym_make_max_episode_steps_is_gymnasiums_time_limit():
    env = gym.make("Rove/NetHackScore-v0", max_episode_steps=3)
    env.reset(seed=0)
    flags = [env.step(19)[2:4] for _ in range(3)]
    assert flags == [(False, False), (False, False), (False, True)]


def test_nethack_message_is_the_caption():
    env = NetHackEnv("NetHackScore", observation_keys=("message", "caption"))
    obs, info = env.reset(seed=0)
    assert info["caption"].startswith("Hello Agent, welcome to NetHack!")
    assert decode_caption(obs["caption"]) == info["caption"]
    # Kicking asks for a direction; nle leaves that question to the agent, so it is the step's message.
    obs, _, _, _, info = env.step(KICK)
    assert info["caption"].strip() == "In what direction?"
    assert obs["caption"].shape == (CAPTION_BYTES,) and obs["caption"].dtype == np.uint8
    np.testing.assert_array_equal(obs["caption"], obs["message"])
    assert bytes(obs["caption"]).rstrip(b"\0").decode("latin-1") == info["caption"]


def test_state_key_packs_depth_and_position():
    assert unpack_state_key(pack_state_key(3, 12, 78, 20)) == (3, 12, 78, 20)
    assert pack_state_key(0, 1, 5, 6) != pack_state_key(0, 1, 6, 5)
    env = NetHackEnv("NetHackScore", observation_keys=("blstats", "state_key"))
    obs_list, _ = rollout(env, seed=2, steps=150, action_seed=1)
    keys, places = [], []
    for obs in obs_list:
        bl = obs["blstats"]
        place = (int(bl[nethack.NLE_BL_DNUM]), int(bl[nethack.NLE_BL_DLEVEL]), int(bl[0]), int(bl[1]))
        assert obs["state_key"].shape == (1,) and obs["state_key"].dtype == np.int64
        assert unpack_state_key(obs["state_key"][0]) == place
        keys.append(int(obs["state_key"][0]))
        places.append(place)
    assert len(set(places)) > 3, "the agent should have moved"
    # Same key exactly when same place.
    assert len(set(keys)) == len(set(places))
    assert blstats_state_key(obs_list[0]["blstats"]) == keys[0]


def test_only_requested_keys_are_computed():
    env = NetHackEnv("NetHackScore", observation_keys=("blstats",))
    obs, info = env.reset(seed=0)
    assert set(obs) == {"blstats"} and "caption" in info
    obs, *_, info = env.step(1)
    assert set(obs) == {"blstats"} and isinstance(info["caption"], str)
    # nle computes only its own always-needed keys, none of the expensive optional ones.
    assert set(env.nle_env._observation_keys) == {"glyphs", "blstats", "message", "program_state", "internal"}
    default = NetHackEnv("NetHackScore")
    assert tuple(default.reset(seed=0)[0]) == DEFAULT_KEYS
    tty = NetHackEnv("NetHackScore", observation_keys=("tty_chars", "state_key"))
    assert set(tty.reset(seed=0)[0]) == {"tty_chars", "state_key"}
    assert "tty_chars" in tty.nle_env._observation_keys and "chars" not in tty.nle_env._observation_keys


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match=r"'glyph'.*glyphs"):
        NetHackEnv("NetHackScore", observation_keys=("glyph",))
    with pytest.raises(ValueError, match="NetHackStaircase"):
        NetHackEnv("NetHackStairs")
    with pytest.raises(TypeError, match=r"'charakter'.*character"):
        NetHackEnv("NetHackScore", charakter="val")
    with pytest.raises(TypeError, match="'wizard'"):
        NetHackEnv("NetHackChallenge", wizard=True)
    env = NetHackEnv("NetHackScore", observation_keys=("blstats",))
    env.reset(seed=0)
    for bad in (N_TASK_ACTIONS, -1, 1.5, "north"):
        with pytest.raises(ValueError, match=rf"invalid action.*\[0, {N_TASK_ACTIONS}\)"):
            env.step(bad)
    env.step(np.int64(1))  # numpy integers are fine
    with pytest.raises(ValueError, match="wizkit_items"):
        env.reset(options={"wizkit": ["wand"]})


def test_ttyrec_is_off_unless_asked_for(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = NetHackEnv("NetHackScore", observation_keys=("blstats",))
    rollout(env, seed=0, steps=50)
    env.close()
    assert env.nle_env.savedir is None and env.nle_env.nethack._ttyrec is None
    assert list(tmp_path.iterdir()) == []

    recorded = NetHackEnv(
        "NetHackScore", observation_keys=("blstats",), save_ttyrec_every=1, savedir=str(tmp_path / "rec")
    )
    rollout(recorded, seed=0, steps=50)
    recorded.close()
    assert any(p.name.endswith(".ttyrec3.bz2") for p in (tmp_path / "rec").iterdir())


def test_staircase_level_success_predicate():
    blstats = np.zeros(27, dtype=np.int64)
    message = np.zeros(256, dtype=np.uint8)
    text = b"You descend the stairs."
    message[: len(text)] = np.frombuffer(text, dtype=np.uint8)
    blstats[nethack.NLE_BL_DLEVEL] = 3
    assert staircase_success(message, blstats, 3)
    assert not staircase_success(message, blstats, 2) and not staircase_success(message, blstats, 4)
    assert not staircase_success(np.zeros(256, np.uint8), blstats, 3)  # e.g. fell through a trap door

    env = NetHackEnv("NetHackStaircaseLvl3", observation_keys=("blstats",))
    task = env.nle_env
    obs = [np.zeros(1)] * len(task._observation_keys)
    obs[task._message_index], obs[task._blstats_index] = message, blstats
    assert task._is_episode_end(tuple(obs)) == task.StepStatus.TASK_SUCCESSFUL
    blstats[nethack.NLE_BL_DLEVEL] = 2
    assert task._is_episode_end(tuple(obs)) == task.StepStatus.RUNNING


def teleport_onto_downstairs(env: NetHackEnv) -> None:
    """Wizard mode: map the level (^F), teleport (^T) with the cursor on the down staircase (">"), confirm."""
    game = env.nle_env.nethack
    for key in (6, 20, ord(">"), ord(".")):
        game.step(key)


def test_staircase_level_succeeds_only_at_the_target_level_in_a_real_game():
    env = NetHackEnv("NetHackStaircaseLvl3", observation_keys=("blstats",), wizard=True)
    down = env.nle_env.actions.index(nethack.MiscDirection.DOWN)
    env.reset(seed=0)
    teleport_onto_downstairs(env)
    obs, reward, terminated, truncated, info = env.step(down)
    assert info["caption"] == "You descend the stairs." and obs["blstats"][nethack.NLE_BL_DLEVEL] == 2
    assert not (terminated or truncated) and reward <= 0  # level 2 is not the target
    teleport_onto_downstairs(env)
    obs, reward, terminated, truncated, info = env.step(down)
    assert obs["blstats"][nethack.NLE_BL_DLEVEL] == 3  # the final observation is the game before nle quits it
    assert terminated and not truncated and reward > 0.9
    assert info["episode"]["end_reason"] == "task_successful" and info["episode"]["depth"] == 3


def test_staircase_level_keeps_the_descend_message_across_more():
    env = NetHackEnv("NetHackStaircaseLvl2", observation_keys=("blstats",))
    task = env.nle_env
    n = len(task._observation_keys)

    def fake_obs(text: bytes, more: bool) -> tuple:
        obs = [np.zeros(1, dtype=np.int32)] * n
        message = np.zeros(256, dtype=np.uint8)
        message[: len(text)] = np.frombuffer(text, dtype=np.uint8)
        internal = np.zeros(9, dtype=np.int32)
        internal[3] = int(more)  # xwaitforspace
        obs[task._message_index], obs[task._internal_index] = message, internal
        return tuple(obs)

    after_more = fake_obs(b"You see here a dagger.", more=False)

    class FakeGame:
        def step(self, key):
            assert key == ord(" ")
            return after_more, False

    task.nethack, real_game = FakeGame(), task.nethack
    try:
        obs, done = task._perform_known_steps(fake_obs(b"You descend the stairs.--More--", more=True), False)
    finally:
        task.nethack = real_game
    assert not done
    assert b"You descend the stairs." in bytes(obs[task._message_index])


def test_oracle_sober_ignores_an_oracle_seen_while_hallucinating():
    env = NetHackEnv("NetHackOracleSober", observation_keys=("blstats",))
    task = env.nle_env
    glyphs = np.zeros((21, 79), dtype=np.int16)
    blstats = np.zeros(27, dtype=np.int64)
    blstats[nethack.NLE_BL_X], blstats[nethack.NLE_BL_Y] = 40, 10
    obs = [np.zeros(1)] * len(task._observation_keys)
    obs[task._glyph_index], obs[task._blstats_index] = glyphs, blstats
    obs = tuple(obs)

    assert task._is_episode_end(obs) == task.StepStatus.RUNNING  # no Oracle
    glyphs[10, 41] = task.oracle_glyph
    assert task._is_episode_end(obs) == task.StepStatus.TASK_SUCCESSFUL
    for condition in (nethack.BL_MASK_HALLU, nethack.BL_MASK_HALLU | nethack.BL_MASK_CONF):
        blstats[nethack.NLE_BL_CONDITION] = condition
        assert is_hallucinating(blstats)
        assert task._is_episode_end(obs) == task.StepStatus.RUNNING
    blstats[nethack.NLE_BL_CONDITION] = nethack.BL_MASK_CONF  # confused but sober
    assert task._is_episode_end(obs) == task.StepStatus.TASK_SUCCESSFUL
    # Plain NetHackOracle counts the hallucinated Oracle: the exploit OracleSober closes.
    plain = NetHackEnv("NetHackOracle", observation_keys=("blstats",)).nle_env
    blstats[nethack.NLE_BL_CONDITION] = nethack.BL_MASK_HALLU
    assert plain._is_episode_end(obs) == plain.StepStatus.TASK_SUCCESSFUL


@pytest.mark.parametrize("task", ["NetHackScore", "NetHackChallenge"])
def test_python_score_reward_equals_nles_reward_function(task):
    """The ints-only reward of Score-like tasks gives nle's rewards bit for bit, time penalties and score changes."""
    fast = NetHackEnv(task, observation_keys=("blstats",), max_episode_steps=150, penalty_time=-0.001)
    reference = NetHackEnv(task, observation_keys=("blstats",), max_episode_steps=150, penalty_time=-0.001)
    assert fast._python_score_reward
    reference._python_score_reward = False  # nle's own NetHackScore._reward_fn
    actions = np.random.default_rng(4).integers(0, fast.action_space.n, size=400)
    rewards = []
    for env in (fast, reference):
        env.reset(seed=21)
        got = []
        for a in actions:
            _, reward, terminated, truncated, info = env.step(int(a))
            got.append((reward, env.nle_env._frozen_steps, info.get("episode")))
            if terminated or truncated:
                env.reset()
        rewards.append(got)
    assert rewards[0] == rewards[1]
    values = {r for r, _, _ in rewards[0]}
    assert len(values) >= 2  # time penalties (and on Score, score changes), not one constant


def test_python_score_reward_only_where_nles_function_is_unchanged():
    assert NetHackEnv("NetHackScore", observation_keys=("blstats",))._python_score_reward
    for task in ("NetHackStaircase", "NetHackGold", "NetHackEat", "NetHackScout", "NetHack"):
        assert not NetHackEnv(task, observation_keys=("blstats",))._python_score_reward
    assert not NetHackEnv("NetHackScore", observation_keys=("blstats",), penalty_mode="exp")._python_score_reward


def test_final_observation_is_the_game_before_quitting_with_or_without_copies():
    finals = []
    for copy_obs in (True, False):
        env = NetHackEnv("NetHackScore", observation_keys=("glyphs", "message"), copy_obs=copy_obs, max_episode_steps=6)
        env.reset(seed=1)
        for a in (1, 2, 3, 4, 5, 19):
            obs, _, _, truncated, _ = env.step(a)
        assert truncated
        finals.append({key: value.copy() for key, value in obs.items()})
    for key in finals[0]:
        np.testing.assert_array_equal(finals[0][key], finals[1][key])
    assert b"Really quit" not in bytes(finals[1]["message"])


def test_motif_tasks_use_motifs_reward_and_eat_fix():
    from rove.envs.nethack.tasks import motif_eat_action

    prompt = b"What do you want to eat? [fghi or ?*]"
    assert motif_eat_action(prompt, ord("y")) == ord("f")  # the first listed item
    assert motif_eat_action(prompt, ord("k")) == ord(" ")
    assert motif_eat_action(b"You see here an apple.", ord("y")) == ord("y")
    motif_env, nle_env = gym.make("Rove/Motif-NetHackStaircaseLvl3-v1"), gym.make("Rove/NetHackStaircaseLvl3-v0")
    motif_env.reset(seed=0)
    nle_env.reset(seed=0)
    motif, nle_scale = motif_env.unwrapped.nle_env, nle_env.unwrapped.nle_env
    status = motif.StepStatus
    obs = nle_scale.last_observation
    assert motif._reward_fn(obs, 0, obs, status.TASK_SUCCESSFUL) == 50.0
    assert motif._reward_fn(obs, 0, obs, status.RUNNING) == 0.0
    assert nle_scale._reward_fn(obs, 0, obs, status.TASK_SUCCESSFUL) != 50.0


def test_text_and_progression_on_nethack():
    env = gym.make("Rove/NetHackScore-v0", observation_keys=("glyphs", "blstats", "text"))
    obs, info = env.reset(seed=1)
    x, y = int(obs["blstats"][0]), int(obs["blstats"][1])
    pets = np.argwhere((obs["glyphs"] >= nethack.GLYPH_PET_OFF) & (obs["glyphs"] < nethack.GLYPH_INVIS_OFF))
    assert len(pets) == 1
    (row, col) = pets[0]
    from rove.envs.nethack.text import direction

    assert f"(monster): {direction(int(col) - x, int(row) - y)}" in info["text"]
    assert info["text"].startswith("Message: Hello Agent")
    for _ in range(30):
        obs, _, terminated, truncated, info = env.step(env.action_space.sample())
        if terminated or truncated:
            break
    from rove.envs.nethack.progress import milestone_progression

    assert milestone_progression(2, 1) == pytest.approx(0.015392269075361172)
    assert milestone_progression(1, 1) == 0.0


def test_episode_reports_progression_and_success_where_a_task_has_a_goal():
    for env_id, has_goal in (("Rove/NetHackScore-v0", False), ("Rove/NetHackStaircase-v0", True)):
        env = gym.make(env_id, max_steps=3)
        env.reset(seed=0)
        for _ in range(3):
            *_, info = env.step(0)
        episode = info["episode"]
        assert episode["progression"] == 0.0  # still on Dlvl 1 at Xp 1
        assert ("success" in episode) == has_goal
        if has_goal:
            assert episode["success"] is False
        env.close()


def test_motif_eat_fix_eats_the_first_listed_item():
    eat, yes = TASK_ACTIONS.index(ord("e")), TASK_ACTIONS.index(ord("y"))
    captions = {}
    for env_id in ("Rove/Motif-NetHackScore-v1", "Rove/NetHackScore-v0"):
        env = gym.make(env_id, observation_keys=("blstats", "caption"))
        env.reset(seed=1)  # a Monk with food rations (f), apples, oranges and fortune cookies
        assert env.step(eat)[4]["caption"].startswith("What do you want to eat? [fghi")
        obs, *_, info = env.step(yes)
        captions[env_id] = (info["caption"], int(obs["blstats"][nethack.NLE_BL_HUNGER]))
        env.close()
    assert captions["Rove/Motif-NetHackScore-v1"] == ("You're finally finished.", 0)  # ate the ration: satiated
    assert captions["Rove/NetHackScore-v0"][0].startswith("What do you want to eat?")  # 'y' is no item letter


@pytest.mark.parametrize("env_id", ["Rove/NetHackScore-v0", "Rove/MiniHack-Room-5x5-v0"])
def test_an_unknown_reset_option_is_refused_by_name(env_id: str) -> None:
    env = gym.make(env_id)
    try:
        with pytest.raises(
            ValueError, match=r"unknown reset option\(s\) \['wizkit'\]; valid options: \['wizkit_items'\]"
        ):
            env.reset(seed=0, options={"wizkit": ["wand"]})
    finally:
        env.close()
