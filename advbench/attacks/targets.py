"""Target classes for targeted attacks: one chooser, never the true label."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from advbench.attacks import TARGET_MODES
from advbench.core.errors import ParameterError


def choose_targets(logits: tf.Tensor, labels: tf.Tensor, mode: str, seed: tf.Tensor) -> tf.Tensor:
    """A target class per sample, never its true label: the one chooser of every targeted
    attack (the runner's --target, JSMA without explicit targets).

    Args:
        logits: float (batch, classes), the model's logits on the clean images.
        labels: int (batch,), the true labels.
        mode: "random": uniform over the classes other than the true one, drawn with
            ``tf.random.stateless_uniform`` from ``seed``; "least-likely": the class of
            smallest logit among the others (the argmin over all classes could be the true
            label itself).
        seed: int64 tensor of shape (2,) (random mode only).

    Returns:
        int32 tensor (batch,). Works eagerly and inside ``tf.function``.
    """
    if mode not in TARGET_MODES:
        raise ParameterError(f"target mode must be one of {', '.join(TARGET_MODES)}, "
                             f"got {mode!r}")
    labels = tf.cast(labels, tf.int32)
    num_classes = tf.shape(logits)[1]
    if mode == "random":
        draw = tf.random.stateless_uniform(tf.shape(labels), seed=seed, minval=0,
                                           maxval=num_classes - 1, dtype=tf.int32)
        # Skip over the true label: uniform over the num_classes - 1 wrong classes.
        return draw + tf.cast(draw >= labels, tf.int32)
    true_class = tf.one_hot(labels, num_classes, on_value=True, off_value=False)
    masked = tf.where(true_class, tf.constant(np.inf, logits.dtype), logits)
    return tf.argmin(masked, axis=1, output_type=tf.int32)
