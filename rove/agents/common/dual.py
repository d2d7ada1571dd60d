"""Coefficients tuned by dual gradient descent, SAC-style: ``int_coef="auto"`` and ``ent_coef="auto"`` of PPO.

A dual variable ``c > 0`` is held as ``log c`` and moved by Adam on the loss ``log c * g``, where ``g`` is the
measured constraint slack: ``g > 0`` (the constrained quantity is above its target) lowers ``c``, ``g < 0``
raises it. This is Stable-Baselines3's ``ent_coef_loss = -(log_ent_coef * (log_prob + target_entropy))`` and
MaxInfoRL's ``dyn_scale_loss = log_dyn_entropy_scale * (info_gain - target_info_gain)`` (sukhijab/maxinforl_sb3
``maxinforl_torch/commons/maxinfo_sac.py``), both Adam on the log.

Deviations from those (off-policy, one step per gradient step): one step per PPO rollout, with its own learning
rate (``dual_lr``; theirs is the policy's, 3e-4, at up to one step per env step); the value is kept within
three orders of magnitude of its initial value either side (theirs is unbounded), so that a long stretch of
one-signed slack (a reward the policy can no longer change) cannot drive it to zero or overflow.
"""

from __future__ import annotations

import math
from typing import Any

import torch

AUTO = "auto"
BOUND = 1e3  # the value stays in [init / BOUND, init * BOUND]


def parse_coef(value: Any, name: str, default_init: float) -> tuple[float, bool]:
    """``(initial value, auto)`` of a coefficient given as a number, ``"auto"`` or ``"auto_<init>"``.

    ``"auto"`` starts from ``default_init`` (the option's fixed default), as Stable-Baselines3's ``"auto_0.1"``
    starts its entropy coefficient at 0.1.

    Raises:
        ValueError: another string, or an ``auto`` start that is not a positive number.
        TypeError: neither a number nor a string.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise TypeError(f"{name} must be a number, 'auto' or 'auto_<initial value>', got {value!r}")
    if not isinstance(value, str):
        return float(value), False
    if value == AUTO:
        return float(default_init), True
    if value.startswith(AUTO + "_"):
        try:
            init = float(value[len(AUTO) + 1 :])
        except ValueError:
            init = float("nan")
        if not init > 0 or math.isinf(init):
            raise ValueError(f"{name}={value!r}: the initial value after 'auto_' must be a positive number")
        return init, True
    raise ValueError(f"{name} must be a number, 'auto' or 'auto_<initial value>' (e.g. 'auto_0.5'), got {value!r}")


class DualCoef:
    """A positive coefficient moved by Adam on ``log c * slack``, one step per call of :meth:`step`.

    Args:
        init: Initial value (> 0).
        lr: Adam learning rate on ``log c``.

    Attributes:
        log_value: ``log c``, a float64 scalar tensor (the checkpoint holds it with the Adam state).
    """

    def __init__(self, init: float, lr: float) -> None:
        if not init > 0:
            raise ValueError(f"the initial value of a tuned coefficient must be > 0, got {init}")
        if not lr > 0:
            raise ValueError(f"dual_lr must be > 0, got {lr}")
        self.init, self.lr = float(init), float(lr)
        self.log_value = torch.tensor(math.log(init), dtype=torch.float64, requires_grad=True)
        self.optimizer = torch.optim.Adam([self.log_value], lr=lr)
        self.bounds = (math.log(init / BOUND), math.log(init * BOUND))

    @property
    def value(self) -> float:
        return math.exp(float(self.log_value.detach()))

    def step(self, slack: float) -> float:
        """One Adam step on ``log c * slack`` (``slack`` > 0 lowers ``c``); returns the new value."""
        if not math.isfinite(slack):
            raise FloatingPointError(f"the constraint slack of a tuned coefficient is not finite: {slack}")
        self.optimizer.zero_grad(set_to_none=True)
        (self.log_value * slack).backward()
        self.optimizer.step()
        with torch.no_grad():
            self.log_value.clamp_(*self.bounds)
        return self.value

    def state_dict(self) -> dict[str, Any]:
        return {"log_value": self.log_value.detach().clone(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self.log_value.copy_(state["log_value"])
        self.optimizer.load_state_dict(state["optimizer"])
