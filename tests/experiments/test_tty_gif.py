"""`rove eval --gif` on NetHack: the terminal drawn to frames (and the run's env options used for evaluation)."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np

import rove  # noqa: F401
from rove.agents import PPO
from rove.cli import main
from rove.experiments.tty_gif import PALETTE, glyph_atlas, tty_frame


def test_a_terminal_frame_draws_each_cell_in_its_colour() -> None:
    env = gym.make("Rove/NetHackScore-v0", observation_keys=["tty_chars", "tty_colors"])
    obs, _ = env.reset(seed=0)
    env.close()
    chars, colors = obs["tty_chars"], obs["tty_colors"]
    frame = tty_frame(chars, colors)
    _, h, w = glyph_atlas().shape
    assert frame.shape == (24 * h, 80 * w, 3) and frame.dtype == np.uint8
    drawn = 0
    for r in range(24):
        for c in range(80):
            cell = frame[r * h : (r + 1) * h, c * w : (c + 1) * w].reshape(-1, 3).astype(np.float64)
            if chars[r, c] == ord(" "):
                assert not cell.any(), f"blank cell ({r}, {c}) has ink"
                continue
            brightest = cell[cell.sum(1).argmax()]
            expected = PALETTE[colors[r, c] & 15]
            assert np.allclose(brightest / brightest.max(), expected / expected.max(), atol=0.02)
            drawn += 1
    assert drawn > 100  # the welcome message, the room, the status lines


def test_eval_gif_of_a_nethack_run(tmp_path: Path, capsys) -> None:
    run = tmp_path / "NetHackScore-v0__none__0__20250101-000000"
    model = PPO("auto", "Rove/NetHackScore-v0", n_envs=1, n_steps=8, seed=0, device="cpu")
    model.save(run / "checkpoints" / "last.pt")
    model.env.close()
    (run / "run.json").write_text(json.dumps({"env_id": "Rove/NetHackScore-v0", "env_kwargs": {"max_steps": 12}}))
    gif = tmp_path / "nethack.gif"
    assert main(["eval", str(run), "--episodes", "1", "--gif", str(gif), "--device", "cpu"]) == 0
    summary = json.loads(capsys.readouterr().out.split("GIF")[0])
    assert summary["mean_length"] <= 12  # the run's max_steps reached the eval env
    from PIL import Image

    _, h, w = glyph_atlas().shape
    with Image.open(gif) as image:
        assert image.size == (80 * w, 24 * h)
        # One frame per observation, the last included (the GIF writer merges identical consecutive frames).
        assert 1 < image.n_frames <= summary["mean_length"] + 1
