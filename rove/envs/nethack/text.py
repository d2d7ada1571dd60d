"""A text view of NetHack/MiniHack: what the agent perceives, in words, from nle 1.3's arrays.

In the spirit of nle-language-wrapper (nle 0.9, gym <= 0.23) and BALROG's NetHack text (gym 0.23, its own nle
fork), written here for nle 1.3. The description has four parts, one per paragraph:

``Message:``
    the message line.
``You see:``
    every visible monster, object and dungeon feature on the map with its direction (compass, north is up)
    and distance (king moves, i.e. Chebyshev distance) from the agent, nearest first, one per line:
    ``"jackal (monster): 2 east, 1 north"``. Names are nle's ``screen_descriptions`` (NetHack's own glance
    text). Walls, solid rock, room floor and corridors are left out (they are most of the map and say little
    in words); doorways, doors, stairs, fountains, altars, traps, lava, water, ... are kept. At most
    ``MAX_THINGS`` entries.
``Status:``
    the bottom line from ``blstats``: HP, power, AC, experience level and points, dungeon level, gold, turn,
    the six attributes, hunger and the conditions (blind, confused, hallucinating, ...).
``Inventory:``
    ``inv_letters`` and ``inv_strs``, one item per line.

Needs the nle keys ``glyphs``, ``blstats``, ``message``, ``screen_descriptions``, ``inv_letters``, ``inv_strs``
(:data:`NEEDED_KEYS`); the adapters ask nle for them only when the ``text`` key is requested.
"""

from __future__ import annotations

import numpy as np
from nle import nethack

from rove.envs.core import compass_offset

NEEDED_KEYS = ("message", "glyphs", "blstats", "screen_descriptions", "inv_letters", "inv_strs")  # describe()'s order
MAX_THINGS = 40

# cmap indices (NetHack 3.6 defsym order) that the text leaves out: S_stone, the 11 wall symbols, S_room,
# S_darkroom, S_corr, S_litcorr.
_SKIPPED_CMAP = frozenset({*range(0, 12), 19, 20, 21, 22})
_HUNGER = ("satiated", "not hungry", "hungry", "weak", "fainting", "fainted", "starved")
_CONDITIONS = (
    (nethack.BL_MASK_STONE, "stoned"),
    (nethack.BL_MASK_SLIME, "slimed"),
    (nethack.BL_MASK_STRNGL, "strangled"),
    (nethack.BL_MASK_FOODPOIS, "food poisoned"),
    (nethack.BL_MASK_TERMILL, "terminally ill"),
    (nethack.BL_MASK_BLIND, "blind"),
    (nethack.BL_MASK_DEAF, "deaf"),
    (nethack.BL_MASK_STUN, "stunned"),
    (nethack.BL_MASK_CONF, "confused"),
    (nethack.BL_MASK_HALLU, "hallucinating"),
    (nethack.BL_MASK_LEV, "levitating"),
    (nethack.BL_MASK_FLY, "flying"),
    (nethack.BL_MASK_RIDE, "riding"),
)


def glyph_kind(glyph: int) -> str | None:
    """``"monster"``, ``"object"``, ``"feature"`` or None (not described) for one glyph."""
    if glyph < nethack.GLYPH_BODY_OFF:  # normal, pet, invisible and detected monsters
        return "monster"
    if glyph < nethack.GLYPH_RIDDEN_OFF:  # corpses
        return "object"
    if glyph < nethack.GLYPH_OBJ_OFF:  # ridden monsters
        return "monster"
    if glyph < nethack.GLYPH_CMAP_OFF:
        return "object"
    if glyph < nethack.GLYPH_EXPLODE_OFF:
        return None if glyph - nethack.GLYPH_CMAP_OFF in _SKIPPED_CMAP else "feature"
    if nethack.GLYPH_WARNING_OFF <= glyph < nethack.GLYPH_STATUE_OFF:
        return "monster"  # a warning: an unseen monster
    if nethack.GLYPH_STATUE_OFF <= glyph < nethack.MAX_GLYPH:
        return "object"
    return None  # explosions, zaps, swallowed


direction = compass_offset  # the name the NetHack text view and its tests use


def _decode(row: np.ndarray) -> str:
    return row.tobytes().split(b"\0", 1)[0].decode("latin-1").strip()


def _kind_table() -> np.ndarray:
    table = np.zeros(nethack.MAX_GLYPH + 1, dtype=np.int8)
    for glyph in range(nethack.MAX_GLYPH):
        kind = glyph_kind(glyph)
        table[glyph] = 0 if kind is None else _KINDS.index(kind) + 1
    return table


_KINDS = ("monster", "object", "feature")
_KIND_OF_GLYPH = _kind_table()


def describe_things(glyphs: np.ndarray, screen_descriptions: np.ndarray, x: int, y: int) -> list[str]:
    """The ``You see:`` lines: visible monsters, objects and features, nearest first (ties: row-major order)."""
    kinds = _KIND_OF_GLYPH[glyphs]
    kinds[y, x] = 0  # the agent itself
    rows, cols = np.nonzero(kinds)
    dist = np.maximum(np.abs(cols - x), np.abs(rows - y))
    order = np.lexsort((cols, rows, dist))[:MAX_THINGS]  # by distance, then row, then column
    lines = []
    for i in order.tolist():
        row, col = int(rows[i]), int(cols[i])
        name = _decode(screen_descriptions[row, col]) or "something"
        lines.append(f"{name} ({_KINDS[kinds[row, col] - 1]}): {direction(col - x, row - y)}")
    return lines


def describe_status(blstats: np.ndarray) -> str:
    """The bottom line in words."""
    b = [int(v) for v in blstats]
    strength = b[nethack.NLE_BL_STR25]
    hunger = b[nethack.NLE_BL_HUNGER]
    condition = b[nethack.NLE_BL_CONDITION]
    conditions = [name for mask, name in _CONDITIONS if condition & mask]
    return (
        f"HP {b[nethack.NLE_BL_HP]}/{b[nethack.NLE_BL_HPMAX]}, Pw {b[nethack.NLE_BL_ENE]}/{b[nethack.NLE_BL_ENEMAX]}, "
        f"AC {b[nethack.NLE_BL_AC]}, Xp {b[nethack.NLE_BL_XP]} ({b[nethack.NLE_BL_EXP]} points), "
        f"Dlvl {b[nethack.NLE_BL_DEPTH]}, $ {b[nethack.NLE_BL_GOLD]}, T {b[nethack.NLE_BL_TIME]}, "
        f"St {strength} Dx {b[nethack.NLE_BL_DEX]} Co {b[nethack.NLE_BL_CON]} In {b[nethack.NLE_BL_INT]} "
        f"Wi {b[nethack.NLE_BL_WIS]} Ch {b[nethack.NLE_BL_CHA]}, "
        f"{_HUNGER[hunger] if 0 <= hunger < len(_HUNGER) else 'hunger ' + str(hunger)}"
        + (f", {', '.join(conditions)}" if conditions else "")
    )


def describe_inventory(inv_letters: np.ndarray, inv_strs: np.ndarray) -> list[str]:
    """``"a - a +1 long sword (weapon in hand)"`` lines."""
    lines = []
    for letter, row in zip(inv_letters.tolist(), inv_strs, strict=True):
        if not letter:
            break
        lines.append(f"{chr(letter)} - {_decode(row)}")
    return lines


def describe(
    message: np.ndarray,
    glyphs: np.ndarray,
    blstats: np.ndarray,
    screen_descriptions: np.ndarray,
    inv_letters: np.ndarray,
    inv_strs: np.ndarray,
) -> str:
    """The whole text view (see the module docstring) from nle's arrays of one step."""
    x, y = int(blstats[nethack.NLE_BL_X]), int(blstats[nethack.NLE_BL_Y])
    things = describe_things(glyphs, screen_descriptions, x, y)
    inventory = describe_inventory(inv_letters, inv_strs)
    return (
        f"Message: {_decode(message)}\n\n"
        "You see:\n" + ("\n".join(things) if things else "nothing of note") + "\n\n"
        f"Status: {describe_status(blstats)}\n\n"
        "Inventory:\n" + ("\n".join(inventory) if inventory else "nothing")
    )
