# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 1. An autograd engine from scratch, then `npgan.Tensor` and `gradcheck`
#
# Training a GAN is gradient descent (and ascent) on two networks. Everything
# rests on one piece of machinery: **reverse-mode automatic differentiation**.
# In this notebook we build a tiny engine ourselves (about 60 lines), then
# recognise the very same design in `npgan/tensor.py`, and finally learn to
# *distrust* any gradient until `npgan.gradcheck` has compared it with finite
# differences.
#
# Run it as a script (`python docs/notebooks/01_autograd.py`) or open it as a
# notebook (`jupytext --to notebook docs/notebooks/01_autograd.py`).

# %%
import os
import sys

import numpy as np

# run from a checkout: the repository root (two levels above docs/notebooks/) on the path
try:
    HERE = os.path.dirname(os.path.abspath(__file__))
except NameError:                       # in Jupyter: the notebook's folder
    HERE = os.getcwd()
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
if os.path.isdir(os.path.join(ROOT, "npgan")):
    sys.path.insert(0, ROOT)
import npgan  # noqa: E402

# %% [markdown]
# ## The idea in one paragraph
#
# A computation is a graph: leaves (inputs, weights) at the bottom, one node per
# operation, the loss at the top. The chain rule says that the derivative of
# the loss L with respect to a node's input is the derivative with respect to its
# output, `g = dL/d(out)`, times the local derivative `d(out)/d(in)`. So each
# operation needs exactly two things, written **side by side**:
#
# * *forward*: compute `out` from the inputs;
# * *backward*: given `g = dL/d(out)`, return `dL/d(in)` for each input.
#
# `backward()` on the loss then visits the nodes from the top down, **each node
# only after every node that uses it** (a reverse topological order), so that
# its gradient is complete before it is passed on. A node used twice receives
# two contributions, which must be **added** (the multivariate chain rule).

# %% [markdown]
# ## A tiny engine: `Value`
#
# Each `Value` holds an array `data`, its gradient `grad`, the nodes it was made
# from (`parents`) and a closure `_backward(g)` that returns one gradient per
# parent. Every op is one method: the forward line, then its backward closure.

# %%
class Value:
    def __init__(self, data, parents=(), backward=None, op=""):
        self.data = np.asarray(data, dtype=np.float64)
        self.grad = None
        self.parents, self._backward, self.op = parents, backward, op

    def __repr__(self):
        return f"Value({self.data!r}, op={self.op!r})"

    @staticmethod
    def lift(x):
        return x if isinstance(x, Value) else Value(x)

    # --- ops: forward, and backward right next to it --------------------------
    def __add__(self, other):
        a, b = self, Value.lift(other)
        return Value(a.data + b.data, (a, b), lambda g: (g, g), "+")

    def __mul__(self, other):
        a, b = self, Value.lift(other)
        return Value(a.data * b.data, (a, b), lambda g: (g * b.data, g * a.data), "*")

    __radd__, __rmul__ = __add__, __mul__

    def tanh(self):
        y = np.tanh(self.data)
        return Value(y, (self,), lambda g: (g * (1 - y * y),), "tanh")

    def exp(self):
        y = np.exp(self.data)
        return Value(y, (self,), lambda g: (g * y,), "exp")

    def sum(self):
        x = self
        return Value(x.data.sum(), (x,), lambda g: (g * np.ones_like(x.data),), "sum")

    # --- reverse mode -----------------------------------------------------------
    def backward(self):
        order, seen = [], set()

        def visit(node):                 # post-order DFS: parents before children
            if id(node) not in seen:
                seen.add(id(node))
                for p in node.parents:
                    visit(p)
                order.append(node)
        visit(self)

        self.grad = np.ones_like(self.data)           # dL/dL = 1
        for node in reversed(order):                  # children before parents
            if node._backward is None:                # a leaf: nothing to pass on
                continue
            for p, g in zip(node.parents, node._backward(node.grad)):
                p.grad = g if p.grad is None else p.grad + g    # accumulate!


# %% [markdown]
# Let us differentiate  f(x, y) = Σ tanh(x·y + x) · exp(y)  (x, y arrays of
# the same shape). By hand, with u = x·y + x and t = tanh(u):
#
# * ∂f/∂x = (1 − t²)(y + 1) exp(y)
# * ∂f/∂y = (1 − t²) x exp(y) + t exp(y)
#
# Note that `x` is used twice and `y` three times: the accumulation in
# `backward` is doing real work here.

# %%
rng = np.random.default_rng(0)
x0, y0 = rng.standard_normal(5), rng.standard_normal(5)

x, y = Value(x0), Value(y0)
f = ((x * y + x).tanh() * y.exp()).sum()
f.backward()

t = np.tanh(x0 * y0 + x0)
dfdx = (1 - t**2) * (y0 + 1) * np.exp(y0)
dfdy = (1 - t**2) * x0 * np.exp(y0) + t * np.exp(y0)
print("f =", f.data)
print("dfdx engine:", x.grad, "\n     by hand:", dfdx)
assert np.allclose(x.grad, dfdx, rtol=1e-12, atol=1e-12)
assert np.allclose(y.grad, dfdy, rtol=1e-12, atol=1e-12)


# %% [markdown]
# ### Never trust a gradient: finite differences
#
# The derivative is a limit; a *central* difference
# (f(x + ε eⱼ) − f(x − ε eⱼ)) / 2ε approximates it with error O(ε²). In
# float64 with ε = 1e-6 that is ~1e-9 of rounding noise: plenty to catch a wrong
# formula, which is typically off by O(1).

# %%
def f_numpy(x, y):
    return float(np.sum(np.tanh(x * y + x) * np.exp(y)))


def numeric_grad(fun, a, eps=1e-6):
    g = np.zeros_like(a)
    for j in range(a.size):
        e = np.zeros_like(a)
        e.flat[j] = eps
        g.flat[j] = (fun(a + e) - fun(a - e)) / (2 * eps)
    return g


num_x = numeric_grad(lambda a: f_numpy(a, y0), x0)
num_y = numeric_grad(lambda b: f_numpy(x0, b), y0)
print("max |engine - numeric|:", np.abs(x.grad - num_x).max(), np.abs(y.grad - num_y).max())
assert np.allclose(x.grad, num_x, atol=1e-7) and np.allclose(y.grad, num_y, atol=1e-7)

# %% [markdown]
# ### Why accumulate? A node used twice
#
# Replace `p.grad + g` by plain assignment and `x * x` would report dx²/dx = x
# instead of 2x: the second use's contribution would overwrite the first.

# %%
x = Value(3.0)
(x * x).backward()
assert x.grad == 6.0

# %% [markdown]
# ## The same design in `npgan.Tensor`
#
# `npgan/tensor.py` is this engine grown up: every op is a method that computes
# its result and a `backward` closure side by side, and hands both to
# `Tensor.make(data, parents, backward, op)`. What it adds: broadcasting (a
# gradient is summed back to its input's shape), `requires_grad` (no graph
# for constants, and no work for frozen weights), an *iterative* topological
# sort (a deep graph never meets Python's recursion limit), compiled kernels
# for the hot ops, float32 for training, and second derivatives (notebook 2).
#
# The vocabulary is PyTorch's. The same function, the same numbers:

# %%
from npgan import Tensor  # noqa: E402

x = Tensor(x0, requires_grad=True)
y = Tensor(y0, requires_grad=True)
f = ((x * y + x).tanh() * y.exp()).sum()
f.backward()
print(f, "=", f.item())
print("the graph's top:", f._op, "<-", [p._op for p in f._parents])
assert np.isclose(f.item(), f_numpy(x0, y0), rtol=1e-12)
assert np.allclose(x.grad, dfdx, rtol=1e-10) and np.allclose(y.grad, dfdy, rtol=1e-10)

# %% [markdown]
# ## `npgan.gradcheck`
#
# `gradcheck(fn, *inputs)` does what we did by hand above, for any function of
# Tensors: it converts the inputs to float64, runs `backward()`, perturbs every
# element of every input, and compares. A non-scalar output is checked through a
# fixed random projection Σ out·w, so every output element takes part. It
# returns `True` or raises `GradcheckError` with a per-input report.

# %%
assert npgan.gradcheck(lambda a, b: ((a * b + a).tanh() * b.exp()).sum(), x0, y0)

# the layers too: a small MLP's output, w.r.t. its input and its weight matrix
W0, b0 = rng.standard_normal((3, 4)), rng.standard_normal(4)
assert npgan.gradcheck(lambda X, W: (X @ W + b0).sigmoid(), rng.standard_normal((2, 3)), W0)
assert npgan.gradcheck(lambda X: npgan.functional.binary_cross_entropy_with_logits(
    X, np.ones((4, 1))), rng.standard_normal((4, 1)))

# %% [markdown]
# ## Adding your own op — and getting it wrong
#
# Suppose we need x³ as one op. With `Tensor.make` we write its forward and its
# backward, exactly as in `Value`. Here is a typical slip: the derivative of x³
# written as 2x² (a half-remembered power rule). Nothing crashes; training would
# just quietly follow the wrong direction. `gradcheck` catches it:

# %%
def cube_broken(x):
    return Tensor.make(x.data ** 3, (x,), lambda g: (g * 2 * x.data ** 2,), "cube")


def cube(x):
    return Tensor.make(x.data ** 3, (x,), lambda g: (g * 3 * x.data ** 2,), "cube")


x1 = rng.standard_normal((2, 3))
try:
    npgan.gradcheck(lambda a: cube_broken(a).tanh(), x1)
except npgan.GradcheckError as e:
    print("caught, as it should be:\n", e)
else:
    raise AssertionError("gradcheck missed a backward that is off by a factor 2/3")

assert npgan.gradcheck(lambda a: cube(a).tanh(), x1)
assert np.allclose(cube(Tensor(x1)).data, (Tensor(x1) ** 3).data)

# %% [markdown]
# A gradient of the wrong *shape* is caught too (the engine refuses it and
# names the op):

# %%
def sum_rows_broken(x):
    return Tensor.make(x.data.sum(axis=1), (x,), lambda g: (g,), "sum_rows")


try:
    npgan.gradcheck(sum_rows_broken, x1)
except npgan.GradcheckError as e:
    print(e)
    assert "sum_rows" in str(e)
else:
    raise AssertionError("a wrong-shaped gradient went through")

# %% [markdown]
# **Takeaways.** An autograd engine is (i) ops that record forward and backward
# side by side, (ii) a topological order, (iii) accumulation of gradients.
# Every new op gets a `gradcheck` before it is used — in `npgan` every op of
# `tensor.py` and `functional.py` is gradchecked in `tests/`. Next:
# differentiate the gradient itself (notebook 2).
