"""Weights & Biases tracking: every value the agent logs (``rollout/``, ``train/``, ``intrinsic/<name>/``,
``eval/``, ``time/``) also goes to a W&B run, at the same env step.

Reference: CleanRL's ``--track`` (vwxyzjn/cleanrl, ``cleanrl/ppo.py``: ``wandb.init(project, entity, name,
config=vars(args), sync_tensorboard=True)``). Deviation: values are sent by a logger writer rather than by
syncing the TensorBoard files, so W&B gets the same keys and steps without a TensorBoard dependency in the
loop; a resumed run folder continues the same W&B run (its id is kept in ``run_dir/wandb_id``).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rove.agents.common.callbacks import BaseCallback
from rove.agents.common.logger import Writer

MODES = ("online", "offline", "disabled")
ID_FILE = "wandb_id"


@dataclass(frozen=True)
class TrackOptions:
    """Where a run goes in W&B.

    Args:
        project: W&B project.
        entity: Team or user (None: the logged-in user's default).
        name: Run name (None: the run folder's name, ``{env}__{method}__{seed}__{time}``).
        mode: ``"online"``, ``"offline"`` (write locally, ``wandb sync`` later) or ``"disabled"``; None lets
            ``WANDB_MODE`` decide (online when unset).
        group: Runs grouped together in the UI (e.g. a sweep's name).
    """

    project: str = "rove"
    entity: str | None = None
    name: str | None = None
    mode: str | None = None
    group: str | None = None

    def __post_init__(self) -> None:
        if self.mode is not None and self.mode not in MODES:
            raise ValueError(f"unknown W&B mode {self.mode!r}; choose from {list(MODES)}")


class WandbWriter(Writer):
    """Logs numeric values of each ``Logger.dump`` to a W&B run at ``step``."""

    def __init__(self, run: Any) -> None:
        self.run = run

    def write(self, values: dict[str, Any], step: int) -> None:
        numbers = {
            k: float(v)
            for k, v in values.items()
            if isinstance(v, (int, float, np.number)) and not isinstance(v, bool) and np.isfinite(v)
        }
        if numbers:
            self.run.log(numbers, step=int(step))


class WandbCallback(BaseCallback):
    """Starts (or resumes) a W&B run when training starts and adds a :class:`WandbWriter` to the agent's logger.

    The run's config is the agent's ``config()`` plus ``extra_config`` (e.g. the run spec).
    """

    def __init__(self, options: TrackOptions, extra_config: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.options = options
        self.extra_config = dict(extra_config or {})
        self.run: Any = None

    def _init_callback(self) -> None:
        try:
            import wandb
        except ImportError as err:
            raise ImportError("--track needs Weights & Biases: pip install wandb") from err
        assert self.model is not None and self.model.logger is not None
        if self.run is not None:
            return
        run_dir = self.model.run_dir
        run_id = None
        if run_dir is not None:
            id_file = Path(run_dir) / ID_FILE
            run_id = id_file.read_text().strip() if id_file.is_file() else secrets.token_hex(4)
            id_file.write_text(run_id + "\n")
        self.run = wandb.init(
            project=self.options.project,
            entity=self.options.entity,
            name=self.options.name or (Path(run_dir).name if run_dir is not None else None),
            group=self.options.group,
            mode=self.options.mode,  # type: ignore[arg-type]
            dir=str(run_dir) if run_dir is not None else None,
            id=run_id,
            resume="allow" if run_id is not None else None,
            config={**self.model.config(), **self.extra_config},
            reinit="create_new",
        )
        self.model.logger.writers.append(WandbWriter(self.run))

    def _on_training_end(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None
