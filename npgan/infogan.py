"""InfoGAN (Chen et al., 2016) on the paper's MNIST networks.

G's input is widened from z (100) to [z, c_cat, c_cont] (100 + 10 + 2): a
10-way categorical code c_cat (one-hot, uniform) and 2 continuous codes c_cont
~ U(-1, 1). D is the paper's maxout D with an auxiliary head Q: one linear
layer on D's last hidden layer (240 maxout units, before D's last dropout)
that outputs the logits of q(c_cat | x) and the mean (and, with
``learn_std``, the log std) of a Gaussian q(c_cont | x). The mutual
information I(c; G(z, c)) has the variational lower bound

    L_I = H(c) - E[-log q(c | G(z, c))]  <=  I(c; G(z, c)),

and both players add lambda x E[-log q(c | G(z, c))] to their losses (D's
side trains Q and D's body, G's side trains G), lambda = 1:

    categorical: softmax cross-entropy      (F.cross_entropy)
    continuous : Gaussian NLL, summed over the code's dimensions (F.gaussian_nll)
                 0.5 ((c - mu) / s)^2 + log s + 0.5 log 2 pi  (s = 1 fixed, or learned)

The game itself is the paper's (D's loss 0.5 (BCE real + BCE fake), the
non-saturating G loss, one minibatch for both players); the optimizers are
InfoGAN's (Adam, D 2e-4, G 1e-3, beta1 0.5).

The Gaussian NLL is :func:`npgan.functional.gaussian_nll`; the code is scored
against labels by :func:`npgan.metrics.cluster_agreement` (Hungarian matching).
"""
import math

import numpy  # host side: the codes' RNG, the assignment, the evaluation tables

from . import backend, cluster, models, nn, optim
from . import functional as F
from .semisupervised import discriminator_features
from .tensor import Tensor, no_grad
from .train import frozen

N_CAT = 10          #: values of the categorical code
N_CONT = 2          #: continuous codes, each U(-1, 1)


# -- the codes -------------------------------------------------------------------------
def sample_codes(n, rng, n_cat=N_CAT, n_cont=N_CONT):
    """(cat (n,) int64 uniform on {0..n_cat-1}, cont (n, n_cont) float32 U(-1, 1)), host arrays."""
    cat = rng.integers(0, n_cat, n)
    cont = rng.uniform(-1.0, 1.0, (n, n_cont)).astype(numpy.float32)
    return cat, cont


def generator_input(z, cat, cont, n_cat=N_CAT, code_scale=1.0):
    """[z, s one_hot(cat), s cont] as one backend array (n, z_dim + n_cat + n_cont),
    s = ``code_scale`` (a larger s makes G's code weights learn faster under SGD:
    a G fine-tuned from an unconditional one starts with them zero)."""
    z = backend.to_numpy(z.data if isinstance(z, Tensor) else z)
    cat = numpy.asarray(cat)
    one_hot = numpy.zeros((len(cat), n_cat), dtype=z.dtype)
    one_hot[numpy.arange(len(cat)), cat] = 1
    codes = numpy.concatenate([one_hot, numpy.asarray(cont, z.dtype)], axis=1)
    if code_scale != 1.0:
        codes *= z.dtype.type(code_scale)
    return backend.asarray(numpy.concatenate([z, codes], axis=1))


# -- the losses ----------------------------------------------------------------------------
def info_loss(q_out, cat, cont, n_cat=N_CAT, n_cont=N_CONT, learn_std=False):
    """E[-log q(c | x)] over a batch: (total, categorical part, continuous part).

    q_out: Q's output (N, n_cat + n_cont (+ n_cont with learn_std)): the
    categorical logits, the continuous means, then their log stds."""
    logits = q_out[:, :n_cat]
    mean = q_out[:, n_cat:n_cat + n_cont]
    log_std = q_out[:, n_cat + n_cont:n_cat + 2 * n_cont].clip(-5.0, 3.0) if learn_std else None
    l_cat = F.cross_entropy(logits, backend.asarray(numpy.asarray(cat, dtype=numpy.int64)))
    l_cont = F.gaussian_nll(mean, cont, log_std)
    return l_cat + l_cont, l_cat, l_cont


def code_entropy(n_cat=N_CAT, n_cont=N_CONT):
    """H(c) in nats: log n_cat + n_cont log 2 (differential entropy of U(-1, 1) is log 2)."""
    return math.log(n_cat) + n_cont * math.log(2.0)


# -- the networks ---------------------------------------------------------------------------
class InfoDiscriminator(models.Discriminator):
    """The paper's D (same layers, same names: a plain D's state_dict loads into
    its body) plus Q, a linear head on the last hidden layer.

    forward(x) -> (D's logit (N, 1), Q's output (N, q_dim))."""

    def __init__(self, n_cat=N_CAT, n_cont=N_CONT, learn_std=False, rng=None, q_irange=0.05,
                 dtype="float32", **kw):
        rng = rng if rng is not None else numpy.random.default_rng()
        super().__init__(rng=rng, dtype=dtype, **kw)
        self.n_cat, self.n_cont, self.learn_std = n_cat, n_cont, learn_std
        units = self.h1.units
        self.q = nn.Linear(units, n_cat + n_cont * (2 if learn_std else 1), irange=q_irange,
                           rng=rng, dtype=dtype)

    def hidden(self, x):
        """The last hidden layer (N, 240) (dropout active in train mode only)."""
        x = x if isinstance(x, Tensor) else Tensor(x)
        return self.h1(self.drop1(self.h0(self.drop0(x))))

    def forward(self, x):
        h = self.hidden(x)
        return self.y(self.drop2(h)), self.q(h)

    def q_clean(self, x):
        """Q's output from a pass without dropout (the layers' own weights, any mode)."""
        x = x if isinstance(x, Tensor) else Tensor(x)
        return self.q(self.h1(self.h0(x)))


def from_unconditional(G, D, g_state, d_state, code_init="zero", code_scale=1.0, rng=None,
                       means=None, spread=0.3):
    """Start InfoGAN's (G, D) from a trained unconditional pair (the paper's G and D
    state_dicts); D's body is the trained D, Q keeps its fresh initialisation.
    G's code rows (first layer), by ``code_init``:

    "zero"   : zero, so G computes the trained G's images whatever the code;
    "latent" : each value c of the categorical code shifts the latent: G(z, c) =
               G_trained((z + mu_c) / sqrt 2) with mu_c ~ N(0, I) drawn by ``rng``
               (the z rows are scaled by 1 / sqrt 2 and row c holds mu_c W_z / sqrt 2,
               divided by ``code_scale``, the scale the codes enter with), so each
               code value starts on its own region of the trained G's latent space,
               and z + mu_c ~ N(0, 2 I) is brought back to the prior's scale; the
               continuous codes' rows are zero.
    "cluster": G(z, c) = G_trained(spread z + mu_c) with ``means`` mu_c (n_cat,
               z_dim), e.g. :func:`cluster_latent_means`: each value starts on one
               cluster of the trained G's samples, z shrunk by ``spread`` around it.

    Returns (G, D). No labels are used: mu_c are random or found by k-means."""
    n_code = D.n_cat + D.n_cont
    state = models.widen_state(g_state, "h0.weight", n_code)
    if code_init == "latent":
        rng = rng if isinstance(rng, numpy.random.Generator) else numpy.random.default_rng(rng)
        w = state["h0.weight"]
        z_dim = w.shape[0] - n_code
        w_z = w[:z_dim].astype(numpy.float64)
        mu = rng.standard_normal((D.n_cat, z_dim))
        w[:z_dim] = (w_z / math.sqrt(2)).astype(w.dtype)
        w[z_dim:z_dim + D.n_cat] = (mu @ w_z / (math.sqrt(2) * code_scale)).astype(w.dtype)
    elif code_init == "cluster":
        w = state["h0.weight"]
        z_dim = w.shape[0] - n_code
        mu = numpy.asarray(means, dtype=numpy.float64) if means is not None else None
        if mu is None or mu.shape != (D.n_cat, z_dim) or not numpy.isfinite(mu).all():
            raise ValueError(f"code_init='cluster' needs finite means of shape {(D.n_cat, z_dim)}, got "
                             f"{None if mu is None else mu.shape}")
        if not spread > 0:
            raise ValueError(f"spread must be > 0, got {spread!r}")
        w_z = w[:z_dim].astype(numpy.float64)
        w[:z_dim] = (spread * w_z).astype(w.dtype)
        w[z_dim:z_dim + D.n_cat] = (mu @ w_z / code_scale).astype(w.dtype)
    elif code_init != "zero":
        raise ValueError(f"code_init must be 'zero', 'latent' or 'cluster', got {code_init!r}")
    G.load_state_dict(state)
    D.load_state_dict({**D.state_dict(), **{k: v for k, v in d_state.items() if not k.startswith("q.")}})
    return G, D


def generator_features(G, D, n, rng, batch=1000):
    """n latents z ~ N(0, I) drawn from ``rng`` -> (z (n, z_dim) float32, G(z) host
    (n, 784), D's first hidden layer of G(z) with each unit standardised (n, units)
    float64). G, D: the paper's models (eval mode is used; G's mode is given back)."""
    z_dim = G.h0.weight.shape[0]
    z = rng.standard_normal((n, z_dim)).astype(numpy.float32)
    was = G.training
    G.eval()
    try:
        with no_grad():
            x = numpy.concatenate([G(Tensor(backend.asarray(z[i:i + batch]))).numpy()
                                   for i in range(0, n, batch)])
    finally:
        G.train(was)
    f = discriminator_features(D, x, layers=("h0",)).astype(numpy.float64)
    return z, x, (f - f.mean(0)) / (f.std(0) + 1e-8)


def cluster_latent_means(G, D, n_cat=N_CAT, n=10000, rng=None, restarts=3, batch=1000):
    """Where the trained unconditional pair puts n_cat kinds of sample, without
    labels: :func:`generator_features` of n latents, k-means on them
    (``restarts``, the lowest inertia kept, drawn from the same ``rng`` after
    z); returns each cluster's mean latent, (n_cat, z_dim) float64, and the
    cluster sizes (n_cat,)."""
    rng = rng if isinstance(rng, numpy.random.Generator) else numpy.random.default_rng(rng)
    z, _, f = generator_features(G, D, n, rng, batch)
    _, labels, _ = cluster.kmeans(f, n_cat, rng=rng, restarts=restarts)
    sizes = numpy.bincount(labels, minlength=n_cat)
    if (sizes == 0).any():
        raise ValueError("cluster_latent_means: a cluster is empty; use more samples")
    means = numpy.stack([z[labels == c].astype(numpy.float64).mean(0) for c in range(n_cat)])
    return means, sizes


def build(seed=0, train_images=None, learn_std=False, n_cat=N_CAT, n_cont=N_CONT,
          dtype="float32", x_dim=784, z_dim=models.Z_DIM, g_hidden=1200, d_units=240, d_pieces=5):
    """(G, D): the paper's G with input z_dim + n_cat + n_cont, InfoDiscriminator
    (the sizes are the paper's unless given: the tests use small ones)."""
    rng = numpy.random.default_rng(seed)
    bias = None if train_images is None else models.pixel_logits(train_images)
    G = models.Generator(z_dim=z_dim + n_cat + n_cont, hidden=g_hidden, out=x_dim,
                         output_bias=bias, rng=rng, dtype=dtype)
    D = InfoDiscriminator(n_cat, n_cont, learn_std, rng=rng, dtype=dtype, inp=x_dim,
                          units=d_units, pieces=d_pieces)
    return G, D


class InfoGANTrainer:
    """One simultaneous update of D (+Q) and G per minibatch, as the paper's code:

        D, Q:  minimise 0.5 [BCE(D(x), 1) + BCE(D(G(z, c)), 0)] + lam E[-log q(c | G(z, c))]
        G   :  minimise      BCE(D(G(z, c)), 1)                  + lam E[-log q(c | G(z, c))]

    data: host array (N, 784) in [0, 1]. seed: the batches', codes' and z's RNG.
    optimizer: "adam" (InfoGAN's: lr_d 2e-4, lr_g 1e-3, betas) or "sgd" (the
    paper's: lr 0.1 for both, ``momentum``).
    q_dropout: Q reads D's last hidden layer from the same (dropout) pass as D's
    logit (default); False: from a second pass of fake through D's body without
    dropout (D's logit keeps its dropout), about 25 % more work per step.
    code_scale: the codes enter G multiplied by it (:func:`generator_input`).
    lam_cont: the continuous codes' weight when it should differ from ``lam``
    (InfoGAN weights them less); None: ``lam`` for both parts."""

    def __init__(self, G, D, data, batch_size=100, lam=1.0, lr_d=2e-4, lr_g=1e-3,
                 betas=(0.5, 0.999), d_scale=0.5, seed=0, q_dropout=True, optimizer="adam",
                 momentum=0.5, code_scale=1.0, lam_cont=None):
        self.G, self.D, self.data = G, D, numpy.asarray(data)
        self.code_scale = float(code_scale)
        self.batch_size, self.lam, self.d_scale = batch_size, float(lam), float(d_scale)
        self.lam_cont = self.lam if lam_cont is None else float(lam_cont)
        for name, v in (("lam", self.lam), ("lam_cont", self.lam_cont)):
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        self.q_dropout = q_dropout   # False: Q reads a second, dropout-free pass of D's body
        self.n_cat, self.n_cont, self.learn_std = D.n_cat, D.n_cont, D.learn_std
        self.z_dim = G.z_dim - self.n_cat - self.n_cont
        if optimizer == "adam":
            self.opt_d = optim.Adam(D.parameters(), lr=lr_d, betas=betas)
            self.opt_g = optim.Adam(G.parameters(), lr=lr_g, betas=betas)
        elif optimizer == "sgd":
            self.opt_d = optim.SGD(D.parameters(), lr=lr_d, momentum=momentum)
            self.opt_g = optim.SGD(G.parameters(), lr=lr_g, momentum=momentum)
        else:
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
        self.rng = numpy.random.default_rng(seed)
        self.step_count, self.epoch, self.history = 0, 0, []

    def inputs(self, n, rng):
        """(G's input, cat, cont) for n fresh draws of z ~ N(0, I) and c."""
        z = rng.standard_normal((n, self.z_dim), dtype=numpy.float32)
        cat, cont = sample_codes(n, rng, self.n_cat, self.n_cont)
        return generator_input(z, cat, cont, self.n_cat, self.code_scale), cat, cont

    def step(self, x):
        """One update from the real batch x (m, 784) -> dict of batch statistics."""
        m = len(x)
        zc, cat, cont = self.inputs(m, self.rng)
        fake = self.G(zc)
        l_real, _ = self.D(Tensor(backend.asarray(x)))
        l_fake, q_fake = self.D(fake)
        if not self.q_dropout:
            q_fake = self.D.q_clean(fake)
        mi, mi_cat, mi_cont = info_loss(q_fake, cat, cont, self.n_cat, self.n_cont, self.learn_std)
        if self.lam_cont == self.lam:           # one weight: the sum as before, bit for bit
            info = mi * self.lam
        else:
            info = mi_cat * self.lam + mi_cont * self.lam_cont
        d_gan = (F.binary_cross_entropy_with_logits(l_real, 1.0)
                 + F.binary_cross_entropy_with_logits(l_fake, 0.0)) * self.d_scale
        g_gan = F.binary_cross_entropy_with_logits(l_fake, 1.0)
        self.opt_d.zero_grad()
        self.opt_g.zero_grad()
        with frozen(self.G.parameters()):
            (d_gan + info).backward()
        with frozen(self.D.parameters()):
            (g_gan + info).backward()
        self.opt_d.step()
        self.opt_g.step()
        self.step_count += 1
        xp = backend.xp
        stats = {"d_loss": float(d_gan.item()), "g_loss": float(g_gan.item()),
                 "mi_cat": float(mi_cat.item()), "mi_cont": float(mi_cont.item()),
                 "d_real": float(xp.mean(1 / (1 + xp.exp(-l_real.data)))),
                 "d_fake": float(xp.mean(1 / (1 + xp.exp(-l_fake.data))))}
        for k in ("mi_cat", "mi_cont", "d_loss", "g_loss"):
            if not math.isfinite(stats[k]):
                raise FloatingPointError(f"step {self.step_count}: {k} = {stats[k]}")
        return stats

    def train_epoch(self, on_step=None, max_steps=None):
        """One pass over a fresh permutation (or its first ``max_steps`` batches)
        -> the epoch's mean statistics (also appended to ``history``)."""
        order = self.rng.permutation(len(self.data))
        n = len(self.data) // self.batch_size
        n = n if max_steps is None else min(n, max_steps)
        sums = {}
        for i in range(n):
            stats = self.step(self.data[order[i * self.batch_size:(i + 1) * self.batch_size]])
            for k, v in stats.items():
                sums[k] = sums.get(k, 0.0) + v
            if on_step is not None:
                on_step(self, stats)
        self.epoch += 1
        rec = {"epoch": self.epoch, "step": self.step_count, **{k: v / n for k, v in sums.items()}}
        rec["mi_lower_bound"] = code_entropy(self.n_cat, self.n_cont) - rec["mi_cat"] - rec["mi_cont"]
        self.history.append(rec)
        return rec

    def generate(self, cat, cont, rng, z=None):
        """Host images (n, 784) from G at the given codes (z drawn by ``rng`` unless given)."""
        cat = numpy.asarray(cat)
        if z is None:
            z = rng.standard_normal((len(cat), self.z_dim), dtype=numpy.float32)
        was = self.G.training
        self.G.eval()
        try:
            with no_grad():
                out = self.G(generator_input(z, cat, cont, self.n_cat, self.code_scale)).numpy()
        finally:
            self.G.train(was)
        return out

    def predict_codes(self, images, batch=1000):
        """Q's argmax of the categorical code and mean of the continuous ones (eval mode)."""
        was = self.D.training
        self.D.eval()
        cats, conts = [], []
        try:
            with no_grad():
                for i in range(0, len(images), batch):
                    _, q = self.D(Tensor(backend.asarray(images[i:i + batch])))
                    q = q.numpy()
                    cats.append(q[:, :self.n_cat].argmax(axis=1))
                    conts.append(q[:, self.n_cat:self.n_cat + self.n_cont])
        finally:
            self.D.train(was)
        return numpy.concatenate(cats), numpy.concatenate(conts)
