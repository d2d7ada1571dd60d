"""How many vector-env rows are autoreset steps (not transitions), per env, under the benchmark's zoo layout.

Rove's PPO counts transitions only (as Stable-Baselines3 does); before, it counted every row of its NEXT_STEP
vector envs, so a run of ``total_timesteps`` collected fewer samples than SB3's and throughput figures per
"step" were inflated by this share. ``python experiments/autoreset_share.py``
"""

from __future__ import annotations

import dataclasses

import torch

from rove.agents import PPO, BaseCallback

ENVS = ("CartPole-v1", "Rove/MiniGrid-DoorKey-8x8-v0", "Rove/MiniGrid-Empty-5x5-v0")


@dataclasses.dataclass
class Args:
    steps: int = 24_576  # transitions per env (the first ones of training, as the benchmark times them)
    seed: int = 0
    envs: tuple[str, ...] = ENVS
    n_epochs: int = 10  # the zoo layout's


class CountRows(BaseCallback):
    def __init__(self) -> None:
        super().__init__()
        self.rows = self.valid = 0

    def _on_rollout_end(self) -> None:
        assert self.model is not None
        buf = self.model.rollout_buffer
        self.rows += buf.valid.numel()
        self.valid += int(buf.valid.sum())


def main(args: Args) -> dict[str, float]:
    """Prints and returns each env's autoreset share of the rows."""
    torch.set_num_threads(1)
    shares = {}
    for env_id in args.envs:
        model = PPO(
            "auto", env_id, n_envs=8, n_steps=128, batch_size=64, n_epochs=args.n_epochs, seed=args.seed, verbose=0
        )
        counter = CountRows()
        model.learn(args.steps, callback=counter)
        share = 1 - counter.valid / counter.rows
        print(f"{env_id}: {counter.rows} rows, {counter.valid} transitions, autoreset share {100 * share:.2f} %")
        shares[env_id] = share
    return shares


if __name__ == "__main__":
    main(Args())
