"""TensorFlow operations shared by attacks, defenses and metrics: per-sample losses, their
input gradient and per-sample norms of image batches (all usable inside ``tf.function``)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from advbench.core import progress
from advbench.core.types import Model


def per_sample_cross_entropy(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """Cross-entropy per sample (not reduced), so gradients do not depend on batch size."""
    return tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.cast(labels, tf.int32), logits=logits
    )


def per_sample_soft_cross_entropy(targets: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Cross-entropy against a target distribution (batch, classes), per sample."""
    return tf.nn.softmax_cross_entropy_with_logits(labels=targets, logits=logits)


def loss_gradient(model: Model, x: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Gradient of the per-sample cross-entropy w.r.t. x, and the logits at x.

    A model with no gradient path to its input (e.g. a stop_gradient quantiser) gets a zero
    gradient rather than None, so attacks on it stay put instead of failing.
    """
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits = model(x, training=False)
        loss = per_sample_cross_entropy(logits, labels)
    return tape.gradient(loss, x, unconnected_gradients=tf.UnconnectedGradients.ZERO), logits


def batch_norm(v: tf.Tensor, norm: str) -> tf.Tensor:
    """Per-sample norm of a batch, shape (batch,). norm in {"l2", "linf", "l0", "l1"}."""
    flat = tf.reshape(v, [tf.shape(v)[0], -1])
    if norm == "l2":
        return tf.norm(flat, axis=1)
    if norm == "linf":
        return tf.reduce_max(tf.abs(flat), axis=1)
    if norm == "l1":
        return tf.reduce_sum(tf.abs(flat), axis=1)
    if norm == "l0":
        return tf.reduce_sum(tf.cast(tf.not_equal(flat, 0.0), v.dtype), axis=1)
    raise ValueError(f"unknown norm {norm!r}")


def expand_to(v: tf.Tensor, like: tf.Tensor) -> tf.Tensor:
    """Reshape a (batch,) tensor so that it broadcasts against an image batch."""
    return tf.reshape(v, [-1] + [1] * (len(like.shape) - 1))


def l2_normalize(v: tf.Tensor) -> tf.Tensor:
    """Unit L2 norm per sample, any batch shape; zero where a sample is all zero.

    Divided by its largest entry first: the loss gradient of a confidently classified input
    has entries near 1e-13 at a logit margin of 30 and 1e-20 at 45, whose squares vanish or
    fall under any guard on the norm, and the "unit" step would shrink to nothing. Rescaled,
    the largest entry is 1 and the norm is at least 1.
    """
    largest = expand_to(batch_norm(v, "linf"), v)
    scaled = tf.math.divide_no_nan(v, largest)
    return tf.math.divide_no_nan(scaled, expand_to(batch_norm(scaled, "l2"), v))


#: The lead an adversarial class must have over the runner-up, relative to the logits' scale.
#: Float32 logits of one image differ by about 1e-6 relative between batch sizes (the kernels
#: sum in another order), so a point closer than this to the decision boundary can be
#: "adversarial" at one batch size and not at another. 1e-4 is well above that noise and far
#: below any margin an attack is asked for.
DECISIVE_MARGIN = 1e-4


def logit_margin(logits: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(z_label, max over the other classes of z), each (batch,) float: the terms of the
    logit margin of every attack, loss and check that uses one (C&W's f, Square's and the
    audit's margin, DLR's numerator, ``is_adversarial``). ``labels``: int (batch,)."""
    labels = tf.cast(labels, tf.int32)
    is_label = tf.one_hot(labels, tf.shape(logits)[1], on_value=True, off_value=False)
    label_logit = tf.gather(logits, labels, batch_dims=1)
    other_logit = tf.reduce_max(tf.where(is_label, tf.cast(-np.inf, logits.dtype), logits),
                                axis=1)
    return label_logit, other_logit


def is_adversarial(logits: tf.Tensor, labels: tf.Tensor, targeted: bool = False) -> tf.Tensor:
    """(batch,) bool: the logits decide against the label (untargeted) or for the target
    (targeted) by more than float noise.

    Untargeted: the best other class leads the label by more than ``DECISIVE_MARGIN * (1 +
    max |logit|)``; targeted: the target leads every other class by that much. Every attack
    judges its own success with this, so the success the driver stores from one forward pass
    survives re-evaluation at any batch size.
    """
    label_logit, other_logit = logit_margin(logits, labels)
    tolerance = DECISIVE_MARGIN * (1.0 + tf.reduce_max(tf.abs(logits), axis=1))
    lead = label_logit - other_logit if targeted else other_logit - label_logit
    return lead > tolerance


def report_step(done: tf.Tensor, running: tf.Tensor | int = -1, *, budget: int = 0) -> tf.Tensor:
    """``done`` (int32 scalar) unchanged, after telling ``advbench.core.progress.step`` that
    ``done`` iterations finished with ``running`` samples still attacked (int32 scalar, -1:
    not known). Use the result as the loop counter so the callback cannot be pruned; only
    int32 scalars cross to the host (no device sync on a GPU beyond the loop's own counter).

    With ``budget`` (the loop's most iterations) it reports every ``budget // REPORTS``-th
    iteration only. A callback cost about 1 ms on the shared 2-core CPU at load 8-12 (Square,
    300 queries on 64 MNIST images and a small CNN, 1.6 ms per query: one report per query
    cost 24% of samples/s, one per 3 queries 16%; docs/performance.md). Compiled in only
    while a bar listens (``advbench.core.progress.listening``): without one it is the identity,
    and the graph is the one without progress."""
    if not progress.listening():
        return done

    def tell(value: np.ndarray, still: np.ndarray) -> np.ndarray:
        progress.step(int(value), int(still))
        return value

    def call() -> tf.Tensor:
        out = tf.numpy_function(tell, [tf.cast(done, tf.int32), tf.cast(running, tf.int32)],
                                tf.int32, stateful=True)
        out.set_shape([])
        return out

    every = max(budget // REPORTS, 1)
    if every == 1:
        return call()
    return tf.cond(tf.equal(done % every, 0), call, lambda: tf.cast(done, tf.int32))


#: At most about this many progress reports per compiled loop (``report_step``): a bar
#: advances by 5% of a loop at worst.
REPORTS = 20
