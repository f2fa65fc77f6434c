"""k-means against a plain Lloyd loop written here, well-separated blobs, restarts, bad input."""
import numpy as np
import pytest

from npgan import cluster


def lloyd(x, k, seed, iters):
    """The textbook loop, written independently: fixed iteration count, distances by differences."""
    rng = np.random.default_rng(seed)
    c = x[rng.choice(len(x), k, replace=False)].astype(np.float64)
    for _ in range(iters):
        a = ((x[:, None, :] - c[None]) ** 2).sum(-1).argmin(1)
        for j in range(k):
            if (a == j).any():
                c[j] = x[a == j].mean(0)
    return c, ((x[:, None, :] - c[None]) ** 2).sum(-1).argmin(1)


def test_kmeans_matches_a_plain_lloyd_loop():
    x = np.random.default_rng(1).standard_normal((400, 5))
    c, a, inertia = cluster.kmeans(x, 6, rng=7, iters=100)
    c_ref, a_ref = lloyd(x, 6, 7, 100)
    assert np.array_equal(a, a_ref)
    np.testing.assert_allclose(c, c_ref, rtol=1e-12, atol=1e-12)
    assert inertia == pytest.approx(((x - c[a]) ** 2).sum(), rel=1e-12)


def test_kmeans_finds_separated_blobs_and_restarts_keep_the_best():
    rng = np.random.default_rng(0)
    centres = np.eye(4, 8) * 50.0
    truth = np.repeat(np.arange(4), 50)
    x = (centres[truth] + rng.standard_normal((200, 8))).astype(np.float32)
    c, a, inertia = cluster.kmeans(x, 4, rng=3, restarts=10)
    assert c.dtype == np.float32
    perm = {int(a[truth == t][0]) for t in range(4)}
    assert len(perm) == 4 and all(len(set(a[truth == t])) == 1 for t in range(4))
    np.testing.assert_allclose(np.sort(np.linalg.norm(c, axis=1)), [50.0] * 4, atol=0.5)
    singles = [cluster.kmeans(x, 4, rng=np.random.default_rng(s), restarts=1)[2] for s in range(5)]
    best = cluster.kmeans(x, 4, rng=np.random.default_rng(0), restarts=5)[2]
    assert best <= singles[0]             # the same stream's first restart is among those it compared


@pytest.mark.parametrize("bad, k", [(np.zeros((3, 2), np.int64), 2), (np.zeros(5), 2),
                                    (np.zeros((3, 2)), 4), (np.zeros((3, 2)), 0),
                                    (np.array([[0.0, np.nan], [1.0, 1.0]]), 1)])
def test_kmeans_refuses_bad_input(bad, k):
    with pytest.raises(ValueError, match="kmeans"):
        cluster.kmeans(bad, k)
