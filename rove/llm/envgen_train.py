"""The EnvGen training loop: LLM-designed Crafter worlds, feedback from the original game, then the original game.

EnvGen (Zala et al. 2024; aszala/EnvGen, whose release has the designer but not the training code) trains
one small RL agent in cycles. Each cycle: (1) the LLM writes ``num_worlds`` world configurations (the first
from the task description, later ones adapted to feedback; :mod:`rove.llm.envgen`); (2) the agent trains
``steps_generated`` env steps in those worlds (the envs shared among them); (3) it trains ``steps_original``
steps in the original Crafter, and the success rate of each achievement over those episodes is the
feedback. After ``cycles`` cycles it trains in the original Crafter for the rest of ``total_timesteps``.
The paper (Crafter: 4 worlds, 4 cycles, episodes of 1024 steps in the generated worlds as in their
``env_loader.py``) compares at equal steps in the original game plus the generated ones.

Budget: every phase counts env transitions (autoreset steps are none) in one counter, and each phase ends
at the first PPO update at or past its planned boundary (``c * (G + O) + G`` and ``(c + 1) * (G + O)``),
so the phases add up to the total exactly as a plain PPO run of ``total_timesteps`` does (both stop at the
first update at or past it). ``cycles = 0`` *is* that plain PPO run, with the same settings.

Resume: the agent's checkpoint and the loop's state (worlds, conversation, feedback, phases) are written
at the start of every phase (after the LLM call that phase needs), so a killed run resumes at the start of
the phase it was in and ends identical to an uninterrupted one (``tests/llm/test_envgen_loop.py``);
``episodes.jsonl`` and ``progress.jsonl`` lines past the checkpoint are dropped on resume.

Deviations: learning-rate and clip schedules restart in each phase (every phase is one ``learn`` call);
the defaults are constants. The feedback rates come from the training episodes of step (3), not separate
evaluation runs.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rove.envs.crafter.world import WorldConfig
from rove.experiments.crafter_score import crafter_score, success_rates
from rove.llm.envgen import EnvGenLog, feedback_turn, initial_conversation, propose_worlds

STATE_FILE = "envgen.json"
RESULT_FILE = "result.json"
AGENT_DIR = "agent"
FINAL_FILE = "final.pt"


@dataclasses.dataclass(frozen=True)
class EnvGenConfig:
    """One EnvGen run (a TOML file's keys; ``[agent]``, ``[env_kwargs]`` and ``[llm]`` are tables).

    Attributes:
        env_id: The original game (a Crafter id).
        total_timesteps: Env transitions in all, generated worlds and original game together.
        cycles: Design-train-feedback cycles (the paper: 4); 0 is plain PPO on the original game.
        num_worlds: Worlds the LLM writes per cycle (the paper: 4).
        steps_generated: Transitions per cycle in the generated worlds.
        steps_original: Transitions per cycle in the original game (their episodes are the feedback).
        generated_max_steps: Episode limit in the generated worlds (the authors: 1024).
        n_envs: Parallel envs (shared among the worlds in the generated phases).
        seed: Seeds the agent and every phase's envs.
        max_attempts: LLM calls per design step before falling back to the previous worlds.
        score_window: The result's Crafter score counts original-game episodes that ended in the last
            ``score_window`` transitions (the same window for EnvGen and PPO); None: the planned final phase.
        device: The agent's device.
        llm: Backend: ``"smollm2"`` (the CPU model, greedy) or a :func:`rove.llm.backends.make_backend`
            config (``{"type": "openai", ...}``); ``max_new_tokens`` (default 400) applies to ``"smollm2"``.
        agent: :class:`rove.agents.PPO` options.
        env_kwargs: Options of every env (``world`` excluded: the LLM sets it).
    """

    env_id: str = "Rove/CrafterReward-v1"
    total_timesteps: int = 100_000
    cycles: int = 4
    num_worlds: int = 4
    steps_generated: int = 10_240
    steps_original: int = 10_240
    generated_max_steps: int = 1024
    n_envs: int = 8
    seed: int = 0
    max_attempts: int = 3
    score_window: int | None = None
    device: str = "cpu"
    llm: Any = "smollm2"
    agent: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    env_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        ints = ("total_timesteps", "num_worlds", "steps_generated", "steps_original", "generated_max_steps", "n_envs")
        for name in (*ints, "cycles", "max_attempts", "seed"):
            value = getattr(self, name)
            low = 0 if name in ("cycles", "seed") else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"envgen option {name} must be an int >= {low}, got {value!r}")
        if self.cycles * (self.steps_generated + self.steps_original) >= self.total_timesteps:
            raise ValueError(
                f"envgen: cycles * (steps_generated + steps_original) = "
                f"{self.cycles * (self.steps_generated + self.steps_original)} leaves no steps of total_timesteps "
                f"= {self.total_timesteps} for the final training in the original game"
            )
        if self.num_worlds > self.n_envs:
            raise ValueError(
                f"envgen: num_worlds = {self.num_worlds} > n_envs = {self.n_envs}: a world would get no env"
            )
        if "world" in self.env_kwargs:
            raise ValueError("envgen: env_kwargs may not set 'world' (the LLM designs the worlds)")
        if "n_envs" in self.agent or "seed" in self.agent or "device" in self.agent:
            raise ValueError("envgen: set n_envs, seed and device at the top level, not in [agent]")
        if self.score_window is not None and not 0 < self.score_window <= self.total_timesteps:
            raise ValueError(f"envgen: score_window must be in (0, total_timesteps], got {self.score_window!r}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> EnvGenConfig:
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"unknown envgen config key(s) {unknown}; valid: {known}")
        return cls(**values)

    @classmethod
    def from_toml(cls, path: str | Path) -> EnvGenConfig:
        import tomllib

        with open(path, "rb") as f:
            return cls.from_mapping(tomllib.load(f))

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def phases(self) -> list[tuple[str, int | None, int]]:
        """``(kind, cycle, end step)`` for every phase: generated/original per cycle, then final."""
        plan: list[tuple[str, int | None, int]] = []
        span = self.steps_generated + self.steps_original
        for c in range(self.cycles):
            plan.append(("generated", c, c * span + self.steps_generated))
            plan.append(("original", c, (c + 1) * span))
        plan.append(("final", None, self.total_timesteps))
        return plan


def score_window(config: EnvGenConfig) -> int:
    """The steps at the end of the budget whose original-game episodes are scored: ``score_window``, else the
    planned final phase (``total - cycles * (steps_generated + steps_original)``)."""
    if config.score_window is not None:
        return config.score_window
    return config.total_timesteps - config.cycles * (config.steps_generated + config.steps_original)


def baseline_of(config: EnvGenConfig) -> EnvGenConfig:
    """The plain-PPO run to compare ``config`` with: no cycles, the same budget, settings and score window."""
    return dataclasses.replace(config, cycles=0, score_window=score_window(config))


def make_designer_backend(llm: Any) -> Any:
    """The LLM backend of a config's ``llm`` value."""
    from rove.llm.backends import TransformersBackend, make_backend

    if llm == "smollm2" or (isinstance(llm, Mapping) and llm.get("type") == "smollm2"):
        from rove.llm import smollm2

        options = dict(llm) if isinstance(llm, Mapping) else {}
        options.pop("type", None)
        unknown = sorted(set(options) - {"max_new_tokens"})
        if unknown:
            raise ValueError(f"unknown smollm2 option(s) {unknown}; valid: ['max_new_tokens']")
        return TransformersBackend(
            smollm2.dequantised_folder(),
            max_new_tokens=int(options.get("max_new_tokens", 400)),
            temperature=0.0,
            device="cpu",
        )
    return make_backend(dict(llm) if isinstance(llm, Mapping) else llm)


def _progress_callback(bar: Any) -> Any:
    """A callback moving one bar over the whole budget, across phases."""
    from rove.agents.common.callbacks import BaseCallback

    class Progress(BaseCallback):
        def _on_update_end(self) -> None:
            assert self.model is not None
            bar.update(min(self.model.num_timesteps, bar.total) - bar.n)

    return Progress()


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _truncate_jsonl(path: Path, step: int) -> None:
    """Drops the lines logged after ``step`` (a killed phase's, redone on resume)."""
    if path.is_file():
        kept = [r for r in _read_jsonl(path) if r.get("step", 0) <= step]
        path.write_text("".join(json.dumps(r) + "\n" for r in kept))


def _write_json(path: Path, value: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=2) + "\n")
    os.replace(tmp, path)


class EnvGenRun:
    """Runs (or resumes) one EnvGen config in ``run_dir``; :meth:`run` returns the result."""

    def __init__(self, config: EnvGenConfig, run_dir: str | Path, backend: Any = None, progress: bool = False) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        self.backend = backend
        self.progress = progress
        self.agent_dir = self.run_dir / AGENT_DIR

    # ----- envs -----
    def _env(self, index: int, worlds: list[WorldConfig] | None) -> Any:
        import gymnasium as gym

        import rove
        from rove.experiments.env_options import VECTOR_KEYS, env_only

        cfg = self.config
        seed = cfg.seed * 1_000_003 + 1000 * (index + 1)
        if worlds is None:
            return rove.make_vec(cfg.env_id, cfg.n_envs, seed=seed, **dict(cfg.env_kwargs))
        env_kwargs = env_only(cfg.env_kwargs)
        vector_kwargs = {k: v for k, v in cfg.env_kwargs.items() if k in VECTOR_KEYS}
        fns = [
            functools.partial(
                gym.make,
                cfg.env_id,
                world=worlds[i % len(worlds)].to_dict(),
                max_steps=cfg.generated_max_steps,
                **env_kwargs,
            )
            for i in range(cfg.n_envs)
        ]
        return rove.make_vec(None, env_fns=fns, seed=seed, **vector_kwargs)

    def _new_agent(self) -> Any:
        from rove.agents import PPO

        cfg = self.config
        agent = {"verbose": 0, **dict(cfg.agent)}
        try:
            return PPO(
                "auto",
                self._env(-1, None),
                n_envs=cfg.n_envs,
                seed=cfg.seed,
                device=cfg.device,
                run_dir=str(self.agent_dir),
                **agent,
            )
        except TypeError as err:
            raise ValueError(f"bad [agent] option for PPO: {err}") from err

    # ----- state -----
    def _fresh_state(self) -> dict[str, Any]:
        return {"config": self.config.to_dict(), "phase": 0, "checkpoint": None, "cycles": [], "phases": []}

    def _save(self, model: Any, state: dict[str, Any], phase: int) -> None:
        name = f"checkpoint-phase{phase}.pt"
        model.save(self.run_dir / name)
        old = state.get("checkpoint")
        state.update(phase=phase, checkpoint=name, checkpoint_step=int(model.num_timesteps))
        _write_json(self.run_dir / STATE_FILE, state)  # the commit point
        if old and old != name:
            (self.run_dir / old).unlink(missing_ok=True)

    def _load(self) -> tuple[Any, dict[str, Any]]:
        from rove.agents import PPO

        state = json.loads((self.run_dir / STATE_FILE).read_text())
        if state["config"] != self.config.to_dict():
            saved, new = state["config"], self.config.to_dict()
            diff = [
                f"{k}: {saved.get(k)!r} -> {new.get(k)!r}"
                for k in sorted(set(saved) | set(new))
                if saved.get(k) != new.get(k)
            ]
            raise ValueError(f"{self.run_dir} holds an EnvGen run with another config ({'; '.join(diff)})")
        if state["checkpoint"] is None:  # killed before the first checkpoint: start again
            for name in ("episodes.jsonl", "progress.jsonl"):
                _truncate_jsonl(self.agent_dir / name, 0)
            return self._new_agent(), self._fresh_state()
        model = PPO.load(self.run_dir / state["checkpoint"], device=self.config.device, run_dir=str(self.agent_dir))
        for name in ("episodes.jsonl", "progress.jsonl"):
            _truncate_jsonl(self.agent_dir / name, int(model.num_timesteps))
        return model, state

    # ----- the loop -----
    def _design(self, state: dict[str, Any], cycle: int, log: EnvGenLog) -> None:
        cfg = self.config
        if self.backend is None:
            self.backend = make_designer_backend(cfg.llm)
        if cycle == 0:
            conversation = initial_conversation(cfg.num_worlds)
            previous = None
        else:
            last = state["cycles"][cycle - 1]
            conversation = list(state["conversation"])
            previous = [WorldConfig.from_options(w) for w in last["worlds"]]
            conversation.append(
                {
                    "role": "user",
                    "content": feedback_turn(last["rates"], last["episodes"], previous, cfg.num_worlds),
                }
            )
        proposal = propose_worlds(
            self.backend,
            conversation,
            cfg.num_worlds,
            previous=previous,
            max_attempts=cfg.max_attempts,
            log=log,
            cycle=cycle,
        )
        if proposal.fell_back:
            conversation.pop()  # the unanswered feedback turn
        state["conversation"] = conversation
        state["cycles"].append(
            {
                "cycle": cycle,
                "worlds": [w.to_dict() for w in proposal.worlds],
                "attempts": proposal.attempts,
                "fell_back": proposal.fell_back,
                "notes": proposal.notes,
            }
        )

    def run(self) -> dict[str, Any]:
        cfg = self.config
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if (self.run_dir / RESULT_FILE).is_file():
            raise ValueError(f"{self.run_dir} is a finished EnvGen run ({RESULT_FILE} exists)")
        from rove.experiments.env_options import check_env_kwargs

        check_env_kwargs(cfg.env_id, {"max_steps": cfg.generated_max_steps, **dict(cfg.env_kwargs)})
        if (self.run_dir / STATE_FILE).is_file():
            model, state = self._load()
        else:
            model, state = self._new_agent(), self._fresh_state()
            _write_json(self.run_dir / STATE_FILE, state)
        log = EnvGenLog(self.run_dir / "llm.sqlite")
        plan = cfg.phases()
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.total_timesteps, initial=int(model.num_timesteps), unit="step", dynamic_ncols=True)
        callback = _progress_callback(bar) if bar is not None else None
        try:
            for index in range(state["phase"] if state["checkpoint"] else 0, len(plan)):
                kind, cycle, end = plan[index]
                if state["checkpoint"] is None or index > state["phase"]:
                    if kind == "generated" and cycle is not None and len(state["cycles"]) <= cycle:
                        self._design(state, cycle, log)
                    self._save(model, state, index)
                worlds = None
                if kind == "generated" and cycle is not None:
                    worlds = [WorldConfig.from_options(w) for w in state["cycles"][cycle]["worlds"]]
                if bar is not None:
                    bar.set_description(f"{kind}{'' if cycle is None else f' {cycle + 1}/{cfg.cycles}'}")
                start = int(model.num_timesteps)
                previous_env = model.env
                model.set_env(self._env(index, worlds))
                if previous_env is not None:
                    previous_env.close()
                if end > start:
                    model.learn(end - start, callback=callback, reset_num_timesteps=False)
                stop = int(model.num_timesteps)
                state["phases"].append({"kind": kind, "cycle": cycle, "start": start, "end": stop})
                if kind == "original" and cycle is not None:
                    episodes = self._episodes(start, stop)
                    state["cycles"][cycle].update(rates=success_rates(episodes) or {}, episodes=len(episodes))
        finally:
            if bar is not None:
                bar.close()
        result = self._result(model, state)
        model.save(self.run_dir / FINAL_FILE)
        model.env.close()
        model.close()
        _write_json(self.run_dir / STATE_FILE, state)
        _write_json(self.run_dir / RESULT_FILE, result)
        return result

    def _episodes(self, start: int, end: int) -> list[dict[str, Any]]:
        records = _read_jsonl(self.agent_dir / "episodes.jsonl")
        return [r for r in records if start < r["step"] <= end and "achievements" in r]

    def _result(self, model: Any, state: dict[str, Any]) -> dict[str, Any]:
        cfg = self.config
        phases: list[dict[str, Any]] = state["phases"]
        start = cfg.total_timesteps - score_window(cfg)
        original = [p for p in phases if p["kind"] != "generated"]
        in_window = [
            r for p in original for r in self._episodes(max(p["start"], start), min(p["end"], cfg.total_timesteps))
        ]
        all_original = [r for p in original for r in self._episodes(p["start"], min(p["end"], cfg.total_timesteps))]
        rates = success_rates(in_window)
        return {
            "total_transitions": int(model.num_timesteps),
            "transitions": {
                "generated": sum(p["end"] - p["start"] for p in phases if p["kind"] == "generated"),
                "original": sum(p["end"] - p["start"] for p in original),
            },
            "phases": phases,
            "score_window": [start, cfg.total_timesteps],
            "score": crafter_score(rates) if rates else None,
            "rates": rates,
            "episodes": len(in_window),
            "score_all_original": crafter_score(success_rates(all_original)) if all_original else None,
            "fallbacks": sum(1 for c in state["cycles"] if c.get("fell_back")),
        }


def run_envgen(
    config: EnvGenConfig | Mapping[str, Any] | str | Path,
    run_dir: str | Path,
    *,
    backend: Any = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Runs EnvGen (or resumes the run in ``run_dir``) and returns its result (also ``run_dir/result.json``)."""
    if isinstance(config, str | Path):
        config = EnvGenConfig.from_toml(config)
    elif not isinstance(config, EnvGenConfig):
        config = EnvGenConfig.from_mapping(config)
    return EnvGenRun(config, run_dir, backend=backend, progress=progress).run()
