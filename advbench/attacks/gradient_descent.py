"""The one loop of the fixed-budget gradient attacks (FGSM, R+FGSM, PGD): from a start point,
``steps`` steps of the loss gradient normalised by a norm strategy (``norms.Norm``), each
followed by the projection onto the eps ball when the path can leave it. FGSM is the
one-step case from x, R+FGSM the one-step case from a random sign step, PGD the iterated one
from a random point of the ball (the structure of foolbox 3's ``gradient_descent_base``).

An attack of this family says how it walks at a given eps (``GradientDescent.plan``), so eps
can be given at call time, one value or a list (``attack(model, x, y, eps=[...])``), and a
one-step attack's path is a straight line per sample (``GradientDescent.line``): curves
score every eps of a grid from one gradient per sample.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, Sequence

import numpy as np
from numpy.typing import ArrayLike
import tensorflow as tf

from advbench.attacks.base import Attack, AttackOutput
from advbench.attacks.norms import NORMS, Norm
from advbench.core import progress
from advbench.core.checks import check_range
from advbench.core.errors import ParameterError
from advbench.core.ops import expand_to, is_adversarial, loss_gradient, report_step
from advbench.core.types import Model


@dataclasses.dataclass(frozen=True)
class Plan:
    """How a gradient attack walks at one eps.

    start: None (from x), "ball" (a uniform random point of the eps ball, ``Norm.random_start``)
        or "sign" (x + start_size * sign(N(0, I)), R+FGSM's random step).
    start_size: the size of the "sign" start.
    step_size, steps: each step's length in the attack's norm, and how many.
    project: project onto the eps ball after each step; False when the path cannot leave
        it (one step of at most eps - start_size), so that no rounding is added.
    """

    start: str | None
    start_size: float
    step_size: float
    steps: int
    project: bool


def sign_start(x: tf.Tensor, size: float, seed: tf.Tensor) -> tf.Tensor:
    """clip(x + size * sign(N(0, I))) (R+FGSM's random step; ``seed``: int64 (2,))."""
    noise = tf.sign(tf.random.stateless_normal(tf.shape(x), seed=seed, dtype=x.dtype))
    return tf.clip_by_value(x + size * noise, 0.0, 1.0)


def direction(model: Model, x: tf.Tensor, labels: tf.Tensor, norm: Norm,
              targeted: bool) -> tf.Tensor:
    """The unit step of ``norm`` along the loss gradient at x; targeted: the step that lowers
    the loss of the target class."""
    grad, _ = loss_gradient(model, x, labels)
    return norm.normalise(-grad if targeted else grad)


def descend(model: Model, x: tf.Tensor, labels: tf.Tensor, seed: tf.Tensor, *, eps: float,
            plan: Plan, norm: Norm, targeted: bool, early_stop: bool) -> tf.Tensor:
    """The walk of ``plan`` from x, clipped to [0, 1] after every step; one tf.while_loop.

    With ``early_stop`` only the samples not yet adversarial are carried (gathered) through
    each step; a sample is frozen at the first iterate found adversarial, judged from the
    logits of the gradient pass (no extra forward), and the loop ends when none is left.
    """
    if plan.start == "ball":
        x_adv = norm.random_start(x, eps, seed)
    elif plan.start == "sign":
        x_adv = sign_start(x, plan.start_size, seed)
    else:
        x_adv = x
    sign = -1.0 if targeted else 1.0

    def step(x_start, x_now, wanted):
        grad, logits = loss_gradient(model, x_now, wanted)
        moved = x_now + (sign * plan.step_size) * norm.normalise(grad)
        if plan.project:
            return norm.project(x_start, moved, eps), logits
        return tf.clip_by_value(moved, 0.0, 1.0), logits

    if not early_stop:
        _, x_adv = tf.while_loop(
            lambda i, _: i < plan.steps,
            lambda i, x_now: (report_step(i + 1, tf.shape(x)[0], budget=plan.steps),
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
        return report_step(i + 1, tf.size(active), budget=plan.steps), x_adv, active

    _, x_adv, _ = tf.while_loop(
        lambda i, _, active: tf.logical_and(i < plan.steps, tf.size(active) > 0), body,
        (tf.constant(0), x_adv, tf.range(tf.shape(x)[0])),
        shape_invariants=(tf.TensorShape([]), x_adv.shape, tf.TensorShape([None])))
    return x_adv


def check_eps_list(eps: float | Sequence[float]) -> list[float]:
    """eps given at call time as a list of floats >= 0 (one value: a list of one)."""
    values = [float(v) for v in np.asarray(eps, dtype=np.float64).ravel()]
    if not values:
        raise ParameterError("eps must be a non-empty list of values >= 0, got an empty one")
    for value in values:
        check_range("eps", value, low=0.0)
    return values


class GradientDescent(Attack):
    """Base of the fixed-budget gradient attacks: subclasses say how they walk at an eps
    (``plan``); this class runs the one loop (``descend``) in the attack's norm.

    Attributes every subclass has: ``eps`` (float >= 0) and ``norm`` (a key of ``NORMS``).
    ``early_stop`` (default False) freezes each sample at its first adversarial iterate.
    """

    eps: float
    early_stop: bool = False

    def plan(self, eps: float) -> Plan:
        """How the attack walks at ``eps``; ParameterError when it cannot (R+FGSM: eps below
        alpha)."""
        raise NotImplementedError

    @property
    def ball(self) -> Norm:
        return NORMS[self.norm]

    def at(self, eps: float) -> GradientDescent:
        """This attack with another eps (checked as the constructor checks it)."""
        other = copy.copy(self)
        other.eps = float(eps)
        other.plan(other.eps)
        return other

    def __call__(self, model: Model, x: ArrayLike, y: ArrayLike, *,
                 target: ArrayLike | None = None, seed: int = 0,
                 logits: ArrayLike | None = None,
                 eps: float | Sequence[float] | None = None
                 ) -> Any:  # AttackOutput, or a list of them when eps is a list
        """``Attack.__call__``; with ``eps`` (one value or a list, each >= 0) the attack at
        those eps instead of its own: an ``AttackOutput`` per eps, in a list when a list was
        given (the same as constructing the attack at each eps)."""
        if eps is None:
            return super().__call__(model, x, y, target=target, seed=seed, logits=logits)
        outputs = [self.at(e).__call__(model, x, y, target=target, seed=seed, logits=logits)
                   for e in check_eps_list(eps)]
        return outputs if np.ndim(eps) else outputs[0]

    def run(self, model: Model, x: np.ndarray, y: np.ndarray, *, target: np.ndarray | None,
            seed: int) -> AttackOutput:
        targeted = target is not None
        labels = (y if target is None else target).astype("int32")
        plan = self.plan(self.eps)
        attack = self.compiled(model, f"descend-{targeted}-{self.eps}-{plan}", lambda: (
            lambda xb, lb, seed_tensor: descend(
                model, xb, lb, seed_tensor, eps=self.eps, plan=plan, norm=self.ball,
                targeted=targeted, early_stop=self.early_stop)))
        if plan.steps > 1:
            progress.iterations(plan.steps, label="step", samples=len(x))
        x_adv = attack(tf.convert_to_tensor(x), tf.convert_to_tensor(labels),
                       tf.constant([seed, 0], dtype=tf.int64))
        return AttackOutput(x_adv=x_adv.numpy())

    def line_step(self, eps: float) -> tuple[str, float]:
        """A one-step attack at ``eps`` as a point on a straight line: ("x", t) is
        clip(x + t * unit step at x), ("sign", t) clip(r + t * unit step at r) with r the
        random sign step (``sign_start``), ("noise", t) clip(x + t * sign noise).
        ParameterError for an attack of more than one step."""
        raise ParameterError(f"attack {self.name!r} takes more than one step: it has no "
                             "straight-line path over eps")

    #: The size of the random sign step of ``line_step``'s "sign" and "noise" lines.
    sign_step = 0.0

    def line(self, model: Model, x: np.ndarray, y: np.ndarray, eps: Sequence[float], *,
             seed: int = 0, target: np.ndarray | None = None
             ) -> list[tuple[tf.Tensor, tf.Tensor, np.ndarray, np.ndarray]]:
        """A one-step attack at every eps of a grid from one gradient per sample: groups
        (base, direction, steps (k,) float64, which eps (k,)) with the image at
        ``eps[which[j]]`` = ``self.ball.hold(x, clip(base + steps[j] * direction),
        eps[which[j]])``, as ``self(model, x, y, eps=eps[which[j]], seed=seed)`` gives it
        (``line_step``). x: float32 (n, H, W, C) in [0, 1], already checked; y, target: int
        (n,)."""
        from advbench.models.gradients import attack_model

        model = attack_model(model)  # as __call__ does: same logits, cheaper gradients
        grid = np.asarray(check_eps_list(eps))
        targeted = target is not None
        labels = tf.constant((y if target is None else target).astype(np.int32))
        xt = tf.convert_to_tensor(x)
        steps: dict[str, list[tuple[int, float]]] = {}
        for j, e in enumerate(grid):
            kind, t = self.line_step(float(e))
            steps.setdefault(kind, []).append((j, t))
        bases: dict[str, tuple[tf.Tensor, tf.Tensor]] = {}
        if "x" in steps:
            unit = self.compiled(model, f"line-{targeted}", lambda: (
                lambda xb, lb: direction(model, xb, lb, self.ball, targeted)))(xt, labels)
            bases["x"] = (xt, unit)
        if "sign" in steps or "noise" in steps:
            size = self.sign_step
            noise, base, unit = self.compiled(model, f"line-sign-{targeted}-{size}", lambda: (
                lambda xb, lb, s: _sign_line(model, xb, lb, s, size, self.ball, targeted)))(
                    xt, labels, tf.constant([seed, 0], dtype=tf.int64))
            bases["sign"], bases["noise"] = (base, unit), (xt, noise)
        return [(*bases[kind], np.array([t for _, t in rows]), np.array([j for j, _ in rows]))
                for kind, rows in steps.items()]


def _sign_line(model: Model, x: tf.Tensor, labels: tf.Tensor, seed: tf.Tensor, size: float,
               norm: Norm, targeted: bool) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """(sign noise, the random step from x, the unit step at it), drawn as ``sign_start``."""
    noise = tf.sign(tf.random.stateless_normal(tf.shape(x), seed=seed, dtype=x.dtype))
    base = tf.clip_by_value(x + size * noise, 0.0, 1.0)
    return noise, base, direction(model, base, labels, norm, targeted)
