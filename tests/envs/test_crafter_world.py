"""Tests of the configurable Crafter world (rove/envs/crafter/world.py): the default is crafter's own world,
exactly; each option moves the generated worlds the way it says; bad options are refused by name."""

from __future__ import annotations

import crafter
import gymnasium as gym
import numpy as np
import pytest

import rove  # noqa: F401  (registers the Rove/ ids)
from rove.envs.crafter import CrafterEnv
from rove.envs.crafter.env import _CrafterCore
from rove.envs.crafter.world import START_ITEMS, WorldConfig
from rove.experiments.env_options import check_env_kwargs

KEYS = ("image", "inventory", "caption", "state_key", "text")
AREA = 40  # worlds of the direction tests: smaller than 64 (cheaper), big enough for every terrain


class _CrafterOwnCore(_CrafterCore):
    """Rove's core with crafter 1.8.3's own reset (its worldgen) and balancing: today's Crafter."""

    reset = crafter.Env.reset
    _balance_chunk = crafter.Env._balance_chunk


def _reference_env(**kwargs) -> CrafterEnv:
    env = CrafterEnv(observation_keys=KEYS, semantic=True, **kwargs)
    env._env.__class__ = _CrafterOwnCore
    return env


def _material_counts(env: CrafterEnv, seed: int) -> dict[str, int]:
    env.reset(seed=seed)
    world = env.crafter_env._world
    names = {index: name for name, index in world._mat_ids.items()}
    values, counts = np.unique(world._mat_map, return_counts=True)
    return {names[v]: int(c) for v, c in zip(values, counts, strict=True)}


def _creature_counts(env: CrafterEnv, seed: int) -> dict[str, int]:
    env.reset(seed=seed)
    counts: dict[str, int] = {}
    for obj in env.crafter_env._world.objects:
        counts[type(obj).__name__] = counts.get(type(obj).__name__, 0) + 1
    return counts


def _total(fn, env: CrafterEnv, name: str, seeds=(0, 1, 2)) -> int:
    return sum(fn(env, s).get(name, 0) for s in seeds)


def _same_step(a, b) -> None:
    (obs_a, r_a, te_a, tr_a, info_a), (obs_b, r_b, te_b, tr_b, info_b) = a, b
    assert obs_a.keys() == obs_b.keys()
    for key in obs_a:
        np.testing.assert_array_equal(obs_a[key], obs_b[key])
    assert (r_a, te_a, tr_a) == (r_b, te_b, tr_b)
    assert info_a.keys() == info_b.keys()
    for key in info_a:
        np.testing.assert_array_equal(np.asarray(info_a[key], dtype=object), np.asarray(info_b[key], dtype=object))


def _compare_episodes(seed: int, steps: int, length: int) -> None:
    ours = CrafterEnv(observation_keys=KEYS, semantic=True, length=length, world={})
    theirs = _reference_env(length=length)
    rng = np.random.default_rng(seed)
    obs_a, info_a = ours.reset(seed=seed)
    obs_b, info_b = theirs.reset(seed=seed)
    _same_step((obs_a, 0, 0, 0, info_a), (obs_b, 0, 0, 0, info_b))
    np.testing.assert_array_equal(ours.crafter_env._world._mat_map, theirs.crafter_env._world._mat_map)
    for _ in range(steps):
        action = int(rng.integers(17))
        a, b = ours.step(action), theirs.step(action)
        _same_step(a, b)
        if a[2] or a[3]:
            obs_a, _ = ours.reset()
            obs_b, _ = theirs.reset()
            np.testing.assert_array_equal(ours.crafter_env._world._mat_map, theirs.crafter_env._world._mat_map)
            np.testing.assert_array_equal(obs_a["image"], obs_b["image"])


# -- the default is today's Crafter --
@pytest.mark.parametrize("seed", [0, 123])
def test_default_world_equals_crafters_own_episodes(seed):
    # Short episodes (length 100) so that several worlds are generated; the night (from ~step 180) is in
    # the slow test below and in test_default_world_spawns_like_crafter_during_play.
    _compare_episodes(seed, steps=200, length=100)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_default_world_equals_crafters_own_long_episodes(seed):
    _compare_episodes(seed, steps=3000, length=10000)


def test_default_world_spawns_like_crafter_during_play():
    # At night zombies spawn through the balancing: the creature positions must match crafter's own code.
    ours = CrafterEnv(observation_keys=("inventory",), area=AREA, semantic=True, world=WorldConfig())
    theirs = CrafterEnv(observation_keys=("inventory",), area=AREA, semantic=True)
    theirs._env.__class__ = _CrafterOwnCore
    ours.reset(seed=5)
    theirs.reset(seed=5)
    for _ in range(400):  # noop through dusk: the balancing runs every 10 steps
        a, b = ours.step(0), theirs.step(0)
        np.testing.assert_array_equal(a[4]["semantic"], b[4]["semantic"])
        if a[2] or a[3]:
            break


def test_default_densities_are_crafters_literals():
    config = WorldConfig()
    assert config.is_default and WorldConfig.from_options({}) == config == WorldConfig.from_options(None)
    assert (1 - config.tree_density, 1 - config.coal_density, 1 - config.iron_density) == (0.8, 0.85, 0.75)
    assert 1 - config.diamond_density == 0.994


# -- each option moves the world the way it says --
def test_tree_density_adds_trees():
    few = _total(
        _material_counts, CrafterEnv(observation_keys=("inventory",), area=AREA, world={"tree_density": 0.05}), "tree"
    )
    base = _total(_material_counts, CrafterEnv(observation_keys=("inventory",), area=AREA), "tree")
    many = _total(
        _material_counts, CrafterEnv(observation_keys=("inventory",), area=AREA, world={"tree_density": 0.6}), "tree"
    )
    assert few < base < many
    assert many > 2 * base  # 0.6 / 0.2 = 3x the chance on the same eligible cells


@pytest.mark.parametrize("name", ["coal", "iron", "diamond"])
def test_resource_density_adds_that_resource(name):
    dense = CrafterEnv(observation_keys=("inventory",), area=AREA, world={f"{name}_density": 0.9})
    none = CrafterEnv(observation_keys=("inventory",), area=AREA, world={f"{name}_density": 0.0})
    base = CrafterEnv(observation_keys=("inventory",), area=AREA)
    assert _total(_material_counts, none, name) == 0
    assert _total(_material_counts, dense, name) > _total(_material_counts, base, name) > 0


def test_biomes_change_the_terrain_mix():
    def share(biome: str) -> dict[str, float]:
        env = CrafterEnv(observation_keys=("inventory",), area=AREA, world={"biome": biome})
        totals: dict[str, int] = {}
        for seed in (0, 1):
            for k, v in _material_counts(env, seed).items():
                totals[k] = totals.get(k, 0) + v
        n = sum(totals.values())
        return {k: v / n for k, v in totals.items()}

    natural, mountain, grassland, beaches = (share(b) for b in ("natural", "mountain", "grassland", "beaches"))
    rock = ("stone", "path", "coal", "iron", "diamond", "lava")

    def rocky(mix: dict[str, float]) -> float:
        return sum(mix.get(k, 0.0) for k in rock)

    assert rocky(mountain) > 3 * rocky(natural) and mountain.get("water", 0) < 0.2 * natural["water"]
    assert rocky(grassland) < 0.2 * rocky(natural) and grassland.get("water", 0) < 0.2 * natural["water"]
    assert grassland.get("grass", 0) + grassland.get("tree", 0) > 1.2 * (natural["grass"] + natural["tree"])
    assert rocky(beaches) < 0.2 * rocky(natural) and beaches.get("water", 0) > natural["water"]


@pytest.mark.parametrize("creature, option", [("Cow", "cow_rate"), ("Zombie", "zombie_rate")])
def test_creature_rates_change_spawn_counts(creature, option):
    base = _total(_creature_counts, CrafterEnv(observation_keys=("inventory",), area=AREA), creature)
    more = _total(
        _creature_counts, CrafterEnv(observation_keys=("inventory",), area=AREA, world={option: 4.0}), creature
    )
    none = _total(
        _creature_counts, CrafterEnv(observation_keys=("inventory",), area=AREA, world={option: 0.0}), creature
    )
    assert none == 0 < base and more > 2 * base


def test_zero_zombie_rate_means_no_zombie_at_night():
    env = CrafterEnv(observation_keys=("inventory",), area=AREA, world={"zombie_rate": 0.0})
    env.reset(seed=3)
    for _ in range(500):  # through the first night: the balancing would spawn zombies on grass
        env.step(6)  # sleep
        assert not any(isinstance(o, crafter.objects.Zombie) for o in env.crafter_env._world.objects)


def test_starting_inventory_is_there_at_reset_and_after_each_reset():
    env = gym.make(
        "Rove/CrafterReward-v1", observation_keys=("inventory",), world={"inventory": {"wood": 5, "wood_pickaxe": 1}}
    )
    names = list(crafter.constants.items)
    for seed in (0, None):
        obs, _ = env.reset(seed=seed)
        assert obs["inventory"][names.index("wood")] == 5
        assert obs["inventory"][names.index("wood_pickaxe")] == 1
        assert obs["inventory"][names.index("stone")] == 0
        assert obs["inventory"][names.index("health")] == 9


def test_starting_inventory_does_not_unlock_achievements():
    env = CrafterEnv(observation_keys=("inventory",), area=AREA, world={"inventory": {"stone_pickaxe": 1, "coal": 3}})
    env.reset(seed=0)
    _, reward, *_, info = env.step(0)
    assert reward == 0.0 and not any(info["achievements"].values())


def test_world_survives_pickling_and_config_round_trips():
    import pickle

    config = WorldConfig.from_options({"biome": "mountain", "inventory": {"stone": 2}, "cow_rate": 0.5})
    assert WorldConfig.from_options(config.to_dict()) == config
    env = CrafterEnv(observation_keys=("inventory",), area=AREA, world=config)
    env.reset(seed=1)
    clone = pickle.loads(pickle.dumps(env))
    assert clone.world == config
    np.testing.assert_array_equal(clone.step(0)[0]["inventory"], env.step(0)[0]["inventory"])


# -- bad options --
@pytest.mark.parametrize(
    "options, words",
    [
        ({"tree_rarity": "rare"}, ["tree_rarity", "tree_density", "biome"]),
        ({"biome": "desert"}, ["desert", "mountain", "natural"]),
        ({"coal_density": 1.5}, ["coal_density", "1.5", "[0.0, 1.0]"]),
        ({"zombie_rate": -1}, ["zombie_rate", "-1"]),
        ({"cow_rate": "many"}, ["cow_rate", "many"]),
        ({"inventory": {"sword": 1}}, ["sword", "wood_sword"]),
        ({"inventory": {"wood": 12}}, ["wood", "12"]),
        ({"inventory": {"wood": True}}, ["wood", "True"]),
        ({"inventory": "wood"}, ["inventory", "wood"]),
    ],
)
def test_bad_world_options_are_refused_by_name(options, words):
    with pytest.raises(ValueError) as err:
        CrafterEnv(world=options)
    assert all(w in str(err.value) for w in words), str(err.value)


def test_env_options_check_refuses_a_bad_world_option():
    with pytest.raises(ValueError, match="tree_rarity"):
        check_env_kwargs("Rove/CrafterReward-v1", {"world": {"tree_rarity": "rare"}})
    check_env_kwargs("Rove/CrafterReward-v1", {"world": {"tree_density": 0.4}})


def test_start_items_exclude_the_vitals():
    assert "health" not in START_ITEMS and "wood" in START_ITEMS and len(START_ITEMS) == 12
