"""Two-stream GAE against hand-computed values: episode ends, timeouts, autoreset steps, non-episodic intrinsic."""

import pytest
import torch

from rove.agents.common.buffers import compute_gae

G, L = 0.9, 0.8  # gamma, lambda


def _example() -> dict[str, torch.Tensor]:
    # Env 0: terminates at t=1, so t=2 is the autoreset step. Env 1: times out at t=0, t=1 is autoreset.
    return {
        "rewards": torch.tensor([[1.0, 1.0], [1.0, 0.0], [0.0, 0.5], [2.0, 1.0]]),
        "values": torch.tensor([[0.5, 1.0], [2.0, 3.0], [4.0, 0.2], [1.5, 0.7], [0.3, 0.9]]),
        "terminated": torch.tensor([[False, False], [True, False], [False, False], [False, False]]),
        "dones": torch.tensor([[False, True], [True, False], [False, False], [False, False]]),
        "valid": torch.tensor([[True, True], [True, False], [False, True], [True, True]]),
    }


def test_extrinsic_gae_matches_hand_computation() -> None:
    ex = _example()
    adv, ret = compute_gae(**ex, gamma=G, gae_lambda=L, episodic=True)
    v = ex["values"]
    # env 0
    a3 = 2.0 + G * v[4, 0] - v[3, 0]
    a2 = 0.0  # autoreset step: no advantage
    a1 = 1.0 - v[1, 0]  # terminal: no bootstrap, nothing carried from the next episode
    a0 = (1.0 + G * v[1, 0] - v[0, 0]) + G * L * a1
    expected0 = torch.tensor([a0, a1, a2, a3])
    # env 1
    b3 = 1.0 + G * v[4, 1] - v[3, 1]
    b2 = (0.5 + G * v[3, 1] - v[2, 1]) + G * L * b3
    b1 = 0.0  # autoreset step
    b0 = 1.0 + G * v[1, 1] - v[0, 1]  # timeout: bootstraps from V(final obs) = values[1], carries nothing
    expected1 = torch.tensor([b0, b1, b2, b3])
    torch.testing.assert_close(adv[:, 0], expected0)
    torch.testing.assert_close(adv[:, 1], expected1)
    torch.testing.assert_close(ret, adv + v[:-1])


def test_intrinsic_gae_is_non_episodic() -> None:
    ex = _example()
    r_int = torch.tensor([[0.1, 0.4], [0.2, 0.0], [0.0, 0.3], [0.5, 0.2]])  # zero on autoreset steps
    ex["rewards"] = r_int
    adv, _ = compute_gae(**ex, gamma=G, gae_lambda=L, episodic=False)
    v = ex["values"]
    for e in range(2):
        expected = torch.zeros(4)
        last = torch.tensor(0.0)
        for t in (3, 2, 1, 0):  # plain GAE with no masking anywhere: returns cross episode ends
            last = r_int[t, e] + G * v[t + 1, e] - v[t, e] + G * L * last
            expected[t] = last
        torch.testing.assert_close(adv[:, e], expected)
    # The episode end at t=1 (env 0) does not cut the intrinsic return: A_1 depends on V(obs[2]).
    assert adv[1, 0] != pytest.approx(float(r_int[1, 0] - v[1, 0]))


def test_episodic_intrinsic_option_masks_like_extrinsic() -> None:
    ex = _example()
    episodic, _ = compute_gae(**ex, gamma=G, gae_lambda=L, episodic=True)
    non_episodic, _ = compute_gae(**ex, gamma=G, gae_lambda=L, episodic=False)
    assert not torch.allclose(episodic, non_episodic)
    assert episodic[2, 0] == 0 and episodic[1, 1] == 0  # autoreset steps carry no advantage


def test_values_shape_is_checked() -> None:
    ex = _example()
    ex["values"] = ex["values"][:-1]
    with pytest.raises(ValueError, match="T\\+1"):
        compute_gae(**ex, gamma=G, gae_lambda=L)


def _reference_gae(ex: dict[str, torch.Tensor], episodic: bool) -> torch.Tensor:
    """The textbook recursion, one env at a time in Python floats."""
    rewards, values, terminated, dones, valid = (ex[k] for k in ("rewards", "values", "terminated", "dones", "valid"))
    steps, envs = rewards.shape
    adv = torch.zeros(steps, envs)
    for e in range(envs):
        last = 0.0
        for t in reversed(range(steps)):
            if episodic and not valid[t, e]:
                last = 0.0
                continue
            bootstrap = 0.0 if episodic and terminated[t, e] else 1.0
            carry = 0.0 if episodic and dones[t, e] else 1.0
            delta = float(rewards[t, e] + G * values[t + 1, e] * bootstrap - values[t, e])
            last = delta + G * L * carry * last
            adv[t, e] = last
    return adv


@pytest.mark.parametrize("episodic", [True, False])
def test_vectorised_recursion_matches_reference_on_a_long_random_rollout(episodic: bool) -> None:
    gen = torch.Generator().manual_seed(0)
    steps, envs = 64, 5
    terminated = torch.rand(steps, envs, generator=gen) < 0.05
    dones = terminated | (torch.rand(steps, envs, generator=gen) < 0.05)
    valid = torch.ones(steps, envs, dtype=torch.bool)
    valid[1:] = ~dones[:-1]  # NEXT_STEP: the step after an episode end is the autoreset step
    ex = {
        "rewards": torch.randn(steps, envs, generator=gen) * valid,
        "values": torch.randn(steps + 1, envs, generator=gen),
        "terminated": terminated,
        "dones": dones,
        "valid": valid,
    }
    assert dones.any() and terminated.any()
    adv, ret = compute_gae(**ex, gamma=G, gae_lambda=L, episodic=episodic)
    torch.testing.assert_close(adv, _reference_gae(ex, episodic), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ret, adv + ex["values"][:-1])
