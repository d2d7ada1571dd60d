"""Pieces of the ``rove`` command that every subcommand shares: ``--version``, ``--import`` (plugins), defaults
in every ``--help``, and the ``rove envs`` listing."""

from __future__ import annotations

import argparse
from typing import Any

SUITE_TITLES = {"nethack": "NetHack", "minihack": "MiniHack", "crafter": "Crafter", "minigrid": "MiniGrid / BabyAI"}


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """argparse's ``ArgumentDefaultsHelpFormatter`` without the noise: the default is appended to options whose
    default is a value (not None, not an off flag) and whose help does not state it already."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            action.option_strings
            and default is not None
            and default is not False
            and default != argparse.SUPPRESS
            and "%(default)" not in text
            and "default" not in text
        ):
            text += " (default: %(default)s)"
        return text


def cmd_envs(args: argparse.Namespace) -> int:
    """``rove envs``: the registered ids, by suite."""
    from rove.envs import rove_ids

    suites = [args.suite] if args.suite else list(SUITE_TITLES)
    for suite in suites:
        ids = rove_ids(suite)
        print(f"{SUITE_TITLES[suite]} ({len(ids)})")
        for env_id in ids:
            print(f"  {env_id}")
    return 0


def finish_parser(parser: argparse.ArgumentParser, sub: Any) -> None:
    """Adds ``--version``, the ``envs`` subcommand, ``--import`` on every subcommand, and defaults in every
    ``--help`` to the parser that ``rove.cli.build_parser`` built."""
    import rove

    parser.add_argument("--version", action="version", version=f"rove {rove.__version__}", help="print the version")
    p = sub.add_parser("envs", help="list the registered env ids by suite")
    p.add_argument("--suite", choices=list(SUITE_TITLES), default=None, help="only this suite (default: all)")
    p.set_defaults(func=cmd_envs)
    add_run_tool_options(sub.choices["train"])
    add_report_options(sub.choices["report"])
    add_slurm_options(sub.choices["sweep"])
    parser.formatter_class = DefaultsHelpFormatter
    for command in sub.choices.values():
        command.formatter_class = DefaultsHelpFormatter
        command.add_argument(
            "--import",
            dest="imports",
            action="append",
            default=[],
            metavar="PATH_OR_MODULE",
            help="import a .py file or module first (its @rove.intrinsic.register modules become usable);"
            " repeatable. Installed packages' 'rove.intrinsic' entry points load without it",
        )


def prepare(args: argparse.Namespace) -> None:
    """Runs before any subcommand: imports the plugins (``--import``, ``ROVE_IMPORT``, entry points).

    Raises:
        ImportError: A plugin that cannot be imported.
    """
    from rove.experiments.plugins import activate

    activate(getattr(args, "imports", []) or [])


def add_run_tool_options(p: argparse.ArgumentParser) -> None:
    """``--eval-freq``, ``--eval-episodes``, the W&B options and trajectory recording (``rove train``)."""
    from rove.agents.common.tracking import MODES

    p.add_argument(
        "--eval-freq", type=int, default=0, help="evaluate every N env steps on a separate env, greedy (0: off)"
    )
    p.add_argument("--eval-episodes", type=int, default=5, help="episodes per evaluation")
    p.add_argument("--track", action="store_true", help="log to Weights & Biases")
    p.add_argument("--wandb-project", default="rove", help="W&B project")
    p.add_argument("--wandb-entity", default=None, help="W&B team or user (default: your default entity)")
    p.add_argument("--wandb-name", default=None, help="W&B run name (default: the run folder's name)")
    p.add_argument(
        "--wandb-mode",
        default=None,
        choices=list(MODES),
        help="online, offline or disabled (default: $WANDB_MODE, else online)",
    )
    p.add_argument("--wandb-group", default=None, help="W&B group (default: none)")
    p.add_argument(
        "--no-trajectories",
        action="store_true",
        help="do not record trajectories.bin (state keys and actions; rove report's exploration metrics)",
    )
    p.add_argument(
        "--trajectory-key", default="state_key", help="the int64 observation key recorded (default: state_key)"
    )


def run_tools(args: argparse.Namespace) -> Any:
    """The :class:`rove.experiments.run_tools.RunTools` of parsed ``rove train`` options."""
    from rove.experiments.run_tools import RunTools

    return RunTools(
        eval_freq=args.eval_freq,
        eval_episodes=args.eval_episodes,
        track=args.track,
        wandb_project=args.wandb_project,
        wandb_entity=args.wandb_entity,
        wandb_name=args.wandb_name,
        wandb_mode=args.wandb_mode,
        wandb_group=args.wandb_group,
        trajectories=not args.no_trajectories,
        trajectory_key=args.trajectory_key,
    )


def add_report_options(p: argparse.ArgumentParser) -> None:
    """Figure options of ``rove report``."""
    from rove.experiments.figures import FORMATS

    p.add_argument("--formats", default=",".join(FORMATS), help="figure files, comma-separated (png, pdf, svg)")
    p.add_argument(
        "--labels",
        action="append",
        metavar="METHOD=LABEL",
        help="method names in tables and legends, e.g. 'none=PPO,count=PPO + counts' (default: the method names)",
    )
    p.add_argument("--order", default=None, help="methods in this order, comma-separated (default: alphabetical)")
    p.add_argument("--smooth", type=int, default=1, help="trailing moving average over this many bins (1: none)")


def figure_style(args: argparse.Namespace) -> Any:
    """The :class:`rove.experiments.figures.FigureStyle` of parsed ``rove report`` options.

    Raises:
        ValueError: A malformed ``--labels`` entry or a bad format.
    """
    from rove.experiments.figures import FigureStyle

    labels: dict[str, str] = {}
    for item in args.labels or []:
        for part in item.split(","):
            if not part.strip():
                continue
            if "=" not in part:
                raise ValueError(f"--labels: expected METHOD=LABEL, got {part!r}")
            method, label = part.split("=", 1)
            labels[method.strip()] = label.strip()
    order = tuple(m.strip() for m in (args.order or "").split(",") if m.strip())
    formats = tuple(f.strip().lower().lstrip(".") for f in args.formats.split(",") if f.strip())
    return FigureStyle(formats=formats, labels=labels, order=order, smooth=args.smooth)


def add_slurm_options(p: argparse.ArgumentParser) -> None:
    """``rove sweep --launcher slurm`` resources (see :class:`rove.experiments.slurm.SlurmOptions`)."""
    from rove.experiments.slurm import CLUSTERS

    p.add_argument("--slurm-partition", default=None, help="SLURM partition (default: the cluster's default)")
    p.add_argument(
        "--slurm-time", type=int, default=240, help="minutes per job; a job that hits it requeues and resumes"
    )
    p.add_argument("--slurm-cpus", type=int, default=None, help="CPUs per job (default: --threads)")
    p.add_argument("--slurm-gpus", type=int, default=0, help="GPUs per job (with device = 'cuda' in the config)")
    p.add_argument("--slurm-mem-gb", type=float, default=None, help="memory per job in GB (default: the partition's)")
    p.add_argument("--slurm-parallelism", type=int, default=None, help="most jobs running at once (default: no cap)")
    p.add_argument("--slurm-account", default=None, help="SLURM --account (default: none)")
    p.add_argument("--slurm-qos", default=None, help="SLURM --qos (default: none)")
    p.add_argument("--slurm-constraint", default=None, help="SLURM --constraint (default: none)")
    p.add_argument("--slurm-folder", default=None, help="submitit logs and pickles (default: OUT/slurm)")
    p.add_argument(
        "--slurm-cluster",
        default=None,
        choices=list(CLUSTERS),
        help="submitit backend (default: slurm where sbatch exists, else local processes)",
    )


def slurm_options(args: argparse.Namespace) -> Any:
    """The :class:`rove.experiments.slurm.SlurmOptions` of parsed ``rove sweep`` options."""
    from rove.experiments.slurm import SlurmOptions

    return SlurmOptions(
        partition=args.slurm_partition,
        time_min=args.slurm_time,
        cpus_per_task=args.slurm_cpus,
        gpus_per_node=args.slurm_gpus,
        mem_gb=args.slurm_mem_gb,
        parallelism=args.slurm_parallelism,
        folder=args.slurm_folder,
        cluster=args.slurm_cluster,
        account=args.slurm_account,
        qos=args.slurm_qos,
        constraint=args.slurm_constraint,
    )
