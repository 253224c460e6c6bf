"""The norms of the gradient attacks as small strategies: each says how to turn a gradient
into the steepest unit step, how to project onto its eps ball, and how to draw a random start
in that ball (the structure of foolbox 3's ``gradient_descent_base``).

``NORMS`` is the registry, keyed by the CLI names of ``--norm`` (``advbench.attacks.NORM_CLASSES``).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from numpy.typing import ArrayLike
import tensorflow as tf

from advbench.attacks import ATTACK_SPECS, NORM_CLASSES
from advbench.core.errors import ParameterError
from advbench.core.ops import batch_norm, expand_to, l2_normalize
from advbench.core.registry import load_classes


class Norm:
    """One norm: per-sample values, steepest unit step, projection and random start.

    All methods take and return float32 image batches (batch, H, W, C) and run inside
    ``tf.function``.
    """

    #: The largest eps that means anything whatever the image size (the whole [0, 1] box):
    #: 1 in L-inf; None where it grows with the image size (``diameter``).
    largest_eps: float | None = None
    #: The attacks (registry names) that take this norm; None: every attack with a norm.
    attacks: tuple[str, ...] | None = None

    def __init__(self, name: str) -> None:
        self.name = name  # its key in advbench.attacks.NORM_CLASSES

    def takes(self, attack: str) -> bool:
        """True when the attack called ``attack`` (a registry name) takes this norm."""
        return self.attacks is None or attack in self.attacks

    def diameter(self, image_shape: Sequence[int]) -> float:
        """The eps whose ball around any image of [0, 1]^image_shape holds the whole box."""
        raise NotImplementedError

    def random_unit(self, shape: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        """A random perturbation of unit norm per sample, drawn as AutoAttack's APGD draws its
        start (``apgd.start_point``): t / ||t|| for t uniform in [-1, 1]^d (L-inf: one
        coordinate at 1) or standard normal (L2). ``shape``: (batch, ...); ``seed``: (2,)."""
        raise NotImplementedError

    def noise(self, shape: tuple[int, ...], eps: float, rng: np.random.Generator) -> np.ndarray:
        """float32 noise of norm exactly eps per sample (before any clipping), from a NumPy
        generator: the audit's random-noise baseline (``score.audit.random_noise``)."""
        raise NotImplementedError

    def of(self, v: tf.Tensor) -> tf.Tensor:
        """The norm of each sample of ``v``, shape (batch,)."""
        return batch_norm(v, self.name)

    # -- the budget: one check and one rule for every attack with an eps -------------------
    def sizes(self, x: ArrayLike, x_adv: ArrayLike) -> tf.Tensor:
        """||x_adv - x|| per sample computed in float64, (batch,) float64: how every budget
        is checked (the float32 points, measured exactly as evaluate measures them)."""
        return batch_norm(tf.cast(x_adv, tf.float64) - tf.cast(x, tf.float64), self.name)

    def hold(self, x: ArrayLike, x_adv: ArrayLike, eps: ArrayLike) -> tf.Tensor:
        """x_adv (float32, in [0, 1]) moved the least needed for ``sizes(x, x_adv) <= eps``
        to hold exactly, staying in [0, 1]; samples already inside are returned bit for bit.

        The attacks step and project in float32, where x + delta rounds and can land an ulp
        outside the ball (a float32 eps is not the float64 one either): ``Attack.__call__``
        holds every eps attack's output with this, and curves their images
        (``advbench.run.curves``). x, x_adv: float32 (batch, ...); eps: a value >= 0 or one
        per sample (batch,). Usable inside ``tf.function``.
        """
        raise NotImplementedError

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

    largest_eps = 1.0

    def diameter(self, image_shape: Sequence[int]) -> float:
        return 1.0

    def random_unit(self, shape: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        t = tf.random.stateless_uniform(shape, seed, -1.0, 1.0)
        return t / expand_to(tf.maximum(batch_norm(t, "linf"), 1e-12), t)

    def noise(self, shape: tuple[int, ...], eps: float, rng: np.random.Generator) -> np.ndarray:
        # Random signs: a corner of the ball, as far as an FGSM step goes.
        return eps * rng.choice(np.array([-1.0, 1.0], np.float32), size=shape)

    def normalise(self, grad: tf.Tensor) -> tf.Tensor:
        return tf.sign(grad)

    def clip_to_ball(self, delta: tf.Tensor, eps: float) -> tf.Tensor:
        return tf.clip_by_value(delta, -eps, eps)

    def random_delta(self, x: tf.Tensor, eps: float, seed: tf.Tensor) -> tf.Tensor:
        return tf.random.stateless_uniform(tf.shape(x), seed=seed, minval=-eps, maxval=eps)

    def hold(self, x: ArrayLike, x_adv: ArrayLike, eps: ArrayLike) -> tf.Tensor:
        # Per pixel: clipped to the float32 interval inside [x - eps, x + eps] (its ends
        # rounded inwards in float64), the nearest float32 point of the ball. Near 0 the ulps
        # are subnormals: a pixel 0.2 = 51/255 at eps 0.2 (or 8/255 at CIFAR's 8/255) pushed
        # to 0 lies 3e-9 outside and is held at the smallest float32 inside.
        x = tf.convert_to_tensor(x, tf.float32)
        wide = tf.cast(x, tf.float64)
        radius = expand_to(_radius(eps, x), x)
        low = _float32_inside(wide - radius, upwards=True)
        high = _float32_inside(wide + radius, upwards=False)
        held = tf.minimum(tf.maximum(tf.convert_to_tensor(x_adv, tf.float32), low), high)
        return tf.clip_by_value(held, 0.0, 1.0)


def _radius(eps: ArrayLike, x: tf.Tensor) -> tf.Tensor:
    """eps per sample of x as float64, (batch,): a Python float stays the float64 it is (a
    cast through float32 would move 0.1 to 0.10000000149)."""
    eps = tf.cast(tf.convert_to_tensor(eps, dtype_hint=tf.float64), tf.float64)
    return eps * tf.ones([tf.shape(x)[0]], tf.float64)


def _float32_inside(bound: tf.Tensor, upwards: bool) -> tf.Tensor:
    """The float32 nearest to a float64 ``bound`` on its inner side: the smallest float32 >=
    bound (``upwards``), else the largest <= bound."""
    near = tf.cast(bound, tf.float32)
    beyond = tf.cast(near, tf.float64) < bound if upwards else tf.cast(near, tf.float64) > bound
    return tf.where(beyond, tf.math.nextafter(near, np.float32(np.inf if upwards else -np.inf)),
                    near)


class RadialNorm(Norm):
    """A norm whose ball is held by shrinking delta towards x (L2, L1)."""

    def hold(self, x: ArrayLike, x_adv: ArrayLike, eps: ArrayLike) -> tf.Tensor:
        # Samples outside are scaled onto eps (1 - margin) in float64, the margin doubling
        # per pass so that float32 rounding cannot undo it: one pass or two do.
        x = tf.convert_to_tensor(x, tf.float32)
        wide = tf.cast(x, tf.float64)
        radius = _radius(eps, x)

        def shrink(x_adv, margin):
            delta = tf.cast(x_adv, tf.float64) - wide
            size = batch_norm(delta, self.name)
            outside = size > radius
            scale = tf.math.divide_no_nan(radius, size) * (1.0 - margin)
            moved = tf.cast(tf.clip_by_value(wide + delta * expand_to(scale, delta), 0.0, 1.0),
                            tf.float32)
            return tf.where(expand_to(outside, x_adv), moved, x_adv), margin * 2.0

        held, _ = tf.while_loop(
            lambda x_adv, _: tf.reduce_any(self.sizes(x, x_adv) > radius), shrink,
            (tf.convert_to_tensor(x_adv, tf.float32), tf.constant(1e-7, tf.float64)))
        return held


class L2Norm(RadialNorm):
    """L2: the gradient over its L2 norm; radial scaling; uniform in the ball (a normal
    direction with radius eps * U^(1/dim))."""

    def diameter(self, image_shape: Sequence[int]) -> float:
        return math.sqrt(math.prod(image_shape))

    def random_unit(self, shape: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        return l2_normalize(tf.random.stateless_normal(shape, seed))

    def noise(self, shape: tuple[int, ...], eps: float, rng: np.random.Generator) -> np.ndarray:
        # A uniform random direction of length eps.
        delta = rng.standard_normal(shape).astype(np.float32)
        norms = np.sqrt((delta.reshape(shape[0], -1) ** 2).sum(axis=1))
        scale = (eps / np.maximum(norms, 1e-12)).reshape((-1,) + (1,) * (len(shape) - 1))
        return (delta * scale).astype(np.float32)

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


#: Halvings of the bracket around the L1 projection's threshold lambda: the bracket ends at
#: max|delta_i| / 2^32, finer than float32 resolves lambda unless lambda < max|delta_i| / 512;
#: an exact solve on the bracket's linear piece follows (``l1_box_projection``).
L1_BISECTION_STEPS = 32


def l1_box_projection(x: tf.Tensor | None, delta: tf.Tensor,
                      eps: tf.Tensor | float) -> tf.Tensor:
    """The Euclidean projection of ``delta`` onto {d : ||d||_1 <= eps, 0 <= x + d <= 1}, exact
    up to float32 rounding (Croce and Hein, "Mind the box: l1-APGD for sparse adversarial
    attacks on image classifiers", ICML 2021, https://arxiv.org/abs/2103.01208, Lemma 2.1; the
    authors' ``L1_projection`` computes the same point by a bisection over sorted breakpoints).

    The problem separates per coordinate given one multiplier lambda >= 0: each coordinate is
    soft-thresholded, then clipped to the box, |d_i| = min(max(|delta_i| - lambda, 0), r_i)
    with r_i = 1 - x_i or x_i, the room on delta_i's side. lambda = 0 when the box-clipped
    delta is already in the ball; otherwise f(lambda) = sum_i |d_i| is piecewise linear and
    decreasing, with breakpoints |delta_i| - r_i and |delta_i|. ``L1_BISECTION_STEPS``
    halvings of [0, max_i |delta_i|] bracket the lambda where f = eps (element-wise passes
    only: sorting the 2n breakpoints, as this function did until 2026-12-07, took 4.7x as long
    on the CPU, and more than a forward pass of the MNIST CNN); each coordinate is then
    clipped, shrinking or gone at the bracket's middle, and lambda solves f = eps exactly on
    that linear piece, held inside the bracket.

    Args:
        x: float32 (batch, ...) in [0, 1], the centre; None: no box (the L1 ball alone).
        delta: float32, same shape: the perturbation to project.
        eps: radius, > 0 (a scalar, or (batch,) per sample).
    Returns:
        float32, the shape of delta: the projected perturbation (same signs as delta).
    """
    shape = tf.shape(delta)
    flat = tf.reshape(delta, [shape[0], -1])
    size = tf.abs(flat)
    if x is None:
        room = tf.fill(tf.shape(flat), np.float32(np.inf))
    else:
        centre = tf.reshape(x, [shape[0], -1])
        room = tf.maximum(tf.where(flat >= 0, 1.0 - centre, centre), 0.0)
    eps = tf.cast(eps, tf.float32) * tf.ones([shape[0]], tf.float32)

    def mass(lam):  # f(lambda), (batch,)
        return tf.reduce_sum(tf.minimum(tf.maximum(size - lam[:, None], 0.0), room), axis=1)

    start = mass(tf.zeros_like(eps))  # f(0): the box-clipped L1 norm
    # f(low) > eps >= f(high) throughout (where start > eps; elsewhere lambda is 0 below).
    low, high = tf.zeros_like(eps), tf.reduce_max(size, axis=1)
    for _ in range(L1_BISECTION_STEPS):
        middle = 0.5 * (low + high)
        above = mass(middle) > eps
        low, high = tf.where(above, middle, low), tf.where(above, high, middle)
    middle = (0.5 * (low + high))[:, None]
    clipped = size - room > middle
    shrinking = tf.logical_and(tf.logical_not(clipped), size > middle)
    count = tf.reduce_sum(tf.cast(shrinking, tf.float32), axis=1)
    lam = (tf.reduce_sum(tf.where(shrinking, size, 0.0), axis=1)
           + tf.reduce_sum(tf.where(clipped, room, 0.0), axis=1) - eps) / tf.maximum(count, 1.0)
    # No coordinate shrinking at the middle (a bracket narrower than float32 resolves):
    # high, where f <= eps, is the answer to the bracket's precision.
    lam = tf.where(count > 0, tf.clip_by_value(lam, low, high), high)
    lam = tf.where(start > eps, lam, 0.0)
    projected = tf.sign(flat) * tf.minimum(tf.maximum(size - lam[:, None], 0.0), room)
    return tf.reshape(projected, shape)


class L1Norm(RadialNorm):
    """L1: the steepest unit step puts all of it on the largest gradient entries; the ball is
    projected onto together with the box (``l1_box_projection``), since clipping to [0, 1]
    after an L1-ball projection gives a point of the ball but not the nearest one of the
    intersection (Croce and Hein, "Mind the box", ICML 2021). Only APGD (and so AutoAttack)
    takes L1 (``L1_ATTACKS``); its step is the sparse one of l1-APGD (``apgd.build_apgd_l1``).
    """

    def diameter(self, image_shape: Sequence[int]) -> float:
        return float(math.prod(image_shape))

    def random_unit(self, shape: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        # Laplace magnitudes with random signs over their L1 norm: uniform on the sphere.
        magnitude = -tf.math.log(tf.random.stateless_uniform(shape, seed, 1e-30, 1.0))
        signs = tf.sign(tf.random.stateless_uniform(shape, seed + [0, 2], -1.0, 1.0))
        return signs * magnitude / expand_to(batch_norm(magnitude, "l1"), magnitude)

    def noise(self, shape: tuple[int, ...], eps: float, rng: np.random.Generator) -> np.ndarray:
        magnitude = rng.exponential(size=shape).astype(np.float32)
        signs = rng.choice(np.array([-1.0, 1.0], np.float32), size=shape)
        total = magnitude.reshape(shape[0], -1).sum(axis=1)
        scale = (eps / np.maximum(total, 1e-12)).reshape((-1,) + (1,) * (len(shape) - 1))
        return (signs * magnitude * scale).astype(np.float32)

    def normalise(self, grad: tf.Tensor) -> tf.Tensor:
        size = tf.abs(grad)
        top = tf.cast(size >= expand_to(batch_norm(grad, "linf"), grad), grad.dtype)
        top *= tf.cast(size > 0, grad.dtype)
        return tf.math.divide_no_nan(tf.sign(grad) * top, expand_to(batch_norm(top, "l1"), grad))

    def clip_to_ball(self, delta: tf.Tensor, eps: float) -> tf.Tensor:
        return l1_box_projection(None, delta, eps)

    def project(self, x: tf.Tensor, x_adv: tf.Tensor, eps: float) -> tf.Tensor:
        return tf.clip_by_value(x + l1_box_projection(x, x_adv - x, eps), 0.0, 1.0)

    def random_delta(self, x: tf.Tensor, eps: float, seed: tf.Tensor) -> tf.Tensor:
        # Uniform in the L1 ball: a Laplace direction on the sphere, radius eps * U^(1/dim).
        shape = tf.shape(x)
        magnitude = -tf.math.log(tf.random.stateless_uniform(shape, seed, 1e-30, 1.0))
        signs = tf.sign(tf.random.stateless_uniform(shape, seed + [0, 2], -1.0, 1.0))
        direction = signs * magnitude / expand_to(batch_norm(magnitude, "l1"), x)
        dim = tf.cast(tf.reduce_prod(shape[1:]), x.dtype)
        u = tf.random.stateless_uniform([shape[0]], seed=seed + [0, 1])
        return direction * expand_to(eps * u ** (1.0 / dim), x)


#: The attacks that take ``norm="l1"``: read from their declared norms (``ATTACK_SPECS``;
#: FGSM and PGD declare ``GRADIENT_NORMS``, FMN its own norms).
L1_ATTACKS = tuple(sorted(name for name, spec in ATTACK_SPECS.items() if name != "fmn" and any(
    p.name == "norm" and "l1" in (p.choices or ()) for p in spec.params)))
L1Norm.attacks = L1_ATTACKS

NORMS: dict[str, Norm] = {name: cls(name)
                          for name, cls in load_classes("advbench.attacks", NORM_CLASSES).items()}


def check_norm(name: str, attack: str | None = None) -> Norm:
    """The norm called ``name``; ParameterError naming the choices otherwise, or when
    ``attack`` (a registry name) does not take it."""
    if name not in NORMS:
        raise ParameterError(f"norm must be one of {', '.join(NORMS)}, got {name!r}")
    norm = NORMS[name]
    if attack is not None and not norm.takes(attack):
        others = [n for n, other in NORMS.items() if other.takes(attack)]
        raise ParameterError(f"attack {attack!r} takes norm {' or '.join(others)}, not {name} "
                             f"({name} is for {', '.join(norm.attacks or ())})")
    return norm
