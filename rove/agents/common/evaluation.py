"""Periodic evaluation on a separate env with deterministic actions, as Stable-Baselines3's ``EvalCallback``.

Reference: DLR-RM/stable-baselines3, ``stable_baselines3/common/callbacks.py`` (``EvalCallback``) and
``common/evaluation.py`` (``evaluate_policy``): every ``eval_freq`` steps, ``n_eval_episodes`` episodes on an env
that training never steps, greedy actions, ``eval/mean_reward``, ``eval/mean_ep_length`` and
``eval/success_rate`` logged, every evaluation appended to ``evaluations.npz`` (``timesteps``, ``results``,
``ep_lengths``, ``successes``), and the best agent so far saved.

Deviations:
- ``eval_freq`` counts env steps summed over envs (RL Zoo's convention, which divides by ``n_envs`` for SB3),
  and an evaluation runs after the update that crosses a multiple of it, not mid-rollout: the policy evaluated
  is the one just trained, and the agent's state is consistent there (checkpoints are taken at the same point).
- Keys are named as Rove's training keys (``eval/mean_return``, ``eval/mean_length``; ``eval/success_rate`` from
  Rove's ``info["episode"]["success"]`` or Gymnasium's ``info["is_success"]``), and every evaluation is also a
  line of ``evaluations.jsonl`` (the report's evaluation curves read it).
- The eval env is seeded once (``seed``), then keeps its RNG across evaluations, as SB3's does; episodes are
  played one after another on one env (the agent's recurrent state is reset at each episode start).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from rove.agents.common.callbacks import BaseCallback

EVAL_JSONL = "evaluations.jsonl"
EVAL_NPZ = "evaluations.npz"


def _success(info: dict[str, Any]) -> bool | None:
    episode = info.get("episode")
    if isinstance(episode, dict) and "success" in episode:
        return bool(np.asarray(episode["success"]))
    if "success" in info:
        return bool(np.asarray(info["success"]))
    if "is_success" in info:
        return bool(np.asarray(info["is_success"]))
    return None


def evaluate_policy(
    model: Any, env: Any, n_episodes: int, deterministic: bool = True, seed: int | None = None
) -> dict[str, list[Any]]:
    """Plays ``n_episodes`` full episodes of ``model.predict`` on the (single, non-vector) ``env``.

    ``seed`` seeds the first reset only. Returns ``{"returns": [...], "lengths": [...], "successes": [...]}``
    (``successes`` empty when the env reports none).
    """
    returns: list[float] = []
    lengths: list[int] = []
    successes: list[bool] = []
    for i in range(n_episodes):
        obs, _ = env.reset(seed=seed if i == 0 else None)
        state, start = None, np.ones(1, dtype=bool)
        total, length = 0.0, 0
        while True:
            action, state = model.predict(obs, state, start, deterministic=deterministic)
            start = np.zeros(1, dtype=bool)
            obs, reward, terminated, truncated, info = env.step(action)
            total += float(reward)
            length += 1
            if terminated or truncated:
                break
        returns.append(total)
        lengths.append(length)
        success = _success(info)
        if success is not None:
            successes.append(success)
    return {"returns": returns, "lengths": lengths, "successes": successes}


class EvalCallback(BaseCallback):
    """Evaluates the agent every ``eval_freq`` env steps on ``make_env()`` (see the module docstring).

    Args:
        make_env: Builds the eval env (a single ``gymnasium.Env``), called once at training start.
        eval_freq: Env steps (summed over envs) between evaluations.
        n_eval_episodes: Episodes per evaluation.
        deterministic: Greedy actions (SB3's default).
        seed: Seed of the eval env's first reset.
        log_path: Folder of ``evaluations.jsonl``/``.npz`` (default: the agent's ``run_dir``; None: not written).
        best_model_save_path: Where ``best.pt`` goes (default ``<run_dir>/checkpoints``; set ``save_best=False``
            to keep none).
    """

    def __init__(
        self,
        make_env: Callable[[], Any],
        eval_freq: int,
        n_eval_episodes: int = 5,
        deterministic: bool = True,
        seed: int | None = None,
        log_path: str | Path | None = None,
        best_model_save_path: str | Path | None = None,
        save_best: bool = True,
        verbose: int = 0,
    ) -> None:
        super().__init__(verbose)
        if eval_freq < 1 or n_eval_episodes < 1:
            raise ValueError(f"eval_freq and n_eval_episodes must be >= 1, got {eval_freq}, {n_eval_episodes}")
        self.make_env = make_env
        self.eval_freq = eval_freq
        self.n_eval_episodes = n_eval_episodes
        self.deterministic = deterministic
        self.seed = seed
        self.log_path = Path(log_path) if log_path is not None else None
        self.best_model_save_path = Path(best_model_save_path) if best_model_save_path is not None else None
        self.save_best = save_best
        self.env: Any = None
        self.best_mean_return = -np.inf
        self.last_mean_return = -np.inf
        self.evaluations: list[dict[str, Any]] = []
        self._next_seed = seed

    def _init_callback(self) -> None:
        assert self.model is not None
        run_dir = self.model.run_dir
        if self.log_path is None and run_dir is not None:
            self.log_path = Path(run_dir)
        if self.best_model_save_path is None and run_dir is not None:
            self.best_model_save_path = Path(run_dir) / "checkpoints"
        if self.env is None:
            self.env = self.make_env()
        if self.log_path is not None:  # a resumed run continues its evaluations
            path = self.log_path / EVAL_JSONL
            if path.is_file():
                self.evaluations = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
                if self.evaluations:
                    self.best_mean_return = max(e["mean_return"] for e in self.evaluations)
                    self._next_seed = None  # the eval env's RNG was not saved: fresh episodes
        self._last_eval = self.model.num_timesteps

    def _on_update_end(self) -> None:
        assert self.model is not None
        if self.model.num_timesteps // self.eval_freq <= self._last_eval // self.eval_freq:
            return
        self._last_eval = self.model.num_timesteps
        self.evaluate()

    def evaluate(self) -> dict[str, Any]:
        """One evaluation now: logs it, appends it to the files, saves ``best.pt`` on a new best mean return."""
        assert self.model is not None
        out = evaluate_policy(self.model, self.env, self.n_eval_episodes, self.deterministic, self._next_seed)
        self._next_seed = None
        step = int(self.model.num_timesteps)
        record: dict[str, Any] = {
            "step": step,
            "mean_return": float(np.mean(out["returns"])),
            "std_return": float(np.std(out["returns"])),
            "mean_length": float(np.mean(out["lengths"])),
            **out,
        }
        if out["successes"]:
            record["success_rate"] = float(np.mean(out["successes"]))
        self.evaluations.append(record)
        self.last_mean_return = record["mean_return"]
        logger = self.model.logger
        if logger is not None:
            for key in ("mean_return", "std_return", "mean_length", "success_rate"):
                if key in record:
                    logger.record(f"eval/{key}", record[key])
            logger.dump(step)  # at the step evaluated, as SB3's EvalCallback dumps
        if self.log_path is not None:
            self._write(record)
        if self.verbose >= 1:
            print(f"eval at {step} steps: return {record['mean_return']:.3f} +/- {record['std_return']:.3f}")
        if record["mean_return"] > self.best_mean_return:
            self.best_mean_return = record["mean_return"]
            if self.save_best and self.best_model_save_path is not None:
                self.model.save(self.best_model_save_path / "best.pt")
        return record

    def _write(self, record: dict[str, Any]) -> None:
        assert self.log_path is not None
        self.log_path.mkdir(parents=True, exist_ok=True)
        with open(self.log_path / EVAL_JSONL, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        evals = self.evaluations
        arrays: dict[str, np.ndarray] = {
            "timesteps": np.array([e["step"] for e in evals]),
            "results": np.array([e["returns"] for e in evals]),
            "ep_lengths": np.array([e["lengths"] for e in evals]),
        }
        if all(e["successes"] for e in evals):
            arrays["successes"] = np.array([e["successes"] for e in evals])
        np.savez(self.log_path / EVAL_NPZ, **arrays)  # type: ignore[arg-type]

    def _on_training_end(self) -> None:
        if self.env is not None:
            self.env.close()
            self.env = None
