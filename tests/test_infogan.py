"""InfoGAN pieces (npgan.infogan): the MI loss against closed forms, gradients against
finite differences, the Hungarian assignment, the agreement score, one tiny training run."""
import math

import numpy as np
import pytest

from npgan import gradcheck, infogan
from npgan import functional as F
from npgan.tensor import Tensor


def test_info_loss_closed_form_and_bound():
    # uniform Q (all logits equal, mean 0): -log q(cat) = log 10, and for c ~ U(-1, 1) the
    # expected Gaussian NLL is 0.5 E[c^2] + 0.5 log 2 pi = 1/6 + 0.5 log 2 pi per code
    rng = np.random.default_rng(0)
    cat, cont = infogan.sample_codes(200000, rng)
    q = Tensor(np.zeros((len(cat), 12)))
    total, l_cat, l_cont = infogan.info_loss(q, cat, cont)
    assert l_cat.item() == pytest.approx(math.log(10), rel=1e-12)
    assert l_cont.item() == pytest.approx(2 * (1 / 6 + 0.5 * math.log(2 * math.pi)), rel=2e-3)
    assert total.item() == pytest.approx(l_cat.item() + l_cont.item())
    # a perfect categorical Q (logit 30 on the true code) makes -log q(cat) ~ 0, so the
    # categorical part of the bound reaches H(c_cat) = log 10
    logits = np.full((len(cat), 12), 0.0)
    logits[np.arange(len(cat)), cat] = 30.0
    _, l_cat, _ = infogan.info_loss(Tensor(logits), cat, cont)
    assert l_cat.item() < 1e-11
    assert infogan.code_entropy() == pytest.approx(math.log(10) + 2 * math.log(2))


def test_info_loss_gradients_match_finite_differences():
    rng = np.random.default_rng(1)
    cat, cont = infogan.sample_codes(6, rng)
    for learn_std in (False, True):
        q = rng.standard_normal((6, 14 if learn_std else 12))
        assert gradcheck(lambda t: infogan.info_loss(t, cat, cont, learn_std=learn_std)[0], q)
    mu, t, ls = rng.standard_normal((3, 5, 2))
    assert gradcheck(lambda m, s: F.gaussian_nll(m, t, s), mu, ls)


def test_q_head_gradient_through_discriminator():
    rng = np.random.default_rng(2)
    D = infogan.InfoDiscriminator(units=3, pieces=2, inp=5, rng=rng, dtype="float64").eval()
    cat, cont = infogan.sample_codes(4, rng)
    x = rng.random((4, 5))
    def loss(x, w):
        D.q.weight = w
        logit, q = D(x)
        return infogan.info_loss(q, cat, cont)[0] + F.binary_cross_entropy_with_logits(logit, 0.0)
    assert gradcheck(loss, x, rng.standard_normal((3, 12)))


def test_generator_input_layout():
    z = np.arange(6, dtype=np.float32).reshape(2, 3)
    out = np.asarray(infogan.generator_input(z, [2, 0], np.array([[0.5, -0.5], [1, -1]]), n_cat=4))
    np.testing.assert_array_equal(out, [[0, 1, 2, 0, 0, 1, 0, .5, -.5], [3, 4, 5, 1, 0, 0, 0, 1, -1]])


def test_code_scale_multiplies_the_codes_only():
    z = np.arange(6, dtype=np.float32).reshape(2, 3)
    out = np.asarray(infogan.generator_input(z, [2, 0], np.array([[0.5, -0.5], [1, -1]]), n_cat=4,
                                             code_scale=10))
    np.testing.assert_array_equal(out, [[0, 1, 2, 0, 0, 10, 0, 5, -5], [3, 4, 5, 10, 0, 0, 0, 10, -10]])


def test_from_unconditional_computes_the_trained_pair_whatever_the_code():
    from npgan import models
    rng = np.random.default_rng(6)
    g = models.Generator(z_dim=4, hidden=8, out=6, irange=0.5, rng=rng)
    d = models.Discriminator(inp=6, units=5, pieces=2, irange=0.5, rng=rng)
    G, D = infogan.build(1, z_dim=4, g_hidden=8, x_dim=6, d_units=5, d_pieces=2, n_cat=3, n_cont=2)
    q_before = D.q.weight.numpy().copy()
    infogan.from_unconditional(G, D, g.state_dict(), d.state_dict())
    d.eval(), D.eval()
    z = np.random.default_rng(7).standard_normal((3, 4)).astype(np.float32)
    x = g(Tensor(z)).numpy()
    for cat in (0, 2):
        zc = infogan.generator_input(z, np.full(3, cat), np.full((3, 2), 0.7, np.float32), 3, code_scale=10)
        assert np.allclose(G(Tensor(zc)).numpy(), x, atol=1e-6)
    assert np.allclose(D(Tensor(x))[0].numpy(), d(Tensor(x)).numpy(), atol=1e-6)
    assert np.array_equal(G.h0.weight.numpy()[4:], np.zeros((5, 8)))    # the code rows start at zero
    assert np.array_equal(D.q.weight.numpy(), q_before)                  # Q is not the trained pair's


def test_latent_code_init_shifts_the_trained_latent():
    from npgan import models
    rng = np.random.default_rng(6)
    g = models.Generator(z_dim=4, hidden=8, out=6, irange=0.5, rng=rng)
    d = models.Discriminator(inp=6, units=5, pieces=2, irange=0.5, rng=rng)
    G, D = infogan.build(1, z_dim=4, g_hidden=8, x_dim=6, d_units=5, d_pieces=2, n_cat=3, n_cont=2)
    infogan.from_unconditional(G, D, g.state_dict(), d.state_dict(), code_init="latent", code_scale=10, rng=5)
    mu = np.random.default_rng(5).standard_normal((3, 4))                # the same draws
    z = np.random.default_rng(7).standard_normal((3, 4)).astype(np.float32)
    for cat in (0, 2):
        zc = infogan.generator_input(z, np.full(3, cat), np.full((3, 2), -0.4, np.float32), 3, code_scale=10)
        want = g(Tensor(((z + mu[cat]) / np.sqrt(2)).astype(np.float32))).numpy()
        assert np.allclose(G(Tensor(zc)).numpy(), want, atol=1e-5)
    with pytest.raises(ValueError, match="code_init"):
        infogan.from_unconditional(G, D, g.state_dict(), d.state_dict(), code_init="random")


def test_cluster_code_init_centres_each_value_on_its_mean_latent():
    from npgan import models
    rng = np.random.default_rng(6)
    g = models.Generator(z_dim=4, hidden=8, out=6, irange=0.5, rng=rng)
    d = models.Discriminator(inp=6, units=5, pieces=2, irange=0.5, rng=rng)
    G, D = infogan.build(1, z_dim=4, g_hidden=8, x_dim=6, d_units=5, d_pieces=2, n_cat=3, n_cont=2)
    mu = np.random.default_rng(5).standard_normal((3, 4))
    infogan.from_unconditional(G, D, g.state_dict(), d.state_dict(), code_init="cluster", code_scale=10,
                               means=mu, spread=0.25)
    z = np.random.default_rng(7).standard_normal((3, 4)).astype(np.float32)
    for cat in (0, 2):
        zc = infogan.generator_input(z, np.full(3, cat), np.full((3, 2), 0.3, np.float32), 3, code_scale=10)
        want = g(Tensor((0.25 * z + mu[cat]).astype(np.float32))).numpy()
        assert np.allclose(G(Tensor(zc)).numpy(), want, atol=1e-5)
    for bad in (dict(means=None), dict(means=mu[:2]), dict(means=mu * np.nan), dict(means=mu, spread=0)):
        with pytest.raises(ValueError):
            infogan.from_unconditional(G, D, g.state_dict(), d.state_dict(), code_init="cluster", **bad)


def test_cluster_latent_means_are_the_mean_latents_of_k_means_clusters_in_d_features():
    """Recomputed by hand from the same draws: z, G(z), D's first layer standardised,
    k-means -> each cluster's mean z; sizes add up to n."""
    from npgan import cluster, models
    from npgan.semisupervised import discriminator_features
    rng = np.random.default_rng(6)
    g = models.Generator(z_dim=4, hidden=8, out=6, irange=0.5, rng=rng)
    d = models.Discriminator(inp=6, units=5, pieces=2, irange=0.5, rng=rng)
    assert g.training
    means, sizes = infogan.cluster_latent_means(g, d, n_cat=3, n=200, rng=11, restarts=2, batch=64)
    assert g.training                                       # its mode is given back
    r = np.random.default_rng(11)
    z = r.standard_normal((200, 4)).astype(np.float32)
    g.eval()
    f = discriminator_features(d, g(Tensor(z)).numpy(), layers=("h0",)).astype(np.float64)
    _, lab, _ = cluster.kmeans((f - f.mean(0)) / (f.std(0) + 1e-8), 3, rng=r, restarts=2)
    assert sizes.sum() == 200 and np.array_equal(sizes, np.bincount(lab, minlength=3))
    np.testing.assert_allclose(means, [z[lab == c].mean(0) for c in range(3)], rtol=1e-6, atol=1e-7)


def test_trainer_learns_the_code_on_a_tiny_problem():
    # 3 well-separated "digits" (prototypes + noise) in 16-D; with lam = 1 the categorical
    # code's -log q falls far below log 3 within 480 small steps (the path there depends on
    # rounding: compiled kernels get below 0.35 log 3 by epoch 5, the NumPy reference by ~30;
    # both end near 0.02-0.16 log 3 at epoch 40)
    rng = np.random.default_rng(6)
    protos = rng.random((3, 16)) > 0.5
    data = np.clip(protos[rng.integers(0, 3, 600)] * 0.9 + rng.random((600, 16)) * 0.1, 0, 1)
    G, D = infogan.build(0, data.astype(np.float32), n_cat=3, n_cont=1, x_dim=16, z_dim=4,
                         g_hidden=32, d_units=16, d_pieces=2)
    tr = infogan.InfoGANTrainer(G, D, data.astype(np.float32), batch_size=50, lr_d=5e-3, lr_g=5e-3)
    first = tr.train_epoch()
    for _ in range(39):
        rec = tr.train_epoch()
    assert first["mi_cat"] > 0.9 * math.log(3)
    assert rec["mi_cat"] < 0.35 * math.log(3)
    assert rec["mi_lower_bound"] > first["mi_lower_bound"] + 0.5
    cat, cont = infogan.sample_codes(300, np.random.default_rng(0), 3, 1)
    imgs = tr.generate(cat, cont, np.random.default_rng(1))
    q_cat, _ = tr.predict_codes(imgs)
    assert (q_cat == cat).mean() > 0.95


def test_q_clean_is_the_dropout_free_pass():
    rng = np.random.default_rng(9)
    D = infogan.InfoDiscriminator(units=4, pieces=2, inp=6, rng=rng, dtype="float64")
    x = rng.random((5, 6))
    q_train = D.q_clean(x).numpy()                  # train mode: still no dropout
    _, q_eval = D.eval()(x)
    np.testing.assert_allclose(q_train, q_eval.numpy(), rtol=1e-12)
    D.train()
    _, q_drop = D(x)
    assert not np.allclose(q_drop.numpy(), q_eval.numpy())    # the shared pass has dropout


def test_lam_cont_weights_the_continuous_part_alone():
    # one SGD step (no momentum) is -lr x the gradient, and the gradient is linear in the
    # weights: step(lam_cont = w) = step(0) + w (step(1) - step(0)), for both players
    rng = np.random.default_rng(3)
    data = rng.random((40, 12))

    def one_step(lam_cont):
        G, D = infogan.build(5, data, n_cat=3, n_cont=2, x_dim=12, z_dim=4, g_hidden=8,
                             d_units=6, d_pieces=2, dtype="float64")
        before = [p.data.copy() for p in G.parameters() + D.parameters()]
        tr = infogan.InfoGANTrainer(G, D, data, batch_size=20, optimizer="sgd", lr_d=0.1,
                                    lr_g=0.1, momentum=0.0, seed=1, lam_cont=lam_cont)
        tr.step(data[:20])
        return [p.data - b for p, b in zip(G.parameters() + D.parameters(), before)]

    d0, d1, dw = one_step(0.0), one_step(1.0), one_step(0.3)
    assert any(np.abs(a - b).max() > 1e-6 for a, b in zip(d0, d1))   # the part matters
    for a, b, c in zip(d0, d1, dw):
        np.testing.assert_allclose(c, a + 0.3 * (b - a), rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="lam_cont"):
        infogan.InfoGANTrainer(*infogan.build(0, data, n_cat=3, n_cont=2, x_dim=12, z_dim=4,
                                              g_hidden=8, d_units=6, d_pieces=2), data,
                               lam_cont=-1.0)
