"""Checkpoints that resume exactly: one ``torch.save`` file holds an on-policy agent's whole training state.

What a checkpoint holds, so that a run killed at any moment and resumed from its last checkpoint finishes
bit-identical to one that was never interrupted:

- the policy and its optimiser; the tuned coefficients (``int_coef="auto"``, ``ent_coef="auto"``) with their
  Adam states; the hyperparameters and the learning run's target (a schedule continues);
- the intrinsic module: its constructor arguments (a module passed as an instance comes back with its own
  settings), its state dict (networks, normalisers, episodic memory via ``get_extra_state``) and
  :meth:`~rove.intrinsic.base.IntrinsicModule.get_training_state` (optimisers, generators, counters, fusion
  members included);
- the step and update counters; Python's, NumPy's and torch's global generators, the agent's minibatch
  generator and its action space's;
- the rollout in progress between updates: the next observation, episode-start flags, LSTM state and
  episode bookkeeping, with the vector env's state (:meth:`rove.envs.vector.RoveVectorEnv.get_state`).

Restoring the env is exact for Rove's vector envs (MiniGrid and Crafter envs are unpickled, NetHack episodes
replayed). Any other vector env, or a saved env state that does not fit the env given at load, cannot be
restored: the resume says so in one warning, the envs start fresh episodes and the module's episodic memory is
cleared (it must never outlive its episodes).
"""

from __future__ import annotations

import pickle
import warnings
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from rove.agents.common.utils import get_rng_states, load_state_dict_resizing, set_rng_states
from rove.intrinsic.registry import from_spec, spec_of
from rove.obs import obs_index, obs_map

if TYPE_CHECKING:
    import gymnasium as gym

    from rove.agents.common.base import OnPolicyAlgorithm
    from rove.intrinsic.base import IntrinsicModule

FORMAT = 3  # 3: whole training state (module training state and spec, rollout and env state)


def _cpu(tree: Any) -> Any:
    return obs_map(lambda x: x.detach().cpu().clone(), tree)


def _rollout_state(model: OnPolicyAlgorithm) -> dict[str, Any] | None:
    """The rollout in progress between two updates (None before the envs were first reset)."""
    if not model._env_ready or model.env is None:
        return None
    buf, row = model.rollout_buffer, model._next_row
    get_state = getattr(model.env, "get_state", None)
    env_state: Any = None
    reason: str | None = f"{type(model.env).__name__} has no get_state()"
    if get_state is not None:
        env_state, reason = get_state(), None
    return {
        "env_id": model.env_id,
        "n_envs": model.n_envs,
        "obs": _cpu(obs_index(buf.obs, row)),
        "episode_start": buf.episode_starts[row].cpu().clone(),
        "lstm_state": None if model._lstm_state is None else tuple(_cpu(s) for s in model._lstm_state),
        "prev_done": model._prev_done.copy(),
        "ep_return": model._ep_return.copy(),
        "ep_length": model._ep_length.copy(),
        "ep_int_return": model._ep_int_return.copy(),
        "ep_info_buffer": list(model.ep_info_buffer),
        "env": env_state,
        "env_unsaved_reason": reason,
    }


def _intrinsic_state(model: OnPolicyAlgorithm) -> dict[str, Any] | None:
    module = model.intrinsic
    if module is None:
        return None
    spec: dict[str, Any] | None = spec_of(module)
    try:
        pickle.dumps(spec)
    except Exception as exc:  # a schedule or member that cannot be pickled (a lambda, an LLM client)
        warnings.warn(
            f"the settings of intrinsic module {model.intrinsic_name!r} cannot be saved ({type(exc).__name__}: "
            f"{exc}); pass intrinsic= to load to rebuild it",
            stacklevel=4,
        )
        spec = None
    return {
        "name": model.intrinsic_name,
        "spec": spec,
        "state_dict": module.state_dict(),
        "training_state": module.get_training_state(),
    }


def save(model: OnPolicyAlgorithm, path: str | Path) -> None:
    """Writes ``model``'s whole training state to ``path`` (see the module docstring)."""
    state = {
        "format": FORMAT,
        "algorithm": type(model).__name__,
        "hyperparams": model._saveable_hyperparams(),
        "n_envs": model.n_envs,
        "env_id": model.env_id,
        "observation_space": model.observation_space,
        "action_space": model.action_space,
        "policy": model.policy.state_dict(),
        "optimizer": model.optimizer.state_dict(),  # type: ignore[attr-defined]
        "duals": {name: coef.state_dict() for name, coef in model._dual_coefs().items()},
        "intrinsic": _intrinsic_state(model),
        "num_timesteps": model.num_timesteps,
        "num_updates": model.num_updates,
        "target_timesteps": getattr(model, "_target_steps", None),
        "intrinsic_warmed_up": model.intrinsic_warmed_up,
        "generator": model.generator.get_state(),
        "action_space_rng": model.action_space.np_random.bit_generator.state,
        "rng": get_rng_states(),
        "rollout": _rollout_state(model),
        "run_dir": None if model.run_dir is None else str(model.run_dir),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)


def read(path: str | Path, algorithm: str) -> dict[str, Any]:
    """Loads a checkpoint file and checks that it is ``algorithm``'s, of this format."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT or ckpt.get("algorithm") != algorithm:
        found = (ckpt.get("algorithm"), ckpt.get("format")) if isinstance(ckpt, dict) else (None, None)
        raise ValueError(
            f"{path} is not a {algorithm} checkpoint of format {FORMAT} "
            f"(found algorithm={found[0]!r}, format={found[1]!r})"
        )
    return ckpt


def rebuild_intrinsic(ckpt: dict[str, Any], device: torch.device | str) -> IntrinsicModule | str | None:
    """The saved module rebuilt from its spec (its own settings); an error if they could not be saved."""
    saved = ckpt["intrinsic"]
    if saved is None:
        return None
    if saved["spec"] is None:
        raise ValueError(
            f"the settings of intrinsic module {saved['name']!r} were not saved (they could not be pickled); "
            "pass intrinsic=<a module built like it> to load"
        )
    from rove.obs import get_device

    return from_spec(saved["spec"], ckpt["observation_space"], ckpt["action_space"], device=get_device(device))


def restore(model: OnPolicyAlgorithm, ckpt: dict[str, Any], env_given: bool) -> None:
    """Puts the saved training state into a freshly built ``model``."""
    model.policy.load_state_dict(ckpt["policy"])
    model.optimizer.load_state_dict(ckpt["optimizer"])  # type: ignore[attr-defined]
    _restore_duals(model, ckpt.get("duals", {}))
    saved = ckpt["intrinsic"]
    if saved is not None and model.intrinsic is not None:
        load_state_dict_resizing(model.intrinsic, saved["state_dict"])
        model.intrinsic.set_training_state(saved["training_state"])
    if not env_given:
        model.env_id = ckpt["env_id"]  # what it was trained on, for tools that rebuild the env
    model.num_timesteps = ckpt["num_timesteps"]
    model.num_updates = ckpt["num_updates"]
    model.intrinsic_warmed_up = ckpt["intrinsic_warmed_up"]
    model.generator.set_state(ckpt["generator"])
    model.action_space.np_random.bit_generator.state = ckpt["action_space_rng"]
    set_rng_states(ckpt["rng"])
    model._saved_rollout = ckpt["rollout"]


def _restore_duals(model: OnPolicyAlgorithm, saved: dict[str, Any]) -> None:
    """Loads the tuned coefficients (``int_coef="auto"`` ...): their values and Adam states."""
    duals = model._dual_coefs()
    if saved.keys() != duals.keys():
        raise ValueError(
            f"the checkpoint tunes {sorted(saved) or 'no coefficient'}, this model {sorted(duals) or 'none'}: "
            "load it with the hyperparameters it was saved with"
        )
    for name, coef in duals.items():
        coef.load_state_dict(saved[name])
        setattr(model, name, coef.value)


def resume_rollout(model: OnPolicyAlgorithm) -> None:
    """At the start of ``learn`` after ``load``: continues the saved episodes if the env can be restored
    exactly, else warns in one line (the caller then resets the envs and the module's episodic memory)."""
    saved, model._saved_rollout = model._saved_rollout, None
    if saved is None or model.env is None:
        return
    reason = _restore_env(model.env, saved, model.env_id, model.n_envs)
    if reason is not None:
        warnings.warn(
            f"resume: the envs start fresh episodes, their saved state was not restored ({reason})",
            RuntimeWarning,
            stacklevel=4,
        )
        return
    buf = model.rollout_buffer
    if isinstance(buf.obs, dict):
        for key, dst in buf.obs.items():
            dst[0].copy_(saved["obs"][key])
    else:
        buf.obs[0].copy_(saved["obs"])
    buf.episode_starts[0] = saved["episode_start"].to(buf.episode_starts.device)
    model._next_row = 0
    lstm = saved["lstm_state"]
    model._lstm_state = None if lstm is None else (lstm[0].to(model.device), lstm[1].to(model.device))
    model._prev_done[:] = saved["prev_done"]
    model._ep_return[:] = saved["ep_return"]
    model._ep_length[:] = saved["ep_length"]
    model._ep_int_return[:] = saved["ep_int_return"]
    model.ep_info_buffer = deque(saved["ep_info_buffer"], maxlen=model.ep_info_buffer.maxlen)
    model._pending_episodes.clear()
    model._env_ready = True


def _restore_env(env: gym.vector.VectorEnv, saved: dict[str, Any], env_id: str | None, n_envs: int) -> str | None:
    """Restores the saved env state into ``env``; returns why it could not (None when it did)."""
    from rove.envs.vector import EnvStateError

    if saved["env"] is None:
        return str(saved["env_unsaved_reason"])
    set_state = getattr(env, "set_state", None)
    if set_state is None:
        return f"{type(env).__name__} has no set_state()"
    if saved["n_envs"] != n_envs:
        return f"it holds {saved['n_envs']} envs, the env given has {n_envs}"
    if saved["env_id"] != env_id:
        return f"it is of {saved['env_id']!r}, the env given is {env_id!r}"
    try:
        set_state(saved["env"])
    except EnvStateError as exc:
        return str(exc)  # the agent resets the envs next
    return None
