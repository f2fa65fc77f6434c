"""Conditional GAN (paper Section 7, item 1; Mirza & Osindero 2014) on the paper's networks.

A conditional GAN is a GAN over *pairs* (x, y): the real pairs are (image,
one-hot label); the generated pairs are (G(z, y), y) with y drawn from the
label prior. G sees [z, y] (100 + 10 inputs), D sees [x, y] (784 + 10 inputs);
the label may enter the first layers scaled (``label_scale`` s: s y instead of
y; s = 10 gives it about the norm of a digit, ||x|| ~ 9, so that under SGD its
input weights learn at the pixels' pace). Nothing else changes, so :class:`npgan.train.GANTrainer` plays the game
unchanged on packed rows:

    "z" row  = [z (100) | y (10)]      ->  ConditionalGenerator  ->  [G(z, y) (784) | y (10)]
    data row = [x (784) | y (10)]      ->  ConditionalDiscriminator -> logit

The generator passes its label through beside the image, so D judges the
pair and G's gradient flows only into the image part. D's input dropout (keep
.8) applies to the pixels only: the label is never dropped.

    G, D = paper_conditional(seed, train_x)
    trainer = GANTrainer(G, D, pack(train_x, train_y), sample_z=label_z_sampler())
    images = G.images(z, labels)        # (N, 784): the images asked for
"""
import numpy  # host-side: initialisation, label RNG

from . import backend, models
from .tensor import Tensor, concatenate

N_CLASSES = 10
IMAGE_DIM = 784


def one_hot(labels, n_classes=N_CLASSES, dtype="float32"):
    """labels (N,) ints in [0, n_classes) -> host array (N, n_classes) one-hot."""
    labels = numpy.asarray(labels)
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise ValueError(f"labels must be a 1-D integer array, got {labels.dtype} {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"labels must lie in [0, {n_classes}), got [{labels.min()}, {labels.max()}]")
    out = numpy.zeros((len(labels), n_classes), dtype=dtype)
    out[numpy.arange(len(labels)), labels] = 1
    return out


def pack(images, labels, n_classes=N_CLASSES):
    """Real pairs for the trainer: host (N, D + n_classes) rows [x | one-hot(y)]."""
    images = numpy.asarray(images, dtype=numpy.float32)
    return numpy.concatenate([images, one_hot(labels, n_classes)], axis=1)


def label_z_sampler(prior="gaussian", z_dim=models.Z_DIM, n_classes=N_CLASSES, dtype="float32"):
    """sample(n, rng) -> backend (n, z_dim + n_classes) rows [z | one-hot(y)], z from
    ``prior``, y uniform over the classes (MNIST's labels are near uniform): the
    ``sample_z`` a GANTrainer over pairs takes."""
    draw_z = models.z_sampler(prior, z_dim, dtype)

    def sample(n, rng):
        z = backend.to_numpy(draw_z(n, rng))
        y = rng.integers(0, n_classes, n)
        return backend.asarray(numpy.concatenate([z, one_hot(y, n_classes, dtype)], axis=1))
    return sample


def labelled_z(labels, rng, prior="gaussian", z_dim=models.Z_DIM, n_classes=N_CLASSES):
    """backend rows [z | one-hot(labels)] for the labels asked for (z from ``rng``)."""
    z = backend.to_numpy(models.sample_z(len(labels), rng, dim=z_dim, prior=prior))
    return backend.asarray(numpy.concatenate([z, one_hot(labels, n_classes)], axis=1))


class ConditionalGenerator(models.Generator):
    """[z | y] (N, z_dim + n_classes) -> [G(z, y) | y] (N, out + n_classes).

    The paper's G (1200 ReLU, 1200 ReLU, sigmoid) with n_classes more inputs.
    ``z_dim`` is the width of the whole input row (as GANTrainer and
    :func:`npgan.sampling.sample` read it); ``noise_dim`` that of z alone."""

    def __init__(self, noise_dim=models.Z_DIM, n_classes=N_CLASSES, hidden=1200, out=IMAGE_DIM,
                 irange=0.05, output_bias=None, rng=None, dtype="float32"):
        super().__init__(z_dim=noise_dim + n_classes, hidden=hidden, out=out, irange=irange,
                         output_bias=output_bias, rng=rng, dtype=dtype)
        self.noise_dim, self.n_classes = noise_dim, n_classes

    block = None    # the label pass-through needs the whole row; no blocked no-grad path
    label_scale = 1.0   # the one-hot label enters the first layer as label_scale * y

    def _scaled(self, zy):
        if self.label_scale == 1.0:
            return zy
        d = zy.data.copy()
        d[:, self.noise_dim:] *= self.label_scale
        return Tensor(d)

    def forward(self, zy, logits=False):
        zy = zy if isinstance(zy, Tensor) else Tensor(zy)
        x = self._forward(self._scaled(zy), logits)
        return concatenate([x, Tensor(zy.data[:, self.noise_dim:])], axis=1)

    def images(self, zy, logits=False):
        """Only the images (N, out) of rows [z | y] (host or backend array / Tensor)."""
        zy = zy if isinstance(zy, Tensor) else Tensor(backend.asarray(zy))
        return self._forward(self._scaled(zy), logits)


class ConditionalDiscriminator(models.Discriminator):
    """[x | y] (N, inp + n_classes) -> logit (N, 1): the paper's maxout D whose first
    layer also reads the one-hot label; input dropout on x only."""

    def __init__(self, inp=IMAGE_DIM, n_classes=N_CLASSES, units=240, pieces=5, irange=0.005,
                 p_input=0.2, p_hidden=0.5, rng=None, dropout_rng=None, dtype="float32"):
        super().__init__(inp=inp + n_classes, units=units, pieces=pieces, irange=irange,
                         p_input=p_input, p_hidden=p_hidden, rng=rng, dropout_rng=dropout_rng,
                         dtype=dtype)
        self.image_dim, self.n_classes = inp, n_classes

    label_scale = 1.0   # the one-hot label enters the first layer as label_scale * y

    def forward(self, xy):
        xy = xy if isinstance(xy, Tensor) else Tensor(xy)
        y = xy.data[:, self.image_dim:]
        x, y = xy[:, :self.image_dim], Tensor(y * self.label_scale if self.label_scale != 1.0 else y)
        h = concatenate([self.drop0(x), y], axis=1)
        return self.y(self.drop2(self.h1(self.drop1(self.h0(h)))))


def paper_conditional(seed=0, train_images=None, n_classes=N_CLASSES, dtype="float32"):
    """(G, D) of the conditional experiment: the paper's MNIST networks widened by
    the one-hot label at G's and D's input; G's output bias = logit of the
    training pixel means when ``train_images`` is given."""
    rng = numpy.random.default_rng(seed)
    bias = None if train_images is None else models.pixel_logits(train_images)
    g = ConditionalGenerator(n_classes=n_classes, output_bias=bias, rng=rng, dtype=dtype)
    d = ConditionalDiscriminator(n_classes=n_classes, rng=rng, dtype=dtype)
    return g, d


def from_unconditional(G, D, g_state, d_state):
    """Load a trained unconditional (G, D) pair's weights into conditional G and D
    (label rows zero: :func:`npgan.models.widen_state`); returns (G, D)."""
    G.load_state_dict(models.widen_state(g_state, "h0.weight", G.n_classes))
    D.load_state_dict(models.widen_state(d_state, "h0.linear.weight", D.n_classes))
    return G, D


def generate(G, labels, rng=12345, batch=1000, prior="gaussian"):
    """Host images (N, 784) of G for each label asked for (z drawn by ``rng``, a
    Generator or seed)."""
    from .tensor import no_grad
    rng = rng if isinstance(rng, numpy.random.Generator) else numpy.random.default_rng(rng)
    labels = numpy.asarray(labels)
    out = []
    with no_grad():
        for i in range(0, len(labels), batch):
            zy = labelled_z(labels[i:i + batch], rng, prior, G.noise_dim, G.n_classes)
            out.append(backend.to_numpy(G.images(zy).data))
    return numpy.concatenate(out) if out else numpy.zeros((0, G.y.out_features), numpy.float32)
