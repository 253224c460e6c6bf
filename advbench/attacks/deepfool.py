"""DeepFool, L2 (Moosavi-Dezfooli et al., 2016, https://arxiv.org/abs/1511.04599)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from advbench.attacks._tf import batch_norm, expand_to
from advbench.attacks.base import Attack, AttackOutput, check_int, check_range


def candidate_classes(logits: tf.Tensor, labels: tf.Tensor, k: int) -> tf.Tensor:
    """The label followed by the k - 1 other classes with the largest clean logits, (batch, k).

    The label comes first even when the model misclassifies the sample, so that the attack
    always measures distances from the label's decision region.
    """
    labels = tf.cast(labels, tf.int32)
    is_label = tf.one_hot(labels, tf.shape(logits)[1], on_value=True, off_value=False)
    others = tf.where(is_label, tf.cast(-np.inf, logits.dtype), logits)
    _, top_others = tf.math.top_k(others, k=k - 1)
    return tf.concat([labels[:, None], top_others], axis=1)


def deepfool_step(model, x: tf.Tensor, candidates: tf.Tensor, epsilon: float) -> tf.Tensor:
    """One DeepFool L2 step per sample: the smallest move onto the linearised boundary.

    For each other candidate class k, the boundary f_k - f_label = 0 is linearised at x with
    w_k = grad(f_k - f_label); the step goes to the nearest one,
    r = |f_k| / ||w_k||^2 * w_k (paper Algorithm 2). Returns r, shaped like x.

    All candidate gradients come from one vectorised batch Jacobian over one forward pass:
    the k - 1 backward passes run as one batched backward pass instead of k - 1 sequential
    ones, which keeps both cores (or the GPU) busy when few samples are left.
    """
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits = model(x, training=False)
        picked = tf.gather(logits, candidates, batch_dims=1)  # (n, k)
        differences = picked[:, 1:] - picked[:, :1]  # f_k - f_label, (n, k - 1)
    grads = tape.batch_jacobian(differences, x)  # (n, k - 1, *image)
    n = tf.shape(x)[0]
    flat = tf.reshape(grads, [n, tf.shape(differences)[1], -1])
    grad_norms = tf.norm(flat, axis=2)  # (n, k - 1)
    distances = tf.abs(differences) / (grad_norms + epsilon)
    nearest = tf.argmin(distances, axis=1, output_type=tf.int32)
    w = tf.gather(flat, nearest, batch_dims=1)  # (n, features)
    f = tf.gather(differences, nearest, batch_dims=1)  # (n,)
    w_norm = tf.gather(grad_norms, nearest, batch_dims=1)
    # epsilon keeps the step finite where the gradient vanishes and, as in the authors'
    # code (which adds 1e-4), puts the linearised point just beyond the boundary.
    scale = (tf.abs(f) + epsilon) / (tf.square(w_norm) + epsilon)
    return tf.reshape(scale[:, None] * w, tf.shape(x))


def build_deepfool(model, k: int, max_iter: int, overshoot: float, epsilon: float):
    """The whole attack for one batch as one function (compiled by ``Attack.compiled``)."""

    def predicted_wrong(x, labels):
        logits = model(x, training=False)
        return tf.not_equal(tf.argmax(logits, axis=1, output_type=tf.int32), labels)

    def attack(x0, labels):
        labels = tf.cast(labels, tf.int32)
        clean_logits = model(x0, training=False)
        candidates = candidate_classes(clean_logits, labels, k)
        done = tf.not_equal(tf.argmax(clean_logits, axis=1, output_type=tf.int32), labels)
        batch = tf.shape(x0)[0]
        iterations = tf.zeros([batch], tf.int32)
        r_total = tf.zeros_like(x0)
        x_adv = x0

        def cond(i, x_adv, r_total, done, iterations):
            return tf.logical_and(i < max_iter, tf.logical_not(tf.reduce_all(done)))

        def body(i, x_adv, r_total, done, iterations):
            # Work only on the samples still correctly classified: no gradient passes are
            # spent on samples already fooled (most are fooled after 2-3 steps).
            active = tf.where(tf.logical_not(done))[:, 0]
            index = active[:, None]
            xa = tf.gather(x_adv, active)
            ra = tf.gather(r_total, active) + deepfool_step(
                model, xa, tf.gather(candidates, active), epsilon)
            # As in the paper: overshoot the accumulated perturbation, not each step.
            xa = tf.clip_by_value(tf.gather(x0, active) + (1.0 + overshoot) * ra, 0.0, 1.0)
            fooled = predicted_wrong(xa, tf.gather(labels, active))
            return (i + 1,
                    tf.tensor_scatter_nd_update(x_adv, index, xa),
                    tf.tensor_scatter_nd_update(r_total, index, ra),
                    tf.tensor_scatter_nd_update(done, index, fooled),
                    tf.tensor_scatter_nd_add(iterations, index, tf.ones_like(active, tf.int32)))

        _, x_adv, _, _, iterations = tf.while_loop(
            cond, body, (tf.constant(0), x_adv, r_total, done, iterations))
        return x_adv, iterations

    return attack


class DeepFool(Attack):
    """DeepFool (L2): repeatedly step to the nearest linearised decision boundary until the
    prediction changes, then overshoot the total perturbation by ``1 + overshoot``.

    Moosavi-Dezfooli, Fawzi, Frossard, "DeepFool: a simple and accurate method to fool deep
    neural networks", CVPR 2016, https://arxiv.org/abs/1511.04599 (Algorithm 2, multi-class).

    Works on logits. Batched: the whole loop runs in one ``tf.while_loop`` and each iteration
    only touches the samples not yet fooled. A sample is done as soon as its prediction
    differs from its label ``y``; samples misclassified from the start are returned as they
    are (0 iterations). A sample not fooled within ``max_iter`` steps gets its last iterate
    (as in the original); the driver counts it as a failure.

    Args:
        max_iter: maximum DeepFool steps per sample, >= 1 (default 100, the paper's).
        overshoot: the accumulated perturbation is scaled by 1 + overshoot, >= 0 (default 0.02,
            the original's; the Zantedeschi et al. authors used 0).
        candidates: number of classes considered (the label plus the top others by clean
            logits), >= 2 (default 10; all classes when >= the number of classes).
            Each step costs candidates - 1 gradient passes.
        epsilon: numerical guard against vanishing gradients, > 0 (default 1e-6).

    Input: x float32 (batch, H, W, C) in [0, 1], y int (batch,).
    Output: ``x_adv`` in [0, 1] shaped like x; ``extras["iterations"]`` (batch,) int32: steps
    taken per sample.

    Example:
        >>> out = DeepFool()(model, x, y)
        >>> out.x_adv.shape == x.shape, out.extras["iterations"].shape == (len(x),)
    """

    name = "deepfool"
    minimal = True
    norm = "l2"
    param_names = ("max_iter", "overshoot", "candidates", "epsilon")

    def __init__(self, *, max_iter: int = 100, overshoot: float = 0.02, candidates: int = 10,
                 epsilon: float = 1e-6) -> None:
        super().__init__()
        check_int("max_iter", max_iter, low=1)
        check_range("overshoot", overshoot, low=0.0)
        check_int("candidates", candidates, low=2)
        check_range("epsilon", epsilon, low=0.0, low_inclusive=False)
        self.max_iter = int(max_iter)
        self.overshoot = float(overshoot)
        self.candidates = int(candidates)
        self.epsilon = float(epsilon)

    def run(self, model, x, y, *, target, seed):
        num_classes = int(model.output_shape[-1])
        k = min(self.candidates, num_classes)
        fn = self.compiled(model, f"deepfool-{k}", lambda: build_deepfool(
            model, k, self.max_iter, self.overshoot, self.epsilon))
        x_adv, iterations = fn(tf.convert_to_tensor(x), tf.convert_to_tensor(y, tf.int32))
        return AttackOutput(x_adv=x_adv.numpy(), extras={"iterations": iterations.numpy()})
