"""Any Rove intrinsic module inside Stable-Baselines3's PPO and A2C, with its reward added before GAE."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.vec_env import VecTransposeImage, unwrap_vec_wrapper

from rove.agents.sb3.buffers import IntrinsicBufferMixin, intrinsic_buffer_class
from rove.agents.sb3.policies import channels_last
from rove.agents.sb3.recorder import TransitionRecorder
from rove.intrinsic.base import IntrinsicModule
from rove.intrinsic.registry import get as get_module_class
from rove.intrinsic.types import Rollout

# The model attribute that holds the module, so that SB3's save/load carry it (SB3 pickles the model's attributes).
MODEL_ATTRIBUTE = "intrinsic_module"


class IntrinsicRewardCallback(BaseCallback):
    """Adds a Rove intrinsic reward to Stable-Baselines3's ``PPO`` or ``A2C`` before advantages are computed.

    Usage::

        from stable_baselines3 import PPO
        from rove.agents.sb3 import IntrinsicRewardCallback, rove_policy_kwargs

        model = PPO("MultiInputPolicy", "Rove/MiniGrid-DoorKey-8x8-v0", policy_kwargs=rove_policy_kwargs())
        model.learn(100_000, callback=IntrinsicRewardCallback("rnd", int_coef=0.01))

    (``rove_policy_kwargs`` gives SB3's policy Rove's encoders; ``MlpPolicy`` on Box envs needs nothing.)

    What it does, keeping SB3's own code path:

    - At ``learn`` it swaps the model's rollout buffer for the same class with one overridden method
      (:mod:`rove.agents.sb3.buffers`; ``RolloutBuffer`` for Box, ``DictRolloutBuffer`` for Dict observations).
    - Each env step (``_on_step``) it records (s_t, a_t, s_{t+1}, r_t, done_t) and calls ``module.observe``.
      SB3's VecEnvs autoreset on the same step, so s_{t+1} of a finished episode is taken from
      ``info["terminal_observation"]``; there is no ignored autoreset step and every step is valid.
    - In ``compute_returns_and_advantage`` -- before SB3's GAE -- it calls ``module.compute(rollout)`` and
      adds ``int_coef * r_int`` to the buffer's rewards; SB3 then runs GAE with its own episode boundaries
      (``episode_starts``) and timeout bootstrap. Doing it in ``on_rollout_end`` would be too late: SB3 has
      already computed the advantages by then (``REFERENCE.md`` §2).
    - After the rollout (``_on_rollout_end``) it calls ``module.update(rollout)`` and logs the losses as
      ``intrinsic/<name>/<loss>`` with the reward's mean and max as ``intrinsic/<name>/reward_mean|max``.
    - The module travels with the model: it is ``model.intrinsic_module``, which ``model.save`` stores and
      ``PPO.load`` restores; a callback given the same module name reuses a module the model carries.
    - At the end of ``learn`` the model's own buffer is put back, so a later ``learn`` without the callback
      trains on the extrinsic reward alone instead of a reward left over from the previous rollout.
    - Whenever SB3 resets the envs itself (a ``learn`` with ``reset_num_timesteps=True``, after ``load`` or
      ``set_env``) the module's episodic memory is cleared (``module.reset_episodes()``): the episodes it
      belonged to are gone.

    SB3 has one value head and one discount: the intrinsic return is episodic and shares ``gamma`` with the
    extrinsic one (Rove's own :class:`rove.agents.PPO` keeps them separate, as RND prescribes). An episode
    that ends forfeits the bonus still to come, so a bonus worth more than the goal teaches the agent to
    avoid ending episodes: keep ``int_coef * mean r_int * min(max_steps, 1 / (1 - gamma))`` well below the
    task's reward (RND on MiniGrid Empty-5x5: 0.00-0.02 success at ``int_coef=1``, 0.99-1.00 at 0.01;
    ``experiments/sb3_recipe.py``).

    Args:
        module: An :class:`~rove.intrinsic.IntrinsicModule`, or a registry name (``rove.intrinsic.names()``)
            built at ``learn`` from the model's single-env observation and action spaces.
        int_coef: Multiplier of the module's reward before it is added (the module's own ``coef`` and
            normalisation apply first). See above: on goal tasks it must be small (0.01 for RND on MiniGrid).
        module_kwargs: Constructor options when ``module`` is a name; ``device`` defaults to the model's.
        warm_up: Feed the first rollout's observations to ``module.warm_up`` before its reward is computed
            (the running observation statistics RND needs; an untrained policy acts nearly at random, as in
            Burda et al.'s random-step warm-up).
        verbose: SB3 verbosity.
    """

    def __init__(
        self,
        module: IntrinsicModule | str,
        int_coef: float = 1.0,
        module_kwargs: dict[str, Any] | None = None,
        warm_up: bool = True,
        verbose: int = 0,
    ) -> None:
        super().__init__(verbose)
        if isinstance(module, str):
            get_module_class(module)  # a typo fails here, naming the close matches and all choices
        elif not isinstance(module, IntrinsicModule):
            raise TypeError(f"module must be an IntrinsicModule or a registry name, got {type(module).__name__}")
        elif module_kwargs:
            raise ValueError("module_kwargs only applies when module is given by name")
        self._module_spec = module
        self.module: IntrinsicModule | None = module if isinstance(module, IntrinsicModule) else None
        self.int_coef = float(int_coef)
        self.module_kwargs = dict(module_kwargs or {})
        self.warm_up = warm_up
        self._warmed_up = False
        self._recorder: TransitionRecorder | None = None
        self._rollout: Rollout | None = None
        self._reward: np.ndarray | None = None
        self._replaced_buffer: RolloutBuffer | None = None
        self._buffers: tuple[RolloutBuffer, RolloutBuffer] | None = None  # (model's own, intrinsic version)
        self._last_obs_seen: Any = None  # model._last_obs when the previous learn() ended

    # ----- SB3 hooks -----
    def _init_callback(self) -> None:
        model = self.model
        if not isinstance(model, OnPolicyAlgorithm):
            raise TypeError(
                f"IntrinsicRewardCallback supports on-policy algorithms (PPO, A2C), got {type(model).__name__}"
            )
        keys = _transposed_image_keys(model)
        if self.module is None:
            carried = getattr(model, MODEL_ATTRIBUTE, None)
            if isinstance(carried, IntrinsicModule) and carried.name == self._module_spec:
                if self.module_kwargs:
                    raise ValueError(
                        f"the model already carries a trained {carried.name!r} module (model.{MODEL_ATTRIBUTE}); "
                        f"pass it (IntrinsicRewardCallback(model.{MODEL_ATTRIBUTE})) or delete the attribute to "
                        "start a new module with module_kwargs"
                    )
                self.module, self._warmed_up = carried, carried.num_steps_seen > 0
            else:
                self.module = self._build_module(model, channels_last(model.observation_space, keys))
        setattr(model, MODEL_ATTRIBUTE, self.module)
        self._install_buffer(model)
        self._recorder = TransitionRecorder(model.n_steps, model.n_envs, _untranspose_fn(keys))

    def _on_training_start(self) -> None:
        assert self.module is not None
        # SB3 resets the envs in _setup_learn (a new _last_obs) unless it continues the previous learn().
        if self.model._last_obs is not self._last_obs_seen:
            self.module.reset_episodes()

    def _on_training_end(self) -> None:
        model = self.model
        assert isinstance(model, OnPolicyAlgorithm)
        self._last_obs_seen = model._last_obs
        buffer = model.rollout_buffer
        if isinstance(buffer, IntrinsicBufferMixin):
            buffer.intrinsic_hook = None
        if self._replaced_buffer is not None:
            model.rollout_buffer = self._replaced_buffer
            self._replaced_buffer = None
        # An intrinsic module with background work (ONI's LLM annotator) stops it here, as in Rove's PPO.
        on_learn_end = getattr(self.module, "on_learn_end", None)
        if callable(on_learn_end):
            on_learn_end()

    def _on_rollout_start(self) -> None:
        assert self._recorder is not None
        self._recorder.reset()
        self._rollout = None
        self._reward = None

    def _on_step(self) -> bool:
        assert self._recorder is not None and self.module is not None
        loc = self.locals
        # ``_last_obs`` is still s_t here: SB3 assigns ``new_obs`` to it after the callback and ``buffer.add``.
        # ``clipped_actions`` is what the env executed; rewards are copied before SB3 adds the timeout bootstrap.
        step = self._recorder.add(
            self.model._last_obs, loc["clipped_actions"], loc["new_obs"], loc["infos"], loc["rewards"], loc["dones"]
        )
        if self.module.observes_steps:
            self.module.observe(step)
        return True

    def _on_rollout_end(self) -> None:
        if self._rollout is None or self._reward is None or self.module is None:
            return  # the rollout was cut short (another callback stopped training): nothing was computed
        losses = self.module.update(self._rollout)
        prefix = f"intrinsic/{self.module.name}"
        for key, value in losses.items():
            self.logger.record(f"{prefix}/{key}", float(value))
        self.logger.record(f"{prefix}/reward_mean", float(self._reward.mean()))
        self.logger.record(f"{prefix}/reward_max", float(self._reward.max()))
        self._rollout = None

    # ----- the step between collecting a rollout and GAE -----
    def _intrinsic_reward(self, buffer: RolloutBuffer, last_dones: np.ndarray) -> np.ndarray:
        """Called by the buffer before GAE: ``int_coef * module.compute(rollout)``, ``[n_steps, n_envs]``."""
        assert self._recorder is not None and self.module is not None
        recorder = self._recorder
        if recorder.pos != buffer.buffer_size:
            raise RuntimeError(
                f"IntrinsicRewardCallback recorded {recorder.pos} steps but the buffer holds {buffer.buffer_size}: "
                "was the callback passed to the same learn() call?"
            )
        # The module's episode ends must be SB3's: done_t == episode_starts[t+1], and the last step's dones.
        dones = recorder.dones
        expected = np.concatenate([buffer.episode_starts[1:].astype(bool), np.asarray(last_dones, bool)[None]])
        if not np.array_equal(dones, expected):
            raise RuntimeError("recorded episode ends disagree with the rollout buffer's episode_starts")
        rollout = recorder.rollout()
        recorder.reset()  # consumed: a buffer that calls again without new steps is refused above
        if self.warm_up and not self._warmed_up:
            self.module.warm_up(rollout.flatten().next_obs)
            self._warmed_up = True
        reward = self.int_coef * self.module.compute(rollout).detach().cpu().numpy().astype(np.float32)
        self._rollout, self._reward = rollout, reward
        return reward

    # ----- helpers -----
    def _build_module(self, model: OnPolicyAlgorithm, observation_space: spaces.Space) -> IntrinsicModule:
        name = self._module_spec
        assert isinstance(name, str)
        cls = get_module_class(name)
        if not cls.supports(observation_space):
            raise ValueError(f"intrinsic module {name!r} does not support observation space {observation_space}")
        kwargs = {"device": model.device, **self.module_kwargs}
        try:
            return cls(observation_space, model.action_space, **kwargs)
        except TypeError as err:
            raise TypeError(f"bad options for intrinsic module {name!r}: {err}") from err

    def _install_buffer(self, model: OnPolicyAlgorithm) -> None:
        buffer = model.rollout_buffer
        if not isinstance(buffer, IntrinsicBufferMixin):
            # The buffer holds no data between rollouts: the one built for this original at a previous
            # learn() is reused.
            if self._buffers is None or self._buffers[0] is not buffer:
                self._buffers = (buffer, _intrinsic_buffer_for(model))
            self._replaced_buffer = buffer
            model.rollout_buffer = buffer = self._buffers[1]
        buffer.intrinsic_hook = self._intrinsic_reward  # type: ignore[attr-defined]


def _intrinsic_buffer_for(model: OnPolicyAlgorithm) -> RolloutBuffer:
    """The intrinsic version of ``model``'s rollout buffer, built as ``OnPolicyAlgorithm._setup_model`` builds it."""
    cls = intrinsic_buffer_class(type(model.rollout_buffer))
    return cls(
        model.n_steps,
        model.observation_space,
        model.action_space,
        device=model.device,
        gamma=model.gamma,
        gae_lambda=model.gae_lambda,
        n_envs=model.n_envs,
        **model.rollout_buffer_kwargs,
    )


# ----- SB3's VecTransposeImage: modules see images as the env returns them, (H, W, C) -----
def _transposed_image_keys(model: OnPolicyAlgorithm) -> list[str]:
    """Keys (``""`` for a Box space) whose images SB3's ``VecTransposeImage`` made channels-first."""
    transposer = unwrap_vec_wrapper(model.env, VecTransposeImage) if model.env is not None else None
    if transposer is None or transposer.skip:
        return []
    return list(transposer.image_space_keys) if isinstance(model.observation_space, spaces.Dict) else [""]


def _untranspose_fn(keys: list[str]) -> Callable[[Any], Any] | None:
    """Undoes ``VecTransposeImage`` on a batch ``[E, C, H, W] -> [E, H, W, C]`` (per key for dicts)."""
    if not keys:
        return None

    def untranspose(obs: Any) -> Any:
        if isinstance(obs, dict):
            return {k: np.transpose(v, (0, 2, 3, 1)) if k in keys else v for k, v in obs.items()}
        return np.transpose(obs, (0, 2, 3, 1))

    return untranspose
