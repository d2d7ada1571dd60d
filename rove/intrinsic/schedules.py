"""Coefficient schedules: picklable callables from a count to a multiplier.

A module's ``coef`` schedule is called with the number of valid env steps the module has rewarded so far
(:attr:`IntrinsicModule.num_steps_seen`). :class:`~rove.intrinsic.fusion.Fusion` also counts its ``compute``
calls (one per rollout) and gives each member's decay the count it names in its ``unit``. The schedules here
are small frozen dataclasses, not lambdas, so that an agent holding one saves and loads (``PPO.save``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Schedule = Callable[[int], float]
Unit = Literal["env_step", "compute"]
UNITS = ("env_step", "compute")


@dataclass(frozen=True)
class Constant:
    """``value`` at every count."""

    value: float

    def __call__(self, step: int) -> float:
        return self.value


@dataclass(frozen=True)
class Linear:
    """Goes from ``start`` to ``end`` over ``steps`` env steps, then stays at ``end``."""

    start: float
    end: float
    steps: int

    def __post_init__(self) -> None:
        if self.steps <= 0:
            raise ValueError(f"linear schedule needs steps > 0, got {self.steps}")

    def __call__(self, step: int) -> float:
        return self.start + (self.end - self.start) * min(step, self.steps) / self.steps


@dataclass(frozen=True)
class ExponentialDecay:
    """HIRE's decay ``beta * (1 - kappa) ** n``, with ``n`` counted in ``unit``.

    ``unit="compute"`` counts ``compute`` calls (one per rollout), the unit of RLeXplore's HIRE code
    (``rllte`` ``BaseReward``: ``global_step += 1`` per ``compute``); ``"env_step"`` counts valid env steps
    over all envs, ~``n_steps * n_envs`` times faster per rollout. Fusion honours the unit; a module's own
    ``coef`` is always called with env steps, so there only ``"env_step"`` is accepted.
    """

    beta: float
    kappa: float
    unit: Unit = "env_step"

    def __post_init__(self) -> None:
        if not 0.0 <= self.kappa < 1.0:
            raise ValueError(f"kappa must be in [0, 1), got {self.kappa}")
        if self.unit not in UNITS:
            raise ValueError(f"unit must be one of {UNITS}, got {self.unit!r}")

    def __call__(self, step: int) -> float:
        return self.beta * (1.0 - self.kappa) ** step


def constant(value: float) -> Constant:
    return Constant(float(value))


def linear(start: float, end: float, steps: int) -> Linear:
    """Goes from ``start`` to ``end`` over ``steps`` env steps, then stays at ``end``."""
    return Linear(float(start), float(end), int(steps))


def exponential_decay(beta: float, kappa: float, unit: Unit = "env_step") -> ExponentialDecay:
    """HIRE's decay ``beta * (1 - kappa) ** n`` (see :class:`ExponentialDecay` for ``unit``)."""
    return ExponentialDecay(float(beta), float(kappa), unit)


def unit_of(schedule: Schedule) -> Unit:
    """The count a schedule expects: its ``unit`` attribute, else env steps (plain callables)."""
    return "compute" if getattr(schedule, "unit", "env_step") == "compute" else "env_step"


def as_schedule(value: float | Schedule) -> Schedule:
    """A module's ``coef``: a float becomes :class:`Constant`; a schedule must count env steps."""
    if callable(value):
        if unit_of(value) != "env_step":
            raise ValueError(
                f"a module's coef is called with env steps, but {value!r} counts {unit_of(value)!r}; "
                "per-compute decays belong in Fusion(decay=...)"
            )
        return value
    return constant(float(value))
