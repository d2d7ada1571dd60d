"""A text view of MiniGrid/BabyAI: the mission and the objects the agent sees, placed relative to the agent.

Three paragraphs:

``Mission:``
    the mission string.
``You see:``
    every object in the agent's field of view (minigrid's ``gen_obs_grid``: the egocentric view, walls
    occluding), walls and empty floor left out, nearest first, with its position relative to the agent in
    steps ahead/behind and left/right (``"red key: 2 ahead, 1 left"``); doors say whether they are open,
    closed or locked.
``You carry:``
    the carried object or nothing.

Positions are egocentric, like the ``image`` observation: "ahead" is the direction the agent faces.
"""

from __future__ import annotations

from typing import Any

_SKIPPED = frozenset({"wall", "empty", "floor", "unseen"})


def _name(obj: Any) -> str:
    name = f"{obj.color} {obj.type}" if obj.type not in ("goal", "lava") else obj.type
    if obj.type == "door":
        state = "open" if obj.is_open else "locked" if obj.is_locked else "closed"
        name = f"{name} ({state})"
    return name


def _offset(ahead: int, right: int) -> str:
    parts = []
    if ahead:
        parts.append(f"{abs(ahead)} {'ahead' if ahead > 0 else 'behind'}")
    if right:
        parts.append(f"{abs(right)} {'right' if right > 0 else 'left'}")
    return ", ".join(parts) if parts else "here"


def describe(env: Any) -> str:
    """The text view of a ``minigrid.minigrid_env.MiniGridEnv`` (after ``reset``/``step``)."""
    grid, visible = env.gen_obs_grid()
    size = env.agent_view_size
    ax, ay = size // 2, size - 1  # the agent's cell in the egocentric grid, facing "up" (decreasing j)
    seen = []
    for j in range(size):
        for i in range(size):
            if not visible[i, j] or (i, j) == (ax, ay):
                continue
            obj = grid.get(i, j)
            if obj is None or obj.type in _SKIPPED:
                continue
            ahead, right = ay - j, i - ax
            seen.append((max(abs(ahead), abs(right)), abs(ahead) + abs(right), j, i, _name(obj), ahead, right))
    seen.sort()
    lines = [f"{name}: {_offset(ahead, right)}" for *_, name, ahead, right in seen]
    carried = env.carrying
    return (
        f"Mission: {env.mission}\n\n"
        "You see:\n" + ("\n".join(lines) if lines else "nothing but walls and floor") + "\n\n"
        f"You carry: {_name(carried) if carried is not None else 'nothing'}"
    )
