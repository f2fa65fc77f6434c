"""Semi-supervised learning with a GAN's discriminator (the paper's Section 7, item 4).

"Features from the discriminator or inference net could improve performance
of classifiers when limited labeled data is available": D is trained, without
labels, by the GAN game; its last hidden layer (240 maxout units; or the first,
``layers=("h0",)``) then serves as the input of a small classifier fitted to a
few labels.

    feats = discriminator_features(D, images)          # (N, 240), eval mode
    scaler = Scaler.fit(feats_unlabelled)               # centre, one global scale
    idx = balanced_subset(labels, per_class=10, rng=rng)
    clf = fit_logistic(scaler(feats[idx]), labels[idx], l2=select_l2(...))
    accuracy(clf, scaler(test_feats), test_labels)

The classifier is multinomial logistic regression (softmax regression) trained
with npgan: full-batch Adam on the softmax cross-entropy (``F.cross_entropy``)
plus (l2 / 2) ||W||^2; the L2 weight is chosen by stratified k-fold
cross-validation on the labelled examples alone (:func:`select_l2`).
"""
import numpy  # host side: index draws, folds, the features' statistics

from . import backend, nn, optim
from . import functional as F
from .tensor import Tensor, no_grad

L2_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)


def discriminator_features(D, images, batch=1000, layers=("h1",)):
    """D's hidden layers for host ``images`` (N, 784) -> host (N, sum of units) float32.

    D: the paper's :class:`npgan.models.Discriminator` (or an InfoDiscriminator):
    x -> maxout h0 -> maxout h1, in eval mode (dropout is the identity).
    layers: which activations, concatenated in this order: "h1" (the last hidden
    layer, the default), "h0" (the first)."""
    for name in layers:
        if name not in ("h0", "h1"):
            raise ValueError(f"discriminator_features: layers are 'h0' and 'h1', got {name!r}")
    was = D.training
    D.eval()
    out = []
    try:
        with no_grad():
            for i in range(0, len(images), batch):
                x = Tensor(backend.asarray(images[i:i + batch], dtype=D.h0.linear.weight.dtype))
                h = {"h0": D.h0(x)}
                if "h1" in layers:
                    h["h1"] = D.h1(h["h0"])
                out.append(numpy.concatenate([h[n].numpy() for n in layers], axis=1))
    finally:
        D.train(was)
    width = sum(D.h0.units if n == "h0" else D.h1.units for n in layers)
    return numpy.concatenate(out) if out else numpy.zeros((0, width), numpy.float32)


class Scaler:
    """x -> (x - mean) / scale, with ``scale`` one number (the RMS of the centred
    data), so relative feature scales are kept. Fit it on unlabelled data."""

    def __init__(self, mean, scale):
        self.mean, self.scale = numpy.asarray(mean, numpy.float64), float(scale)

    @classmethod
    def fit(cls, x):
        x = numpy.asarray(x, numpy.float64)
        mean = x.mean(axis=0)
        scale = float(numpy.sqrt(((x - mean) ** 2).mean()))
        return cls(mean, scale if scale > 0 else 1.0)

    def __call__(self, x):
        return (numpy.asarray(x, numpy.float64) - self.mean) / self.scale


def balanced_subset(labels, per_class, rng, n_classes=10):
    """Indices of ``per_class`` examples of each class, drawn without replacement
    by ``rng`` (a numpy Generator), in random order."""
    labels = numpy.asarray(labels)
    idx = []
    for c in range(n_classes):
        pool = numpy.flatnonzero(labels == c)
        if len(pool) < per_class:
            raise ValueError(f"balanced_subset: class {c} has {len(pool)} examples, "
                             f"fewer than {per_class}")
        idx.append(rng.choice(pool, per_class, replace=False))
    return rng.permutation(numpy.concatenate(idx))


class LogisticRegression(nn.Module):
    """Softmax regression: x (N, d) -> class logits (N, C); weights start at zero."""

    def __init__(self, d, n_classes=10, dtype="float64"):
        self.linear = nn.Linear(d, n_classes, init="zeros", dtype=dtype)

    def forward(self, x):
        return self.linear(x if isinstance(x, Tensor) else Tensor(x))


def fit_logistic(x, y, n_classes=10, l2=1e-3, steps=200, lr=0.05, dtype="float64"):
    """Fit :class:`LogisticRegression` to host x (N, d), integer y (N,) by full-batch
    Adam on mean cross-entropy + (l2 / 2) ||W||^2 (the bias is not penalised).
    Returns the model; ``model.final_loss`` is the last objective value."""
    x = Tensor(backend.asarray(x, dtype=dtype))
    y = backend.asarray(numpy.asarray(y, dtype=numpy.int64))
    model = LogisticRegression(x.shape[1], n_classes, dtype=dtype)
    opt = optim.Adam(model.parameters(), lr=lr)
    w = model.linear.weight
    for _ in range(steps):
        loss = F.cross_entropy(model(x), y)
        if l2:
            loss = loss + (w * w).sum() * (0.5 * l2)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.final_loss = float(loss.item())
    return model


def predict(model, x):
    """Host class indices (N,)."""
    with no_grad():
        logits = model(Tensor(backend.asarray(x, dtype=model.linear.weight.dtype)))
    return backend.to_numpy(logits.data).argmax(axis=1)


def accuracy(model, x, y):
    return float((predict(model, x) == numpy.asarray(y)).mean())


def select_l2(x, y, grid=L2_GRID, folds=3, rng=None, n_classes=10, **fit_kw):
    """The L2 weight of ``grid`` with the best mean accuracy over stratified
    ``folds``-fold cross-validation on (x, y) alone (ties: the larger weight).
    Returns (best, {l2: mean accuracy})."""
    rng = rng if rng is not None else numpy.random.default_rng(0)
    y = numpy.asarray(y)
    fold = numpy.empty(len(y), dtype=numpy.int64)
    for c in numpy.unique(y):                      # stratified: each class dealt round the folds
        members = rng.permutation(numpy.flatnonzero(y == c))
        fold[members] = numpy.arange(len(members)) % folds
    scores = {}
    for l2 in grid:
        accs = []
        for k in range(folds):
            tr, te = fold != k, fold == k
            if not te.any():
                continue
            m = fit_logistic(x[tr], y[tr], n_classes, l2=l2, **fit_kw)
            accs.append(accuracy(m, x[te], y[te]))
        scores[l2] = float(numpy.mean(accs))
    best = max(sorted(scores, reverse=True), key=lambda l2: scores[l2])
    return best, scores
