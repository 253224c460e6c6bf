"""Custom layers saved inside models. Registered with Keras so that safe-mode loading can
rebuild them from their config without running any code from the file."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="advbench")
class FeatureSqueezing(keras.layers.Layer):
    """Colour-depth reduction (Xu et al., https://arxiv.org/abs/1704.01155) to ``bit_depth``
    bits per channel: round(x * (2^b - 1)) / (2^b - 1).

    The rounding has zero gradient almost everywhere, so the layer passes gradients through
    as the identity (straight-through / BPDA, Athalye et al. 2018): a white-box attack sees
    the squeezing in the forward pass and the identity in the backward pass.
    """

    def __init__(self, bit_depth: int = 1, **kwargs: Any):
        super().__init__(**kwargs)
        if not 1 <= int(bit_depth) <= 16:
            raise ValueError(f"bit_depth must be in 1..16, got {bit_depth}")
        self.bit_depth = int(bit_depth)

    def call(self, x: tf.Tensor) -> tf.Tensor:
        levels = float(2 ** self.bit_depth - 1)
        squeezed = tf.round(tf.clip_by_value(x, 0.0, 1.0) * levels) / levels
        # Forward: squeezed; backward: identity.
        return x + tf.stop_gradient(squeezed - x)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "bit_depth": self.bit_depth}


@keras.saving.register_keras_serializable(package="advbench")
class LogProbabilities(keras.layers.Layer):
    """log(p) of a model that outputs probabilities: logits up to a per-sample constant
    (log softmax(z) = z - logsumexp(z)), so margins and cross-entropy are unchanged.
    Probabilities below ``floor`` are raised to it (their gradient there is lost)."""

    def __init__(self, floor: float = 1e-30, **kwargs: Any):
        super().__init__(**kwargs)
        self.floor = float(floor)

    def call(self, p: tf.Tensor) -> tf.Tensor:
        return tf.math.log(tf.maximum(p, self.floor))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "floor": self.floor}
