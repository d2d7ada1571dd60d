"""``rove llm ...`` commands (also ``python -m rove.llm ...``): Motif's offline pipeline and store tools."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from rove.llm.prompts import GAMES, GOALS


def _backend_config(args: argparse.Namespace) -> dict[str, Any]:
    if args.backend:
        return (
            json.loads(args.backend)
            if args.backend.strip().startswith("{")
            else {"type": "transformers", "path": args.backend}
        )
    return {
        "type": "openai",
        "base_url": args.base_url,
        "model": args.model,
        "timeout": args.timeout,
        "max_retries": args.retries,
        "concurrency": args.concurrency,
        "temperature": args.temperature,
    }


def _cmd_collect(args: argparse.Namespace) -> int:
    from rove.llm.pipeline import collect

    dataset = collect(args.env, args.steps, args.out, seed=args.seed)
    print(f"{len(dataset)} unique captions from {dataset.total} observations -> {args.out}")
    return 0


def _cmd_pairs(args: argparse.Namespace) -> int:
    from rove.llm.captions import CaptionDataset
    from rove.llm.pipeline import make_pairs
    from rove.llm.store import AnnotationStore

    store = AnnotationStore(args.store)
    added = make_pairs(store, CaptionDataset.load(args.captions), args.num_pairs, seed=args.seed)
    print(f"queued {added} new pairs; store: {store.pair_counts()}")
    return 0


def _cmd_annotate(args: argparse.Namespace) -> int:
    from rove.llm.backends import BackendError
    from rove.llm.pipeline import annotate
    from rove.llm.store import AnnotationStore

    if args.limit is not None and args.limit < 0:
        print(f"error: --limit must be >= 0, got {args.limit}", file=sys.stderr)
        return 2
    store = AnnotationStore(args.store)
    try:
        counts = annotate(
            store,
            _backend_config(args),
            game=args.game,
            goal=args.goal,
            style=args.prompt_style,
            chunk_size=args.chunk_size,
            limit=args.limit,
            max_attempts=args.max_attempts,
        )
    except BackendError as err:
        print(
            f"error: {err}\nanswered pairs are saved; rerun the same command to resume. {store.pair_counts()}",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print(f"\ninterrupted; rerun to resume. {store.pair_counts()}", file=sys.stderr)
        return 130
    print(f"store: {counts}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from rove.llm.pipeline import train
    from rove.llm.store import AnnotationStore

    report = train(
        AnnotationStore(args.store),
        args.out,
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        val_fraction=args.val_fraction,
        quantile=None if args.quantile < 0 else args.quantile,
        seed=args.seed,
        device=args.device,
        encoder=args.encoder,
    )
    print(
        f"trained on {report.num_train} pairs; held-out pairs: {report.num_val}, "
        f"accuracy {report.val_accuracy:.3f}, loss {report.val_loss:.4f} -> {args.out}"
    )
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from rove.llm.store import AnnotationStore

    print(f"wrote {AnnotationStore(args.store).export_jsonl(args.out)} records -> {args.out}")
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    from rove.llm.store import AnnotationStore

    store = AnnotationStore(args.store)
    print(f"read {store.import_jsonl(args.file)} records; store: {store.pair_counts()}")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from rove.llm.store import AnnotationStore

    store = AnnotationStore(args.store)
    print(
        json.dumps(
            {
                "captions": len(store.captions()),
                "pairs": store.pair_counts(),
                "labels": len(store.labels()),
                "label_counts": store.label_counts(),
            }
        )
    )
    return 0


def add_llm_commands(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Adds the ``llm`` command (with its sub-commands) to a parent parser's subparsers."""
    llm = subparsers.add_parser("llm", help="LLM-preference rewards (Motif, ONI): captions, annotation, reward models")
    sub = llm.add_subparsers(dest="llm_command", required=True)

    p = sub.add_parser("collect", help="roll out a random policy and save the unique captions with counts")
    p.add_argument("--env", required=True, help="env id, e.g. Rove/NetHackScore-v0")
    p.add_argument("--steps", type=int, default=100_000, help="env steps to roll out")
    p.add_argument("--out", default="captions.json", help="caption dataset (JSON)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_collect)

    p = sub.add_parser("pairs", help="draw caption pairs (count-weighted) and queue them in the store")
    p.add_argument("--captions", required=True, help="caption dataset from `collect`")
    p.add_argument("--store", default="annotations.db", help="SQLite annotation store")
    p.add_argument(
        "--num-pairs", type=int, default=100_000, help="pairs to draw (Motif: 500k; 100k roughly reproduces it)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_pairs)

    p = sub.add_parser("annotate", help="ask the LLM judge about every pending pair (resumable)")
    p.add_argument("--store", default="annotations.db")
    p.add_argument("--base-url", default="http://localhost:8000/v1", help="OpenAI-compatible server (vLLM)")
    p.add_argument("--model", default="default", help="model name the server serves")
    p.add_argument("--backend", default=None, help="JSON backend config, or a local model folder for transformers")
    p.add_argument("--game", choices=GAMES, default="nethack")
    p.add_argument("--goal", choices=GOALS, default="default")
    p.add_argument(
        "--prompt-style",
        choices=("rove", "motif"),
        default="rove",
        help="rove: Rove's prompts (any game); motif: Motif's released NetHack prompt",
    )
    p.add_argument("--chunk-size", type=int, default=64, help="pairs committed to the store at once")
    p.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    p.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds one attempt of a request may take in total; a hung server is reported within "
        "(retries + 1) * timeout + 2 ** retries - 1 seconds (about 3 min at the defaults)",
    )
    p.add_argument("--retries", type=int, default=2, help="retries of a request that times out or gets a 5xx")
    p.add_argument("--max-attempts", type=int, default=3, help="tries of a pair before it is recorded failed/unknown")
    p.add_argument("--temperature", type=float, default=0.1)
    p.add_argument("--limit", type=int, default=None, help="annotate at most this many pairs (0: none)")
    p.set_defaults(func=_cmd_annotate)

    p = sub.add_parser("train", help="train the Bradley-Terry reward model; prints held-out pair accuracy")
    p.add_argument("--store", default="annotations.db")
    p.add_argument("--out", default="reward_model.pt")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--lr", type=float, default=1e-5, help="Adam learning rate (Motif: 1e-5 on 500k pairs)")
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--quantile", type=float, default=0.5, help="reward threshold quantile; negative disables")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--encoder", choices=("lt_cnn", "light"), default="lt_cnn", help="lt_cnn: Motif's; light: Rove's smaller one"
    )
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("export", help="write the store as JSONL")
    p.add_argument("--store", default="annotations.db")
    p.add_argument("--out", required=True)
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("import", help="merge a JSONL export into the store")
    p.add_argument("--store", default="annotations.db")
    p.add_argument("--file", required=True)
    p.set_defaults(func=_cmd_import)

    p = sub.add_parser("status", help="print the store's counts as JSON")
    p.add_argument("--store", default="annotations.db")
    p.set_defaults(func=_cmd_status)
    return llm


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m rove.llm <command> ...``"""
    parser = argparse.ArgumentParser(prog="python -m rove.llm", description="Rove's LLM-preference reward tools")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_llm_commands(subparsers)
    # Accept both `python -m rove.llm annotate ...` and `python -m rove.llm llm annotate ...`.
    args_list = list(sys.argv[1:] if argv is None else argv)
    if not args_list or args_list[0] != "llm":
        args_list = ["llm", *args_list]
    args = parser.parse_args(args_list)
    return int(args.func(args))
