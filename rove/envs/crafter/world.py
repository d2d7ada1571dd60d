"""A configurable Crafter world: terrain mix, resource densities, creature rates and starting inventory.

EnvGen (Zala et al. 2024, "EnvGen: Generating and Adapting Environments via LLMs for Training Embodied
Agents"; code: aszala/EnvGen, ``crafter/crafter/worldgen.py`` and ``crafter/crafter/env.py``) lets an LLM set
what Crafter's world looks like: a target biome (``grassland | mountain | beaches | natural``), how rare
coal, iron, diamonds and trees are, and the items the agent starts with. :class:`WorldConfig` holds those
options (and creature rates, which the authors' env also exposes); :func:`generate_world` is crafter
1.8.3's ``worldgen.generate_world`` with the constants made parameters.

The default :class:`WorldConfig` gives today's Crafter exactly: the same noise, the same conditions and the
same calls to the world's RNG in the same order (a threshold ``uniform() > 1 - p`` with crafter's ``p``
equals crafter's literal, e.g. ``1 - 0.2 == 0.8`` in floats), so worlds, creatures and whole episodes are
bit-identical (``tests/envs/test_crafter_world.py`` checks this against crafter's own code).

Deviations from the authors' modified crafter, each on purpose:

- Their ``worldgen.py`` also changed the default world: coal and iron no longer need their own noise
  patches (``simplex(x, y, 1, 8) > 0``, ``simplex(x, y, 2, 6) > 0.4``), only ``mountain > 0.18``, and their
  ``_balance_chunk`` spawns cows first. Here the default is crafter's own world; only the options change it.
- Rarities are probabilities (``coal_density = 0.15`` is crafter's ``uniform() > 0.85``) rather than the
  words ``rare | common | very common``; the LLM loop (:mod:`rove.llm.envgen`) maps its words onto them.
- The biome transforms are the authors' (mountain: ``2 |m|``, water ``x 0.1``, start area of path above a
  0.6 threshold; beaches: mountain ``x 0.1``, start threshold 0.8; grassland: water and mountain ``x 0.1``,
  start threshold 0.6); ``natural`` is crafter's world.
- Creature rates multiply crafter's spawn chances at world generation and, during play, the balancing
  spawn probability and the target counts per chunk (the authors have spawn thresholds, caps and an
  on/off switch); 0 means none at all.
- Not included: their extra creatures placed around the start, and a table / furnace / ripe plant placed
  next to the agent (their prompt does not offer them to the LLM either).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

import numpy as np
import opensimplex
from crafter import constants, objects
from crafter.worldgen import _simplex

BIOMES = ("natural", "grassland", "mountain", "beaches")
# Items the agent may start with (crafter's inventory but the vitals), each 0..9 as crafter caps them.
START_ITEMS: tuple[str, ...] = tuple(n for n in constants.items if n not in ("health", "food", "drink", "energy"))
MAX_COUNT = 9
MAX_RATE = 10.0

# crafter 1.8.3's constants (worldgen.py and env.py) that the options replace.
CRAFTER_DENSITY = {"tree": 0.2, "coal": 0.15, "iron": 0.25, "diamond": 0.006}
CRAFTER_SPAWN = {"cow": 0.015, "zombie": 0.007, "skeleton": 0.05}  # at world generation
_BIOME_SHAPE = {  # biome -> (mountain transform, water scale, start threshold, start material)
    "natural": (None, 1.0, 0.5, "grass"),
    "grassland": (0.1, 0.1, 0.6, "grass"),
    "mountain": ("abs2", 0.1, 0.6, "path"),
    "beaches": (0.1, 1.0, 0.8, "grass"),
}


@dataclasses.dataclass(frozen=True)
class WorldConfig:
    """The options of a Crafter world; the defaults are crafter's own.

    Attributes:
        biome: ``"natural"`` (crafter's world), ``"grassland"``, ``"mountain"`` or ``"beaches"``.
        tree_density: Chance that an eligible grassland cell is a tree (crafter: 0.2), in [0, 1].
        coal_density: Chance that an eligible mountain cell is coal (crafter: 0.15), in [0, 1].
        iron_density: Chance that an eligible mountain cell is iron (crafter: 0.25), in [0, 1].
        diamond_density: Chance that an eligible mountain cell is a diamond (crafter: 0.006), in [0, 1].
        cow_rate, zombie_rate, skeleton_rate: Multipliers of crafter's creature spawning (at world
            generation and during play), in [0, 10]; 0 means none.
        inventory: Items the agent starts with, ``((name, count), ...)`` sorted by name, names from
            :data:`START_ITEMS`, counts 0..9 (give a dict to :meth:`from_options`).
    """

    biome: str = "natural"
    tree_density: float = CRAFTER_DENSITY["tree"]
    coal_density: float = CRAFTER_DENSITY["coal"]
    iron_density: float = CRAFTER_DENSITY["iron"]
    diamond_density: float = CRAFTER_DENSITY["diamond"]
    cow_rate: float = 1.0
    zombie_rate: float = 1.0
    skeleton_rate: float = 1.0
    inventory: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        if self.biome not in BIOMES:
            raise ValueError(f"world option biome={self.biome!r} is not one of {list(BIOMES)}")
        for name in ("tree_density", "coal_density", "iron_density", "diamond_density"):
            _check_number(name, getattr(self, name), 0.0, 1.0)
        for name in ("cow_rate", "zombie_rate", "skeleton_rate"):
            _check_number(name, getattr(self, name), 0.0, MAX_RATE)
        items = dict(self.inventory)
        if len(items) != len(self.inventory):
            raise ValueError(f"world option inventory names an item twice: {self.inventory!r}")
        for item, count in items.items():
            if item not in START_ITEMS:
                raise ValueError(f"world option inventory: unknown item {item!r}; choose from {list(START_ITEMS)}")
            if isinstance(count, bool) or not isinstance(count, int | np.integer) or not 0 <= count <= MAX_COUNT:
                raise ValueError(f"world option inventory[{item!r}] must be an int in [0, {MAX_COUNT}], got {count!r}")
        object.__setattr__(self, "inventory", tuple(sorted((k, int(v)) for k, v in items.items())))

    @classmethod
    def from_options(cls, options: WorldConfig | Mapping[str, Any] | None) -> WorldConfig:
        """A config from a mapping of options (``inventory`` a mapping too), a config, or None (the default).

        Raises:
            ValueError: An unknown option (the message lists the valid ones) or a value out of range.
        """
        if options is None:
            return cls()
        if isinstance(options, WorldConfig):
            return options
        if not isinstance(options, Mapping):
            raise ValueError(f"world options must be a mapping, got {type(options).__name__}")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ValueError(f"unknown world option(s) {unknown}; valid: {known}")
        values = dict(options)
        inventory = values.get("inventory", {})
        if isinstance(inventory, Mapping):
            values["inventory"] = tuple(inventory.items())
        elif not isinstance(inventory, tuple | list):
            raise ValueError(f"world option inventory must be a mapping item -> count, got {inventory!r}")
        else:
            values["inventory"] = tuple(tuple(pair) for pair in inventory)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready options (``inventory`` as a dict) that :meth:`from_options` reads back."""
        out = dataclasses.asdict(self)
        out["inventory"] = dict(self.inventory)
        return out

    @property
    def is_default(self) -> bool:
        return self == WorldConfig()


def _check_number(name: str, value: Any, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"world option {name} must be a number in [{low}, {high}], got {value!r}")
    if not low <= float(value) <= high:
        raise ValueError(f"world option {name}={value!r} is out of range [{low}, {high}]")


def generate_world(world: Any, player: Any, config: WorldConfig) -> None:
    """Fills ``world`` (a crafter ``engine.World`` already reset) around ``player`` as ``config`` says.

    The structure and RNG calls are crafter 1.8.3's ``worldgen.generate_world``: one simplex seed drawn
    first, then materials cell by cell, then creatures cell by cell.
    """
    simplex = opensimplex.OpenSimplex(seed=world.random.randint(0, 2**31 - 1))
    tunnels = np.zeros(world.area, bool)
    thresholds = {name: 1.0 - getattr(config, f"{name}_density") for name in CRAFTER_DENSITY}
    for x in range(world.area[0]):
        for y in range(world.area[1]):
            _set_material(world, (x, y), player, tunnels, simplex, config.biome, thresholds)
    spawn = {
        "cow": 1.0 - min(1.0, CRAFTER_SPAWN["cow"] * config.cow_rate),
        "zombie": 1.0 - min(1.0, CRAFTER_SPAWN["zombie"] * config.zombie_rate),
        "skeleton": 1.0 - min(1.0, CRAFTER_SPAWN["skeleton"] * config.skeleton_rate),
    }
    for x in range(world.area[0]):
        for y in range(world.area[1]):
            _set_object(world, (x, y), player, tunnels, spawn)


def _set_material(
    world: Any, pos: tuple[int, int], player: Any, tunnels: np.ndarray, simplex: Any, biome: str, thres: dict
) -> None:
    x, y = pos
    noise = functools.partial(_simplex, simplex)
    uniform = world.random.uniform
    start = 4 - np.sqrt((x - player.pos[0]) ** 2 + (y - player.pos[1]) ** 2)
    start += 2 * noise(x, y, 8, 3)
    start = 1 / (1 + np.exp(-start))
    water = noise(x, y, 3, {15: 1, 5: 0.15}, False) + 0.1
    water -= 2 * start
    mountain = noise(x, y, 0, {15: 1, 5: 0.3})
    mountain -= 4 * start + 0.3 * water
    shape, water_scale, start_threshold, start_material = _BIOME_SHAPE[biome]
    if shape == "abs2":
        mountain = 2 * abs(mountain)
    elif shape is not None:
        mountain *= shape
    if water_scale != 1.0:
        water *= water_scale
    # Below: crafter's conditions in crafter's order; `and` short-circuits exactly as there, so the RNG
    # draws the same numbers.
    if start > start_threshold:
        world[x, y] = start_material
    elif mountain > 0.15:
        if noise(x, y, 6, 7) > 0.15 and mountain > 0.3:  # cave
            world[x, y] = "path"
        elif noise(2 * x, y / 5, 7, 3) > 0.4 or noise(x / 5, 2 * y, 7, 3) > 0.4:  # horizontal or vertical tunnel
            world[x, y] = "path"
            tunnels[x, y] = True
        elif noise(x, y, 1, 8) > 0 and uniform() > thres["coal"]:
            world[x, y] = "coal"
        elif noise(x, y, 2, 6) > 0.4 and uniform() > thres["iron"]:
            world[x, y] = "iron"
        elif mountain > 0.18 and uniform() > thres["diamond"]:
            world[x, y] = "diamond"
        elif mountain > 0.3 and noise(x, y, 6, 5) > 0.35:
            world[x, y] = "lava"
        else:
            world[x, y] = "stone"
    elif 0.25 < water <= 0.35 and noise(x, y, 4, 9) > -0.2:
        world[x, y] = "sand"
    elif water > 0.3:
        world[x, y] = "water"
    elif noise(x, y, 5, 7) > 0 and uniform() > thres["tree"]:  # grassland
        world[x, y] = "tree"
    else:
        world[x, y] = "grass"


def _set_object(world: Any, pos: tuple[int, int], player: Any, tunnels: np.ndarray, spawn: dict) -> None:
    x, y = pos
    uniform = world.random.uniform
    dist = np.sqrt((x - player.pos[0]) ** 2 + (y - player.pos[1]) ** 2)
    material, _ = world[x, y]
    if material not in constants.walkable:
        pass
    elif dist > 3 and material == "grass" and uniform() > spawn["cow"]:
        world.add(objects.Cow(world, (x, y)))
    elif dist > 10 and uniform() > spawn["zombie"]:
        world.add(objects.Zombie(world, (x, y), player))
    elif material == "path" and tunnels[x, y] and uniform() > spawn["skeleton"]:
        world.add(objects.Skeleton(world, (x, y), player))
