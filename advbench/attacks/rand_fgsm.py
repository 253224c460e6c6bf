"""Random + FGSM (R+FGSM; Tramer et al., 2017, https://arxiv.org/abs/1705.07204)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from advbench.attacks.base import Attack, AttackOutput
from advbench.attacks.fgsm import fgsm_direction
from advbench.core.errors import ParameterError
from advbench.core.types import Model


def rand_fgsm(model: Model, x: tf.Tensor, labels: tf.Tensor, eps: float, alpha: float,
              seed: tf.Tensor) -> tf.Tensor:
    """x' = clip(x + alpha * sign(N(0, I))), then clip(x' + (eps - alpha) * sign(grad at x')).

    ``seed``: int tensor of shape (2,) for ``tf.random.stateless_normal``.
    """
    noise = tf.sign(tf.random.stateless_normal(tf.shape(x), seed=seed, dtype=x.dtype))
    x_random = tf.clip_by_value(x + alpha * noise, 0.0, 1.0)
    step = fgsm_direction(model, x_random, labels, "linf", False)
    return tf.clip_by_value(x_random + (eps - alpha) * step, 0.0, 1.0)


class RandomFGSM(Attack):
    """A random sign step of size alpha, then an FGSM step of size eps - alpha from there,
    which escapes the gradient masking of models adversarially trained with FGSM.

    The L-inf distance to x is at most eps (alpha + (eps - alpha)); outputs are clipped to
    [0, 1] after each step.

    Args:
        eps: total L-inf budget, >= 0 (default 0.1).
        alpha: size of the random step, 0 <= alpha <= eps (default 0.05, the paper's and
            Tramer et al.'s MNIST setting).

    Example:
        >>> out = RandomFGSM(eps=0.3, alpha=0.05)(model, x, y, seed=1)
        >>> out.x_adv.shape == x.shape
    """

    name = "rand-fgsm"
    norm = "linf"
    randomized = True

    def __post_init__(self) -> None:
        if self.alpha > self.eps:
            raise ParameterError(
                f"alpha ({self.alpha}) must be <= eps ({self.eps}): the random step is part of "
                "the eps budget; lower alpha or raise eps")

    def run(self, model: Model, x: np.ndarray, y: np.ndarray, *, target: np.ndarray | None,
            seed: int) -> AttackOutput:
        attack = self.compiled(model, "rand-fgsm", lambda: (
            lambda xb, yb, seed_tensor: rand_fgsm(model, xb, yb, self.eps, self.alpha,
                                                  seed_tensor)))
        seed_tensor = tf.constant([seed, 0], dtype=tf.int64)
        x_adv = attack(tf.convert_to_tensor(x), tf.convert_to_tensor(y.astype("int32")),
                       seed_tensor)
        return AttackOutput(x_adv=x_adv.numpy())
