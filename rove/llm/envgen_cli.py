"""``rove envgen CONFIG``: one EnvGen run (or its plain-PPO ``--baseline``) from a TOML config.

Kept apart from :mod:`rove.llm.envgen_train` so that building the ``rove`` parser imports nothing heavy.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any


def add_envgen_command(sub: Any) -> None:
    """Adds ``rove envgen CONFIG`` to the ``rove`` parser's subcommands."""
    p = sub.add_parser("envgen", help="EnvGen: train in LLM-designed Crafter worlds, then in Crafter (TOML config)")
    p.add_argument("config", help="EnvGen config (e.g. experiments/configs/envgen_crafter.toml)")
    p.add_argument("--seed", type=int, default=None, help="override the config's seed")
    p.add_argument("--baseline", action="store_true", help="plain PPO with the same settings and budget (no LLM)")
    p.add_argument("--run-dir", default=None, help="run folder (default runs/envgen/<config>_<envgen|ppo>_s<seed>)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_envgen)


def cmd_envgen(args: Any) -> int:
    """Runs or resumes one EnvGen (or ``--baseline``) run; prints the Crafter score of its window."""
    import sys

    import torch

    from rove.llm.envgen import EnvGenError
    from rove.llm.envgen_train import EnvGenConfig, baseline_of, run_envgen

    torch.set_num_threads(args.threads)
    try:
        config = EnvGenConfig.from_toml(args.config)
        if args.seed is not None:
            config = dataclasses.replace(config, seed=args.seed)
        if args.baseline:
            config = baseline_of(config)
        kind = "ppo" if args.baseline else "envgen"
        run_dir = args.run_dir or Path("runs") / "envgen" / f"{Path(args.config).stem}_{kind}_s{config.seed}"
        result = run_envgen(config, run_dir, progress=not args.no_progress)
    except (ValueError, EnvGenError, FileNotFoundError) as err:
        print(f"rove envgen: error: {err}", file=sys.stderr)
        return 2
    score = "n/a (no episode in the window)" if result["score"] is None else f"{result['score']:.2f} %"
    print(
        f"rove envgen: {run_dir}: {result['total_transitions']} transitions "
        f"({result['transitions']['generated']} in generated worlds); Crafter score over steps "
        f"{result['score_window'][0]}-{result['score_window'][1]}: {score} ({result['episodes']} episodes)"
    )
    return 0
