"""Fusion of several intrinsic modules, after HIRE's hybrid intrinsic rewards (Yuan et al.): weighted sum,
product, maximum, or cycling which module is active, each member normalised first.

Reference: RLE-Foundation/rllte (RLeXplore) ``rllte/xplore/reward/fabric.py`` and
``rllte/common/prototype/base_reward.py`` (``BaseReward.weight`` = ``beta * (1 - kappa) ** global_step``,
``global_step += 1`` per ``compute`` call).

Deviations:
    - Each member keeps its own normaliser and ``coef``; the fused reward is not normalised again by default.
    - A decay may count env steps instead of computes when the user asks for it
      (``ExponentialDecay(..., unit="env_step")``); the default is HIRE's per-compute unit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, cast

import torch
from gymnasium import spaces
from torch import nn

from rove.intrinsic.base import IntrinsicModule, Normalization
from rove.intrinsic.registry import make, register
from rove.intrinsic.schedules import Schedule, constant, exponential_decay, unit_of
from rove.intrinsic.types import Rollout, Step
from rove.obs import TensorObs

Operator = Literal["sum", "product", "max", "cycle"]
OPERATORS = ("sum", "product", "max", "cycle")
MemberSpec = IntrinsicModule | str | tuple[str, dict[str, Any]]
Decay = tuple[float, float] | Schedule | None


def _as_decay(decay: Decay) -> Schedule:
    if decay is None:
        return constant(1.0)
    if callable(decay):
        return decay
    beta, kappa = decay
    return exponential_decay(beta, kappa, unit="compute")  # HIRE's unit: one step per compute (rollout)


@register("fusion")
class Fusion(IntrinsicModule):
    """A module made of modules: each member computes its own reward (normalised by its own normaliser and
    scaled by its own ``coef``), then ``c_i(n) = w_i * d_i(n)`` (weight times decay at ``n`` env steps seen)
    scales it and the operator combines them:

    - ``"sum"``: ``sum_i c_i r_i``;
    - ``"product"``: ``prod_i c_i r_i``;
    - ``"max"``: ``max_i c_i r_i`` (elementwise);
    - ``"cycle"``: ``c_j r_j`` with ``j`` the active member, which advances by one at each ``compute``
      (every member still computes, so episodic memories and normalisers stay current).

    ``observe``, ``warm_up`` and ``update`` go to every member; ``update`` returns their losses as
    ``"<member>/<loss>"``. A Fusion's own normaliser defaults to ``"none"`` since members are normalised.

    Args:
        observation_space: Single-env observation space, handed to members built from names.
        action_space: Single-env action space, handed to members built from names.
        modules: Members: built modules, names, or ``(name, kwargs)`` pairs (built with ``device`` and a
            per-member ``seed`` unless the kwargs set them).
        operator: One of ``"sum"``, ``"product"``, ``"max"``, ``"cycle"``.
        weights: One weight per member (default 1.0 each).
        decay: HIRE's decay ``beta * (1 - kappa) ** n``: one ``(beta, kappa)`` pair or schedule for all members,
            or a sequence with one (pair, schedule or None) per member. A pair counts ``n`` in ``compute`` calls
            (one per rollout), as HIRE's code; a :class:`~rove.intrinsic.schedules.ExponentialDecay` counts the
            ``unit`` it names (``"compute"`` or ``"env_step"``); other callables get env steps.
        normalize: The fused reward's own normalisation (default ``"none"``).
        **base_kwargs: ``coef``, ``gamma``, ``update_proportion`` (ignored: members sample their own),
            ``device``, ``seed``.
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        *,
        modules: Sequence[MemberSpec] = (),
        operator: Operator = "sum",
        weights: Sequence[float] | None = None,
        decay: Decay | Sequence[Decay] = None,
        normalize: Normalization = "none",
        **base_kwargs: Any,
    ) -> None:
        super().__init__(observation_space, action_space, normalize=normalize, **base_kwargs)
        if not modules:
            raise ValueError("Fusion needs modules=[...]: built modules, names or (name, kwargs) pairs")
        if operator not in OPERATORS:
            raise ValueError(f"unknown fusion operator {operator!r}; choose one of {', '.join(OPERATORS)}")
        self.operator = operator
        members = [self._build(spec, i) for i, spec in enumerate(modules)]
        self.members = nn.ModuleDict()
        for member in members:
            name, n = member.name, 1
            while name in self.members:
                name, n = f"{member.name}_{n}", n + 1
            self.members[name] = member
        num = len(members)
        self.weights = [1.0] * num if weights is None else [float(w) for w in weights]
        if len(self.weights) != num:
            raise ValueError(f"weights has {len(self.weights)} entries for {num} modules")
        one_pair = isinstance(decay, tuple) and len(decay) == 2 and all(isinstance(x, (int, float)) for x in decay)
        decays: list[Decay] = (
            list(cast(Sequence[Decay], decay))
            if isinstance(decay, Sequence) and not one_pair
            else [cast(Decay, decay)] * num
        )
        if len(decays) != num:
            raise ValueError(f"decay has {len(decays)} entries for {num} modules")
        self.decays = [_as_decay(d) for d in decays]
        self.register_buffer("cycle_index", torch.zeros((), dtype=torch.long))
        self.register_buffer("num_computes", torch.zeros((), dtype=torch.long))

    cycle_index: torch.Tensor
    num_computes: torch.Tensor

    def member_items(self) -> list[tuple[str, IntrinsicModule]]:
        """``(name, module)`` of each member, in order; names are unique (``rnd``, ``rnd_1``, ...)."""
        return [(name, cast(IntrinsicModule, member)) for name, member in self.members.items()]

    def _build(self, spec: MemberSpec, index: int) -> IntrinsicModule:
        if isinstance(spec, IntrinsicModule):
            return spec
        name, kwargs = (spec, {}) if isinstance(spec, str) else spec
        kwargs = {"device": self.device, **kwargs}
        if self.seed is not None:
            kwargs.setdefault("seed", self.seed + index + 1)
        return make(name, self.observation_space, self.action_space, **kwargs)

    @classmethod
    def supports(cls, observation_space: spaces.Space) -> bool:
        return True  # depends on the members, which check their own spaces when built

    def scales(self) -> list[float]:
        """``w_i * d_i(n)`` of each member, ``n`` the count its decay names: ``compute`` calls so far, or env
        steps seen."""
        counts = {"compute": int(self.num_computes), "env_step": self.num_steps_seen}
        return [w * d(counts[unit_of(d)]) for w, d in zip(self.weights, self.decays, strict=True)]

    def _warm_up(self, obs: TensorObs) -> None:
        for _, member in self.member_items():
            member.warm_up(obs)

    def _observe(self, step: Step) -> None:
        for _, member in self.member_items():
            if member.observes_steps:
                member.observe(step)

    def _reset_episodes(self) -> None:
        for _, member in self.member_items():
            member.reset_episodes()

    def _has_episodic_memory(self) -> bool:
        return any(member.observes_steps for _, member in self.member_items())

    def _compute(self, rollout: Rollout) -> torch.Tensor:
        rewards = torch.stack(
            [
                member.compute(rollout) * scale
                for (_, member), scale in zip(self.member_items(), self.scales(), strict=True)
            ]
        )  # [M, T, E]
        self.num_computes += 1
        if self.operator == "sum":
            return rewards.sum(0)
        if self.operator == "product":
            return rewards.prod(0)
        if self.operator == "max":
            return rewards.max(0).values
        active = int(self.cycle_index)
        self.cycle_index.fill_((active + 1) % len(self.members))
        return rewards[active]

    def update(self, rollout: Rollout) -> dict[str, float]:
        """Trains every member on the rollout (each with its own ``update_proportion``); returns
        ``{"<member>/<loss>": value}``."""
        losses: dict[str, float] = {}
        for name, member in self.member_items():
            losses.update({f"{name}/{key}": value for key, value in member.update(rollout).items()})
        return losses

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, operator={self.operator!r}, weights={self.weights}"
