"""Minimal-perturbation FGSM: the smallest eps on a grid that flips the prediction.

The "robustness" attack of the paper (Zantedeschi et al., https://arxiv.org/abs/1707.06728),
with the semantics of IBM ART 1.20.1's ``FastGradientMethod(minimal=True)``: one loss gradient
at x, then a line search along that fixed sign direction (FGSM: Goodfellow et al.,
https://arxiv.org/abs/1412.6572). ``search="authors"`` replays instead the paper authors'
search, index bug included, to show what their Table 2 measured (``_authors_search``).
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from advbench.attacks.base import Attack, AttackOutput
from advbench.attacks.fgsm import fgsm_direction
from advbench.core import progress
from advbench.core.checks import MAX_GRID_POINTS
from advbench.core.errors import ParameterError
from advbench.core.ops import expand_to, is_adversarial, report_step
from advbench.core.types import Model

# Once fewer samples than this are still searching, several grid points per sample are
# evaluated in one forward pass of about this many images: fewer, fuller passes in the tail,
# at the cost of a few wasted candidates past each sample's first flip (on the paper's MNIST
# CNN with eps_step 0.01: 13,360 images forwarded in 24 passes for 1,000 samples, against the
# 12,959 a one-point-per-pass search needs in 99 passes, and ART's 29,888 in 952).
MIN_IMAGES_PER_PASS = 256
# Images per forward or gradient pass of the authors' search: its index bookkeeping spans the
# whole call, the passes only bound memory.
AUTHORS_CHUNK = 1024


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
        still = tf.boolean_mask(active, tf.logical_not(done))
        # Progress (advbench.core.progress): grid points done, samples still searching. Every
        # pass: one forwards up to max(batch, min_images) images, far above a report's ~1 ms.
        return first, still, report_step(next_point + chunk, tf.size(still))

    first, _, _ = tf.while_loop(
        cond, body,
        (tf.fill([n], num_points), tf.range(n), tf.constant(0)),
        shape_invariants=(tf.TensorShape([None]), tf.TensorShape([None]), tf.TensorShape([])))
    found = first < num_points
    # A sample that never flips ends at the last grid point tried, as in ART.
    eps = tf.gather(grid, tf.where(found, first, num_points - 1))
    x_adv = tf.clip_by_value(x + expand_to(eps, x) * direction, 0.0, 1.0)
    return x_adv, eps, found


def _authors_search(direction_of, adversarial_of, x: np.ndarray, labels: np.ndarray,
                    grid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The paper authors' minimal-FGSM loop, bug included: (x_adv, eps, found).

    Read from the history of IBM's ART, commit 735ead0c0 (``src/attackers/fast_gradient.py``,
    ``FastGradientMethod.minimal_perturbations``; unchanged at tag 0.1 as
    ``art/attacks/fast_gradient.py``), whose results the paper's Table 2 printed
    (``notebooks/metric-for-MNIST.ipynb``, eps_step 0.05, eps_max 1, all 10,000 test images
    in one call). Each step attacks ``x[active]`` at the next grid eps, writes the candidates
    into ``x_adv[active]``, then sets ``active`` to the POSITIONS inside ``active`` of the
    samples that did not flip and uses them as indices into the whole batch. After the first
    step ``active`` is ``arange(n)``, so positions are indices and the second step is right;
    from the third step on the search attacks images 0, 1, 2, ... instead of the unflipped
    ones: those are left at the second step's candidate (not adversarial), and images that
    flipped early are overwritten with larger perturbations.

    ``direction_of(x)``: the FGSM sign direction at x (from the model's prediction);
    ``adversarial_of(x, labels)``: bool per sample. ``eps``: the grid eps of each returned
    candidate (every sample is written at the first step); ``found``: whether the returned
    example is adversarial.
    """
    direction = direction_of(x)
    x_adv = x.copy()
    eps_of = np.zeros(len(x), dtype=np.float32)
    active = np.arange(len(x))
    for step, eps in enumerate(grid):
        if active.size == 0:
            break
        candidates = np.clip(x[active] + eps * direction[active], 0.0, 1.0)
        flipped = adversarial_of(candidates, labels[active])
        x_adv[active] = candidates
        eps_of[active] = eps
        # The authors' `curr_indexes = np.where(y[curr_indexes] == new_y)[0]`: positions in
        # the active subset, used below as indices into the batch.
        active = np.flatnonzero(~flipped)
        progress.step(step + 1, active.size)
    return x_adv, eps_of, adversarial_of(x_adv, labels)


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

    ``search="authors"`` (never the default) replays the paper authors' search instead, for
    reproducing what their Table 2 measured: from the third grid step on it attacks the wrong
    images (``_authors_search``, read from ART's history, commit 735ead0c0 and tag 0.1), so
    many samples end unflipped at the second step's eps and early ones get larger
    perturbations. The bug acts within one call: the authors passed all 10,000 MNIST test
    images at once, so run it with a batch size of at least the sample count to reproduce
    that (``advbench attack --batch-size``); smaller batches restart it per batch.
    Untargeted only.

    Args:
        eps_step: grid spacing, > 0 (default 0.05, the paper's code; ART's default is 0.1).
        eps_max: largest eps tried, >= eps_step (default 1.0).
        search: "exact" (default) or "authors" (``FGSM_MIN_SEARCHES``).

    Returns (extras, shape (batch,)):
        eps: float32, the minimal eps found; for a sample never adversarial, the last grid
            point tried (the eps of its returned x_adv). Mask it with ``found``. With
            ``search="authors"``: the eps of the returned x_adv.
        found: bool, whether a grid point made the sample adversarial (``"authors"``:
            whether the returned x_adv is adversarial).

    Raises:
        ParameterError: an empty or oversized grid, an unknown search, or a target with
            ``search="authors"``.

    Example:
        >>> out = MinimalFGSM(eps_step=0.01)(model, x, y)
        >>> robust_eps = out.extras["eps"][out.extras["found"]]
    """

    name = "fgsm-min"
    minimal = True
    norm = "linf"
    supports_targets = True

    def __post_init__(self) -> None:
        if self.eps_step > self.eps_max:
            raise ParameterError(f"eps_step ({self.eps_step}) must be <= eps_max "
                                 f"({self.eps_max}): the grid would be empty")
        points = math.floor(self.eps_max / self.eps_step)
        if points > MAX_GRID_POINTS:
            raise ParameterError(
                f"eps_max / eps_step gives {points} grid points, more than {MAX_GRID_POINTS}; "
                "use a larger eps_step")
        grid = eps_grid(self.eps_step, self.eps_max)
        # float32 as ART feeds it: NumPy casts the Python float to the float32 array's dtype.
        self._grid = grid.astype(np.float32)

    @property
    def grid(self) -> np.ndarray:
        """The eps values tried, in order (float32), shape (num_points,)."""
        return self._grid.copy()

    def accepts_targets(self) -> bool:
        # The authors' code had no target.
        return self.search != "authors"

    def run(self, model: Model, x: np.ndarray, y: np.ndarray, *, target: np.ndarray | None,
            seed: int, logits: np.ndarray | None = None) -> AttackOutput:
        targeted = target is not None
        predicted = self.clean_logits(model, x, logits).argmax(axis=1).astype(np.int32)
        if self.search == "authors":
            return self._run_authors(model, x, predicted)
        if target is not None:
            labels = target.astype(np.int32)
        else:
            # From the model's prediction, as ART's empirical_robustness (y=None): a sample
            # the model misclassifies must move off its prediction, not off its label.
            labels = predicted
        search = self.compiled(model, f"search-{targeted}", lambda: (
            lambda xb, lb, grid: _line_search(model, xb, lb, grid, targeted,
                                              MIN_IMAGES_PER_PASS)))
        progress.iterations(len(self._grid), label="grid point", samples=len(x))
        x_adv, eps, found = search(tf.convert_to_tensor(x), tf.convert_to_tensor(labels),
                                   tf.convert_to_tensor(self._grid))
        return AttackOutput(x_adv=x_adv.numpy(),
                            extras={"eps": eps.numpy(), "found": found.numpy()})

    def _run_authors(self, model: Model, x: np.ndarray, labels: np.ndarray) -> AttackOutput:

        def gradient(xb, lb):
            direction = fgsm_direction(model, xb, lb, "linf", False)
            return tf.where(tf.math.is_nan(direction), tf.zeros_like(direction), direction)

        direction_fn = self.compiled(model, "authors-direction", lambda: gradient)
        decide = self.compiled(model, "authors-adversarial", lambda: (
            lambda xb, lb: is_adversarial(model(xb, training=False), lb)))

        def chunked(fn, *arrays):
            return np.concatenate([fn(*(tf.convert_to_tensor(a[i:i + AUTHORS_CHUNK])
                                        for a in arrays)).numpy()
                                   for i in range(0, len(arrays[0]), AUTHORS_CHUNK)])

        progress.iterations(len(self._grid), label="grid point", samples=len(x))
        x_adv, eps, found = _authors_search(
            lambda xs: chunked(direction_fn, xs, labels), lambda xs, ls: chunked(decide, xs, ls),
            x, labels, self._grid)
        return AttackOutput(x_adv=x_adv, extras={"eps": eps, "found": found})
