"""Label smoothing (Warde-Farley & Goodfellow, 2016), one of the paper's baselines."""

from __future__ import annotations

import tensorflow as tf

from advbench.defenses.base import Defense


class LabelSmoothing(Defense):
    """Label smoothing (Warde-Farley & Goodfellow): the true class gets ``weight`` and the
    other classes share 1 - weight evenly (paper: 0.9)."""

    name = "label-smoothing"

    def target_distribution(self, labels: tf.Tensor, num_classes: int) -> tf.Tensor:
        rest = (1.0 - self.weight) / (num_classes - 1)
        return tf.one_hot(labels, num_classes, on_value=self.weight, off_value=rest)
