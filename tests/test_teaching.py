"""The teaching examples: the gradcheck tutorial's ops (the 8-Gaussian
metrics of mode_collapse.py are npgan.metrics.modes: tests/test_modes.py),
and the z-path of the interpolation figure (no checkpoint, no training)."""

import numpy as np
import pytest

import npgan
from conftest import load_example, one_blas_thread  # noqa: F401  (fixture)



_load = load_example


@pytest.fixture(scope="module")
def tutorial():
    return _load("gradcheck_tutorial")


@pytest.fixture(scope="module")
def interp():
    return _load("interpolation")


# ---- gradcheck tutorial -----------------------------------------------------------
def test_right_op_passes_gradcheck(tutorial):
    x = np.random.default_rng(0).standard_normal((3, 4)) * 3
    assert npgan.gradcheck(tutorial.right_op(), x) is True


def test_wrong_op_is_caught(tutorial):
    x = np.random.default_rng(0).standard_normal((3, 4)) * 3
    with pytest.raises(npgan.GradcheckError, match="disagrees with finite differences"):
        npgan.gradcheck(tutorial.wrong_op(), x)


def test_wrong_op_has_the_right_forward(tutorial):
    x = np.linspace(-5, 5, 11)
    right = tutorial.right_op()(npgan.Tensor(x)).numpy()
    wrong = tutorial.wrong_op()(npgan.Tensor(x)).numpy()
    np.testing.assert_allclose(right, x / (1 + np.exp(-x)), rtol=1e-12)
    np.testing.assert_array_equal(right, wrong)         # only backward differs


def test_tutorial_runs(tutorial, capsys):
    tutorial.main()
    assert "raised GradcheckError" in capsys.readouterr().out


# ---- interpolation z path ------------------------------------------------------------
def test_z_path_endpoints_exact_and_linear(interp):
    rng = np.random.default_rng(0)
    z0, z1 = rng.uniform(-1.7, 1.7, 100), rng.uniform(-1.7, 1.7, 100)
    for steps in (2, 3, 10, 7):
        p = interp.z_path(z0, z1, steps)
        assert p.shape == (steps, 100)
        np.testing.assert_array_equal(p[0], z0)
        np.testing.assert_array_equal(p[-1], z1)
        np.testing.assert_allclose(np.diff(p, axis=0), np.tile((z1 - z0) / (steps - 1), (steps - 1, 1)),
                                   atol=1e-12)
    mid = interp.z_path(z0, z1, 3)[1]
    np.testing.assert_allclose(mid, (z0 + z1) / 2, atol=1e-15)


def test_z_path_needs_two_steps(interp):
    with pytest.raises(ValueError):
        interp.z_path(np.zeros(3), np.ones(3), 1)


@pytest.mark.parametrize("prior", ["gaussian", "uniform"])
def test_grid_z_rows_are_paths_in_the_prior(interp, prior):
    from npgan import models
    z = interp.interpolation_grid_z(4, 5, np.random.default_rng(1), dim=100, prior=prior)
    assert z.shape == (20, 100)
    rows = z.reshape(4, 5, 100)
    ends = models.sample_z(8, np.random.default_rng(1), dim=100, dtype="float64", prior=prior)
    np.testing.assert_array_equal(rows[:, 0], ends[0::2])   # endpoints: draws from the prior
    np.testing.assert_array_equal(rows[:, -1], ends[1::2])
    np.testing.assert_allclose(rows[:, 2], (rows[:, 0] + rows[:, 4]) / 2, atol=1e-12)
    if prior == "uniform":
        assert np.all(np.abs(z) <= np.sqrt(3) + 1e-6)    # convex combos stay in the cube


def test_interpolation_renders_with_random_generator(interp, tmp_path):
    from npgan import models, sampling
    G = models.Generator(hidden=16, rng=np.random.default_rng(0))
    snap = tmp_path / "G.npz"
    np.savez(snap, **G.state_dict())
    with pytest.raises(ValueError, match="shape"):
        sampling.load_generator(snap)                  # shape mismatch: refused, not silently loaded
    G = models.Generator(rng=np.random.default_rng(0))
    np.savez(snap, **G.state_dict())
    interp.main(["--snapshot", str(snap), "--rows", "2", "--steps", "3", "--out", str(tmp_path)])
    from PIL import Image
    assert Image.open(tmp_path / "interpolation.png").size == ((3 * 29 + 1) * 3, (2 * 29 + 1) * 3)
