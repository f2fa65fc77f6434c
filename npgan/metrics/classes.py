"""What the reference classifier thinks of the samples: the Inception-score
style classifier score and the class histogram (mode coverage)."""
import numpy

from .checks import MetricsError

#: a class counts as covered when it gets at least this fraction of the samples
MIN_CLASS_FRACTION = 0.01


def _check_log_probs(log_probs):
    lp = numpy.asarray(log_probs, dtype=numpy.float64)
    if lp.ndim != 2 or lp.shape[0] < 1 or lp.shape[1] < 2:
        raise MetricsError(f"log_probs: shape {lp.shape}, expected (N >= 1, classes >= 2)")
    if numpy.isnan(lp).any() or (lp == numpy.inf).any():
        raise MetricsError("log_probs: holds NaN or +inf")
    total = numpy.logaddexp.reduce(lp, axis=1)
    if numpy.abs(total).max() > 1e-6:
        raise MetricsError("log_probs: rows are not log-probabilities (logsumexp != 0); "
                           "pass log_softmax(logits), not logits")
    return lp


def classifier_score(log_probs, splits=10):
    """exp(E_x KL(p(y|x) || p(y))), as the Inception score (Salimans et al. 2016).

    log_probs: (N, C) log p(y|x) per sample. The N samples are cut into
    ``splits`` equal consecutive parts (the remainder is dropped; N >= splits),
    p(y) is the mean of p(y|x) within a part, and the score is computed per
    part. Returns (mean, std) over the parts (std 0.0 for splits=1). Ranges
    from 1 (all samples alike or all ambiguous) to C (confident and
    evenly spread over the C classes)."""
    lp = _check_log_probs(log_probs)
    n = len(lp)
    if not 1 <= splits <= n:
        raise MetricsError(f"classifier_score: splits={splits} needs 1 <= splits <= N = {n}")
    size = n // splits
    scores = []
    for i in range(splits):
        part = lp[i * size:(i + 1) * size]
        log_py = numpy.logaddexp.reduce(part, axis=0) - numpy.log(len(part))
        p = numpy.exp(part)
        # 0 log 0 = 0: a class with p(y|x) = 0 (log p = -inf) contributes nothing
        with numpy.errstate(invalid="ignore"):
            kl = numpy.where(p > 0, p * (part - log_py), 0.0).sum(axis=1)
        scores.append(float(numpy.exp(kl.mean())))
    return float(numpy.mean(scores)), float(numpy.std(scores))


def class_histogram(log_probs):
    """(C,) int64: how many samples the classifier assigns (argmax) to each class."""
    lp = _check_log_probs(log_probs)
    return numpy.bincount(lp.argmax(axis=1), minlength=lp.shape[1]).astype(numpy.int64)


def classes_covered(counts, min_fraction=MIN_CLASS_FRACTION):
    """Number of classes holding at least ``min_fraction`` of the samples
    (default 1 %, a tenth of a uniform share of 10 classes), so a few stray
    samples do not count as covering a mode."""
    counts = numpy.asarray(counts)
    total = counts.sum()
    if total <= 0:
        raise MetricsError("classes_covered: empty histogram")
    return int((counts >= min_fraction * total).sum())
