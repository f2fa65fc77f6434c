"""The reference MNIST classifier that the sample-quality metrics look through.

An MLP trained by npgan itself (``examples/train_mnist_classifier.py``, fixed
seed) on the 60,000 MNIST training images (random 2-pixel shifts), 99.0 %
test accuracy:

    x (N, 784) in [0, 1] -> dropout .1 -> 784x600 ReLU  [hidden1, (N, 600)]
                         -> dropout .3 -> 600x600 ReLU  [features, (N, 600)]
                         -> dropout .3 -> 600x10 logits

Its weights ship as ``npgan/data/mnist_classifier.npz`` (float32, ~3.4 MB),
checked against :data:`WEIGHTS_MD5` on load; the command, seed and accuracy
that made them are in ``npgan/data/mnist_classifier.txt``. "Features" are the
second hidden layer's ReLU activations in eval mode (no dropout), as FID uses
Inception's pool3 layer; precision/recall use the first hidden layer
(``hidden1``, see :mod:`npgan.metrics.suite`).
"""
import hashlib
import io
import os
import zipfile
from typing import NamedTuple

import numpy  # host side: the weight file

from . import backend, nn
from . import functional as F
from .tensor import Tensor, no_grad

DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
WEIGHTS_PATH = os.path.join(DATA_DIR, "mnist_classifier.npz")
#: md5 of the shipped ``mnist_classifier.npz`` (the file's bytes)
WEIGHTS_MD5 = "fc8926439fe7fcd70ff18e564e5f397f"
SIZES = (784, 600, 600, 10)       #: input, hidden, hidden, classes
FEATURE_DIM = SIZES[2]


class ClassifierError(ValueError):
    """The classifier's weight file is missing, altered or has wrong shapes."""


class MNISTClassifier(nn.Module):
    """x (N, 784) float in [0, 1] -> class logits (N, 10); see module docstring.

    ``sizes``: (input, hidden1, hidden2, classes). Dropout is active only in
    train mode; ``rng`` (a numpy Generator) draws the initial weights and seeds
    the dropout masks."""

    def __init__(self, sizes=SIZES, p_input=0.1, p_hidden=0.3, rng=None, dtype="float32"):
        rng = rng if rng is not None else numpy.random.default_rng()
        d_in, h1, h2, n_cls = sizes
        self.sizes = tuple(sizes)
        drop = numpy.random.default_rng(rng.integers(2**63))
        self.drop0 = nn.Dropout(p_input, rng=drop)
        self.fc0 = nn.Linear(d_in, h1, init="kaiming", rng=rng, dtype=dtype)
        self.drop1 = nn.Dropout(p_hidden, rng=drop)
        self.fc1 = nn.Linear(h1, h2, init="kaiming", rng=rng, dtype=dtype)
        self.drop2 = nn.Dropout(p_hidden, rng=drop)
        self.out = nn.Linear(h2, n_cls, init="xavier", rng=rng, dtype=dtype)

    def features(self, x):
        """Penultimate activations: Tensor (N, 784) -> Tensor (N, hidden2) >= 0."""
        x = x if isinstance(x, Tensor) else Tensor(x)
        h = self.fc0(self.drop0(x)).relu()
        return self.fc1(self.drop1(h)).relu()

    def forward(self, x):
        """Class logits (N, classes)."""
        return self.out(self.drop2(self.features(x)))


def file_md5(path):
    """md5 hex digest of a file's bytes."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_weights(model, path):
    """Write ``model.state_dict()`` as an uncompressed .npz whose bytes depend
    only on the weights (fixed zip timestamps, sorted names), so the same
    weights always give the same md5. Returns that md5."""
    from .files import atomic_write
    with atomic_write(path) as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as zf:
        for name, arr in sorted(model.state_dict().items()):
            buf = io.BytesIO()
            numpy.lib.format.write_array(buf, numpy.ascontiguousarray(arr, numpy.float32),
                                         allow_pickle=False)
            zf.writestr(zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0)),
                        buf.getvalue())
    return file_md5(path)


def load_classifier(path=None, md5="default"):
    """The reference classifier, in eval mode, from ``path`` (default: the
    shipped weights). ``md5``: expected digest of the file ("default": the
    shipped one's when ``path`` is the shipped file, else unchecked; None:
    unchecked). Raises ClassifierError naming the problem: missing file, md5
    mismatch, unreadable npz, missing/unexpected arrays, wrong shapes or
    dtypes, non-finite weights."""
    path = WEIGHTS_PATH if path is None else os.fspath(path)
    if md5 == "default":
        md5 = WEIGHTS_MD5 if os.path.abspath(path) == os.path.abspath(WEIGHTS_PATH) else None
    if not os.path.isfile(path):
        raise ClassifierError(f"classifier weights not found: {path} (train them with "
                              "examples/train_mnist_classifier.py)")
    if md5 is not None:
        got = file_md5(path)
        if got != md5:
            raise ClassifierError(f"{path}: md5 {got} does not match the expected {md5}; the "
                                  "metrics are only comparable with the reference weights")
    try:
        with numpy.load(path, allow_pickle=False) as z:
            state = {k: z[k] for k in z.files}
    except Exception as e:   # not a zip, truncated, pickled object arrays
        raise ClassifierError(f"{path}: cannot read as .npz ({e})") from e
    model = MNISTClassifier(rng=numpy.random.default_rng(0))
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    if missing or extra:
        raise ClassifierError(f"{path}: missing arrays {missing}, unexpected arrays {extra}")
    for k, ref in own.items():
        a = state[k]
        if a.shape != ref.shape or a.dtype != numpy.float32:
            raise ClassifierError(f"{path}: array '{k}' is {a.dtype} {a.shape}, the classifier "
                                  f"{SIZES} needs float32 {ref.shape}")
        if not numpy.isfinite(a).all():
            raise ClassifierError(f"{path}: array '{k}' holds NaN or inf")
    model.load_state_dict(state)
    return model.eval()


class Outputs(NamedTuple):
    """What :func:`classify` returns: host arrays, one row per image."""
    features: numpy.ndarray   #: (N, 600) float32, penultimate ReLU activations (FD, score)
    hidden1: numpy.ndarray    #: (N, 600) float32, first hidden layer's ReLU activations
    log_probs: numpy.ndarray  #: (N, 10) float64, log p(y|x)


def classify(model, images, batch_size=1000):
    """Run the classifier (eval mode) over host ``images`` (N, 784) float32
    in batches -> :class:`Outputs` (features, hidden1, log_probs)."""
    was_training = model.training
    model.eval()
    h1s, h2s, logps = [], [], []
    try:
        with no_grad():
            for i in range(0, len(images), batch_size):
                x = Tensor(backend.asarray(images[i:i + batch_size], dtype="float32"))
                h1 = model.fc0(x).relu()
                h2 = model.fc1(h1).relu()
                logits = Tensor(model.out(h2).data.astype("float64"))
                h1s.append(h1.numpy())
                h2s.append(h2.numpy())
                logps.append(F.log_softmax(logits, axis=1).numpy())
    finally:
        model.train(was_training)
    _, n1, n2, n_cls = model.sizes
    if not h2s:
        return Outputs(numpy.zeros((0, n2), numpy.float32), numpy.zeros((0, n1), numpy.float32),
                       numpy.zeros((0, n_cls)))
    return Outputs(numpy.concatenate(h2s), numpy.concatenate(h1s), numpy.concatenate(logps))
