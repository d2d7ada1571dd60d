"""Fusion of several intrinsic modules, after HIRE's hybrid intrinsic rewards (Yuan et al.): weighted sum,
product, maximum, cycling which module is active, or choosing it by a bandit (AIRS), each member normalised first.

Reference: RLE-Foundation/rllte (RLeXplore) ``rllte/xplore/reward/fabric.py`` and
``rllte/common/prototype/base_reward.py`` (``BaseReward.weight`` = ``beta * (1 - kappa) ** global_step``,
``global_step += 1`` per ``compute`` call).

Deviations:
    - Each member keeps its own normaliser and ``coef``; the fused reward is not normalised again by default.
    - A decay may count env steps instead of computes when the user asks for it
      (``ExponentialDecay(..., unit="env_step")``); the default is HIRE's per-compute unit.

``operator="select"`` is AIRS ("Automatic Intrinsic Reward Shaping for Exploration in Deep Reinforcement
Learning", Yuan, Li, Jin and Zeng, ICML 2023, arXiv 2301.10886): a UCB bandit picks, at every rollout, which
candidate shapes the reward (identity, i.e. no intrinsic reward, among them), by the extrinsic return the
candidates earned when chosen. The authors' code (github.com/yuanmingqi/AIRS) and the paper's text past its
abstract could not be read here; what follows is from the abstract, Rove's REFERENCE.md, and a third-party
reproduction, KennyRao/cse5100_airs_repro (``airs/bandit.py``, ``scripts/train_minigrid.py``), which credits its
settings to the paper: UCB1 ``Q + c * sqrt(log t / N)`` with ``c = 1``, each arm's ``Q`` the mean of its last
10 task returns (a sliding window: the returns drift as the policy learns), arms {identity, RE3, RISE}, a new
choice at every policy update, the bandit reward the mean extrinsic return of the episodes that ended in the
rollout (no update when none did). Choices made here where that source is silent or is not the paper:

    - Credit: a rollout's return goes to the arm that shaped the *previous* update, the one whose rewards
      trained the policy that collected it (the reproduction credits the arm chosen for the same rollout,
      which could not have influenced it). The first rollout credits nobody.
    - An episode that spans several rollouts counts whole: each env's extrinsic return is summed across rollout
      boundaries (checkpointed; forgotten on ``reset_episodes``), undiscounted, over valid steps only.
    - ``select_by="rollout_return"`` instead credits the mean over envs of the extrinsic reward summed over the
      rollout's valid steps, always defined: for tasks whose episodes outlast many rollouts (Crafter, NetHack).
    - Every candidate observes, computes and trains on every rollout, chosen or not (as ``"cycle"``), so that a
      candidate chosen again is not stale (RND's predictor, count tables, normalisers). The paper's candidates
      (RE3, RISE: random encoders) learn nothing, so its code never had to decide this.
    - Unrewarded arms are tried first, in order (UCB1's initial round); ties go to the first arm.
    - Rove has no RISE; the ``"airs"`` preset's default candidates are ``("none", "re3")``, the paper's ablation pool.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, cast

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from rove.intrinsic.bandit import SlidingWindowUCB
from rove.intrinsic.base import IntrinsicModule, Normalization
from rove.intrinsic.registry import make, register
from rove.intrinsic.schedules import Schedule, constant, exponential_decay, unit_of
from rove.intrinsic.types import Rollout, Step
from rove.obs import TensorObs

Operator = Literal["sum", "product", "max", "cycle", "select"]
OPERATORS = ("sum", "product", "max", "cycle", "select")
SelectBy = Literal["episode_return", "rollout_return"]
SELECT_BY = ("episode_return", "rollout_return")
IDENTITY = "none"  # the candidate that adds no intrinsic reward (AIRS's identity shaping)
MemberSpec = IntrinsicModule | str | tuple[str, dict[str, Any]]
Decay = tuple[float, float] | Schedule | None


def _as_decay(decay: Decay) -> Schedule:
    if decay is None:
        return constant(1.0)
    if callable(decay):
        return decay
    beta, kappa = decay
    return exponential_decay(beta, kappa, unit="compute")  # HIRE's unit: one step per compute (rollout)


class Identity(IntrinsicModule):
    """The member ``"none"``: no intrinsic reward (AIRS's identity shaping function, ``r = r_ext``)."""

    name = IDENTITY

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space, **base_kwargs: Any) -> None:
        super().__init__(observation_space, action_space, **{"normalize": "none", **base_kwargs})

    def _compute(self, rollout: Rollout) -> torch.Tensor:
        return torch.zeros(rollout.num_steps, rollout.num_envs, device=self.device)


@register("fusion")
class Fusion(IntrinsicModule):
    """A module made of modules: each member computes its own reward (normalised by its own normaliser and
    scaled by its own ``coef``), then ``c_i(n) = w_i * d_i(n)`` (weight times decay at ``n`` env steps seen)
    scales it and the operator combines them:

    - ``"sum"``: ``sum_i c_i r_i``;
    - ``"product"``: ``prod_i c_i r_i``;
    - ``"max"``: ``max_i c_i r_i`` (elementwise);
    - ``"cycle"``: ``c_j r_j`` with ``j`` the active member, which advances by one at each ``compute``
      (every member still computes, so episodic memories and normalisers stay current);
    - ``"select"`` (AIRS, see the module docstring): ``c_j r_j`` with ``j`` chosen at each ``compute`` by a
      sliding-window UCB bandit (:class:`~rove.intrinsic.bandit.SlidingWindowUCB`) whose reward is the extrinsic
      return collected after training with ``j``'s reward; every member still computes and trains.

    ``observe``, ``warm_up`` and ``update`` go to every member; ``update`` returns their losses as
    ``"<member>/<loss>"`` and, with ``"select"``, the bandit as ``"select/choice"`` (the chosen member's index),
    ``"select/<member>/chosen"`` (1 or 0), ``"select/<member>/count"`` and ``"select/<member>/value"`` (its
    window mean, once it has one): the agent logs them per rollout under ``intrinsic/<name>/``. The member
    ``"none"`` adds no intrinsic reward. A Fusion's own normaliser defaults to ``"none"`` since members are
    normalised.

    Args:
        observation_space: Single-env observation space, handed to members built from names.
        action_space: Single-env action space, handed to members built from names.
        modules: Members: built modules, names, or ``(name, kwargs)`` pairs (built with ``device`` and a
            per-member ``seed`` unless the kwargs set them); ``"none"`` is the zero reward.
        operator: One of ``"sum"``, ``"product"``, ``"max"``, ``"cycle"``, ``"select"``.
        weights: One weight per member (default 1.0 each).
        decay: HIRE's decay ``beta * (1 - kappa) ** n``: one ``(beta, kappa)`` pair or schedule for all members,
            or a sequence with one (pair, schedule or None) per member. A pair counts ``n`` in ``compute`` calls
            (one per rollout), as HIRE's code; a :class:`~rove.intrinsic.schedules.ExponentialDecay` counts the
            ``unit`` it names (``"compute"`` or ``"env_step"``); other callables get env steps.
        normalize: The fused reward's own normalisation (default ``"none"``).
        ucb_c: ``"select"`` only: the UCB exploration constant ``c`` (default 1.0, the reproduction's).
        ucb_window: ``"select"`` only: how many of a member's latest bandit rewards its value averages (default 10).
        select_by: ``"select"`` only: the bandit reward, ``"episode_return"`` (default: the mean extrinsic return
            of the episodes that ended in the rollout, no credit when none did) or ``"rollout_return"`` (the
            mean over envs of the extrinsic reward summed over the rollout).
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
        ucb_c: float | None = None,
        ucb_window: int | None = None,
        select_by: SelectBy | None = None,
        **base_kwargs: Any,
    ) -> None:
        super().__init__(observation_space, action_space, normalize=normalize, **base_kwargs)
        if not modules:
            raise ValueError("Fusion needs modules=[...]: built modules, names or (name, kwargs) pairs")
        if operator not in OPERATORS:
            raise ValueError(f"unknown fusion operator {operator!r}; choose one of {', '.join(OPERATORS)}")
        bandit_options = {"ucb_c": ucb_c, "ucb_window": ucb_window, "select_by": select_by}
        given = [k for k, v in bandit_options.items() if v is not None]
        if operator != "select" and given:
            raise ValueError(f"{', '.join(given)} only apply to operator='select', not {operator!r}")
        if select_by is not None and select_by not in SELECT_BY:
            raise ValueError(f"unknown select_by {select_by!r}; choose one of {', '.join(SELECT_BY)}")
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
        self.bandit: SlidingWindowUCB | None = None
        if operator == "select":
            self.select_by: SelectBy = select_by or "episode_return"
            self.bandit = SlidingWindowUCB(
                num, 1.0 if ucb_c is None else ucb_c, 10 if ucb_window is None else ucb_window
            )
            self.register_buffer("choice", torch.full((), -1, dtype=torch.long))  # -1: nothing chosen yet
            # Each env's extrinsic return so far in its current episode (float64, [E]); None until the first
            # rollout and after reset_episodes. A plain attribute: checkpoints carry it, its shape follows E.
            self.episode_returns: torch.Tensor | None = None

    cycle_index: torch.Tensor
    num_computes: torch.Tensor
    choice: torch.Tensor

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
        if name == IDENTITY:
            return Identity(self.observation_space, self.action_space, **kwargs)
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
        if self.operator == "select":
            self.episode_returns = None  # fresh episodes: their returns start again at zero

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
        if self.operator == "select":
            return rewards[self._select(rollout)]
        active = int(self.cycle_index)
        self.cycle_index.fill_((active + 1) % len(self.members))
        return rewards[active]

    def _select(self, rollout: Rollout) -> int:
        """Credits the rollout's extrinsic return to the previous choice, then chooses the next member."""
        assert self.bandit is not None
        reward = self.bandit_reward(rollout)
        if reward is not None and int(self.choice) >= 0:
            self.bandit.update(int(self.choice), reward)
        choice = self.bandit.select()
        self.choice.fill_(choice)
        return choice

    def bandit_reward(self, rollout: Rollout) -> float | None:
        """The bandit reward of ``rollout`` (see ``select_by``), or None when no episode ended in it; with
        ``"episode_return"`` it advances each env's running return (call it once per rollout, in order)."""
        valid = rollout.valid.cpu().numpy()
        rewards = np.where(valid, rollout.rewards.detach().cpu().double().numpy(), 0.0)
        if self.select_by == "rollout_return":
            return float(rewards.sum(0).mean())
        ends = rollout.dones.cpu().numpy() & valid
        returns = self.episode_returns
        if returns is None or returns.numel() != rollout.num_envs:
            running = np.zeros(rollout.num_envs)
        else:
            running = returns.cpu().numpy()
        finished: list[float] = []
        for t in range(rollout.num_steps):
            running = running + rewards[t]
            finished.extend(running[ends[t]].tolist())
            running[ends[t]] = 0.0
        self.episode_returns = torch.from_numpy(running)
        return float(np.mean(finished)) if finished else None

    def update(self, rollout: Rollout) -> dict[str, float]:
        """Trains every member on the rollout (each with its own ``update_proportion``); returns
        ``{"<member>/<loss>": value}``, and with ``"select"`` the bandit's state (see the class docstring)."""
        losses: dict[str, float] = {}
        for name, member in self.member_items():
            losses.update({f"{name}/{key}": value for key, value in member.update(rollout).items()})
        if self.bandit is not None and int(self.choice) >= 0:
            losses["select/choice"] = float(self.choice)
            values, counts = self.bandit.values(), self.bandit.counts
            for i, (name, _) in enumerate(self.member_items()):
                losses[f"select/{name}/chosen"] = float(i == int(self.choice))
                losses[f"select/{name}/count"] = float(counts[i])
                if int(counts[i]) > 0:
                    losses[f"select/{name}/value"] = float(values[i])
        return losses

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, operator={self.operator!r}, weights={self.weights}"


@register("airs")
class AIRS(Fusion):
    """AIRS (Yuan et al., ICML 2023; see the module docstring): :class:`Fusion` with ``operator="select"``
    over ``candidates``, the identity ``"none"`` among them by default.

    Args:
        observation_space: Single-env observation space.
        action_space: Single-env action space.
        candidates: The shaping functions to choose from: names, ``(name, kwargs)`` pairs or built modules;
            ``"none"`` adds no intrinsic reward. Default ``("none", "re3")``, the paper's ablation pool (Rove has
            no RISE).
        ucb_c: The UCB exploration constant (default 1.0).
        ucb_window: How many of a candidate's latest returns its value averages (default 10).
        select_by: ``"episode_return"`` (default) or ``"rollout_return"`` (see :class:`Fusion`).
        **fusion_kwargs: :class:`Fusion`'s ``weights``, ``decay`` (AIRS's ``beta_0 * (1 - kappa) ** t``),
            ``normalize``, and the base options (``device``, ``seed``, ...).
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        *,
        candidates: Sequence[MemberSpec] = (IDENTITY, "re3"),
        ucb_c: float = 1.0,
        ucb_window: int = 10,
        select_by: SelectBy = "episode_return",
        **fusion_kwargs: Any,
    ) -> None:
        for key in ("modules", "operator"):
            if key in fusion_kwargs:
                raise ValueError(f"AIRS sets {key!r} itself; list the shaping functions with candidates=[...]")
        if not candidates:
            raise ValueError('AIRS needs candidates=[...]: names ("none" among them), (name, kwargs) pairs or modules')
        super().__init__(
            observation_space,
            action_space,
            modules=candidates,
            operator="select",
            ucb_c=ucb_c,
            ucb_window=ucb_window,
            select_by=select_by,
            **fusion_kwargs,
        )
