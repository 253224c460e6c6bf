"""Jacobian-based Saliency Map Attack (Papernot et al., 2016, https://arxiv.org/abs/1511.07528).

By default the ORIGINAL pairwise saliency map of the paper (Algorithm 3); the simplified
"two best single features" map of IBM ART is offered as ``saliency="simplified"`` (it changes
fewer pixels; see ``JSMA``). For a target class t, with
``alpha_i = dZ_t/dx_i`` and ``beta_i = sum_{j != t} dZ_j/dx_i`` on the logits Z, each iteration
picks the pair of distinct features (p, q) in the search domain that maximises

    -(alpha_p + alpha_q) * (beta_p + beta_q)   subject to  alpha_p + alpha_q > 0,
                                                           beta_p + beta_q < 0

(signs flipped for theta < 0, the paper's decreasing map), and moves both by theta.

The pair search is exact but never builds the n x n pair matrix. Writing c = -beta, the score
is (alpha_p + alpha_q) * (c_p + c_q) with both factors positive, so replacing p by a feature r
with alpha_r >= alpha_p and c_r >= c_p (r dominates p, r != q) never lowers the score or breaks
the constraints. A feature dominated by two others can therefore always be swapped out, and an
optimal pair lies within the first two Pareto layers of the points (alpha_i, c_i). The layers
come from one sort and two prefix maxima (O(n log n) per sample); only the pairs among these
few candidates (a handful for real gradients, at most n) are scored, in chunks of bounded size.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from advbench.attacks.base import Attack, AttackOutput
from advbench.attacks.targets import choose_targets
from advbench.core import progress
from advbench.core.errors import ParameterError
from advbench.core.ops import is_adversarial, report_step
from advbench.core.types import Model

# The candidate-pair scores are evaluated in row chunks of at most this many elements per
# batch, so that even the worst case (every feature a candidate) stays bounded in memory.
PAIR_CHUNK_ELEMENTS = 1 << 22


def _exclusive_prefix_max(values: tf.Tensor) -> tf.Tensor:
    """max(values[:, :i]) for every i along axis 1 (-inf for i = 0): a log-step scan.

    TensorFlow has no cumulative max; ceil(log2 n) shifted maxima do it in O(n log n).
    """
    n = values.shape[1]
    neg_inf = tf.fill(tf.shape(values), tf.constant(-np.inf, values.dtype))
    result = tf.concat([neg_inf[:, :1], values[:, :-1]], axis=1)
    shift = 1
    while shift < n:
        result = tf.maximum(result, tf.concat([neg_inf[:, :shift], result[:, :-shift]], axis=1))
        shift *= 2
    return result


def _pareto_candidates(order: tf.Tensor, c: tf.Tensor, allowed: tf.Tensor) -> tf.Tensor:
    """Mask (batch, n), in ``order``, of the allowed features in the first two Pareto layers.

    ``order`` sorts the features by alpha descending (stably), so a feature is dominated by
    every earlier one with a c at least as large. Layer 1: c above the maximum of all earlier
    allowed c; layer 2: the same among the allowed features outside layer 1.
    """
    c_sorted = tf.gather(tf.where(allowed, c, tf.constant(-np.inf, c.dtype)), order, batch_dims=1)
    allowed_sorted = tf.gather(allowed, order, batch_dims=1)
    layer1 = allowed_sorted & (c_sorted > _exclusive_prefix_max(c_sorted))
    rest = tf.where(layer1, tf.constant(-np.inf, c.dtype), c_sorted)
    layer2 = allowed_sorted & ~layer1 & (c_sorted > _exclusive_prefix_max(rest))
    return layer1 | layer2


def _gather_candidates(order: tf.Tensor, mask_sorted: tf.Tensor, k: tf.Tensor):
    """Feature indices (batch, k) of the True entries of a mask in ``order``, padded; and which
    of them are real."""
    top = tf.math.top_k(tf.cast(mask_sorted, tf.int32), k=k, sorted=True)
    return tf.gather(order, top.indices, batch_dims=1), tf.cast(top.values, tf.bool)


def select_pair(alpha: tf.Tensor, beta: tf.Tensor, first_allowed: tf.Tensor,
                second_allowed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """The pairwise saliency-map maximiser of Papernot et al. (Algorithm 3), exactly.

    Finds, per sample, distinct features p, q with p in ``first_allowed`` and q in
    ``second_allowed`` maximising -(alpha_p + alpha_q) * (beta_p + beta_q) under
    alpha_p + alpha_q > 0 and beta_p + beta_q < 0, without the O(n^2) pair matrix (see the
    module docstring). Memory is O(batch * n) plus at most ``PAIR_CHUNK_ELEMENTS`` scores.

    Args:
        alpha: float (batch, n): dZ_t/dx per feature.
        beta: float (batch, n): sum over the other classes of dZ_j/dx per feature.
        first_allowed, second_allowed: bool (batch, n): where p, respectively q, may lie.

    Returns:
        p, q: int32 (batch,) feature indices; found: bool (batch,), False where no pair meets
        the constraints (p and q are then meaningless).

    Example:
        >>> p, q, found = select_pair(alpha, beta, domain, domain)
    """
    c = -beta
    order = tf.argsort(alpha, axis=1, direction="DESCENDING", stable=True)
    cand1 = _pareto_candidates(order, c, first_allowed)
    cand2 = _pareto_candidates(order, c, second_allowed)
    count = tf.maximum(tf.reduce_max(tf.reduce_sum(tf.cast(cand1, tf.int32), axis=1)),
                       tf.reduce_max(tf.reduce_sum(tf.cast(cand2, tf.int32), axis=1)))
    k = tf.maximum(count, 1)
    idx1, ok1 = _gather_candidates(order, cand1, k)
    idx2, ok2 = _gather_candidates(order, cand2, k)
    alpha1, alpha2 = tf.gather(alpha, idx1, batch_dims=1), tf.gather(alpha, idx2, batch_dims=1)
    beta1, beta2 = tf.gather(beta, idx1, batch_dims=1), tf.gather(beta, idx2, batch_dims=1)
    batch = tf.shape(alpha)[0]
    neg_inf = tf.constant(-np.inf, alpha.dtype)

    # Rows of the (k x k) candidate matrix in chunks, keeping the best pair seen so far.
    rows = tf.maximum(1, PAIR_CHUNK_ELEMENTS // tf.maximum(1, batch * k))

    def chunk_body(start, best, best_p, best_q):
        stop = tf.minimum(start + rows, k)
        a_sum = alpha1[:, start:stop, None] + alpha2[:, None, :]
        b_sum = beta1[:, start:stop, None] + beta2[:, None, :]
        valid = (ok1[:, start:stop, None] & ok2[:, None, :]
                 & tf.not_equal(idx1[:, start:stop, None], idx2[:, None, :])
                 & (a_sum > 0) & (b_sum < 0))
        score = tf.reshape(tf.where(valid, -a_sum * b_sum, neg_inf), [batch, -1])
        flat = tf.argmax(score, axis=1, output_type=tf.int32)
        chunk_best = tf.reduce_max(score, axis=1)
        row, col = flat // k + start, flat % k
        better = chunk_best > best
        best_p = tf.where(better, tf.gather(idx1, row, batch_dims=1), best_p)
        best_q = tf.where(better, tf.gather(idx2, col, batch_dims=1), best_q)
        return stop, tf.maximum(best, chunk_best), best_p, best_q

    zeros = tf.zeros([batch], tf.int32)
    _, best, p, q = tf.while_loop(
        lambda start, *_: start < k, chunk_body,
        (tf.constant(0), tf.fill([batch], neg_inf), zeros, zeros),
        shape_invariants=(tf.TensorShape([]),) + (tf.TensorShape([None]),) * 3)
    return p, q, best > neg_inf


def select_target_pair(alpha: tf.Tensor, first_allowed: tf.Tensor,
                       second_allowed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """The fallback rule: distinct p in ``first_allowed``, q in ``second_allowed`` maximising
    alpha_p + alpha_q (the target-logit gradient alone, ART's simplified map), if that sum > 0.

    Returns p, q: int32 (batch,); found: bool (batch,), False where no pair has a positive sum.
    """
    n = alpha.shape[1]
    if n < 2:
        zeros = tf.zeros(tf.shape(alpha)[:1], tf.int32)
        return zeros, zeros, tf.zeros(tf.shape(alpha)[:1], tf.bool)
    neg_inf = tf.constant(-np.inf, alpha.dtype)
    top_first = tf.math.top_k(tf.where(first_allowed, alpha, neg_inf), k=2)
    top_second = tf.math.top_k(tf.where(second_allowed, alpha, neg_inf), k=2)
    (a1, a2), (i1, i2) = tf.unstack(top_first.values, axis=1), tf.unstack(top_first.indices, axis=1)
    (b1, b2), (j1, j2) = tf.unstack(top_second.values, axis=1), tf.unstack(top_second.indices, axis=1)
    # The two best features differ: pair them. They coincide: the better of swapping either.
    distinct = tf.not_equal(i1, j1)
    keep_first = a1 + b2 >= a2 + b1
    p = tf.where(distinct | keep_first, i1, i2)
    q = tf.where(distinct, j1, tf.where(keep_first, j2, j1))
    total = tf.where(distinct, a1 + b1, tf.maximum(a1 + b2, a2 + b1))
    return tf.cast(p, tf.int32), tf.cast(q, tf.int32), total > 0


def _target_and_sum_gradients(model, x_flat: tf.Tensor, image_shape, target: tf.Tensor):
    """Logits, dZ_t/dx and d(sum_j Z_j)/dx: one forward and two backward passes."""
    # Only x's gradient is needed: not recording the weights saves backward work.
    with tf.GradientTape(persistent=True, watch_accessed_variables=False) as tape:
        tape.watch(x_flat)
        logits = model(tf.reshape(x_flat, [-1, *image_shape]), training=False)
        target_logit = tf.gather(logits, target, batch_dims=1)
        logit_sum = tf.reduce_sum(logits, axis=1)
    # No gradient path to the input (a stop_gradient quantiser): zero gradients, as in every
    # gradient attack (advbench.core.ops.loss_gradient); no pair qualifies and the sample stops.
    grad_target = tape.gradient(target_logit, x_flat,
                                unconnected_gradients=tf.UnconnectedGradients.ZERO)
    grad_sum = tape.gradient(logit_sum, x_flat,
                             unconnected_gradients=tf.UnconnectedGradients.ZERO)
    del tape
    return logits, grad_target, grad_sum


def iteration_budget(features: int, theta: float) -> int:
    """The most iterations the loop can run on images of ``features`` entries: each feature
    moves at most ceil(1/|theta|) + 1 times (float rounding) before it reaches its bound and
    leaves the domain, and each iteration moves two features."""
    return features * (math.ceil(1.0 / abs(theta)) + 1) // 2 + 1


def jsma_loop(model: Model, x: tf.Tensor, target: tf.Tensor, theta: float, gamma: float,
              fallback: bool = True,
              saliency: str = "pairwise") -> tuple[tf.Tensor, tf.Tensor]:
    """The whole JSMA on a batch inside one tf.while_loop. Returns (x_adv, iterations).

    Only samples not yet done (target reached, budget used, no admissible pair) go through
    the model, so the cost follows the remaining work.
    """
    image_shape = x.shape[1:]
    n = int(np.prod(image_shape))
    budget = int(math.floor(gamma * n + 1e-9))
    max_iterations = iteration_budget(n, theta)
    sign = 1.0 if theta > 0 else -1.0
    batch = tf.shape(x)[0]
    x0 = tf.reshape(x, [batch, n])
    target = tf.cast(target, tf.int32)

    def in_domain(values):
        # A feature at its bound (1 when increasing, 0 when decreasing) leaves the domain.
        return values < 1.0 if theta > 0 else values > 0.0

    def body(step, x_cur, done, iterations):
        active = tf.where(~done)[:, 0]
        xa = tf.gather(x_cur, active)
        ta = tf.gather(target, active)
        logits, grad_target, grad_sum = _target_and_sum_gradients(model, xa, image_shape, ta)
        reached = is_adversarial(logits, ta, targeted=True)
        changed = tf.not_equal(xa, tf.gather(x0, active))
        remaining = budget - tf.reduce_sum(tf.cast(changed, tf.int32), axis=1)
        domain = in_domain(xa)
        # With one feature of budget left, a pair may bring in at most one new feature.
        first_allowed = domain & (changed | (remaining >= 2)[:, None])
        alpha = sign * grad_target
        beta = sign * (grad_sum - grad_target)
        if saliency == "simplified":
            p, q, found = select_target_pair(alpha, first_allowed, domain)
        else:
            p, q, found = select_pair(alpha, beta, first_allowed, domain)
        if fallback and saliency == "pairwise":
            p_alt, q_alt, found_alt = select_target_pair(alpha, first_allowed, domain)
            p, q = tf.where(found, p, p_alt), tf.where(found, q, q_alt)
            found = found | found_alt
        moves = ~reached & found & (remaining >= 1)
        delta = theta * (tf.one_hot(p, n, dtype=xa.dtype) + tf.one_hot(q, n, dtype=xa.dtype))
        xa_new = tf.where(moves[:, None], tf.clip_by_value(xa + delta, 0.0, 1.0), xa)
        rows = active[:, None]
        # Progress (advbench.core.progress): iterations done, samples still moving. Every
        # iteration: one costs a forward and two backward passes, far above a report's ~1 ms.
        running = tf.reduce_sum(tf.cast(moves, tf.int32))
        return (report_step(step + 1, running),
                tf.tensor_scatter_nd_update(x_cur, rows, xa_new),
                tf.tensor_scatter_nd_update(done, rows, ~moves),
                tf.tensor_scatter_nd_add(iterations, rows, tf.cast(moves, tf.int32)))

    _, x_adv, _, iterations = tf.while_loop(
        lambda step, x_cur, done, iterations: (step < max_iterations) & ~tf.reduce_all(done),
        body,
        (tf.constant(0), x0, tf.zeros([batch], tf.bool), tf.zeros([batch], tf.int32)))
    return tf.reshape(x_adv, tf.shape(x)), iterations


def output_classes(model: Model) -> int | None:
    """The model's number of classes, or None when it does not say (subclassed models)."""
    try:
        return model.output_shape[-1]
    except Exception:  # subclassed models may not know their output shape
        return None


class JSMA(Attack):
    """Jacobian-based Saliency Map Attack, the original pairwise saliency map on logits.

    Targeted L0 attack (Papernot et al., 2016, https://arxiv.org/abs/1511.07528): while the
    prediction is not the target and the budget allows, pick the feature pair of the pairwise
    saliency map (Algorithm 3 of the paper, exact, not ART's simplified top-2 variant) and move
    both features by theta, clipped to [0, 1]. The map uses the logits Z (the paper's
    JSMA on the last layer before the softmax, as in its MNIST experiments). A feature that
    reaches its bound leaves the search domain; features may be moved several times when
    |theta| < 1. A sample stops when the model predicts the target, when gamma * n features
    differ from the input (a pair that would exceed the budget is never chosen), or when no
    pair is left to move.

    Algorithm 3 leaves the pair undefined when no pair meets its sign constraints
    (alpha_p + alpha_q > 0, beta_p + beta_q < 0); that happens on a few percent of MNIST
    samples after hundreds of iterations, often just short of the target. With ``fallback``
    (the default) such an iteration moves the pair with the largest alpha_p + alpha_q > 0
    instead (the target-gradient rule of ART's simplified map) and the search goes on; without
    it the sample stops there, unsuccessful. On the paper's MNIST CNN the fallback lifts
    success on the first 1,000 test images from 97.8% to 98.9%, at the same speed.

    ``saliency="simplified"`` replaces the pairwise map by the two in-domain features of
    largest positive target gradient alpha (the map of IBM ART's ``SaliencyMapMethod``; the
    loop, domain and budget are unchanged, and ``fallback`` has nothing to add). It changes
    fewer pixels: on a 1-epoch paper CNN, first 100 MNIST test images, random targets, theta
    0.1, gamma 1, mean L0 54.2 and L2 5.03 at 100% success (ART 1.20.1 on the same images and
    targets: 54.2 and 5.03, 100%) against 75.6 and 5.63 at 99% for the pairwise map. Not
    because of theta: both maps move a changed pixel about 6 times and leave 80% of changed
    pixels at 1. The pairwise score -(alpha_p + alpha_q)(beta_p + beta_q) pays for lowering
    the sum of the other nine logits, which is not what stands between the prediction and
    the target (the largest other logit is), so it takes more, weaker pairs (about 224 iterations
    per sample against 173).

    Without explicit targets the attack picks one wrong class per sample: uniformly at random
    from ``seed`` (the paper's untargeted setting) or the least likely wrong class on the clean
    input. Success means the prediction is the target class.

    Args:
        theta: change per modified feature, nonzero in [-1, 1] (default 0.1, the paper text;
            the authors' code used 1.0). Negative values decrease features.
        gamma: maximum fraction of features that may be modified, in (0, 1] (default 1.0).
        target_mode: "random" (default) or "least-likely": how targets are picked when
            ``target`` is not given to the call.
        fallback: when no pair meets the map's sign constraints, move the pair with the
            largest positive target gradient instead of stopping (default True).
        saliency: "pairwise" (default, the paper's map) or "simplified" (ART's: the two
            features of largest target gradient; fewer pixels changed, see above).

    Shapes: x float32 (batch, H, W, C) in [0, 1]; y and target int (batch,). Extras:
    ``target`` (the target class per sample) and ``iterations`` (pairs modified per sample).
    Memory is O(batch * H * W * C): the pairwise map is never materialised.

    Example:
        >>> out = JSMA(theta=0.1, gamma=1.0)(model, x, y, seed=0)
        >>> out.extras["target"], out.extras["iterations"]
    """

    name = "jsma"
    norm = "l0"
    randomized = True
    supports_targets = True

    def __post_init__(self) -> None:
        if self.theta == 0.0:
            raise ParameterError(
                "theta must be nonzero (positive increases features, negative decreases "
                "them), got 0.0")

    def run(self, model: Model, x: np.ndarray, y: np.ndarray, *, target: np.ndarray | None,
            seed: int, logits: np.ndarray | None = None) -> AttackOutput:
        key = f"jsma-{self.theta}-{self.gamma}-{self.fallback}-{self.saliency}"
        explicit = target is not None
        if target is not None:  # checked by Attack.__call__
            mode = "explicit"
        else:
            mode = self.target_mode

        def build():
            def attack(xb, labels, given_target, seed_pair, clean_logits):
                if mode == "explicit":
                    chosen = tf.cast(given_target, tf.int32)
                else:
                    chosen = choose_targets(clean_logits, labels, mode, seed_pair)
                x_adv, iterations = jsma_loop(model, xb, chosen, self.theta, self.gamma,
                                              self.fallback, self.saliency)
                return x_adv, chosen, iterations
            return attack

        fn = self.compiled(model, f"{key}-{mode}", build)
        given = target if explicit else y
        # The clean logits choose the targets; explicit targets need none (no forward pass).
        clean = (np.zeros((len(x), 0), np.float32) if explicit
                 else self.clean_logits(model, x, logits))
        progress.iterations(iteration_budget(int(np.prod(x.shape[1:])), self.theta),
                            samples=len(x))
        x_adv, chosen, iterations = fn(
            tf.convert_to_tensor(x), tf.convert_to_tensor(y),
            tf.convert_to_tensor(given, dtype=tf.int64),
            tf.constant([seed, 0], dtype=tf.int64), tf.constant(clean))
        return AttackOutput(
            x_adv=x_adv.numpy(),
            extras={"target": chosen.numpy().astype(np.int64),
                    "iterations": iterations.numpy().astype(np.int64)})
