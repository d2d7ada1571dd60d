"""RDD (arXiv 2505.11044) on real MiniGrid, Crafter and NetHack batches: the target is a fresh draw of
``N(mu(s), sigma^2 I)``, the reward is ``(1/d) ||f_theta(s) - mu(s)||^2``, and the reward obeys the paper's
decomposition into a pseudo-count term (lemma 4.1: ``n`` times it estimates ``sigma^2`` without bias) and a
discrepancy term. Every quantity is recomputed here from the networks and the recorded draws."""

from __future__ import annotations

import math

import torch

from rove.intrinsic.rdd import RDD
from rove.obs import obs_flatten

SIGMA = 0.5


def frozen_mean_and_prediction(module: RDD, obs) -> tuple[torch.Tensor, torch.Tensor]:
    """``mu(s)`` (the frozen random network) and ``f_theta(s)`` of every row, straight from the networks."""
    with torch.no_grad():
        x = module.networks.prepare(obs)
        return module.networks.run(module.networks.target, x), module.networks.run(module.networks.predictor, x)


def test_targets_are_fresh_draws_around_the_frozen_network_with_one_fixed_variance(real_batch):
    module = RDD(real_batch.observation_space, real_batch.action_space, target_std=SIGMA, seed=0)
    mean, _ = frozen_mean_and_prediction(module, obs_flatten(real_batch.rollouts[0].next_obs))
    mean = mean[:32]
    draws = torch.stack([module.sample_targets(mean) for _ in range(400)])  # [400, 32, D]
    k, n, d = draws.shape
    # Centred on mu(s): in every one of the n * d coordinates the mean of the draws is within 6 standard errors.
    assert float((draws.mean(0) - mean).abs().max()) < 6 * SIGMA / math.sqrt(k)
    # One variance for every state: each state's pooled sample variance is sigma^2 within 6 relative std errors.
    variance = (draws - mean).pow(2).mean(dim=(0, 2))
    assert float((variance / SIGMA**2 - 1).abs().max()) < 6 * math.sqrt(2 / (k * d))
    # Fresh draws: consecutive draws of one state are uncorrelated.
    noise = (draws - mean) / SIGMA
    correlation = (noise[1:] * noise[:-1]).mean()
    assert abs(float(correlation)) < 6 / math.sqrt((k - 1) * n * d)


def test_reward_obeys_the_pseudo_count_bound_on_repeatedly_trained_states(real_batch):
    rollout = real_batch.rollouts[0]
    obs = obs_flatten(rollout.next_obs)
    module = RDD(
        real_batch.observation_space,
        real_batch.action_space,
        target_std=SIGMA,
        normalize="none",
        update_obs_stats=False,  # mu(s) stays one fixed function of s through the updates
        seed=0,
    )
    module.warm_up(obs)
    recorded: list[tuple[torch.Tensor, torch.Tensor]] = []
    draw = module.sample_targets

    def record(mean: torch.Tensor) -> torch.Tensor:
        sample = draw(mean)
        recorded.append((mean.detach().clone(), sample.detach().clone()))
        return sample

    module.sample_targets = record  # type: ignore[method-assign]
    for _ in range(20):  # 20 rollouts x 16 optimiser steps on a 25 % mask: about 20 draws per state
        module.update(rollout)
    mean, prediction = frozen_mean_and_prediction(module, obs)
    reward = module.compute(rollout).reshape(-1)

    # The reward is the squared distance to the distribution's mean, averaged over the d outputs (eq. 11).
    d = mean.shape[1]
    torch.testing.assert_close(reward, (prediction - mean).pow(2).mean(dim=1), rtol=1e-4, atol=1e-7)

    # Which state each recorded draw belongs to: the row whose mu(s) the sampler was given.
    means = torch.cat([m for m, _ in recorded])
    samples = torch.cat([s for _, s in recorded])
    distance = torch.cdist(means, mean, compute_mode="donot_use_mm_for_euclid_dist")
    owner = distance.argmin(dim=1)
    assert float(distance.min(dim=1).values.max()) < 1e-4  # every draw is centred on some state's mu(s)

    count_term_times_n, checked = 0.0, 0
    for row in owner.unique():
        mine = samples[owner == row]
        n = mine.shape[0]
        least_squares = mine.mean(0)  # f*_n(s): the predictor that fits the n draws best
        count_term = float((least_squares - mean[row]).pow(2).mean())
        discrepancy = float((prediction[row] - least_squares).pow(2).mean())
        # Section 4.4: sqrt(b) <= sqrt(pseudo-count term) + sqrt(discrepancy term).
        assert math.sqrt(float(reward[row])) <= math.sqrt(count_term) + math.sqrt(discrepancy) + 1e-6
        count_term_times_n += n * count_term
        checked += 1
    assert checked >= 10
    # Lemma 4.1: n * ||f*_n - mu||^2 / (d sigma^2) is an unbiased estimator of 1 for every state; over the
    # states, d times their sum is chi-square with d * checked degrees of freedom when the draws are fresh,
    # independent and N(mu(s), sigma^2 I).
    ratio = count_term_times_n / (checked * SIGMA**2)
    assert abs(ratio - 1) < 6 * math.sqrt(2 / (d * checked))
