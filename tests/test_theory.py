"""npgan.theory: the paper's Section 4 on arrays, checked against closed forms,
independent estimates and npgan's own autograd; plus a D trained on fixed
densities against D* (Proposition 1)."""
import math

import numpy as np
import pytest

import npgan
from conftest import load_example, one_blas_thread  # noqa: F401  (fixture)
from npgan import theory, toys

X = theory.grid(-40, 40, 40001)        # dx = 0.002
g = theory.gaussian_pdf


_load = load_example




# -- densities -------------------------------------------------------------------------------------
def test_densities_integrate_to_one():
    assert theory.integrate(g(X, 1.5, 0.3), X) == pytest.approx(1, abs=1e-12)
    mix = theory.mixture_pdf(X, (-3, 0, 4), (0.5, 1, 2), (1, 2, 3))
    assert theory.integrate(mix, X) == pytest.approx(1, abs=1e-10)
    # weights are normalised; the mean of the mixture is the weighted mean of the components
    assert theory.integrate(X * mix, X) == pytest.approx((-3 + 0 + 12) / 6, abs=1e-9)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        theory.grid(1, 0)
    with pytest.raises(ValueError):
        g(X, 0, 0)
    with pytest.raises(ValueError):
        theory.mixture_pdf(X, (0, 1), (1, 1), (1, -1))
    with pytest.raises(ValueError):
        theory.optimal_discriminator([-1.0], [1.0])
    with pytest.raises(ValueError):
        theory.g_loss_logit_grad(0.0, "wasserstein")


# -- Proposition 1 and Theorem 1 -----------------------------------------------------------------------
def test_optimal_discriminator_formula():
    d = theory.optimal_discriminator([1.0, 0.0, 3.0, 0.0], [1.0, 2.0, 1.0, 0.0])
    np.testing.assert_array_equal(d, [0.5, 0.0, 0.75, 0.5])     # 0/0 -> 1/2 by convention


PAIRS = [
    ("same", g(X, 0, 1), g(X, 0, 1)),
    ("shift", g(X, 0, 1), g(X, 1, 1)),
    ("scale", g(X, 0, 1), g(X, 0, 2)),
    ("narrow far", g(X, 0, 1), g(X, 3, 0.5)),
    ("mixture", g(X, 0, 1), theory.mixture_pdf(X, (-2, 2), (0.5, 0.5))),
    ("mixture vs wide", theory.mixture_pdf(X, (-1.5, 2), (0.5, 0.8), (0.6, 0.4)), g(X, 0, 2)),
    ("disjoint", g(X, -5, 0.1), g(X, 5, 0.1)),
]


@pytest.mark.parametrize("name,p,q", PAIRS, ids=[p[0] for p in PAIRS])
def test_value_at_D_star_is_minus_log4_plus_2jsd(name, p, q):
    """Theorem 1 by quadrature: V(G, D*) evaluated as V of a discriminator
    (D* given by its logits, through log D = -softplus(-l) and
    log(1 - D) = -softplus(l)) equals -log 4 + 2 JSD within 1e-6."""
    c = float(theory.criterion_from_jsd(theory.jsd(X, p, q)))
    v = theory.value_function(X, p, q, logits=theory.optimal_logits(p, q))
    assert v == pytest.approx(c, abs=1e-6)
    assert theory.virtual_criterion(X, p, q) == pytest.approx(c, abs=1e-9)
    assert -theory.LOG4 - 1e-9 <= c <= 1e-9


X12 = theory.grid(-12, 12, 24001)
PROB_PAIRS = [("same", g(X12, 0, 1), g(X12, 0, 1)), ("shift", g(X12, 0, 1), g(X12, 1, 1)),
              ("scale", g(X12, 0, 1), g(X12, 0, 1.3)), ("both", g(X12, 0, 1), g(X12, 0.5, 1.2)),
              ("mixture", theory.mixture_pdf(X12, (-1, 1), (1, 1)), g(X12, 0, 1.3))]


@pytest.mark.parametrize("name,p,q", PROB_PAIRS, ids=[p[0] for p in PROB_PAIRS])
def test_value_at_D_star_probabilities(name, p, q):
    """The same with D* as probabilities p / (p + q), on a grid where neither
    density is < 1e-16 times the other, so that neither D* nor 1 - D* rounds
    to 0."""
    v = theory.value_function(X12, p, q, D=theory.optimal_discriminator(p, q))
    assert v == pytest.approx(float(theory.criterion_from_jsd(theory.jsd(X12, p, q))), abs=1e-6)


def test_probabilities_round_where_logits_do_not():
    """Where p_g < 1e-16 p_data, 1 - D* rounds to 0 and log(1 - D*) to -inf,
    though p_g log(1 - D*) -> 0: the probability route gives -inf, the logit
    route (log(1 - D) = -softplus(l)) the right value. Losses from logits."""
    p, q = g(X, 0, 1), g(X, 3, 0.5)
    c = float(theory.criterion_from_jsd(theory.jsd(X, p, q)))
    assert theory.value_function(X, p, q, D=theory.optimal_discriminator(p, q)) == -np.inf
    assert theory.value_function(X, p, q, logits=theory.optimal_logits(p, q)) == pytest.approx(c, abs=1e-9)


@pytest.mark.parametrize("name,p,q", PAIRS[1:5], ids=[p[0] for p in PAIRS[1:5]])
def test_D_star_maximises_V(name, p, q):
    """Any other D does worse: 1/2 everywhere gives exactly -log 4; bent D* lower."""
    v_star = theory.virtual_criterion(X, p, q)
    assert theory.value_function(X, p, q, D=np.full_like(X, 0.5)) == pytest.approx(-theory.LOG4, abs=1e-9)
    d_star = theory.optimal_discriminator(p, q)
    for bend in (0.8, 0.95, 1.05, 1.25):       # D = sigmoid(bend * logit D*)
        assert theory.value_function(X, p, q, logits=bend * theory.optimal_logits(p, q)) < v_star
    assert theory.value_function(X, p, q, logits=theory.optimal_logits(p, q) + 0.1) < v_star
    assert theory.value_function(X, p, q, D=np.clip(d_star + 0.02, 0, 1)) < v_star


def test_minimum_only_at_p_g_equal_p_data():
    p = g(X, 0, 1)
    cs = {mu: theory.virtual_criterion(X, p, g(X, mu, 1)) for mu in np.linspace(-2, 2, 21)}
    assert min(cs, key=cs.get) == pytest.approx(0.0)
    assert cs[0.0] == pytest.approx(-math.log(4), abs=1e-12)
    assert all(c > -math.log(4) + 1e-4 for mu, c in cs.items() if abs(mu) > 0.05)


def test_jsd_properties_and_monte_carlo():
    p, q = g(X, 0, 1), g(X, 1.5, 0.7)
    js = theory.jsd(X, p, q)
    assert js == pytest.approx(theory.jsd(X, q, p), abs=1e-14)         # symmetric
    assert theory.jsd(X, p, p) == pytest.approx(0, abs=1e-14)
    assert theory.jsd(X, g(X, -5, 0.1), g(X, 5, 0.1)) == pytest.approx(math.log(2), abs=1e-12)
    # independent estimate: 1/2 E_p[log 2p/(p+q)] + 1/2 E_q[log 2q/(p+q)] by sampling
    rng = np.random.default_rng(0)
    xp, xq = rng.normal(0, 1, 400_000), rng.normal(1.5, 0.7, 400_000)
    pp, qp = g(xp, 0, 1), g(xp, 1.5, 0.7)
    pq, qq = g(xq, 0, 1), g(xq, 1.5, 0.7)
    mc = 0.5 * np.mean(np.log(2 * pp / (pp + qp))) + 0.5 * np.mean(np.log(2 * qq / (pq + qq)))
    assert js == pytest.approx(mc, abs=3e-3)
    # KL of two Gaussians has a closed form (on a grid where q does not underflow before p)
    x = theory.grid(-12, 12, 24001)
    kl = theory.kl_divergence(x, g(x, 0, 1), g(x, 1.5, 0.7))
    assert kl == pytest.approx(math.log(0.7 / 1) + (1 + 1.5 ** 2) / (2 * 0.7 ** 2) - 0.5, abs=1e-9)


@pytest.mark.parametrize("theta,s", [(0.3, 1.0), (0.5, 0.3), (1.0, 0.3), (0.4, 0.1), (1.0, 0.1)])
def test_jsd_shift_gradient_matches_finite_differences(theta, s):
    x = theory.grid(-8, 10, 36001)
    p = g(x, 0, s)
    q = g(x, theta, s)
    grad = theory.jsd_shift_gradient(x, p, q, q * (x - theta) / s ** 2)
    h = 1e-5
    fd = (theory.jsd(x, p, g(x, theta + h, s)) - theory.jsd(x, p, g(x, theta - h, s))) / (2 * h)
    assert grad == pytest.approx(fd, rel=1e-5, abs=1e-9)
    assert grad > 0


def test_jsd_gradient_vanishes_as_the_overlap_goes():
    x = theory.grid(-2, 8, 20001)
    s, grads = 0.1, []
    for theta in (0.5, 1.0, 2.0, 4.0):
        q = g(x, theta, s)
        grads.append(theory.jsd_shift_gradient(x, g(x, 0, s), q, q * (x - theta) / s ** 2))
        assert theory.jsd(x, g(x, 0, s), q) == pytest.approx(math.log(2), abs=0.02)
    assert grads[0] > 1e-2 and 0 < grads[2] < 1e-18 and 0 < grads[3] < 1e-80
    assert all(a > b for a, b in zip(grads, grads[1:]))


# -- KDE ----------------------------------------------------------------------------------------------------
def test_kde_of_gaussian_samples():
    x = theory.grid(-6, 6, 1201)
    s = np.random.default_rng(1).standard_normal(20_000)
    est = theory.kde(s, x)
    assert theory.integrate(est, x) == pytest.approx(1, abs=1e-3)
    assert np.max(np.abs(est - g(x, 0, 1))) < 0.02
    assert theory.silverman_bandwidth(s) == pytest.approx(0.9 * 20_000 ** -0.2, rel=0.05)
    with pytest.raises(ValueError):
        theory.silverman_bandwidth(np.ones(10))


# -- saturation: G's loss as a function of D's logit -------------------------------------------------------
LOGITS = np.array([-100.0, -30.0, -8.0, -1.0, 0.0, 0.5, 3.0, 30.0, 100.0])


def test_g_loss_closed_forms():
    d = 1 / (1 + np.exp(-LOGITS))
    np.testing.assert_allclose(theory.g_loss_logit_grad(LOGITS, "minimax"), -d, rtol=1e-12, atol=0)
    np.testing.assert_allclose(theory.g_loss_logit_grad(LOGITS, "nonsaturating"),
                               -1 / (1 + np.exp(LOGITS)), rtol=1e-12, atol=0)
    # early training (D rejects: D -> 0): minimax vanishes like D, non-saturating tends to -1
    assert abs(theory.g_loss_logit_grad(-30.0, "minimax")) < 1e-12
    assert theory.g_loss_logit_grad(-30.0, "nonsaturating") == pytest.approx(-1.0)


def _gan_g_loss(loss):
    """The G losses exactly as the trainer (and so the 1-D game) trains with them."""
    return toys.gaussian_gan(seed=0, g_loss=loss)._g_loss


@pytest.mark.parametrize("loss", ["minimax", "nonsaturating"])
def test_autograd_gradients_of_g_losses_match_closed_forms(loss):
    """npgan's backward through the losses G trains with (from logits) gives the
    closed-form d(loss)/d(logit), also at |logit| = 100 where a loss built as
    log(clip(sigmoid)) would give 0."""
    g_loss = _gan_g_loss(loss)
    l = npgan.Tensor(LOGITS.reshape(-1, 1), requires_grad=True)
    g_loss(l).backward()
    per_sample = l.grad.ravel() * len(LOGITS)          # the loss is a mean
    np.testing.assert_allclose(per_sample, theory.g_loss_logit_grad(LOGITS, loss), rtol=1e-10, atol=1e-300)
    # and finite differences agree
    assert npgan.gradcheck(lambda t: g_loss(t), np.array([[-3.0], [0.2], [2.5]]))


def test_saturation_example_measures_the_closed_forms(one_blas_thread):
    sat = _load("saturation")
    for loss in ("minimax", "nonsaturating"):
        np.testing.assert_allclose(sat.autograd_logit_grad(LOGITS, loss),
                                   theory.g_loss_logit_grad(LOGITS, loss), rtol=1e-10, atol=1e-300)


def test_sigmoid_is_the_reference_sigmoid_bit_for_bit():
    """theory._sigmoid (host NumPy whatever the backend) and the kernels'
    reference sigmoid give the same bits, tails, zeros, infinities and NaN included."""
    from npgan._kernels import reference
    l = np.concatenate([np.linspace(-800, 800, 20001), np.geomspace(1e-300, 1e3, 2001),
                        -np.geomspace(1e-300, 1e3, 2001),
                        [np.inf, -np.inf, np.nan, -0.0, 0.0, 5e-324, -5e-324]])
    assert theory._sigmoid(l).tobytes() == reference.sigmoid_forward(l).tobytes()


# -- Proposition 1 with a trained D ---------------------------------------------------------------------
def test_trained_discriminator_matches_D_star(one_blas_thread):
    """A small MLP D trained by BCE from logits on samples of two fixed
    densities (1,000 steps of 256 + 256 samples, ~1 s) approximates D* = p_data / (p_data + p_g):
    within 0.15 wherever (p_data + p_g)/2 > 0.01, within 0.02 on average
    (weighted by that mass); its V is within 0.01 nats of V(D*) = C(G)."""
    od = _load("optimal_discriminator")
    x = theory.grid(-6, 6, 1201)
    p_data, p_g = od.densities(x)
    untrained = od.make_d(np.random.default_rng(0))
    assert od.errors(untrained)["max_abs"] > 0.3            # the check can fail
    D, hist = od.train_d(steps=1000, m=256, seed=0, x=x)
    e = od.errors(D)
    assert e["max_abs"] < 0.15, e
    assert e["weighted_mean_abs"] < 0.02, e
    v_star = theory.virtual_criterion(x, p_data, p_g)
    assert 0 <= v_star - hist[-1][1] < 0.01
    assert v_star - hist[0][1] > 0.1
