"""Rove's vector env: dict observations batched into preallocated arrays, NEXT_STEP autoreset, sync or subprocess.

Gymnasium's :class:`~gymnasium.vector.SyncVectorEnv` builds a new batched dict every step, batches every
``info`` key of every env and deep-copies the observations. :class:`RoveVectorEnv` instead writes each env's
observation in place into one ``[num_envs, ...]`` array per key, and batches only what learners read: the
caption of every env and, on steps where an episode ended, ``info["episode"]``. Envs that implement
:class:`~rove.envs.core.BufferedEnv` (Rove's NetHack) write their observations straight into the batch (nle's C
code fills the rows) and return only reward, flags, caption and episode statistics. Its own overhead is about
1 µs per env step; on NetHack with 8 envs sync mode runs at 0.96x a plain Python loop over the same envs'
``step`` and 1.44x SyncVectorEnv (CPU time), and subprocess mode with the main process stepping a slice runs at
1.91x SyncVectorEnv on 2 cores (wall time; ``experiments/bench_envs.py``).

Autoreset follows Gymnasium's NEXT_STEP mode: an env whose episode ended at step ``t`` is reset at step
``t + 1``; that step ignores the env's action and returns the first observation of the new episode with
reward 0 and ``terminated = truncated = False``. ``infos["autoreset"]`` (``bool[num_envs]``) marks those
steps, so that learners and intrinsic modules can leave them out.

``get_state``/``set_state`` snapshot and restore the envs exactly, for checkpoints that continue the same
episodes (envs are pickled, or replayed where their pickle is not their state, as Rove's NetHack). A
KeyboardInterrupt in the middle of a step leaves the envs out of step with what was returned: the next
``step`` refuses and ``reset`` (which drains the workers' late replies) starts over.

Example::

    envs = rove.make_vec("Rove/NetHackScore-v0", 8, seed=0)
    obs, infos = envs.reset()
    obs, rewards, terminated, truncated, infos = envs.step(envs.action_space.sample())
"""

from __future__ import annotations

import contextlib
import inspect
import multiprocessing as mp
import os
import pickle
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import Any, NoReturn

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.envs.registration import load_env_creator
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import CloudpickleWrapper, batch_space
from gymnasium.wrappers import OrderEnforcing, PassiveEnvChecker, TimeLimit

from rove.envs.core import BufferedStep
from rove.envs.registration import check_env_id

MODES = ("sync", "subprocess")
SPIN_SECONDS = 1e-3  # default polling window of subprocess mode (see RoveVectorEnv's ``spin``)
_BATCHABLE = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)

EnvFn = Callable[[], gym.Env]
# (key or None for a non-dict space, dtype, per-env shape): enough to rebuild a buffer view in a worker.
BufferSpec = tuple[str | None, np.dtype, tuple[int, ...]]


class VectorEnvError(RuntimeError):
    """An env inside a vector env raised, or a worker process died; ``env_index`` names the env (or ``None``)."""

    def __init__(self, message: str, env_index: int | None = None) -> None:
        super().__init__(message)
        self.env_index = env_index


class EnvStateError(RuntimeError):
    """A saved vector-env state cannot be restored exactly (see :meth:`RoveVectorEnv.set_state`)."""


class _EnvFailure(Exception):
    """Carries the index of the env that raised, from the stepping loop to the vector env."""

    def __init__(self, env_index: int, error: BaseException) -> None:
        super().__init__(env_index, error)
        self.env_index = env_index
        self.error = error


class _MakeEnv:
    """Picklable ``gym.make(env_id, **kwargs)``, so that subprocess workers can build envs under any start method."""

    def __init__(self, env_id: str, kwargs: dict[str, Any]) -> None:
        self.env_id = env_id
        self.kwargs = kwargs

    def __call__(self) -> gym.Env:
        return gym.make(self.env_id, **self.kwargs)


def buffer_specs(space: gym.Space) -> list[BufferSpec]:
    """Per-key array layouts of one observation; raises for spaces that cannot be batched into arrays."""
    if isinstance(space, spaces.Dict):
        items: list[tuple[str | None, gym.Space]] = list(space.spaces.items())
    else:
        items = [(None, space)]
    specs: list[BufferSpec] = []
    for key, sub in items:
        if not isinstance(sub, _BATCHABLE):
            where = f"observation key {key!r}" if key is not None else "the observation space"
            raise TypeError(
                f"RoveVectorEnv batches only Box/Discrete/MultiDiscrete/MultiBinary observations; {where} is {sub}"
            )
        assert sub.dtype is not None and sub.shape is not None
        specs.append((key, np.dtype(sub.dtype), tuple(sub.shape)))
    return specs


def _views(specs: Sequence[BufferSpec], raws: Sequence[Any], num_envs: int) -> list[tuple[str | None, np.ndarray]]:
    return [
        (key, np.frombuffer(raw, dtype=dtype).reshape((num_envs, *shape)))
        for (key, dtype, shape), raw in zip(specs, raws, strict=True)
    ]


def _warn_if_time_limited(env: gym.Env) -> None:
    """Warns when Gymnasium's ``TimeLimit`` wraps a Rove env: its truncations carry no ``info["episode"]``."""
    layer = env
    while isinstance(layer, gym.Wrapper):
        if isinstance(layer, TimeLimit) and type(env.unwrapped).__module__.startswith("rove."):
            name = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
            warnings.warn(
                f"{name}: max_episode_steps={layer._max_episode_steps} made Gymnasium wrap the env in TimeLimit, "
                "whose truncations carry no info['episode'] (those episodes never reach the logs); pass "
                f"max_steps={layer._max_episode_steps} instead to use the env's own step limit",
                UserWarning,
                stacklevel=4,
            )
            return
        layer = layer.env


def _step_target(env: gym.Env) -> gym.Env:
    """The env below Gymnasium's ``OrderEnforcing``/``PassiveEnvChecker`` wrappers; other wrappers stay.

    The vector env enforces reset-before-step itself, and the passive checker only checks spaces on the first
    calls (Rove ids disable it); skipping both saves one or two Python calls per env step.
    """
    while isinstance(env, (OrderEnforcing, PassiveEnvChecker)):
        env = env.env
    return env


def restores_by_replay(env: gym.Env) -> bool:
    """Whether the vector env restores ``env`` by replaying its episode rather than by unpickling it.

    An env whose class defines ``__getstate__`` says that its pickle is not its state: Rove's NetHack pickles
    only its constructor arguments (nle's C game cannot be pickled), but a seeded NetHack episode replays
    exactly, so it is rebuilt from the generator state its reset drew from and the actions taken since.
    Other envs (MiniGrid, Crafter: pure Python and NumPy) pickle whole, generators included.
    """
    return any("__getstate__" in vars(cls) for cls in type(env.unwrapped).__mro__ if cls is not object)


class _CopyingStepper:
    """Steps an env through the Gymnasium API and copies each observation into the env's rows of the batch.

    The fallback for envs that are not :class:`~rove.envs.core.BufferedEnv` (or are wrapped); its ``step`` and
    ``reset`` return what a buffered env's ``step_into``/``reset_into`` return.
    """

    __slots__ = ("env", "rows")

    def __init__(self, env: gym.Env, rows: list[tuple[str | None, np.ndarray]]) -> None:
        self.env = env
        self.rows = rows

    def step(self, action: Any) -> BufferedStep:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._write(obs)
        return reward, terminated, truncated, info.get("caption", ""), info.get("episode")

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> str:
        obs, info = self.env.reset(seed=seed, options=options)
        self._write(obs)
        return info.get("caption", "")

    def _write(self, obs: Any) -> None:
        for key, row in self.rows:
            row[...] = obs if key is None else obs[key]


def _stepper(env: gym.Env, rows: list[tuple[str | None, np.ndarray]]) -> tuple[Callable[..., Any], Callable[..., str]]:
    """``(step, reset)`` of one env, writing into ``rows``: the env's own buffered path if it offers one."""
    attach = getattr(env, "attach_buffers", None)
    if attach is not None and all(key is not None for key, _ in rows) and attach(dict(rows)):
        return env.step_into, env.reset_into  # type: ignore[attr-defined]
    copier = _CopyingStepper(env, rows)
    return copier.step, copier.reset


class _EnvSlice:
    """Envs ``start .. start + len(envs) - 1`` of a vector env, stepped into shared result arrays.

    The same code runs in sync mode and inside each subprocess worker, so both modes give identical results.
    Each env's observation lands in per-env row views of the batch buffers: an env with no wrapper that
    implements :class:`~rove.envs.core.BufferedEnv` writes it there itself (Rove's NetHack has nle fill the rows,
    no copy at all); others are stepped through ``step`` and copied (``row[...] = x`` is about 30% cheaper than
    ``buffer[i] = x``). Rewards and flags are gathered in lists and written as one slice per step.
    """

    def __init__(
        self,
        envs: list[gym.Env],
        start: int,
        buffers: Sequence[tuple[str | None, np.ndarray]],
        rewards: np.ndarray,
        terminations: np.ndarray,
        truncations: np.ndarray,
    ) -> None:
        self.envs = envs
        self.start = start
        self.stop = start + len(envs)
        rows = [[(key, buf[i, ...]) for key, buf in buffers] for i in range(self.start, self.stop)]
        self.steppers = [_stepper(_step_target(env), env_rows) for env, env_rows in zip(envs, rows, strict=True)]
        self.rewards = rewards
        self.terminations = terminations
        self.truncations = truncations
        self.autoreset = [False] * len(envs)
        self.rows = rows
        # Envs restored by replay (see ``get_state``) log how their episode began and every action since.
        self.episode_starts: list[tuple[str, Any, Any] | None] = [None] * len(envs)
        self.action_logs: list[list[Any] | None] = [[] if restores_by_replay(env) else None for env in envs]

    def step(self, actions: Sequence[Any], captions: list[str]) -> list[tuple[int, dict[str, Any]]]:
        """Steps (or autoresets) every env; writes observations, rewards, flags and ``captions[start:stop]``.

        Returns:
            ``(env_index, info["episode"])`` for every env whose info carries episode statistics.
        """
        n = len(self.steppers)
        rewards: list[Any] = [0.0] * n
        terminations = [False] * n
        truncations = [False] * n
        autoreset = self.autoreset
        episodes: list[tuple[int, dict[str, Any]]] = []
        start = self.start
        logs = self.action_logs
        for j, (step, reset) in enumerate(self.steppers):
            try:
                if autoreset[j]:
                    if logs[j] is not None:
                        self._begin_episode(j, None, None)
                    captions[start + j] = reset()
                    autoreset[j] = False
                    continue
                log = logs[j]
                if log is not None:
                    log.append(actions[j])
                reward, terminated, truncated, caption, episode = step(actions[j])
            except Exception as exc:
                raise _EnvFailure(start + j, exc) from exc
            rewards[j], terminations[j], truncations[j] = reward, terminated, truncated
            autoreset[j] = bool(terminated or truncated)
            captions[start + j] = caption
            if episode is not None:
                episodes.append((start + j, episode))
        self.rewards[start : self.stop] = rewards
        self.terminations[start : self.stop] = terminations
        self.truncations[start : self.stop] = truncations
        return episodes

    def reset(self, seeds: Sequence[int | None], options: dict[str, Any] | None, captions: list[str]) -> None:
        for j, (_, reset) in enumerate(self.steppers):
            try:
                if self.action_logs[j] is not None:
                    self._begin_episode(j, seeds[j], options)
                captions[self.start + j] = reset(seeds[j], options)
            except Exception as exc:
                raise _EnvFailure(self.start + j, exc) from exc
        self.autoreset = [False] * len(self.steppers)

    def _begin_episode(self, j: int, seed: int | None, options: dict[str, Any] | None) -> None:
        """Notes what decides env ``j``'s next episode: the reset's seed, or (unseeded) its generator's state."""
        if seed is not None:
            self.episode_starts[j] = ("seed", int(seed), options)
        else:
            self.episode_starts[j] = ("rng", self.envs[j].unwrapped.np_random.bit_generator.state, options)
        self.action_logs[j] = []

    def get_state(self) -> list[dict[str, Any]]:
        """Each env's state (see :meth:`RoveVectorEnv.get_state`)."""
        states: list[dict[str, Any]] = []
        for j, env in enumerate(self.envs):
            state: dict[str, Any] = {"autoreset": self.autoreset[j]}
            log = self.action_logs[j]
            if log is not None:
                state.update(kind="replay", start=self.episode_starts[j], actions=list(log))
            else:
                try:
                    state.update(kind="pickle", blob=pickle.dumps(env))
                except Exception as exc:  # any env's pickling can fail in its own way
                    state.update(kind="none", reason=f"{type(exc).__name__}: {exc}")
            states.append(state)
        return states

    def set_state(self, states: Sequence[dict[str, Any]]) -> None:
        """Restores :meth:`get_state`'s snapshot: unpickles envs, replays the others' episodes so far."""
        for j, state in enumerate(states):
            try:
                if state["kind"] == "pickle":
                    env = pickle.loads(state["blob"])
                    self.envs[j].close()
                    self.envs[j] = env
                    self.steppers[j] = _stepper(_step_target(env), self.rows[j])
                else:
                    self._replay(j, state["start"], state["actions"])
            except Exception as exc:
                raise _EnvFailure(self.start + j, exc) from exc
            self.autoreset[j] = bool(state["autoreset"])

    def _replay(self, j: int, start: tuple[str, Any, Any] | None, actions: Sequence[Any]) -> None:
        step, reset = self.steppers[j]
        self.action_logs[j] = []
        if start is None:  # never reset
            return
        kind, value, options = start
        if kind == "seed":
            self._begin_episode(j, value, options)
            reset(value, options)
        else:
            generator = np.random.Generator(getattr(np.random, value["bit_generator"])())
            generator.bit_generator.state = value
            self.envs[j].unwrapped.np_random = generator
            self._begin_episode(j, None, options)
            reset(None, options)
        log = self.action_logs[j]
        assert log is not None
        for action in actions:
            log.append(action)
            step(action)

    def call(self, name: str, args: Sequence[Any], kwargs: dict[str, Any]) -> list[Any]:
        results = []
        for j, env in enumerate(self.envs):
            try:
                attr = getattr(env, name)
                results.append(attr(*args, **kwargs) if callable(attr) else attr)
            except Exception as exc:
                raise _EnvFailure(self.start + j, exc) from exc
        return results

    def close(self) -> None:
        for env in self.envs:
            env.close()


def _picklable(exc: BaseException) -> BaseException | None:
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return None
    return exc


def _wait_briefly(conn: Connection, seconds: float) -> None:
    """Polls ``conn`` without blocking for up to ``seconds``: a process that blocks on a pipe takes tens of
    microseconds to be woken (~35 us each way measured on this project's 2-core VM, about a third of 4 NetHack
    steps), one that polls sees the message at once. Returns early when a message is there."""
    if seconds <= 0:
        return
    poll, clock = conn.poll, time.perf_counter
    deadline = clock() + seconds
    while not poll(0) and clock() < deadline:
        pass


def _worker(
    conn: Connection,
    parent_conn: Connection,
    env_fns: Sequence[CloudpickleWrapper],
    start: int,
    num_envs: int,
    specs: Sequence[BufferSpec],
    raws: Sequence[Any],
    scalar_raws: tuple[Any, Any, Any],
    spin: float = 0.0,
) -> None:
    """Subprocess loop: owns envs ``start .. start + len(env_fns) - 1``, writes their observations to shared memory;
    polls for ``spin`` seconds before it blocks waiting for the next command."""
    parent_conn.close()
    envs: list[gym.Env] = []
    block: _EnvSlice | None = None
    captions = [""] * num_envs
    stop = start + len(env_fns)
    try:
        for j, fn in enumerate(env_fns):
            try:
                envs.append(fn())
            except Exception as exc:
                raise _EnvFailure(start + j, exc) from exc
        block = _EnvSlice(envs, start, _views(specs, raws, num_envs), *_scalar_views(scalar_raws))
        conn.send(("ok", None))
        while True:
            _wait_briefly(conn, spin)
            command, payload = conn.recv()
            try:
                if command == "step":
                    episodes = block.step(payload, captions)
                    conn.send(("ok", (captions[start:stop], episodes)))
                elif command == "reset":
                    seeds, options = payload
                    block.reset(seeds, options, captions)
                    conn.send(("ok", captions[start:stop]))
                elif command == "call":
                    conn.send(("ok", block.call(*payload)))
                elif command == "get_state":
                    conn.send(("ok", block.get_state()))
                elif command == "set_state":
                    block.set_state(payload)
                    conn.send(("ok", None))
                elif command == "close":
                    break
                else:
                    raise ValueError(f"unknown worker command {command!r}")
            except _EnvFailure as failure:
                conn.send(("error", (failure.env_index, _picklable(failure.error), traceback.format_exc())))
    except _EnvFailure as failure:
        conn.send(("error", (failure.env_index, _picklable(failure.error), traceback.format_exc())))
    except (KeyboardInterrupt, EOFError, BrokenPipeError):
        pass
    finally:
        for env in envs:
            env.close()
        conn.close()


def _scalar_views(scalar_raws: tuple[Any, Any, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (
        np.frombuffer(scalar_raws[0], dtype=np.float64),
        np.frombuffer(scalar_raws[1], dtype=np.bool_),
        np.frombuffer(scalar_raws[2], dtype=np.bool_),
    )


class RoveVectorEnv(VectorEnv):
    """``num_envs`` copies of an env stepped together, observations batched into preallocated arrays.

    Observations are dicts ``key -> [num_envs, ...]`` (or one array for a non-dict space), written in place.
    With ``copy=False``, ``reset``/``step`` return the internal buffers themselves, overwritten by the next
    call (agents that store them into a rollout buffer right away use this); ``copy=True`` returns copies.
    Rewards are ``float64[num_envs]``, terminations and truncations ``bool[num_envs]``, always fresh arrays.

    ``infos`` holds ``"autoreset"`` (``bool[num_envs]``: this step reset the env and ignored its action),
    ``"caption"`` (a list of ``num_envs`` strings, from each env's ``info["caption"]``, ``""`` if absent) and,
    only on steps where some episode ended, ``"episode"`` with its ``"_episode"`` mask in Gymnasium's batched
    info convention (one array per key, nested dicts such as Crafter's achievements batched recursively).

    Args:
        env_fns: One callable per env that builds it.
        mode: ``"sync"`` (all envs in this process) or ``"subprocess"`` (worker processes, each running a
            contiguous slice of the envs, write observations into shared memory).
        copy: Whether ``reset``/``step`` return copies of the observation buffers.
        seed: Seeds the first ``reset()`` called without a seed (env ``i`` gets ``seed + i``) and the action space.
        num_workers: Subprocess mode only: number of worker processes (default ``min(num_envs, cpu count)``, one
            fewer with ``step_in_main``).
        step_in_main: Subprocess mode only: the main process steps the first slice of envs itself while the
            workers step theirs, instead of idling until they answer. On a machine with as many cores as slices this
            saves a core's worth of waiting and one pipe round trip per step; the price is isolation: an env of
            that slice that crashes the interpreter takes the main process with it.
        spin: Subprocess mode only: seconds a process polls for the next message before it blocks (a blocked
            process takes tens of microseconds to wake). Default: :data:`SPIN_SECONDS` when every process (the
            main one and each worker) can have a core of its own, else 0.
        context: Subprocess mode only: multiprocessing start method (default: the platform's).
        timeout: Subprocess mode only: seconds to wait for a worker's answer before raising ``TimeoutError``
            (``None``: wait as long as the worker is alive; a dead worker raises at once either way).
    """

    def __init__(
        self,
        env_fns: Sequence[EnvFn],
        *,
        mode: str = "sync",
        copy: bool = True,
        seed: int | None = None,
        num_workers: int | None = None,
        step_in_main: bool = False,
        spin: float | None = None,
        context: str | None = None,
        timeout: float | None = None,
    ) -> None:
        self.closed = True  # until the envs exist, so that __del__ after a failed __init__ does nothing
        if mode not in MODES:
            raise ValueError(f"unknown vector env mode {mode!r}; choose from {list(MODES)}")
        env_fns = list(env_fns)
        if not env_fns:
            raise ValueError("env_fns is empty; a vector env needs at least one env")
        self.num_envs = len(env_fns)
        self.mode = mode
        self.copy = copy
        self.timeout = timeout
        self._first_seed = seed
        self.envs: list[gym.Env] = []
        self._workers: list[tuple[mp.process.BaseProcess, Connection, int, int]] = []

        slices = self._slice_sizes(mode, num_workers, step_in_main)
        if spin is None:  # poll only while every process has a core of its own: never steal a worker's core
            spin = SPIN_SECONDS if len(slices) + (0 if step_in_main else 1) <= (os.cpu_count() or 1) else 0.0
        if not spin >= 0:
            raise ValueError(f"spin must be >= 0 seconds, got {spin!r}")
        self.spin = float(spin)
        # Envs of the main process's own slice (all of them in sync mode); the workers own the other slices.
        local = slices[0] if mode == "sync" or step_in_main else 0
        if local:
            self.envs = [fn() for fn in env_fns[:local]]
            probe = self.envs[0]
        else:
            # The spaces (and the shared-memory layout) must be known before the workers start.
            probe = env_fns[0]()
        _warn_if_time_limited(probe)
        self.single_observation_space = probe.observation_space
        self.single_action_space = probe.action_space
        self.metadata = {**getattr(probe, "metadata", {}), "autoreset_mode": AutoresetMode.NEXT_STEP}
        self.spec = probe.spec
        self.render_mode = probe.render_mode
        if not local:
            probe.close()
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        if seed is not None:
            self.action_space.seed(seed)
        self._discrete_actions = isinstance(self.single_action_space, spaces.Discrete)

        specs = buffer_specs(self.single_observation_space)
        self._dict_obs = isinstance(self.single_observation_space, spaces.Dict)
        # Sync mode keeps plain arrays; subprocess mode puts the same layout in shared memory that workers write.
        ctx = mp.get_context(context) if mode == "subprocess" else None
        sizes = [self.num_envs * dtype.itemsize * int(np.prod(shape)) for _, dtype, shape in specs]
        sizes += [8 * self.num_envs, self.num_envs, self.num_envs]  # rewards, terminations, truncations
        all_raws = [bytearray(size) if ctx is None else ctx.RawArray("B", size) for size in sizes]
        raws, scalar_raws = all_raws[: len(specs)], (all_raws[-3], all_raws[-2], all_raws[-1])
        self._buffers = _views(specs, raws, self.num_envs)
        self._obs: dict[str, np.ndarray] | np.ndarray = (
            {key: buf for key, buf in self._buffers} if self._dict_obs else self._buffers[0][1]  # type: ignore[misc]
        )
        self._rewards, self._terminations, self._truncations = _scalar_views(scalar_raws)
        self._autoreset = np.zeros(self.num_envs, dtype=np.bool_)
        self._block = (
            _EnvSlice(self.envs, 0, self._buffers, self._rewards, self._terminations, self._truncations)
            if local
            else None
        )
        self._captions = [""] * self.num_envs
        self._needs_reset = True
        # The call a KeyboardInterrupt broke off (its replies may still be in the pipes), and the workers
        # that were sent a command and have not answered yet.
        self._interrupted: str | None = None
        self._unanswered: set[int] = set()
        self.closed = False

        if mode == "subprocess":
            try:
                self._start_workers(env_fns, slices[1:] if local else slices, local, ctx, specs, raws, scalar_raws)
            except BaseException:
                self.close()
                raise

    def _slice_sizes(self, mode: str, num_workers: int | None, step_in_main: bool) -> list[int]:
        """Sizes of the contiguous env slices: the main process's first (sync mode or ``step_in_main``), then
        one per worker process."""
        n = self.num_envs
        if mode == "sync":
            return [n]
        slices_in_main = int(step_in_main)
        lowest = 1 - slices_in_main
        if num_workers is None:
            num_workers = max(lowest, min(n, os.cpu_count() or 1) - slices_in_main)
        if (
            isinstance(num_workers, bool)
            or not isinstance(num_workers, (int, np.integer))
            or not lowest <= num_workers <= n - slices_in_main
        ):
            raise ValueError(
                f"num_workers must be in [{lowest}, {n - slices_in_main}] for {n} envs"
                f"{' with step_in_main' if step_in_main else ''}, got {num_workers!r}"
            )
        bounds = np.linspace(0, n, num_workers + slices_in_main + 1).round().astype(int)
        return np.diff(bounds).tolist()

    # ----------------------------------------------------------------------------------------------- workers
    def _start_workers(
        self,
        env_fns: list[EnvFn],
        sizes: list[int],
        first: int,
        ctx: Any,
        specs: list[BufferSpec],
        raws: list[Any],
        scalar_raws: tuple[Any, Any, Any],
    ) -> None:
        """Starts one worker per slice size, the first owning envs ``first .. first + sizes[0] - 1``."""
        stop = first
        for w, size in enumerate(sizes):
            start, stop = stop, stop + size
            parent_conn, child_conn = ctx.Pipe()
            fns = [CloudpickleWrapper(fn) for fn in env_fns[start:stop]]
            process = ctx.Process(
                target=_worker,
                name=f"RoveVectorEnv-worker-{w}",
                args=(child_conn, parent_conn, fns, start, self.num_envs, specs, raws, scalar_raws, self.spin),
                daemon=True,
            )
            process.start()
            child_conn.close()
            self._workers.append((process, parent_conn, start, stop))
        self._receive_all()  # raises if an env could not be built

    def _send_all(self, messages: Sequence[Any]) -> None:
        for w, message in enumerate(messages):
            process, conn, start, stop = self._workers[w]
            try:
                conn.send(message)
                self._unanswered.add(w)
            except (BrokenPipeError, ConnectionResetError, EOFError):
                process.join(timeout=1.0)
                raise VectorEnvError(
                    f"worker {w} (envs {start}..{stop - 1}) died (exit code {process.exitcode})", start
                ) from None

    def _receive(self, w: int) -> Any:
        """Waits for worker ``w``'s answer, checking that it is alive so that a crash never hangs the caller."""
        process, conn, start, stop = self._workers[w]
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        _wait_briefly(conn, self.spin)
        try:
            while not conn.poll(1.0):
                if not process.is_alive():
                    raise EOFError
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"worker {w} (envs {start}..{stop - 1}) gave no answer within {self.timeout} s")
            status, payload = conn.recv()
            self._unanswered.discard(w)
        except (EOFError, ConnectionResetError, BrokenPipeError):
            process.join(timeout=1.0)
            raise VectorEnvError(
                f"worker {w} (envs {start}..{stop - 1}) died (exit code {process.exitcode})", start
            ) from None
        if status == "error":
            env_index, error, trace = payload
            return _RemoteError(env_index, error, trace)
        return payload

    def _receive_all(self, local_failure: _EnvFailure | None = None) -> list[Any]:
        """Every worker's answer; raises ``local_failure`` (the main process's slice) or the first worker's error,
        but only once every worker has answered, so that the pipes stay in step with the commands."""
        answers = [self._receive(w) for w in range(len(self._workers))]
        if local_failure is not None:
            _raise_env_error(local_failure.env_index, local_failure.error, None, self.num_envs)
        for answer in answers:
            if isinstance(answer, _RemoteError):
                answer.throw(self.num_envs)
        return answers

    def _run(self, local: Callable[[_EnvSlice], Any], messages: Sequence[Any]) -> tuple[Any, list[Any]]:
        """Sends ``messages`` to the workers, runs ``local`` on the main process's slice (if any) meanwhile, and
        returns ``(local's result, the workers' answers)``; raises the first failure once every worker answered."""
        self._send_all(messages)
        result, failure = None, None
        if self._block is not None:
            try:
                result = local(self._block)
            except _EnvFailure as exc:
                failure = exc
        return result, self._receive_all(failure)

    # ----------------------------------------------------------------------------------------------- API
    def reset(
        self, *, seed: int | Sequence[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray] | np.ndarray, dict[str, Any]]:
        """Resets every env; env ``i`` gets ``seed + i`` (or ``seed[i]`` for a list).

        Returns:
            ``(observations, infos)`` with ``infos["autoreset"]`` all False and ``infos["caption"]``.
        """
        self._check_open()
        self._drain()
        if seed is None and self._first_seed is not None:
            seed, self._first_seed = self._first_seed, None
        if seed is None:
            seeds: list[int | None] = [None] * self.num_envs
        elif isinstance(seed, (int, np.integer)):
            seeds = [int(seed) + i for i in range(self.num_envs)]
            super().reset(seed=int(seed))
        else:
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(f"reset got {len(seeds)} seeds for {self.num_envs} envs: {seeds!r}")
        self._first_seed = None
        self._needs_reset = True
        messages = [("reset", (seeds[start:stop], options)) for _, _, start, stop in self._workers]
        with self._atomic("reset"):
            _, answers = self._run(lambda block: block.reset(seeds, options, self._captions), messages)
        for (_, _, start, stop), captions in zip(self._workers, answers, strict=True):
            self._captions[start:stop] = captions
        self._autoreset[:] = False
        self._needs_reset = False
        infos = {"autoreset": self._autoreset.copy(), "caption": list(self._captions)}
        return self._observations(), infos

    def step(
        self, actions: Any
    ) -> tuple[dict[str, np.ndarray] | np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Steps every env with its action (ignored for envs being autoreset this step).

        Args:
            actions: ``[num_envs, ...]`` actions, one per env.

        Returns:
            ``(observations, rewards float64[E], terminations bool[E], truncations bool[E], infos)``.
        """
        self._check_open()
        self._refuse_if_interrupted("step")
        if self._needs_reset:
            raise RuntimeError("RoveVectorEnv.step called before reset(); call reset() first")
        # Python ints step faster than NumPy scalars through the envs' action checks.
        action_list = np.asarray(actions).reshape(-1).tolist() if self._discrete_actions else list(actions)
        if len(action_list) != self.num_envs:
            raise ValueError(f"step got {len(action_list)} actions for {self.num_envs} envs")
        autoreset = self._autoreset.copy()
        # Until the step is complete a KeyboardInterrupt leaves it marked, and the next step refuses: some envs
        # may have stepped (a terminal transition among them) without the caller seeing it.
        self._interrupted = "step"
        if not self._workers:  # every env in this process: the hot path of sync mode, no closures
            assert self._block is not None
            try:
                episodes = self._block.step(action_list, self._captions)
            except _EnvFailure as failure:
                self._interrupted = None
                _raise_env_error(failure.env_index, failure.error, None, self.num_envs)
        else:
            messages = [("step", action_list[start:stop]) for _, _, start, stop in self._workers]
            try:
                local, answers = self._run(lambda block: block.step(action_list, self._captions), messages)
            except VectorEnvError:
                self._interrupted = None
                raise
            episodes = list(local or ())
            for (_, _, start, stop), (captions, worker_episodes) in zip(self._workers, answers, strict=True):
                self._captions[start:stop] = captions
                episodes.extend(worker_episodes)
        np.logical_or(self._terminations, self._truncations, out=self._autoreset)
        self._interrupted = None
        infos: dict[str, Any] = {"autoreset": autoreset, "caption": list(self._captions)}
        for i, episode in episodes:
            self._add_info(infos, {"episode": episode}, i)
        return (
            self._observations(),
            self._rewards.copy(),
            self._terminations.copy(),
            self._truncations.copy(),
            infos,
        )

    def call(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        """Calls method ``name`` of every env (or reads the attribute if it is not callable)."""
        self._check_open()
        self._refuse_if_interrupted("call")
        with self._atomic("call"):
            local, answers = self._run(
                lambda block: block.call(name, args, kwargs), [("call", (name, args, kwargs))] * len(self._workers)
            )
        return tuple([*(local or ()), *(result for answer in answers for result in answer)])

    def get_state(self) -> dict[str, Any]:
        """A snapshot from which :meth:`set_state` continues the same episodes, exactly.

        Each env is pickled whole (MiniGrid, Crafter) or, if its class defines ``__getstate__`` (Rove's NetHack,
        whose pickle holds only its constructor arguments), logged as the generator state or seed its last
        reset started from plus the actions since, and replayed (see :func:`restores_by_replay`). The snapshot
        also holds the observation buffers, captions, autoreset flags and the action space's generator.
        An env whose pickling fails is marked so, and :meth:`set_state` refuses it.
        """
        self._check_open()
        self._refuse_if_interrupted("get_state")
        with self._atomic("get_state"):
            local, answers = self._run(lambda block: block.get_state(), [("get_state", None)] * len(self._workers))
        obs = {key: buf.copy() for key, buf in self._buffers}
        return {
            "num_envs": self.num_envs,
            "envs": [*(local or ()), *(state for answer in answers for state in answer)],
            "obs": obs,
            "captions": list(self._captions),
            "autoreset": self._autoreset.copy(),
            "needs_reset": self._needs_reset,
            "first_seed": self._first_seed,
            "action_space": self.action_space.np_random.bit_generator.state,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Restores :meth:`get_state`'s snapshot into these envs (built like the ones it was taken from).

        Raises:
            EnvStateError: the snapshot does not fit (another number of envs), an env could not be pickled,
                or a replayed env did not reach the saved observation (it is not deterministic). The vector env
                then needs a ``reset()``.
        """
        self._check_open()
        self._drain()
        if state["num_envs"] != self.num_envs:
            raise EnvStateError(f"the saved state holds {state['num_envs']} envs, this vector env has {self.num_envs}")
        unsaved = [(i, env["reason"]) for i, env in enumerate(state["envs"]) if env["kind"] == "none"]
        if unsaved:
            raise EnvStateError(f"env {unsaved[0][0]} could not be saved ({unsaved[0][1]})")
        envs = state["envs"]
        messages = [("set_state", envs[start:stop]) for _, _, start, stop in self._workers]
        self._needs_reset = True
        with self._atomic("set_state"):
            self._run(lambda block: block.set_state(envs[block.start : block.stop]), messages)
        replayed = [i for i, env in enumerate(envs) if env["kind"] == "replay" and env["start"] is not None]
        for key, buf in self._buffers:
            saved = state["obs"][key]
            differ = [i for i in replayed if not np.array_equal(buf[i], saved[i])]
            if differ:
                raise EnvStateError(f"env {differ[0]} did not replay to its saved observation (key {key!r})")
            buf[...] = saved
        self._captions[:] = state["captions"]
        self._autoreset[:] = state["autoreset"]
        self._needs_reset = state["needs_reset"]
        self._first_seed = state["first_seed"]
        self.action_space.np_random.bit_generator.state = state["action_space"]

    def get_attr(self, name: str) -> tuple[Any, ...]:
        """Reads attribute ``name`` of every env."""
        return self.call(name)

    def render(self) -> tuple[Any, ...] | None:
        return self.call("render")

    def close_extras(self, **kwargs: Any) -> None:
        for env in getattr(self, "envs", []):
            env.close()
        for _, conn, _, _ in getattr(self, "_workers", []):
            with contextlib.suppress(BrokenPipeError, ConnectionResetError, EOFError, OSError):
                conn.send(("close", None))
        for process, conn, _, _ in getattr(self, "_workers", []):
            process.join(timeout=5.0)
            if process.is_alive():
                process.terminate()
                process.join(timeout=1.0)
            conn.close()

    def __enter__(self) -> RoveVectorEnv:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def _observations(self) -> dict[str, np.ndarray] | np.ndarray:
        if not self.copy:
            return self._obs
        if isinstance(self._obs, dict):
            return {key: buf.copy() for key, buf in self._obs.items()}
        return self._obs.copy()

    def _check_open(self) -> None:
        if self.closed:
            raise RuntimeError("RoveVectorEnv is closed")

    def _refuse_if_interrupted(self, what: str) -> None:
        if self._interrupted is not None or self._unanswered:
            raise RuntimeError(
                f"RoveVectorEnv.{what}: the previous {self._interrupted or 'call'}() was interrupted (KeyboardInterrupt) "
                "before every env finished it, so the envs are out of step with what was returned; call reset()"
            )

    def _drain(self) -> None:
        """Reads and drops the replies an interrupted call left in the pipes (``reset`` and ``set_state``)."""
        for w in sorted(self._unanswered):
            self._receive(w)
        self._interrupted = None

    @contextlib.contextmanager
    def _atomic(self, what: str) -> Any:
        """Marks the block as ``what`` until it completes or fails with an ordinary exception (an env's error
        leaves the pipes in step; a KeyboardInterrupt may not)."""
        self._interrupted = what
        try:
            yield
        except Exception:
            self._interrupted = None
            raise
        self._interrupted = None


class _RemoteError:
    """An exception reported by a worker, raised in the main process once every worker has answered."""

    def __init__(self, env_index: int, error: BaseException | None, trace: str) -> None:
        self.env_index = env_index
        self.error = error
        self.trace = trace

    def throw(self, num_envs: int) -> NoReturn:
        _raise_env_error(self.env_index, self.error, self.trace, num_envs)


def _raise_env_error(env_index: int, error: BaseException | None, trace: str | None, num_envs: int) -> NoReturn:
    what = f"{type(error).__name__}: {error}" if error is not None else "an exception that could not be pickled"
    message = f"env {env_index} (of {num_envs}) raised {what}"
    if trace is not None:
        message += f"\n--- traceback in the worker ---\n{trace}"
    raise VectorEnvError(message, env_index) from error


def make_vec(
    env_id: str | None,
    num_envs: int | None = None,
    *,
    mode: str = "sync",
    seed: int | None = None,
    copy: bool = True,
    num_workers: int | None = None,
    step_in_main: bool = False,
    spin: float | None = None,
    env_fns: Sequence[EnvFn] | None = None,
    context: str | None = None,
    timeout: float | None = None,
    **env_kwargs: Any,
) -> RoveVectorEnv:
    """Builds a :class:`RoveVectorEnv` of ``num_envs`` copies of the Rove env ``env_id``.

    Args:
        env_id: A Rove id (``"Rove/NetHackScore-v0"``; the ``"Rove/"`` prefix may be left out), or ``None``
            with ``env_fns``.
        num_envs: Number of envs (defaults to ``len(env_fns)``).
        mode: ``"sync"`` or ``"subprocess"``.
        seed: Seeds the first reset (env ``i`` gets ``seed + i``).
        copy: Whether ``reset``/``step`` return copies of the observation buffers (``False``: the buffers).
        num_workers: Subprocess mode: worker processes (default ``min(num_envs, cpu count)``, one fewer with
            ``step_in_main``).
        step_in_main: Subprocess mode: the main process steps the first slice of envs itself (see
            :class:`RoveVectorEnv`).
        spin: Subprocess mode: seconds to poll before blocking on a pipe (see :class:`RoveVectorEnv`).
        env_fns: Custom env constructors instead of ``env_id``.
        context: Subprocess mode: multiprocessing start method.
        timeout: Subprocess mode: seconds to wait for a live worker before raising ``TimeoutError``.
        **env_kwargs: Passed to ``gym.make`` for every env (e.g. ``observation_keys``). Envs that take
            ``copy_obs`` (Rove's NetHack) get ``copy_obs=False`` unless given: the vector env copies anyway.

    Returns:
        The vector env; call ``reset()`` first.
    """
    if mode not in MODES:
        raise ValueError(f"unknown vector env mode {mode!r}; choose from {list(MODES)}")
    if env_fns is not None:
        if env_id is not None or env_kwargs:
            raise ValueError("pass either env_id (with env kwargs) or env_fns, not both")
        env_fns = list(env_fns)
        if num_envs is None:
            num_envs = len(env_fns)
        if num_envs != len(env_fns):
            raise ValueError(f"num_envs={num_envs} but {len(env_fns)} env_fns were given")
    elif env_id is None:
        raise ValueError("make_vec needs an env_id or env_fns")
    if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
        raise ValueError(f"num_envs must be an integer >= 1, got {num_envs!r}")
    if env_fns is None:
        assert env_id is not None
        full_id = check_env_id(env_id)
        if "copy_obs" not in env_kwargs and _accepts_copy_obs(full_id):
            # The vector env copies every observation into its buffers, so the env need not copy it first.
            env_kwargs["copy_obs"] = False
        factory = _MakeEnv(full_id, dict(env_kwargs))
        env_fns = [factory] * int(num_envs)
    return RoveVectorEnv(
        env_fns,
        mode=mode,
        copy=copy,
        seed=seed,
        num_workers=num_workers,
        step_in_main=step_in_main,
        spin=spin,
        context=context,
        timeout=timeout,
    )


def _accepts_copy_obs(env_id: str) -> bool:
    """Whether the env class behind ``env_id`` takes ``copy_obs`` (Rove's NetHack adapter does)."""
    entry_point = gym.spec(env_id).entry_point
    try:
        creator = load_env_creator(entry_point) if isinstance(entry_point, str) else entry_point
        return creator is not None and "copy_obs" in inspect.signature(creator).parameters
    except (ImportError, AttributeError, TypeError, ValueError):
        return False
