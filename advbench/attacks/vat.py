"""Virtual adversarial perturbation (Miyato et al., https://arxiv.org/abs/1704.03976).

The direction r_adv that most increases KL(p(x) || p(x + r)) for ||r||_2 = eps, found by
power iteration on the finite difference of the KL gradient. It needs no label. The paper
advbench reproduces uses it as an augmentation ("VAT" defense, eps 2.1) and as an attack;
``vat_loss`` is Miyato's training regulariser.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from advbench.attacks.base import Attack, AttackOutput
from advbench.core.ops import expand_to, l2_normalize
from advbench.core.types import Model


def kl_from_logits(logits_p: tf.Tensor, logits_q: tf.Tensor) -> tf.Tensor:
    """KL(p || q) per sample for two batches of logits, shape (batch,)."""
    log_p = tf.nn.log_softmax(logits_p)
    log_q = tf.nn.log_softmax(logits_q)
    return tf.reduce_sum(tf.exp(log_p) * (log_p - log_q), axis=-1)


def vat_perturbation(model: Model, x: tf.Tensor, logits: tf.Tensor, eps: float, xi: float,
                     power_iterations: int, seed_tensor: tf.Tensor, *,
                     training: bool = False, start: tf.Tensor | None = None) -> tf.Tensor:
    """The virtual adversarial perturbation r_adv, ||r_adv||_2 = eps per sample.

    Graph-mode safe (call it inside a ``tf.function`` training step). Gradients do not flow
    through the result (it is a constant for the VAT loss, as in Miyato et al.). A sample
    whose KL gradient is exactly zero (saturated softmax: with a tiny xi, p(x + r) rounds to
    p(x) in float32) keeps its random start direction instead of getting no perturbation.

    Args:
        model: Keras model mapping x to logits.
        x: float32 (batch, H, W, C).
        logits: model(x), (batch, classes); p(x) = softmax(logits) is held constant.
        eps: L2 norm of the returned perturbation.
        xi: finite-difference radius of the power iteration.
        power_iterations: Python int >= 1.
        seed_tensor: int (2,) seed of ``tf.random.stateless_normal`` for the start d.
        training: passed to the model for the perturbed forward passes.
        start: the random start direction, shaped like x (default: drawn from seed_tensor);
            a distributed training step draws it on the global batch and passes its rows.
    Returns:
        float32 tensor shaped like x (not clipped to [0, 1]).
    """
    logits = tf.stop_gradient(logits)
    d = start if start is not None else tf.random.stateless_normal(tf.shape(x), seed=seed_tensor,
                                                                   dtype=x.dtype)
    for _ in range(power_iterations):
        r = xi * l2_normalize(d)
        with tf.GradientTape() as tape:
            tape.watch(r)
            kl = tf.reduce_sum(kl_from_logits(logits, model(x + r, training=training)))
        # No gradient path to the input (a stop_gradient quantiser) counts as a zero gradient,
        # as in every gradient attack (advbench.core.ops.loss_gradient).
        grad = tf.stop_gradient(tape.gradient(
            kl, r, unconnected_gradients=tf.UnconnectedGradients.ZERO))
        # A zero gradient carries no direction: keep the previous one, so every sample moves
        # by eps (Miyato's code returns a zero perturbation there).
        flat = tf.reshape(grad, [tf.shape(grad)[0], -1])
        flat_zero = tf.reduce_all(tf.equal(flat, 0.0), axis=1)
        d = tf.where(expand_to(flat_zero, d), d, grad)
    return eps * l2_normalize(d)


def vat_loss(model: Model, x: tf.Tensor, logits: tf.Tensor, *, seed_tensor: tf.Tensor,
             eps: float = 2.1, xi: float = 1e-6,
             power_iterations: int = 1, training: bool = False,
             start: tf.Tensor | None = None) -> tf.Tensor:
    """Miyato's VAT regulariser per sample: KL(p(x) || p(x + r_adv)), p(x) held constant.

    Add ``alpha * tf.reduce_mean(vat_loss(...))`` to the training loss; its gradient flows
    through the model at x + r_adv only. Shape (batch,). ``seed_tensor`` (int, shape (2,))
    must change from step to step, e.g. ``tf.stack([seed, step])``, or every step draws the
    same start direction.

    Example:
        >>> logits = model(x, training=True)
        >>> loss = ce(y, logits) + tf.reduce_mean(vat_loss(model, x, logits, seed_tensor=s))
    """
    r_adv = vat_perturbation(model, x, logits, eps, xi, power_iterations, seed_tensor,
                             training=training, start=start)
    return kl_from_logits(tf.stop_gradient(logits), model(x + r_adv, training=training))


class VirtualAdversarial(Attack):
    """x_adv = clip(x + eps * normalize(g), 0, 1), g the power-iteration estimate of the
    direction that most increases KL(p(x) || p(x + r)); labels are not used.

    Args:
        eps: L2 norm of the perturbation before clipping, >= 0 (default 2.1, the paper's).
        xi: finite-difference radius, > 0 (default 1e-6, Miyato et al.'s).
            In float32 on [0, 1] images this difference is noisy but not void: on the paper's
            MNIST CNN the median cosine between the xi = 1e-6 direction and the exact
            Hessian-vector product is 0.23 (0.999 with xi = 1e-2), and its KL at eps 2.1 is
            ~200x that of a random direction (~0.4x that of the exact direction). Samples
            whose KL gradient is exactly zero (saturated softmax) move along their random d.
        power_iterations: >= 1 (default 1, Miyato et al.'s).

    Example:
        >>> out = VirtualAdversarial(eps=2.1)(model, x, y, seed=0)
        >>> out.x_adv.shape == x.shape
    """

    name = "vat"
    norm = "l2"
    randomized = True

    def run(self, model: Model, x: np.ndarray, y: np.ndarray, *, target: np.ndarray | None,
            seed: int, logits: np.ndarray | None = None) -> AttackOutput:
        def build():
            def attack(xb, logits, seed_tensor):
                r = vat_perturbation(model, xb, logits, self.eps, self.xi,
                                     self.power_iterations, seed_tensor)
                return tf.clip_by_value(xb + r, 0.0, 1.0)
            return attack
        attack = self.compiled(model, "vat", build)
        x_adv = attack(tf.convert_to_tensor(x), tf.constant(self.clean_logits(model, x, logits)),
                       tf.constant([seed, 0], dtype=tf.int64))
        return AttackOutput(x_adv=x_adv.numpy())
