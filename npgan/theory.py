"""The paper's theory (Section 4) on arrays: densities, D*, V(D, G), JSD, C(G).

Plain NumPy on the host, no Tensor: this is analysis, not training. The
examples that illustrate the paper's propositions and the tests that check
them share these helpers.

1-D densities live on a uniform grid ``x``; integrals are the trapezoid rule
on that grid, so every quantity below is a *quadrature* value. Choose a grid
wide enough that the densities are negligible at its ends (then their
integrals are 1 to ~1e-12) and fine enough to resolve the narrowest one.

    Proposition 1   D*_G(x) = p_data(x) / (p_data(x) + p_g(x))
    Theorem 1       C(G) = max_D V(G, D) = V(G, D*_G) = -log 4 + 2 JSD(p_data || p_g),
                    minimal (-log 4) exactly when p_g = p_data

    V(G, D) = E_{x~p_data}[log D(x)] + E_{x~p_g}[log(1 - D(x))]

All logarithms are natural (nats): JSD lies in [0, log 2].

The 2-D ring of 8 Gaussians and its mode metrics (modes covered, fraction of
high-quality samples) are a sample-quality metric: :mod:`npgan.metrics.modes`.
"""
import math

import numpy as np

LOG4 = math.log(4.0)
LOG2 = math.log(2.0)

__all__ = ["LOG2", "LOG4", "grid", "integrate", "gaussian_pdf", "mixture_pdf", "optimal_discriminator",
           "optimal_logits", "value_function", "kl_divergence", "jsd", "jsd_shift_gradient",
           "criterion_from_jsd", "virtual_criterion", "kde", "silverman_bandwidth", "g_loss_logit_grad"]


# -- grids and densities -------------------------------------------------------------------
def grid(lo, hi, n=4001):
    """A uniform grid of ``n`` points on [lo, hi] (float64)."""
    if not hi > lo or n < 2:
        raise ValueError(f"grid needs hi > lo and n >= 2, got lo={lo}, hi={hi}, n={n}")
    return np.linspace(lo, hi, int(n))


def integrate(f, x):
    """Trapezoid rule: the integral of samples ``f`` over the grid ``x``
    (the last axis of f runs along x)."""
    f, x = np.asarray(f, dtype=np.float64), np.asarray(x, dtype=np.float64)
    dx = np.diff(x)
    return np.sum(0.5 * (f[..., 1:] + f[..., :-1]) * dx, axis=-1)


def gaussian_pdf(x, mean=0.0, std=1.0):
    """The N(mean, std^2) density at ``x``."""
    if std <= 0:
        raise ValueError(f"std must be > 0, got {std}")
    x = np.asarray(x, dtype=np.float64)
    return np.exp(-0.5 * ((x - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi))


def mixture_pdf(x, means, stds, weights=None):
    """Density of a mixture of 1-D Gaussians (weights default to equal; they
    are normalised to sum to 1)."""
    means, stds = np.atleast_1d(means).astype(float), np.atleast_1d(stds).astype(float)
    stds = np.broadcast_to(stds, means.shape)
    w = np.ones_like(means) if weights is None else np.atleast_1d(weights).astype(float)
    if w.shape != means.shape or np.any(w < 0) or w.sum() <= 0:
        raise ValueError("mixture weights must be non-negative, one per component, not all zero")
    w = w / w.sum()
    return sum(wi * gaussian_pdf(x, m, s) for wi, m, s in zip(w, means, stds))


# -- Proposition 1 and Theorem 1 -------------------------------------------------------------
def optimal_discriminator(p_data, p_g):
    """D*_G(x) = p_data(x) / (p_data(x) + p_g(x)) (Proposition 1).

    Where both densities are 0 D* is undefined (V does not depend on it
    there); 1/2 is returned."""
    p, q = np.asarray(p_data, dtype=np.float64), np.asarray(p_g, dtype=np.float64)
    if np.any(p < 0) or np.any(q < 0):
        raise ValueError("densities must be non-negative")
    s = p + q
    return np.divide(p, s, out=np.full(np.broadcast(p, q).shape, 0.5), where=s > 0)


def _xlogy(a, b):
    """a * log(b) with 0 * log(anything) = 0 (the convention in V, KL, JSD)."""
    a, b = np.broadcast_arrays(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))
    out = np.zeros(a.shape)
    m = a != 0
    with np.errstate(divide="ignore"):
        out[m] = a[m] * np.log(b[m])
    return out


def value_function(x, p_data, p_g, D=None, logits=None):
    """V(G, D) = int p_data log D + p_g log(1 - D) dx by quadrature on ``x``.

    D: D's output (probabilities) on the grid, or ``logits``: D's logits l
    (then log D = -softplus(-l) and log(1 - D) = -softplus(l), exact for any
    l, as the training losses are). Neither means D*_G, computed as
    log p_data - log(p_data + p_g) so that no ratio is rounded first.
    With probabilities, a D that is exactly 0 (or 1) where p_data (or p_g)
    has mass gives -inf; D* rounded to a probability does that where one
    density is ~1e-300 times the other: pass logits there
    (log p_data - log p_g for D*)."""
    p, q = np.asarray(p_data, dtype=np.float64), np.asarray(p_g, dtype=np.float64)
    if D is not None and logits is not None:
        raise ValueError("give D or logits, not both")
    if logits is not None:
        l = np.asarray(logits, dtype=np.float64)
        integrand = -_xsoftplus(p, -l) - _xsoftplus(q, l)
    elif D is None:
        s = p + q
        integrand = _xlogy(p, np.where(p > 0, p, 1.0)) - _xlogy(p, s) \
            + _xlogy(q, np.where(q > 0, q, 1.0)) - _xlogy(q, s)
    else:
        D = np.asarray(D, dtype=np.float64)
        integrand = _xlogy(p, D) + _xlogy(q, 1.0 - D)
    return float(integrate(integrand, x))


def _xsoftplus(a, l):
    """a * softplus(l) = a * log(1 + e^l), stable, with 0 * softplus(+inf) = 0."""
    a, l = np.broadcast_arrays(np.asarray(a, dtype=np.float64), np.asarray(l, dtype=np.float64))
    out = np.zeros(a.shape)
    m = a != 0
    lm = l[m]
    out[m] = a[m] * (np.maximum(lm, 0) + np.log1p(np.exp(-np.abs(lm))))
    return out


def optimal_logits(p_data, p_g):
    """The logit of D*: log p_data - log p_g (+-inf where one density is 0)."""
    p, q = np.asarray(p_data, dtype=np.float64), np.asarray(p_g, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((p == 0) & (q == 0), 0.0, np.log(p) - np.log(q))


def kl_divergence(x, p, q):
    """KL(p || q) = int p log(p / q) dx by quadrature (inf where q = 0 < p)."""
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    if np.any((q == 0) & (p > 0)):
        return math.inf
    return float(integrate(_xlogy(p, np.where(p > 0, p, 1.0)) - _xlogy(p, q), x))


def jsd(x, p, q):
    """Jensen-Shannon divergence 1/2 KL(p || m) + 1/2 KL(q || m), m = (p + q) / 2,
    by quadrature, in nats: 0 for p = q, log 2 for disjoint supports."""
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    if np.any(p < 0) or np.any(q < 0):
        raise ValueError("densities must be non-negative")
    # KL(p || m) = int p log(2p / (p + q)): p + q >= p, so no m = (p + q) / 2 can
    # round to 0 where p > 0 (it would for subnormal p)
    s = p + q
    integrand = _xlogy(p, 2 * p) - _xlogy(p, s) + _xlogy(q, 2 * q) - _xlogy(q, s)
    return float(0.5 * integrate(integrand, x))


def jsd_shift_gradient(x, p, q, dq):
    """d JSD(p || q_theta) / d theta for a family q_theta with derivative
    ``dq`` = d q_theta(x) / d theta on the grid (p fixed):

        d/dtheta JSD = 1/2 int dq(x) log(2 q(x) / (p(x) + q(x))) dx
                     = 1/2 int dq(x) log(q(x) / (p(x) + q(x))) dx

    (the terms with int dq = 0 drop out; the second form also drops the
    log 2, so that where q >> p the integrand is -dq log1p(p / q) ~ 0 instead
    of a log 2 that cancels only to rounding, and tiny gradients keep their
    digits). For q = N(theta, s^2): dq = q (x - theta) / s^2."""
    p, q, dq = (np.asarray(a, dtype=np.float64) for a in (p, q, dq))
    log_ratio = np.zeros(np.broadcast(p, q).shape)
    near = (q > 0) & (p <= q)             # log(q / (p + q)) = -log1p(p / q), exact near 0
    far = (q > 0) & (p > q)               # p / q could overflow: take the logs apart
    log_ratio[near] = -np.log1p(p[near] / q[near])
    log_ratio[far] = np.log(q[far]) - np.log(p[far] + q[far])
    return float(0.5 * integrate(dq * log_ratio, x))


def criterion_from_jsd(js):
    """Theorem 1's right-hand side: C(G) = -log 4 + 2 JSD."""
    return -LOG4 + 2.0 * np.asarray(js)


def virtual_criterion(x, p_data, p_g):
    """C(G) = max_D V(G, D) = V(G, D*_G), evaluated by quadrature (the left-hand
    side of Theorem 1; compare with criterion_from_jsd(jsd(...)))."""
    return value_function(x, p_data, p_g, D=None)


# -- samples -> densities ------------------------------------------------------------------------
def silverman_bandwidth(samples):
    """Silverman's rule of thumb for a 1-D Gaussian KDE:
    0.9 min(std, IQR / 1.34) n^(-1/5)."""
    s = np.asarray(samples, dtype=np.float64).ravel()
    if s.size < 2:
        raise ValueError("need at least 2 samples for a bandwidth")
    iqr = np.subtract(*np.percentile(s, [75, 25]))
    spread = min(s.std(ddof=1), iqr / 1.34) if iqr > 0 else s.std(ddof=1)
    if spread <= 0:
        raise ValueError("all samples are equal: no bandwidth; pass one")
    return 0.9 * spread * s.size ** -0.2


def kde(samples, x, bandwidth=None, chunk=2048):
    """Gaussian kernel density estimate of 1-D ``samples`` on the grid ``x``
    (bandwidth: Silverman's rule unless given)."""
    s = np.asarray(samples, dtype=np.float64).ravel()
    x = np.asarray(x, dtype=np.float64)
    h = silverman_bandwidth(s) if bandwidth is None else float(bandwidth)
    out = np.zeros(x.shape)
    for i in range(0, s.size, chunk):
        u = (x[..., None] - s[i:i + chunk]) / h
        out += np.exp(-0.5 * u * u).sum(axis=-1)
    return out / (s.size * h * math.sqrt(2 * math.pi))


# -- the generator's loss, as a function of D's logit --------------------------------------------
def g_loss_logit_grad(logits, loss):
    """d(loss)/d(logit) of G's loss at D's logit l (D = sigmoid(l)), closed form:

        "minimax" (saturating):   loss = log(1 - D) = -softplus(l);  d/dl = -D
        "nonsaturating":          loss = -log D    =  softplus(-l);  d/dl = -(1 - D)

    Where D rejects a sample (D -> 0) the minimax gradient vanishes and the
    non-saturating one tends to -1: the reason for Section 3's remark."""
    l = np.asarray(logits, dtype=np.float64)
    if loss == "minimax":
        return -_sigmoid(l)
    if loss == "nonsaturating":
        return -_sigmoid(-l)
    raise ValueError(f"loss must be 'minimax' or 'nonsaturating', got {loss!r}")


def _sigmoid(l):
    """1 / (1 + e^-l) with full relative precision in both tails.

    Bit for bit ``npgan._kernels.reference.sigmoid_forward`` on NumPy arrays
    (tests/test_theory.py checks it), kept here because that one computes on
    the active backend (``backend.xp``): under CuPy it would refuse these
    host arrays, while this module is host NumPy whatever the backend."""
    e = np.exp(-np.abs(l))
    return np.where(l >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
