"""npgan.classifier: the reference MNIST classifier's layers against a
plain-NumPy forward (eval and train mode), classify()'s three outputs, and
the weight file's round trip (save_weights -> numpy.load / load_classifier).

The NumPy reference and its rounding bound are test_models.py's: a product
over K inputs in float32 is off by at most (K + 1) u (|x| @ |W| + |b|),
propagated through the 1-Lipschitz ReLUs."""
import errno
import os

import numpy as np
import pytest

from npgan import classifier as C
from npgan.datasets import load_mnist
from npgan.tensor import Tensor

from test_models import _Ref, _assert_outside, _assert_within, _dropout_draws, _w

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "data")


@pytest.fixture(scope="module")
def shipped():
    return C.load_classifier()


@pytest.fixture(scope="module")
def images():
    os.environ.setdefault("NPGAN_NO_DOWNLOAD", "1")
    return load_mnist("test", data_dir=DATA)[0][:64]


def reference(model, x, draws=None, omit=()):
    """(hidden1, features, logits) as _Refs: x -> [dropout] -> fc0 ReLU ->
    [dropout] -> fc1 ReLU -> [dropout] -> out; dropout only with ``draws``
    (keep 1 - p_input, then 1 - p_hidden twice), as many layers as there are
    draws. ``omit``: "relu0", "relu1"."""
    keeps = (1 - model.drop0.p, 1 - model.drop1.p, 1 - model.drop2.p)
    draws = list(draws) if draws is not None else None
    r = _Ref(x, model.fc0.weight.dtype)
    outs = []
    for i, layer in enumerate((model.fc0, model.fc1, model.out)):
        if draws:
            r.dropout(draws.pop(0), keeps[i])
        r.affine(*_w(layer))
        if i < 2:
            if f"relu{i}" not in omit:
                r.relu()
            snap = _Ref(np.zeros(1), model.fc0.weight.dtype)
            snap.v, snap.e = r.v.copy(), r.e.copy()
            outs.append(snap)
    return outs[0], outs[1], r


def test_shipped_features_and_logits_equal_a_numpy_reference(shipped, images):
    """Eval mode (as load_classifier returns it): features = ReLU of the
    second hidden layer, logits = its linear map; a first-layer output or a
    missing ReLU falls outside the bound."""
    assert not shipped.training
    h1, feats, logits = reference(shipped, images)
    got = shipped.features(images).data
    assert got.shape == (64, C.FEATURE_DIM) and got.dtype == np.float32
    _assert_within(got, feats, "features")
    _assert_within(shipped(images).data, logits, "logits")
    _assert_outside(got, h1, "features vs the first hidden layer")
    for omit in ("relu0", "relu1"):
        _assert_outside(got, reference(shipped, images, omit=(omit,))[1], f"features without {omit}")


def test_features_in_train_mode_use_the_documented_dropout():
    """Train mode: keep .9 on the input and .7 on the first hidden layer,
    inverted scaling; the masks come from the model's dropout generator."""
    model = C.MNISTClassifier(sizes=(784, 50, 40, 10), rng=np.random.default_rng(3))
    for layer in (model.fc0, model.fc1):
        layer.bias.data = np.random.default_rng(4).normal(0, 0.1, layer.bias.shape).astype(np.float32)
    x = np.random.default_rng(5).uniform(0, 1, (7, 784)).astype(np.float32)
    assert model.training
    draws = _dropout_draws(model.drop0.rng, [(7, 784), (7, 50)])
    ref = reference(model, x, draws)[1]
    got = model.features(x).data
    _assert_within(got, ref, "features, train mode")
    _assert_outside(got, reference(model, x)[1], "train-mode features vs no dropout")
    model.eval()
    _assert_within(model.features(x).data, reference(model, x)[1], "features, eval mode")


def test_classify_returns_hidden1_features_and_log_probs(shipped, images):
    """classify() in batches: each output equals the reference; log_probs are
    log_softmax of the logits in float64 (an error e in the logits moves them
    by at most 2 e); the model's train/eval mode is restored."""
    h1, feats, logits = reference(shipped, images)
    lp_ref = logits.v - np.logaddexp.reduce(logits.v, axis=1, keepdims=True)
    lp_err = 2 * logits.e.max(axis=1, keepdims=True) + 1e-15
    for batch in (1000, 10):
        out = C.classify(shipped, images, batch_size=batch)
        _assert_within(out.hidden1, h1, f"hidden1, batch {batch}")
        _assert_within(out.features, feats, f"features, batch {batch}")
        assert out.log_probs.dtype == np.float64
        assert np.all(np.abs(out.log_probs - lp_ref) <= lp_err), batch
    model = C.MNISTClassifier(sizes=(784, 8, 8, 10), rng=np.random.default_rng(0))
    assert model.training
    C.classify(model, images[:3])
    assert model.training
    empty = C.classify(model, images[:0])
    assert empty.features.shape == (0, 8) and empty.log_probs.shape == (0, 10)


def test_save_weights_round_trip(tmp_path, shipped):
    """What save_weights writes is the state_dict, bit for bit: read back by
    numpy.load and by load_classifier; its md5 is returned; the shipped
    weights written again give the shipped file's bytes (WEIGHTS_MD5)."""
    model = C.MNISTClassifier(rng=np.random.default_rng(9))
    for layer in (model.fc0, model.fc1, model.out):
        layer.bias.data = np.random.default_rng(10).normal(0, 0.1, layer.bias.shape).astype(np.float32)
    path = tmp_path / "w.npz"
    md5 = C.save_weights(model, path)
    assert md5 == C.file_md5(path)
    state = model.state_dict()
    with np.load(path, allow_pickle=False) as z:
        assert sorted(z.files) == sorted(state)
        for k, v in state.items():
            assert z[k].dtype == np.float32
            np.testing.assert_array_equal(z[k], v, err_msg=k)
            assert np.any(v != 0), k
    back = C.load_classifier(path)
    assert not back.training
    for (k, v), w in zip(state.items(), back.state_dict().values()):
        np.testing.assert_array_equal(w, v, err_msg=k)
    x = np.random.default_rng(11).uniform(0, 1, (5, 784)).astype(np.float32)
    np.testing.assert_array_equal(back(x).data, model.eval()(x).data)
    assert C.save_weights(shipped, tmp_path / "again.npz") == C.WEIGHTS_MD5
    assert md5 != C.WEIGHTS_MD5


def test_features_accept_a_tensor_and_keep_the_graph():
    """features() takes arrays or Tensors; gradients flow to the input (the
    same products as forward, so a finite difference along one direction
    matches, float64)."""
    model = C.MNISTClassifier(sizes=(6, 5, 4, 3), rng=np.random.default_rng(1), dtype="float64").eval()
    for layer in (model.fc0, model.fc1):
        layer.bias.data = np.random.default_rng(2).normal(0, 0.5, layer.bias.shape)
    x = np.random.default_rng(3).uniform(0, 1, (2, 6))
    t = Tensor(x, requires_grad=True)
    model.features(t).sum().backward()
    v = np.random.default_rng(4).normal(size=x.shape)
    h = 1e-6
    fd = (model.features(x + h * v).data.sum() - model.features(x - h * v).data.sum()) / (2 * h)
    # piecewise linear: exact unless a ReLU kink lies within h (checked: none)
    for s in (-1, 1):
        a = model.fc0(Tensor(x + s * h * v)).data
        b = model.fc1(Tensor(np.maximum(a, 0))).data
        assert np.all(np.abs(a) > 1e-4) and np.all(np.abs(b) > 1e-4)
    assert fd == pytest.approx(float((t.grad * v).sum()), rel=1e-7)


def test_classifier_weights_written_atomically(tmp_path, monkeypatch):
    from npgan import classifier
    model = classifier.MNISTClassifier(rng=np.random.default_rng(0))
    path = str(tmp_path / "w.npz")
    md5 = classifier.save_weights(model, path)
    def fail(*a, **kw):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(np.lib.format, "write_array", fail)
    with pytest.raises(OSError):
        classifier.save_weights(model, path)
    assert classifier.file_md5(path) == md5 and os.listdir(tmp_path) == ["w.npz"]
