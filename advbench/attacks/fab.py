"""FAB and FAB-T: the Fast Adaptive Boundary attack, untargeted and over the top-k classes.

Croce and Hein, "Minimally distorted adversarial examples with a fast adaptive boundary
attack", ICML 2020, https://arxiv.org/abs/1907.02044 (Algorithm 1), as the authors' AutoAttack
code runs it (github.com/fra31/auto-attack, ``fab_base.py``, ``fab_projections.py``).

Each step linearises the classifier at the iterate x1 and picks the decision hyperplane
closest in the attack's norm (untargeted: the nearest class; targeted: the target's),
projects both x1 and the clean image x0 onto that hyperplane intersected with the [0, 1] box
(``project``), and moves to a convex combination of the two projections, each overshot by
eta: x1 <- clip((1 - alpha)(x1 + eta d1) + alpha (x0 + eta d0)), with
alpha = min(||d1|| / (||d1|| + ||d0||), alpha_max), so the iterate is pulled towards x0 in
proportion to how far it already is. An iterate that is adversarial is recorded when it is
the closest so far and pulled back towards x0: x1 <- x0 + beta (x1 - x0). The attack returns
the closest adversarial found: a minimal attack. With ``eps`` it is also the bounded attack
AutoAttack runs: only adversarials within eps count, and restarts and targets run only on
the samples none has fooled within eps (the authors' ``perturb``).
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar

import numpy as np
import tensorflow as tf

from advbench.attacks import FAB_NORMS
from advbench.attacks.apgd import compile_batch_function
from advbench.attacks.apgd_t import ranked_targets
from advbench.attacks.base import EnsembleMember
from advbench.attacks.norms import NORMS
from advbench.core import progress
from advbench.core.errors import ParameterError
from advbench.core.ops import batch_norm, is_adversarial, report_step
from advbench.core.types import Model, Tensor

#: The radius of the random restarts when no eps is given: the authors' defaults per norm
#: (``DEFAULT_EPS_DICT_BY_NORM``). A restart starts at half of it, as theirs.
START_EPS = {"linf": 0.3, "l2": 1.0, "l1": 5.0}
#: The dual norm of each norm: the distance to a hyperplane <w, z> = b is |<w, x> - b| / ||w||_*.
DUAL = {"linf": "l1", "l2": "l2", "l1": "linf"}
#: Keeps the distance to a hyperplane finite where the gradient vanishes (the authors' 1e-12).
GUARD = 1e-12
#: A stand-in for "never": the breakpoint of a coordinate with no weight (its room is never
#: used), larger than any reachable multiplier.
NEVER = 1e12


def _flat(x: Tensor) -> Tensor:
    return tf.reshape(x, [tf.shape(x)[0], -1])


def _smallest_multiplier(u: Tensor, v: Tensor, r: Tensor) -> tuple[Tensor, Tensor]:
    """The smallest lam >= 0 with sum_i u_i min(lam, v_i) >= r, per row, and whether one
    exists. u, v: float (m, d), u >= 0, v >= 0; r: float (m,) >= 0.

    The sum is piecewise linear and nondecreasing in lam, with kinks at the v_i: evaluated at
    the sorted kinks, the first kink where it reaches r fixes the linear piece to solve on.
    """
    order = tf.argsort(v, axis=1)
    vs = tf.gather(v, order, batch_dims=1)
    us = tf.gather(u, order, batch_dims=1)
    # Before kink k: the coordinates j < k are saturated (contribute u_j v_j), the others
    # still grow with slope u_j.
    saturated = tf.cumsum(us * vs, axis=1, exclusive=True)
    # A reverse sum, not total - prefix: the difference rounds below 0 at the zero weights,
    # whose kinks sit at NEVER.
    slope = tf.cumsum(us, axis=1, reverse=True)
    at_kinks = saturated + slope * vs
    below = tf.reduce_sum(tf.cast(at_kinks < r[:, None], tf.int32), axis=1)
    feasible = below < tf.shape(v)[1]
    k = tf.minimum(below, tf.shape(v)[1] - 1)
    rest = r - tf.gather(saturated, k[:, None], batch_dims=1)[:, 0]
    rate = tf.gather(slope, k[:, None], batch_dims=1)[:, 0]
    lam = tf.where(rate > 0, tf.maximum(rest, 0.0) / tf.where(rate > 0, rate, 1.0), 0.0)
    return lam, feasible


def project(norm: str, t: Tensor, w: Tensor, c: Tensor) -> Tensor:
    """The smallest step onto a hyperplane inside the [0, 1] box: FAB's projection.

    For each row, d minimising ||d||_norm subject to <w, d> = -c and 0 <= t + d <= 1, where
    c = <w, t> - b is the signed residual of t for the hyperplane <w, z> = b. When the box
    does not reach the hyperplane, the step to the corner of the box that moves <w, z> most
    towards b (every coordinate with a weight at its bound), as the authors' projections.
    Coordinates with w_i = 0 never move.

    L-inf: all moving coordinates by the same lam, those with less room (to 0 or 1, in the
    direction that reduces the residual) by all their room; L2: d = -lam w clipped to the box;
    L1: the coordinates in decreasing order of |w_i|, each by all its room, the last one by
    what is left. lam is found exactly, by sorting (``_smallest_multiplier``).

    Args:
        norm: "linf", "l2" or "l1".
        t: float32 (m, d) points in [0, 1]; w: float32 (m, d) normals; c: float32 (m,).
    Returns:
        float32 (m, d), the step d.
    """
    direction = -tf.sign(w) * tf.sign(tf.where(c >= 0, 1.0, -1.0))[:, None]
    r = tf.abs(c)
    magnitude = tf.abs(w)
    # Room of each coordinate in the direction that reduces the residual.
    room = tf.where(direction > 0, 1.0 - t, t)
    room = tf.where(magnitude > 0, room, 0.0)
    if norm == "linf":
        lam, feasible = _smallest_multiplier(magnitude, room, r)
        size = tf.minimum(lam[:, None], room)
    elif norm == "l2":
        # d_i = -lam w_i until the box stops it: sum_i w_i^2 min(lam, room_i / |w_i|).
        reach = tf.where(magnitude > 0, room / tf.where(magnitude > 0, magnitude, 1.0), NEVER)
        lam, feasible = _smallest_multiplier(tf.square(magnitude), tf.minimum(reach, NEVER), r)
        size = tf.minimum(lam[:, None] * magnitude, room)
    elif norm == "l1":
        # Greedy by |w_i|: the coordinate that moves <w, z> most per unit of L1 first.
        order = tf.argsort(magnitude, axis=1, direction="DESCENDING")
        gain = tf.gather(magnitude * room, order, batch_dims=1)
        before = tf.cumsum(gain, axis=1, exclusive=True)
        full = before + gain < r[:, None]
        feasible = tf.logical_not(full[:, -1])
        # The first coordinate that reaches r takes what is left, the ones before all room.
        last = tf.logical_and(tf.logical_not(full), before < r[:, None])
        ranked_w = tf.gather(magnitude, order, batch_dims=1)
        partial = (r[:, None] - before) / tf.where(ranked_w > 0, ranked_w, 1.0)
        ranked = tf.where(full, tf.gather(room, order, batch_dims=1),
                          tf.where(last, partial, 0.0))
        size = tf.scatter_nd(
            tf.stack([tf.broadcast_to(tf.range(tf.shape(t)[0])[:, None], tf.shape(order)),
                      order], axis=-1), ranked, tf.shape(t))
    else:
        raise ParameterError(f"norm must be one of {', '.join(FAB_NORMS)}, got {norm!r}")
    size = tf.where(feasible[:, None], size, room)
    return direction * size


def random_start(x: Tensor, ids: Tensor, total: Tensor, seed: Tensor, radius: Tensor,
                 norm: str) -> Tensor:
    """The authors' random start: x + radius * t / ||t||, clipped to [0, 1], with t uniform in
    [-1, 1]^d for L-inf and standard normal for L2 and L1. t is drawn for all ``total`` rows
    of the caller's batch and rows ``ids`` taken, so a sample's start does not depend on
    which others are attacked with it. radius 0: x itself."""
    shape = tf.concat([[total], tf.shape(x)[1:]], axis=0)
    if norm == "linf":
        t = tf.random.stateless_uniform(shape, seed, -1.0, 1.0)
    else:
        t = tf.random.stateless_normal(shape, seed)
    t = tf.gather(t, ids)
    scale = radius / tf.maximum(batch_norm(t, norm), GUARD)
    return tf.clip_by_value(x + tf.reshape(scale, [-1, 1, 1, 1]) * t, 0.0, 1.0)


def build_fab(model: Model, *, norm: str, targeted: bool, n_iter: int, alpha_max: float,
              eta: float, beta: float, image_shape: tuple[int, ...],
              num_classes: int) -> Callable[..., Any]:
    """One FAB run (one restart, one target) over a batch, as one function compiled by
    ``Attack.compiled``.

    The function takes x (n, H, W, C) float32, labels (n,) int32, targets (n,) int32 (read
    when ``targeted``), ids (n,) int32 and total (scalar) for the random start, seed (2,)
    int64 and radius (scalar float32; 0: start at x). It returns x_adv (n, H, W, C): the
    closest adversarial iterate found, x where none was; and distance (n,) float32: its
    norm, inf where none was found. Every sample runs all n_iter steps: a fooled sample keeps
    moving towards x0 (the attack minimises its norm), as in the authors' code.
    """

    def linearise(x1, labels, targets):
        """(f, g): f (n, k) the logit differences f_j - f_label at x1 whose hyperplanes are
        candidates, g (n, k, d) their gradients; the label's own column is +inf."""
        if targeted:
            with tf.GradientTape() as tape:
                tape.watch(x1)
                logits = model(x1, training=False)
                f = (tf.gather(logits, targets, batch_dims=1)
                     - tf.gather(logits, labels, batch_dims=1))
            g = tape.gradient(f, x1, unconnected_gradients=tf.UnconnectedGradients.ZERO)
            return f[:, None], _flat(g)[:, None]
        # One forward pass, one backward pass per class (a persistent tape), as the authors'
        # Jacobian; each class's gradient of the batch sum is every sample's own gradient.
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x1)
            logits = model(x1, training=False)
        rows = [_flat(tape.gradient(logits, x1, output_gradients=tf.one_hot(
            tf.fill([tf.shape(x1)[0]], j), num_classes),
            unconnected_gradients=tf.UnconnectedGradients.ZERO)) for j in range(num_classes)]
        del tape
        jacobian = tf.stack(rows, axis=1)
        f = logits - tf.gather(logits, labels, batch_dims=1)[:, None]
        g = jacobian - tf.gather(jacobian, labels, batch_dims=1)[:, None]
        is_label = tf.one_hot(labels, num_classes, on_value=True, off_value=False)
        return tf.where(is_label, tf.cast(np.inf, f.dtype), f), g

    def attack(x, labels, targets, ids, total, seed, radius):
        labels = tf.cast(labels, tf.int32)
        targets = tf.cast(targets, tf.int32)
        n = tf.shape(x)[0]
        x0 = _flat(x)
        x1 = random_start(x, ids, total, seed, radius, norm)
        best = tf.fill([n], tf.constant(np.inf, tf.float32))
        x_adv = x

        def cond(i, x1, x_adv, best):
            return i < n_iter

        def body(i, x1, x_adv, best):
            f, g = linearise(x1, labels, targets)
            # The hyperplane nearest in the attack's norm: |f_j| / ||g_j||_dual.
            dual = tf.reshape(batch_norm(tf.reshape(g, [-1, tf.shape(g)[2]]), DUAL[norm]),
                              tf.shape(f))
            nearest = tf.argmin(tf.abs(f) / (dual + GUARD), axis=1, output_type=tf.int32)
            w = tf.gather(g, nearest, batch_dims=1)
            f = tf.gather(f, nearest, batch_dims=1)
            flat1 = _flat(x1)
            # Residuals of x1 and x0 for the linearised boundary f + <w, z - x1> = 0.
            c1, c0 = f, f + tf.reduce_sum(w * (x0 - flat1), axis=1)
            steps = project(norm, tf.concat([flat1, x0], 0), tf.concat([w, w], 0),
                            tf.concat([c1, c0], 0))
            d1, d0 = steps[:n], steps[n:]
            a1 = tf.maximum(batch_norm(d1, norm), 1e-8)
            a0 = tf.maximum(batch_norm(d0, norm), 1e-8)
            alpha = tf.clip_by_value(a1 / (a1 + a0), 0.0, alpha_max)[:, None]
            moved = tf.clip_by_value((flat1 + eta * d1) * (1.0 - alpha)
                                     + (x0 + eta * d0) * alpha, 0.0, 1.0)
            x1 = tf.reshape(moved, tf.shape(x))
            logits = model(x1, training=False)
            # The walk steps back on the authors' test (the argmax leaves the label): on any
            # other test it takes another path. Stepping back only past float noise made the
            # median L-inf norm of FAB-T 6% larger than theirs on an MNIST CNN (fewer steps
            # back from points just across the boundary).
            fooled = tf.not_equal(tf.argmax(logits, axis=1, output_type=tf.int32), labels)
            # Kept only when decisively adversarial (ops.is_adversarial), so the success the
            # driver stores holds at any batch size.
            decisive = is_adversarial(logits, labels)
            distance = batch_norm(moved - x0, norm)
            closer = tf.logical_and(decisive, distance < best)
            x_adv = tf.where(closer[:, None, None, None], x1, x_adv)
            best = tf.where(closer, distance, best)
            # Back towards x0 after a success: the next steps search closer in.
            x1 = tf.where(fooled[:, None, None, None], x + beta * (x1 - x), x1)
            running = tf.reduce_sum(tf.cast(tf.math.is_inf(best), tf.int32))
            # Progress (advbench.core.progress): steps done, samples not fooled yet.
            return report_step(i + 1, running, budget=n_iter), x1, x_adv, best

        _, _, x_adv, best = tf.while_loop(cond, body, (tf.constant(0), x1, x_adv, best))
        return x_adv, best

    signature = ([tf.TensorSpec([None, *image_shape], tf.float32)]
                 + [tf.TensorSpec([None], tf.int32)] * 3
                 + [tf.TensorSpec([], tf.int32), tf.TensorSpec([2], tf.int64),
                    tf.TensorSpec([], tf.float32)])
    return compile_batch_function(attack, signature)


def build_final_search(model: Model, steps: int) -> Callable[..., Any]:
    """The authors' final search (fra31/fab-attack, ``linear_approximation_search``): on the
    segment from x0 (classified as the label) to x_adv (not), ``steps`` times the point where
    the linear interpolation of the margin f_label - f_other between the two ends is zero;
    it replaces the end on its side. Returns the adversarial end, never farther from x0."""

    def search(x0, x_adv, labels):
        labels = tf.cast(labels, tf.int32)
        inside, outside = x0, x_adv

        def margin(x, other):
            logits = model(x, training=False)
            return (tf.gather(logits, labels, batch_dims=1)
                    - tf.gather(logits, other, batch_dims=1))

        other = tf.argmax(model(outside, training=False), axis=1, output_type=tf.int32)
        for _ in range(steps):
            m_in, m_out = margin(inside, other), margin(outside, other)
            t = m_in / (m_in - m_out + 1e-10)
            t = tf.where(tf.logical_and(t >= 0.0, t <= 1.0), t, 1.0)[:, None, None, None]
            point = inside * (1.0 - t) + outside * t
            logits = model(point, training=False)
            fooled = is_adversarial(logits, labels)
            inside = tf.where(fooled[:, None, None, None], inside, point)
            outside = tf.where(fooled[:, None, None, None], point, outside)
            other = tf.where(fooled, tf.argmax(logits, axis=1, output_type=tf.int32), other)
        return outside

    return search


class FAB(EnsembleMember):
    """FAB, untargeted: the closest adversarial found over ``n_restarts`` runs of ``n_iter``
    steps (the first from x, the others from random points), in L-inf, L2 or L1.

    Croce and Hein, ICML 2020, https://arxiv.org/abs/1907.02044; see the module docstring
    for the step. Each step costs one forward pass, one backward pass per class (the full
    Jacobian of the logits) and one forward pass for the check, as the authors' code.

    Two uses, as in the authors' code:
    - ``eps=None`` (default): a minimal attack. Every run attacks every sample the model
      classifies correctly and a sample keeps the closest adversarial over all runs; samples
      never fooled are returned unchanged. Its artifacts feed the empirical robustness like
      DeepFool's. Restarts start at ``START_EPS[norm] / 2`` from x (the authors' default eps).
    - ``eps`` given: a bounded attack, FAB as AutoAttack runs it (the authors' ``perturb``):
      a run's closest adversarial counts only within eps of x (in float64), later runs attack
      only the samples no run has fooled within eps, and a sample keeps the adversarial of
      the first run that fooled it within eps; the others are returned unchanged. Restarts
      start at eps / 2 from x.

    Args:
        norm: "linf" (default), "l2" or "l1".
        eps: None (default: minimal) or the budget, >= 0.
        n_restarts: runs, >= 1 (default 1, the authors'; AutoAttack's "plus" version uses 5).
        n_iter: steps per run, >= 1 (default 100).
        alpha_max: largest weight of the projection of x0 in a step, in [0, 1] (default 0.1).
        eta: overshoot of the projections, >= 1 (default 1.05).
        beta: pull back towards x0 after a success, in (0, 1] (default 0.9).
        final_search: steps of the original code's final search along the segment from x0 to
            the adversarial (``build_final_search``), in [0, 100] (default 0: AutoAttack's
            code has none; the original's ``--las`` takes 3).

    Input: x float32 (batch, H, W, C) in [0, 1]; y int (batch,). Output: ``x_adv`` in [0, 1];
    samples the model misclassifies are returned unchanged.

    Example:
        >>> out = FAB(norm="l2")(model, x, y, seed=0)          # minimal
        >>> out = FAB(norm="linf", eps=0.3)(model, x, y)       # within 0.3, as in AutoAttack
    """

    name = "fab"
    minimal = True  # without eps; an instance with eps is bounded (``self.minimal``)
    randomized = True
    targeted: ClassVar[bool] = False

    def __post_init__(self) -> None:
        self.minimal = self.eps is None

    def ranked(self, logits: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
        """int (n, runs): the target of each run per sample (FAB: the label, unused)."""
        return labels[:, None]

    def run_on(self, model: Model, x: np.ndarray, y: np.ndarray, *, seed: int, ids: np.ndarray,
               total: int, logits: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """``EnsembleMember.run_on``; fooled: adversarial within eps when given."""
        num_classes = int(model.output_shape[-1])  # labels: checked by Attack.__call__
        if num_classes < 2:
            raise ParameterError(f"attack {self.name!r} needs a model with at least 2 classes, "
                                 f"got {num_classes}")
        labels = y.astype(np.int32)
        logits = self.clean_logits(model, x, logits)
        attack = logits.argmax(axis=1) == labels
        ranked = self.ranked(logits, labels, num_classes).astype(np.int32)
        fn = self.compiled(model, f"fab-{self.norm}", lambda: build_fab(
            model, norm=self.norm, targeted=self.targeted, n_iter=self.n_iter,
            alpha_max=self.alpha_max, eta=self.eta, beta=self.beta,
            image_shape=tuple(model.input_shape[1:]), num_classes=num_classes))
        x_adv = x.copy()
        best = np.full(len(x), np.inf)
        target = np.full(len(x), -1, np.int64)
        radius = (START_EPS[self.norm] if self.eps is None else self.eps) / 2.0
        for rank in range(ranked.shape[1]):
            targets = ranked[:, rank]
            for restart in range(self.n_restarts):
                # Minimal: every run may find a closer point. Bounded: only samples not yet
                # fooled within eps, as the authors' perturb.
                todo = np.flatnonzero(attack & (np.isinf(best) | (self.eps is None)))
                if todo.size == 0:
                    break
                # Which run of the batch this is, and, since a minimal run walks every
                # sample to its last step, the samples it has not fooled yet (not "running").
                run = (f"target {rank + 1}/{ranked.shape[1]}, " if self.targeted else "") + (
                    f"restart {restart + 1}/{self.n_restarts}")
                progress.iterations(self.n_iter, label=f"{self.name} {run}, step",
                                    samples=todo.size, running="samples still to fool")
                out_x, out_distance = fn(
                    tf.constant(x[todo]), tf.constant(labels[todo]), tf.constant(targets[todo]),
                    tf.constant(ids[todo].astype(np.int32)), tf.constant(total, tf.int32),
                    tf.constant([seed, rank * self.n_restarts + restart], tf.int64),
                    tf.constant(0.0 if restart == 0 else radius, tf.float32))
                out_x, found = out_x.numpy(), np.isfinite(out_distance.numpy())
                # Norms in float64 on the float32 points: the budget holds exactly as
                # evaluate measures it.
                distance = np.where(found, NORMS[self.norm].sizes(x[todo], out_x).numpy(),
                                    np.inf)
                if self.eps is not None:
                    distance[distance > self.eps] = np.inf
                better = distance < best[todo]
                x_adv[todo[better]] = out_x[better]
                best[todo[better]] = distance[better]
                target[todo[better]] = targets[todo[better]]
        fooled = np.isfinite(best)
        if self.final_search and fooled.any():
            search = self.compiled(model, f"fab-search-{self.final_search}",
                                   lambda: build_final_search(model, self.final_search))
            rows = np.flatnonzero(fooled & attack)
            searched = search(tf.constant(x[rows]), tf.constant(x_adv[rows]),
                              tf.constant(labels[rows])).numpy()
            # On the segment, so never farther; float32 rounding could still add an ulp.
            keep = NORMS[self.norm].sizes(x[rows], searched).numpy() <= best[rows]
            x_adv[rows[keep]] = searched[keep]
        extras = {"target": target} if self.targeted else {}
        return x_adv, fooled | ~attack, extras


class FABTargeted(FAB):
    """FAB-T: FAB on the hyperplane of one target class at a time, the ``n_target_classes``
    classes of largest clean logits other than the label, each with ``n_restarts`` runs: the
    third attack of AutoAttack's standard version (1 restart, 9 targets, 100 steps).

    An untargeted attack from the outside, as in AutoAttack: a run records an iterate as
    soon as the prediction leaves the label, whichever class it goes to; it chooses its own
    targets and never the label. Each step costs one forward and one backward pass (the
    gradient of f_target - f_label) and one forward pass for the check: on models with many
    classes far cheaper than FAB's full Jacobian. With fewer than n_target_classes + 1
    classes every other class is a target. Minimal without eps, bounded with it, as ``FAB``.

    Args: those of ``FAB``, and
        n_target_classes: how many of the top other classes to target, >= 1 (default 9).

    Output: as ``FAB``, with ``extras["target"]`` (batch,) int64: the target of the run that
    gave the returned adversarial, -1 where none was found or the model misclassifies x.

    Example:
        >>> out = FABTargeted(norm="linf", eps=0.3)(model, x, y, seed=0)
        >>> out.extras["target"]  # never equal to y
    """

    name = "fab-t"
    targeted = True

    def ranked(self, logits: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
        return ranked_targets(logits, labels, min(self.n_target_classes, num_classes - 1))
