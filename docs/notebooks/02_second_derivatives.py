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
# # 2. Second derivatives: `create_graph`, Hessian-vector products, the WGAN-GP penalty
#
# Two of the cures for GAN mode collapse (notebook 3) need the derivative of a
# derivative:
#
# * **WGAN-GP** penalises the critic when ‖∇ₓD(x)‖₂ ≠ 1. The penalty contains
#   a gradient with respect to the *input*; training D needs the gradient of
#   the penalty with respect to D's *weights*.
# * The **unrolled GAN** differentiates G's loss through K gradient steps of D.
#
# This notebook shows how `npgan` differentiates twice, and how to check it:
# a closed form where there is one, finite differences everywhere.

# %%
import os
import sys

import numpy as np

try:
    HERE = os.path.dirname(os.path.abspath(__file__))
except NameError:                       # in Jupyter: the notebook's folder
    HERE = os.getcwd()
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
if os.path.isdir(os.path.join(ROOT, "npgan")):
    sys.path.insert(0, ROOT)
import npgan  # noqa: E402
from npgan import Tensor, nn  # noqa: E402

rng = np.random.default_rng(0)

# %% [markdown]
# ## The trick: backward is itself a computation
#
# In notebook 1 each op's backward took an array `g` and returned arrays: the
# gradient came out as plain numbers, with no memory of how it was made. If
# instead the backward closures compute **with Tensor ops**, the gradient is a
# Tensor *with a graph*, and we can call backward on it again. That is all
# `create_graph=True` does (`npgan/tensor.py`: each op's backward runs on
# arrays by default, on Tensors when asked).
#
# `npgan.grad(outputs, inputs, create_graph=False)` returns one gradient per
# input, without touching any `.grad` (as `torch.autograd.grad`).
#
# Start with f(x) = Σ x³: ∇f = 3x², and the gradient of Σ ∇f is 6x; once more, 6.

# %%
x = Tensor(rng.standard_normal(4), requires_grad=True)
f = (x ** 3).sum()
(g,) = npgan.grad(f, [x], create_graph=True)       # 3 x^2, a Tensor with history
(h,) = npgan.grad(g.sum(), [x], create_graph=True)  # 6 x
(k,) = npgan.grad(h.sum(), [x])                     # 6
print("3x^2:", g.data, "\n6x:  ", h.data, "\n6:   ", k.data)
assert np.allclose(g.data, 3 * x.data ** 2) and np.allclose(h.data, 6 * x.data)
assert np.allclose(k.data, 6.0)
assert g.requires_grad and not k.requires_grad     # only create_graph builds a graph

# %% [markdown]
# `Tensor.backward(create_graph=True)` does the same into `.grad`, which is
# then a Tensor with history instead of an array:

# %%
x = Tensor(np.array([0.5, -2.0]), requires_grad=True)
(x ** 3).sum().backward(create_graph=True)
assert isinstance(x.grad, Tensor) and x.grad.requires_grad
gx = x.grad
x.grad = None
gx.sum().backward()
assert np.allclose(x.grad, 6 * x.data)

# %% [markdown]
# ## Hessian-vector products
#
# The Hessian H of f: ℝⁿ → ℝ is n×n: too big to form for a network. But the
# product Hv for one direction v costs only two backward passes, because
# Hv = ∇ₓ ⟨∇ₓf(x), v⟩ (v held constant): differentiate the gradient's
# projection on v (reverse-over-reverse; Pearlmutter, 1994).
#
# **A quadratic** f(x) = ½ xᵀAx + bᵀx with A symmetric has H = A exactly, so
# Hv = Av with no approximation at all.

# %%
n = 5
M = rng.standard_normal((n, n))
A = M + M.T
b = rng.standard_normal((1, n))


def hvp(f, x0, v):
    x = Tensor(x0, requires_grad=True)
    (g,) = npgan.grad(f(x), [x], create_graph=True)
    (hv,) = npgan.grad((g * Tensor(v)).sum(), [x])
    return hv.data


def quadratic(x):                      # x: (1, n)
    return 0.5 * (x @ Tensor(A) @ x.T).sum() + (x * Tensor(b)).sum()


x0, v = rng.standard_normal((1, n)), rng.standard_normal((1, n))
Hv = hvp(quadratic, x0, v)
print("Hv:", Hv.ravel(), "\nAv:", (v @ A).ravel())
assert np.allclose(Hv, v @ A, rtol=1e-12, atol=1e-12)

# %% [markdown]
# **A non-quadratic** f(x) = Σᵢ softplus((xW)ᵢ) + Σ x⁴/4. Its Hessian has a
# closed form too, H = W diag(σ(xW)(1 − σ(xW))) Wᵀ + diag(3x²), and Hv must also
# agree with a **finite difference of the gradient**,
# (∇f(x + εv) − ∇f(x − εv)) / 2ε: the way to check an HVP when no closed form
# exists.

# %%
W = rng.standard_normal((n, 3))


def f_soft(x):
    return (x @ Tensor(W)).softplus().sum() + (x ** 4).sum() * 0.25


def grad_f(x0):
    x = Tensor(x0, requires_grad=True)
    return npgan.grad(f_soft(x), [x])[0].data


Hv = hvp(f_soft, x0, v)
s = 1 / (1 + np.exp(-(x0 @ W)))
H = W @ np.diag((s * (1 - s)).ravel()) @ W.T + np.diag(3 * x0.ravel() ** 2)
eps = 1e-5
Hv_fd = (grad_f(x0 + eps * v) - grad_f(x0 - eps * v)) / (2 * eps)
print("HVP:", Hv.ravel(), "\nclosed form:", (v @ H).ravel(), "\nfinite diff:", Hv_fd.ravel())
assert np.allclose(Hv, v @ H, rtol=1e-10, atol=1e-10)
assert np.allclose(Hv, Hv_fd, rtol=1e-6, atol=1e-7)

# %% [markdown]
# ## `npgan.gradgradcheck`
#
# `gradgradcheck(fn, *inputs)` automates this for any function: it takes the
# first derivative g(x) from `create_graph=True`, differentiates it again, and
# compares every row of the Hessian with central differences of g (or, with
# `mode="random"`, a few random directions). Like `gradcheck`, it returns
# `True` or raises `GradcheckError`. It differences the first derivative rather
# than checking it, so run `gradcheck` too.

# %%
X0 = rng.standard_normal((3, n))
fn = lambda X, Wt: ((X @ Wt).tanh() * (X @ Wt).sigmoid()).sum()   # noqa: E731
assert npgan.gradcheck(fn, X0, W)
assert npgan.gradgradcheck(fn, X0, W)
assert npgan.gradgradcheck(lambda X: npgan.functional.softplus(X * X), X0)

# %% [markdown]
# ### A backward that is right once and wrong twice
#
# For an op of our own, `Tensor.make(..., graph=True)` promises that its
# backward, handed a Tensor `g`, computes with Tensor ops. Here is x³ again,
# first with a subtle mistake: under `create_graph` it wraps 3x² in a fresh
# `Tensor(...)`, a *constant*. The first derivative is still exactly right,
# so `gradcheck` passes, but the graph forgets that 3x² depends on x, and the
# second derivative comes out as 0 instead of 6x. Only `gradgradcheck` sees it.

# %%
def cube_broken(x):
    def backward(g):
        if isinstance(g, Tensor):                          # create_graph
            return (g * Tensor(3 * x.data ** 2),)          # BUG: cut from the graph
        return (g * 3 * x.data ** 2,)
    return Tensor.make(x.data ** 3, (x,), backward, "cube", graph=True)


def cube(x):
    def backward(g):
        if isinstance(g, Tensor):
            return (g * 3 * x ** 2,)                       # Tensor ops on x: differentiable
        return (g * 3 * x.data ** 2,)
    return Tensor.make(x.data ** 3, (x,), backward, "cube", graph=True)


x1 = rng.standard_normal((2, 3))
assert npgan.gradcheck(lambda a: cube_broken(a).tanh(), x1)     # first order: fine
try:
    npgan.gradgradcheck(lambda a: cube_broken(a).tanh(), x1)
except npgan.GradcheckError as e:
    print("caught:\n", str(e)[:400])
else:
    raise AssertionError("gradgradcheck missed a second derivative that ignores x")
assert npgan.gradgradcheck(lambda a: cube(a).tanh(), x1)

# %% [markdown]
# An op made without `graph=True` cannot be differentiated twice at all, and
# says so by name instead of returning a silently wrong number:

# %%
def cube_first_order_only(x):
    return Tensor.make(x.data ** 3, (x,), lambda g: (g * 3 * x.data ** 2,), "cube_v1")


x = Tensor(x1, requires_grad=True)
try:
    npgan.grad(cube_first_order_only(x).sum(), [x], create_graph=True)
except RuntimeError as e:
    print(e)
    assert "cube_v1" in str(e)
else:
    raise AssertionError("create_graph went through an op without a differentiable backward")

# %% [markdown]
# ## The WGAN-GP gradient penalty
#
# Gulrajani et al. (2017) keep the critic D roughly 1-Lipschitz by adding
#
#   λ · E_x̂ (‖∇ₓ̂ D(x̂)‖₂ − 1)²,   x̂ = εx + (1 − ε)G(z),  ε ~ U[0, 1],
#
# to its loss. Computing it needs `create_graph=True`: the inner gradient
# ∇ₓ̂D must stay a Tensor connected to D's weights θ, because the optimizer
# needs ∇_θ of the penalty, a mixed second derivative ∂²D/∂θ∂x.
#
# **Closed form first.** For a linear critic D(x) = x·w + c, ∇ₓD = w at every
# x, so the penalty is (‖w‖ − 1)², with ∇_w = 2(‖w‖ − 1) w/‖w‖ and ∇_c = 0.

# %%
def penalty(D, x_hat, eps=1e-12):
    x_hat = Tensor(x_hat, requires_grad=True)
    (g,) = npgan.grad(D(x_hat).sum(), [x_hat], create_graph=True)   # rows: grad of D at each x_hat
    norm = ((g * g).sum(axis=1) + eps) ** 0.5
    return ((norm - 1.0) ** 2).mean()


lin = nn.Linear(2, 1, init="normal", std=1.0, rng=rng, dtype="float64")
x_hat = rng.standard_normal((8, 2))
gp = penalty(lin, x_hat)
gw, gc = npgan.grad(gp, [lin.weight, lin.bias], allow_unused=True)
w = lin.weight.data.ravel()
r = np.linalg.norm(w)
print(f"penalty {gp.item():.6f} vs (|w| - 1)^2 = {(r - 1) ** 2:.6f}")
assert np.isclose(gp.item(), (r - 1) ** 2, rtol=1e-10)
assert np.allclose(gw.data.ravel(), 2 * (r - 1) * w / r, rtol=1e-8)
assert np.allclose(gc.data, 0.0)

# %% [markdown]
# **A real critic**: 2 → 16 → tanh → 16 → tanh → 1 in float64. The penalty's
# gradient with respect to every weight (zero for the last bias, which moves D
# without changing its slope: `allow_unused=True` asks for those zeros) is checked against central finite
# differences: perturb one weight, recompute the penalty (its own inner
# gradient included), difference. `gradcheck` does exactly that for a function
# of the weights (`Module.functional_call` runs D with the weights it is given).
# The package's `npgan.variants.gradient_penalty`, which the WGAN-GP trainer
# uses, must give the same number.

# %%
D = nn.Sequential(nn.Linear(2, 16, init="xavier", rng=rng), nn.Tanh(),
                  nn.Linear(16, 16, init="xavier", rng=rng), nn.Tanh(),
                  nn.Linear(16, 1, init="xavier", rng=rng)).to("float64")
names = [name for name, _ in D.named_parameters()]
gp = penalty(D, x_hat)
# the last bias shifts D but not its slope: the penalty does not depend on it
grads = npgan.grad(gp, D.parameters(), allow_unused=True)
assert np.all(grads[-1].data == 0)

# by hand, for the first layer's weights: central differences
W1 = D.parameters()[0]
fd = np.zeros_like(W1.data)
for j in range(W1.size):
    old = W1.data.flat[j]
    W1.data.flat[j] = old + 1e-6
    up = penalty(D, x_hat).item()
    W1.data.flat[j] = old - 1e-6
    down = penalty(D, x_hat).item()
    W1.data.flat[j] = old
    fd.flat[j] = (up - down) / 2e-6
print("max |autograd - finite diff| on layer 1:", np.abs(grads[0].data - fd).max())
assert np.allclose(grads[0].data, fd, rtol=1e-5, atol=1e-8)

# every parameter at once
def penalty_of_weights(*ps):
    return penalty(lambda x: D.functional_call(dict(zip(names, ps)), x), x_hat)


assert npgan.gradcheck(penalty_of_weights, *[p.data for p in D.parameters()])

from npgan.variants import gradient_penalty  # noqa: E402
assert np.isclose(gradient_penalty(D, x_hat).item(), gp.item(), rtol=1e-12)

# %% [markdown]
# **Does descending it do what it says?** A few hundred plain gradient steps
# on the penalty alone should drive ‖∇ₓD‖ to 1 at the penalised points.

# %%
lr, steps = 0.05, (150 if os.environ.get("NPGAN_NOTEBOOK_FAST") else 500)
start = gp.item()
for _ in range(steps):
    gp = penalty(D, x_hat)
    for p, g in zip(D.parameters(), npgan.grad(gp, D.parameters(), allow_unused=True)):
        p.data -= lr * g.data
x = Tensor(x_hat, requires_grad=True)
norms = np.linalg.norm(npgan.grad(D(x).sum(), [x])[0].data, axis=1)
print(f"penalty {start:.4f} -> {gp.item():.2e}; gradient norms now {np.round(norms, 3)}")
assert gp.item() < 1e-2 * start and np.allclose(norms, 1.0, atol=0.1)

# %% [markdown]
# **Takeaways.** `create_graph=True` makes the gradient an ordinary Tensor with
# a graph, so anything built from it (an HVP, a gradient penalty, an unrolled
# optimizer step) can be differentiated again. Check second derivatives the
# same way as first ones: a closed form when you have one, finite differences
# of the first derivative always (`gradgradcheck`). Notebook 3 puts the
# penalty to work on the ring of Gaussians.
