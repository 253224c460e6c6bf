"""Auto-PGD, the shared core of ``apgd-ce``, ``apgd-dlr`` and ``apgd-t``.

Croce and Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks", ICML 2020, https://arxiv.org/abs/2003.01690 (Algorithm 1, Section 3),
checked against the authors' code (github.com/fra31/auto-attack, ``autopgd_base.py``).

APGD is PGD with momentum and a step size that needs no tuning: it starts at 2 * eps and is
halved at checkpoints w_j = ceil(p_j * n_iter), p_0 = 0, p_1 = 0.22,
p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06), for each sample whose loss rose in at most
a fraction rho of the steps since the last checkpoint (condition 1), or whose step size was
not halved at the last checkpoint and whose best loss did not improve since (condition 2).
A halved sample restarts from its best point. The modules ``apgd_ce``, ``apgd_dlr`` and
``apgd_t`` pick the loss; this one holds the loop, the losses and the restart driver.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar

import numpy as np
import tensorflow as tf

from advbench.attacks.base import EnsembleMember
from advbench.attacks.norms import NORMS, check_norm
from advbench.core import progress
from advbench.core.errors import ParameterError
from advbench.core.ops import batch_norm, expand_to, logit_margin, report_step
from advbench.core.types import Model, Tensor

#: Weight of the new step against the previous move (the paper's alpha), from step 2 on.
MOMENTUM = 0.75
#: The first step size, in units of eps (the paper's eta^(0) = 2 eps).
INITIAL_STEP = 2.0
#: Keeps the DLR ratio finite when the top logits tie (the authors' 1e-12).
DLR_GUARD = 1e-12


def checkpoint_lengths(n_iter: int) -> np.ndarray:
    """int32 (n_iter,): at index i the length of the window that ends after step i + 1 when
    that step is a checkpoint, else 0.

    The windows shrink from 22% of the budget by 3% a checkpoint down to 6%, in whole steps
    as the authors' code counts them (max(int(0.22 n), 1), then minus max(int(0.03 n), 1),
    at least max(int(0.06 n), 1)); for n_iter = 100 the checkpoints fall after steps 22, 41,
    57, 70, 80, 87, 93 and 99, the paper's ceil(p_j * 100).
    """
    lengths = np.zeros(n_iter, np.int32)
    window = max(int(0.22 * n_iter), 1)
    shrink, smallest = max(int(0.03 * n_iter), 1), max(int(0.06 * n_iter), 1)
    end = window
    while end <= n_iter:
        lengths[end - 1] = window
        window = max(window - shrink, smallest)
        end += window
    return lengths


def label_logit(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """logits[i, labels[i]], (batch,)."""
    return tf.gather(logits, tf.cast(labels, tf.int32), batch_dims=1)


def dlr_loss(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """The difference-of-logits-ratio loss per sample, (batch,), to be maximised:
    -(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3), z sorted decreasingly as z_pi1 >= z_pi2 >= ...
    (the paper's equation 6). Invariant to shifting and scaling the logits, so a model that
    scales its logits up to saturate the softmax does not flatten it. Needs 3 classes."""
    top = tf.math.top_k(logits, k=3).values
    own, other = logit_margin(logits, labels)
    return -(own - other) / (top[:, 0] - top[:, 2] + DLR_GUARD)


def dlr_targeted_loss(logits: tf.Tensor, labels: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
    """The targeted DLR loss per sample, (batch,), to be maximised:
    -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2) (the paper's equation 7). Needs 4 classes."""
    top = tf.math.top_k(logits, k=4).values
    scale = top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + DLR_GUARD
    return -(label_logit(logits, labels) - label_logit(logits, targets)) / scale


def per_sample_loss(name: str, logits: Tensor, labels: Tensor, targets: Tensor) -> Tensor:
    """The loss ``name`` ("ce", "dlr" or "dlr-targeted") per sample, (batch,), to maximise."""
    if name == "ce":
        return tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=tf.cast(labels, tf.int32), logits=logits)
    if name == "dlr":
        return dlr_loss(logits, labels)
    return dlr_targeted_loss(logits, labels, targets)


#: Classes a loss needs: the DLR denominators read the 3rd (4th) largest logit.
MIN_CLASSES = {"ce": 2, "dlr": 3, "dlr-targeted": 4}


def start_point(x: Tensor, ids: Tensor, total: Tensor, seed: Tensor, eps: float,
                norm: str) -> Tensor:
    """The authors' random start: x + eps * t / ||t|| (t uniform in [-1, 1]^d for L-inf, so
    that ||delta||_inf = eps; standard normal for L2, on the sphere of radius eps), clipped to
    [0, 1]. t is drawn for all ``total`` samples of the caller's batch and row ``ids`` taken,
    so a sample's start does not depend on which other samples are attacked with it."""
    shape = tf.concat([[total], tf.shape(x)[1:]], axis=0)
    delta = tf.gather(NORMS[norm].random_unit(shape, seed), ids)
    return tf.clip_by_value(x + eps * delta, 0.0, 1.0)


def batch_signature(image_shape: tuple[int, ...], int_vectors: int) -> list[tf.TensorSpec]:
    """Specs of (x, int_vectors int32 vectors, total, seed) for any batch size: one trace
    serves every batch, however many samples are still running (``Attack.compiled`` traces
    the shapes it sees, twice before it relaxes the batch size)."""
    return ([tf.TensorSpec([None, *image_shape], tf.float32)]
            + [tf.TensorSpec([None], tf.int32)] * int_vectors
            + [tf.TensorSpec([], tf.int32), tf.TensorSpec([2], tf.int64)])


def compile_batch_function(attack: Callable[..., Any],
                           signature: list[tf.TensorSpec]) -> Callable[..., Any]:
    """``attack`` as a ``tf.function`` of ``signature``, without AutoGraph: the loops of
    APGD, FAB and Square are written with ``tf.while_loop`` and ``tf.cond`` and branch in
    Python only on Python values, so AutoGraph has nothing to convert, but converting every
    function called (the model's layers included) took most of the trace: 8.1 million
    Python calls against 1.3 million without it for APGD-T on the CIFAR-10 CNN
    (docs/performance.md). The graph is the same."""
    return tf.function(attack, input_signature=signature, autograph=False)


def drop(state: dict, keep: tf.Tensor) -> dict:
    """Every per-sample tensor of ``state`` restricted to the rows where ``keep``; the state
    itself when all are kept (most steps once the easy samples are gone: no copies)."""
    def compact() -> dict:
        # One index vector for every tensor: a boolean_mask per tensor traces ten ops each.
        rows = tf.reshape(tf.where(keep), [-1])
        return {k: tf.gather(v, rows) for k, v in state.items()}

    return tf.cond(tf.reduce_all(keep), lambda: dict(state), compact)


def loss_value_and_gradient(model: Model, loss: str, eot_iter: int) -> Callable[..., Any]:
    """(x_adv, labels, targets) -> (loss per sample, its input gradient, logits), for use
    inside ``tf.function``. With eot_iter > 1 the loss and the gradient are averaged over
    eot_iter passes (Expectation over Transformation: the model's own randomness is drawn
    anew in each) and the logits are the last pass's, as in the authors' code."""
    def one_pass(x_adv, labels, targets):
        with tf.GradientTape() as tape:
            tape.watch(x_adv)
            logits = model(x_adv, training=False)
            value = per_sample_loss(loss, logits, labels, targets)
        # A model with no gradient path to its input (a stop_gradient quantiser) gets a
        # zero gradient, not None: APGD then stays at its start, as it should.
        grad = tape.gradient(value, x_adv, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        return value, grad, logits

    def value_and_gradient(x_adv, labels, targets):
        value, grad, logits = one_pass(x_adv, labels, targets)
        if eot_iter > 1:
            def body(j, value, grad, logits):
                v, g, lg = one_pass(x_adv, labels, targets)
                return j + 1, value + v, grad + g, lg
            _, value, grad, logits = tf.while_loop(
                lambda j, *_: j < eot_iter, body, (tf.constant(1), value, grad, logits))
            value, grad = value / eot_iter, grad / eot_iter
        return value, grad, logits

    return value_and_gradient


def is_fooled(logits: Tensor, labels: Tensor) -> Tensor:
    """(batch,) bool: the top logit is not the label's (the authors' criterion)."""
    return tf.not_equal(tf.argmax(logits, axis=1, output_type=tf.int32), labels)


def freeze_fooled(state: dict, fooled: Tensor, x_new: Tensor, out_x: Tensor,
                  out_fooled: Tensor, out_loss: Tensor) -> tuple[dict, Tensor, Tensor, Tensor]:
    """The samples of ``state`` just ``fooled`` (bool, running samples) recorded at their
    iterate ``x_new`` in the outputs (out_x, out_fooled, out_loss = -inf, rows of the batch)
    and dropped from the state: (state, out_x, out_fooled, out_loss)."""
    rows = tf.boolean_mask(state["row"], fooled)[:, None]
    out_x = tf.tensor_scatter_nd_update(out_x, rows, tf.boolean_mask(x_new, fooled))
    out_fooled = tf.tensor_scatter_nd_update(out_fooled, rows, tf.ones_like(rows[:, 0], tf.bool))
    out_loss = tf.tensor_scatter_nd_update(
        out_loss, rows, tf.fill(tf.shape(rows[:, 0]), tf.cast(-np.inf, tf.float32)))
    return drop(state, tf.logical_not(fooled)), out_x, out_fooled, out_loss


def run_loop(cond: Callable[..., Any], body: Callable[..., Any], state: dict, out_x: Tensor,
             out_fooled: Tensor, out_loss: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """One APGD run's ``tf.while_loop`` over (step, state, out_x, out_fooled, out_loss), the
    state shrinking as samples are fooled; then the samples still running get their
    highest-loss point and its loss. Returns (out_x, out_fooled, out_loss)."""
    invariants = {k: tf.TensorShape([None]).concatenate(v.shape[1:]) for k, v in state.items()}
    _, state, out_x, out_fooled, out_loss = tf.while_loop(
        cond, body, (tf.constant(0), state, out_x, out_fooled, out_loss),
        shape_invariants=(tf.TensorShape([]), invariants, out_x.shape, out_fooled.shape,
                          out_loss.shape))
    rows = state["row"][:, None]
    out_x = tf.tensor_scatter_nd_update(out_x, rows, state["x_best"])
    out_loss = tf.tensor_scatter_nd_update(out_loss, rows, state["loss_best"])
    return out_x, out_fooled, out_loss


def build_apgd(model: Model, *, loss: str, eps: float, norm: str, n_iter: int, rho: float,
               eot_iter: int, image_shape: tuple[int, ...]) -> Callable[..., Any]:
    """One APGD run (one restart, one target) over a batch, as one function compiled by
    ``Attack.compiled``.

    The function takes x (n, H, W, C) float32, labels (n,) int32, targets (n,) int32 (read by
    the targeted loss only), ids (n,) int32 and total (scalar): the rows of the caller's
    batch these samples are, for the random start, and seed (2,) int64. It returns
    x_adv (n, H, W, C): the first adversarial iterate for samples fooled, the highest-loss
    iterate for the others; fooled (n,) bool: the prediction left the label; and
    best_loss (n,) float32 (the loss at x_adv; -inf for fooled samples).

    Per-sample early stop: a sample fooled at some iterate is frozen there and dropped from
    the state, so the later steps run on a smaller batch; the loop ends when none is left.
    """
    lengths = tf.constant(checkpoint_lengths(n_iter))
    ball = NORMS[norm]
    value_and_gradient = loss_value_and_gradient(model, loss, eot_iter)

    def attack(x, labels, targets, ids, total, seed):
        labels = tf.cast(labels, tf.int32)
        targets = tf.cast(targets, tf.int32)
        n = tf.shape(x)[0]
        x_start = start_point(x, ids, total, seed, eps, norm)
        value, grad, logits = value_and_gradient(x_start, labels, targets)
        fooled = is_fooled(logits, labels)
        out_x = x_start
        out_fooled = fooled
        out_loss = tf.where(fooled, tf.cast(-np.inf, tf.float32), value)
        state = {
            "row": tf.range(n), "x": x, "labels": labels, "targets": targets,
            "x_now": x_start, "x_prev": x_start, "grad": grad, "loss_prev": value,
            "x_best": x_start, "grad_best": grad, "loss_best": value,
            "step": tf.fill([n], tf.constant(INITIAL_STEP * eps, tf.float32)),
            "increases": tf.zeros([n], tf.float32),
            "loss_best_check": value,
            # The authors' code starts as if the step had just been halved, so condition 2
            # cannot fire at the first checkpoint.
            "reduced_check": tf.ones([n], tf.bool),
        }
        state = drop(state, tf.logical_not(fooled))

        def cond(i, state, out_x, out_fooled, out_loss):
            return tf.logical_and(i < n_iter, tf.size(state["row"]) > 0)

        def body(i, s, out_x, out_fooled, out_loss):
            s = dict(s)
            weight = tf.where(i == 0, 1.0, MOMENTUM)
            x_now, x0 = s["x_now"], s["x"]
            z = ball.project(x0, x_now + expand_to(s["step"], x_now) * ball.normalise(s["grad"]),
                             eps)
            x_new = ball.project(
                x0, x_now + weight * (z - x_now) + (1.0 - weight) * (x_now - s["x_prev"]), eps)
            value, grad, logits = value_and_gradient(x_new, s["labels"], s["targets"])
            fooled = is_fooled(logits, s["labels"])

            s["increases"] += tf.cast(value > s["loss_prev"], tf.float32)
            improved = value > s["loss_best"]
            s["x_best"] = tf.where(expand_to(improved, x_new), x_new, s["x_best"])
            s["grad_best"] = tf.where(expand_to(improved, x_new), grad, s["grad_best"])
            s["loss_best"] = tf.where(improved, value, s["loss_best"])
            s["x_prev"], s["x_now"], s["grad"], s["loss_prev"] = x_now, x_new, grad, value

            window = tf.cast(lengths[i], tf.float32)
            checkpoint = window > 0
            # Condition 1 with the authors' "<=" (the paper writes "<").
            oscillating = s["increases"] <= rho * window
            stalled = tf.logical_and(tf.logical_not(s["reduced_check"]),
                                     s["loss_best_check"] >= s["loss_best"])
            halve = tf.logical_and(checkpoint, tf.logical_or(oscillating, stalled))
            s["step"] = tf.where(halve, s["step"] / 2.0, s["step"])
            # Restart from the best point; x_prev is kept, as in the authors' code, so the
            # next momentum term is x_best - (the iterate before the last).
            s["x_now"] = tf.where(expand_to(halve, x_new), s["x_best"], s["x_now"])
            s["grad"] = tf.where(expand_to(halve, x_new), s["grad_best"], s["grad"])
            s["loss_prev"] = tf.where(halve, s["loss_best"], s["loss_prev"])
            s["reduced_check"] = tf.where(checkpoint, halve, s["reduced_check"])
            s["loss_best_check"] = tf.where(checkpoint, s["loss_best"], s["loss_best_check"])
            s["increases"] = tf.where(checkpoint, tf.zeros_like(s["increases"]), s["increases"])

            s, out_x, out_fooled, out_loss = freeze_fooled(s, fooled, x_new, out_x, out_fooled,
                                                           out_loss)
            # Progress (advbench.core.progress): iterations of this run done, samples running.
            return (report_step(i + 1, tf.size(s["row"]), budget=n_iter), s, out_x, out_fooled,
                    out_loss)

        return run_loop(cond, body, state, out_x, out_fooled, out_loss)

    return compile_batch_function(attack, batch_signature(image_shape, 3))


# -- l1-APGD ---------------------------------------------------------------------------------
#: l1-APGD's sparsity schedule (Croce and Hein, "Mind the box", ICML 2021, Section 3.3, as the
#: authors' ``autopgd_base.py`` runs it): the first step moves the 20% of coordinates with the
#: largest gradient; every max(int(0.04 n_iter), 1) steps the fraction becomes the sparsity of
#: the best point over 1.5, and the step size (eps at first) returns to eps if that sparsity
#: fell by 5% since the last checkpoint (the sample restarts from its best point), else is
#: divided by 1.5, never below eps / 10. No momentum.
L1_FIRST_FRACTION = 0.2
L1_CHECK_EVERY = 0.04
L1_SPARSITY_OVER = 1.5
L1_SPARSITY_FALL = 0.95
L1_STEP_DIVISOR = 1.5
L1_SMALLEST_STEP = 0.1
#: AutoAttack's L1 "large reps" schedule (``use_largereps``): three APGD runs chained by their
#: highest-loss points, at 3, 2 and 1 times eps, with 30%, 30% and the rest of the iterations;
#: only the last, at eps, counts adversarials.
LARGEREPS_RADII = (3.0, 2.0, 1.0)
LARGEREPS_SHARES = (0.3, 0.3)


def largereps_schedule(n_iter: int) -> list[tuple[float, int]]:
    """(eps factor, iterations) of each run of the large-reps schedule: ceil(0.3 n_iter)
    twice, then what is left (for n_iter = 100: 30, 30, 40; a run left with none only
    evaluates its start, as in the authors' code)."""
    first = [int(np.ceil(share * n_iter)) for share in LARGEREPS_SHARES]
    return list(zip(LARGEREPS_RADII, first + [max(n_iter - sum(first), 0)]))


def build_apgd_l1(model: Model, *, loss: str, eps: float, n_iter: int, eot_iter: int,
                  use_largereps: bool, image_shape: tuple[int, ...]) -> Callable[..., Any]:
    """One l1-APGD run (one restart, one target) over a batch, with the signature and
    outputs of ``build_apgd``'s function.

    The step moves the coordinates whose |gradient| is in the top fraction (``L1_*``) by
    step * sign(g) / (their count), then projects onto the L1 ball intersected with the box
    (``norms.l1_box_projection``). The start is x plus a standard normal draw projected onto
    that set. With ``use_largereps`` the run is the chain of ``largereps_schedule``: the draw
    is projected at 3 eps, each run starts from the previous one's highest-loss point
    projected at its own radius with the step fraction set from that point's sparsity, and
    only the last run (at eps) stops samples at their first adversarial iterate.
    """
    ball = NORMS["l1"]
    value_and_gradient = loss_value_and_gradient(model, loss, eot_iter)
    dim = int(np.prod(image_shape))
    stages = largereps_schedule(n_iter) if use_largereps else [(1.0, n_iter)]

    def sparsity(v):
        return batch_norm(v, "l0")

    def run_stage(x, labels, targets, x_start, fraction, sparsity_before, radius, steps,
                  offset, last):
        """One APGD run of ``steps`` at ``radius`` from x_start. Returns (x_adv, fooled,
        best_loss) as ``build_apgd``'s function when ``last``, else (x_best, None, None)."""
        n = tf.shape(x)[0]
        check_every = max(int(L1_CHECK_EVERY * steps), 1)
        value, grad, logits = value_and_gradient(x_start, labels, targets)
        fooled = is_fooled(logits, labels) if last else tf.zeros([n], tf.bool)
        out_x = x_start
        out_fooled = fooled
        out_loss = tf.where(fooled, tf.cast(-np.inf, tf.float32), value)
        state = {
            "row": tf.range(n), "x": x, "labels": labels, "targets": targets,
            "x_now": x_start, "grad": grad, "x_best": x_start, "grad_best": grad,
            "loss_best": value, "step": tf.fill([n], tf.constant(radius, tf.float32)),
            "fraction": fraction, "sparsity": sparsity_before,
        }
        state = drop(state, tf.logical_not(fooled))

        def cond(i, state, out_x, out_fooled, out_loss):
            return tf.logical_and(i < steps, tf.size(state["row"]) > 0)

        def body(i, s, out_x, out_fooled, out_loss):
            s = dict(s)
            x0, grad = s["x"], s["grad"]
            size = tf.reshape(tf.abs(grad), [tf.shape(grad)[0], -1])
            rank = tf.cast(tf.clip_by_value((1.0 - s["fraction"]) * dim, 0.0, dim - 1.0),
                           tf.int32)
            # sorted(size)[rank] is the (dim - rank)-th largest: top_k of the batch's largest
            # such k sorts only that head (a fifth of the pixels at first, then the
            # perturbation's sparsity / 1.5), not all of them.
            head = dim - rank
            largest = tf.math.top_k(size, k=tf.reduce_max(head)).values
            threshold = tf.gather(largest, head - 1, batch_dims=1)
            direction = tf.sign(grad) * tf.cast(tf.abs(grad) >= expand_to(threshold, grad),
                                                grad.dtype)
            step = expand_to(s["step"], grad) * direction / (
                expand_to(batch_norm(direction, "l1"), grad) + 1e-10)
            x_new = ball.project(x0, s["x_now"] + step, radius)
            value, grad, logits = value_and_gradient(x_new, s["labels"], s["targets"])
            fooled = (is_fooled(logits, s["labels"]) if last
                      else tf.zeros_like(s["row"], tf.bool))
            improved = value > s["loss_best"]
            s["x_best"] = tf.where(expand_to(improved, x_new), x_new, s["x_best"])
            s["grad_best"] = tf.where(expand_to(improved, x_new), grad, s["grad_best"])
            s["loss_best"] = tf.where(improved, value, s["loss_best"])
            s["x_now"], s["grad"] = x_new, grad

            checkpoint = tf.equal((i + 1) % check_every, 0)
            now = sparsity(s["x_best"] - x0)
            # 0 / 0 is NaN and never < 0.95, as in the authors' code.
            fell = tf.logical_and(checkpoint, now / s["sparsity"] < L1_SPARSITY_FALL)
            s["fraction"] = tf.where(checkpoint, now / dim / L1_SPARSITY_OVER, s["fraction"])
            s["step"] = tf.clip_by_value(
                tf.where(fell, radius, tf.where(checkpoint, s["step"] / L1_STEP_DIVISOR,
                                                s["step"])),
                L1_SMALLEST_STEP * radius, radius)
            s["sparsity"] = tf.where(checkpoint, now, s["sparsity"])
            s["x_now"] = tf.where(expand_to(fell, x_new), s["x_best"], s["x_now"])
            s["grad"] = tf.where(expand_to(fell, x_new), s["grad_best"], s["grad"])

            if last:
                s, out_x, out_fooled, out_loss = freeze_fooled(s, fooled, x_new, out_x,
                                                               out_fooled, out_loss)
            return (report_step(offset + i + 1, tf.size(s["row"]), budget=n_iter) - offset, s,
                    out_x, out_fooled, out_loss)

        out_x, out_fooled, out_loss = run_loop(cond, body, state, out_x, out_fooled, out_loss)
        return (out_x, out_fooled, out_loss) if last else (out_x, None, None)

    def attack(x, labels, targets, ids, total, seed):
        labels = tf.cast(labels, tf.int32)
        targets = tf.cast(targets, tf.int32)
        n = tf.shape(x)[0]
        shape = tf.concat([[total], tf.shape(x)[1:]], axis=0)
        noise = tf.gather(tf.random.stateless_normal(shape, seed), ids)
        first = stages[0][0] * eps
        x_point = ball.project(x, x + noise, first)
        offset = 0
        for index, (factor, steps) in enumerate(stages):
            radius = factor * eps
            if use_largereps:
                x_start = ball.project(x, x_point, radius)
                nonzero = sparsity(x_start - x)
                fraction, before = nonzero / dim / L1_SPARSITY_OVER, nonzero
            else:
                x_start = x_point
                fraction = tf.fill([n], tf.constant(L1_FIRST_FRACTION, tf.float32))
                before = tf.fill([n], tf.constant(float(dim), tf.float32))
            last = index == len(stages) - 1
            result = run_stage(x, labels, targets, x_start, fraction, before, radius, steps,
                               offset, last)
            x_point = result[0]
            offset += steps
        return result

    return compile_batch_function(attack, batch_signature(image_shape, 3))


class AutoPGD(EnsembleMember):
    """Auto-PGD with one loss (set by the subclass): ``n_restarts`` runs from random starts,
    each on the samples no run has fooled yet. See the module docstring for the algorithm.

    Subclasses set ``name`` and ``loss`` ("ce" or "dlr"; ``apgd_t`` overrides ``run_on`` for
    the targeted loss). Samples the model already misclassifies are returned unchanged.
    A sample fooled by a run gets that run's first adversarial iterate; the others get the
    highest-loss point over all runs, which is inside the ball.
    """

    loss: ClassVar[str] = "ce"
    randomized = True

    def __post_init__(self) -> None:
        check_norm(self.norm, self.name)  # l1 is for the attacks of L1_ATTACKS
        if self.use_largereps and self.norm != "l1":
            raise ParameterError(f"use_largereps is AutoAttack's schedule for norm l1; attack "
                                 f"{self.name!r} got norm {self.norm!r}: drop use_largereps or "
                                 "use norm l1")

    # -- shared by the APGD attacks ---------------------------------------------------------

    def check_classes(self, model: Model, y: np.ndarray, loss: str) -> int:
        """The model's number of classes, after checking that the loss applies (labels: by
        Attack.__call__)."""
        num_classes = int(model.output_shape[-1])
        if num_classes < MIN_CLASSES[loss]:
            raise ParameterError(
                f"attack {self.name!r} needs a model with at least {MIN_CLASSES[loss]} classes "
                f"(its loss reads the logits ranked below the top two), got {num_classes}")
        return num_classes

    def apgd_function(self, model: Model, loss: str) -> Callable[..., Any]:
        image_shape = tuple(model.input_shape[1:])
        if self.norm == "l1":
            # rho plays no part in l1-APGD: its step size follows the sparsity (L1_*).
            return self.compiled(model, f"apgd-{loss}", lambda: build_apgd_l1(
                model, loss=loss, eps=self.eps, n_iter=self.n_iter, eot_iter=self.eot_iter,
                use_largereps=self.use_largereps, image_shape=image_shape))
        return self.compiled(model, f"apgd-{loss}", lambda: build_apgd(
            model, loss=loss, eps=self.eps, norm=self.norm, n_iter=self.n_iter, rho=self.rho,
            eot_iter=self.eot_iter, image_shape=image_shape))

    def fold_run(self, fn: Callable[..., Any], x: np.ndarray, labels: np.ndarray,
                 targets: np.ndarray, ids: np.ndarray, total: int, run_seed: list[int],
                 attack: np.ndarray, result: tuple[np.ndarray, np.ndarray, np.ndarray]
                 ) -> np.ndarray | None:
        """Run ``fn`` once, seeded with ``run_seed`` (a pair), on the samples of ``attack``
        (bool, n) not yet fooled, and fold it into ``result`` = (x_adv, fooled, best_loss),
        updated in place: a fooled sample takes its adversarial, the others keep the point of
        highest loss so far. Returns the rows whose point changed (None if none was left)."""
        x_adv, fooled, best_loss = result
        todo = np.flatnonzero(attack & ~fooled)
        if todo.size == 0:
            return None
        progress.iterations(self.n_iter, label=f"{self.name} iteration", samples=todo.size)
        out_x, out_fooled, out_loss = fn(
            tf.constant(x[todo]), tf.constant(labels[todo]), tf.constant(targets[todo]),
            tf.constant(ids[todo]), tf.constant(total, tf.int32),
            tf.constant(run_seed, tf.int64))
        out_x, out_fooled, out_loss = out_x.numpy(), out_fooled.numpy(), out_loss.numpy()
        better = out_fooled | (out_loss > best_loss[todo])
        x_adv[todo[better]] = out_x[better]
        best_loss[todo[better]] = out_loss[better]
        fooled[todo[out_fooled]] = True
        return todo[better]

    def run_on(self, model: Model, x: np.ndarray, y: np.ndarray, *, seed: int, ids: np.ndarray,
               total: int, logits: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        self.check_classes(model, y, self.loss)
        labels = y.astype(np.int32)
        attack = self.clean_logits(model, x, logits).argmax(axis=1) == labels
        x_adv = x.copy()
        fooled = np.zeros(len(x), bool)
        best_loss = np.full(len(x), -np.inf, np.float32)
        fn = self.apgd_function(model, self.loss)
        for restart in range(self.n_restarts):
            self.fold_run(fn, x, labels, labels, ids.astype(np.int32), total, [seed, restart],
                          attack, (x_adv, fooled, best_loss))
        return self.held(x, x_adv), fooled | ~attack, {}
