"""npgan.inference: the MSE loss (values, finite differences), the encoder recovering
z of a linear G, z fitted on a mask, the nearest-row search, and the examples
(inference, inpainting) end to end at toy size."""
import importlib.util
import json
import os

import numpy as np
import pytest

from npgan import backend, inference, metrics, models, nn, optim
from npgan import functional as F
from npgan.gradcheck import gradcheck
from npgan.tensor import Tensor

EXAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples")


class LinearG(nn.Module):
    """x = z A + b: a generator whose z is recoverable exactly (A full column rank)."""

    def __init__(self, z_dim=3, out=8, seed=0):
        self.z_dim = z_dim
        self.lin = nn.Linear(z_dim, out, init="normal", std=1.0, rng=np.random.default_rng(seed))

    def forward(self, z):
        return self.lin(z if isinstance(z, Tensor) else Tensor(z))


def test_mse_loss_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    t = rng.standard_normal((4, 5))
    mask = (rng.random((4, 5)) > 0.4).astype(float)
    assert gradcheck(lambda p: F.mse_loss(p, t), rng.standard_normal((4, 5)))
    assert gradcheck(lambda p: F.mse_loss(p, t, mask), rng.standard_normal((4, 5)))
    E = inference.Encoder(inp=5, hidden=6, z_dim=2, irange=0.5, rng=rng, dtype="float64")
    z = rng.standard_normal((4, 2))
    assert gradcheck(lambda x: F.mse_loss(E(x), z), rng.random((4, 5)))


def test_encoder_recovers_z_of_a_linear_generator():
    G = LinearG()
    E = inference.Encoder(inp=8, hidden=32, z_dim=3, irange=0.2, rng=np.random.default_rng(1))
    opt = optim.Adam(E.parameters(), lr=3e-3)
    losses = inference.train_encoder(E, G, 600, batch_size=64, opt=opt, rng=2,
                                     lr_schedule=lambda t: 3e-3 if t < 450 else 3e-4)
    assert np.mean(losses[:20]) > 0.5                     # starts near the prior's variance
    assert np.mean(losses[-50:]) < 0.02                   # ends near exact inversion
    z = np.asarray(models.sample_z(200, np.random.default_rng(3), dim=3))
    x = backend.to_numpy(G(Tensor(backend.asarray(z))).data)
    assert np.mean((inference.encode(E, x) - z) ** 2) < 0.03   # held-out z


def test_fit_z_on_a_mask_recovers_z():
    G = LinearG(z_dim=3, out=8)
    z_true = np.random.default_rng(4).standard_normal((5, 3)).astype(np.float32)
    x = backend.to_numpy(G(Tensor(backend.asarray(z_true))).data)
    mask = np.array([1, 1, 1, 1, 1, 0, 0, 0], np.float32)       # 5 known pixels, 3 unknown
    x_obs = x.copy()
    x_obs[:, 5:] = 0.0                                         # unknown pixels play no part
    z, losses = inference.fit_z(G, x_obs, mask, np.zeros((5, 3)), steps=400, lr=0.05)
    assert losses[-1] < 1e-3 * losses[0]
    assert np.abs(z - z_true).max() < 0.05
    completed = backend.to_numpy(G(Tensor(backend.asarray(z))).data)
    assert np.abs(completed[:, 5:] - x[:, 5:]).max() < 0.1     # the unknown pixels completed
    assert all(p.requires_grad for p in G.parameters())        # G unfrozen afterwards


def test_nearest_indices_is_the_brute_force_argmin():
    rng = np.random.default_rng(5)
    ref, q = rng.random((300, 16)), rng.random((50, 16))
    want = ((q[:, None, :] - ref[None]) ** 2).sum(-1).argmin(1)
    assert np.array_equal(metrics.nearest_indices(q, ref, max_block_bytes=7 * 4 * len(ref)), want)
    assert np.array_equal(metrics.nearest_indices(ref[10:20], ref), np.arange(10, 20))


def _load(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(EXAMPLES, name + ".py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def tiny_generator(tmp_path_factory):
    """A (random) paper-shaped G saved as a state_dict: what the examples load."""
    path = str(tmp_path_factory.mktemp("g") / "G.npz")
    G = models.Generator(rng=np.random.default_rng(0))
    np.savez(path, **{k: backend.to_numpy(v) for k, v in G.state_dict().items()})
    return path


def test_inference_example_end_to_end(tmp_path, tiny_generator):
    mod = _load("inference")
    out, res = str(tmp_path / "run"), str(tmp_path / "r.json")
    args = ["--generator", tiny_generator, "--steps", "4", "--checkpoint-every", "2", "--n-test", "30",
            "--refine-n", "5", "--refine-steps", "3", "--out", out, "--results", res,
            "--figure", str(tmp_path / "f.png")]
    r = mod.main(args)
    assert r["encoder_steps"] == 4 and r["n_test"] == 30
    for k in ("G(E(x))", "nearest_train"):
        assert 0 <= r[k]["pixel_mse"] < 1 and 0 <= r[k]["acc_vs_label"] <= 1
    assert r["nearest_train"]["acc_vs_label"] > 0.8          # the baseline on real digits
    assert json.load(open(res))["encoder_steps"] == 4 and os.path.exists(str(tmp_path / "f.png"))
    with pytest.raises(SystemExit, match="--resume"):
        mod.main(args)


def test_inpainting_example_end_to_end(tmp_path, tiny_generator):
    mod = _load("inpainting")
    res = str(tmp_path / "r.json")
    r = mod.main(["--generator", tiny_generator, "--n", "12", "--steps", "5", "--results", res,
                  "--figure", str(tmp_path / "f.png")])
    assert r["n"] == 12 and r["z0"] == "prior"
    assert r["fit_loss_first_last"][1] < r["fit_loss_first_last"][0]       # descent on z works
    assert r["original"]["bottom_pixel_mse"] == 0 and r["original"]["acc_vs_label"] > 0.9
    assert r["nearest_top_half"]["bottom_pixel_mse"] < r["gan"]["bottom_pixel_mse"]   # a random G is no help
    assert os.path.exists(res) and os.path.exists(str(tmp_path / "f.png"))
