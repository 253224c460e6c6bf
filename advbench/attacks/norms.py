"""The norms of the gradient attacks as small strategies: each says how to turn a gradient
into the steepest unit step, how to project onto its eps ball, and how to draw a random start
in that ball (the structure of foolbox 3's ``gradient_descent_base``).

``NORMS`` is the registry, keyed by the CLI names of ``--norm`` (``advbench.attacks.NORM_CLASSES``).
"""

from __future__ import annotations

import tensorflow as tf

from advbench.attacks import NORM_CLASSES
from advbench.core.errors import ParameterError
from advbench.core.ops import batch_norm, expand_to, l2_normalize
from advbench.core.registry import load_classes


class Norm:
    """One norm: per-sample values, steepest unit step, projection and random start.

    All methods take and return float32 image batches (batch, H, W, C) and run inside
    ``tf.function``.
    """

    def __init__(self, name: str) -> None:
        self.name = name  # its key in advbench.attacks.NORM_CLASSES

    def of(self, v: tf.Tensor) -> tf.Tensor:
        """The norm of each sample of ``v``, shape (batch,)."""
        return batch_norm(v, self.name)

    def normalise(self, grad: tf.Tensor) -> tf.Tensor:
        """The step of unit norm that raises a linear function with gradient ``grad`` most."""
        raise NotImplementedError

    def clip_to_ball(self, delta: tf.Tensor, eps: float) -> tf.Tensor:
        """``delta`` moved to the nearest point of the eps ball around 0."""
        raise NotImplementedError

    def random_delta(self, x: tf.Tensor, eps: float, seed: tf.Tensor) -> tf.Tensor:
        """A uniform random point of the eps ball, one per sample (``seed``: int (2,))."""
        raise NotImplementedError

    def project(self, x: tf.Tensor, x_adv: tf.Tensor, eps: float) -> tf.Tensor:
        """Project x_adv onto the eps ball around x, then onto [0, 1].

        Clipping to [0, 1] after the ball projection keeps the point in the ball: with x in
        [0, 1], clipping only shrinks each coordinate of x_adv - x.
        """
        return tf.clip_by_value(x + self.clip_to_ball(x_adv - x, eps), 0.0, 1.0)

    def random_start(self, x: tf.Tensor, eps: float, seed: tf.Tensor) -> tf.Tensor:
        """A uniform random point of the eps ball around x, clipped to [0, 1]."""
        return tf.clip_by_value(x + self.random_delta(x, eps, seed), 0.0, 1.0)


class LinfNorm(Norm):
    """L-inf: the sign of the gradient; per-pixel clipping; uniform per pixel."""

    def normalise(self, grad: tf.Tensor) -> tf.Tensor:
        return tf.sign(grad)

    def clip_to_ball(self, delta: tf.Tensor, eps: float) -> tf.Tensor:
        return tf.clip_by_value(delta, -eps, eps)

    def random_delta(self, x: tf.Tensor, eps: float, seed: tf.Tensor) -> tf.Tensor:
        return tf.random.stateless_uniform(tf.shape(x), seed=seed, minval=-eps, maxval=eps)


class L2Norm(Norm):
    """L2: the gradient over its L2 norm; radial scaling; uniform in the ball (a normal
    direction with radius eps * U^(1/dim))."""

    def normalise(self, grad: tf.Tensor) -> tf.Tensor:
        return l2_normalize(grad)

    def clip_to_ball(self, delta: tf.Tensor, eps: float) -> tf.Tensor:
        norms = self.of(delta)
        return delta * expand_to(tf.minimum(1.0, eps / tf.maximum(norms, 1e-12)), delta)

    def random_delta(self, x: tf.Tensor, eps: float, seed: tf.Tensor) -> tf.Tensor:
        direction = l2_normalize(tf.random.stateless_normal(tf.shape(x), seed=seed))
        dim = tf.cast(tf.reduce_prod(tf.shape(x)[1:]), x.dtype)
        u = tf.random.stateless_uniform([tf.shape(x)[0]], seed=seed + [0, 1])
        return direction * expand_to(eps * u ** (1.0 / dim), x)


NORMS: dict[str, Norm] = {name: cls(name)
                          for name, cls in load_classes("advbench.attacks", NORM_CLASSES).items()}


def check_norm(name: str) -> Norm:
    """The norm called ``name``; ParameterError naming the choices otherwise."""
    if name not in NORMS:
        raise ParameterError(f"norm must be one of {', '.join(NORMS)}, got {name!r}")
    return NORMS[name]
