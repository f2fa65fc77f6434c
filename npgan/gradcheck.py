"""Check backward() against central finite differences, in float64.

    >>> import numpy as np, npgan
    >>> npgan.gradcheck(lambda a, b: (a * b).sigmoid(), np.random.randn(3, 4), np.random.randn(4))
    True

A non-scalar output is checked through a fixed random projection
sum(out * w), so every output element takes part. ``gradgradcheck`` checks
second derivatives (create_graph=True) the same way:

    >>> npgan.gradgradcheck(lambda a, b: (a * b).sigmoid(), np.random.randn(3, 4), np.random.randn(4))
    True
"""
import numpy

from . import backend
from .tensor import Tensor, grad


class GradcheckError(AssertionError):
    """backward() disagrees with finite differences (or something is not finite)."""


def _as_input(x):
    """A float64 host copy (gradcheck perturbs it in place)."""
    return numpy.array(backend.to_numpy(x.data if isinstance(x, Tensor) else x), dtype=numpy.float64)


def gradcheck(fn, *inputs, eps=1e-6, atol=1e-5, rtol=1e-4, mode="full", n_directions=3, seed=0):
    """Compare the gradient of ``fn(*inputs)`` from backward() with central
    differences (f(x+eps) - f(x-eps)) / 2eps, every input in float64.

    fn: takes Tensors, returns a Tensor of any shape (it may differentiate
    inside, e.g. a gradient penalty made with ``grad(..., create_graph=True)``).
    inputs: arrays or Tensors (converted to float64 Tensors with grad).
    mode: "full" perturbs every element of every input; "random" checks the
    directional derivative along ``n_directions`` random unit directions
    (for inputs too large to perturb one by one).
    Returns True, or raises GradcheckError whose message gives, per input,
    the max absolute and relative error and the worst index (or, when
    backward() itself fails, e.g. an op's gradient has the wrong shape, its
    error message).
    """
    if mode not in ("full", "random"):
        raise ValueError(f"mode must be 'full' or 'random', got {mode!r}")
    rng = numpy.random.default_rng(seed)
    xs = _checked_inputs(inputs)

    def f(arrays, tensors=False):
        ts = [Tensor(backend.asarray(a), requires_grad=tensors) for a in arrays]
        out = fn(*ts)
        if not isinstance(out, Tensor):
            raise TypeError(f"gradcheck: fn must return a Tensor, got {type(out).__name__}")
        return ts, out

    ts, out = f(xs, tensors=True)
    _checked_output(out)
    # a scalar output is checked as is: a random w would scale every error by |w|
    # (0.126 for seed 0), loosening atol by that factor
    w = rng.standard_normal(out.shape) if out.size > 1 else numpy.ones(out.shape)
    try:
        out.backward(backend.asarray(w))
    except ValueError as e:     # e.g. a backward that returns a gradient of the wrong shape
        raise GradcheckError(f"backward() failed: {e}") from e
    analytic = [numpy.zeros_like(x) if t.grad is None else backend.to_numpy(t.grad).astype(numpy.float64)
                for x, t in zip(xs, ts)]

    def loss(arrays):   # inputs with grad, not under no_grad(): fn may call npgan.grad inside
        return float(numpy.sum(backend.to_numpy(f(arrays, tensors=True)[1].data) * w))

    report = []
    if mode == "full":
        for i, x in enumerate(xs):
            numeric = numpy.zeros_like(x)
            flat = x.reshape(-1)
            for j in range(flat.size):
                old = flat[j]
                flat[j] = old + eps
                fp = loss(xs)
                flat[j] = old - eps
                fm = loss(xs)
                flat[j] = old
                numeric.reshape(-1)[j] = (fp - fm) / (2 * eps)
            report.append(_compare(f"input {i} {x.shape}", analytic[i], numeric, atol, rtol))
    else:
        for d in range(n_directions):
            vs = [rng.standard_normal(x.shape) for x in xs]
            norm = numpy.sqrt(sum(numpy.sum(v * v) for v in vs))
            vs = [v / norm for v in vs]
            fp = loss([x + eps * v for x, v in zip(xs, vs)])
            fm = loss([x - eps * v for x, v in zip(xs, vs)])
            numeric = numpy.array([(fp - fm) / (2 * eps)])
            exact = numpy.array([sum(numpy.sum(a * v) for a, v in zip(analytic, vs))])
            report.append(_compare(f"direction {d}", exact, numeric, atol, rtol))
    bad = [r for ok, r in report if not ok]
    if bad:
        raise GradcheckError("backward() disagrees with finite differences "
                             f"(eps={eps}, atol={atol}, rtol={rtol}):\n" + "\n".join(
                                 ("  FAIL " if not ok else "  ok   ") + r for ok, r in report))
    return True


def _checked_inputs(inputs):
    """float64 host copies of the inputs; GradcheckError if one holds NaN or inf."""
    xs = [_as_input(x) for x in inputs]
    for i, x in enumerate(xs):
        if not numpy.all(numpy.isfinite(x)):
            raise GradcheckError(f"input {i} contains NaN or inf "
                                 f"({int(numpy.sum(~numpy.isfinite(x)))} of {x.size} elements)")
    return xs


def _checked_output(out):
    """GradcheckError unless fn's output is float64, finite and depends on an input."""
    if out.dtype != numpy.float64:
        raise GradcheckError(f"fn returned {out.dtype}, not float64: something inside it (a layer's "
                             "parameters? a constant?) is not float64, so differences would be noise. "
                             "Cast modules with .to('float64').")
    if not numpy.all(numpy.isfinite(backend.to_numpy(out.data))):
        raise GradcheckError("fn's output contains NaN or inf at the given inputs")
    if not out.requires_grad:
        raise GradcheckError("fn's output does not depend on any input through npgan ops")


def _compare(label, analytic, numeric, atol, rtol):
    if not numpy.all(numpy.isfinite(numeric)):
        return False, f"{label}: finite differences are NaN or inf"
    err = numpy.abs(analytic - numeric)
    rel = err / numpy.maximum(numpy.abs(numeric), 1e-12)
    ok = bool(numpy.all(err <= atol + rtol * numpy.abs(numeric)))
    if err.size == 0:
        return True, f"{label}: empty"
    k = numpy.unravel_index(int(numpy.argmax(err - rtol * numpy.abs(numeric))), err.shape)
    return ok, (f"{label}: max abs err {err.max():.3e}, max rel err {rel.max():.3e}; worst at index "
                f"{tuple(int(i) for i in k)}: backward {analytic[k]:.8g} vs numeric {numeric[k]:.8g}")


def gradgradcheck(fn, *inputs, eps=1e-6, atol=1e-5, rtol=1e-4, mode="full", n_directions=3, seed=0):
    """Compare second derivatives of ``fn(*inputs)`` from ``grad(...,
    create_graph=True)`` differentiated again with central differences of the
    first derivative (the fast path, no graph), every input in float64.

    g(x) = d<w, fn(x)>/dx (all inputs; w a fixed random projection as in
    :func:`gradcheck`). Checked: g with create_graph agrees with g without;
    then, mode "full": for every element x_j of every input, the gradient of
    g_j (a row of the Hessian, from the graph) against (g(x + eps e_j) -
    g(x - eps e_j)) / 2eps (its column; the Hessian is symmetric): the whole
    Hessian, 2 first-order passes per element. mode "random": along
    ``n_directions`` random unit directions v, grad(<g, v>) against
    (g(x + eps v) - g(x - eps v)) / 2eps.
    The first derivative is differenced, not checked: run :func:`gradcheck`
    too. Returns True, or raises GradcheckError whose message gives, per pair of
    inputs (per direction and input), the max absolute and relative error
    and the worst index, or the error create_graph raised (e.g. an op
    without a differentiable backward, by name).
    """
    if mode not in ("full", "random"):
        raise ValueError(f"mode must be 'full' or 'random', got {mode!r}")
    rng = numpy.random.default_rng(seed)
    xs = _checked_inputs(inputs)

    def first(arrays, create_graph=False):
        """(input Tensors, g: one gradient per input; Tensors with create_graph, else arrays)."""
        ts = [Tensor(backend.asarray(a), requires_grad=True) for a in arrays]
        out = fn(*ts)
        if not isinstance(out, Tensor):
            raise TypeError(f"gradgradcheck: fn must return a Tensor, got {type(out).__name__}")
        if w is None:
            return ts, out
        try:
            gs = grad(out, ts, grad_outputs=backend.asarray(w), create_graph=create_graph,
                      allow_unused=True)
        except (ValueError, RuntimeError) as e:
            raise GradcheckError(f"grad(create_graph={create_graph}) failed: {e}") from e
        return ts, (gs if create_graph else [backend.to_numpy(g.data) for g in gs])

    w = None
    _, out = first(xs)
    _checked_output(out)
    w = rng.standard_normal(out.shape) if out.size > 1 else numpy.ones(out.shape)
    ts, gs = first(xs, create_graph=True)
    g0 = first(xs)[1]
    report = [_compare(f"first derivative of input {i} {x.shape} (create_graph vs not)",
                       backend.to_numpy(g.data), g0[i], atol, rtol)
              for i, (x, g) in enumerate(zip(xs, gs))]

    def hess_rows(s):
        """grad(s) for the scalar Tensor s built from gs: one array per input."""
        if not s.requires_grad:      # gs do not depend on the inputs: zero second derivative
            return [numpy.zeros_like(x) for x in xs]
        try:
            return [backend.to_numpy(h.data) for h in grad(s, ts, allow_unused=True)]
        except (ValueError, RuntimeError) as e:
            raise GradcheckError(f"differentiating the create_graph gradient failed: {e}") from e

    def difference(vs):
        """(g(x + eps v) - g(x - eps v)) / 2eps, one array per input."""
        gp = first([x + eps * v for x, v in zip(xs, vs)])[1]
        gm = first([x - eps * v for x, v in zip(xs, vs)])[1]
        return [(a - b) / (2 * eps) for a, b in zip(gp, gm)]

    if mode == "full":
        for m, x in enumerate(xs):
            rows = [numpy.zeros((x.size,) + y.shape) for y in xs]     # [k]: d g_m[j] / d x_k
            cols = [numpy.zeros((x.size,) + y.shape) for y in xs]
            flat_g = gs[m].reshape(-1)
            for j in range(x.size):
                for k, h in enumerate(hess_rows(flat_g[j])):
                    rows[k][j] = h
                e = [numpy.zeros_like(y) for y in xs]
                e[m].reshape(-1)[j] = 1.0
                for k, c in enumerate(difference(e)):
                    cols[k][j] = c
            for k, y in enumerate(xs):
                shape = x.shape + y.shape
                report.append(_compare(f"input {m} {x.shape} and input {k} {y.shape}",
                                       rows[k].reshape(shape), cols[k].reshape(shape), atol, rtol))
    else:
        for d in range(n_directions):
            vs = [rng.standard_normal(x.shape) for x in xs]
            norm = numpy.sqrt(sum(numpy.sum(v * v) for v in vs))
            vs = [v / norm for v in vs]
            s = sum((g * backend.asarray(v)).sum() for g, v in zip(gs, vs))
            for k, (h, c) in enumerate(zip(hess_rows(s), difference(vs))):
                report.append(_compare(f"direction {d}, input {k} {xs[k].shape}", h, c, atol, rtol))
    bad = [r for ok, r in report if not ok]
    if bad:
        raise GradcheckError("second derivatives (create_graph=True) disagree with finite differences "
                             f"of the first (eps={eps}, atol={atol}, rtol={rtol}):\n" + "\n".join(
                                 ("  FAIL " if not ok else "  ok   ") + r for ok, r in report))
    return True
