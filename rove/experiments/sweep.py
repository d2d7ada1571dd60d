"""``rove sweep``: a grid of envs x methods x seeds from a TOML config, run by local processes or on Ray.

A config (see ``experiments/configs/``)::

    name = "minigrid_hard"                  # default output folder: runs/<name>
    envs = ["Rove/MiniGrid-DoorKey-16x16-v0"]
    methods = [
        "none", "count", "rnd", "count+rnd",    # "none", a module name, or names joined by "+" (fusion)
        { label = "count-episodic", intrinsic = ["count"], kwargs = { mode = "episodic" } },
        { label = "sb3", agent = "sb3" },    # Stable-Baselines3's PPO, same [agent] options, same run folder
        { label = "ppo-vf1", agent_kwargs = { vf_coef = 1.0 } },   # over [agent], for this method only
    ]
    seeds = 3                               # or a list: [0, 1, 2]
    total_timesteps = 1_000_000
    n_envs = 16
    device = "auto"

    [agent]                                 # rove.agents.PPO options for every run
    n_steps = 128

    [intrinsic_kwargs.rnd]                  # options of a module wherever it is used
    update_proportion = 0.25

    [eval]                                  # greedy evaluation every `freq` steps (evaluations.jsonl)
    freq = 50_000
    episodes = 10

    [track]                                 # Weights & Biases (project, entity, mode, group = the name)
    project = "rove"

    [record]                                # trajectories.bin (on by default; the exploration metrics)
    trajectories = true
    key = "state_key"                       # the observation key recorded, e.g. MiniGrid's "pose_key"

    [env_kwargs]                            # options of every env and of the vector env (rove.make_vec)
    max_steps = 500
    mode = "subprocess"                     # with step_in_main = true, as the README advises for NetHack

Every run lands in ``<out>/{env}__{method}__{seed}__{time}`` (:mod:`rove.experiments.runs`), whichever
launcher ran it, so ``rove report <out>`` reads both alike. A method's ``agent`` is ``"ppo"`` (Rove's PPO, the
default) or ``"sb3"`` (Stable-Baselines3's PPO given the same ``[agent]`` options, plain PPO without intrinsic
modules or run tools; :mod:`rove.experiments.sb3_runs`), so one sweep compares the two at equal settings
and equal env transitions. Sweeps resume: a run whose finished folder
(``result.json``, same spec) exists is skipped; a local run that was killed resumes in its folder from
the checkpoint taken after its last update (``rove.experiments.runs.train_run(resume=True)``). Ray runs train
in a scratch folder on their node, so an interrupted Ray run starts again.
"""

from __future__ import annotations

import io
import sys
import tarfile
import tempfile
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rove.experiments.args import parse_steps
from rove.experiments.run_tools import RunTools, callbacks, tools_from_config
from rove.experiments.runs import AGENTS, RunSpec, finished_run, train_run, write_json_atomic
from rove.experiments.validate import unknown

LAUNCHERS = ("local", "ray", "slurm")
# Every top-level key a config may hold (a new key is added here and read in parse_config).
_TOP_KEYS = {
    "name",
    "envs",
    "methods",
    "seeds",
    "total_timesteps",
    "n_envs",
    "device",
    "agent",
    "intrinsic_kwargs",
    "env_kwargs",
    "eval",
    "track",
    "record",
    "out",
}
_TABLES = {"agent": dict, "intrinsic_kwargs": dict, "env_kwargs": dict, "eval": dict, "track": dict, "record": dict}
_METHOD_KEYS = ["label", "intrinsic", "kwargs", "agent", "agent_kwargs"]


@dataclass(frozen=True)
class Method:
    """One row of the method axis: a label, the intrinsic modules (none, one, or several fused) and the
    agent (``"ppo"``: Rove's, ``"sb3"``: Stable-Baselines3's)."""

    label: str
    intrinsic: tuple[str, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)
    agent: str = "ppo"
    agent_kwargs: dict[str, Any] = field(default_factory=dict)  # over the config's [agent] table


@dataclass
class SweepConfig:
    """A parsed sweep config (see the module docstring for the file format)."""

    name: str
    envs: list[str]
    methods: list[Method]
    seeds: list[int]
    total_timesteps: int
    n_envs: int = 8
    device: str = "auto"
    agent: dict[str, Any] = field(default_factory=dict)
    intrinsic_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)
    out: str | None = None
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    tools: dict[str, Any] = field(default_factory=dict)  # rove.experiments.run_tools.RunTools of every run

    def specs(self) -> list[RunSpec]:
        """The grid, env-major then method then seed."""
        return [self.spec(env, method, seed) for env in self.envs for method in self.methods for seed in self.seeds]

    def check(self, here: bool = True) -> None:
        """Checks every run's options against the agent's and the modules' signatures
        (:func:`rove.experiments.validate.check_spec`; ``here``: the device must exist on this machine).

        Raises:
            ValueError: One line naming the method and the bad key or value.
        """
        from rove.experiments.validate import check_spec

        if not self.envs:
            return
        sb3 = [m.label for m in self.methods if m.agent == "sb3"]
        if sb3 and (self.tools.get("eval_freq") or self.tools.get("track")):
            raise ValueError(f"method(s) {sb3} run agent 'sb3', which takes no [eval] or [track] (Rove callbacks)")
        if self.env_kwargs:  # building each env once is the only way to check every env's own options
            from rove.experiments.env_options import check_env_kwargs

            for env in self.envs:
                check_env_kwargs(env, self.env_kwargs)
        for method in self.methods:
            try:
                spec = self.spec(self.envs[0], method, self.seeds[0] if self.seeds else 0)
                if method.agent == "sb3":
                    from rove.experiments import sb3_runs

                    sb3_runs.check_spec(spec, here)
                else:
                    check_spec(spec, here)
            except ValueError as err:
                raise ValueError(f"method {method.label!r}: {err}") from None

    def spec(self, env: str, method: Method, seed: int) -> RunSpec:
        kwargs: dict[str, Any]
        if len(method.intrinsic) == 1:
            kwargs = {**self.intrinsic_kwargs.get(method.intrinsic[0], {}), **method.kwargs}
        else:
            members = {n: dict(self.intrinsic_kwargs[n]) for n in method.intrinsic if n in self.intrinsic_kwargs}
            kwargs = {**members, **method.kwargs}
        default_label = "sb3" if method.agent == "sb3" else "+".join(method.intrinsic) or "none"
        return RunSpec(
            env_id=env,
            intrinsic=method.intrinsic,
            seed=seed,
            total_timesteps=self.total_timesteps,
            n_envs=self.n_envs,
            intrinsic_kwargs=kwargs,
            agent_kwargs={**self.agent, **method.agent_kwargs},
            env_kwargs=dict(self.env_kwargs),
            device=self.device,
            label=None if method.label == default_label else method.label,
            agent=method.agent,
        )


def _parse_method(entry: Any) -> Method:
    if isinstance(entry, str):
        names = () if entry in ("none", "ppo", "") else tuple(n.strip() for n in entry.split("+"))
        return Method(entry if names else "none", names)
    if isinstance(entry, Mapping):
        for key in entry:
            if key not in _METHOD_KEYS:
                raise unknown("unknown key in a methods table", key, _METHOD_KEYS)
        intrinsic = entry.get("intrinsic", [])
        names = (intrinsic,) if isinstance(intrinsic, str) else tuple(intrinsic)
        agent = entry.get("agent", "ppo")
        if agent not in AGENTS:
            raise unknown(f"method {entry.get('label') or names!r}: unknown agent", agent, AGENTS)
        label = entry.get("label") or ("sb3" if agent == "sb3" else "+".join(names) if names else "none")
        agent_kwargs = entry.get("agent_kwargs", {})
        if not isinstance(agent_kwargs, Mapping):
            raise ValueError(f"method {label!r}: agent_kwargs must be a table of agent options, got {agent_kwargs!r}")
        return Method(label, names, dict(entry.get("kwargs", {})), agent, dict(agent_kwargs))
    raise ValueError(f"a method must be a string or a table, got {entry!r}")


def parse_config(data: Mapping[str, Any], source: str = "config") -> SweepConfig:
    """Validates a config dict (a parsed TOML file) and checks env ids and module names early."""
    from rove.envs import check_env_id
    from rove.intrinsic import names as module_names

    for key in data:
        if key not in _TOP_KEYS:
            raise unknown(f"{source}: unknown key", key, sorted(_TOP_KEYS))
    for key in ("envs", "methods", "seeds", "total_timesteps"):
        if key not in data:
            raise ValueError(f"{source}: missing required key {key!r}")
    for key in ("envs", "methods", "seeds"):
        if data[key] in ([], 0):
            raise ValueError(f"{source}: {key!r} is empty: the sweep would run nothing")
    for key, kind in _TABLES.items():
        if key in data and not isinstance(data[key], kind):
            raise ValueError(f"{source}: {key!r} must be a {kind.__name__}, got {data[key]!r}")
    envs = [check_env_id(e) for e in data["envs"]]
    methods = [_parse_method(m) for m in data["methods"]]
    valid = module_names()
    for m in methods:
        for n in m.intrinsic:
            if n not in valid:
                raise unknown(f"{source}: method {m.label!r}: unknown intrinsic module", n, valid)
    labels = [m.label for m in methods]
    if len(set(labels)) != len(labels):
        raise ValueError(f"{source}: method labels must be unique, got {labels}")
    used = {n for m in methods for n in m.intrinsic}
    for name, table in data.get("intrinsic_kwargs", {}).items():
        if name not in valid:
            raise unknown(f"{source}: [intrinsic_kwargs.{name}]: unknown intrinsic module", name, valid)
        if name not in used:
            raise ValueError(
                f"{source}: [intrinsic_kwargs.{name}] is used by no method (methods use: {', '.join(sorted(used)) or 'none'})"
            )
        if not isinstance(table, Mapping):
            raise ValueError(f"{source}: intrinsic_kwargs.{name} must be a table of options, got {table!r}")
    seeds = data["seeds"]
    seeds = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    try:
        total_timesteps = parse_steps(data["total_timesteps"])
    except ValueError as err:
        raise ValueError(f"{source}: total_timesteps: {err}") from None
    config = SweepConfig(
        name=str(data.get("name", Path(source).stem)),
        envs=envs,
        methods=methods,
        seeds=seeds,
        total_timesteps=total_timesteps,
        n_envs=int(data.get("n_envs", 8)),
        device=str(data.get("device", "auto")),
        agent=dict(data.get("agent", {})),
        intrinsic_kwargs={k: dict(v) for k, v in data.get("intrinsic_kwargs", {}).items()},
        out=data.get("out"),
        env_kwargs=dict(data.get("env_kwargs", {})),
        tools=tools_from_config(data, str(data.get("name", Path(source).stem)), source).to_dict(),
    )
    try:
        config.check(here=False)  # device availability is checked where the runs are launched
    except ValueError as err:
        raise ValueError(f"{source}: {err}") from None
    return config


def load_config(path: str | Path) -> SweepConfig:
    """Reads a TOML sweep config."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such sweep config: {path}")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{path}: invalid TOML ({err})") from err
    return parse_config(data, str(path))


def plan(specs: Sequence[RunSpec], root: str | Path) -> tuple[list[RunSpec], list[Path]]:
    """Splits ``specs`` into runs still to do and the folders of runs already finished."""
    todo, done = [], []
    for spec in specs:
        path = finished_run(root, spec)
        if path is None:
            todo.append(spec)
        else:
            done.append(path)
    return todo, done


def _local_worker(
    spec_dict: dict[str, Any], root: str, threads: int, tools: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Process-pool entry point: never raises, so one failed run does not stop the sweep."""
    spec = RunSpec.from_dict(spec_dict)
    try:
        extra = callbacks(spec, RunTools.from_dict(tools or {}))
        return train_run(spec, root, threads=threads, resume=True, callbacks=extra)
    except Exception:
        return {"error": traceback.format_exc(), "method": spec.method, "env_id": spec.env_id, "seed": spec.seed}


def _progress(total: int, show: bool, desc: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="run", disable=not show, dynamic_ncols=True)


def run_local(
    specs: Sequence[RunSpec],
    root: str | Path,
    workers: int = 1,
    threads: int = 1,
    progress: bool = True,
    tools: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Runs ``specs`` in ``workers`` fresh processes (spawned, one run per process) and returns their results.

    A failed run's result holds ``"error"`` (its traceback) instead of metrics.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    results: list[dict[str, Any]] = []
    if not specs:
        return results
    context = multiprocessing.get_context("spawn")
    bar = _progress(len(specs), progress, "sweep (local)")
    # A fresh process per run (3.11+): no state (torch threads, module caches) leaks from one run to the next.
    fresh: dict[str, Any] = {"max_tasks_per_child": 1} if sys.version_info >= (3, 11) else {}
    with ProcessPoolExecutor(max_workers=min(workers, len(specs)), mp_context=context, **fresh) as pool:  # type: ignore[call-overload]
        futures = [pool.submit(_local_worker, s.to_dict(), str(root), threads, tools) for s in specs]
        for future in as_completed(futures):
            result = future.result()
            results.append(result)
            bar.set_postfix_str(_describe(result), refresh=False)
            bar.update(1)
    bar.close()
    return results


def _describe(result: Mapping[str, Any]) -> str:
    name = f"{str(result.get('env_id', '?')).split('/')[-1]} {result.get('method')} s{result.get('seed')}"
    if "error" in result:
        return f"{name}: FAILED"
    return f"{name}: return {result.get('final_return', float('nan')):.3g}"


def _ray_train(
    spec_dict: dict[str, Any], threads: int, tools: dict[str, Any] | None = None
) -> tuple[dict[str, Any], bytes]:
    """Ray task: trains in a temporary folder on whichever node runs it and returns the run folder as a
    gzipped tar, so results land on the driver's disk without a shared filesystem."""
    spec = RunSpec.from_dict(spec_dict)
    with tempfile.TemporaryDirectory(prefix="rove-ray-") as tmp:
        try:
            result = train_run(spec, tmp, threads=threads, callbacks=callbacks(spec, RunTools.from_dict(tools or {})))
        except Exception:
            return {
                "error": traceback.format_exc(),
                "method": spec.method,
                "env_id": spec.env_id,
                "seed": spec.seed,
            }, b""
        run_dir = Path(result["run_dir"])
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            tar.add(run_dir, arcname=run_dir.name)
        return result, buffer.getvalue()


def _unpack(blob: bytes, root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
        members = tar.getmembers()
        unsafe = [m.name for m in members if m.name.startswith("/") or ".." in Path(m.name).parts]
        if unsafe:
            raise ValueError(f"a Ray run archive holds paths outside its folder: {unsafe[:3]}")
        names = {m.name.split("/", 1)[0] for m in members}
        if len(names) != 1:
            raise ValueError(f"a Ray run archive must hold one run folder, got {sorted(names)}")
        if hasattr(tarfile, "data_filter"):
            tar.extractall(root, filter="data")
        else:  # Python < 3.10.12 / 3.11.4: the names were checked above
            tar.extractall(root)
    return root / names.pop()


def run_ray(
    specs: Sequence[RunSpec],
    root: str | Path,
    address: str | None = None,
    workers: int | None = None,
    threads: int = 1,
    progress: bool = True,
    num_gpus_per_run: float = 0.0,
    tools: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Runs ``specs`` as Ray tasks (one per run, ``num_cpus=threads``) and unpacks each run folder under ``root``.

    Args:
        address: A running cluster (``"auto"``, ``"ray://host:10001"``, ``"host:6379"``); None starts a local
            Ray instance with ``workers`` CPUs (default: all).
        workers: CPUs of a local instance; with ``address``, at most this many runs in flight (None: no cap).
        num_gpus_per_run: GPUs each task reserves (fractions share a GPU); pair with ``device="cuda"``.
    """
    try:
        import ray
    except ImportError as err:
        raise ImportError("the Ray launcher needs Ray: pip install 'rove[ray]'") from err

    root = Path(root)
    results: list[dict[str, Any]] = []
    if not specs:
        return results
    started_here = False
    if not ray.is_initialized():
        if address is None:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
        started_here = True
    try:
        task = ray.remote(num_cpus=threads, num_gpus=num_gpus_per_run, max_retries=0)(_ray_train)
        queue = [s.to_dict() for s in specs]
        limit = workers if (workers is not None and address is not None) else len(queue)
        in_flight: list[Any] = []
        bar = _progress(len(queue), progress, "sweep (ray)")
        while queue or in_flight:
            while queue and len(in_flight) < limit:
                in_flight.append(task.remote(queue.pop(0), threads, tools))
            ready, in_flight = ray.wait(in_flight, num_returns=1)
            try:
                result, blob = ray.get(ready[0])
            except Exception:
                result, blob = {"error": traceback.format_exc()}, b""
            if blob:
                result["run_dir"] = str(_unpack(blob, root))
            results.append(result)
            bar.set_postfix_str(_describe(result), refresh=False)
            bar.update(1)
        bar.close()
    finally:
        if started_here:
            ray.shutdown()
    return results


def run_sweep(
    config: SweepConfig,
    out: str | Path | None = None,
    *,
    launcher: str = "local",
    workers: int = 1,
    address: str | None = None,
    threads: int = 1,
    progress: bool = True,
    log: Callable[[str], None] = print,
    slurm: Any = None,
) -> dict[str, Any]:
    """Runs the runs of ``config`` not finished yet under ``out`` (default ``config.out`` or ``runs/<name>``).

    ``slurm`` (a :class:`rove.experiments.slurm.SlurmOptions`) sets the jobs' resources of ``launcher="slurm"``.

    Returns:
        ``{"out": Path, "skipped": [paths], "results": [...], "failed": [...]}``.
    """
    if launcher not in LAUNCHERS:
        raise ValueError(f"unknown launcher {launcher!r}; choose from {list(LAUNCHERS)}")
    config.check(here=launcher == "local")  # before any folder exists
    root = Path(out or config.out or Path("runs") / config.name)
    specs = config.specs()
    todo, done = plan(specs, root)
    log(f"sweep {config.name!r}: {len(specs)} runs, {len(done)} already finished, {len(todo)} to run -> {root}")
    root.mkdir(parents=True, exist_ok=True)
    write_json_atomic(
        root / "sweep.json",
        {"name": config.name, "started": time.strftime("%Y-%m-%d %H:%M:%S"), "runs": [s.to_dict() for s in specs]},
    )
    if launcher == "local":
        results = run_local(todo, root, workers=workers, threads=threads, progress=progress, tools=config.tools)
    elif launcher == "slurm":
        from rove.experiments.slurm import run_slurm

        results = run_slurm(todo, root, slurm, threads=threads, progress=progress, tools=config.tools)
    else:
        results = run_ray(
            todo, root, address=address, workers=workers, threads=threads, progress=progress, tools=config.tools
        )
    failed = [r for r in results if "error" in r]
    for r in failed:
        log(f"run {r.get('env_id')} {r.get('method')} seed {r.get('seed')} failed:\n{r['error']}")
    return {"out": root, "skipped": done, "results": results, "failed": failed}
