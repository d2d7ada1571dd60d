"""The SLURM launcher of ``rove sweep`` (``--launcher slurm``): one job per run through ``submitit``, as a job
array, each training straight into the sweep's folder on the cluster's shared filesystem.

A job that reaches its time limit or is preempted is requeued by submitit and resumes from the checkpoint of
its last update (``train_run(resume=True)``); a run whose finished folder exists is never submitted (the
sweep's usual skip). submitit's ``local`` executor runs the same jobs as local processes (tests, debugging).

Reference: facebookincubator/submitit, ``submitit/helpers.py`` (``Checkpointable``: ``checkpoint()`` returns
the ``DelayedSubmission`` that requeues the job) and ``docs/examples.md`` (``executor.batch()`` job arrays).
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rove.experiments.runs import RunSpec, train_run

CLUSTERS = ("slurm", "local", "debug")


@dataclass(frozen=True)
class SlurmOptions:
    """Resources of each run's job.

    Args:
        partition: SLURM partition (None: the cluster's default).
        time_min: Time limit per job, minutes (a job that hits it is requeued and resumes).
        cpus_per_task: CPUs per job (None: the sweep's ``--threads``).
        gpus_per_node: GPUs per job (pair with ``device = "cuda"`` in the config).
        mem_gb: Memory per job.
        parallelism: Most jobs of the array running at once (None: no cap).
        folder: submitit's logs and pickles (None: ``<out>/slurm``).
        cluster: ``"slurm"``, or submitit's ``"local"`` (processes on this machine) / ``"debug"`` (in this
            process); None picks SLURM where ``sbatch`` exists, else local.
        account, qos, constraint: Passed as ``--account``, ``--qos``, ``--constraint`` when given.
    """

    partition: str | None = None
    time_min: int = 240
    cpus_per_task: int | None = None
    gpus_per_node: int = 0
    mem_gb: float | None = None
    parallelism: int | None = None
    folder: str | None = None
    cluster: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None

    def __post_init__(self) -> None:
        if self.cluster is not None and self.cluster not in CLUSTERS:
            raise ValueError(f"unknown submitit cluster {self.cluster!r}; choose from {list(CLUSTERS)}")
        if self.time_min < 1:
            raise ValueError(f"time_min must be >= 1, got {self.time_min}")

    def executor(self, root: Path, threads: int) -> Any:
        """The configured ``submitit.AutoExecutor``."""
        try:
            import submitit
        except ImportError as err:
            raise ImportError("the SLURM launcher needs submitit: pip install 'rove[slurm]'") from err
        folder = Path(self.folder) if self.folder is not None else root / "slurm"
        executor = submitit.AutoExecutor(folder=folder, cluster=self.cluster)
        params: dict[str, Any] = {
            "name": f"rove-{root.name}",
            "timeout_min": self.time_min,
            "cpus_per_task": self.cpus_per_task or threads,
            "gpus_per_node": self.gpus_per_node,
        }
        if self.mem_gb is not None:
            params["mem_gb"] = self.mem_gb
        if executor.cluster == "slurm":
            extra = {"account": self.account, "qos": self.qos, "constraint": self.constraint}
            params["slurm_additional_parameters"] = {k: v for k, v in extra.items() if v is not None}
            if self.partition is not None:
                params["slurm_partition"] = self.partition
            if self.parallelism is not None:
                params["slurm_array_parallelism"] = self.parallelism
        executor.update_parameters(**params)
        return executor


class TrainJob:
    """A run as a submitit job: trains (resuming from the run's checkpoint when there is one) and, on a timeout
    or preemption, asks submitit to requeue itself (``submitit.helpers.Checkpointable``'s protocol)."""

    def __init__(self, spec: dict[str, Any], root: str, threads: int, tools: dict[str, Any] | None = None) -> None:
        self.spec, self.root, self.threads, self.tools = spec, root, threads, dict(tools or {})

    def __call__(self) -> dict[str, Any]:
        from rove.experiments.run_tools import RunTools, callbacks

        spec = RunSpec.from_dict(self.spec)
        try:
            extra = callbacks(spec, RunTools.from_dict(self.tools))
            return train_run(spec, self.root, threads=self.threads, resume=True, callbacks=extra)
        except Exception:
            return {"error": traceback.format_exc(), "method": spec.method, "env_id": spec.env_id, "seed": spec.seed}

    def checkpoint(self) -> Any:
        import submitit

        return submitit.helpers.DelayedSubmission(TrainJob(self.spec, self.root, self.threads, self.tools))


def run_slurm(
    specs: Sequence[RunSpec],
    root: str | Path,
    options: SlurmOptions | None = None,
    threads: int = 1,
    progress: bool = True,
    poll_s: float = 0.5,
    tools: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Submits ``specs`` as one job array and waits for every job; returns their results (a failed run's holds
    ``"error"``), as the other launchers do."""
    from rove.experiments.sweep import _describe, _progress

    options = options or SlurmOptions()
    root = Path(root).resolve()
    if not specs:
        return []
    executor = options.executor(root, threads)
    with executor.batch():
        jobs = [executor.submit(TrainJob(s.to_dict(), str(root), threads, tools)) for s in specs]
    bar = _progress(len(jobs), progress, f"sweep ({executor.cluster})")
    results: list[dict[str, Any]] = []
    pending = list(zip(jobs, specs, strict=True))
    while pending:
        still = []
        for job, spec in pending:
            if not job.done():
                still.append((job, spec))
                continue
            try:
                result = job.result()
            except Exception:  # the job itself failed (killed, out of memory, cancelled)
                result = {"error": traceback.format_exc(), "method": spec.method, "env_id": spec.env_id}
                result["seed"] = spec.seed
            results.append(result)
            bar.set_postfix_str(_describe(result), refresh=False)
            bar.update(1)
        pending = still
        if pending:
            time.sleep(poll_s)
    bar.close()
    return results
