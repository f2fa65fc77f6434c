"""The theory examples at reduced size: they run, draw, and show what they claim."""
import importlib.util
import math
import os

import numpy as np
import pytest

from conftest import load_example, one_blas_thread  # noqa: F401  (fixture)

_load = load_example



def _has_matplotlib():
    return importlib.util.find_spec("matplotlib") is not None


needs_mpl = pytest.mark.skipif(not _has_matplotlib(),
                               reason="matplotlib not installed (pip install .[examples])")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gaussian_gan_reduced(seed, one_blas_thread):
    """Half the default run (3,000 iterations), the example's own criterion:
    p_g's mean and std within 0.1 of the data's, mean D within 0.1 of 1/2 on
    both sets (8 of 8 seeds pass with worst error 0.071; the full run's worst
    over 10 seeds is 0.074)."""
    s = _load("gaussian_gan").main(["--seed", str(seed), "--steps", "3000", "--quiet"])
    assert abs(s["g_mean"] - 4.0) < 0.1, s
    assert abs(s["g_std"] - 1.25) < 0.1, s
    assert abs(s["d_real"] - 0.5) < 0.1 and abs(s["d_fake"] - 0.5) < 0.1, s


@needs_mpl
def test_fig1_toy(tmp_path, one_blas_thread):
    out = _load("fig1_toy").main(["--steps", "400", "--moments", "0", "0.5", "1", "--out", str(tmp_path)])
    assert os.path.getsize(out["path"]) > 10_000
    (t0, first), (_, last) = out["panels"][0], out["panels"][-1]
    assert t0 == "initialisation" and len(out["panels"]) == 3
    assert last["jsd"] < first["jsd"]               # p_g moved towards p_data
    assert abs(last["mean"] - 4.0) < abs(first["mean"] - 4.0)


@needs_mpl
def test_optimal_discriminator(tmp_path, one_blas_thread):
    r = _load("optimal_discriminator").main(["--steps", "600", "--batch", "256", "--out", str(tmp_path)])
    assert os.path.exists(tmp_path / "optimal_discriminator.png")
    assert r["errors"]["weighted_mean_abs"] < 0.03
    assert 0 <= r["V_star"] - r["V"] < 0.02


def test_global_optimum_table():
    rows = _load("global_optimum").main(["--no-plot"])
    assert len(rows) >= 5
    for name, v, c, js in rows:
        assert v == pytest.approx(c, abs=1e-6), name
    assert rows[0][1] == pytest.approx(-math.log(4), abs=1e-9)       # p_g = p_data
    assert rows[-1][3] == pytest.approx(math.log(2), abs=1e-9)       # no overlap


@needs_mpl
def test_global_optimum_and_vanishing_jsd_draw(tmp_path):
    _load("global_optimum").main(["--out", str(tmp_path)])
    thetas, cs = _load("vanishing_jsd").main(["--out", str(tmp_path)])
    assert os.path.exists(tmp_path / "global_optimum.png") and os.path.exists(tmp_path / "vanishing_jsd.png")
    jsd, grad = cs[0.1][:, 0], cs[0.1][:, 1]
    assert jsd[-1] == pytest.approx(math.log(2), abs=1e-12)
    assert 0 < grad[-1] < 1e-80 < grad[10]


@needs_mpl
def test_saturation(tmp_path, one_blas_thread):
    """From a confident D, the minimax loss gives G a far smaller gradient than
    the non-saturating one, and G moves more slowly."""
    sat = _load("saturation")
    runs = sat.main(["--pretrain", "600", "--steps", "40", "--out", str(tmp_path)])
    assert os.path.exists(tmp_path / "saturation.png")
    mm, ns = runs["minimax"], runs["nonsaturating"]
    assert mm["d_fake"][0] < 0.05
    assert ns["grad_x"][0] > 10 * mm["grad_x"][0]
    assert ns["mean"][-1] > mm["mean"][-1]
    # the first step's per-sample gradients lie on the closed forms
    d, gl = mm["first"]
    np.testing.assert_allclose(gl, d, rtol=1e-5)
    d, gl = ns["first"]
    np.testing.assert_allclose(gl, 1 - d, rtol=1e-5)


def test_interpolation_draws_from_a_trainer_checkpoint(tmp_path):
    """--checkpoint --which ema<decay>: the moving average's grid (the loader itself:
    tests/test_sampling.py); --which with a --snapshot is refused."""
    from npgan import checkpoint, models
    interp = _load("interpolation")
    G = models.Generator(rng=np.random.default_rng(0))
    avg = models.Generator(rng=np.random.default_rng(1))
    path = str(tmp_path / "checkpoint.npz")
    checkpoint.save(path, {"G": G.state_dict(), "ema": {"0.999": [p.data for p in avg.parameters()]}},
                    {"seed": 0})
    interp.main(["--checkpoint", path, "--which", "ema0.999", "--rows", "2", "--steps", "3",
                 "--out", str(tmp_path)])
    assert os.path.exists(tmp_path / "interpolation.png")
    snap = str(tmp_path / "G.npz")
    np.savez(snap, **G.state_dict())
    with pytest.raises(SystemExit):
        interp.main(["--snapshot", snap, "--which", "ema0.999", "--out", str(tmp_path)])
