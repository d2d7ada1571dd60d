"""The on-policy algorithm base: env handling, rollouts, intrinsic rewards, GAE, logging, save/load.

Template method, as in Stable-Baselines3, with the step SB3 lacks (its GAE runs before any callback can
add rewards)::

    learn -> collect_rollouts -> _add_intrinsic_rewards -> compute_advantages -> train -> _update_intrinsic

A subclass (``PPO``) writes ``train`` and builds its optimiser; everything else is shared.
"""

from __future__ import annotations

import json
import pickle
import time
import warnings
from collections import deque
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from rove.agents.common import checkpoint
from rove.agents.common.buffers import RolloutBuffer
from rove.agents.common.callbacks import BaseCallback, convert_callback
from rove.agents.common.dual import DualCoef
from rove.agents.common.logger import (
    ConsoleWriter,
    JSONLWriter,
    Logger,
    TensorBoardWriter,
    flatten_episode_info,
    to_jsonable,
)
from rove.agents.common.suite_metrics import progress_postfix, suite_metrics
from rove.agents.common.utils import (
    Schedule,
    as_schedule,
    denormals_flushed,
    get_device,
    set_random_seed,
    tensor_keys,
    tensor_space,
)
from rove.agents.ppo.policies import ActorCriticPolicy, LSTMState
from rove.intrinsic.base import IntrinsicModule
from rove.intrinsic.types import Step
from rove.obs import TensorObs, obs_index

SB3_POLICY_NAMES = ("auto", "MlpPolicy", "CnnPolicy", "MultiInputPolicy")
CHECKPOINT_FORMAT = checkpoint.FORMAT


def make_vector_env(env: str | gym.vector.VectorEnv, n_envs: int, seed: int | None) -> tuple[gym.vector.VectorEnv, str]:
    """Turns ``env`` (a Rove id, another Gymnasium id, or a vector env) into a NEXT_STEP vector env + its id."""
    if isinstance(env, str):
        if env.startswith("Rove/"):
            import rove

            return rove.make_vec(env, n_envs, seed=seed, copy=False), env
        return gym.make_vec(env, num_envs=n_envs, vectorization_mode="sync"), env
    if isinstance(env, gym.vector.VectorEnv):
        mode = env.metadata.get("autoreset_mode", gym.vector.AutoresetMode.NEXT_STEP)
        if mode not in (gym.vector.AutoresetMode.NEXT_STEP, "NextStep", "next_step"):
            raise ValueError(f"the vector env must autoreset in NEXT_STEP mode, got {mode!r}")
        spec = getattr(env, "spec", None)
        return env, spec.id if spec is not None else type(env).__name__
    if isinstance(env, gym.Env):
        raise TypeError("env must be an id or a vector env; wrap a single env with gymnasium.vector.SyncVectorEnv")
    raise TypeError(f"env must be an env id (str) or a gymnasium.vector.VectorEnv, got {type(env).__name__}")


class OnPolicyAlgorithm:
    """Shared machinery of on-policy agents with intrinsic rewards (see the module docstring).

    Subclasses set ``self.optimizer`` in ``_setup_model`` and implement ``train``.
    """

    policy_class: ClassVar[type[ActorCriticPolicy]] = ActorCriticPolicy

    def __init__(
        self,
        policy: str | type[ActorCriticPolicy],
        env: str | gym.vector.VectorEnv | None,
        *,
        intrinsic: str | IntrinsicModule | None,
        intrinsic_kwargs: dict[str, Any] | None,
        n_envs: int,
        n_steps: int,
        learning_rate: float | Schedule,
        gamma: float,
        gamma_int: float,
        gae_lambda: float,
        ext_coef: float,
        int_coef: float,
        int_episodic: bool,
        intrinsic_warmup_steps: int | None,
        policy_kwargs: dict[str, Any] | None,
        tensorboard_log: str | None,
        run_dir: str | None,
        device: torch.device | str,
        seed: int | None,
        verbose: int,
        hyperparams: dict[str, Any],
        flush_denormals: bool = True,
        stats_window_size: int = 100,
        _spaces: tuple[spaces.Space, spaces.Space] | None = None,
    ) -> None:
        if isinstance(policy, str) and policy not in SB3_POLICY_NAMES:
            raise ValueError(f"policy must be one of {list(SB3_POLICY_NAMES)} or a policy class, got {policy!r}")
        if n_steps < 1 or n_envs < 1:
            raise ValueError(f"n_steps and n_envs must be >= 1, got n_steps={n_steps}, n_envs={n_envs}")
        if stats_window_size < 1:
            raise ValueError(f"stats_window_size must be >= 1, got {stats_window_size}")
        self.device = get_device(device)
        self.seed = seed
        self.n_steps = n_steps
        self.learning_rate = learning_rate
        self.lr_schedule = as_schedule(learning_rate)
        self.gamma, self.gamma_int, self.gae_lambda = gamma, gamma_int, gae_lambda
        self.ext_coef, self.int_coef, self.int_episodic = ext_coef, int_coef, int_episodic
        self.policy_kwargs = dict(policy_kwargs or {})
        self.tensorboard_log = tensorboard_log
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.verbose = verbose
        self.hyperparams = hyperparams
        self.flush_denormals = flush_denormals
        self.num_timesteps = 0
        self.num_updates = 0
        self.intrinsic_warmed_up = False
        if seed is not None:
            set_random_seed(seed)
        self.generator = torch.Generator()
        self.generator.manual_seed(seed if seed is not None else int(torch.randint(0, 2**62, ()).item()))

        self.env: gym.vector.VectorEnv | None = None
        self.env_id: str | None = None
        if env is not None:
            self.env, self.env_id = make_vector_env(env, n_envs, seed)
            self.n_envs = self.env.num_envs
            raw_space, self.action_space = self.env.single_observation_space, self.env.single_action_space
        elif _spaces is not None:
            self.n_envs = n_envs
            raw_space, self.action_space = _spaces
        else:
            raise ValueError("env is required (an id or a vector env)")
        if seed is not None:
            self.action_space.seed(seed)  # the warm-up samples from it (Stable-Baselines3's set_random_seed)
        self.obs_keys = tensor_keys(raw_space)
        self.observation_space = tensor_space(raw_space)

        policy_cls = self.policy_class if isinstance(policy, str) else policy
        self.policy = policy_cls(self.observation_space, self.action_space, **self.policy_kwargs).to(self.device)

        self.intrinsic_kwargs = dict(intrinsic_kwargs or {})
        self.intrinsic = self._make_intrinsic(intrinsic)
        if intrinsic_warmup_steps is None:
            overrides = self.intrinsic is not None and type(self.intrinsic)._warm_up is not IntrinsicModule._warm_up
            intrinsic_warmup_steps = n_steps if overrides else 0
        self.intrinsic_warmup_steps = intrinsic_warmup_steps

        self.rollout_buffer = RolloutBuffer(self.observation_space, n_steps, self.n_envs, self.device)
        self._setup_model()

        # Rollout state carried between rollouts and learn() calls (checkpoints save it with the env's state).
        self._env_ready = False
        self._next_row = 0  # the buffer row holding the next rollout's first observation
        self._saved_rollout: dict[str, Any] | None = None  # from load(), restored by the next learn()
        self._prev_done = np.zeros(self.n_envs, dtype=bool)
        self._lstm_state: LSTMState | None = None
        self._ep_return = np.zeros(self.n_envs)
        self._ep_length = np.zeros(self.n_envs, dtype=np.int64)
        self._ep_int_return = np.zeros(self.n_envs)
        self._pending_episodes: list[dict[str, Any]] = []
        self.ep_info_buffer: deque[dict[str, Any]] = deque(maxlen=stats_window_size)
        self.logger: Logger | None = None
        self._episode_writer: JSONLWriter | None = None
        self._progress_writer: JSONLWriter | None = None
        if self.run_dir is not None:
            self._write_config()

    # ----- construction helpers -----
    def _setup_model(self) -> None:
        raise NotImplementedError

    def _dual_coefs(self) -> dict[str, DualCoef]:
        """Coefficients tuned during training, by attribute name (saved in checkpoints); none by default."""
        return {}

    def _make_intrinsic(self, intrinsic: str | IntrinsicModule | None) -> IntrinsicModule | None:
        if intrinsic is None:
            return None
        if isinstance(intrinsic, IntrinsicModule):
            self.intrinsic_name = intrinsic.name
            return intrinsic.to(intrinsic.device)
        if isinstance(intrinsic, str):
            from rove.intrinsic import make

            self.intrinsic_name = intrinsic
            kwargs = {"device": self.device, "seed": self.seed, **self.intrinsic_kwargs}
            return make(intrinsic, self.observation_space, self.action_space, **kwargs)
        raise TypeError(f"intrinsic must be None, a module name or an IntrinsicModule, got {type(intrinsic).__name__}")

    def config(self) -> dict[str, Any]:
        """Constructor arguments + env id, JSON-safe (``run_dir/config.json``)."""
        return to_jsonable(
            {
                "algorithm": type(self).__name__,
                "env_id": self.env_id,
                "n_envs": self.n_envs,
                **{k: v for k, v in self.hyperparams.items() if k != "n_envs"},
                "intrinsic": None if self.intrinsic is None else self.intrinsic_name,
                # The module's own settings (a module passed as an instance has no intrinsic_kwargs).
                "intrinsic_kwargs": None if self.intrinsic is None else self.intrinsic.init_kwargs,
                "device": str(self.device),
                "run_dir": None if self.run_dir is None else str(self.run_dir),
                "observation_space": str(self.observation_space),
                "action_space": str(self.action_space),
            }
        )

    def _write_config(self) -> None:
        assert self.run_dir is not None
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = self.run_dir / "config.json"
        if not path.exists():  # a resumed run keeps the config it started with
            path.write_text(json.dumps(self.config(), indent=2) + "\n")

    def _setup_logger(self) -> None:
        if self.logger is not None:
            return
        writers: list[Any] = []
        tb_dir = None
        if self.run_dir is not None:
            tb_dir = self.run_dir / "tb"
            self._progress_writer = JSONLWriter(self.run_dir / "progress.jsonl")
            self._episode_writer = JSONLWriter(self.run_dir / "episodes.jsonl")
        elif self.tensorboard_log is not None:
            root = Path(self.tensorboard_log)
            index = 1 + sum(1 for p in root.glob(f"{type(self).__name__}_*")) if root.exists() else 1
            tb_dir = root / f"{type(self).__name__}_{index}"
        if tb_dir is not None:
            writers.append(TensorBoardWriter(tb_dir))
        if self.verbose >= 1:
            writers.append(ConsoleWriter())
        self.logger = Logger(writers)

    # ----- env plumbing -----
    def set_env(self, env: str | gym.vector.VectorEnv) -> None:
        """Attaches an env (after ``load`` without one, or to change envs); its spaces must match the policy's.

        Another number of envs is fine: the rollout storage is resized. The next ``learn`` starts fresh
        episodes and clears the intrinsic module's episodic memory.
        """
        vec, env_id = make_vector_env(env, self.n_envs, self.seed)
        if tensor_space(vec.single_observation_space) != self.observation_space:
            raise ValueError(
                f"env observation space {vec.single_observation_space} does not match {self.observation_space}"
            )
        if vec.single_action_space != self.action_space:
            raise ValueError(f"env action space {vec.single_action_space} does not match {self.action_space}")
        if vec.num_envs != self.n_envs:
            self.n_envs = vec.num_envs
            self.rollout_buffer = RolloutBuffer(self.observation_space, self.n_steps, self.n_envs, self.device)
            self._prev_done = np.zeros(self.n_envs, dtype=bool)
            self._ep_return = np.zeros(self.n_envs)
            self._ep_length = np.zeros(self.n_envs, dtype=np.int64)
            self._ep_int_return = np.zeros(self.n_envs)
        self.env, self.env_id = vec, env_id
        self._env_ready = False
        self._saved_rollout = None  # a loaded checkpoint's episodes do not continue in another env

    def _write_obs(self, t: int, obs: Any) -> None:
        """Copies an env observation into row ``t`` of the device buffer (the one host->device copy)."""
        buf = self.rollout_buffer.obs
        if isinstance(buf, dict):
            for k, dst in buf.items():
                dst[t].copy_(torch.from_numpy(np.asarray(obs[k])))
        else:
            buf[t].copy_(torch.from_numpy(np.asarray(obs)))

    def _env_step(self, actions: np.ndarray) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict, np.ndarray]:
        """Steps the env; returns ``(obs, rewards, terminated, truncated, infos, autoreset)``.

        Rove vector envs mark autoreset steps in ``infos["autoreset"]``; for other NEXT_STEP vector envs a
        step is an autoreset step exactly when the env's previous step ended its episode.
        """
        assert self.env is not None
        obs, rewards, terminated, truncated, infos = self.env.step(actions)
        autoreset = infos.get("autoreset")
        autoreset = np.asarray(autoreset, dtype=bool) if autoreset is not None else self._prev_done.copy()
        self._prev_done = np.logical_or(terminated, truncated)
        return obs, np.asarray(rewards), np.asarray(terminated), np.asarray(truncated), infos, autoreset

    def _reset_env(self, seed: int | None) -> None:
        """Starts fresh episodes in every env; the module forgets its episodic memory (it did not see them end)."""
        assert self.env is not None
        obs, _ = self.env.reset(seed=seed)
        self._next_row = 0
        self._write_obs(0, obs)
        self.rollout_buffer.episode_starts[0] = True
        self._prev_done[:] = False
        self._lstm_state = self.policy.initial_state(self.n_envs, self.device)
        self._ep_return[:] = 0
        self._ep_length[:] = 0
        self._ep_int_return[:] = 0
        self._pending_episodes.clear()
        if self.intrinsic is not None:
            self.intrinsic.reset_episodes()
        self._env_ready = True

    def _warm_up_intrinsic(self) -> None:
        """Feeds observations from uniformly random actions to the module's statistics (RND's warm-up).

        Steps are not counted in ``num_timesteps``; the env is reset afterwards so that logged episodes are
        the policy's own.
        """
        assert self.env is not None and self.intrinsic is not None
        steps = self.intrinsic_warmup_steps
        chunk: list[TensorObs] = []
        for i in range(steps):
            actions = np.array([self.action_space.sample() for _ in range(self.n_envs)])
            obs, _, _, _, _, autoreset = self._env_step(actions)
            self._write_obs(1, obs)
            valid = torch.from_numpy(~autoreset).to(self.device)
            chunk.append(obs_index(obs_index(self.rollout_buffer.obs, 1), valid))
            if len(chunk) == self.n_steps or i == steps - 1:
                if isinstance(chunk[0], dict):
                    batch: TensorObs = {k: torch.cat([c[k] for c in chunk]) for k in chunk[0]}  # type: ignore[index]
                else:
                    batch = torch.cat(chunk)  # type: ignore[arg-type]
                self.intrinsic.warm_up(batch)
                chunk = []
        self.intrinsic_warmed_up = True
        self._reset_env(None)
        if self.logger is not None:
            self.logger.record(f"intrinsic/{self.intrinsic_name}/warmup_steps", steps * self.n_envs)

    # ----- the template -----
    def learn(
        self,
        total_timesteps: int,
        callback: BaseCallback | list[BaseCallback] | None = None,
        log_interval: int = 1,
        progress_bar: bool = False,
        reset_num_timesteps: bool = True,
    ) -> OnPolicyAlgorithm:
        """Trains for ``total_timesteps`` env transitions (summed over envs; autoreset steps are none).

        As in Stable-Baselines3, ``reset_num_timesteps=False`` continues the step counter (resuming a
        loaded checkpoint) and then ``total_timesteps`` counts the *additional* steps; schedules see the
        progress ``1 - num_timesteps / (steps before + total_timesteps)``, so a resumed run continues the
        decay where it stopped. After ``load`` the saved episodes continue if the env's state can be restored
        (see :mod:`rove.agents.common.checkpoint`); otherwise, and after ``set_env`` or an interrupted
        ``learn``, the envs start fresh episodes and the module's episodic memory is cleared. Runs with subnormal
        floats flushed to zero unless the agent was built with ``flush_denormals=False`` (see
        :func:`rove.agents.common.utils.denormals_flushed`).
        """
        with denormals_flushed(self.flush_denormals):
            try:
                return self._learn(total_timesteps, callback, log_interval, progress_bar, reset_num_timesteps)
            finally:
                # An intrinsic module with background work (ONI's LLM annotator) stops it here.
                on_learn_end = getattr(self.intrinsic, "on_learn_end", None)
                if callable(on_learn_end):
                    on_learn_end()

    def _learn(
        self,
        total_timesteps: int,
        callback: BaseCallback | list[BaseCallback] | None,
        log_interval: int,
        progress_bar: bool,
        reset_num_timesteps: bool,
    ) -> OnPolicyAlgorithm:
        if self.env is None:
            raise ValueError("this model has no env: pass env= to PPO.load or call set_env first")
        if reset_num_timesteps:
            self.num_timesteps = 0
            self.num_updates = 0
        target = self.num_timesteps + total_timesteps
        self._start_steps, self._target_steps = self.num_timesteps, target
        self._setup_logger()
        callback = convert_callback(callback)
        callback.init_callback(self)
        try:
            self._start_rollouts()
            return self._train_loop(total_timesteps, callback, log_interval, progress_bar)
        except BaseException:
            # Interrupted or failed mid-way: the envs are somewhere the next rollout cannot start from.
            self._env_ready = False
            raise

    def _start_rollouts(self) -> None:
        if not self._env_ready:
            checkpoint.resume_rollout(self)
        if not self._env_ready:
            self._reset_env(self.seed if self.num_timesteps == 0 else None)
        if self.intrinsic is not None and not self.intrinsic_warmed_up and self.intrinsic_warmup_steps > 0:
            self._warm_up_intrinsic()

    def _train_loop(
        self, total_timesteps: int, callback: BaseCallback, log_interval: int, progress_bar: bool
    ) -> OnPolicyAlgorithm:
        target = self._target_steps
        callback.on_training_start(locals())
        self._start_time = time.perf_counter()
        pbar = None
        if progress_bar:
            from tqdm.auto import tqdm

            pbar = tqdm(total=total_timesteps, unit="step", dynamic_ncols=True)
        while self.num_timesteps < target:
            before = self.num_timesteps
            if not self.collect_rollouts(callback):
                break
            self._add_intrinsic_rewards()
            self.compute_advantages()
            callback.on_rollout_end()
            self._update_learning_rate()
            self.train()
            self._update_intrinsic()
            self.num_updates += 1
            if self.num_updates % log_interval == 0:
                self._dump_logs()
            callback.on_update_end()
            self.rollout_buffer.start_next()
            self._next_row = 0
            if pbar is not None:  # the last rollout may overshoot the target: the bar stops at it
                pbar.set_postfix_str(progress_postfix(self.ep_info_buffer), refresh=False)
                pbar.update(min(self.num_timesteps, target) - min(before, target))
        if pbar is not None:
            pbar.close()
        callback.on_training_end()
        return self

    @property
    def progress_remaining(self) -> float:
        """``1 - num_timesteps / target`` of the current ``learn`` (Stable-Baselines3's schedule argument):
        1 at the start of a fresh run, 0 at its target; a resumed run goes on from where it stopped."""
        return 1.0 - min(1.0, self.num_timesteps / max(1, self._target_steps))

    def _update_learning_rate(self) -> None:
        lr = self.lr_schedule(self.progress_remaining)
        for group in self.optimizer.param_groups:  # type: ignore[attr-defined]
            group["lr"] = lr
        self._record("train/learning_rate", lr)

    def _record(self, key: str, value: Any) -> None:
        if self.logger is not None:
            self.logger.record(key, value)

    @torch.no_grad()
    def collect_rollouts(self, callback: BaseCallback) -> bool:
        """Fills the buffer with ``n_steps`` steps from every env; False if a callback stopped training.

        Per step, one observation copy goes host->device and the actions come back; rewards and flags are
        staged on the host and copied once per rollout.
        """
        buf, num_steps, num_envs = self.rollout_buffer, self.n_steps, self.n_envs
        rewards = np.zeros((num_steps, num_envs), dtype=np.float32)
        terminated = np.zeros((num_steps, num_envs), dtype=bool)
        dones = np.zeros((num_steps, num_envs), dtype=bool)
        valid = np.ones((num_steps, num_envs), dtype=bool)
        if self._lstm_state is not None:
            buf.lstm_state = (self._lstm_state[0].clone(), self._lstm_state[1].clone())
        self.policy.train(False)
        observe = self.intrinsic is not None and self.intrinsic.observes_steps  # only modules with episodic memory
        for t in range(num_steps):
            obs_t = obs_index(buf.obs, t)
            actions, log_probs, v_ext, v_int, self._lstm_state = self.policy.act(
                obs_t, self._lstm_state, buf.episode_starts[t]
            )
            next_obs, r, term, trunc, infos, autoreset = self._env_step(actions.cpu().numpy())
            self._write_obs(t + 1, next_obs)
            buf.actions[t] = actions
            buf.log_probs[t] = log_probs
            buf.values_ext[t] = v_ext
            buf.values_int[t] = v_int
            rewards[t], terminated[t], valid[t] = r, term, ~autoreset
            dones[t] = np.logical_or(term, trunc)
            # obs[t+1] begins an episode iff step t was an autoreset step.
            buf.episode_starts[t + 1] = torch.from_numpy(autoreset)
            if observe:
                assert self.intrinsic is not None
                self.intrinsic.observe(
                    Step(
                        obs_t,
                        actions.clone(),  # a normal tensor (act's are inference tensors) the module may keep
                        obs_index(buf.obs, t + 1),
                        torch.from_numpy(dones[t]),
                        torch.from_numpy(valid[t]),
                    )
                )
            self.num_timesteps += int(valid[t].sum())  # transitions: autoreset steps are none
            self._track_episodes(t, r, dones[t], valid[t], infos)
            if not callback.on_step():
                # Stopped mid-rollout: keep the env's current obs as the next rollout's start and log the
                # episodes that ended (their intrinsic return is unknown: no reward was computed).
                buf.start_next(t + 1)
                self._next_row = 0
                self._flush_episodes(None)
                return False
        _, v_ext, v_int, _ = self.policy(obs_index(buf.obs, num_steps), self._lstm_state, buf.episode_starts[num_steps])
        buf.values_ext[num_steps] = v_ext
        buf.values_int[num_steps] = v_int
        self._next_row = num_steps
        buf.rewards_ext.copy_(torch.from_numpy(rewards))
        buf.terminated.copy_(torch.from_numpy(terminated))
        buf.dones.copy_(torch.from_numpy(dones))
        buf.valid.copy_(torch.from_numpy(valid))
        return True

    def _track_episodes(self, t: int, rewards: np.ndarray, dones: np.ndarray, valid: np.ndarray, infos: dict) -> None:
        self._ep_return += rewards * valid
        self._ep_length += valid
        if not dones.any():
            return
        episode_info = infos.get("episode")
        has_info = infos.get("_episode", np.zeros_like(dones)) if isinstance(episode_info, dict) else None
        for env in np.nonzero(dones)[0]:
            record: dict[str, Any] = {
                "step": self.num_timesteps,
                "env": int(env),
                "return": float(self._ep_return[env]),
                "length": int(self._ep_length[env]),
                "t": t,
            }
            if has_info is not None and bool(has_info[env]):
                assert isinstance(episode_info, dict)
                if "r" in episode_info:
                    record["return"] = float(np.asarray(episode_info["r"])[env])
                if "l" in episode_info:
                    record["length"] = int(np.asarray(episode_info["l"])[env])
                record.update(flatten_episode_info(episode_info, int(env)))
            self._pending_episodes.append(record)
            self._ep_return[env] = 0.0
            self._ep_length[env] = 0

    def _add_intrinsic_rewards(self) -> None:
        """The step between the rollout and GAE: the module's ``[T, E]`` reward goes into ``rewards_int``.

        Then finished episodes are logged with their intrinsic return (known only now).
        """
        buf = self.rollout_buffer
        if self.intrinsic is None:
            buf.rewards_int.zero_()
        else:
            reward = self.intrinsic.compute(buf.rollout())
            buf.rewards_int.copy_(reward.to(self.device, torch.float32))
            valid_reward = buf.rewards_int[buf.valid]
            prefix = f"intrinsic/{self.intrinsic_name}/"
            if valid_reward.numel():
                self._record(prefix + "reward_mean", float(valid_reward.mean()))
                self._record(prefix + "reward_max", float(valid_reward.max()))
        self._flush_episodes(buf.rewards_int.cpu().numpy() if self.intrinsic is not None else None)

    def _flush_episodes(self, int_rewards: np.ndarray | None) -> None:
        start = np.zeros(self.n_envs, dtype=np.int64)
        for record in self._pending_episodes:
            env, t = record["env"], record.pop("t")
            if int_rewards is not None:
                self._ep_int_return[env] += int_rewards[start[env] : t + 1, env].sum()
            start[env] = t + 1
            record["intrinsic_return"] = float(self._ep_int_return[env])
            self._ep_int_return[env] = 0.0
            self.ep_info_buffer.append(record)
            if self._episode_writer is not None:
                step = record.pop("step")
                self._episode_writer.write(record, step)
                record["step"] = step
        if int_rewards is not None:
            for env in range(self.n_envs):
                self._ep_int_return[env] += int_rewards[start[env] :, env].sum()
        self._pending_episodes.clear()

    def compute_advantages(self) -> None:
        """Two-stream GAE over the rollout (extrinsic: gamma, episodic; intrinsic: gamma_int, non-episodic
        unless ``int_episodic``)."""
        self.rollout_buffer.compute_advantages(self.gamma, self.gamma_int, self.gae_lambda, self.int_episodic)

    def train(self) -> None:
        raise NotImplementedError

    def _update_intrinsic(self) -> None:
        if self.intrinsic is None:
            return
        losses = self.intrinsic.update(self.rollout_buffer.rollout())
        if self.logger is not None:
            self.logger.record_dict(losses, prefix=f"intrinsic/{self.intrinsic_name}/")

    def _dump_logs(self) -> None:
        assert self.logger is not None
        elapsed = time.perf_counter() - self._start_time
        sps = (self.num_timesteps - self._start_steps) / max(elapsed, 1e-9)
        episodes = list(self.ep_info_buffer)
        if episodes:
            self._record("rollout/ep_rew_mean", float(np.mean([e["return"] for e in episodes])))
            self._record("rollout/ep_len_mean", float(np.mean([e["length"] for e in episodes])))
            self._record("rollout/ep_int_rew_mean", float(np.mean([e["intrinsic_return"] for e in episodes])))
            successes = [float(e["success"]) for e in episodes if isinstance(e.get("success"), (bool, int, float))]
            if successes:
                self._record("rollout/success_rate", float(np.mean(successes)))
            self.logger.record_dict(suite_metrics(episodes))
        self._record("time/sps", sps)
        self._record("time/total_timesteps", self.num_timesteps)
        self._record("time/updates", self.num_updates)
        if self._progress_writer is not None:
            self._progress_writer.write({"time": elapsed, "sps": sps, **self.logger.values}, self.num_timesteps)
        self.logger.dump(self.num_timesteps)

    # ----- inference -----
    def _obs_to_tensor(self, obs: Any) -> tuple[TensorObs, bool]:
        space = self.observation_space
        if isinstance(space, spaces.Dict):
            first = next(iter(space.spaces))
            single_shape = () if isinstance(space[first], spaces.Discrete) else space[first].shape or ()
            vectorized = np.asarray(obs[first]).ndim > len(single_shape)
            tensors = {k: torch.as_tensor(np.asarray(obs[k]), device=self.device) for k in space.spaces}
            if not vectorized:
                tensors = {k: v.unsqueeze(0) for k, v in tensors.items()}
            return tensors, vectorized
        single_shape = () if isinstance(space, spaces.Discrete) else space.shape or ()
        array = np.asarray(obs)
        vectorized = array.ndim > len(single_shape)
        tensor = torch.as_tensor(array, device=self.device)
        return (tensor if vectorized else tensor.unsqueeze(0)), vectorized

    @torch.no_grad()
    def predict(
        self,
        observation: Any,
        state: tuple[np.ndarray, np.ndarray] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
        """Actions for one observation or a batch, as Stable-Baselines3's ``predict``.

        Returns ``(actions, state)``; ``state`` is the LSTM ``(h, c)`` (numpy ``[1, N, H]``) or None.
        """
        obs, vectorized = self._obs_to_tensor(observation)
        lstm_state = None
        if state is not None:
            lstm_state = (torch.as_tensor(state[0], device=self.device), torch.as_tensor(state[1], device=self.device))
        starts = None
        if episode_start is not None:
            starts = torch.as_tensor(np.asarray(episode_start, dtype=bool).reshape(-1), device=self.device)
        self.policy.train(False)
        actions, _, _, _, new_state = self.policy.act(obs, lstm_state, starts, deterministic=deterministic)
        out = actions.cpu().numpy()
        np_state = None if new_state is None else (new_state[0].cpu().numpy(), new_state[1].cpu().numpy())
        return (out if vectorized else out[0]), np_state

    # ----- persistence -----
    def get_parameters(self) -> dict[str, dict[str, Any]]:
        return {"policy": self.policy.state_dict(), "policy.optimizer": self.optimizer.state_dict()}  # type: ignore[attr-defined]

    def set_parameters(self, params: dict[str, dict[str, Any]]) -> None:
        self.policy.load_state_dict(params["policy"])
        if "policy.optimizer" in params:
            self.optimizer.load_state_dict(params["policy.optimizer"])  # type: ignore[attr-defined]

    def _saveable_hyperparams(self) -> dict[str, Any]:
        params = dict(self.hyperparams)
        try:
            pickle.dumps(params["learning_rate"])
        except (pickle.PicklingError, AttributeError, TypeError):
            current = self.lr_schedule(1.0 if not hasattr(self, "_target_steps") else self.progress_remaining)
            warnings.warn(
                f"learning_rate schedule {params['learning_rate']!r} cannot be pickled; saving the constant {current}"
                " (use rove.agents.common.utils.linear_schedule for a saveable schedule)",
                stacklevel=3,
            )
            params["learning_rate"] = current
        return params

    def save(self, path: str | Path) -> None:
        """Writes the whole training state to one ``torch.save`` file (see :mod:`rove.agents.common.checkpoint`):
        a run resumed from it with ``load`` and ``learn(..., reset_num_timesteps=False)`` continues exactly."""
        checkpoint.save(self, path)

    @classmethod
    def load(
        cls,
        path: str | Path,
        env: str | gym.vector.VectorEnv | None = None,
        device: torch.device | str = "auto",
        intrinsic: IntrinsicModule | None = None,
        **overrides: Any,
    ) -> OnPolicyAlgorithm:
        """Rebuilds an agent from :meth:`save`'s file; with ``env`` it can keep learning.

        The intrinsic module is rebuilt with the settings it was saved with (also one passed as an instance)
        unless ``intrinsic`` is given: a module built like the saved one (e.g. when its settings could not be
        saved), into which the saved state, plain attributes included, is loaded. ``overrides`` replace saved hyperparameters (e.g. ``run_dir``,
        ``verbose``). The saved episodes continue at the next ``learn`` if ``env`` is a Rove vector env of the
        same id and size; otherwise that ``learn`` warns and starts fresh episodes.
        """
        ckpt = checkpoint.read(path, cls.__name__)
        kwargs = dict(ckpt["hyperparams"])
        kwargs["n_envs"] = ckpt["n_envs"]
        kwargs.update(device=device, **overrides)
        kwargs.setdefault("run_dir", ckpt["run_dir"])
        kwargs["intrinsic"] = intrinsic if intrinsic is not None else checkpoint.rebuild_intrinsic(ckpt, device)
        model = cls(env=env, _spaces=(ckpt["observation_space"], ckpt["action_space"]), **kwargs)
        checkpoint.restore(model, ckpt, env_given=env is not None)
        return model

    def close(self) -> None:
        """Closes the log files and TensorBoard writer (not the env, which the caller owns)."""
        if self.logger is not None:
            self.logger.close()
        for writer in (self._episode_writer, self._progress_writer):
            if writer is not None:
                writer.close()
        self.logger = self._episode_writer = self._progress_writer = None
