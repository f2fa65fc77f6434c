"""Scoring an unsupervised code against labels: the best one-to-one map of
code values to classes (the Hungarian method, in NumPy) and the fraction of
samples it gets right (InfoGAN's categorical code against the reference
classifier's class, say).

    agree, mapping = cluster_agreement(codes, labels)   # codes, labels (N,) int
"""
import numpy

from .checks import MetricsError

__all__ = ["best_assignment", "confusion", "cluster_agreement"]


def best_assignment(cost):
    """The Hungarian method (Kuhn-Munkres, O(n^3) with potentials) on a square
    or wide cost matrix (n rows <= m columns): -> cols (n,) int, row i assigned
    column cols[i], distinct columns, sum of cost[i, cols[i]] minimal.
    NumPy only (SciPy's ``linear_sum_assignment`` gives the same minimum)."""
    c = numpy.asarray(cost, dtype=numpy.float64)
    if c.ndim != 2 or c.shape[0] > c.shape[1]:
        raise MetricsError(f"best_assignment: need a cost matrix (n, m) with n <= m, got {c.shape}")
    if not numpy.isfinite(c).all():
        raise MetricsError("best_assignment: the cost matrix holds NaN or inf")
    n, m = c.shape
    u, v = numpy.zeros(n + 1), numpy.zeros(m + 1)   # potentials (1-based, 0 is a sentinel)
    match = numpy.zeros(m + 1, dtype=numpy.int64)   # match[j]: the row holding column j
    way = numpy.zeros(m + 1, dtype=numpy.int64)
    for i in range(1, n + 1):
        match[0], j0 = i, 0
        minv = numpy.full(m + 1, numpy.inf)
        used = numpy.zeros(m + 1, dtype=bool)
        while True:                        # grow an alternating tree until a free column
            used[j0] = True
            i0 = match[j0]
            free = ~used[1:]
            cur = c[i0 - 1] - u[i0] - v[1:]
            better = free & (cur < minv[1:])
            minv[1:][better] = cur[better]
            way[1:][better] = j0
            cand = numpy.where(free, minv[1:], numpy.inf)
            j1 = int(cand.argmin()) + 1
            delta = cand[j1 - 1]
            u[match[used]] += delta
            v[used] -= delta
            minv[1:][free] -= delta
            j0 = j1
            if match[j0] == 0:
                break
        while j0:                          # flip the augmenting path
            j1 = way[j0]
            match[j0] = match[j1]
            j0 = j1
    cols = numpy.empty(n, dtype=numpy.int64)
    for j in range(1, m + 1):
        if match[j]:
            cols[match[j] - 1] = j - 1
    return cols


def confusion(codes, labels, n_codes, n_labels):
    """counts (n_codes, n_labels): how often code value i met label j."""
    codes, labels = numpy.asarray(codes), numpy.asarray(labels)
    if codes.shape != labels.shape or codes.ndim != 1:
        raise MetricsError(f"confusion: codes {codes.shape} and labels {labels.shape} must be equal 1-D")
    out = numpy.zeros((n_codes, n_labels), dtype=numpy.int64)
    numpy.add.at(out, (codes, labels), 1)
    return out


def cluster_agreement(codes, labels, n_codes=10, n_labels=10):
    """Fraction of samples whose code maps to their label under the best
    one-to-one map of code values to labels (Hungarian), and that map
    (mapping[code] = label). n_codes <= n_labels."""
    counts = confusion(codes, labels, n_codes, n_labels)
    mapping = best_assignment(-counts)
    agree = counts[numpy.arange(n_codes), mapping].sum() / max(counts.sum(), 1)
    return float(agree), mapping
