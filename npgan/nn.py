"""Layers with PyTorch's vocabulary: Module, Linear, Maxout, Dropout, Sequential.

Weights are stored (in_features, out_features), as in the paper's pylearn2
code, so a layer computes ``x @ W + b`` with no transpose.
"""
import contextlib
import math
import numbers
from collections import OrderedDict

import numpy  # host-side only: initialisation RNG and state_dict arrays

from . import _kernels as K
from . import backend
from . import functional as F
from .tensor import Tensor


class Parameter(Tensor):
    """A Tensor that a Module owns and an optimizer updates."""

    def __init__(self, data, dtype=None):
        super().__init__(data, requires_grad=True, dtype=dtype)

    def __repr__(self):
        return f"Parameter(shape={self.shape}, dtype={self.dtype})"


class Module:
    """Base class: parameters and sub-modules are found among the attributes
    (in assignment order), as in PyTorch."""
    training = True

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def named_parameters(self, prefix=""):
        """(name, Parameter) pairs; a parameter reached twice (a shared layer,
        tied weights) only once, under its first name, as in PyTorch, so that
        an optimizer updates it once per step."""
        seen = set()
        for name, p in self._named_parameters(prefix):
            if id(p) not in seen:
                seen.add(id(p))
                yield name, p

    def _named_parameters(self, prefix):
        for name, v in vars(self).items():
            if isinstance(v, Parameter):
                yield prefix + name, v
            elif isinstance(v, Module):
                yield from v._named_parameters(prefix + name + ".")

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def modules(self):
        """This module and every sub-module, each once."""
        seen = set()
        stack = [self]
        while stack:
            m = stack.pop()
            if id(m) in seen:
                continue
            seen.add(id(m))
            yield m
            stack.extend(reversed([v for v in vars(m).values() if isinstance(v, Module)]))

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    def train(self, mode=True):
        for m in self.modules():
            m.training = mode
        return self

    def eval(self):
        return self.train(False)

    def to(self, dtype):
        """Cast every parameter to ``dtype`` (e.g. float64 for gradcheck)."""
        for p in self.parameters():
            p.data = p.data.astype(dtype)
            p.grad = None
        return self

    def num_parameters(self):
        return sum(p.size for p in self.parameters())

    @contextlib.contextmanager
    def substituted(self, params):
        """Context: within it, the parameters named in ``params`` ({name: Tensor},
        names as :meth:`named_parameters` gives them) are replaced by those
        Tensors, which may carry history (e.g. D's weights after differentiable
        update steps: the unrolled GAN), so a forward pass builds its graph on
        them; the module's own Parameters come back on exit, untouched. An
        unknown name, or a shape that differs from the parameter's: KeyError /
        ValueError before anything is swapped."""
        own = dict(self.named_parameters())
        unknown = [k for k in params if k not in own]
        if unknown:
            raise KeyError(f"{type(self).__name__}.substituted: unknown parameter names {unknown}")
        slots = {}
        for name, t in params.items():
            if not isinstance(t, Tensor):
                raise TypeError(f"substituted: '{name}' must be a Tensor, got {type(t).__name__}")
            if t.shape != own[name].shape:
                raise ValueError(f"substituted: '{name}' has shape {t.shape}, the parameter has "
                                 f"shape {own[name].shape}")
            owner, attr = self, name
            while "." in attr:
                head, attr = attr.split(".", 1)
                owner = getattr(owner, head)
            slots[name] = (owner, attr)
        saved = [(owner, attr, getattr(owner, attr)) for owner, attr in slots.values()]
        try:
            for name, (owner, attr) in slots.items():
                setattr(owner, attr, params[name])
            yield self
        finally:
            for owner, attr, p in saved:
                setattr(owner, attr, p)

    def functional_call(self, params, *args, **kwargs):
        """``forward(*args, **kwargs)`` with the parameters named in ``params``
        replaced by those Tensors (see :meth:`substituted`); others stay the
        module's own. PyTorch's ``torch.func.functional_call(module, params, args)``."""
        with self.substituted(params):
            return self(*args, **kwargs)

    def state_dict(self):
        """Ordered {name: host NumPy copy of the parameter}."""
        return OrderedDict((n, backend.to_numpy(p.data).copy()) for n, p in self.named_parameters())

    def load_state_dict(self, state):
        """Copy arrays into the parameters, cast to each parameter's dtype.
        Refused with an error that names the key, and nothing changed unless
        every key fits: missing or unexpected keys (KeyError), a shape
        mismatch, non-real data, or a value that is NaN or infinite or does
        not fit the parameter's dtype (e.g. float64 1e300 into float32:
        ValueError)."""
        xp = backend.xp
        name = type(self).__name__
        own = OrderedDict(self.named_parameters())
        missing = [k for k in own if k not in state]
        extra = [k for k in state if k not in own]
        if missing or extra:
            raise KeyError(f"{name}.load_state_dict: missing keys {missing}, "
                           f"unexpected keys {extra}")
        new = {}
        for k, p in own.items():
            a = state[k]
            shape = tuple(a.shape) if hasattr(a, "shape") else numpy.shape(a)   # host or device
            if shape != p.shape:
                raise ValueError(f"{name}.load_state_dict: '{k}' has shape {shape}, "
                                 f"the parameter has shape {p.shape}")
            kind = getattr(getattr(a, "dtype", None), "kind", None) or numpy.asarray(a).dtype.kind
            if kind not in "fiub":
                raise ValueError(f"{name}.load_state_dict: '{k}' holds {kind!r}-kind data, "
                                 "not real numbers")
            with numpy.errstate(over="ignore", invalid="ignore"):
                v = backend.asarray(a, dtype=p.dtype).copy()           # host or device arrays
            if not bool(xp.isfinite(v).all()):
                src = backend.to_numpy(backend.asarray(a))
                if kind == "f" and not numpy.isfinite(src).all():
                    raise ValueError(f"{name}.load_state_dict: '{k}' contains "
                                     f"{int((~numpy.isfinite(src)).sum())} NaN or infinite values")
                raise ValueError(f"{name}.load_state_dict: '{k}' has values up to "
                                 f"{float(numpy.abs(src).max()):.3g}, which overflow the "
                                 f"parameter's {p.dtype}")
            new[k] = v
        for k, p in own.items():           # all checked: assign
            p.data = new[k]
            p.grad = None

    def __repr__(self):
        inner = [f"  ({n}): " + repr(v).replace("\n", "\n  ")
                 for n, v in vars(self).items() if isinstance(v, Module)]
        head = f"{type(self).__name__}({self.extra_repr()}"
        return head + (")" if not inner else "\n" + "\n".join(inner) + "\n)")

    def extra_repr(self):
        return ""


def init_weight(shape, init="uniform", irange=0.05, std=None, rng=None, dtype="float32"):
    """A host array of ``shape`` (fan_in, fan_out, ...) drawn by ``init``:
    "uniform" U(-irange, irange) (the paper), "normal" N(0, std^2),
    "xavier" (Glorot uniform), "kaiming" (He normal, for ReLU), "zeros"."""
    rng = rng if rng is not None else numpy.random.default_rng()
    fan_in, fan_out = shape[0], int(numpy.prod(shape[1:]))
    if init == "uniform":
        w = rng.uniform(-irange, irange, shape)
    elif init == "normal":
        w = rng.normal(0.0, 0.01 if std is None else std, shape)
    elif init == "xavier":
        a = math.sqrt(6.0 / (fan_in + fan_out))
        w = rng.uniform(-a, a, shape)
    elif init == "kaiming":
        w = rng.normal(0.0, math.sqrt(2.0 / fan_in), shape)
    elif init == "zeros":
        w = numpy.zeros(shape)
    else:
        raise ValueError(f"unknown init {init!r}")
    return w.astype(dtype)


def _size(value, name, layer):
    """``value`` as a positive int, else ValueError naming the argument."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{layer}: {name} must be a positive integer, got {value!r}")
    return int(value)


class Linear(Module):
    """y = x @ weight + bias; x (N, in_features) -> (N, out_features).

    weight (in_features, out_features) initialised by ``init`` (default the
    paper's uniform +-irange); bias zeros. in_features, out_features: positive
    integers (else ValueError). A batch of N = 0 rows gives a (0, out) result
    (and zero weight gradients), as in NumPy and PyTorch."""

    def __init__(self, in_features, out_features, bias=True, init="uniform", irange=0.05,
                 std=None, rng=None, dtype="float32"):
        in_features = _size(in_features, "in_features", "Linear")
        out_features = _size(out_features, "out_features", "Linear")
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(backend.asarray(
            init_weight((in_features, out_features), init, irange, std, rng, dtype)))
        self.bias = Parameter(backend.xp.zeros(out_features, dtype=dtype)) if bias else None

    def forward(self, x, activation=None):
        """activation None, "relu" or "sigmoid": applied inside the same op
        (one pass over the output with the bias; see F.linear)."""
        return F.linear(x, self.weight, self.bias, activation=activation)

    def extra_repr(self):
        return f"{self.in_features}, {self.out_features}"


class Maxout(Module):
    """Maxout layer (Goodfellow et al., 2013): a linear map to units*pieces
    features, then the max of each group of ``pieces``: (N, in) -> (N, units).
    in_features, units, pieces: positive integers (else ValueError)."""

    def __init__(self, in_features, units, pieces, init="uniform", irange=0.005, std=None,
                 rng=None, dtype="float32"):
        in_features = _size(in_features, "in_features", "Maxout")
        units, pieces = _size(units, "units", "Maxout"), _size(pieces, "pieces", "Maxout")
        self.units, self.pieces = units, pieces
        self.linear = Linear(in_features, units * pieces, init=init, irange=irange, std=std,
                             rng=rng, dtype=dtype)

    def forward(self, x):
        return F.maxout(self.linear(x), self.pieces)

    def extra_repr(self):
        return f"{self.linear.in_features}, units={self.units}, pieces={self.pieces}"


class Dropout(Module):
    """Inverted dropout with drop probability ``p`` (keep 1-p); identity in
    eval mode. ``rng``: a numpy.random.Generator or a seed."""

    def __init__(self, p=0.5, rng=None):
        K.check_dropout_p(p, "Dropout p")
        self.p = p
        self.rng = rng if isinstance(rng, numpy.random.Generator) else numpy.random.default_rng(rng)

    def forward(self, x):
        return F.dropout(x, self.p, self.training, self.rng)

    def extra_repr(self):
        return f"p={self.p}"


class ReLU(Module):
    def forward(self, x):
        return F.relu(x)


class Sigmoid(Module):
    def forward(self, x):
        return F.sigmoid(x)


class Tanh(Module):
    def forward(self, x):
        return F.tanh(x)


class Sequential(Module):
    """Modules applied in order; parameters named "0.weight", "1.bias", ..."""

    def __init__(self, *modules):
        for i, m in enumerate(modules):
            if not isinstance(m, Module):
                raise TypeError(f"Sequential item {i} is a {type(m).__name__}, not a Module")
            setattr(self, str(i), m)

    def __iter__(self):
        return (v for v in vars(self).values() if isinstance(v, Module))

    def __getitem__(self, i):
        return list(iter(self))[i]      # not list(self): that asks len(), which would recurse

    def __len__(self):
        return sum(1 for _ in self)

    def forward(self, x):
        for m in self:
            x = m(x)
        return x
