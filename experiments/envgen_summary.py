"""Table of EnvGen vs plain-PPO runs (``rove envgen ...`` and ``rove envgen ... --baseline`` folders).

    python experiments/envgen_summary.py RUN_DIR [RUN_DIR ...] --out experiments/results/envgen_crafter

Each folder's ``result.json`` gives the Crafter score over the original-game episodes of the score window
(the same window for both methods); the table has the mean over the folders of each method, per seed, and
the per-achievement success rates. ``--out`` also copies each run's ``result.json`` (and, for EnvGen, the
worlds, feedback and conversation of ``envgen.json``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
from pathlib import Path

from rove.experiments.crafter_score import ACHIEVEMENTS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders holding result.json")
    parser.add_argument("--out", type=Path, default=None, help="folder for summary.md and the runs' JSON")
    args = parser.parse_args()
    rows: dict[str, list[tuple[str, dict]]] = {}
    for run in args.runs:
        result = json.loads((run / "result.json").read_text())
        config = json.loads((run / "envgen.json").read_text())["config"]
        method = "EnvGen" if config["cycles"] > 0 else "PPO"
        rows.setdefault(method, []).append((run.name, result))
    lines = [
        "| method | runs | Crafter score (%) per seed | mean | transitions (generated + original) | episodes scored |",
        "|---|---:|---|---:|---|---|",
    ]
    for method, results in rows.items():
        scores = [r["score"] or 0.0 for _, r in results]
        trans = ", ".join(f"{r['transitions']['generated']} + {r['transitions']['original']}" for _, r in results)
        lines.append(
            f"| {method} | {len(results)} | {', '.join(f'{s:.2f}' for s in scores)} | {statistics.mean(scores):.2f} "
            f"| {trans} | {', '.join(str(r['episodes']) for _, r in results)} |"
        )
    window = next(iter(rows.values()))[0][1]["score_window"]
    lines += [
        "",
        f"Success rates (%) over the episodes that ended in steps {window[0]}-{window[1]}, mean over runs:",
        "",
    ]
    lines += ["| achievement | " + " | ".join(rows) + " |", "|---|" + "---:|" * len(rows)]
    for name in ACHIEVEMENTS:
        values = [statistics.mean(r["rates"].get(name, 0.0) for _, r in results) for results in rows.values()]
        lines.append(f"| {name} | " + " | ".join(f"{v:.1f}" for v in values) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "summary.md").write_text(text)
        for run in args.runs:
            shutil.copy(run / "result.json", args.out / f"{run.name}_result.json")
            state = json.loads((run / "envgen.json").read_text())
            if state["config"]["cycles"] > 0:
                keep = {k: state[k] for k in ("config", "cycles", "phases", "conversation") if k in state}
                (args.out / f"{run.name}_envgen.json").write_text(json.dumps(keep, indent=2) + "\n")


if __name__ == "__main__":
    main()
