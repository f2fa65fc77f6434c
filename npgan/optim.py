"""Optimizers (SGD with momentum, Adam, RMSprop) and the paper's schedules.

SGD update rule (pylearn2's, which the paper's code used):

    v <- momentum * v - lr * grad
    p <- p + v

PyTorch's SGD instead keeps v <- momentum * v + grad and steps p <- p - lr * v.
The two give identical parameters while lr is constant; with the paper's
decaying lr they differ slightly (here each past gradient keeps the lr it was
taken with). ``nesterov=True`` uses p <- p + momentum * v - lr * grad.
"""
import math
import numbers

import numpy  # host-side: checking loaded state

from . import _kernels as K
from . import backend
from .tensor import Tensor


def _real(name, v, low=None, high=None, low_open=False, high_open=True):
    """v as a finite float in [low, high) (bounds as flagged), else ValueError naming it."""
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
        raise ValueError(f"{name} must be a finite real number, got {v!r}")
    v = float(v)
    if low is not None and (v < low or (low_open and v == low)):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}, got {v!r}")
    if high is not None and (v > high or (high_open and v == high)):
        raise ValueError(f"{name} must be {'<' if high_open else '<='} {high}, got {v!r}")
    return v


class Optimizer:
    """Base class. A subclass defines ``_check_hyper(**hyper) -> dict`` (the
    constructor's checks, shared with :meth:`load_state_dict`), ``_hyper()``
    and ``_state_arrays()`` (name -> per-parameter buffer list, None until used)."""

    def __init__(self, params):
        self.params = list(params)
        if not self.params:
            raise ValueError("optimizer got an empty parameter list")
        first = {}
        for i, p in enumerate(self.params):
            if not getattr(p, "requires_grad", False):
                raise TypeError(f"parameter {i} ({p!r}) does not require grad")
            if first.setdefault(id(p), i) != i:
                raise ValueError(f"parameter {i} is parameter {first[id(p)]} again: each would "
                                 f"be updated twice per step (pass each parameter once)")
        self.steps = 0

    def _set_hyper(self, **hyper):
        for k, v in self._check_hyper(**hyper).items():
            setattr(self, k, v)

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    @staticmethod
    def _grad(p):
        """p's gradient as an array, or None: after ``backward(create_graph=True)``
        ``p.grad`` is a Tensor (with history), and the step uses its value."""
        g = p.grad
        return g.data if isinstance(g, Tensor) else g

    def _state_arrays(self):          # name -> list of per-parameter arrays (or None)
        return {}

    def _check_buffer(self, name, a):
        """Subclass hook: refuse buffer values the update cannot use."""

    def state_dict(self):
        """Hyper-parameters, step count and buffers as host NumPy arrays."""
        state = {"steps": self.steps, "hyper": self._hyper()}
        for name, arrays in self._state_arrays().items():
            state[name] = [None if a is None else backend.to_numpy(a).copy() for a in arrays]
        return state

    def check_state_dict(self, state):
        """Validate ``state`` for :meth:`load_state_dict` without changing
        anything: ValueError naming the first mismatch (keys, hyper-parameters
        by the constructor's checks, step count, buffer count/shape/dtype, NaN
        or inf). Returns (steps, hyper, {name: backend arrays or None})."""
        cls = type(self).__name__
        if not isinstance(state, dict):
            raise ValueError(f"{cls} state must be a dict, got {type(state).__name__}")
        names = set(self._state_arrays())
        want = {"steps", "hyper"} | names
        if set(state) != want:
            raise ValueError(f"{cls} state has keys {sorted(map(str, state))}, expected "
                             f"{sorted(want)} (state of another optimizer?)")
        hyper = state["hyper"]
        if not isinstance(hyper, dict):
            raise ValueError(f"{cls} state 'hyper' must be a dict, got {type(hyper).__name__}")
        if set(hyper) != set(self._hyper()):
            raise ValueError(f"{cls} hyper-parameters {sorted(map(str, hyper))}, expected "
                             f"{sorted(self._hyper())}")
        try:
            hyper = self._check_hyper(**hyper)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{cls} state: {e}") from e
        steps = state["steps"]
        if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 0:
            raise ValueError(f"{cls} state 'steps' must be an integer >= 0, got {steps!r}")
        arrays = {}
        xp = backend.xp
        for name in sorted(names):
            saved = state[name]
            if not isinstance(saved, (list, tuple)) or len(saved) != len(self.params):
                n = len(saved) if isinstance(saved, (list, tuple)) else type(saved).__name__
                raise ValueError(f"optimizer state '{name}' has {n} entries, "
                                 f"the optimizer has {len(self.params)} parameters")
            out = []
            for i, (a, p) in enumerate(zip(saved, self.params)):
                if a is None:
                    out.append(None)
                    continue
                kind = getattr(getattr(a, "dtype", None), "kind", None)
                if kind != "f":
                    raise ValueError(f"optimizer state '{name}'[{i}] must be a float array, "
                                     f"got {type(a).__name__} {getattr(a, 'dtype', '')}")
                if tuple(a.shape) != p.shape:
                    raise ValueError(f"optimizer state '{name}'[{i}] has shape {tuple(a.shape)}, "
                                     f"parameter has {p.shape}")
                with numpy.errstate(over="ignore", invalid="ignore"):
                    v = backend.asarray(a, dtype=p.dtype).copy()
                if not bool(xp.isfinite(v).all()):
                    raise ValueError(f"optimizer state '{name}'[{i}] has NaN or inf values "
                                     f"(or values that overflow {p.dtype})")
                self._check_buffer(name, v)
                out.append(v)
            arrays[name] = out
        return int(steps), hyper, arrays

    def load_state_dict(self, state):
        """Restore :meth:`state_dict` output; all or nothing (see check_state_dict)."""
        steps, hyper, arrays = self.check_state_dict(state)
        for name, buffers in self._state_arrays().items():
            buffers[:] = arrays[name]
        self.steps = steps
        for k, v in hyper.items():
            setattr(self, k, v)


class SGD(Optimizer):
    """Stochastic gradient descent with (pylearn2-style) momentum; see the
    module docstring for the exact rule. ``lr`` and ``momentum`` are plain
    attributes that schedules change between steps."""

    def __init__(self, params, lr, momentum=0.0, nesterov=False):
        super().__init__(params)
        self._set_hyper(lr=lr, momentum=momentum, nesterov=nesterov)
        self.velocity = [None] * len(self.params)

    @staticmethod
    def _check_hyper(lr, momentum=0.0, nesterov=False):
        if not isinstance(nesterov, bool):
            raise ValueError(f"nesterov must be True or False, got {nesterov!r}")
        return {"lr": _real("SGD lr", lr, low=0.0, high=None),
                "momentum": _real("SGD momentum", momentum, low=0.0, high=1.0),
                "nesterov": nesterov}

    def _hyper(self):
        return {"lr": self.lr, "momentum": self.momentum, "nesterov": self.nesterov}

    def _state_arrays(self):
        return {"velocity": self.velocity}

    def step(self):
        lr, mu = self.lr, self.momentum
        for i, p in enumerate(self.params):
            g = self._grad(p)
            if g is None:
                continue
            v = self.velocity[i]
            if v is None:
                v = self.velocity[i] = backend.xp.zeros_like(p.data)
            K.sgd_momentum_(p.data, v, g, lr, mu, self.nesterov)   # in place, one pass
        self.steps += 1


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015) with bias correction, as torch.optim.Adam:
    m <- b1 m + (1-b1) g;  v <- b2 v + (1-b2) g^2;
    p <- p - lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps).
    lr >= 0, betas in [0, 1), eps > 0 (eps = 0 divides 0 by 0 where v is 0)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        super().__init__(params)
        self._set_hyper(lr=lr, betas=betas, eps=eps)
        self.m = [None] * len(self.params)
        self.v = [None] * len(self.params)

    @staticmethod
    def _check_hyper(lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"Adam betas must be a pair, got {betas!r}")
        return {"lr": _real("Adam lr", lr, low=0.0, high=None),
                "betas": tuple(_real(f"Adam betas[{i}]", b, low=0.0, high=1.0)
                               for i, b in enumerate(betas)),
                "eps": _real("Adam eps", eps, low=0.0, low_open=True, high=None)}

    def _check_buffer(self, name, a):
        if name == "v" and not bool(backend.xp.all(a >= 0)):
            raise ValueError("optimizer state 'v' (Adam's mean square) has negative values")

    def _hyper(self):
        return {"lr": self.lr, "betas": self.betas, "eps": self.eps}

    def _state_arrays(self):
        return {"m": self.m, "v": self.v}

    def step(self):
        b1, b2 = self.betas
        t = self.steps + 1
        c1, c2 = 1 - b1 ** t, 1 - b2 ** t
        xp = backend.xp
        for i, p in enumerate(self.params):
            g = self._grad(p)
            if g is None:
                continue
            if self.m[i] is None:
                self.m[i], self.v[i] = xp.zeros_like(p.data), xp.zeros_like(p.data)
            m, v = self.m[i], self.v[i]
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * (g * g)
            p.data -= (self.lr / c1) * m / (xp.sqrt(v / c2) + self.eps)
        self.steps = t


class RMSprop(Optimizer):
    """RMSprop (Tieleman & Hinton, 2012), as torch.optim.RMSprop without momentum
    or centering (the optimizer of WGAN, Arjovsky et al. 2017, Algorithm 1):
    v <- alpha v + (1-alpha) g^2;  p <- p - lr * g / (sqrt(v) + eps), v starting at 0.
    lr >= 0, alpha in [0, 1), eps > 0."""

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8):
        super().__init__(params)
        self._set_hyper(lr=lr, alpha=alpha, eps=eps)
        self.v = [None] * len(self.params)

    @staticmethod
    def _check_hyper(lr=1e-2, alpha=0.99, eps=1e-8):
        return {"lr": _real("RMSprop lr", lr, low=0.0, high=None),
                "alpha": _real("RMSprop alpha", alpha, low=0.0, high=1.0),
                "eps": _real("RMSprop eps", eps, low=0.0, low_open=True, high=None)}

    def _check_buffer(self, name, a):
        if not bool(backend.xp.all(a >= 0)):
            raise ValueError("optimizer state 'v' (RMSprop's mean square) has negative values")

    def _hyper(self):
        return {"lr": self.lr, "alpha": self.alpha, "eps": self.eps}

    def _state_arrays(self):
        return {"v": self.v}

    def step(self):
        a = self.alpha
        xp = backend.xp
        for i, p in enumerate(self.params):
            g = self._grad(p)
            if g is None:
                continue
            if self.v[i] is None:
                self.v[i] = xp.zeros_like(p.data)
            v = self.v[i]
            v *= a
            v += (1 - a) * (g * g)
            p.data -= self.lr * g / (xp.sqrt(v) + self.eps)
        self.steps += 1


class ExponentialDecay:
    """lr after ``step`` updates = max(lr0 / factor**step, floor).

    The paper: lr0 0.1, factor 1.000004, floor 1e-6 (pylearn2's
    ExponentialDecay: the first update uses lr0, the next lr0/factor, ...).
    ``tail_from`` (a step): from it on the lr is divided by ``tail_factor``
    per step instead (1.0 holds it where it stands):
    lr0 / factor**tail_from / tail_factor**(step - tail_from)."""

    def __init__(self, lr0=0.1, factor=1.000004, floor=1e-6, tail_from=None, tail_factor=1.0):
        if factor < 1 or tail_factor < 1:
            raise ValueError("ExponentialDecay factors must be >= 1 (they divide the lr)")
        if tail_from is not None and (int(tail_from) != tail_from or tail_from < 0):
            raise ValueError(f"tail_from must be a step count >= 0, got {tail_from!r}")
        self.lr0, self.factor, self.floor = lr0, factor, floor
        self.tail_from, self.tail_factor = tail_from, tail_factor

    def __call__(self, step):
        head, tail = step, 0
        if self.tail_from is not None and step > self.tail_from:
            head, tail = self.tail_from, step - self.tail_from
        log_div = head * math.log(self.factor) + tail * math.log(self.tail_factor)
        return max(self.lr0 * math.exp(-log_div), self.floor)


class LinearRamp:
    """A value rising (or falling) linearly from ``start`` at ``start_epoch``
    to ``end`` at ``end_epoch``, constant outside. The paper's momentum,
    pylearn2's MomentumAdjustor(start=1, saturate=250, final_momentum=.7) with
    init .5, is LinearRamp(0.5, 0.7, 0, 249) evaluated with the number of
    epochs completed so far (see :func:`npgan.train.paper_schedules`)."""

    def __init__(self, start=0.5, end=0.7, start_epoch=1, end_epoch=250):
        if end_epoch < start_epoch:
            raise ValueError("LinearRamp needs end_epoch >= start_epoch")
        self.start, self.end = start, end
        self.start_epoch, self.end_epoch = start_epoch, end_epoch

    def __call__(self, epoch):
        span = self.end_epoch - self.start_epoch
        if span == 0:
            return self.end if epoch >= self.start_epoch else self.start
        a = min(max((epoch - self.start_epoch) / span, 0.0), 1.0)
        return self.start * (1 - a) + a * self.end
