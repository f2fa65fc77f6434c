"""npgan.sampling: one rule reads a trainer checkpoint or a G state_dict (and
refuses anything else by name); sample() draws in batches from G's prior.
npgan.images.save_grid: the sample grids the examples write."""
import numpy as np
import pytest

from npgan import checkpoint, images, models, sampling, train
from npgan.checkpoint import CheckpointError


def _params(G):
    return [p.data for p in G.parameters()]


@pytest.fixture
def run(tmp_path):
    """A trainer checkpoint (G, a moving average, a uniform-prior config) and a G .npz."""
    G = models.Generator(rng=np.random.default_rng(0))
    avg = models.Generator(rng=np.random.default_rng(1))
    ck = str(tmp_path / "checkpoint.npz")
    checkpoint.save(ck, {"G": G.state_dict(), "ema": {"0.999": _params(avg)}}, {"seed": 0, "z": "uniform"})
    snap = str(tmp_path / "G.npz")
    np.savez(snap, **G.state_dict())
    return {"G": G, "avg": avg, "ck": ck, "snap": snap, "dir": tmp_path}


def test_both_kinds_of_file_load_bit_for_bit_with_their_prior(run):
    for path, which, ref, prior in ((run["ck"], "G", run["G"], "uniform"),
                                    (run["ck"], "ema0.999", run["avg"], "uniform"),
                                    (run["snap"], "G", run["G"], "gaussian")):
        G = sampling.load_generator(path, which)
        assert not G.training and G.z_prior == prior, (path, which)
        for a, b in zip(_params(G), _params(ref)):
            np.testing.assert_array_equal(a, b)
    assert sampling.is_checkpoint(run["ck"]) and not sampling.is_checkpoint(run["snap"])
    old = str(run["dir"] / "old.npz")                  # runs written before --z drew z uniform
    checkpoint.save(old, {"G": run["G"].state_dict()}, {"seed": 0})
    assert sampling.load_generator(old).z_prior == "uniform"


def test_a_missing_generator_is_refused_naming_those_present(run):
    with pytest.raises(ValueError, match=r"no generator 'ema0.5'.*\['G', 'ema0.999'\]"):
        sampling.load_generator(run["ck"], "ema0.5")
    with pytest.raises(ValueError, match="needs a trainer checkpoint"):
        sampling.load_generator(run["snap"], "ema0.999")


def test_other_files_are_refused_by_name(run):
    d = run["dir"]
    (d / "text.npz").write_text("not a zip")
    with pytest.raises(CheckpointError, match="not a readable .npz"):
        sampling.load_generator(str(d / "text.npz"))
    with pytest.raises(CheckpointError, match="no generator file"):
        sampling.load_generator(str(d / "missing.npz"))
    np.save(str(d / "one.npy"), np.zeros(3))
    with pytest.raises(CheckpointError, match="one array"):
        sampling.load_generator(str(d / "one.npy"))
    half = str(d / "half.npz")
    np.savez(half, meta=np.array("{}"), **run["G"].state_dict())
    with pytest.raises(CheckpointError, match="not both"):
        sampling.load_generator(half)
    raw = open(run["ck"], "rb").read()
    with open(str(d / "cut.npz"), "wb") as f:
        f.write(raw[:len(raw) // 2])
    with pytest.raises(CheckpointError):
        sampling.load_generator(str(d / "cut.npz"))
    other = str(d / "other.npz")
    np.savez(other, **models.Generator(hidden=16, rng=np.random.default_rng(0)).state_dict())
    with pytest.raises(ValueError, match="shape"):
        sampling.load_generator(other)
    np.savez(other, **{"w": np.zeros(3)})
    with pytest.raises(KeyError, match="missing keys"):
        sampling.load_generator(other)


def test_sample_draws_from_g_prior_in_batches():
    G = models.Generator(z_dim=4, hidden=8, out=6, rng=np.random.default_rng(0))
    for prior in models.Z_PRIORS:
        G.z_prior = prior
        s = sampling.sample(G, 7, batch=3, rng=5)
        z = models.sample_z(7, np.random.default_rng(5), dim=4, prior=prior)
        assert s.shape == (7, 6) and s.dtype == np.float32
        np.testing.assert_allclose(s, G(z).numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(sampling.sample(G, 7, batch=3, rng=np.random.default_rng(5)),
                                  sampling.sample(G, 7, batch=3, rng=5))
    for bad in ({"n": 0}, {"batch": 0}, {"n": 2.5}, {"batch": True}):
        with pytest.raises(ValueError):
            sampling.sample(G, **{"n": 4, **bad})


def test_trainer_generate_is_sample_with_its_prior():
    G, D = models.paper_mnist(0)
    x = np.random.default_rng(0).uniform(0, 1, (16, 784)).astype("float32")
    t = train.GANTrainer(G, D, x, batch_size=8, sample_z=models.z_sampler("uniform"))
    G.z_prior = "uniform"
    np.testing.assert_array_equal(t.generate(5, batch=2), sampling.sample(G, 5, batch=2))
    np.testing.assert_array_equal(t.generate(5, rng=np.random.default_rng(1)),
                                  sampling.sample(G, 5, rng=1))


def test_save_grid_places_each_image_in_its_cell(tmp_path):
    from PIL import Image
    imgs = np.stack([np.full((28, 28), (i + 1) / 8) for i in range(6)])
    path = images.save_grid(imgs, str(tmp_path / "g.png"), 2, 3, scale=1)
    a = np.asarray(Image.open(path))
    assert a.shape == (2 * 29 + 1, 3 * 29 + 1)
    assert (a[0] == 255).all() and (a[:, 0] == 255).all() and (a[29] == 255).all()
    for i in range(2):
        for j in range(3):
            cell = a[1 + 29 * i:29 * (i + 1), 1 + 29 * j:29 * (j + 1)]
            assert (cell == int((3 * i + j + 1) / 8 * 255)).all(), (i, j)
    big = images.save_grid(imgs.reshape(6, 784) * 3 - 1, str(tmp_path / "c.png"), 2)   # clipped
    b = np.asarray(Image.open(big))
    assert b.shape == ((2 * 29 + 1) * 2,) * 2            # the first 2 x 2, pixels doubled
    assert set(np.unique(b).tolist()) == {0, int(0.125 * 255), int(0.5 * 255), 255}   # -0.625, -0.25 -> 0
    with pytest.raises(ValueError, match="need 9 images"):
        images.save_grid(imgs, str(tmp_path / "x.png"), 3)
