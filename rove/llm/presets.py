"""The ``motif`` preset: Rove's PPO set up with Motif's reward mix.

Motif (facebookresearch/motif; ``README.md`` "RL training", ``sample_factory/.../learner.py`` and
``actor_worker.py``) trains on one reward stream::

    r = extrinsic_reward * clip(reward_scale * r_env, -reward_clip, reward_clip)
        + llm_reward * r_int(c) / N_ep(c) ** beta_count_exponent

with ``reward_scale = 0.1``, ``reward_clip = 10``, ``llm_reward = 0.1``, ``beta_count_exponent = 3``,
``extrinsic_reward`` 0.1 on NetHackScore, 10 on the sparse tasks (staircase, oracle) and 0 for
intrinsic-only runs; ``r_int`` is the normalised, thresholded reward model output and ``N_ep`` the
message's count in the current episode. The return is episodic (V-trace with one value head, cut at
episode ends).

With Rove's PPO this is: a vector wrapper scaling and clipping the env reward (the episode statistics
still report the raw return), the ``motif`` module (``r_int / N_ep ** 3``, counts per episode), and
``ext_coef = extrinsic_reward``, ``int_coef = llm_reward``, ``int_episodic=True``, ``gamma_int = gamma``:
GAE is linear in the rewards, so ``ext_coef * A_ext + int_coef * A_int`` is the advantage of the summed
reward under one episodic discount.

Deviations: PPO instead of APPO/V-trace (Rove's agent); two value heads whose weighted sum plays the one
value function (the same return, a different parametrisation).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

EXTRINSIC_REWARD = {"score": 0.1, "sparse": 10.0, "none": 0.0}
REWARD_SCALE, REWARD_CLIP, LLM_REWARD, BETA = 0.1, 10.0, 0.1, 3.0


def scale_clip(reward: np.ndarray) -> np.ndarray:
    """Sample Factory's reward transform as Motif runs it: ``clip(0.1 * r, -10, 10)``."""
    return np.clip(REWARD_SCALE * np.asarray(reward, dtype=np.float64), -REWARD_CLIP, REWARD_CLIP)


def motif_preset(
    env: Any, reward_model: str | Path | Any, *, task: str = "score", gamma: float = 0.999, **ppo_kwargs: Any
) -> Any:
    """A :class:`rove.agents.PPO` on ``env`` (a vector env) that trains on Motif's reward mix.

    Args:
        env: A vector env with the ``caption`` key (e.g. ``rove.make_vec(id, n, observation_keys=[..., "caption"])``).
        reward_model: The trained reward model (path from ``rove llm train``) or a ``CaptionRewardModel``.
        task: ``"score"`` (extrinsic weight 0.1, NetHackScore), ``"sparse"`` (10: staircase, oracle) or
            ``"none"`` (intrinsic only).
        gamma: The one discount of both streams.
        **ppo_kwargs: Other :class:`~rove.agents.PPO` options (``n_steps``, ``seed``...); the reward-mix
            options above are set here and refused if given.
    """
    from gymnasium.wrappers.vector import TransformReward

    from rove.agents import PPO

    if task not in EXTRINSIC_REWARD:
        raise ValueError(f"unknown Motif task kind {task!r}; choose from {list(EXTRINSIC_REWARD)}")
    fixed = {"intrinsic", "intrinsic_kwargs", "ext_coef", "int_coef", "int_episodic", "gamma_int"}
    clash = sorted(fixed & set(ppo_kwargs))
    if clash:
        raise ValueError(f"the motif preset sets {clash} itself; leave them out")
    wrapped = TransformReward(env, scale_clip)
    kwargs = {"reward_model": reward_model, "beta": BETA, "coef": 1.0}
    return PPO(
        "auto",
        wrapped,
        intrinsic="motif",
        intrinsic_kwargs=kwargs,
        ext_coef=EXTRINSIC_REWARD[task],
        int_coef=LLM_REWARD,
        int_episodic=True,
        gamma=gamma,
        gamma_int=gamma,
        **ppo_kwargs,
    )
