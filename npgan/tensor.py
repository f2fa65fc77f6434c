"""Tensor: an array that remembers how it was made, and reverse-mode autodiff.

Every op computes its result array and a ``backward`` closure that maps the
gradient of the result to the gradients of its inputs; both sit together in
one method below. ``Tensor.backward()`` visits the graph (a DAG) once, in an
iteratively computed topological order, so depth never meets Python's
recursion limit.

Arrays come from ``backend.xp`` (NumPy or CuPy); dtype follows the data:
float32 for training, float64 for gradient checks. Integer, boolean and object
data are refused.
"""
import contextlib
import itertools

from . import backend
from . import _kernels as K

_grad_enabled = True


@contextlib.contextmanager
def no_grad():
    """Within this block ops record no graph (evaluation, optimizer updates)."""
    global _grad_enabled
    prev, _grad_enabled = _grad_enabled, False
    try:
        yield
    finally:
        _grad_enabled = prev


def is_grad_enabled():
    return _grad_enabled


def _float_array(data, dtype=None):
    """Backend array of a float dtype from ``data``; refuse anything else."""
    xp = backend.xp
    if isinstance(data, Tensor):
        data = data.data
    if dtype is None:
        kind = getattr(getattr(data, "dtype", None), "kind", None)
        if kind is None:   # Python scalar or list: let the array module decide
            arr = xp.asarray(data)
            kind = arr.dtype.kind
        else:
            arr = data if isinstance(data, xp.ndarray) else xp.asarray(data)
        if kind != "f":
            raise TypeError(
                f"npgan.Tensor holds floating-point data only, got dtype {arr.dtype}; "
                "convert explicitly, e.g. Tensor(x, dtype='float32')")
        return arr
    dtype = xp.dtype(dtype)
    if dtype.kind != "f":
        raise TypeError(f"npgan.Tensor dtype must be floating point, got {dtype}")
    return xp.asarray(data, dtype=dtype)


def _op_name(node):
    """An op's name for error messages: its ``op`` string, else its backward's name."""
    return repr(node._op or getattr(node._backward, "__qualname__", "?"))


def _unbroadcast(g, shape):
    """Sum ``g`` over the axes that broadcasting added or stretched to ``shape``."""
    if g.shape == shape:
        return g
    extra = g.ndim - len(shape)
    if extra:
        g = g.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return g


class Tensor:
    """An array (``.data``) with an optional gradient (``.grad``).

    Tensor(data, requires_grad=False, dtype=None): ``data`` is anything the
    array module accepts with a float dtype (or give ``dtype``).
    """
    __array_ufunc__ = None      # ndarray (op) Tensor -> Tensor's reflected op

    def __init__(self, data, requires_grad=False, dtype=None):
        self.data = _float_array(data, dtype)
        self.requires_grad = bool(requires_grad)
        self.grad = None
        self._parents = ()
        self._backward = None
        self._op = ""

    # -- bookkeeping ---------------------------------------------------------
    shape = property(lambda self: self.data.shape)
    dtype = property(lambda self: self.data.dtype)
    ndim = property(lambda self: self.data.ndim)
    size = property(lambda self: self.data.size)
    T = property(lambda self: self.transpose())

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        extra = f", op={self._op}" if self._op else (", requires_grad=True" if self.requires_grad else "")
        return f"Tensor(shape={self.shape}, dtype={self.dtype}{extra})"

    def numpy(self):
        """The data as a host NumPy array."""
        return backend.to_numpy(self.data)

    def item(self):
        return self.data.item()

    def detach(self):
        """Same data, no history, no gradient."""
        return Tensor(self.data)

    def zero_grad(self):
        self.grad = None

    @staticmethod
    def make(data, parents, backward, op=""):
        """Wrap an op's result. ``backward(g)`` returns a tuple with one
        gradient (or None) per parent, each an array of that parent's shape
        (``Tensor.backward`` raises ValueError, naming the op and both shapes,
        otherwise). This is how every op below is built, and how a user adds
        one of their own (see README: checking a new op)."""
        out = Tensor.__new__(Tensor)
        out.data, out.grad, out._op = data, None, op
        out.requires_grad = _grad_enabled and any(p.requires_grad for p in parents)
        if out.requires_grad:
            out._parents, out._backward = parents, backward
        else:
            out._parents, out._backward = (), None
        return out

    def _lift(self, other):
        """Operand to Tensor; Python scalars take this tensor's dtype."""
        if isinstance(other, Tensor):
            return other
        if isinstance(other, (int, float)):
            return Tensor(backend.xp.asarray(other, dtype=self.dtype))
        arr = backend.xp.asarray(other)
        return Tensor(arr if arr.dtype.kind == "f" else arr.astype(self.dtype))

    # -- backward --------------------------------------------------------------
    def backward(self, grad=None):
        """Accumulate d(self)/d(leaf) into ``leaf.grad`` for every leaf that
        requires grad. ``grad`` is the upstream gradient (same shape as self);
        it may be omitted only for a single-element tensor."""
        xp = backend.xp
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad: no input "
                               "of the computation had requires_grad=True (or it ran under no_grad())")
        if grad is None:
            if self.size != 1:
                raise RuntimeError(
                    f"backward() without a gradient needs a single-element output, this one has "
                    f"shape {self.shape}: reduce it first (e.g. .sum() or .mean()) or pass "
                    f"grad= an array of shape {self.shape}")
            grad = xp.ones_like(self.data)
        else:
            grad = xp.asarray(grad.data if isinstance(grad, Tensor) else grad, dtype=self.dtype)
            if grad.shape != self.shape:
                raise ValueError(f"backward(grad): grad has shape {grad.shape}, the tensor has {self.shape}")

        order, seen, stack = [], set(), [(self, False)]   # iterative post-order DFS
        while stack:
            node, expanded = stack.pop()
            if expanded:
                order.append(node)
            elif id(node) not in seen:
                seen.add(id(node))
                stack.append((node, True))
                stack.extend((p, False) for p in node._parents
                             if p.requires_grad and id(p) not in seen)

        # Prune: an inner node none of whose inputs needs a gradient *now* (a leaf
        # may have been frozen since the forward pass) is marked so for this
        # call, so the ops above it skip that gradient's work (e.g. a GEMM).
        pruned = []
        for n in order:                           # parents precede children in `order`
            if n._parents and not any(p.requires_grad for p in n._parents):
                n.requires_grad = False
                pruned.append(n)
        try:
            grads = {id(self): grad}
            handed = {id(grad)}     # arrays a new leaf .grad must not alias (caller's, other leaves')
            for node in reversed(order):
                g = grads.pop(id(node), None)
                if g is None or not node.requires_grad:
                    continue
                if node._backward is None:          # a leaf: keep (and accumulate) its gradient
                    if node.grad is not None:
                        node.grad = K.add(node.grad, g)
                    else:   # own it: g may be a read-only broadcast view, or also reach another leaf
                        node.grad = g if g.flags.owndata and id(g) not in handed else g.copy()
                        handed.add(id(node.grad))
                    continue
                pgs = node._backward(g)
                if len(pgs) != len(node._parents):
                    raise ValueError(f"backward of op {_op_name(node)} returned {len(pgs)} "
                                     f"gradients for its {len(node._parents)} inputs")
                for i, (p, pg) in enumerate(zip(node._parents, pgs)):
                    if pg is None or not p.requires_grad:
                        continue
                    if getattr(pg, "shape", None) != p.data.shape:   # the hot path's only cost
                        raise ValueError(f"backward of op {_op_name(node)} returned a gradient of "
                                         f"shape {getattr(pg, 'shape', type(pg).__name__)} for "
                                         f"its input {i} of shape {p.data.shape}")
                    if pg.dtype != p.data.dtype:   # float32 input of a float64 op: grad in its dtype
                        pg = pg.astype(p.data.dtype)
                    k = id(p)
                    grads[k] = pg if k not in grads else K.add(grads[k], pg)
        finally:
            for n in pruned:
                n.requires_grad = True

    # -- arithmetic (with broadcasting) ---------------------------------------
    def __add__(self, other):
        a, b = self, self._lift(other)
        return Tensor.make(a.data + b.data, (a, b),
                           lambda g: (_unbroadcast(g, a.shape), _unbroadcast(g, b.shape)), "add")

    def __sub__(self, other):
        a, b = self, self._lift(other)
        return Tensor.make(a.data - b.data, (a, b),
                           lambda g: (_unbroadcast(g, a.shape), _unbroadcast(-g, b.shape)), "sub")

    def __mul__(self, other):
        a, b = self, self._lift(other)
        def backward(g):
            return (_unbroadcast(g * b.data, a.shape) if a.requires_grad else None,
                    _unbroadcast(g * a.data, b.shape) if b.requires_grad else None)
        return Tensor.make(a.data * b.data, (a, b), backward, "mul")

    def __truediv__(self, other):
        a, b = self, self._lift(other)
        def backward(g):
            return (_unbroadcast(g / b.data, a.shape) if a.requires_grad else None,
                    _unbroadcast(-g * a.data / (b.data * b.data), b.shape) if b.requires_grad else None)
        return Tensor.make(a.data / b.data, (a, b), backward, "div")

    def __radd__(self, other):
        return self._lift(other) + self

    def __rsub__(self, other):
        return self._lift(other) - self

    def __rmul__(self, other):
        return self._lift(other) * self

    def __rtruediv__(self, other):
        return self._lift(other) / self

    def __neg__(self):
        return Tensor.make(-self.data, (self,), lambda g: (-g,), "neg")

    def __pow__(self, p):
        if isinstance(p, Tensor) or not isinstance(p, (int, float)):
            raise TypeError("Tensor ** p takes a constant number p; use exp/log for a tensor exponent")
        x = self
        if p == 0:      # d/dx x**0 = 0, also at x = 0 (where p * x**(p-1) is 0 * inf)
            return Tensor.make(x.data ** p, (x,), lambda g: (backend.xp.zeros_like(x.data),), "pow")
        return Tensor.make(x.data ** p, (x,), lambda g: (g * p * x.data ** (p - 1),), "pow")

    def __matmul__(self, other):
        a, b = self, self._lift(other)
        if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
            raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not match "
                             "(need (n, k) @ (k, m))")
        def backward(g):
            return (g @ b.data.T if a.requires_grad else None,
                    a.data.T @ g if b.requires_grad else None)
        return Tensor.make(a.data @ b.data, (a, b), backward, "matmul")

    def __rmatmul__(self, other):
        return self._lift(other) @ self

    # -- reductions ------------------------------------------------------------
    def sum(self, axis=None, keepdims=False):
        x = self
        def backward(g):
            if axis is not None and not keepdims:
                g = backend.xp.expand_dims(g, axis)
            return (backend.xp.broadcast_to(g, x.shape),)
        return Tensor.make(x.data.sum(axis=axis, keepdims=keepdims), (x,), backward, "sum")

    def mean(self, axis=None, keepdims=False):
        """Sum / count; a mean over zero elements (an empty batch) is undefined:
        ValueError, where NumPy would give NaN and a warning."""
        n = self.size if axis is None else _count(self.shape, axis)
        if n == 0:
            raise ValueError(f"mean over zero elements (shape {self.shape}, axis {axis}): "
                             "an empty batch has no mean")
        return self.sum(axis, keepdims) * (1.0 / n)

    def max(self, axis=None, keepdims=False):
        """Maximum; the gradient is shared equally among tied maxima (a NaN is
        the maximum of its slice, as in NumPy: the gradient goes to the NaNs)."""
        x = self
        m = x.data.max(axis=axis, keepdims=True)
        def backward(g):
            xp = backend.xp
            hit = x.data == m
            if x.dtype.kind == "f" and bool(xp.isnan(m).any()):
                hit |= xp.isnan(x.data) & xp.isnan(m)
            mask = hit.astype(x.dtype)
            mask /= mask.sum(axis=axis, keepdims=True)
            if axis is not None and not keepdims:
                g = backend.xp.expand_dims(g, axis)
            return (mask * g,)
        out = m if keepdims else (m.reshape(()) if axis is None else m.squeeze(axis))
        return Tensor.make(out, (x,), backward, "max")

    # -- shape ---------------------------------------------------------------------
    def reshape(self, *shape):
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        x = self
        return Tensor.make(x.data.reshape(shape), (x,), lambda g: (g.reshape(x.shape),), "reshape")

    def transpose(self, *axes):
        axes = axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes
        axes = tuple(axes) or tuple(reversed(range(self.ndim)))
        # inverse permutation of the axes made non-negative (argsort of (0, -1, 1) is wrong)
        inv = tuple(sorted(range(len(axes)), key=lambda i: axes[i] % max(self.ndim, 1)))
        return Tensor.make(self.data.transpose(axes), (self,),
                           lambda g: (g.transpose(inv),), "transpose")

    def __getitem__(self, idx):
        x = self
        if isinstance(idx, Tensor):
            raise TypeError("index a Tensor with integers, slices or integer arrays, not a Tensor")
        def backward(g):
            gx = backend.xp.zeros_like(x.data)
            backend.xp.add.at(gx, idx, g)     # correct for repeated fancy indices too
            return (gx,)
        return Tensor.make(x.data[idx], (x,), backward, "getitem")

    # -- elementwise math -------------------------------------------------------
    def exp(self):
        x, y = self, backend.xp.exp(self.data)
        return Tensor.make(y, (x,), lambda g: (g * y,), "exp")

    def log(self):
        x = self
        return Tensor.make(backend.xp.log(x.data), (x,), lambda g: (g / x.data,), "log")

    def tanh(self):
        y = backend.xp.tanh(self.data)
        return Tensor.make(y, (self,), lambda g: (g * (1 - y * y),), "tanh")

    def relu(self):
        y = K.relu_forward(self.data)
        return Tensor.make(y, (self,), lambda g: (K.relu_backward(g, y),), "relu")

    def sigmoid(self):
        x = self
        return Tensor.make(K.sigmoid_forward(x.data), (x,),
                           lambda g: (K.sigmoid_backward(g, x.data),), "sigmoid")

    def softplus(self):
        """log(1 + e^x), exact for any x."""
        x = self
        return Tensor.make(K.softplus_forward(x.data), (x,),
                           lambda g: (K.softplus_backward(g, x.data),), "softplus")

    def log_sigmoid(self):
        """log sigmoid(x) = -softplus(-x), exact for any x."""
        x = self
        return Tensor.make(K.log_sigmoid_forward(x.data), (x,),
                           lambda g: (K.log_sigmoid_backward(g, x.data),), "log_sigmoid")

    def clip(self, lo=None, hi=None):
        """Clamp to [lo, hi]; the gradient passes only where x was inside."""
        x = self
        def backward(g):
            inside = backend.xp.ones(x.shape, dtype=bool)
            if lo is not None:
                inside &= x.data >= lo
            if hi is not None:
                inside &= x.data <= hi
            return (g * inside,)
        return Tensor.make(backend.xp.clip(x.data, lo, hi), (x,), backward, "clip")

    def maxout(self, pieces):
        """Max over consecutive groups of ``pieces`` features of the last axis:
        (..., units * pieces) -> (..., units), as pylearn2's Maxout layer."""
        x = self
        y, arg = K.maxout_forward(x.data, pieces)      # checks pieces (ValueError)
        return Tensor.make(y, (x,), lambda g: (K.maxout_backward(g, arg, pieces),), "maxout")


def _count(shape, axis):
    axes = axis if isinstance(axis, tuple) else (axis,)
    n = 1
    for a in axes:
        if not -len(shape) <= a < len(shape):
            raise ValueError(f"axis {a} is out of bounds for a tensor of {len(shape)} dimensions")
        n *= shape[a]
    return n


def tensor(data, requires_grad=False, dtype=None):
    """Shorthand for Tensor(...)."""
    return Tensor(data, requires_grad=requires_grad, dtype=dtype)


def concatenate(tensors, axis=0):
    """Join tensors along an existing axis; the gradient is split back."""
    tensors = [t if isinstance(t, Tensor) else Tensor(t) for t in tensors]
    sizes = [t.shape[axis] for t in tensors]
    xp = backend.xp
    def backward(g):
        cuts = list(itertools.accumulate(sizes))[:-1]
        return tuple(xp.split(g, cuts, axis=axis))
    return Tensor.make(xp.concatenate([t.data for t in tensors], axis=axis),
                       tuple(tensors), backward, "concatenate")
