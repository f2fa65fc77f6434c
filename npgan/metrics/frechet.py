"""Fréchet distance between Gaussians fitted to two sets of features (FID's
formula, Heusel et al. 2017, here in the reference classifier's features):

    FD = ||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr( (S1 S2)^{1/2} )
"""
import numpy

from .checks import MetricsError, check_features

#: eigenvalues above -NEG_TOL * (largest eigenvalue) are rounding noise
NEG_TOL = 1e-8


def feature_statistics(features):
    """features (N, D), N >= 2 -> (mu (D,) float64, sigma (D, D) float64),
    the mean and the unbiased (ddof=1) covariance."""
    f = check_features(features, "features", min_count=2).astype(numpy.float64)
    mu = f.mean(axis=0)
    c = f - mu
    return mu, (c.T @ c) / (len(f) - 1)


def _check_stats(mu, sigma, name):
    mu = numpy.asarray(mu, dtype=numpy.float64)
    sigma = numpy.asarray(sigma, dtype=numpy.float64)
    if mu.ndim != 1 or sigma.shape != (len(mu), len(mu)):
        raise MetricsError(f"{name}: mean of shape {mu.shape} and covariance of shape "
                           f"{sigma.shape} do not fit (need (D,) and (D, D))")
    if not (numpy.isfinite(mu).all() and numpy.isfinite(sigma).all()):
        raise MetricsError(f"{name}: mean or covariance holds NaN or inf")
    scale = max(float(numpy.abs(sigma).max()), 1e-300)
    if float(numpy.abs(sigma - sigma.T).max()) > 1e-6 * scale:
        raise MetricsError(f"{name}: covariance is not symmetric")
    return mu, (sigma + sigma.T) / 2


def _psd_eigvals(m, name):
    """Eigenvalues (and vectors) of symmetric ``m``, rounding negatives set to 0."""
    w, v = numpy.linalg.eigh(m)
    top = max(float(w[-1]), 0.0)
    if w[0] < -NEG_TOL * max(top, 1e-300):
        raise MetricsError(f"{name} is not positive semi-definite: eigenvalue {w[0]:.3g} "
                           f"(largest {top:.3g})")
    return numpy.maximum(w, 0.0), v


def trace_sqrt_product(sigma1, sigma2):
    """tr((S1 S2)^{1/2}) for symmetric PSD S1, S2 (D, D), without complex numbers.

    S1 S2 is not symmetric, and ``scipy.linalg.sqrtm(S1 @ S2)`` (what FID code
    usually calls) works through a complex Schur form: rounding leaves small
    imaginary parts in the result (~1e-10, larger and sometimes non-finite
    when a covariance is singular: fewer samples than features, dead ReLU
    units), which that code discards when below 1e-3 and otherwise treats as
    an error, retrying with eps*I added to both matrices.

    Here instead: S1 S2 = R (R S2 R) R^{-1} with R = S1^{1/2} (and by
    continuity when S1 is singular), so S1 S2 has the eigenvalues of the
    symmetric PSD matrix M = R S2 R, which are real and >= 0, and
    tr((S1 S2)^{1/2}) = sum_i sqrt(lambda_i(M)). R and the lambda_i come from
    ``numpy.linalg.eigh`` of symmetric matrices, so no imaginary part ever
    appears; the only rounding artefact is eigenvalues a hair below zero,
    which are set to 0 (anything below -1e-8 x the largest eigenvalue means
    the input is not a covariance and raises MetricsError). Singular
    covariances need no eps. Cost: two D x D eigendecompositions."""
    w1, v1 = _psd_eigvals(sigma1, "sigma1")
    r = (v1 * numpy.sqrt(w1)) @ v1.T
    m = r @ sigma2 @ r
    lam, _ = _psd_eigvals((m + m.T) / 2, "sqrt(sigma1) sigma2 sqrt(sigma1)")
    return float(numpy.sqrt(lam).sum())


def _trace_sqrt_product_sqrtm(sigma1, sigma2):
    """The usual way, for cross-checks: scipy.linalg.sqrtm of S1 S2, imaginary
    parts below 1e-3 of the largest magnitude discarded (larger ones raise)."""
    try:
        import scipy.linalg
    except ImportError as e:
        raise ImportError("method='sqrtm' needs scipy (pip install 'npgan[test]'); the default "
                          "method='eigh' needs only NumPy") from e
    s = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if numpy.iscomplexobj(s):
        if numpy.abs(s.imag).max() > 1e-3 * max(numpy.abs(s).max(), 1e-300):
            raise MetricsError(f"sqrtm(S1 S2) has imaginary part {numpy.abs(s.imag).max():.3g}")
        s = s.real
    return float(numpy.trace(s))


def frechet_terms(mu1, sigma1, mu2, sigma2, method="eigh"):
    """The Fréchet distance's two parts, unclamped -> (mean_term, cov_term):
    mean_term = ||mu1 - mu2||^2 (>= 0) and
    cov_term = tr(S1) + tr(S2) - 2 tr((S1 S2)^{1/2}), >= 0 in exact arithmetic,
    but rounding can leave it a hair negative (or positive) for (near-)equal
    covariances. :func:`frechet_distance` is max(mean_term + cov_term, 0).
    Arguments as :func:`frechet_distance`."""
    mu1, sigma1 = _check_stats(mu1, sigma1, "first Gaussian")
    mu2, sigma2 = _check_stats(mu2, sigma2, "second Gaussian")
    if len(mu1) != len(mu2):
        raise MetricsError(f"dimensions differ: {len(mu1)} and {len(mu2)}")
    if method == "eigh":
        tr = trace_sqrt_product(sigma1, sigma2)
    elif method == "sqrtm":
        tr = _trace_sqrt_product_sqrtm(sigma1, sigma2)
    else:
        raise ValueError(f"method must be 'eigh' or 'sqrtm', got {method!r}")
    diff = mu1 - mu2
    return float(diff @ diff), float(numpy.trace(sigma1) + numpy.trace(sigma2) - 2 * tr)


def frechet_distance(mu1, sigma1, mu2, sigma2, method="eigh"):
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2) -> float >= 0.

    mu: (D,), sigma: (D, D) symmetric PSD (any float dtype; computed in
    float64). ``method``: "eigh" (default, NumPy only; see
    :func:`trace_sqrt_product`) or "sqrtm" (scipy, the usual FID code's way).
    Rounding can make the formula a hair negative for (near-)identical
    Gaussians; that is returned as 0.0 (:func:`frechet_terms` gives the
    unclamped parts)."""
    mean_term, cov_term = frechet_terms(mu1, sigma1, mu2, sigma2, method)
    return max(mean_term + cov_term, 0.0)


def frechet_distance_from_features(features1, features2, method="eigh"):
    """FD between Gaussians fitted to features1 (N1, D) and features2 (N2, D)."""
    f1 = check_features(features1, "features1", min_count=2)
    f2 = check_features(features2, "features2", min_count=2, dim=f1.shape[1])
    return frechet_distance(*feature_statistics(f1), *feature_statistics(f2), method=method)
