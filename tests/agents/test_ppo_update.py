"""The PPO update's fast paths equal the straightforward computations they replace."""

import pytest
import torch
from gymnasium import spaces

from rove.agents.common.buffers import RolloutBuffer
from rove.agents.common.utils import make_adam
from rove.agents.ppo.policies import ActorCriticPolicy, sample_categorical
from rove.agents.ppo.ppo import _masked_mean, normalize_advantages


def test_unmasked_advantage_normalisation_equals_the_masked_one() -> None:
    adv = torch.randn(37, generator=torch.Generator().manual_seed(0)) * 3 + 1
    ones = torch.ones(37)
    torch.testing.assert_close(normalize_advantages(adv, None), normalize_advantages(adv, ones))
    torch.testing.assert_close(_masked_mean(adv, None), _masked_mean(adv, ones))
    # With a real mask, the valid samples are whitened by their own statistics (unbiased std).
    mask = (torch.arange(37) % 3 != 0).float()
    kept = adv[mask.bool()]
    expected = (kept - kept.mean()) / (kept.std() + 1e-8)
    torch.testing.assert_close(normalize_advantages(adv, mask)[mask.bool()], expected)
    # A single sample is left as it is.
    single = torch.tensor([2.5])
    assert torch.equal(normalize_advantages(single, None), single)


def test_sample_categorical_draws_from_the_given_probabilities() -> None:
    probs = torch.tensor([[0.7, 0.2, 0.1, 0.0], [0.25, 0.25, 0.25, 0.25], [0.0, 0.0, 0.05, 0.95]])
    log_probs = probs.log()
    torch.manual_seed(0)
    draws = 20_000
    samples = torch.stack([sample_categorical(log_probs) for _ in range(draws)])  # [draws, 3]
    assert samples.dtype == torch.int64 and samples.shape == (draws, 3)
    freq = torch.stack([torch.bincount(samples[:, row], minlength=4).float() / draws for row in range(3)])
    torch.testing.assert_close(freq, probs, atol=0.015, rtol=0.0)
    assert not (probs.gather(1, samples.T) == 0).any()  # zero-probability actions never come out


def test_fused_adam_takes_the_same_steps_as_reference_adam() -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    ref = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    ref.load_state_dict(net.state_dict())
    fast = make_adam(net.parameters(), lr=1e-2, eps=1e-5)
    slow = torch.optim.Adam(ref.parameters(), lr=1e-2, eps=1e-5, foreach=False, fused=False)
    assert fast.defaults["fused"]
    x = torch.randn(32, 6)
    for _ in range(5):
        for model, opt in ((net, fast), (ref, slow)):
            opt.zero_grad()
            model(x).pow(2).mean().backward()
            opt.step()
    for a, b in zip(net.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_flat_minibatches_hold_exactly_the_valid_samples_and_say_so() -> None:
    steps, envs = 6, 4
    buf = RolloutBuffer(spaces.Box(-1.0, 1.0, (2,)), steps, envs, torch.device("cpu"))
    buf.actions.copy_(torch.arange(steps * envs).view(steps, envs))  # each sample's id
    buf.valid[2, 1] = buf.valid[4, 3] = buf.valid[5, 0] = False
    advantages = torch.randn(steps, envs)
    batches = buf.sample_batches(5, advantages, torch.Generator().manual_seed(0))
    assert all(b.all_valid and bool(b.valid.all()) for b in batches)
    ids = torch.cat([b.actions for b in batches])
    assert sorted(ids.tolist()) == buf.valid.reshape(-1).nonzero().squeeze(1).tolist()
    for b in batches:
        torch.testing.assert_close(b.advantages, advantages.reshape(-1)[b.actions])
    # Sequence minibatches keep their autoreset steps and must be masked.
    buf.lstm_state = (torch.zeros(1, envs, 3), torch.zeros(1, envs, 3))
    assert not any(b.all_valid for b in buf.sample_sequences(2, advantages))


def test_minigrid_encoder_lookup_equals_nn_embedding_in_values_and_gradients() -> None:
    import numpy as np

    from rove.encoders import MINIGRID_CODES, MiniGridEncoder

    space = spaces.Dict({"image": spaces.Box(0, 255, (7, 7, 3), np.uint8), "direction": spaces.Discrete(4)})
    torch.manual_seed(0)
    encoder = MiniGridEncoder(space)
    gen = torch.Generator().manual_seed(1)
    obs = {"image": torch.randint(0, 20, (6, 7, 7, 3), generator=gen).to(torch.uint8), "direction": torch.arange(6) % 4}
    encoder(obs).square().sum().backward()
    fast_grad = encoder.embed.weight.grad.clone()
    encoder.zero_grad()
    # The definition: nn.Embedding on the offset codes, flattened per cell, channels first.
    codes = obs["image"].long().clamp(0, MINIGRID_CODES - 1) + encoder.offsets
    x = encoder.embed(codes).flatten(3).permute(0, 3, 1, 2)
    feats = torch.cat([encoder.cnn(x), encoder.direction_embed(obs["direction"])], dim=1)
    reference = encoder.head(feats)
    reference.square().sum().backward()
    torch.testing.assert_close(encoder(obs), reference)
    torch.testing.assert_close(fast_grad, encoder.embed.weight.grad)


def test_fused_heads_start_like_three_separately_initialised_layers() -> None:
    """Actor rows orthogonal with gain 0.01 (a near-uniform first policy), each critic row a unit vector."""
    torch.manual_seed(0)
    num_actions = 7
    policy = ActorCriticPolicy(spaces.Box(-1.0, 1.0, (10,)), spaces.Discrete(num_actions))
    weight = policy.heads.weight.detach()
    actor = weight[:num_actions]
    torch.testing.assert_close(actor @ actor.T, 1e-4 * torch.eye(num_actions))
    torch.testing.assert_close(weight[num_actions:].norm(dim=1), torch.ones(2))
    assert torch.count_nonzero(policy.heads.bias) == 0
    logits, v_ext, v_int, _ = policy(torch.randn(5, 10))
    assert logits.shape == (5, num_actions) and v_ext.shape == v_int.shape == (5,)
    assert logits.softmax(-1).max() < 1.5 / num_actions


def test_denormals_flushed_sets_the_mode_and_restores_the_one_it_found() -> None:
    from rove.agents.common.utils import denormals_flushed, flushes_denormals

    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU has no flush-to-zero mode")
    subnormal = torch.tensor([2e-38])
    assert float(subnormal * 0.25) > 0.0  # the default: subnormal results are kept
    with denormals_flushed():
        assert flushes_denormals() and float(subnormal * 0.25) == 0.0
        with denormals_flushed():  # nested: already on, left on by the inner block
            pass
        assert flushes_denormals()
    assert not flushes_denormals()
    with denormals_flushed(enabled=False):
        assert not flushes_denormals()
    with pytest.raises(RuntimeError, match="boom"), denormals_flushed():
        raise RuntimeError("boom")
    assert not flushes_denormals()  # restored on an exception too
    torch.set_flush_denormal(True)  # a caller that turned it on keeps it on
    try:
        with denormals_flushed():
            pass
        assert flushes_denormals()
    finally:
        torch.set_flush_denormal(False)
