"""Projected gradient descent (Madry et al., 2017, https://arxiv.org/abs/1706.06083)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from advbench.attacks.base import Attack, AttackOutput
from advbench.attacks.norms import NORMS
from advbench.core import progress
from advbench.core.ops import expand_to, is_adversarial, loss_gradient, report_step
from advbench.core.types import Model


def pgd(model: Model, x: tf.Tensor, labels: tf.Tensor, seed: tf.Tensor, *, eps: float,
        step_size: float, steps: int, norm: str,
        start_random: bool, targeted: bool, early_stop: bool) -> tf.Tensor:
    """``steps`` steps of size step_size along the sign (linf) or the L2 direction (l2) of the
    loss gradient, each followed by the projection; one tf.while_loop.

    With ``early_stop`` only the samples not yet adversarial are carried (gathered) through
    each step; a sample is frozen at the first iterate found adversarial, judged from the
    logits of the gradient pass (no extra forward), and the loop ends when none is left.
    """
    ball = NORMS[norm]
    x_adv = ball.random_start(x, eps, seed) if start_random else x
    sign = -1.0 if targeted else 1.0

    def step(x_start, x_now, wanted):
        grad, logits = loss_gradient(model, x_now, wanted)
        direction = ball.normalise(grad)
        return ball.project(x_start, x_now + (sign * step_size) * direction, eps), logits

    if not early_stop:
        _, x_adv = tf.while_loop(
            lambda i, _: i < steps,
            lambda i, x_now: (report_step(i + 1, tf.shape(x)[0], budget=steps),
                              step(x, x_now, labels)[0]),
            (tf.constant(0), x_adv))
        return x_adv

    def body(i, x_adv, active):
        wanted = tf.gather(labels, active)
        x_now = tf.gather(x_adv, active)
        x_next, logits = step(tf.gather(x, active), x_now, wanted)
        done = is_adversarial(logits, wanted, targeted)
        x_next = tf.where(expand_to(done, x_next), x_now, x_next)
        x_adv = tf.tensor_scatter_nd_update(x_adv, active[:, None], x_next)
        active = tf.boolean_mask(active, tf.logical_not(done))
        return report_step(i + 1, tf.size(active), budget=steps), x_adv, active

    _, x_adv, _ = tf.while_loop(
        lambda i, _, active: tf.logical_and(i < steps, tf.size(active) > 0), body,
        (tf.constant(0), x_adv, tf.range(tf.shape(x)[0])),
        shape_invariants=(tf.TensorShape([]), x_adv.shape, tf.TensorShape([None])))
    return x_adv


class PGD(Attack):
    """Iterated FGSM with projection onto the eps ball and [0, 1], from a random start.

    By default a fixed number of steps as in Madry et al.: later steps keep raising the loss,
    which matters for transfer. ``early_stop=True`` freezes each sample at its first
    adversarial iterate and stops when all are: accuracy under attack at most that of the
    full run (a sample cannot drift back to its class) for a fraction of the gradient passes
    on an undefended model, but less confident adversarials.

    Args:
        eps: radius of the ball, >= 0 (default 0.3, Madry et al.'s MNIST setting); L-inf or
            L2 per ``norm``.
        step_size: size of each step, > 0 (default 0.01); an L2 length for ``l2``.
        steps: number of steps, >= 0 (default 40).
        random_start: start from a uniform random point of the ball (default True).
        norm: "linf" (default) or "l2".
        early_stop: stop each sample once adversarial (default False, Madry et al.'s form).

    Example:
        >>> out = PGD(eps=0.3, step_size=0.01, steps=40)(model, x, y, seed=0)
        >>> out = PGD(norm="l2", eps=2.0, step_size=0.1)(model, x, y, target=t, seed=0)
    """

    name = "pgd"
    randomized = True
    supports_targets = True

    def run(self, model: Model, x: np.ndarray, y: np.ndarray, *, target: np.ndarray | None,
            seed: int) -> AttackOutput:
        targeted = target is not None
        labels = (y if target is None else target).astype("int32")
        attack = self.compiled(model, f"pgd-{targeted}", lambda: (
            lambda xb, lb, seed_tensor: pgd(
                model, xb, lb, seed_tensor, eps=self.eps, step_size=self.step_size,
                steps=self.steps, norm=self.norm, start_random=self.random_start,
                targeted=targeted, early_stop=self.early_stop)))
        seed_tensor = tf.constant([seed, 0], dtype=tf.int64)
        progress.iterations(self.steps, label="step", samples=len(x))
        x_adv = attack(tf.convert_to_tensor(x), tf.convert_to_tensor(labels), seed_tensor)
        return AttackOutput(x_adv=x_adv.numpy())
