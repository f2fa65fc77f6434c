"""Tensor: an array that remembers how it was made, and reverse-mode autodiff.

Every op computes its result array and a ``backward`` closure that maps the
gradient of the result to the gradients of its inputs; both sit together in
one method below. ``Tensor.backward()`` visits the graph (a DAG) once, in an
iteratively computed topological order, so depth never meets Python's
recursion limit.

Higher derivatives: with ``create_graph=True`` (``backward`` or :func:`grad`)
each backward closure is handed a Tensor ``g`` instead of an array and then
computes with Tensor ops (``_vals`` gives it its inputs as Tensors), so the
gradient is itself a Tensor with history that can be differentiated again.
Without it the closures run on arrays and compiled kernels and no graph is
built: the first-order path is unchanged. An op declares that its backward
can do this with ``Tensor.make(..., graph=True)``.

Arrays come from ``backend.xp`` (NumPy or CuPy); dtype follows the data:
float32 for training, float64 for gradient checks. Integer, boolean and object
data are refused.
"""
import contextlib
import itertools
import operator

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
    """Sum ``g`` over the axes that broadcasting added or stretched to ``shape``
    (``g`` an array, or a Tensor under create_graph)."""
    if g.shape == shape:
        return g
    extra = g.ndim - len(shape)
    if extra:
        g = g.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return g


def _vals(g, *tensors):
    """What an op's backward computes with: the Tensors themselves when the
    gradient ``g`` is a Tensor (create_graph: the result records a graph),
    else their arrays (the fast path)."""
    return tensors if isinstance(g, Tensor) else tuple(map(_data, tensors))


_data = operator.attrgetter("data")


def _keep_shape(shape, axis):
    """``shape`` with the reduced ``axis`` (an int or a tuple) kept as 1s."""
    axes = {a % len(shape) for a in (axis if isinstance(axis, tuple) else (axis,))}
    return tuple(1 if i in axes else n for i, n in enumerate(shape))


def _expand(g, shape, axis, keepdims):
    """The gradient of a reduction over ``axis`` with its reduced axes back (as 1s)."""
    if axis is None or keepdims:
        return g
    if isinstance(g, Tensor):
        return g.reshape(_keep_shape(shape, axis))
    return backend.xp.expand_dims(g, axis)


def _scatter(g, idx, shape):
    """The gradient of ``x[idx]`` for x of ``shape``: g added into zeros at idx
    (correct for repeated fancy indices too). An array for an array g; for a
    Tensor g a Tensor op whose own backward is ``[idx]``."""
    xp = backend.xp
    if not isinstance(g, Tensor):
        gx = xp.zeros(shape, dtype=g.dtype)
        xp.add.at(gx, idx, g)
        return gx
    return Tensor.make(_scatter(g.data, idx, shape), (g,), lambda gg: (gg[idx],), "scatter", graph=True)


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
        self._graph = False

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
    def make(data, parents, backward, op="", graph=False):
        """Wrap an op's result. ``backward(g)`` returns a tuple with one
        gradient (or None) per parent, each an array of that parent's shape
        (``Tensor.backward`` raises ValueError, naming the op and both shapes,
        otherwise). This is how every op below is built, and how a user adds
        one of their own (see README: checking a new op).

        graph=True declares that ``backward`` also takes a Tensor ``g`` and
        then returns Tensors computed with Tensor ops (differentiable, for
        ``create_graph=True``; ``_vals`` helps). Without it, a second
        derivative through this op raises RuntimeError naming it."""
        out = Tensor.__new__(Tensor)
        out.data, out.grad, out._op, out._graph = data, None, op, graph
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
    def backward(self, grad=None, create_graph=False):
        """Accumulate d(self)/d(leaf) into ``leaf.grad`` for every leaf that
        requires grad. ``grad`` is the upstream gradient (same shape as self);
        it may be omitted only for a single-element tensor.

        create_graph=False: ``leaf.grad`` is an array (as optimizers expect).
        create_graph=True: ``leaf.grad`` becomes a Tensor with history (an
        array already there is added to it), so it can be differentiated
        again; set ``leaf.grad = None`` before an optimizer step."""
        roots = _roots([self], None if grad is None else [grad], create_graph, "backward()")
        leaf_grads = _backprop(roots, create_graph, None)
        handed = {id(g) for _, g in roots}   # arrays a new leaf .grad must not alias
        for node, g in leaf_grads:           # (caller's, other leaves')
            if node.grad is not None:
                node.grad = node.grad + g if create_graph or isinstance(node.grad, Tensor) \
                    else K.add(node.grad, g)
            elif create_graph:
                node.grad = g
            else:   # own it: g may be a read-only broadcast view, or also reach another leaf
                node.grad = g if g.flags.owndata and id(g) not in handed else g.copy()
                handed.add(id(node.grad))

    # -- arithmetic (with broadcasting) ---------------------------------------
    def __add__(self, other):
        a, b = self, self._lift(other)
        return Tensor.make(a.data + b.data, (a, b),
                           lambda g: (_unbroadcast(g, a.shape), _unbroadcast(g, b.shape)),
                           "add", graph=True)

    def __sub__(self, other):
        a, b = self, self._lift(other)
        return Tensor.make(a.data - b.data, (a, b),
                           lambda g: (_unbroadcast(g, a.shape), _unbroadcast(-g, b.shape)),
                           "sub", graph=True)

    def __mul__(self, other):
        a, b = self, self._lift(other)
        def backward(g):
            A, B = _vals(g, a, b)
            return (_unbroadcast(g * B, a.shape) if a.requires_grad else None,
                    _unbroadcast(g * A, b.shape) if b.requires_grad else None)
        return Tensor.make(a.data * b.data, (a, b), backward, "mul", graph=True)

    def __truediv__(self, other):
        a, b = self, self._lift(other)
        def backward(g):
            A, B = _vals(g, a, b)
            return (_unbroadcast(g / B, a.shape) if a.requires_grad else None,
                    _unbroadcast(-g * A / (B * B), b.shape) if b.requires_grad else None)
        return Tensor.make(a.data / b.data, (a, b), backward, "div", graph=True)

    def __radd__(self, other):
        return self._lift(other) + self

    def __rsub__(self, other):
        return self._lift(other) - self

    def __rmul__(self, other):
        return self._lift(other) * self

    def __rtruediv__(self, other):
        return self._lift(other) / self

    def __neg__(self):
        return Tensor.make(-self.data, (self,), lambda g: (-g,), "neg", graph=True)

    def __pow__(self, p):
        if isinstance(p, Tensor) or not isinstance(p, (int, float)):
            raise TypeError("Tensor ** p takes a constant number p; use exp/log for a tensor exponent")
        x = self
        if p == 0:      # d/dx x**0 = 0, also at x = 0 (where p * x**(p-1) is 0 * inf)
            return Tensor.make(x.data ** p, (x,), lambda g: (backend.xp.zeros_like(x.data),),
                               "pow", graph=True)
        return Tensor.make(x.data ** p, (x,), lambda g: (g * p * _vals(g, x)[0] ** (p - 1),),
                           "pow", graph=True)

    def __matmul__(self, other):
        a, b = self, self._lift(other)
        if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
            raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not match "
                             "(need (n, k) @ (k, m))")
        def backward(g):
            A, B = _vals(g, a, b)
            return (g @ B.T if a.requires_grad else None,
                    A.T @ g if b.requires_grad else None)
        return Tensor.make(a.data @ b.data, (a, b), backward, "matmul", graph=True)

    def __rmatmul__(self, other):
        return self._lift(other) @ self

    # -- reductions ------------------------------------------------------------
    def sum(self, axis=None, keepdims=False):
        """Sum over ``axis`` (None: all; an int or a tuple of ints)."""
        x = self
        def backward(g):
            g = _expand(g, x.shape, axis, keepdims)
            if isinstance(g, Tensor):
                return (g.broadcast_to(x.shape),)
            return (backend.xp.broadcast_to(g, x.shape),)
        return Tensor.make(x.data.sum(axis=axis, keepdims=keepdims), (x,), backward, "sum", graph=True)

    def broadcast_to(self, shape):
        """The tensor broadcast to ``shape`` (NumPy rules); the gradient is summed back."""
        x = self
        return Tensor.make(backend.xp.broadcast_to(x.data, shape), (x,),
                           lambda g: (_unbroadcast(g, x.shape),), "broadcast_to", graph=True)

    def astype(self, dtype):
        """A copy in float ``dtype``; the gradient is cast back to this tensor's dtype."""
        x, dtype = self, backend.xp.dtype(dtype)
        if dtype.kind != "f":
            raise TypeError(f"npgan.Tensor dtype must be floating point, got {dtype}")
        return Tensor.make(x.data.astype(dtype), (x,), lambda g: (g.astype(x.dtype),),
                           "astype", graph=True)

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
        the maximum of its slice, as in NumPy: the gradient goes to the NaNs).
        Piecewise linear: its second derivative is 0."""
        x = self
        m = x.data.max(axis=axis, keepdims=True)
        def backward(g):
            xp = backend.xp
            hit = x.data == m
            if x.dtype.kind == "f" and bool(xp.isnan(m).any()):
                hit |= xp.isnan(x.data) & xp.isnan(m)
            mask = hit.astype(x.dtype)
            mask /= mask.sum(axis=axis, keepdims=True)
            return (mask * _expand(g, x.shape, axis, keepdims),)
        out = m if keepdims else (m.reshape(()) if axis is None else m.squeeze(axis))
        return Tensor.make(out, (x,), backward, "max", graph=True)

    # -- shape ---------------------------------------------------------------------
    def reshape(self, *shape):
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        x = self
        return Tensor.make(x.data.reshape(shape), (x,), lambda g: (g.reshape(x.shape),),
                           "reshape", graph=True)

    def transpose(self, *axes):
        axes = axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes
        axes = tuple(axes) or tuple(reversed(range(self.ndim)))
        # inverse permutation of the axes made non-negative (argsort of (0, -1, 1) is wrong)
        inv = tuple(sorted(range(len(axes)), key=lambda i: axes[i] % max(self.ndim, 1)))
        return Tensor.make(self.data.transpose(axes), (self,),
                           lambda g: (g.transpose(inv),), "transpose", graph=True)

    def __getitem__(self, idx):
        x = self
        if isinstance(idx, Tensor):
            raise TypeError("index a Tensor with integers, slices or integer arrays, not a Tensor")
        return Tensor.make(x.data[idx], (x,), lambda g: (_scatter(g, idx, x.shape),),
                           "getitem", graph=True)

    # -- elementwise math -------------------------------------------------------
    # The kernel ops' fast backward (arrays) and their create_graph form (Tensor
    # ops on x, for a Tensor g) sit side by side.
    def exp(self):
        x, y = self, backend.xp.exp(self.data)
        return Tensor.make(y, (x,), lambda g: (g * (x.exp() if isinstance(g, Tensor) else y),),
                           "exp", graph=True)

    def log(self):
        x = self
        return Tensor.make(backend.xp.log(x.data), (x,), lambda g: (g / _vals(g, x)[0],),
                           "log", graph=True)

    def tanh(self):
        x, y = self, backend.xp.tanh(self.data)
        def backward(g):
            t = x.tanh() if isinstance(g, Tensor) else y
            return (g * (1 - t * t),)
        return Tensor.make(y, (x,), backward, "tanh", graph=True)

    def relu(self):
        y = K.relu_forward(self.data)
        def backward(g):
            return (g * (y > 0),) if isinstance(g, Tensor) else (K.relu_backward(g, y),)
        return Tensor.make(y, (self,), backward, "relu", graph=True)

    def sigmoid(self):
        x = self
        def backward(g):     # sigmoid' = sigmoid(x) sigmoid(-x): no 1 - sigmoid cancellation
            if isinstance(g, Tensor):
                return (g * x.sigmoid() * (-x).sigmoid(),)
            return (K.sigmoid_backward(g, x.data),)
        return Tensor.make(K.sigmoid_forward(x.data), (x,), backward, "sigmoid", graph=True)

    def softplus(self):
        """log(1 + e^x), exact for any x."""
        x = self
        def backward(g):
            return (g * x.sigmoid(),) if isinstance(g, Tensor) else (K.softplus_backward(g, x.data),)
        return Tensor.make(K.softplus_forward(x.data), (x,), backward, "softplus", graph=True)

    def log_sigmoid(self):
        """log sigmoid(x) = -softplus(-x), exact for any x."""
        x = self
        def backward(g):
            if isinstance(g, Tensor):
                return (g * (-x).sigmoid(),)
            return (K.log_sigmoid_backward(g, x.data),)
        return Tensor.make(K.log_sigmoid_forward(x.data), (x,), backward, "log_sigmoid", graph=True)

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
        return Tensor.make(backend.xp.clip(x.data, lo, hi), (x,), backward, "clip", graph=True)

    def maxout(self, pieces):
        """Max over consecutive groups of ``pieces`` features of the last axis:
        (..., units * pieces) -> (..., units), as pylearn2's Maxout layer."""
        x = self
        y, arg = K.maxout_forward(x.data, pieces)      # checks pieces (ValueError)
        def backward(g):
            if not isinstance(g, Tensor):
                return (K.maxout_backward(g, arg, pieces),)
            onehot = backend.xp.arange(pieces) == arg[..., None]       # (..., units, pieces)
            return ((g.reshape(g.shape + (1,)) * onehot).reshape(x.shape),)
        return Tensor.make(y, (x,), backward, "maxout", graph=True)


def _roots(outputs, grad_outputs, create_graph, who):
    """[(output, its upstream gradient)]: arrays, or Tensors when create_graph."""
    xp = backend.xp
    if create_graph and not _grad_enabled:
        raise RuntimeError(f"{who}: create_graph=True inside no_grad(): the gradient's graph cannot "
                           "be recorded there; call it outside the no_grad() block")
    if grad_outputs is not None and len(grad_outputs) != len(outputs):
        raise ValueError(f"{who}: {len(grad_outputs)} grad_outputs for {len(outputs)} outputs")
    roots = []
    for i, out in enumerate(outputs):
        name = "this tensor" if who == "backward()" else f"output {i}"
        if not isinstance(out, Tensor):
            raise TypeError(f"{who}: {name} is a {type(out).__name__}, not a Tensor")
        if not out.requires_grad:
            raise RuntimeError(f"{who}: {name} does not require grad: no input "
                               "of the computation had requires_grad=True (or it ran under no_grad())")
        g = None if grad_outputs is None else grad_outputs[i]
        if g is None:
            if out.size != 1:
                raise RuntimeError(
                    f"{who} without a gradient needs a single-element output, {name} has "
                    f"shape {out.shape}: reduce it first (e.g. .sum() or .mean()) or pass "
                    f"an upstream gradient of shape {out.shape}")
            g = xp.ones_like(out.data)
        elif not (create_graph and isinstance(g, Tensor)):
            g = xp.asarray(g.data if isinstance(g, Tensor) else g, dtype=out.dtype)
        if g.shape != out.shape:
            raise ValueError(f"{who}: the gradient of {name} has shape {g.shape}, it has {out.shape}")
        roots.append((out, Tensor(g) if create_graph and not isinstance(g, Tensor) else g))
    return roots


def _backprop(roots, create_graph, targets):
    """The reverse sweep from ``roots`` [(tensor, gradient)]. targets: a set
    of Tensors (grad(): leaves or not), or None (backward(): every leaf that
    requires grad). Returns [(node, its summed gradient)] for the targets
    reached, in sweep order. Only ops on a path to a target run; on the fast
    path the nodes off every such path are also marked requires_grad=False
    for the sweep, so the ops above them skip that gradient's work (e.g. a
    GEMM). (Not under create_graph: the gradient's graph must still record
    every input that requires grad, e.g. D's weights in a gradient penalty.)
    Nodes are keys by identity (Tensor defines no __eq__)."""
    order, seen = [], set()                   # iterative post-order DFS
    stack = [(t, False) for t, _ in reversed(roots)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
        elif node not in seen:
            seen.add(node)
            stack.append((node, True))
            stack.extend((p, False) for p in node._parents if p.requires_grad and p not in seen)

    # needed: a target (backward(): a leaf), or an op with a needed input (parents
    # precede children in `order`; a leaf frozen since the forward pass is not in it).
    needed, pruned = set(), []
    for n in order:
        if (n in targets if targets is not None else not n._parents) or any(
                p in needed for p in n._parents):
            needed.add(n)
        elif not create_graph:
            n.requires_grad = False
            pruned.append(n)
    try:
        grads, found = {}, []
        for t, g in roots:
            grads[t] = g if t not in grads else grads[t] + g
        for node in reversed(order):
            g = grads.pop(node, None)
            if g is None or node not in needed:
                continue
            if node._backward is None or targets is not None and node in targets:
                found.append((node, g))    # a target may also lead to another one: go on
                if node._backward is None or not any(p in needed for p in node._parents):
                    continue
            if create_graph and not node._graph:
                raise RuntimeError(
                    f"op {_op_name(node)} has no differentiable backward: create_graph=True (a "
                    "derivative of a derivative) cannot pass through it. Give it a backward that "
                    "also works on Tensors and build it with Tensor.make(..., graph=True), or "
                    "differentiate only once")
            pgs = node._backward(g)
            if len(pgs) != len(node._parents):
                raise ValueError(f"backward of op {_op_name(node)} returned {len(pgs)} "
                                 f"gradients for its {len(node._parents)} inputs")
            for i, (p, pg) in enumerate(zip(node._parents, pgs)):
                if pg is None or p not in needed:
                    continue
                if create_graph and not isinstance(pg, Tensor):
                    pg = Tensor(pg)                # a constant (e.g. the zeros of x ** 0)
                if getattr(pg, "shape", None) != p.data.shape:   # the hot path's only cost
                    raise ValueError(f"backward of op {_op_name(node)} returned a gradient of "
                                     f"shape {getattr(pg, 'shape', type(pg).__name__)} for "
                                     f"its input {i} of shape {p.data.shape}")
                if pg.dtype != p.data.dtype:   # float32 input of a float64 op: grad in its dtype
                    pg = pg.astype(p.data.dtype)
                grads[p] = pg if p not in grads else (grads[p] + pg if create_graph
                                                      else K.add(grads[p], pg))
        return found
    finally:
        for n in pruned:
            n.requires_grad = True


def grad(outputs, inputs, grad_outputs=None, create_graph=False, allow_unused=False):
    """Gradients of ``outputs`` with respect to ``inputs``, as torch.autograd.grad.

    outputs: a Tensor or a sequence of them; grad_outputs: their upstream
    gradients (arrays or Tensors of their shapes, any float dtype: cast to
    each output's; under create_graph a Tensor keeps its history), or None
    for single-element outputs (ones). The gradient is that of
    sum_i <grad_outputs[i], outputs[i]>.
    inputs: a Tensor or a sequence; leaves or intermediate results.
    Returns a tuple with one Tensor per input, of its shape and dtype. Nothing
    is accumulated into any ``.grad``.

    create_graph=False: plain Tensors without history (the fast path: arrays
    and compiled kernels). create_graph=True: Tensors with history (computed
    with differentiable Tensor ops), to differentiate again, e.g. a
    Hessian-vector product or a gradient penalty; refused inside no_grad(),
    and a RuntimeError naming the op for an op without a differentiable
    backward (see ``Tensor.make``'s ``graph``).
    allow_unused=False: an input the outputs do not depend on (or that does
    not require grad) raises RuntimeError; True: its gradient is zeros.
    """
    inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    outputs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    if isinstance(grad_outputs, Tensor) or (grad_outputs is not None and hasattr(grad_outputs, "shape")):
        grad_outputs = [grad_outputs]
    for i, x in enumerate(inputs):
        if not isinstance(x, Tensor):
            raise TypeError(f"grad(): input {i} is a {type(x).__name__}, not a Tensor")
    roots = _roots(outputs, grad_outputs, create_graph, "grad()")
    found = dict(_backprop(roots, create_graph, set(inputs)))
    result = []
    for i, x in enumerate(inputs):
        g = found.get(x)
        if g is None:
            if not allow_unused:
                why = "does not require grad" if not x.requires_grad else "is not used by the outputs"
                raise RuntimeError(f"grad(): input {i} (shape {x.shape}) {why}, so it has no "
                                   "gradient; pass allow_unused=True for zeros")
            g = Tensor(backend.xp.zeros_like(x.data))
        elif not isinstance(g, Tensor):     # own it: not a view, nor the caller's array
            g = Tensor(g if g.flags.owndata and not any(g is r for _, r in roots) else g.copy())
        result.append(g)
    return tuple(result)


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
    """Join tensors along an existing axis; the gradient is split back (slices)."""
    tensors = [t if isinstance(t, Tensor) else Tensor(t) for t in tensors]
    sizes = [t.shape[axis] for t in tensors]
    def backward(g):
        ax = axis % g.ndim
        return tuple(g[(slice(None),) * ax + (slice(end - n, end),)]
                     for n, end in zip(sizes, itertools.accumulate(sizes)))
    return Tensor.make(backend.xp.concatenate([t.data for t in tensors], axis=axis),
                       tuple(tensors), backward, "concatenate", graph=True)
