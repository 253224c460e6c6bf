"""TensorFlow operations shared by attacks, defenses and metrics: per-sample losses, their
input gradient and per-sample norms of image batches (all usable inside ``tf.function``)."""

from __future__ import annotations

import tensorflow as tf

from advbench.types import Model


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


def l2_normalize(v: tf.Tensor, eps: float = 1e-12) -> tf.Tensor:
    """Unit L2 norm per sample."""
    return v / expand_to(tf.maximum(batch_norm(v, "l2"), eps), v)
