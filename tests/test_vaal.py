"""VAAL: the discriminator learns labelled vs unlabelled, the lowest are picked, the loop follows the reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dalkit.errors import DalkitError
from dalkit.seeding import make_generator
from dalkit.strategies import checked_select, create_strategy
from dalkit.strategies.vaal import VAAL, VAE, train_iterations, vae_loss

TINY = {"width": 8, "discriminator_width": 64, "batch_size": 16}


def dark_and_bright(context_factory, seed: int = 0, labelled: int = 16, dark: int = 16, bright: int = 16):
    """Labelled images all dark; candidates half dark (like the labelled ones), half bright."""
    n = labelled + dark + bright
    ctx = context_factory(pool_size=n, labelled=labelled, seed=seed)
    images = torch.randint(0, 40, (n, 1, 8, 8), generator=make_generator(7), dtype=torch.uint8)
    images[labelled + dark :] += 200
    ctx.images = images
    return ctx, np.isin(ctx.candidates, np.arange(labelled + dark, n))


@pytest.mark.parametrize("seed", [0, 1])
def test_discriminator_separates_the_sets_and_the_unlabelled_like_cluster_is_picked(seed, context_factory):
    # beta=0.01: the reference's batch-summed KL at beta=1 collapses mu on 8x8 images (see the module docstring)
    strategy = create_strategy("vaal", epochs=60, beta=0.01, **TINY)
    ctx, bright = dark_and_bright(context_factory, seed)
    probability = strategy.labelled_probabilities(ctx).numpy()
    assert probability[~bright].min() > probability[bright].max()
    ctx, bright = dark_and_bright(context_factory, seed)
    selection = checked_select(strategy, ctx, int(bright.sum()))
    assert sorted(selection.indices.tolist()) == sorted(ctx.candidates[bright].tolist())
    assert (np.diff(selection.scores) >= 0).all()  # lowest probability of 'labelled' first


def test_training_loop_follows_the_reference(context_factory, monkeypatch):
    """epochs * |L| // batch iterations; per iteration vae_steps VAE and adversary_steps discriminator steps,
    labelled batches from the labelled set only, unlabelled ones from the candidates only."""
    ctx = context_factory(pool_size=50, labelled=20)
    images = torch.zeros_like(ctx.images)
    images[ctx.candidates] = 255
    ctx.images = images
    seen = {"vae": 0, "disc": 0}

    def record(kind):
        def step(*args):
            x_l, x_u = args[-2:]
            assert len(x_l) <= 16 and len(x_u) <= 16
            assert (x_l == -2).all() and (x_u == 2).all()  # normalised 0 and 255 with mean 0.5, std 0.25
            seen[kind] += 1
            return torch.zeros(())

        return step

    monkeypatch.setattr(VAAL, "vae_step", lambda self, *args: record("vae")(*args))
    monkeypatch.setattr(VAAL, "discriminator_step", staticmethod(record("disc")))
    create_strategy("vaal", epochs=8, adversary_steps=3, **TINY).labelled_probabilities(ctx)
    assert train_iterations(20, 8, 16) == 10
    assert seen == {"vae": 20, "disc": 30}


def test_iterations_count_epochs_over_the_labelled_set():
    assert train_iterations(5, 100, 128) == 3
    assert train_iterations(1000, 100, 128) == 781
    assert train_iterations(1, 1, 128) == 1


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 32, 32), (3, 28, 28), (2, 12, 20)])
def test_vae_reconstructs_any_image_size(shape):
    vae = VAE(*shape, latent_dim=5, base_width=4)
    recon, mu, logvar = vae(torch.randn(3, *shape), make_generator(0))
    assert recon.shape == (3, *shape)
    assert mu.shape == logvar.shape == (3, 5)


def test_vae_matches_the_reference_network_on_32x32():
    vae = VAE(3, 32, 32)
    assert vae.fc_mu.in_features == 1024 * 2 * 2
    assert vae.decoder[0].out_features == 1024 * 4 * 4
    convs = [m.out_channels for m in vae.encoder if isinstance(m, torch.nn.Conv2d)]
    assert convs == [128, 256, 512, 1024]


def test_vae_loss_is_pixel_mean_mse_plus_batch_summed_kl():
    g = torch.Generator().manual_seed(0)
    x, recon = torch.randn(4, 1, 8, 8, generator=g), torch.randn(4, 1, 8, 8, generator=g)
    mu, logvar = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    kl = sum(
        0.5 * (s2 + m**2 - 1 - np.log(s2)) for m, s2 in zip(mu.flatten().tolist(), logvar.exp().flatten().tolist())
    )
    want = ((x - recon) ** 2).mean().item() + 0.5 * kl
    assert vae_loss(x, recon, mu, logvar, beta=0.5).item() == pytest.approx(want, rel=1e-5)


def test_cold_start_is_uniformly_random_without_training(context_factory, monkeypatch):
    monkeypatch.setattr(VAAL, "fit", lambda self, ctx: pytest.fail("nothing to train on at a cold start"))
    ctx = context_factory(pool_size=21, labelled=0, seed=4)
    selection = checked_select(create_strategy("vaal"), ctx, 5)
    want = ctx.candidates[torch.randperm(21, generator=make_generator(4))[:5].numpy()]
    np.testing.assert_array_equal(selection.indices, want)
    assert selection.scores is None


def test_global_rng_is_left_alone(context_factory):
    state = torch.get_rng_state()
    checked_select(create_strategy("vaal", epochs=4, **TINY), context_factory(), 3)
    assert torch.equal(state, torch.get_rng_state())


@pytest.mark.parametrize("options", [{"epochs": 0}, {"latent_dim": 0}, {"vae_steps": 0}, {"beta": -1.0}])
def test_bad_options_are_refused(options):
    with pytest.raises(DalkitError, match="vaal option"):
        create_strategy("vaal", **options)
