"""Stateless ops on Tensors: activations, maxout, dropout, linear, losses
(binary and softmax cross-entropy, squared error, Gaussian NLL).

All losses are computed from logits (softplus / log-sigmoid), never as
``log(clip(sigmoid(x)))``, so confident samples keep their gradient.

Every op here has a differentiable backward (create_graph=True): the fused
ones (linear, dropout, log_softmax) spell theirs with Tensor ops beside the
compiled fast path; the losses are compositions of Tensor ops.
"""
import math

from . import backend
from . import _kernels as K
from .tensor import Tensor, concatenate, is_grad_enabled  # noqa: F401  (re-exported)


def _t(x):
    return x if isinstance(x, Tensor) else Tensor(x)


def relu(x):
    return _t(x).relu()


def sigmoid(x):
    return _t(x).sigmoid()


def tanh(x):
    return _t(x).tanh()


def softplus(x):
    return _t(x).softplus()


def log_sigmoid(x):
    return _t(x).log_sigmoid()


def exp(x):
    return _t(x).exp()


def log(x):
    return _t(x).log()


def clip(x, lo=None, hi=None):
    return _t(x).clip(lo, hi)


def maxout(x, pieces):
    """(N, units*pieces) -> (N, units): max over consecutive groups of pieces."""
    return _t(x).maxout(pieces)


def linear(x, weight, bias=None, activation=None):
    """x (N, in) @ weight (in, out) + bias (out,) -> (N, out), followed by
    ``activation`` (None, "relu" or "sigmoid") within the same op.

    One op in the graph: a GEMM and one pass over its output for bias and
    activation, and in backward only the gradients that are needed (see
    ``_kernels.linear_forward``). Other shapes or mixed dtypes (x not 2-D, a
    bias that only broadcasts) take the general ``x @ weight + bias`` route."""
    K.check_activation(activation)
    x = _t(x)
    w = x._lift(weight)
    b = None if bias is None else x._lift(bias)
    if not (x.ndim == 2 and w.ndim == 2 and x.shape[1] == w.shape[0] and x.dtype == w.dtype
            and (b is None or (b.shape == (w.shape[1],) and b.dtype == x.dtype))):
        y = x @ w if b is None else x @ w + b
        return y if activation is None else getattr(y, activation)()
    parents = (x, w) if b is None else (x, w, b)
    keep = is_grad_enabled() and any(p.requires_grad for p in parents)   # a backward may follow
    y, saved = K.linear_forward(x.data, w.data, None if b is None else b.data, activation, keep)

    def backward(g):
        if isinstance(g, Tensor):   # create_graph: the same gradients, with differentiable ops
            if activation == "relu":
                g = g * (saved > 0)                  # saved: y
            elif activation == "sigmoid":
                z = linear(x, w, b)                  # the pre-activation, as a Tensor
                g = g * z.sigmoid() * (-z).sigmoid()
            gx = linear(g, w.T) if x.requires_grad else None    # linear: the compiled GEMM
            gw = linear(x.T, g) if w.requires_grad else None
            gb = g.sum(axis=0) if b is not None and b.requires_grad else None
        else:
            gx, gw, gb = K.linear_backward(g, x.data, w.data, saved, activation, x.requires_grad,
                                           w.requires_grad, b is not None and b.requires_grad)
        return (gx, gw) if b is None else (gx, gw, gb)
    return Tensor.make(y, parents, backward, "linear", graph=True)


def binary_cross_entropy_with_logits(logits, targets, reduction="mean"):
    """-[t log sigmoid(l) + (1 - t) log sigmoid(-l)] = softplus(l) - t*l.

    logits: Tensor (any shape); targets: a number or an array/Tensor that
    broadcasts to it (values in [0, 1]); reduction "mean" (scalar) or "none".
    Exact and finite for any logit magnitude, in value and gradient.
    """
    logits = _t(logits)
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    if isinstance(targets, (int, float)):
        # special-case the GAN's constant targets: one op less, same value
        loss = logits.softplus() if targets == 0 else (-logits).softplus() if targets == 1 \
            else (-logits).softplus() * targets + logits.softplus() * (1 - targets)
    else:
        t = targets if isinstance(targets, Tensor) else Tensor(backend.xp.asarray(targets, dtype=logits.dtype))
        if backend.xp.broadcast_shapes(t.shape, logits.shape) != logits.shape:
            raise ValueError(f"targets of shape {t.shape} do not broadcast to logits {logits.shape}")
        # t softplus(-l) + (1-t) softplus(l): a sum of non-negative terms, exact; the
        # shorter softplus(l) - t*l cancels to 0 (value and gradient) at l >> 0, t = 1
        loss = (-logits).softplus() * t + logits.softplus() * (1 - t)
    return loss.mean() if reduction == "mean" else loss


def dropout(x, p, training=True, rng=None):
    """Inverted dropout: zero each element with probability ``p`` and scale
    the rest by 1/(1-p), so eval mode is the identity.

    rng: a ``numpy.random.Generator`` (host; the mask is moved to the backend),
    so a seed gives the same masks on every backend.
    """
    x = _t(x)
    if not training or p == 0:
        K.check_dropout_p(p)           # the training path checks it in the kernels' front
        return x
    if rng is None:
        import numpy
        rng = numpy.random.default_rng()
    u = backend.asarray(K.uniform_draws(rng, x.shape))   # the draws (or their words) are the mask
    return _dropout(x, u, p)


def _dropout(x, u, p):
    """x * mask(u) / (1-p) as an op: linear in x, its own backward (the same
    mask), so create_graph applies it to the Tensor g."""
    def backward(g):
        return (_dropout(g, u, p),) if isinstance(g, Tensor) else (K.dropout_backward(g, u, p),)
    return Tensor.make(K.dropout_forward(x.data, u, p), (x,), backward, "dropout", graph=True)


def log_softmax(x, axis=-1):
    """x - logsumexp(x, axis), stable for any magnitude. Backward:
    g - softmax(x) * sum(g, axis)."""
    x = _t(x)
    xp = backend.xp
    shifted = x.data - x.data.max(axis=axis, keepdims=True)
    out = shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))
    def backward(g):
        p = log_softmax(x, axis).exp() if isinstance(g, Tensor) else xp.exp(out)
        return (g - p * g.sum(axis=axis, keepdims=True),)
    return Tensor.make(out, (x,), backward, "log_softmax", graph=True)


def cross_entropy(logits, labels, reduction="mean"):
    """Softmax cross-entropy: logits (N, C) Tensor, labels (N,) integer class
    indices -> mean (or per-example, reduction="none") of -log p(label)."""
    logits = _t(logits)
    labels = backend.xp.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != logits.shape[0] or labels.dtype.kind not in "iu":
        raise ValueError(f"cross_entropy: labels must be integer class indices of shape "
                         f"({logits.shape[0]},), got {labels.dtype} {labels.shape}")
    if labels.size and (int(labels.min()) < 0 or int(labels.max()) >= logits.shape[1]):
        # a negative label would silently index from the end
        raise ValueError(f"cross_entropy: labels must lie in [0, {logits.shape[1]}), got "
                         f"min {int(labels.min())}, max {int(labels.max())}")
    nll = -log_softmax(logits, axis=1)[backend.xp.arange(labels.shape[0]), labels]
    return nll.mean() if reduction == "mean" else nll


def mse_loss(pred, target, mask=None):
    """mean over all entries of (pred - target)^2 (a Tensor); with ``mask`` (same
    shape, 0/1, constant) the mean over the masked entries only."""
    target = target if isinstance(target, Tensor) else Tensor(backend.asarray(target))
    d = pred - target
    if mask is None:
        return (d * d).mean()
    mask = backend.asarray(mask, dtype=pred.dtype)
    return (d * d * Tensor(mask)).sum() * (1.0 / float(backend.xp.sum(mask)))


_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def gaussian_nll(mean, target, log_std=None, reduction="mean"):
    """-log N(target; mean, diag(exp(log_std))^2), summed over the last axis.

    mean: Tensor (N, K); target: array (N, K); log_std: None (std 1), a number
    (a fixed std for all) or a Tensor (N, K) (learned). reduction "mean" (over
    rows, a scalar) or "none" ((N,)). Per element: 0.5 ((t - m) / s)^2 + log s
    + 0.5 log 2 pi."""
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    mean = mean if isinstance(mean, Tensor) else Tensor(mean)
    t = Tensor(backend.asarray(target.data if isinstance(target, Tensor) else target,
                               dtype=mean.dtype))
    if t.shape != mean.shape:
        raise ValueError(f"gaussian_nll: target {t.shape} and mean {mean.shape} differ in shape")
    diff = mean - t
    if log_std is None:
        per = diff * diff * 0.5 + _HALF_LOG_2PI
    elif isinstance(log_std, (int, float)):
        per = diff * diff * (0.5 * math.exp(-2.0 * log_std)) + (log_std + _HALF_LOG_2PI)
    else:
        log_std = log_std if isinstance(log_std, Tensor) else Tensor(log_std)
        per = diff * diff * (log_std * -2.0).exp() * 0.5 + log_std + _HALF_LOG_2PI
    nll = per.sum(axis=1)
    return nll.mean() if reduction == "mean" else nll
