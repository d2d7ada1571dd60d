"""Proximal Policy Optimization (Schulman et al. 2017) with intrinsic rewards built in (Burda et al. 2018).

Three lines train PPO+RND::

    from rove.agents import PPO
    model = PPO("auto", "Rove/MiniGrid-DoorKey-8x8-v0", intrinsic="rnd", seed=0, run_dir="runs/doorkey")
    model.learn(1_000_000, progress_bar=True)
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import torch
from gymnasium import spaces

from rove.agents.common.base import OnPolicyAlgorithm
from rove.agents.common.buffers import RolloutBatch
from rove.agents.common.dual import DualCoef, parse_coef
from rove.agents.common.utils import Schedule, as_schedule, explained_variance, make_adam
from rove.agents.ppo.policies import ActorCriticPolicy, log_prob_entropy
from rove.intrinsic.base import IntrinsicModule
from rove.obs import obs_flatten, obs_index

STAT_KEYS = ("pg", "v_ext", "v_int", "ent", "kl", "clipfrac", "loss")
EVAL_CHUNK = 1024  # rows per policy forward pass when the tuned coefficients measure the updated policy


def _masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over the samples where ``mask [B]`` (float 0/1) is set; a plain mean when ``mask`` is None."""
    if mask is None:
        return x.mean()
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


def normalize_advantages(adv: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Whitens ``adv [B]`` over the masked samples (unbiased std, as Stable-Baselines3); unchanged if < 2 samples.

    The unmasked case decides on the Python-side size, so it never waits on the device for a count.
    """
    if mask is None:
        return (adv - adv.mean()) / (adv.std() + 1e-8) if adv.numel() > 1 else adv
    count = mask.sum()
    if count <= 1:
        return adv
    mean = _masked_mean(adv, mask)
    std = torch.sqrt(_masked_mean((adv - mean) ** 2, mask) * count / (count - 1))
    return (adv - mean) / (std + 1e-8)


class PPO(OnPolicyAlgorithm):
    """PPO with separate extrinsic and intrinsic value heads.

    The update maximises the clipped surrogate with advantage ``ext_coef * A_ext + int_coef * A_int``
    (Burda et al.'s 2 and 1; plain ``A_ext`` without an intrinsic module), where ``A_ext`` is episodic GAE
    with ``gamma`` and ``A_int`` is GAE on the module's reward with ``gamma_int``, non-episodic unless
    ``int_episodic``. The value loss is ``0.5 (V_ext - R_ext)^2 + 0.5 (V_int - R_int)^2``. Autoreset steps
    of the vector env never enter the loss nor the module's training. Timeouts (``truncated``) bootstrap
    from V(final obs), which is exact here: in NEXT_STEP mode the ending step returns the true final
    observation (see :mod:`rove.agents.common.buffers`).

    Automatic coefficients (MaxInfoRL, Sukhija et al. 2024, arXiv 2412.12098; sukhijab/maxinforl_sb3
    ``maxinforl_torch/commons/maxinfo_sac.py``): MaxInfoSAC's actor maximises ``Q + beta * IG - alpha * log pi``
    and tunes both weights by dual gradient descent on their logs: ``alpha`` towards a target entropy (SAC),
    ``beta`` so that the policy's expected information gain ``IG`` stays at least that of its Polyak-averaged
    target actor. ``int_coef="auto"`` (beta) and ``ent_coef="auto"`` (alpha) bring this to PPO, one Adam step
    per rollout after the update (:mod:`rove.agents.common.dual`), logged as ``train/int_coef`` and
    ``train/ent_coef``. Adaptations from the off-policy, continuous-action setting:

    - The target of the information gain is the *rollout* policy's, the policy the update replaced (PPO has no
      target actor; like the Polyak average, it is the recent past of the policy). The slack is measured on
      the rollout's states by importance sampling,
      ``mean_t[(pi_new(a_t|s_t) / pi_old(a_t|s_t) - 1) * (r_int,t - mean r_int)]``: the change of the expected
      one-step intrinsic reward (the module's normalised reward, any module), with the mean as a baseline.
    - beta weights the intrinsic *advantage* (``ext_coef * A_ext + beta * A_int``), not a reward inside a soft
      Q backup: Rove's PPO keeps two value heads.
    - Discrete actions: the entropy is the categorical's, exact per state; the target is
      ``target_entropy_ratio * log(num_actions)`` (SAC's ``-dim(A)`` has no discrete meaning; 0.98 of the
      maximum, SAC-Discrete's choice, would keep PPO near-uniform).
    - One dual step per rollout instead of per gradient step, with its own ``dual_lr``; values bounded within
      1e3 of their start either side.

    Args:
        policy: ``"auto"`` (or Stable-Baselines3's ``"MlpPolicy"``/``"CnnPolicy"``/``"MultiInputPolicy"``,
            all meaning the same) picks the encoder from the observation space; or an
            :class:`ActorCriticPolicy` subclass.
        env: A Rove id (``rove.make_vec(id, n_envs, seed=seed, copy=False)``), another Gymnasium id
            (``gymnasium.make_vec``), or a vector env autoresetting in NEXT_STEP mode.
        intrinsic: None, a registry name (``"rnd"``, ``"count"``, ...) or an :class:`IntrinsicModule`.
        intrinsic_kwargs: Constructor options of a module given by name.
        n_envs: Envs when ``env`` is an id.
        n_steps: Steps per env per rollout (T).
        batch_size: Minibatch size in samples; with an LSTM, ``batch_size // n_steps`` whole env
            sequences per minibatch.
        n_epochs: Passes over the rollout per update.
        learning_rate: Float or schedule of progress remaining (1 -> 0).
        gamma: Extrinsic discount (0.999 in Burda et al.).
        gamma_int: Intrinsic discount (0.99).
        gae_lambda: GAE lambda for both streams.
        clip_range: PPO clip, float or schedule.
        clip_range_vf: Clip each value head's change from its rollout value to this (float or schedule), as
            Stable-Baselines3 does; None (default) leaves the values unclipped.
        ent_coef: Entropy bonus; ``"auto"`` (or ``"auto_<init>"``; ``"auto"`` starts at 0.01) tunes it towards
            ``target_entropy_ratio`` (see "Automatic coefficients" above).
        vf_coef: Value-loss weight.
        max_grad_norm: Gradient clipping.
        target_kl: Stop the update's epochs before the first minibatch step whose approximate KL to the
            rollout policy exceeds ``1.5 * target_kl`` (Stable-Baselines3's rule); None: no limit.
        ext_coef: Weight of the extrinsic advantage (used with an intrinsic module).
        int_coef: Weight of the intrinsic advantage; ``"auto"`` (or ``"auto_<init>"``; ``"auto"`` starts at 1.0)
            tunes it as MaxInfoRL does (see "Automatic coefficients" above; needs an intrinsic module).
        int_episodic: Mask the intrinsic stream at episode ends too (default False: non-episodic).
        intrinsic_warmup_steps: Random-action vector steps that warm up the module's observation statistics
            before training; default ``n_steps`` if the module has a warm-up hook, else 0 (the RND paper
            uses ``50 * n_steps``).
        normalize_advantage: Whiten the combined advantage per minibatch.
        dual_lr: Adam learning rate of the ``"auto"`` coefficients' logs, one step per rollout.
        target_entropy_ratio: With ``ent_coef="auto"``: the target entropy is this fraction, in (0, 1], of the
            uniform policy's ``log(num_actions)``.
        policy_kwargs: ``features_dim``, ``net_arch`` (layer sizes, or SB3's ``dict(pi=..., vf=...)``),
            ``activation_fn``, ``lstm``, ``lstm_hidden_size``, ``ortho_init`` (see :class:`ActorCriticPolicy`).
        tensorboard_log: TensorBoard root when no ``run_dir`` is given.
        run_dir: Run folder (config.json, episodes.jsonl, progress.jsonl, tb/, checkpoints/).
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``...
        seed: Seeds init, sampling and the env's first reset.
        verbose: 1 prints a summary per update.
        stats_window_size: Episodes averaged in ``rollout/ep_rew_mean`` and the other episode statistics.
        flush_denormals: Flush subnormal floats to zero on the CPU during ``learn`` (x86 computes with them
            many times slower; see :func:`rove.agents.common.utils.denormals_flushed`).
    """

    def __init__(
        self,
        policy: str | type[ActorCriticPolicy] = "auto",
        env: str | gym.vector.VectorEnv | None = None,
        *,
        intrinsic: str | IntrinsicModule | None = None,
        intrinsic_kwargs: dict[str, Any] | None = None,
        n_envs: int = 8,
        n_steps: int = 128,
        batch_size: int = 256,
        n_epochs: int = 4,
        learning_rate: float | Schedule = 2.5e-4,
        gamma: float = 0.999,
        gamma_int: float = 0.99,
        gae_lambda: float = 0.95,
        clip_range: float | Schedule = 0.2,
        clip_range_vf: float | Schedule | None = None,
        ent_coef: float | str = 0.01,
        vf_coef: float = 0.5,
        max_grad_norm: float = 0.5,
        target_kl: float | None = None,
        ext_coef: float = 2.0,
        int_coef: float | str = 1.0,
        int_episodic: bool = False,
        intrinsic_warmup_steps: int | None = None,
        normalize_advantage: bool = True,
        dual_lr: float = 0.02,
        target_entropy_ratio: float = 0.5,
        policy_kwargs: dict[str, Any] | None = None,
        tensorboard_log: str | None = None,
        run_dir: str | None = None,
        device: torch.device | str = "auto",
        seed: int | None = None,
        verbose: int = 1,
        flush_denormals: bool = True,
        stats_window_size: int = 100,
        _spaces: tuple[spaces.Space, spaces.Space] | None = None,
    ) -> None:
        if batch_size < 1 or n_epochs < 1:
            raise ValueError(f"batch_size and n_epochs must be >= 1, got {batch_size} and {n_epochs}")
        if target_kl is not None and not target_kl > 0:
            raise ValueError(f"target_kl must be > 0 or None, got {target_kl!r}")
        int_init, auto_int = parse_coef(int_coef, "int_coef", 1.0)
        ent_init, auto_ent = parse_coef(ent_coef, "ent_coef", 0.01)
        if auto_int and intrinsic is None:
            raise ValueError(
                "int_coef='auto' tunes the weight of an intrinsic reward, but intrinsic is None: pass a module "
                "(e.g. intrinsic='infogain', MaxInfoRL's information gain) or a fixed int_coef"
            )
        if not 0.0 < target_entropy_ratio <= 1.0:
            raise ValueError(
                f"target_entropy_ratio must be in (0, 1] (the target entropy is this fraction of log(num_actions)), "
                f"got {target_entropy_ratio!r}"
            )
        if not dual_lr > 0:
            raise ValueError(f"dual_lr must be > 0, got {dual_lr!r}")
        self.int_coef_tuner = DualCoef(int_init, dual_lr) if auto_int else None
        self.ent_coef_tuner = DualCoef(ent_init, dual_lr) if auto_ent else None
        self.target_entropy_ratio = target_entropy_ratio
        self.batch_size = batch_size
        self.n_epochs = n_epochs
        self.clip_range = as_schedule(clip_range)
        self.clip_range_vf = None if clip_range_vf is None else as_schedule(clip_range_vf)
        self.target_kl = target_kl
        self.ent_coef, self.vf_coef, self.max_grad_norm = ent_init, vf_coef, max_grad_norm
        self.normalize_advantage = normalize_advantage
        hyperparams = {
            "policy": policy,
            "n_envs": n_envs,
            "n_steps": n_steps,
            "batch_size": batch_size,
            "n_epochs": n_epochs,
            "learning_rate": learning_rate,
            "gamma": gamma,
            "gamma_int": gamma_int,
            "gae_lambda": gae_lambda,
            "clip_range": clip_range,
            "clip_range_vf": clip_range_vf,
            "ent_coef": ent_coef,
            "vf_coef": vf_coef,
            "max_grad_norm": max_grad_norm,
            "target_kl": target_kl,
            "ext_coef": ext_coef,
            "int_coef": int_coef,
            "int_episodic": int_episodic,
            "intrinsic_warmup_steps": intrinsic_warmup_steps,
            "normalize_advantage": normalize_advantage,
            "dual_lr": dual_lr,
            "target_entropy_ratio": target_entropy_ratio,
            "policy_kwargs": policy_kwargs,
            "intrinsic_kwargs": intrinsic_kwargs,
            "tensorboard_log": tensorboard_log,
            "seed": seed,
            "verbose": verbose,
            "flush_denormals": flush_denormals,
            "stats_window_size": stats_window_size,
        }
        super().__init__(
            policy,
            env,
            intrinsic=intrinsic,
            intrinsic_kwargs=intrinsic_kwargs,
            n_envs=n_envs,
            n_steps=n_steps,
            learning_rate=learning_rate,
            gamma=gamma,
            gamma_int=gamma_int,
            gae_lambda=gae_lambda,
            ext_coef=ext_coef,
            int_coef=int_init,
            int_episodic=int_episodic,
            intrinsic_warmup_steps=intrinsic_warmup_steps,
            policy_kwargs=policy_kwargs,
            tensorboard_log=tensorboard_log,
            run_dir=run_dir,
            device=device,
            seed=seed,
            verbose=verbose,
            hyperparams=hyperparams,
            flush_denormals=flush_denormals,
            stats_window_size=stats_window_size,
            _spaces=_spaces,
        )

    def _setup_model(self) -> None:
        self.optimizer = make_adam(self.policy.parameters(), lr=self.lr_schedule(1.0), eps=1e-5)
        self.target_entropy = self.target_entropy_ratio * math.log(self.policy.num_actions)

    def _dual_coefs(self) -> dict[str, DualCoef]:
        coefs = {"int_coef": self.int_coef_tuner, "ent_coef": self.ent_coef_tuner}
        return {name: coef for name, coef in coefs.items() if coef is not None}

    def _minibatches(self, advantages: torch.Tensor) -> list[RolloutBatch]:
        buf = self.rollout_buffer
        if self.policy.use_lstm:
            envs_per_batch = max(1, self.batch_size // self.n_steps)
            return buf.sample_sequences(envs_per_batch, advantages, self.generator)
        return buf.sample_batches(self.batch_size, advantages, self.generator)

    def _evaluate(self, batch: RolloutBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(logits [B, A], v_ext [B], v_int [B])`` of the current policy on a minibatch."""
        if batch.episode_starts is not None:
            assert batch.lstm_state is not None
            return self.policy.evaluate_sequence(batch.obs, batch.lstm_state, batch.episode_starts)
        logits, v_ext, v_int, _ = self.policy(batch.obs)
        return logits, v_ext, v_int

    def train(self) -> None:
        """``n_epochs`` passes of clipped-surrogate updates over the rollout's valid samples."""
        buf = self.rollout_buffer
        use_int = self.intrinsic is not None
        advantages = buf.combined_advantages(self.ext_coef, self.int_coef, use_int)
        clip = self.clip_range(self.progress_remaining)
        clip_vf = None if self.clip_range_vf is None else self.clip_range_vf(self.progress_remaining)
        params = list(self.policy.parameters())
        self.policy.train(True)
        # Per-minibatch statistics stay on the device and are read once per update: a float() per value
        # would wait on the device after every minibatch.
        stat_rows: list[torch.Tensor] = []
        stopped_at_epoch = None
        for epoch in range(self.n_epochs):
            if stopped_at_epoch is not None:
                break
            for batch in self._minibatches(advantages):
                logits, v_ext, v_int = self._evaluate(batch)
                if clip_vf is not None:  # Stable-Baselines3's value clipping, on each head
                    v_ext = batch.old_values_ext + (v_ext - batch.old_values_ext).clamp(-clip_vf, clip_vf)
                    v_int = batch.old_values_int + (v_int - batch.old_values_int).clamp(-clip_vf, clip_vf)
                # Flat minibatches hold valid samples only; sequence minibatches mask their autoreset steps.
                mask = None if batch.all_valid else batch.valid.float()
                log_probs, entropies = log_prob_entropy(logits, batch.actions)
                adv = normalize_advantages(batch.advantages, mask) if self.normalize_advantage else batch.advantages
                log_ratio = log_probs - batch.old_log_probs
                ratio = log_ratio.exp()
                with torch.no_grad():
                    kl = _masked_mean((ratio - 1) - log_ratio, mask)
                if self.target_kl is not None and float(kl) > 1.5 * self.target_kl:
                    stopped_at_epoch = epoch  # before this minibatch's step, as Stable-Baselines3
                    break
                pg_loss = _masked_mean(torch.max(-adv * ratio, -adv * ratio.clamp(1 - clip, 1 + clip)), mask)
                v_ext_loss = 0.5 * _masked_mean((v_ext - batch.returns_ext) ** 2, mask)
                entropy = _masked_mean(entropies, mask)
                if use_int:
                    v_int_loss = 0.5 * _masked_mean((v_int - batch.returns_int) ** 2, mask)
                    value_loss = v_ext_loss + v_int_loss
                else:
                    v_int_loss = torch.zeros_like(v_ext_loss)
                    value_loss = v_ext_loss
                loss = pg_loss - self.ent_coef * entropy + self.vf_coef * value_loss
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, self.max_grad_norm, foreach=True)
                self.optimizer.step()
                with torch.no_grad():
                    clipfrac = _masked_mean(((ratio - 1).abs() > clip).float(), mask)
                    stat_rows.append(torch.stack([pg_loss, v_ext_loss, v_int_loss, entropy, kl, clipfrac, loss]))
        if self.target_kl is not None:
            self._record("train/early_stop_epoch", -1 if stopped_at_epoch is None else stopped_at_epoch)
        if self.int_coef_tuner is not None or self.ent_coef_tuner is not None:
            self._tune_coefs()
        if not stat_rows:  # the first minibatch already exceeded target_kl: no step was taken
            return
        stats = dict(zip(STAT_KEYS, torch.stack(stat_rows).mean(0).tolist(), strict=True))
        valid = buf.valid
        self._record("train/policy_loss", stats["pg"])
        self._record("train/value_loss", stats["v_ext"])
        if use_int:
            self._record("train/value_loss_int", stats["v_int"])
            self._record(
                "train/explained_variance_int",
                explained_variance(buf.values_int[:-1][valid], buf.returns_int[valid]),
            )
        self._record("train/entropy", stats["ent"])
        self._record("train/approx_kl", stats["kl"])
        self._record("train/clip_fraction", stats["clipfrac"])
        self._record("train/loss", stats["loss"])
        self._record("train/clip_range", clip)
        self._record("train/explained_variance", explained_variance(buf.values_ext[:-1][valid], buf.returns_ext[valid]))

    @torch.no_grad()
    def _updated_policy_on_rollout(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(log_probs, entropies)``, each ``[T*E]`` time-major, of the updated policy on the rollout's
        states and actions (an LSTM replays the rollout from its stored initial state)."""
        buf = self.rollout_buffer
        obs, actions = obs_flatten(buf.cur_obs), buf.actions.reshape(-1)
        self.policy.train(False)
        if self.policy.use_lstm:
            assert buf.lstm_state is not None
            logits, _, _ = self.policy.evaluate_sequence(obs, buf.lstm_state, buf.episode_starts[:-1])
        else:
            rows = [slice(i, i + EVAL_CHUNK) for i in range(0, len(actions), EVAL_CHUNK)]
            logits = torch.cat([self.policy(obs_index(obs, r))[0] for r in rows])
        return log_prob_entropy(logits, actions)

    def _tune_coefs(self) -> None:
        """One dual step of each ``"auto"`` coefficient, measured on this rollout after the update.

        ``int_coef``: the slack is ``mean_t[(pi_new(a_t|s_t) / pi_old(a_t|s_t) - 1) (r_int,t - mean r_int)]``, the
        importance-sampled change of the expected intrinsic reward from the rollout policy to the updated
        one; below zero (the update made the policy less informative than the policy it replaced) the
        weight rises. ``ent_coef``: the slack is the updated policy's mean entropy minus ``target_entropy``.
        Both over valid steps only.
        """
        buf = self.rollout_buffer
        valid = buf.valid.reshape(-1)
        log_probs, entropies = self._updated_policy_on_rollout()
        if self.int_coef_tuner is not None:
            ratio = (log_probs - buf.log_probs.reshape(-1))[valid].exp()
            reward = buf.rewards_int.reshape(-1)[valid]
            slack = float(((ratio - 1.0) * (reward - reward.mean())).mean()) if reward.numel() else 0.0
            self.int_coef = self.int_coef_tuner.step(slack)
            self._record("train/int_coef_slack", slack)
            self._record("train/int_coef", self.int_coef)
        if self.ent_coef_tuner is not None:
            entropy = float(entropies[valid].mean()) if bool(valid.any()) else self.target_entropy
            self.ent_coef = self.ent_coef_tuner.step(entropy - self.target_entropy)
            self._record("train/ent_coef_slack", entropy - self.target_entropy)
            self._record("train/ent_coef", self.ent_coef)
