"""The intrinsic-module protocol: observe each step, compute a rollout's reward, update the networks.

An agent drives a module like this, once per rollout of ``T`` steps from ``E`` envs::

    module.warm_up(obs)                      # optional, before training: observation statistics
    for t in range(T):
        ...step the envs...
        module.observe(Step(...))            # episodic memory sees every step, in order
    r_int = module.compute(rollout)          # [T, E], zero on autoreset steps, normalised, scaled
    rewards = ext_coef * r_ext + r_int       # (the agent keeps separate value heads)
    losses = module.update(rollout)          # trains on valid transitions only

A new module subclasses :class:`IntrinsicModule`, implements ``_compute`` (and ``_update`` / ``_observe``
when it learns or remembers), and registers itself with :func:`rove.intrinsic.register`.

Checkpoints: ``state_dict`` holds parameters, buffers and whatever a module returns from ``get_extra_state``;
:meth:`IntrinsicModule.get_training_state` holds the rest, found by walking the module tree: every optimiser,
torch/NumPy/Python generator, and every plain attribute of each (member) intrinsic module (counters, count
tables, episodic memory objects, pending lists: numbers, arrays, tensors, containers and Rove's own state
objects), so a module needs no code of its own to be checkpointed.
A module built by the user comes back with its own settings: :attr:`IntrinsicModule.init_kwargs` records the
arguments its constructor was called with.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import random
from collections.abc import Callable, Iterable, Iterator
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from rove.intrinsic.normalize import ReturnNormalizer, RewardNormalizer
from rove.intrinsic.schedules import Schedule, as_schedule
from rove.intrinsic.types import Rollout, Step, Transitions
from rove.obs import TensorObs, check_finite, get_device, obs_map

Normalization = Literal["return", "std", "none"]
# Attribute types whose state a checkpoint must carry besides the state dict: kind -> (type, get, set).
_STATEFUL: dict[str, tuple[type, Callable[[Any], Any], Callable[[Any, Any], None]]] = {
    "optimizer": (torch.optim.Optimizer, lambda o: o.state_dict(), lambda o, s: o.load_state_dict(s)),
    "lr_scheduler": (
        torch.optim.lr_scheduler.LRScheduler,
        lambda o: o.state_dict(),
        lambda o, s: o.load_state_dict(s),
    ),
    "torch_generator": (torch.Generator, lambda g: g.get_state(), lambda g, s: g.set_state(s)),
    "numpy_generator": (
        np.random.Generator,
        lambda g: g.bit_generator.state,
        lambda g, s: setattr(g.bit_generator, "state", s),
    ),
    "python_random": (random.Random, lambda r: r.getstate(), lambda r, s: r.setstate(s)),
}
_MODULE_INTERNALS = frozenset(vars(nn.Module())) | {"_init_call"}


def _is_plain(value: Any, depth: int = 0) -> bool:
    """Whether ``value`` is plain state a checkpoint copies: numbers, strings, arrays, tensors, containers of
    them, and instances of Rove's own helper classes made of them (count tables, memories, schedules).
    Networks, optimisers, spaces, functions and foreign objects (an LLM client) are not."""
    if depth > 8:
        return False
    if value is None or isinstance(value, (bool, int, float, str, bytes, np.generic, np.ndarray, torch.device)):
        return True
    if isinstance(value, torch.Tensor):
        return not isinstance(value, nn.Parameter)
    if isinstance(value, (list, tuple, set, frozenset)):
        return all(_is_plain(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(_is_plain(k, depth + 1) and _is_plain(v, depth + 1) for k, v in value.items())
    if type(value).__module__.startswith("rove.") and not isinstance(value, (nn.Module, torch.optim.Optimizer)):
        return hasattr(value, "__dict__") and all(_is_plain(v, depth + 1) for v in vars(value).values())
    return False


def _to_device(value: Any, device: torch.device) -> Any:
    """``value`` (a copy) with its tensors and devices moved to ``device``, in place where it is an object."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, torch.device):
        return device
    if isinstance(value, (list, tuple)):
        return type(value)(_to_device(v, device) for v in value)
    if isinstance(value, dict):
        return {k: _to_device(v, device) for k, v in value.items()}
    if hasattr(value, "__dict__") and type(value).__module__.startswith("rove."):
        for attr, item in vars(value).items():
            moved = _to_device(item, device)
            if moved is not item:  # object.__setattr__: frozen dataclasses (schedules) hold no tensors anyway
                object.__setattr__(value, attr, moved)
    return value


@contextlib.contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Runs the block with torch's global RNG seeded, restoring it afterwards (for reproducible init)."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def make_adam(params: Iterable[nn.Parameter], lr: float) -> torch.optim.Adam:
    """Adam for a module's networks, fused (one kernel for all tensors) where torch supports it: the
    per-tensor loop costs ~5x more than the small networks' whole step on CPU."""
    params = list(params)
    fused = all(p.device.type in ("cpu", "cuda") and p.dtype in (torch.float32, torch.float64) for p in params)
    return torch.optim.Adam(params, lr=lr, fused=fused or None)


class IntrinsicModule(nn.Module):
    """Base class of every intrinsic-reward module.

    Args:
        observation_space: The single-env observation space (Box, or Dict of Rove's keys).
        action_space: The single-env action space.
        coef: Multiplier of the reward, a float or a schedule of env steps seen (``rove.intrinsic.schedules``).
        normalize: ``"return"`` divides by the running std of the discounted intrinsic return along time
            (Burda et al.); ``"std"`` by the reward's own running std (E3B); ``"none"`` leaves it raw.
        gamma: Discount of the return used by ``normalize="return"``.
        update_proportion: Fraction of each rollout's valid transitions used by ``update`` (RND's 0.25 with
            many envs).
        device: Where the module's tensors live (``"auto"``: CUDA when available); inputs are moved there.
        seed: Seeds network initialisation and the module's own sampling.
    """

    name: ClassVar[str] = "base"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Wraps each subclass's ``__init__`` so that the outermost call records its arguments
        (:attr:`init_kwargs`)."""
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None or getattr(init, "_records_arguments", False):
            return

        @functools.wraps(init)
        def recording_init(self: IntrinsicModule, *args: Any, **kw: Any) -> None:
            if "_init_call" not in self.__dict__:
                object.__setattr__(self, "_init_call", (type(self), args, kw))
            init(self, *args, **kw)

        recording_init._records_arguments = True  # type: ignore[attr-defined]
        cls.__init__ = recording_init  # type: ignore[method-assign]

    @property
    def init_kwargs(self) -> dict[str, Any]:
        """The keyword arguments the module was built with (spaces left out; ``**kwargs`` merged in)."""
        call = self.__dict__.get("_init_call")
        if call is None:
            return {}
        cls, args, kw = call
        bound = inspect.signature(cls.__init__).bind(self, *args, **kw)
        out: dict[str, Any] = {}
        params = inspect.signature(cls.__init__).parameters
        for name, value in bound.arguments.items():
            if name in ("self", "observation_space", "action_space"):
                continue
            if params[name].kind is inspect.Parameter.VAR_KEYWORD:
                out.update(value)
            else:
                out[name] = value
        return out

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        *,
        coef: float | Schedule = 1.0,
        normalize: Normalization = "return",
        gamma: float = 0.99,
        update_proportion: float = 1.0,
        device: torch.device | str = "cpu",
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 < update_proportion <= 1.0:
            raise ValueError(f"update_proportion must be in (0, 1], got {update_proportion}")
        if normalize not in ("return", "std", "none"):
            raise ValueError(f"normalize must be 'return', 'std' or 'none', got {normalize!r}")
        self.observation_space = observation_space
        self.action_space = action_space
        self.coef = as_schedule(coef)
        self.normalize = normalize
        self.update_proportion = update_proportion
        self.device = get_device(device)
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.generator = torch.Generator(device="cpu")
        self.generator.manual_seed(seed if seed is not None else int(self.rng.integers(2**62)))
        self.reward_normalizer: nn.Module | None = (
            ReturnNormalizer(gamma) if normalize == "return" else RewardNormalizer() if normalize == "std" else None
        )
        self.num_steps_seen = 0

    @classmethod
    def supports(cls, observation_space: spaces.Space) -> bool:
        """Whether the module can work on this observation space (e.g. LLM rewards need ``caption``)."""
        return True

    # ----- public verbs (template methods) -----
    def warm_up(self, obs: TensorObs) -> None:
        """Feeds observations (``[N, ...]``) to running observation statistics; the agent decides when."""
        obs = self._prepare(obs, "warm_up")
        self._warm_up(obs)

    def observe(self, step: Step) -> None:
        """Sees one vector-env step (for episodic memory); called for every step, in order."""
        if not self._has_episodic_memory():
            # Nothing to remember: only validate (copying every step to the device would cost more than the
            # whole update of a small module).
            check_finite(step.obs, f"{type(self).__name__}.observe")
            check_finite(step.next_obs, f"{type(self).__name__}.observe")
            return
        self._observe(
            Step(
                self._prepare(step.obs, "observe"),
                step.actions.to(self.device),
                self._prepare(step.next_obs, "observe"),
                step.dones.to(self.device, torch.bool),
                step.valid.to(self.device, torch.bool),
            )
        )

    def reset_episodes(self) -> None:
        """Forgets every episodic memory: each env is at the first observation of a fresh episode.

        Agents call it whenever the envs are reset without the module seeing the episode ends (the start of
        ``learn`` after ``load``, ``set_env``), so that no memory outlives the episodes it belongs to.
        Lifelong state (counts over all training, trained networks, statistics) is kept.
        """
        self._reset_episodes()

    def compute(self, rollout: Rollout) -> torch.Tensor:
        """The intrinsic reward of each transition, ``[T, E]`` float32: zero on autoreset steps, normalised
        as configured and multiplied by the coefficient."""
        rollout = self._prepare_rollout(rollout)
        with torch.no_grad():
            raw = self._compute(rollout)
        expected = (rollout.num_steps, rollout.num_envs)
        if tuple(raw.shape) != expected:
            raise RuntimeError(f"{type(self).__name__}._compute returned shape {tuple(raw.shape)}, expected {expected}")
        if not bool(torch.isfinite(raw).all()):
            raise FloatingPointError(f"{type(self).__name__} produced a non-finite intrinsic reward")
        reward = raw.float() * rollout.valid
        if self.reward_normalizer is not None:
            reward = self.reward_normalizer(reward, rollout.valid)
        coef = self.coef(self.num_steps_seen)
        self.num_steps_seen += int(rollout.valid.sum())
        return reward * coef

    def update(self, rollout: Rollout) -> dict[str, float]:
        """Trains the module on the rollout's valid transitions (a random ``update_proportion`` of them);
        returns its losses as floats."""
        rollout = self._prepare_rollout(rollout)
        index = self._update_index(rollout)
        if index.numel() == 0:
            return {}
        self.train()
        return self._update_rollout(rollout, index)

    def _update_index(self, rollout: Rollout) -> torch.Tensor:
        """Flat (time-major) indices ``[M]`` of the transitions to train on: valid ones, a random
        ``update_proportion`` of them."""
        index = rollout.valid.reshape(-1).nonzero(as_tuple=True)[0]
        if self.update_proportion < 1.0 and index.numel() > 0:
            keep = torch.rand(index.numel(), generator=self.generator) < self.update_proportion
            if not bool(keep.any()):
                keep[torch.randint(index.numel(), (1,), generator=self.generator)] = True
            index = index[keep.nonzero(as_tuple=True)[0].to(self.device)]
        return index

    # ----- checkpoints -----
    def get_training_state(self) -> dict[str, Any]:
        """What a checkpoint needs besides ``state_dict()``: ``{"path.attr": (kind, state)}`` for every
        optimiser, LR scheduler and torch/NumPy/Python generator held by the module or any submodule (fusion
        members included), and a copy of every plain attribute (see :func:`_is_plain`) of each intrinsic
        module in the tree: ``num_steps_seen``, count tables, episodic memory, pending per-step values."""
        state: dict[str, Any] = {}
        for prefix, module in self.named_modules():
            where = f"{prefix}." if prefix else ""
            for attr, value in vars(module).items():
                if attr in _MODULE_INTERNALS:
                    continue
                kind = next((k for k, (typ, _, _) in _STATEFUL.items() if isinstance(value, typ)), None)
                if kind is not None:
                    state[where + attr] = (kind, _STATEFUL[kind][1](value))
                elif isinstance(module, IntrinsicModule) and _is_plain(value):
                    state[where + attr] = ("attribute", copy.deepcopy(value))
        return state

    def set_training_state(self, state: dict[str, Any]) -> None:
        """Restores :meth:`get_training_state`'s snapshot in place (load ``state_dict`` first).

        Raises:
            ValueError: the snapshot does not fit this module (an entry is missing, extra or of another kind).
        """
        # Plain attributes may be created lazily (after the first rollout): only the others must match.
        expected = {k: v for k, v in self.get_training_state().items() if v[0] != "attribute"}
        stateful = {k: v for k, v in state.items() if v[0] != "attribute"}
        if expected.keys() != stateful.keys() or any(expected[k][0] != stateful[k][0] for k in stateful):
            missing = sorted(set(expected) - set(stateful))
            extra = sorted(set(stateful) - set(expected))
            changed = sorted(k for k in set(stateful) & set(expected) if expected[k][0] != stateful[k][0])
            raise ValueError(
                f"{type(self).__name__}: the saved training state does not fit this module "
                f"(missing {missing}, unexpected {extra}, of another kind {changed})"
            )
        for key, (kind, value) in state.items():
            path, _, attr = key.rpartition(".")
            owner = self.get_submodule(path) if path else self
            if kind == "attribute":
                device = owner.device if isinstance(owner, IntrinsicModule) else self.device
                setattr(owner, attr, _to_device(copy.deepcopy(value), device))
            else:
                _STATEFUL[kind][2](getattr(owner, attr), value)

    # ----- hooks for subclasses -----
    def _warm_up(self, obs: TensorObs) -> None:
        """Updates observation statistics; default: nothing to warm up."""

    def _observe(self, step: Step) -> None:
        """Updates episodic memory; default: the module has none."""

    def _reset_episodes(self) -> None:
        """Clears episodic memory (see :meth:`reset_episodes`); default: the module has none."""

    def _compute(self, rollout: Rollout) -> torch.Tensor:
        """Raw intrinsic reward ``[T, E]`` of each transition (runs under ``torch.no_grad``)."""
        raise NotImplementedError

    def _update(self, batch: Transitions) -> dict[str, float]:
        """Trains on valid transitions; default: nothing to train."""
        return {}

    def _update_rollout(self, rollout: Rollout, index: torch.Tensor) -> dict[str, float]:
        """Trains on the flat transitions ``index [M]`` of ``rollout``; default: selects them (one copy of the
        observations) and calls :meth:`_update`. Modules override it to preprocess the rollout's distinct
        frames once instead."""
        return self._update(rollout.flatten().select(index))

    @property
    def observes_steps(self) -> bool:
        """Whether :meth:`observe` does anything with the steps it is shown (episodic memory).

        Agents skip the call when it does not: building and validating a ``Step`` at every env step costs more
        than a count module's whole compute, and :meth:`compute` validates the rollout's observations anyway.
        """
        return type(self).observe is not IntrinsicModule.observe or self._has_episodic_memory()

    def _has_episodic_memory(self) -> bool:
        """Whether ``observe`` must reach ``_observe`` (a subclass overrides it)."""
        return type(self)._observe is not IntrinsicModule._observe

    # ----- helpers -----
    def _prepare(self, obs: TensorObs, where: str) -> TensorObs:
        obs = obs_map(lambda x: torch.as_tensor(x, device=self.device), obs)
        check_finite(obs, f"{type(self).__name__}.{where}")
        return obs

    def _prepare_rollout(self, rollout: Rollout) -> Rollout:
        return Rollout(
            self._prepare(rollout.obs, "rollout"),
            rollout.actions.to(self.device),
            self._prepare(rollout.next_obs, "rollout"),
            rollout.rewards.to(self.device),
            rollout.dones.to(self.device, torch.bool),
            rollout.valid.to(self.device, torch.bool),
        )

    def extra_repr(self) -> str:
        return f"name={self.name!r}, normalize={self.normalize!r}, device={self.device}"
