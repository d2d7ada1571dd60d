"""A text view of Crafter: what the player sees, carries and feels, in words (as BALROG's and ELLM's Crafter text).

Four paragraphs:

``You see:``
    for each material (water, stone, tree, coal, iron, diamond, table, furnace, lava, sand, path; grass is
    left out, it is everywhere) and each creature kind (zombie, skeleton, cow, plant, arrow) in the player's
    local view (9 x 7 cells around the player, the area the image shows above the inventory), the nearest
    one with its direction and distance in cells (``"tree: 2 west, 1 north (3 in view)"``), nearest first.
``Facing:``
    what is on the cell the player faces.
``Inventory:``
    the items the player holds, with counts.
``Vitals:``
    health, food, drink, energy (0-9), and whether the player sleeps.

North is up (crafter's ``y`` grows southwards). Ties in distance are broken by name.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rove.envs.core import compass_offset

VITALS = ("health", "food", "drink", "energy")
_SKIPPED_MATERIALS = frozenset({None, "grass"})


def describe(env: Any) -> str:
    """The text view of a ``crafter.Env`` (after ``reset``/``step``)."""
    world, player = env._world, env._player
    px, py = int(player.pos[0]), int(player.pos[1])
    half_w, half_h = int(env._local_view._grid[0]) // 2, int(env._local_view._grid[1]) // 2
    x0, x1 = max(px - half_w, 0), min(px + half_w + 1, world.area[0])
    y0, y1 = max(py - half_h, 0), min(py + half_h + 1, world.area[1])
    seen: dict[str, list[tuple[int, int, int]]] = {}
    window = world._mat_map[x0:x1, y0:y1]
    for index in np.unique(window).tolist():
        name = world._mat_names.get(index)
        if name in _SKIPPED_MATERIALS:
            continue
        for ix, iy in zip(*np.nonzero(window == index), strict=True):
            dx, dy = int(ix) + x0 - px, int(iy) + y0 - py
            seen.setdefault(name, []).append((max(abs(dx), abs(dy)), dx, dy))
    for obj in world.objects:
        if obj is player:
            continue
        ox, oy = int(obj.pos[0]), int(obj.pos[1])
        if x0 <= ox < x1 and y0 <= oy < y1:
            dx, dy = ox - px, oy - py
            seen.setdefault(type(obj).__name__.lower(), []).append((max(abs(dx), abs(dy)), dx, dy))
    lines = []
    for name, cells in sorted(seen.items(), key=lambda item: (min(item[1]), item[0])):
        _, dx, dy = min(cells)
        lines.append(f"{name}: {compass_offset(dx, dy)} ({len(cells)} in view)")
    fx, fy = px + int(player.facing[0]), py + int(player.facing[1])
    facing = "the edge of the world"
    if 0 <= fx < world.area[0] and 0 <= fy < world.area[1]:
        material, obj = world[(fx, fy)]
        facing = type(obj).__name__.lower() if obj is not None else str(material)
    inventory = [f"{name}: {count}" for name, count in player.inventory.items() if name not in VITALS and count > 0]
    vitals = ", ".join(f"{name} {player.inventory[name]}" for name in VITALS)
    return (
        "You see:\n" + ("\n".join(lines) if lines else "only grass") + "\n\n"
        f"Facing: {facing}\n\n"
        "Inventory:\n" + ("\n".join(inventory) if inventory else "nothing") + "\n\n"
        f"Vitals: {vitals}" + (", sleeping" if player.sleeping else "")
    )
