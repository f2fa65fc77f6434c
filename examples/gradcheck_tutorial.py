"""Tutorial: add a new op to npgan and check its gradient.

    python examples/gradcheck_tutorial.py

Every op in npgan is one call to ``npgan.Tensor.make(result, parents,
backward)``: the forward result, the inputs it came from, and a closure that
maps the gradient of the result (``g``) to one gradient per input. Here we
write swish(x) = x * sigmoid(x) that way, verify it with ``npgan.gradcheck``
(central finite differences in float64), and then show that a plausible but
wrong backward -- one that forgets the product rule -- is caught.
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # run from a checkout
import npgan  # noqa: E402
from npgan import backend  # noqa: E402


def _sigmoid(a):
    xp = backend.xp
    return 0.5 * (1.0 + xp.tanh(0.5 * a))      # = 1 / (1 + e^-a), no overflow


def swish(x):
    """swish(x) = x * sigmoid(x); d/dx = s + x * s * (1 - s), s = sigmoid(x)."""
    s = _sigmoid(x.data)
    y = x.data * s                                   # forward ...

    def backward(g):                                 # ... and backward, side by side
        return (g * (s + x.data * s * (1.0 - s)),)   # one gradient per parent
    return npgan.Tensor.make(y, (x,), backward, "swish")


def swish_wrong(x):
    """Same forward, wrong backward: treats sigmoid(x) as a constant, so
    d/dx = s (the x * s * (1 - s) term of the product rule is missing)."""
    s = _sigmoid(x.data)

    def backward(g):
        return (g * s,)                              # BUG: forgot the product rule
    return npgan.Tensor.make(x.data * s, (x,), backward, "swish_wrong")


def wrong_op():
    """The op with the deliberately wrong backward (for tests and exercises)."""
    return swish_wrong


def right_op():
    return swish


def main():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 5)) * 3          # float64, includes large |x|

    # 1. the op behaves like an ordinary npgan op inside a bigger graph
    t = npgan.Tensor(x, requires_grad=True)
    loss = (swish(t) * swish(t)).mean()
    loss.backward()
    print(f"swish: forward {swish(t).shape}, loss {loss.item():.6f}, grad shape {t.grad.shape}")

    # 2. gradcheck: backward() against (f(x+eps) - f(x-eps)) / 2eps, every element
    print("gradcheck(swish):", npgan.gradcheck(swish, x))
    # ... also composed with other ops and broadcasting
    w = rng.standard_normal(5)
    print("gradcheck(swish(a * w).sigmoid()):",
          npgan.gradcheck(lambda a, b: swish(a * b).sigmoid(), x, w))

    # 3. the wrong backward is caught, and the message says where and by how much
    try:
        npgan.gradcheck(swish_wrong, x)
    except npgan.GradcheckError as e:
        print("gradcheck(swish_wrong) raised GradcheckError, as it should:")
        print(e)
    else:
        raise SystemExit("the wrong backward was NOT caught")


if __name__ == "__main__":
    main()
