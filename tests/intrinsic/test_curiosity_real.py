"""ICM and RIDE on real MiniGrid, Crafter and NetHack batches: what their reference implementations train."""

from __future__ import annotations

import pytest
import torch

from rove.intrinsic.dynamics import encode_rollout
from rove.intrinsic.icm import ICM
from rove.intrinsic.ride import RIDE


def encoder_weight(module: ICM) -> torch.Tensor:
    """The first trained weight of the inverse-dynamics encoder."""
    return next(p for p in module.inverse.encoder.parameters() if p.requires_grad)


@pytest.mark.parametrize("cls", [ICM, RIDE])
def test_forward_loss_gradient_reaches_the_encoder(cls, real_batch) -> None:
    module = cls(real_batch.observation_space, real_batch.action_space, seed=0)
    _, forward_loss = module.losses(real_batch.rollouts[0].valid_transitions())
    (grad,) = torch.autograd.grad(forward_loss, [encoder_weight(module)])
    assert float(grad.abs().max()) > 0  # the reference's phi is shaped by the forward loss too


@pytest.mark.parametrize("cls", [ICM, RIDE])
def test_features_stay_alive_under_the_forward_loss(cls, minigrid_batch) -> None:
    """With ReLU features the forward loss killed every unit of phi within 10 updates (phi = 0)."""
    module = cls(minigrid_batch.observation_space, minigrid_batch.action_space, normalize="none", seed=0)
    rollout = minigrid_batch.rollouts[0]
    for _ in range(30):
        module.update(rollout)
    with torch.no_grad():
        phi, _ = encode_rollout(module.inverse, rollout)
    assert float(phi.norm(dim=1).mean()) > 0.1
    assert float((phi.abs().amax(0) > 0).float().mean()) == 1.0


def test_icm_bonus_falls_on_trained_transitions_below_unseen_ones(real_batch) -> None:
    module = ICM(real_batch.observation_space, real_batch.action_space, seed=0)
    trained, unseen = real_batch.part(0, slice(0, 1)), real_batch.part(1, slice(1, None))

    def ratio() -> float:
        return float(module.compute(trained)[trained.valid].mean() / module.compute(unseen)[unseen.valid].mean())

    assert ratio() > 0.7  # untrained: about the same error everywhere
    for _ in range(100):
        module.update(trained)
    assert ratio() < 0.5


def test_icm_eta_is_the_scale_of_the_raw_bonus(minigrid_batch) -> None:
    space, actions = minigrid_batch.observation_space, minigrid_batch.action_space
    rollout = minigrid_batch.rollouts[0]
    small, large = ICM(space, actions, seed=0, eta=0.01), ICM(space, actions, seed=0, eta=1.0)
    torch.testing.assert_close(large.compute(rollout), 100 * small.compute(rollout), rtol=1e-5, atol=0)
    with pytest.raises(ValueError, match=r"eta=0\.01 has no effect under normalize='return'"):
        ICM(space, actions, eta=0.01, normalize="return")


def test_ride_forward_loss_is_the_reference_norm_and_weights(nethack_batch) -> None:
    module = RIDE(nethack_batch.observation_space, nethack_batch.action_space, seed=0)
    batch = nethack_batch.rollouts[0].valid_transitions()
    inverse_loss, forward_loss = module.losses(batch)
    with torch.no_grad():
        phi, next_phi = module.inverse(batch.obs), module.inverse(batch.next_obs)
        expected = (module.forward_model(phi, batch.actions) - next_phi).norm(dim=1).mean()
    torch.testing.assert_close(forward_loss.detach(), expected)
    torch.testing.assert_close(module.total_loss(inverse_loss, forward_loss), 10 * forward_loss + 0.1 * inverse_loss)
