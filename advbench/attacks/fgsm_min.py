"""Minimal-perturbation FGSM: the smallest eps on a grid that flips the prediction.

The "robustness" attack of the paper (Zantedeschi et al., https://arxiv.org/abs/1707.06728),
with the semantics of IBM ART 1.20.1's ``FastGradientMethod(minimal=True)``: one loss gradient
at x, then a line search along that fixed sign direction (FGSM: Goodfellow et al.,
https://arxiv.org/abs/1412.6572).
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from advbench.attacks.base import Attack, AttackOutput
from advbench.attacks.fgsm import fgsm_direction
from advbench.checks import MAX_GRID_POINTS, check_range
from advbench.errors import ParameterError
from advbench.ops import expand_to, is_adversarial
from advbench.types import Model

# Once fewer samples than this are still searching, several grid points per sample are
# evaluated in one forward pass of about this many images: fewer, fuller passes in the tail,
# at the cost of a few wasted candidates past each sample's first flip (on the paper's MNIST
# CNN with eps_step 0.01: 13,360 images forwarded in 24 passes for 1,000 samples, against the
# 12,959 a one-point-per-pass search needs in 99 passes, and ART's 29,888 in 952).
MIN_IMAGES_PER_PASS = 256


def eps_grid(eps_step: float, eps_max: float) -> np.ndarray:
    """The grid ART walks: eps_step, then ``current_eps += eps_step`` while <= eps_max.

    The sum is accumulated in float64 exactly like ART's Python float, so the grid can stop
    short of eps_max: eps_step 0.01 up to 1 gives 99 points ending at 0.9900000000000007
    (the 100th sum is 1.0000000000000007 > 1), eps_step 0.05 gives 19 ending near 0.95,
    while eps_step 0.1 gives 10 ending at 0.9999999999999999.
    """
    points = []
    current = float(eps_step)
    while current <= eps_max:
        points.append(current)
        current = current + eps_step
    return np.asarray(points, dtype=np.float64)


def _line_search(model, x, labels, grid, targeted: bool, min_images: int):
    """Index of the first grid point at which each sample is adversarial (len(grid) if none).

    Only the samples still searching are forwarded: ``chunk`` grid points per sample per
    pass, chunk = max(1, min_images // active), so a pass never holds more images than
    max(batch, min_images).
    """
    direction = fgsm_direction(model, x, labels, "linf", targeted)
    # ART replaces NaN gradient entries by 0 before taking the sign; do the same.
    direction = tf.where(tf.math.is_nan(direction), tf.zeros_like(direction), direction)
    n = tf.shape(x)[0]
    num_points = tf.shape(grid)[0]

    def cond(first, active, next_point):
        return tf.logical_and(tf.size(active) > 0, next_point < num_points)

    def body(first, active, next_point):
        n_active = tf.size(active)
        chunk = tf.clip_by_value(min_images // n_active, 1, num_points - next_point)
        eps = grid[next_point:next_point + chunk]  # (chunk,)
        x_active = tf.gather(x, active)
        d_active = tf.gather(direction, active)
        # (chunk, active, H, W, C): every sample at every grid point of the chunk, computed
        # with the same float32 ops as ART (x + eps * sign, then clip) for identical inputs.
        eps = tf.reshape(eps, [-1] + [1] * len(x.shape))
        candidates = tf.clip_by_value(x_active[None] + eps * d_active[None], 0.0, 1.0)
        flat = tf.reshape(candidates, tf.concat([[chunk * n_active], tf.shape(x)[1:]], 0))
        # Decisively adversarial (past float noise), so the stored success holds at any
        # batch size; flat is chunk-major, so the labels repeat once per grid point.
        wanted = tf.tile(tf.gather(labels, active), [chunk])
        hit = tf.reshape(is_adversarial(model(flat, training=False), wanted, targeted),
                         [chunk, n_active])
        done = tf.reduce_any(hit, axis=0)
        # argmax over a 0/1 column returns the first 1: the smallest grid point that flips.
        first_in_chunk = tf.argmax(tf.cast(hit, tf.int32), axis=0, output_type=tf.int32)
        first = tf.tensor_scatter_nd_update(
            first, tf.boolean_mask(active, done)[:, None],
            tf.boolean_mask(next_point + first_in_chunk, done))
        return first, tf.boolean_mask(active, tf.logical_not(done)), next_point + chunk

    first, _, _ = tf.while_loop(
        cond, body,
        (tf.fill([n], num_points), tf.range(n), tf.constant(0)),
        shape_invariants=(tf.TensorShape([None]), tf.TensorShape([None]), tf.TensorShape([])))
    found = first < num_points
    # A sample that never flips ends at the last grid point tried, as in ART.
    eps = tf.gather(grid, tf.where(found, first, num_points - 1))
    x_adv = tf.clip_by_value(x + expand_to(eps, x) * direction, 0.0, 1.0)
    return x_adv, eps, found


def predicted_labels(model: Model, x: np.ndarray) -> np.ndarray:
    """int32 (batch,): the model's predicted classes on x."""
    return np.argmax(model(tf.convert_to_tensor(x), training=False).numpy(), axis=1).astype(
        np.int32)


class MinimalFGSM(Attack):
    """Minimal FGSM: smallest eps on the grid eps_step, 2 eps_step, ... <= eps_max at which
    x + eps * sign(grad) (clipped to [0, 1]) is misclassified, the gradient taken once at x.

    Agrees sample by sample with IBM ART 1.20.1
    ``FastGradientMethod(norm=inf, minimal=True, eps_step=eps_step, eps=eps_max)``: same grid
    (ART's float64 accumulation of ``current_eps += eps_step``), the gradient and the search
    taken from the model's prediction on x (ART with ``y=None``, as its
    ``empirical_robustness`` calls it): untargeted, ``y`` is not used, and a sample the model
    misclassifies searches until its prediction changes; a sample that never flips ends at
    the last grid point tried. Unlike ART, a forward pass only carries samples still searching.

    Args:
        eps_step: grid spacing, > 0 (default 0.05, the paper's code; ART's default is 0.1).
        eps_max: largest eps tried, >= eps_step (default 1.0).

    Returns (extras, shape (batch,)):
        eps: float32, the minimal eps found; for a sample never adversarial, the last grid
            point tried (the eps of its returned x_adv). Mask it with ``found``.
        found: bool, whether a grid point made the sample adversarial.

    Example:
        >>> out = MinimalFGSM(eps_step=0.01)(model, x, y)
        >>> robust_eps = out.extras["eps"][out.extras["found"]]
    """

    name = "fgsm-min"
    minimal = True
    norm = "linf"
    supports_targets = True

    def __init__(self, *, eps_step: float = 0.05, eps_max: float = 1.0) -> None:
        super().__init__()
        check_range("eps_step", eps_step, low=0.0, low_inclusive=False)
        check_range("eps_max", eps_max, low=0.0, low_inclusive=False)
        if eps_step > eps_max:
            raise ParameterError(
                f"eps_step ({eps_step}) must be <= eps_max ({eps_max}): the grid would be empty")
        points = math.floor(eps_max / eps_step)
        if points > MAX_GRID_POINTS:
            raise ParameterError(
                f"eps_max / eps_step gives {points} grid points, more than {MAX_GRID_POINTS}; "
                "use a larger eps_step")
        self.eps_step = float(eps_step)
        self.eps_max = float(eps_max)
        grid = eps_grid(self.eps_step, self.eps_max)
        # float32 as ART feeds it: NumPy casts the Python float to the float32 array's dtype.
        self._grid = grid.astype(np.float32)

    @property
    def grid(self) -> np.ndarray:
        """The eps values tried, in order (float32), shape (num_points,)."""
        return self._grid.copy()

    def run(self, model: Model, x: np.ndarray, y: np.ndarray, *, target: np.ndarray | None,
            seed: int) -> AttackOutput:
        targeted = target is not None
        if target is not None:
            labels = target.astype(np.int32)
        else:
            # From the model's prediction, as ART's empirical_robustness (y=None): a sample
            # the model misclassifies must move off its prediction, not off its label.
            labels = predicted_labels(model, x)
        search = self.compiled(model, f"search-{targeted}", lambda: (
            lambda xb, lb, grid: _line_search(model, xb, lb, grid, targeted,
                                              MIN_IMAGES_PER_PASS)))
        x_adv, eps, found = search(tf.convert_to_tensor(x), tf.convert_to_tensor(labels),
                                   tf.convert_to_tensor(self._grid))
        return AttackOutput(x_adv=x_adv.numpy(),
                            extras={"eps": eps.numpy(), "found": found.numpy()})
