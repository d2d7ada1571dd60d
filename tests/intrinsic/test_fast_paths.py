"""The fast paths of the intrinsic modules compute what the plain reference computations do.

Each test builds the straightforward version (padding the map, ``nn.Embedding`` + concatenation, a loop over
ensemble members, gathering bootstrap rows, selecting transitions) and checks the optimised one against it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from gymnasium import spaces

import rove.intrinsic as ri
from rove.encoders import (
    NLE_MAX_GLYPH,
    MiniGridLightEncoder,
    NetHackLightEncoder,
    crop_glyphs,
    crop_glyphs_torch,
    encode_preprocessed,
    preprocess,
)
from rove.intrinsic import Rollout
from rove.intrinsic.counts import SimHashCount
from rove.intrinsic.dynamics import ForwardModel, ensemble_forward, rollout_frames
from rove.obs import obs_flatten, obs_index

ACTIONS = spaces.Discrete(5)
NETHACK = spaces.Dict(
    {
        "glyphs": spaces.Box(0, NLE_MAX_GLYPH - 1, (21, 79), np.int16),
        "blstats": spaces.Box(-(2**31), 2**31 - 1, (27,), np.int64),
    }
)
MINIGRID = spaces.Dict({"image": spaces.Box(0, 255, (7, 7, 3), np.uint8), "direction": spaces.Discrete(4)})


def nethack_obs(n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    blstats = torch.randint(-50, 5000, (n, 27), generator=gen)
    blstats[:, 0] = torch.randint(-2, 82, (n,), generator=gen)  # some positions off the map: padding matters
    blstats[:, 1] = torch.randint(-2, 24, (n,), generator=gen)
    glyphs = torch.randint(0, NLE_MAX_GLYPH, (n, 21, 79), generator=gen).to(torch.int16)
    return {"glyphs": glyphs, "blstats": blstats}


def minigrid_obs(n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    image = torch.randint(0, 20, (n, 7, 7, 3), generator=gen).to(torch.uint8)  # codes >= 16 get clamped
    return {"image": image, "direction": torch.randint(0, 4, (n,), generator=gen)}


def padded_crop(glyphs: torch.Tensor, x: torch.Tensor, y: torch.Tensor, size: int) -> torch.Tensor:
    """Reference crop: pad the whole map with the off-map id, then slice around each (clamped) position."""
    r = size // 2
    n, h, w = glyphs.shape
    padded = F.pad(glyphs.long(), (r, r, r, r), value=NLE_MAX_GLYPH)
    x, y = x.long().clamp(0, w - 1), y.long().clamp(0, h - 1)
    return torch.stack([padded[i, y[i] : y[i] + size, x[i] : x[i] + size] for i in range(n)])


@pytest.mark.parametrize("crop_fn", [crop_glyphs, crop_glyphs_torch], ids=["numba", "torch"])
@pytest.mark.parametrize("size", [1, 5, 9])
def test_crop_glyphs_equals_padding_the_map(crop_fn, size: int) -> None:
    obs = nethack_obs(64)
    x, y = obs["blstats"][:, 0], obs["blstats"][:, 1]
    crop = crop_fn(obs["glyphs"], x, y, size)
    assert crop.dtype == torch.int64 and crop.shape == (64, size, size)
    torch.testing.assert_close(crop, padded_crop(obs["glyphs"], x, y, size), rtol=0, atol=0)


def reference_light_forward(encoder: NetHackLightEncoder | MiniGridLightEncoder, obs: dict) -> torch.Tensor:
    """nn.Embedding lookups, concatenated with the dense part, through the head: the encoders' definition."""
    if isinstance(encoder, NetHackLightEncoder):
        blstats = obs["blstats"]
        codes = padded_crop(obs["glyphs"], blstats[:, 0], blstats[:, 1], encoder.crop).flatten(1)
        stats = blstats.float()
        dense = torch.sign(stats) * torch.log1p(stats.abs())
    else:
        offsets = torch.arange(3) * 16
        codes = (obs["image"].long().clamp(0, 15) + offsets).flatten(1)
        dense = F.one_hot(obs["direction"].long() % 4, 4).float()
    return encoder.head(torch.cat([F.embedding(codes, encoder.table.weight).flatten(1), dense], dim=1))


@pytest.mark.parametrize(
    ("cls", "space", "make_obs"),
    [(NetHackLightEncoder, NETHACK, nethack_obs), (MiniGridLightEncoder, MINIGRID, minigrid_obs)],
    ids=["nethack", "minigrid"],
)
def test_light_encoders_equal_their_reference_in_values_and_gradients(cls, space, make_obs) -> None:
    torch.manual_seed(0)
    encoder = cls(space)
    obs = make_obs(32)
    fast = encode_preprocessed(encoder, preprocess(encoder, obs))
    reference = reference_light_forward(encoder, obs)
    torch.testing.assert_close(fast, reference)
    torch.testing.assert_close(encoder(obs), reference)
    fast_grads = torch.autograd.grad(fast.square().sum(), list(encoder.parameters()))
    reference_grads = torch.autograd.grad(reference.square().sum(), list(encoder.parameters()))
    for a, b in zip(fast_grads, reference_grads, strict=True):
        torch.testing.assert_close(a, b)


def test_forward_model_and_ensemble_equal_linear_on_one_hot_actions() -> None:
    torch.manual_seed(0)
    members = torch.nn.ModuleList(ForwardModel(16, 5, hidden=12) for _ in range(3))
    phi, actions = torch.randn(20, 16), torch.randint(0, 5, (20,))
    one_hot_input = torch.cat([phi, F.one_hot(actions, 5).float()], dim=1)
    reference = torch.stack([m.net(one_hot_input) for m in members])  # the models' definition
    torch.testing.assert_close(torch.stack([m(phi, actions) for m in members]), reference)
    fast = ensemble_forward(members, phi, actions)
    torch.testing.assert_close(fast, reference)
    grads = torch.autograd.grad(fast.square().sum(), list(members.parameters()))
    reference_grads = torch.autograd.grad(reference.square().sum(), list(members.parameters()))
    for a, b in zip(grads, reference_grads, strict=True):
        torch.testing.assert_close(a, b)


def test_bootstrap_multiplicities_give_the_gathered_bootstrap_loss() -> None:
    """Disagreement weights each row by how often a member's bootstrap drew it, instead of gathering rows."""
    torch.manual_seed(0)
    members = torch.nn.ModuleList(ForwardModel(8, 5, hidden=6) for _ in range(4))
    n, k = 30, len(members)
    phi, next_phi, actions = torch.randn(n, 8), torch.randn(n, 8), torch.randint(0, 5, (n,))
    boot = torch.randint(n, (k, n))
    gathered = sum(
        0.5 * (m(phi[b], actions[b]) - next_phi[b]).pow(2).sum(1).mean() for m, b in zip(members, boot, strict=True)
    )
    weights = torch.zeros(k, n).scatter_add_(1, boot, torch.ones(k, n))
    errors = 0.5 * (ensemble_forward(members, phi, actions) - next_phi).pow(2).sum(2)
    torch.testing.assert_close((weights * errors).sum() / n, gathered)


def nethack_rollout(t: int, e: int, shared: bool, seed: int = 0) -> Rollout:
    frames = {k: v.reshape(t + 1, e, *v.shape[1:]) for k, v in nethack_obs((t + 1) * e, seed).items()}
    obs = {k: v[:-1] for k, v in frames.items()}
    next_obs = {k: v[1:] for k, v in frames.items()}
    if not shared:
        other = nethack_obs(t * e, seed + 1)
        next_obs = {k: v.reshape(t, e, *v.shape[1:]) for k, v in other.items()}
    valid = torch.ones(t, e, dtype=torch.bool)
    valid[1, 0] = False
    return Rollout(
        obs, torch.randint(0, 5, (t, e)), next_obs, torch.zeros(t, e), torch.zeros(t, e, dtype=torch.bool), valid
    )


@pytest.mark.parametrize("shared", [True, False], ids=["shared-frames", "separate-frames"])
def test_rollout_frames_index_each_transitions_ends(shared: bool) -> None:
    rollout = nethack_rollout(4, 3, shared)
    frames = rollout_frames(lambda obs: obs, rollout)
    assert frames.data["glyphs"].shape[0] == (5 * 3 if shared else 2 * 4 * 3)
    flat = rollout.flatten()
    for key in flat.obs:
        torch.testing.assert_close(frames.data[key][frames.obs_rows], flat.obs[key], rtol=0, atol=0)
        torch.testing.assert_close(frames.data[key][frames.next_rows], flat.next_obs[key], rtol=0, atol=0)


@pytest.mark.parametrize("proportion", [1.0, 0.4])
def test_update_trains_on_the_same_transitions_as_selecting_valid_ones(proportion: float) -> None:
    """The base class picks indices once; the transitions equal the valid ones, subsampled with the same draws
    (ICM uses the base class's subsampling; RND masks each of its minibatches instead)."""
    module = ri.make("icm", NETHACK, ACTIONS, seed=0, update_proportion=proportion)
    rollout = nethack_rollout(6, 4, shared=True)
    generator_state = module.generator.get_state()
    index = module._update_index(rollout)
    module.generator.set_state(generator_state)
    batch = rollout.valid_transitions()
    if proportion < 1.0:
        keep = torch.rand(len(batch), generator=module.generator) < proportion
        batch = batch.select(keep.nonzero(as_tuple=True)[0])
    selected = obs_index(obs_flatten(rollout.next_obs), index)
    for key in batch.next_obs:
        torch.testing.assert_close(selected[key], batch.next_obs[key], rtol=0, atol=0)


def test_rnd_scores_a_rollout_in_chunks_like_one_batch() -> None:
    module = ri.make("rnd", NETHACK, ACTIONS, seed=0)
    obs = nethack_obs(1100)  # more than one chunk
    with torch.no_grad():
        torch.testing.assert_close(module.novelty(obs), module.prediction_error(obs))


def test_simhash_nethack_features_equal_indexing_the_code_table() -> None:
    module = SimHashCount(NETHACK, ACTIONS, seed=0)
    obs = nethack_obs(40)
    blstats = obs["blstats"]
    codes = torch.cat(
        [
            padded_crop(obs["glyphs"], blstats[:, 0], blstats[:, 1], 9).flatten(1),
            blstats[:, 12:13].clamp(0, NLE_MAX_GLYPH),
        ],
        dim=1,
    )
    reference = module.code_values[torch.arange(codes.shape[1])[None, :], codes]
    torch.testing.assert_close(module.features(obs), reference, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [("icm", {}), ("disagreement", {}), ("disagreement", {"features": "inverse"}), ("rnd", {}), ("e3b", {})],
)
def test_update_on_preprocessed_frames_equals_update_on_selected_transitions(name: str, kwargs: dict) -> None:
    """``_update_rollout`` (frames preprocessed once) trains exactly like ``_update`` on the selected batch."""
    rollout = nethack_rollout(6, 4, shared=True)
    a, b = (ri.make(name, NETHACK, ACTIONS, seed=0, **kwargs) for _ in range(2))
    index = a._update_index(rollout)
    b._update_index(rollout)  # same generator draws in both
    losses_a = a._update_rollout(rollout, index)
    losses_b = b._update(rollout.flatten().select(index))
    assert losses_a.keys() == losses_b.keys()
    for key in losses_a:
        assert losses_a[key] == pytest.approx(losses_b[key], rel=1e-5)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q)


@pytest.mark.parametrize("num_steps", [7, 300])  # within one block, and across blocks
def test_return_normalizer_accumulates_like_the_step_by_step_loop(num_steps: int) -> None:
    from rove.intrinsic import normalize

    gen = torch.Generator().manual_seed(0)
    normalizer, gamma = normalize.ReturnNormalizer(0.99), 0.99
    normalizer.returns = torch.zeros(3, dtype=torch.float64)
    returns = torch.zeros(3, dtype=torch.float64)
    for _ in range(2):  # the second rollout continues the first one's returns (non-episodic)
        rewards = torch.rand(num_steps, 3, generator=gen, dtype=torch.float64)
        expected = []
        for t in range(num_steps):
            returns = gamma * returns + rewards[t]
            expected.append(returns)
        blocks = [normalizer._accumulate(b) for b in rewards.split(normalize.RETURN_BLOCK)]
        torch.testing.assert_close(torch.cat(blocks), torch.stack(expected))
        torch.testing.assert_close(normalizer.returns, returns)
