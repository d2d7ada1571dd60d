"""Char-CNN Bradley-Terry reward model and Motif's post-processing statistics."""

import numpy as np
import torch

from rove.llm.reward_model import (
    CaptionModelConfig,
    CaptionRewardModel,
    captions_to_bytes,
    evaluate_preferences,
    fit_stats,
    train_classifier,
    train_preferences,
)

PLAIN = [
    "You hit the {}.",
    "The {} misses!",
    "You see here a {}.",
    "It's a wall near the {}.",
    "You kill the {}!",
    "The door to the {} opens.",
]
THINGS = [
    "newt",
    "jackal",
    "grid bug",
    "fox",
    "lichen",
    "kobold",
    "sewer rat",
    "apple",
    "dagger",
    "scroll",
    "altar",
    "fountain",
]


def _captions(rng, n):
    out = []
    for _ in range(n):
        if rng.random() < 0.5:
            out.append(
                f"{rng.integers(1, 500)} gold pieces" + rng.choice(["", " land at your feet", " are here"]) + "."
            )
        else:
            out.append(str(rng.choice(PLAIN)).format(rng.choice(THINGS)))
    return out


def _pairs(rng, captions, n):
    idx = rng.integers(len(captions), size=(n, 2))
    a = [captions[i] for i in idx[:, 0]]
    b = [captions[j] for j in idx[:, 1]]
    y = np.array([0.5 if ("gold" in x) == ("gold" in z) else float("gold" in x) for x, z in zip(a, b, strict=True)])
    return captions_to_bytes(a), captions_to_bytes(b), y.astype(np.float32)


def test_bradley_terry_learns_synthetic_gold_preference():
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    train_caps, test_caps = _captions(rng, 300), _captions(np.random.default_rng(1), 200)
    a, b, y = _pairs(rng, train_caps, 3000)
    model = CaptionRewardModel(CaptionModelConfig(encoder="light"))
    report = train_preferences(model, a, b, y, epochs=6, lr=2e-3, batch_size=128, progress=False)
    assert report.num_val == 600 and report.val_accuracy >= 0.95
    # Held-out pairs of captions the model never saw.
    ta, tb, ty = _pairs(np.random.default_rng(2), test_caps, 1000)
    _, accuracy = evaluate_preferences(model, torch.as_tensor(ta), torch.as_tensor(tb), torch.as_tensor(ty))
    assert accuracy >= 0.95


def test_ties_train_towards_equal_rewards():
    torch.manual_seed(0)
    model = CaptionRewardModel(CaptionModelConfig(encoder="light"))
    a, b = captions_to_bytes(["You see gold."] * 64), captions_to_bytes(["You hit it."] * 64)
    train_preferences(
        model, a, b, np.full(64, 0.5, np.float32), epochs=30, lr=1e-2, batch_size=64, val_fraction=0, progress=False
    )
    r = model.score(["You see gold.", "You hit it."])
    assert abs(r[0] - r[1]) < 0.1


def test_fit_stats_normalises_and_thresholds_at_the_median():
    torch.manual_seed(0)
    model = CaptionRewardModel()
    caps = _captions(np.random.default_rng(3), 101)
    fit_stats(model, caps, quantile=0.5)
    unique = sorted(set(caps))
    raw = torch.as_tensor(model.score(unique))
    r_hat = (raw - raw.mean()) / raw.std(unbiased=False)
    assert torch.allclose(model.reward_mean, raw.mean(), atol=1e-5)
    out = model.postprocess(raw)
    kept = out != 0
    assert abs(kept.float().mean().item() - 0.5) <= 1.0 / len(unique) + 1e-6
    assert torch.allclose(out[kept], r_hat[kept], atol=1e-4)
    assert bool((r_hat[~kept] <= model.threshold + 1e-6).all())
    fit_stats(model, caps, quantile=None)
    assert bool((model.postprocess(raw) != 0).all())


def test_output_does_not_depend_on_batch_padding():
    torch.manual_seed(0)
    model = CaptionRewardModel()
    alone = model.score(["hi"])
    together = model.score(["hi", "a much longer caption that sets the padded width of the batch"])
    assert np.allclose(alone[0], together[0], atol=1e-5)


def test_save_load_round_trip(tmp_path):
    model = CaptionRewardModel()
    fit_stats(model, ["a", "bb", "ccc"], 0.5)
    model.save(tmp_path / "m.pt")
    loaded = CaptionRewardModel.load(tmp_path / "m.pt")
    assert np.allclose(model.score(["a", "xyz"]), loaded.score(["a", "xyz"]))
    assert float(loaded.threshold) == float(model.threshold)


def test_classifier_learns_helpful_labels():
    torch.manual_seed(0)
    caps = sorted(set(_captions(np.random.default_rng(4), 300)))
    y = np.array([float("gold" in c) for c in caps], np.float32)
    model = CaptionRewardModel(CaptionModelConfig(encoder="light"))
    report = train_classifier(model, captions_to_bytes(caps), y, epochs=15, val_fraction=0.25)
    assert report.val_accuracy >= 0.95


def test_lt_cnn_is_motifs_message_encoder():
    # facebookresearch/motif rl_baseline/encoders_nle.py, msg_model 'lt_cnn', + rlaif/reward_model.py's head.
    model = CaptionRewardModel()
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv1d)]
    pools = [m for m in model.modules() if isinstance(m, torch.nn.MaxPool1d)]
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [c.kernel_size[0] for c in convs] == [7, 7, 3, 3, 3, 3] and {c.out_channels for c in convs} == {64}
    assert len(pools) == 3 and all(p.kernel_size == 3 and p.stride == 3 for p in pools)
    assert [(m.in_features, m.out_features) for m in linears] == [(320, 128), (128, 256), (256, 512), (512, 1)]
    rows = captions_to_bytes(["You kill the newt!", ""])
    assert model(torch.as_tensor(rows)).shape == (2,)
    assert torch.allclose(model(torch.as_tensor(rows[:, :40])), model(torch.as_tensor(rows)))  # NUL-padded to 256


def test_normalisation_is_over_every_observation_threshold_over_unique():
    torch.manual_seed(0)
    model = CaptionRewardModel(CaptionModelConfig(encoder="light"))
    # One frequent message and rare ones (Motif: frequent messages dominate the statistics).
    observations = ["It is dark."] * 97 + ["You find gold.", "You kill the newt!", "The door opens."]
    fit_stats(model, observations, quantile=0.5, observations=observations)
    raw = model.score(observations).astype(np.float64)
    assert np.isclose(float(model.reward_mean), raw.mean(), atol=1e-6)
    assert np.isclose(float(model.reward_std), raw.std(), rtol=1e-5)
    unique = sorted(set(observations))
    r_hat = (model.score(unique) - raw.mean()) / raw.std()
    assert np.isclose(float(model.threshold), np.quantile(r_hat, 0.5), atol=1e-5)
    unique_std = model.score(unique).std()
    assert not np.isclose(unique_std, raw.std(), rtol=0.1)  # the old, unique-caption statistics differ
