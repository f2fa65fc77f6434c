"""Nearest-neighbour metrics, computed in blocks so memory stays bounded:
improved precision and recall (Kynkäänniemi et al. 2019) and the distance of
each sample to its nearest training image (a memorisation check).

Squared distances come from a GEMM, ||a||^2 + ||b||^2 - 2 a.b
(``npgan._kernels.reference.gemm_sqdist``, the one used by the Parzen window
too), in float32 after both sets are centred on the reference set's mean (which keeps the
norms, hence the cancellation error, small); rounding can make that a hair
negative, and such values are set to 0 before the square root. Work runs on
``backend.xp`` (NumPy, or CuPy on a GPU); results come back as NumPy arrays.
A block is ``rows x len(reference)`` float32 of at most ``max_block_bytes``
(default 128 MiB: 560 rows against 60,000 training images).
"""
import numpy

from .. import backend
from .._kernels.reference import gemm_sqdist
from ..progress import Progress
from .checks import MetricsError, check_features

MAX_BLOCK_BYTES = 128 << 20


class _Blocks:
    """Row blocks of ``n`` queries against ``m`` references, reporting progress
    through ``progress(str)`` about every 10 % (and at the end): a
    :class:`npgan.progress.Progress` with a callable."""

    def __init__(self, n, m, max_block_bytes, progress, desc):
        self.rows = max(1, min(n, int(max_block_bytes // (4 * max(m, 1)))))
        self.n, self.progress, self.desc = n, progress, desc

    def __iter__(self):
        bar = Progress(self.n, self.desc, self.progress)
        for i in range(0, self.n, self.rows):
            yield i, min(i + self.rows, self.n)
            bar.update(min(i + self.rows, self.n) - i)


class _Reference:
    """A reference set on the backend, centred, with its squared norms."""

    def __init__(self, ref):
        xp = backend.xp
        ref = xp.asarray(ref, dtype=xp.float32)
        self.center = ref.mean(axis=0, dtype=xp.float64).astype(xp.float32)
        self.x = ref - self.center
        self.sq = xp.einsum("ij,ij->i", self.x, self.x)

    def __len__(self):
        return len(self.x)

    def sq_dist(self, queries):
        """Squared distances (rows, len(ref)) float32 from host ``queries``."""
        xp = backend.xp
        q = xp.asarray(queries, dtype=xp.float32) - self.center
        return gemm_sqdist(q, self.x, xp.einsum("ij,ij->i", q, q), self.sq, norms_first=False)


def knn_radii(features, k=3, max_block_bytes=MAX_BLOCK_BYTES, progress=None, desc="k-NN radii"):
    """Distance of each row of ``features`` (N, D) to its k-th nearest *other*
    row -> (N,) float64. Needs N >= k + 1."""
    f = check_features(features, "features", min_count=k + 1)
    if k < 1:
        raise MetricsError(f"k must be >= 1, got {k}")
    ref = _Reference(f)
    xp = backend.xp
    out = numpy.empty(len(f))
    for a, b in _Blocks(len(f), len(f), max_block_bytes, progress, desc):
        d = ref.sq_dist(f[a:b])
        # the row itself sits at distance ~0, so the k-th other is at index k
        out[a:b] = backend.to_numpy(xp.sqrt(xp.partition(d, k, axis=1)[:, k]))
    return out


def _nearest_blocks(queries, reference, max_block_bytes, progress, desc):
    """(a, b, squared distances of queries[a:b] to every reference row) per block."""
    q = check_features(queries, "queries", min_count=1)
    r = check_features(reference, "reference", min_count=1, dim=q.shape[1])
    ref = _Reference(r)
    for a, b in _Blocks(len(q), len(r), max_block_bytes, progress, desc):
        yield a, b, ref.sq_dist(q[a:b])


def nearest_distances(queries, reference, max_block_bytes=MAX_BLOCK_BYTES, progress=None,
                      desc="nearest neighbours"):
    """Euclidean distance of each query (N, D) to its nearest row of
    ``reference`` (M, D) -> (N,) float64."""
    out = numpy.empty(len(queries))
    for a, b, d in _nearest_blocks(queries, reference, max_block_bytes, progress, desc):
        out[a:b] = backend.to_numpy(backend.xp.sqrt(d.min(axis=1)))
    return out


def nearest_indices(queries, reference, max_block_bytes=MAX_BLOCK_BYTES, progress=None,
                    desc="nearest neighbours"):
    """Index of each query's (N, D) nearest row of ``reference`` (M, D) -> (N,) int64
    (e.g. the nearest training image, as a reconstruction baseline)."""
    out = numpy.empty(len(queries), dtype=numpy.int64)
    for a, b, d in _nearest_blocks(queries, reference, max_block_bytes, progress, desc):
        out[a:b] = backend.to_numpy(d.argmin(axis=1))
    return out


def manifold_coverage(queries, reference, radii, max_block_bytes=MAX_BLOCK_BYTES, progress=None,
                      desc="manifold"):
    """Fraction of queries (N, D) inside at least one ball around the
    reference rows (M, D) with the given ``radii`` (M,)."""
    q = check_features(queries, "queries", min_count=1)
    ref = _Reference(check_features(reference, "reference", min_count=1, dim=q.shape[1]))
    xp = backend.xp
    r2 = xp.asarray(numpy.asarray(radii, dtype=numpy.float64) ** 2, dtype=xp.float32)
    inside = 0
    for a, b in _Blocks(len(q), len(ref), max_block_bytes, progress, desc):
        inside += int((ref.sq_dist(q[a:b]) <= r2[None, :]).any(axis=1).sum())
    return inside / len(q)


def precision_recall(real_features, fake_features, k=3, max_block_bytes=MAX_BLOCK_BYTES,
                     progress=None, real_radii=None):
    """Improved precision and recall (Kynkäänniemi et al. 2019) -> (precision, recall).

    Each set's manifold is the union of balls around its points, each ball
    reaching the point's k-th nearest neighbour within its own set.
    precision: fraction of fake points inside the real manifold (are samples
    realistic?); recall: fraction of real points inside the fake manifold (is
    the real variety covered?). Both sets need at least k + 1 rows.
    ``real_radii``: the real set's k-NN radii, when already computed (by
    :func:`knn_radii` with the same k), to reuse across sample sets."""
    real = check_features(real_features, "real features", min_count=k + 1)
    fake = check_features(fake_features, "fake features", min_count=k + 1, dim=real.shape[1])
    kw = dict(max_block_bytes=max_block_bytes, progress=progress)
    if real_radii is None:
        real_radii = knn_radii(real, k, desc="k-NN radii (real)", **kw)
    elif numpy.shape(real_radii) != (len(real),):
        raise MetricsError(f"real_radii: shape {numpy.shape(real_radii)}, expected ({len(real)},)")
    r_fake = knn_radii(fake, k, desc="k-NN radii (samples)", **kw)
    precision = manifold_coverage(fake, real, real_radii, desc="precision", **kw)
    recall = manifold_coverage(real, fake, r_fake, desc="recall", **kw)
    return precision, recall


def distance_summary(d, quantiles=(0.01, 0.05, 0.25, 0.5, 0.75, 0.95)):
    """{"q01": ..., "median": ..., "mean": ...} of distances ``d`` (N,)."""
    d = numpy.asarray(d, dtype=numpy.float64)
    out = {f"q{round(q * 100):02d}": float(v) for q, v in zip(quantiles, numpy.quantile(d, quantiles))}
    out["median"] = float(numpy.median(d))
    out["mean"] = float(d.mean())
    return out
