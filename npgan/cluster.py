"""k-means (Lloyd's algorithm) on host arrays: the k-means 'generator' baseline of
``examples/evaluate_samples.py`` and InfoGAN's unsupervised code initialisation
(:func:`npgan.infogan.cluster_latent_means`)."""
import numpy


def assign(x, centroids, block=5000):
    """Nearest centroid of each row: x (N, d), centroids (k, d) ->
    (index (N,) int64, squared distance (N,) float64), computed in blocks of
    ``block`` rows as ||c||^2 - 2 x.c in the operands' dtype (ties: lowest index)."""
    c_sq = numpy.einsum("ij,ij->i", centroids, centroids)
    idx, d2 = [], []
    for i in range(0, len(x), block):
        xb = x[i:i + block]
        part = c_sq[None] - 2 * (xb @ centroids.T)
        j = part.argmin(1)
        idx.append(j)
        d2.append(numpy.maximum(part[numpy.arange(len(xb)), j].astype(numpy.float64)
                                + numpy.einsum("ij,ij->i", xb, xb, dtype=numpy.float64), 0.0))
    return numpy.concatenate(idx).astype(numpy.int64), numpy.concatenate(d2)


def kmeans(x, k, rng=None, iters=50, restarts=1):
    """Lloyd's k-means: x (N, d) float32/float64 -> (centroids (k, d) in x's dtype,
    assignment (N,) int64, inertia float: the sum of squared distances to the
    assigned centroids).

    Each restart starts from k distinct rows of x drawn by ``rng`` (a seed or a
    Generator) and alternates assignment and mean update until no assignment
    changes or ``iters`` updates were made (a cluster left empty keeps its
    centroid; sums are accumulated in float64); the restart with the lowest
    inertia is returned."""
    x = numpy.asarray(x)
    if x.ndim != 2 or x.dtype.kind != "f":
        raise ValueError(f"kmeans: need a float array (N, d), got {x.dtype} {x.shape}")
    if not 1 <= k <= len(x):
        raise ValueError(f"kmeans: need 1 <= k <= N, got k={k} for N={len(x)}")
    if iters < 1 or restarts < 1:
        raise ValueError("kmeans: iters and restarts must be >= 1")
    if not numpy.isfinite(x).all():
        raise ValueError("kmeans: x has NaN or infinite values")
    rng = rng if isinstance(rng, numpy.random.Generator) else numpy.random.default_rng(rng)
    best = None
    for _ in range(restarts):
        c = x[rng.choice(len(x), k, replace=False)].copy()
        labels = None
        for _ in range(iters):
            new, _ = assign(x, c)
            if labels is not None and numpy.array_equal(new, labels):
                break
            labels = new
            counts = numpy.bincount(labels, minlength=k)
            sums = numpy.zeros(c.shape, numpy.float64)
            numpy.add.at(sums, labels, x)
            keep = counts > 0
            c[keep] = (sums[keep] / counts[keep, None]).astype(x.dtype)
        labels, d2 = assign(x, c)
        inertia = float(d2.sum())
        if best is None or inertia < best[2]:
            best = (c, labels, inertia)
    return best
