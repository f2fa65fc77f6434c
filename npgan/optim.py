"""Optimizers (SGD with momentum, Adam) and the paper's schedules.

SGD update rule (pylearn2's, which the paper's code used):

    v <- momentum * v - lr * grad
    p <- p + v

PyTorch's SGD instead keeps v <- momentum * v + grad and steps p <- p - lr * v.
The two give identical parameters while lr is constant; with the paper's
decaying lr they differ slightly (here each past gradient keeps the lr it was
taken with). ``nesterov=True`` uses p <- p + momentum * v - lr * grad.
"""
import math

from . import _kernels as K
from . import backend


class Optimizer:
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

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    def _state_arrays(self):          # name -> list of per-parameter arrays (or None)
        return {}

    def state_dict(self):
        """Hyper-parameters, step count and buffers as host NumPy arrays."""
        state = {"steps": self.steps, "hyper": self._hyper()}
        for name, arrays in self._state_arrays().items():
            state[name] = [None if a is None else backend.to_numpy(a).copy() for a in arrays]
        return state

    def load_state_dict(self, state):
        for name, arrays in self._state_arrays().items():
            saved = state[name]
            if len(saved) != len(self.params):
                raise ValueError(f"optimizer state '{name}' has {len(saved)} entries, "
                                 f"the optimizer has {len(self.params)} parameters")
            for i, (a, p) in enumerate(zip(saved, self.params)):
                if a is not None and tuple(a.shape) != p.shape:
                    raise ValueError(f"optimizer state '{name}'[{i}] has shape {tuple(a.shape)}, "
                                     f"parameter has {p.shape}")
                arrays[i] = None if a is None else backend.asarray(a, dtype=p.dtype).copy()
        self.steps = int(state["steps"])
        for k, v in state["hyper"].items():
            setattr(self, k, v)


class SGD(Optimizer):
    """Stochastic gradient descent with (pylearn2-style) momentum; see the
    module docstring for the exact rule. ``lr`` and ``momentum`` are plain
    attributes that schedules change between steps."""

    def __init__(self, params, lr, momentum=0.0, nesterov=False):
        super().__init__(params)
        if lr < 0 or not 0 <= momentum < 1:
            raise ValueError(f"SGD needs lr >= 0 and 0 <= momentum < 1, got lr={lr}, momentum={momentum}")
        self.lr, self.momentum, self.nesterov = lr, momentum, nesterov
        self.velocity = [None] * len(self.params)

    def _hyper(self):
        return {"lr": self.lr, "momentum": self.momentum, "nesterov": self.nesterov}

    def _state_arrays(self):
        return {"velocity": self.velocity}

    def step(self):
        lr, mu = self.lr, self.momentum
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            v = self.velocity[i]
            if v is None:
                v = self.velocity[i] = backend.xp.zeros_like(p.data)
            K.sgd_momentum_(p.data, v, p.grad, lr, mu, self.nesterov)   # in place, one pass
        self.steps += 1


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015) with bias correction, as torch.optim.Adam:
    m <- b1 m + (1-b1) g;  v <- b2 v + (1-b2) g^2;
    p <- p - lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        super().__init__(params)
        self.lr, self.betas, self.eps = lr, tuple(betas), eps
        self.m = [None] * len(self.params)
        self.v = [None] * len(self.params)

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
            g = p.grad
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


class ExponentialDecay:
    """lr after ``step`` updates = max(lr0 / factor**step, floor).

    The paper: lr0 0.1, factor 1.000004, floor 1e-6 (pylearn2's
    ExponentialDecay: the first update uses lr0, the next lr0/factor, ...)."""

    def __init__(self, lr0=0.1, factor=1.000004, floor=1e-6):
        if factor < 1:
            raise ValueError("ExponentialDecay factor must be >= 1 (it divides the lr)")
        self.lr0, self.factor, self.floor = lr0, factor, floor

    def __call__(self, step):
        return max(self.lr0 * math.exp(-step * math.log(self.factor)), self.floor)


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
