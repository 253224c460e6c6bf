"""Fast Minimum-Norm attack, L0, L1, L2 and L-inf (Pintor et al., NeurIPS 2021,
https://arxiv.org/abs/2102.12827).

FMN walks a perturbation delta along the L2-normalised gradient of the logit margin and
projects it onto an Lp ball whose radius epsilon adapts per sample: while x + delta is not
adversarial epsilon grows (first to the linearised distance to the boundary, then by a
factor 1 + gamma), once it is adversarial epsilon shrinks by 1 - gamma, never above the
smallest adversarial norm found. The step size alpha and gamma both decay by cosine
annealing (the paper's Algorithm 1; Foolbox 3.3.4's ``L*FMNAttack`` and the authors'
pralab/Fast-Minimum-Norm-FMN-Attack follow it). An optional adversarial start is first
moved towards x by a binary search for the boundary, as the reference does with its
``starting_points`` / ``init_attack``.

The per-norm pieces (the projections onto a ball of per-sample radius, the mid points of the
search) are FMN's own and kept here, named ``fmn_*``: ``advbench.attacks.norms`` holds the
fixed-eps strategies of the bounded attacks.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import tensorflow as tf

from advbench.attacks.base import Attack, AttackOutput
from advbench.core import progress
from advbench.core.checks import check_range
from advbench.core.ops import (DECISIVE_MARGIN, batch_norm, expand_to, is_adversarial,
                               l2_normalize, report_step)
from advbench.core.types import Model

#: The norm of the gradient that gives the linearised distance to the boundary,
#: |margin| / ||grad||_dual (Hoelder's inequality), per FMN norm; L0 has none (its epsilon
#: starts at 1 and moves by whole features).
DUAL_NORMS = {"l1": "linf", "l2": "l2", "linf": "l1"}


def _flat(v: tf.Tensor) -> tf.Tensor:
    return tf.reshape(v, [tf.shape(v)[0], -1])


def fmn_project(delta: tf.Tensor, epsilon: tf.Tensor, norm: str) -> tf.Tensor:
    """``delta`` (batch, H, W, C) projected onto the ``norm`` ball of radius ``epsilon``
    (batch,) float32, one radius per sample (inf: no constraint).

    L-inf clips each feature; L2 scales radially; L1 is the Euclidean projection onto the L1
    ball (Duchi et al., ICML 2008: soft-thresholding at the level found from the sorted
    magnitudes); L0 keeps the floor(epsilon) features of largest magnitude (ties broken by
    position) and zeroes the others.
    """
    if norm == "linf":
        e = expand_to(epsilon, delta)
        return tf.clip_by_value(delta, -e, e)
    if norm == "l2":
        norms = batch_norm(delta, "l2")
        return delta * expand_to(tf.minimum(1.0, epsilon / tf.maximum(norms, 1e-12)), delta)
    flat = _flat(delta)
    magnitude = tf.abs(flat)
    if norm == "l1":
        l1 = tf.reduce_sum(magnitude, axis=1)
        # A radius at or above the sample's own norm leaves it as it is; clamping keeps inf
        # out of the arithmetic.
        radius = tf.minimum(epsilon, l1)
        mu = tf.sort(magnitude, axis=1, direction="DESCENDING")
        cumsum = tf.cumsum(mu, axis=1)
        j = tf.cast(tf.range(1, tf.shape(flat)[1] + 1), flat.dtype)[None, :]
        # rho: the last (1-based) j with mu_j > (cumsum_j - radius) / j; j = 1 always holds.
        above = mu * j > cumsum - radius[:, None]
        rho = tf.reduce_max(tf.where(above, j, 1.0), axis=1)
        level = tf.gather(cumsum, tf.cast(rho, tf.int32) - 1, batch_dims=1)
        theta = tf.maximum((level - radius) / rho, 0.0)
        projected = tf.sign(flat) * tf.maximum(magnitude - theta[:, None], 0.0)
        inside = (l1 <= epsilon)[:, None]
        return tf.reshape(tf.where(inside, flat, projected), tf.shape(delta))
    if norm == "l0":
        # The k-th largest magnitude from one sort, then the features above it and, of those
        # equal to it, the first by position: exactly k kept. (Ranking by two stable
        # argsorts cost 3x the sort on the CPU: more than a gradient pass of the MNIST CNN.)
        d = tf.shape(flat)[1]
        k = tf.clip_by_value(tf.cast(tf.floor(epsilon), tf.int32), 0, d)
        mu = tf.sort(magnitude, axis=1, direction="DESCENDING")
        level = tf.gather(mu, tf.maximum(k - 1, 0), batch_dims=1)[:, None]
        above = magnitude > level
        tie = tf.equal(magnitude, level)
        room = (k - tf.reduce_sum(tf.cast(above, tf.int32), axis=1))[:, None]
        keep = tf.logical_or(above, tf.logical_and(
            tie, tf.cumsum(tf.cast(tie, tf.int32), axis=1) <= room))
        keep = tf.logical_and(keep, (k > 0)[:, None])
        return tf.reshape(tf.where(keep, flat, 0.0), tf.shape(delta))
    raise ValueError(f"unknown FMN norm {norm!r}")


def fmn_mid_points(x0: tf.Tensor, x1: tf.Tensor, fraction: tf.Tensor, norm: str) -> tf.Tensor:
    """Points between x0 (fraction 0) and x1 (fraction 1), (batch,) fractions in [0, 1], that
    shrink x1 - x0 in the attack's norm, as the reference's binary search does: L-inf clips to
    +-fraction, L2 interpolates, L1 soft-thresholds at 1 - fraction, L0 keeps the
    round(fraction * features) largest changes."""
    delta = x1 - x0
    f = expand_to(fraction, x0)
    if norm == "linf":
        return x0 + tf.clip_by_value(delta, -f, f)
    if norm == "l2":
        return x0 + f * delta
    if norm == "l1":
        shrunk = tf.sign(delta) * tf.maximum(tf.abs(delta) - (1.0 - f), 0.0)
        return x0 + shrunk
    features = tf.cast(tf.shape(_flat(x0))[1], fraction.dtype)
    return x0 + fmn_project(delta, tf.round(fraction * features), "l0")


def cosine_annealing(start: float, end: float, i: tf.Tensor, steps: int) -> tf.Tensor:
    """``end + (start - end) * (1 + cos(pi * i / steps)) / 2``: start at step 0, end at the
    last (the paper's schedule of alpha and gamma)."""
    phase = tf.cast(i, tf.float32) / float(steps)
    return end + (start - end) * (1.0 + tf.cos(math.pi * phase)) / 2.0


def build_fmn(model: Model, *, norm: str, steps: int, alpha_init: float, alpha_final: float,
              gamma_init: float, gamma_final: float, binary_search_steps: int,
              targeted: bool) -> Callable:
    """The whole attack for one batch as one function (compiled by ``Attack.compiled``).

    The function takes x0 (batch, H, W, C), classes (batch,) int32 (the class to leave, or the
    target), x1 (batch, H, W, C) adversarial starts and has_start (batch,) bool (False: start
    from x0); it returns (x_adv, size): x0 plus the smallest adversarial perturbation found,
    or x0 where none was, and that perturbation's size in ``norm`` (0 where none was).
    """

    def adversarial(logits, classes):
        # Decisively past the boundary (ops.is_adversarial): the best point kept survives
        # re-evaluation at any batch size.
        return is_adversarial(logits, classes, targeted=targeted)

    def margin(logits, classes):
        """The logit of the class to leave (untargeted: the label; targeted: the best
        non-target) minus that of the class to reach; adversarial where negative."""
        is_class = tf.one_hot(classes, tf.shape(logits)[1], on_value=True, off_value=False)
        own = tf.reduce_max(tf.where(is_class, logits, -np.inf), axis=1)
        other = tf.reduce_max(tf.where(is_class, -np.inf, logits), axis=1)
        return other - own if targeted else own - other

    def attack(x0, classes, x1, has_start):
        classes = tf.cast(classes, tf.int32)
        n = tf.shape(x0)[0]
        # The reference's initialisation: a binary search between x0 and the adversarial
        # start for the point closest to x0 (in the attack's norm) that is still adversarial.
        lower = tf.zeros([n])
        upper = tf.ones([n])
        for _ in range(binary_search_steps):
            middle = (lower + upper) / 2.0
            fooled = adversarial(model(fmn_mid_points(x0, x1, middle, norm), training=False),
                                 classes)
            lower = tf.where(fooled, lower, middle)
            upper = tf.where(fooled, middle, upper)
        start = fmn_mid_points(x0, x1, upper, norm)
        delta = tf.where(expand_to(has_start, x0), start - x0, tf.zeros_like(x0))

        if norm == "l0":
            features = tf.cast(tf.shape(_flat(x0))[1], tf.float32)
            worst = tf.fill([n], features)
            epsilon = tf.maximum(1.0, batch_norm(delta, "l0"))
        else:
            worst = batch_norm(tf.maximum(x0, 1.0 - x0), norm)
            epsilon = tf.fill([n], np.inf)
        best_norm = worst
        best_delta = delta
        found = tf.zeros([n], tf.bool)

        def body(i, delta, epsilon, best_norm, best_delta, found, kept):
            alpha = cosine_annealing(alpha_init, alpha_final, i, steps)
            gamma = cosine_annealing(gamma_init, gamma_final, i, steps)
            with tf.GradientTape() as tape:
                tape.watch(delta)
                logits = model(x0 + delta, training=False)
                loss = margin(logits, classes)
            # Zero, not None, where the model has no gradient path to its input: no step,
            # the sample stays where it is (as in every gradient attack).
            grad = -tape.gradient(loss, delta,
                                  unconnected_gradients=tf.UnconnectedGradients.ZERO)
            fooled = adversarial(logits, classes)
            size = batch_norm(delta, norm)
            better = tf.logical_and(fooled, size <= best_norm)
            kept = tf.logical_or(kept, better)
            best_norm = tf.where(better, size, best_norm)
            best_delta = tf.where(expand_to(better, x0), delta, best_delta)
            found = tf.logical_or(found, fooled)
            if norm == "l0":
                # Whole features: at least one fewer (more) than before, or the gamma share.
                shrink = tf.minimum(tf.minimum(epsilon - 1.0, tf.floor(epsilon * (1.0 - gamma))),
                                    batch_norm(best_delta, "l0"))
                grow = tf.maximum(epsilon + 1.0, tf.floor(epsilon * (1.0 + gamma)))
                epsilon = tf.maximum(1.0, tf.where(fooled, shrink, grow))
            else:
                # Before any adversarial point: jump to the linearised boundary distance,
                # aimed past it by twice the lead ``is_adversarial`` asks for (as DeepFool
                # here): on a locally linear model a jump to the boundary itself lands within
                # float noise of it at every step and never counts as found.
                lead = 2.0 * DECISIVE_MARGIN * (1.0 + tf.reduce_max(tf.abs(logits), axis=1))
                to_boundary = tf.math.divide_no_nan(
                    tf.abs(loss) + lead, batch_norm(grad, DUAL_NORMS[norm]))
                to_boundary = tf.where(tf.reduce_all(tf.equal(_flat(grad), 0.0), axis=1),
                                       np.inf, to_boundary)
                epsilon = tf.where(
                    fooled, tf.minimum(epsilon * (1.0 - gamma), batch_norm(best_delta, norm)),
                    tf.where(found, epsilon * (1.0 + gamma), size + to_boundary))
            epsilon = tf.minimum(epsilon, worst)
            delta = delta + alpha * l2_normalize(grad)
            delta = fmn_project(delta, epsilon, norm)
            delta = tf.clip_by_value(x0 + delta, 0.0, 1.0) - x0
            running = tf.reduce_sum(tf.cast(tf.logical_not(found), tf.int32))
            return (report_step(i + 1, running, budget=steps), delta, epsilon, best_norm,
                    best_delta, found, kept)

        _, _, _, best_norm, best_delta, _, kept = tf.while_loop(
            lambda i, *_: i < steps, body,
            (tf.constant(0), delta, epsilon, best_norm, best_delta, found, found))
        # A start that the loop never confirmed (it cannot happen short of float noise) is
        # dropped: every output is adversarial or the input itself.
        best_delta = tf.where(expand_to(kept, x0), best_delta, tf.zeros_like(x0))
        return (tf.clip_by_value(x0 + best_delta, 0.0, 1.0),
                tf.where(kept, best_norm, tf.zeros_like(best_norm)))

    return attack


def batch_starts(logits: np.ndarray, x: np.ndarray, classes: np.ndarray, norm: str,
                 targeted: bool) -> tuple[np.ndarray, np.ndarray]:
    """Adversarial starts from the batch itself: for each sample, the nearest image (in
    ``norm``) of the batch that the model decisively classifies away from its class
    (targeted: as its target). Returns (x1, has_start); samples with no such image start
    from themselves (has_start False)."""
    fooled = np.stack([is_adversarial(tf.constant(logits), tf.fill([len(x)], c),
                                      targeted=targeted).numpy()
                       for c in classes.astype(np.int32)])  # (sample, candidate)
    flat = x.reshape(len(x), -1).astype(np.float64)
    x1 = x.copy()
    has_start = np.asarray(fooled.any(axis=1), bool)
    for i in np.flatnonzero(has_start):
        diff = flat - flat[i]
        if norm == "l0":
            size = np.count_nonzero(diff, axis=1).astype(np.float64)
        else:
            size = np.linalg.norm(diff, ord={"l1": 1, "l2": 2, "linf": np.inf}[norm], axis=1)
        size[~fooled[i]] = np.inf
        x1[i] = x[int(np.argmin(size))]
    return x1, has_start


class FMN(Attack):
    """Fast Minimum-Norm attack (FMN) in L0, L1, L2 or L-inf: the smallest perturbation in
    ``norm`` that changes the prediction (or reaches the target), found by normalised
    gradient steps inside an Lp ball whose radius adapts per sample.

    Pintor, Roli, Brendel, Biggio, "Fast Minimum-norm Adversarial Attacks through Adaptive
    Norm Constraints", NeurIPS 2021, https://arxiv.org/abs/2102.12827 (Algorithm 1).
    Defaults are Foolbox 3.3.4's ``L0/L1/L2/LInfFMNAttack`` (the authors' implementation).

    Each step evaluates x + delta, keeps it per sample when it is decisively adversarial
    (``ops.is_adversarial``) and smaller than the best so far, updates the radius epsilon
    (grow while not adversarial: first to ||delta|| + |margin| / ||grad||_dual, then by
    1 + gamma; shrink by 1 - gamma, never above the best norm; L0 by whole features), steps
    delta by alpha along the L2-normalised gradient of the logit margin (the paper uses the L2
    direction for every norm), projects onto the epsilon ball and clips x + delta to [0, 1].
    alpha anneals from ``alpha_init`` to ``alpha_final`` and gamma from ``gamma_init`` to
    ``gamma_final`` by cosine over ``steps``. Every step runs on every sample (a minimum-norm
    attack keeps shrinking after its first success). Untargeted, the driver passes the clean
    prediction as ``y`` (as DeepFool); a sample already decisively adversarial is returned
    unchanged; a sample never fooled is returned unchanged (the driver counts a failure).

    Args:
        norm: "l0", "l1", "l2" or "linf" (default "linf"): the norm minimised; L0 counts
            pixel-channel features.
        steps: gradient steps, >= 1 (default 100, Foolbox's; the authors' code 10).
        alpha_init: the first step size, > 0 (default 1.0: an L2 step of 1 in [0, 1] pixels).
        alpha_final: the last step size, in (0, alpha_init]; None (default): alpha_init / 100.
        gamma_init: the first epsilon factor, in (0, 1) (default 0.05).
        gamma_final: the last epsilon factor, in (0, gamma_init] (default 0.001, the
            reference's constant).
        init: "input" (default, the reference's default): start from x. "batch": start from
            the nearest image of the batch, in ``norm``, that the model classifies away from
            the sample's class (targeted: as its target), moved towards x by the binary
            search; samples with none start from x. Not a reference option: the reference
            takes starting points from its caller, the search is its own.
        binary_search_steps: steps of that search, >= 1 (default 10, the reference's);
            unused with init="input".

    Input: x float32 (batch, H, W, C) in [0, 1]; y int (batch,) in [0, classes); target
    optional int (batch,). Output: ``x_adv`` in [0, 1] shaped like x, each sample adversarial
    or equal to its input; ``extras["norm"]`` (batch,) float32: the perturbation's size in
    ``norm`` (0 where no adversarial was found), so L1 sizes reach the artifact too.

    Example:
        >>> out = FMN(norm="l1", steps=100)(model, x, y)
        >>> out.extras["norm"].shape == (len(x),)
    """

    name = "fmn"
    minimal = True
    supports_targets = True

    def __post_init__(self) -> None:
        # The annealed values end below where they start.
        if self.alpha_final is not None:
            check_range("alpha_final", self.alpha_final, high=self.alpha_init)
        check_range("gamma_final", self.gamma_final, high=self.gamma_init)

    def failure_hint(self, fooled: np.ndarray, extras: dict[str, np.ndarray],
                     correct: np.ndarray | None = None) -> str:
        """Names the correctly classified samples FMN did not fool. From x itself
        (init="input") the reference's FMN misses them too, easy ones included (Foolbox
        3.3.4's L1FMNAttack missed the same 20 of 99 on an MNIST CNN at 100 steps, 18 at
        300): the remedy is a start on the other side of the boundary (docs/attacks.md)."""
        if correct is None or correct.shape != fooled.shape:
            return ""
        missed = int((correct & ~fooled).sum())
        if not missed:
            return ""
        head = (f"{self.name}: {missed} of {int(correct.sum())} correctly classified samples "
                f"were not fooled ({self.norm}, {self.steps} step{'s' if self.steps != 1 else ''}, "
                f"--init {self.init})")
        if self.init == "input":
            return (f"{head}; FMN from x itself misses some samples (the reference's does "
                    "too) and more --steps helps little: rerun with --init batch, which starts "
                    "each sample from the nearest image of its batch classified otherwise")
        return (f"{head}: raise --steps, or --batch-size where a batch holds no image of "
                "another class")

    def run(self, model: Model, x: np.ndarray, y: np.ndarray, *, target: np.ndarray | None,
            seed: int, logits: np.ndarray | None = None) -> AttackOutput:
        # Labels and targets: checked by Attack.__call__.
        targeted = target is not None
        classes = (y if target is None else target).astype(np.int32)
        alpha_final = self.alpha_init / 100 if self.alpha_final is None else self.alpha_final
        search = self.binary_search_steps if self.init != "input" else 0
        fn = self.compiled(model, f"fmn-{targeted}-{search}", lambda: build_fmn(
            model, norm=self.norm, steps=self.steps, alpha_init=self.alpha_init,
            alpha_final=alpha_final, gamma_init=self.gamma_init, gamma_final=self.gamma_final,
            binary_search_steps=search, targeted=targeted))
        if self.init == "batch":
            x1, has_start = batch_starts(self.clean_logits(model, x, logits), x, classes,
                                         self.norm, targeted)
        else:
            x1, has_start = x, np.zeros(len(x), bool)
        progress.iterations(self.steps, label="step", samples=len(x))
        x_adv, size = fn(tf.convert_to_tensor(x), tf.convert_to_tensor(classes),
                         tf.convert_to_tensor(x1), tf.convert_to_tensor(has_start))
        return AttackOutput(x_adv=x_adv.numpy(), extras={"norm": size.numpy()})
