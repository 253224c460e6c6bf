"""Square Attack (Andriushchenko, Croce, Flammarion and Hein, ECCV 2020,
https://arxiv.org/abs/1912.00049): score-based random search, no gradients.

Each query changes the current best point inside one random square window (L-inf: the window
moves to the ball's boundary with one random sign per channel, the paper's Algorithm 2; L2:
mass moves from a second random window into the first, shaped by the paper's nested-rectangle
pattern, Algorithm 3), and the change is kept when it lowers the margin loss
z_y - max_{i != y} z_i. The window side follows the paper's schedule: p, the fraction of
pixels in the window, starts at ``p_init`` and is halved after queries 10, 50, 200, 500, 1000,
2000, 4000, 6000 and 8000. Checked against the authors' code as AutoAttack runs it
(github.com/fra31/auto-attack, ``square.py``: p_init 0.8, 5,000 queries, the schedule not
rescaled to the budget). Unlike that code, the window position, the signs and the pattern's
orientation are drawn per sample (it shares them across the batch), as in the paper.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import tensorflow as tf

from advbench.attacks.apgd import batch_signature, compile_batch_function, drop
from advbench.attacks.base import EnsembleMember
from advbench.attacks.norms import check_norm, l1_box_projection
from advbench.core import progress
from advbench.core.errors import ParameterError
from advbench.core.ops import l2_normalize, logit_margin, report_step
from advbench.core.types import Model

#: Queries after which p is halved (the paper's schedule for 10,000 queries).
HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def window_sides(n_queries: int, p_init: float, height: int, width: int, norm: str,
                 rescale: bool) -> np.ndarray:
    """int32 (n_queries,): the square's side at each query after the first.

    side = round(sqrt(p * H * W)), at least 1 (L-inf) or 3 and odd (L2), at most min(H, W);
    with ``rescale`` the schedule is stretched to the budget (query i counts as
    i * 10000 / n_queries), as the authors' standalone default does; AutoAttack does not.
    """
    sides = np.empty(n_queries, np.int32)
    for i in range(n_queries):
        it = int(i / n_queries * 10000) if rescale else i
        p = p_init / 2 ** sum(it > t for t in HALVINGS)
        side = int(round(math.sqrt(p * height * width)))
        if norm == "linf":
            side = max(side, 1)
        else:
            side = max(side, 3)
            side += 1 - side % 2
        sides[i] = min(side, height, width)
    return sides


#: The nested rectangles' weights 1/(k+1)^power and the norm each pattern has unit size in:
#: L2 (the paper's Algorithm 3) and L1 ("Mind the box", Section 4, the authors' square.py).
PATTERN_POWER = {"l2": 2, "l1": 4}
PATTERN_ORDER = {"l2": 2, "l1": 1}


def nested_rectangles(rows: int, cols: int, norm: str = "l2") -> np.ndarray:
    """float64 (rows, cols): the sum of 1/(k+1)^power over the centred rectangles of
    half-size k >= the cell's Chebyshev distance to the centre (rows // 2, cols // 2), unit
    norm (``PATTERN_POWER``, ``PATTERN_ORDER`` of ``norm``)."""
    if rows == 0:
        return np.zeros((0, cols))
    r = np.abs(np.arange(rows) - rows // 2)[:, None]
    c = np.abs(np.arange(cols) - cols // 2)[None, :]
    distance = np.maximum(r, c)
    terms = 1.0 / (np.arange(max(rows // 2, cols // 2) + 1) + 1.0) ** PATTERN_POWER[norm]
    tail = np.cumsum(terms[::-1])[::-1]  # tail[d] = sum_{k >= d} terms[k]
    pattern = tail[distance]
    return pattern / np.linalg.norm(pattern.ravel(), PATTERN_ORDER[norm])


def l2_pattern(side: int, norm: str = "l2") -> np.ndarray:
    """The paper's update shape for a side x side window: nested rectangles, positive on
    the top half and negative on the bottom half, unit L2 norm (float64); ``norm="l1"``: the
    L1 attack's (weights 1/(k+1)^4, unit L1 norm)."""
    top = nested_rectangles(side // 2, side, norm)
    bottom = -nested_rectangles(side - side // 2, side, norm)
    pattern = np.concatenate([top, bottom], axis=0)
    return pattern / np.linalg.norm(pattern.ravel(), PATTERN_ORDER[norm])


def l2_pattern_table(largest: int, norm: str = "l2") -> np.ndarray:
    """float32 (largest + 1, largest, largest): ``l2_pattern(s, norm)`` zero-padded at
    index s."""
    table = np.zeros((largest + 1, largest, largest), np.float32)
    for side in range(1, largest + 1):
        table[side, :side, :side] = l2_pattern(side, norm)
    return table


def l2_init_tiles(height: int, width: int, norm: str = "l2"
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The L2 (and L1) start's layout: side = H // 5 tiles from offset (H - 5 side) // 2, as
    in the authors' code. Returns tile (H, W) int32 (the tile of each pixel, -1 outside any),
    pattern (H, W) and its per-tile transpose (H, W), float32."""
    side = max(height // 5, 1)
    offset = (height - 5 * side) // 2
    tile = np.full((height, width), -1, np.int32)
    pattern = np.zeros((height, width), np.float32)
    transposed = np.zeros((height, width), np.float32)
    shape = l2_pattern(side, norm)
    count = 0
    for i in range(height // side):
        for j in range(width // side):
            top, left = offset + i * side, offset + j * side
            rows, cols = min(side, height - top), min(side, width - left)
            if rows <= 0 or cols <= 0:
                continue
            tile[top:top + rows, left:left + cols] = count
            pattern[top:top + rows, left:left + cols] = shape[:rows, :cols]
            transposed[top:top + rows, left:left + cols] = shape.T[:rows, :cols]
            count += 1
    return tile, pattern, transposed


def build_square(model: Model, *, eps: float, norm: str, n_queries: int, p_init: float,
                 rescale_schedule: bool, loss: str, image_shape: tuple[int, ...]
                 ) -> Callable[..., Any]:
    """One Square Attack run over a batch, as one function compiled by ``Attack.compiled``.

    The function takes x (n, H, W, C) float32, labels (n,) int32, ids (n,) int32 and total
    (scalar): the rows of the caller's batch these samples are (every random draw is made for
    all ``total`` rows and these rows taken, so a sample's search does not depend on which
    other samples run with it), and seed (2,) int64. It returns x_adv (n, H, W, C): the
    first point found adversarial, else the point of lowest loss; fooled (n,) bool;
    queries (n,) int32, the queries spent per sample as AutoAttack counts them (the start
    counts one; a candidate equal to the current point counts without being evaluated); and
    best_loss (n,) float32.

    A sample leaves the batch once fooled; the loop ends after ``n_queries`` queries or when
    none is left.
    """
    height, width, channels = image_shape
    sides = tf.constant(window_sides(n_queries, p_init, height, width, norm, rescale_schedule))
    if norm in ("l2", "l1"):
        table = tf.constant(l2_pattern_table(min(height, width), norm))
        layout = l2_init_tiles(height, width, norm)
        n_tiles = int(layout[0].max()) + 1
        tile, pattern, transposed = (tf.constant(a) for a in layout)

    def loss_and_fooled(x_now, labels):
        logits = model(x_now, training=False)
        if loss == "margin":
            own, other = logit_margin(logits, labels)
            value = own - other
        else:  # minimise the negative cross-entropy
            value = -tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        fooled = tf.not_equal(tf.argmax(logits, axis=1, output_type=tf.int32), labels)
        return value, fooled

    def draw_sign(seed, shape, ids):
        u = tf.gather(tf.random.stateless_uniform(shape, seed), ids)
        return tf.where(u < 0.5, -1.0, 1.0)

    def draw_corner(seed, total, ids, side, extent):
        corner = tf.random.stateless_uniform([total], seed, 0, extent - side + 1, tf.int32)
        return tf.gather(corner, ids)

    def window(top, left, side):
        """(n, H, W, 1) bool: the side x side square at (top, left) per sample."""
        rows, cols = tf.range(height)[None, :], tf.range(width)[None, :]
        in_rows = tf.logical_and(rows >= top[:, None], rows < top[:, None] + side)
        in_cols = tf.logical_and(cols >= left[:, None], cols < left[:, None] + side)
        return tf.logical_and(in_rows[:, :, None, None], in_cols[:, None, :, None])

    def start(x, ids, total, seed):
        if norm == "linf":
            # Vertical stripes: one random sign per column and channel (the paper's start).
            signs = draw_sign(seed, [total, 1, width, channels], ids)
            return tf.clip_by_value(x + eps * signs, 0.0, 1.0)
        signs = draw_sign(tf.random.experimental.stateless_fold_in(seed, 1),
                          [total, n_tiles, channels], ids)
        flips = draw_sign(tf.random.experimental.stateless_fold_in(seed, 2), [total, n_tiles],
                          ids) > 0
        safe = tf.maximum(tile, 0)
        shape = tf.where(tf.gather(flips, safe, axis=1), transposed, pattern)  # (n, H, W)
        delta = shape[..., None] * tf.gather(signs, safe, axis=1)
        delta = tf.where((tile >= 0)[None, :, :, None], delta, 0.0)
        if norm == "l1":
            # Unit-L1 patterns per tile and channel, projected onto the L1 ball and the box.
            return within_l1(x, delta)
        return tf.clip_by_value(x + eps * l2_normalize(delta), 0.0, 1.0)

    def within_l1(x0, delta):
        # The authors project at eps (1 - 1e-6): the float32 sum then stays inside.
        return tf.clip_by_value(x0 + l1_box_projection(x0, delta, eps * (1.0 - 1e-6)), 0.0, 1.0)

    def candidate_linf(x0, x_best, ids, total, seed, side):
        top = draw_corner(tf.random.experimental.stateless_fold_in(seed, 1), total, ids, side,
                          height)
        left = draw_corner(tf.random.experimental.stateless_fold_in(seed, 2), total, ids, side,
                           width)
        signs = draw_sign(tf.random.experimental.stateless_fold_in(seed, 3),
                          [total, 1, 1, channels], ids)
        moved = tf.where(window(top, left, side), x_best + 2.0 * eps * signs, x_best)
        return tf.clip_by_value(tf.clip_by_value(moved, x0 - eps, x0 + eps), 0.0, 1.0)

    def candidate_l2(x0, x_best, ids, total, seed, side):
        fold = tf.random.experimental.stateless_fold_in
        top = draw_corner(fold(seed, 1), total, ids, side, height)
        left = draw_corner(fold(seed, 2), total, ids, side, width)
        top2 = draw_corner(fold(seed, 3), total, ids, side, height)
        left2 = draw_corner(fold(seed, 4), total, ids, side, width)
        signs = draw_sign(fold(seed, 5), [total, 1, 1, channels], ids)
        flips = draw_sign(fold(seed, 6), [total], ids) > 0
        first = window(top, left, side)
        second = window(top2, left2, side)
        both = tf.logical_or(first, second)

        def channel_norm(v):  # (n, 1, 1, C)
            if norm == "l1":
                return tf.reduce_sum(tf.abs(v), axis=[1, 2], keepdims=True)
            return tf.sqrt(tf.reduce_sum(tf.square(v), axis=[1, 2], keepdims=True))

        delta = x_best - x0
        if norm == "l1":
            image_norm = tf.reduce_sum(tf.abs(delta), axis=[1, 2, 3], keepdims=True)
        else:
            image_norm = tf.sqrt(tf.reduce_sum(tf.square(delta), axis=[1, 2, 3], keepdims=True))
        first_norm = channel_norm(tf.where(first, delta, 0.0))
        both_norm = channel_norm(tf.where(both, delta, 0.0))
        # The pattern of this side, transposed per sample, placed at the first window.
        shape = tf.gather(table, side)
        shape = tf.where(flips[:, None, None], tf.transpose(shape)[None], shape[None])
        largest = table.shape[1]
        local_rows = tf.clip_by_value(tf.range(height)[None, :] - top[:, None], 0, largest - 1)
        local_cols = tf.clip_by_value(tf.range(width)[None, :] - left[:, None], 0, largest - 1)
        placed = tf.gather(tf.gather(shape, local_rows, batch_dims=1), local_cols, axis=2,
                           batch_dims=1)[..., None]  # (n, H, W, 1)
        new = tf.where(first, placed * signs + delta / (1e-12 + first_norm), 0.0)
        # The new window takes the first window's and the second window's mass, plus what the
        # budget leaves (split over the channels), as in the authors' code.
        if norm == "l1":
            # The authors' L1 rule: (room / C + the windows' mass) per channel, times C (the
            # projection below brings the image back into the ball).
            room = tf.maximum(eps - image_norm, 0.0) / channels
            new = new / (1e-12 + channel_norm(new)) * (room + both_norm) * channels
            delta = tf.where(first, new, tf.where(second, 0.0, delta))
            return within_l1(x0, delta)
        room = tf.maximum(eps ** 2 - tf.square(image_norm), 0.0) / channels
        new = new / (1e-12 + channel_norm(new)) * tf.sqrt(room + tf.square(both_norm))
        delta = tf.where(first, new, tf.where(second, 0.0, delta))
        return tf.clip_by_value(x0 + eps * l2_normalize(delta), 0.0, 1.0)

    candidate = candidate_linf if norm == "linf" else candidate_l2

    def attack(x, labels, ids, total, seed):
        labels = tf.cast(labels, tf.int32)
        n = tf.shape(x)[0]
        fold = tf.random.experimental.stateless_fold_in
        x_best = start(x, ids, total, fold(seed, 0))
        value, fooled = loss_and_fooled(x_best, labels)
        out_x, out_fooled, out_loss = x_best, fooled, value
        out_queries = tf.ones([n], tf.int32)
        state = {"row": tf.range(n), "ids": ids, "x": x, "labels": labels, "x_best": x_best,
                 "loss": value}
        state = drop(state, tf.logical_not(fooled))

        def cond(i, state, *outputs):
            return tf.logical_and(i < n_queries, tf.size(state["row"]) > 0)

        def body(i, s, out_x, out_fooled, out_loss, out_queries):
            s = dict(s)
            x_new = candidate(s["x"], s["x_best"], s["ids"], total, fold(seed, i + 1), sides[i])
            # A candidate equal to the current point (its window already at those signs, or
            # clipped there: common once windows are a few pixels) would score the same and
            # be rejected; AutoAttack's code queries it anyway, we skip its forward pass.
            moved = tf.reduce_any(tf.not_equal(x_new, s["x_best"]), axis=[1, 2, 3])
            where = tf.where(moved)
            # (The model never sees an empty batch: oneDNN's fused convolutions reject one.)
            moved_value, moved_fooled = tf.cond(
                tf.reduce_any(moved),
                lambda: loss_and_fooled(tf.boolean_mask(x_new, moved),
                                        tf.boolean_mask(s["labels"], moved)),
                lambda: (tf.zeros([0]), tf.zeros([0], tf.bool)))
            count = tf.shape(moved)
            value = tf.tensor_scatter_nd_update(tf.fill(count, np.inf), where, moved_value)
            fooled = tf.tensor_scatter_nd_update(tf.zeros(count, tf.bool), where, moved_fooled)
            better = tf.logical_or(value < s["loss"], fooled)
            s["x_best"] = tf.where(better[:, None, None, None], x_new, s["x_best"])
            s["loss"] = tf.where(better, value, s["loss"])
            rows = s["row"][:, None]
            out_queries = tf.tensor_scatter_nd_add(out_queries, rows, tf.ones_like(s["row"]))
            done = tf.boolean_mask(rows, fooled)
            out_x = tf.tensor_scatter_nd_update(out_x, done, tf.boolean_mask(x_new, fooled))
            out_fooled = tf.tensor_scatter_nd_update(out_fooled, done,
                                                     tf.ones_like(done[:, 0], tf.bool))
            out_loss = tf.tensor_scatter_nd_update(out_loss, done, tf.boolean_mask(value, fooled))
            s = drop(s, tf.logical_not(fooled))
            # Progress (advbench.core.progress): queries of this run done, samples running.
            return (report_step(i + 1, tf.size(s["row"]), budget=n_queries), s, out_x,
                    out_fooled, out_loss, out_queries)

        invariants = {k: tf.TensorShape([None]).concatenate(v.shape[1:])
                      for k, v in state.items()}
        _, state, out_x, out_fooled, out_loss, out_queries = tf.while_loop(
            cond, body, (tf.constant(0), state, out_x, out_fooled, out_loss, out_queries),
            shape_invariants=(tf.TensorShape([]), invariants, out_x.shape, out_fooled.shape,
                              out_loss.shape, out_queries.shape))
        rows = state["row"][:, None]
        out_x = tf.tensor_scatter_nd_update(out_x, rows, state["x_best"])
        out_loss = tf.tensor_scatter_nd_update(out_loss, rows, state["loss"])
        return out_x, out_fooled, out_queries, out_loss

    return compile_batch_function(attack, batch_signature(image_shape, 2))


class Square(EnsembleMember):
    """The Square Attack: score-based random search in square windows, L-inf or L2.

    Needs only the model's logits, never its gradient: the check that a defense which hides
    its gradients (saturation, quantisation, non-differentiable layers) is not robust.
    Per sample it stops at the first query that changes the prediction; ``n_restarts`` runs
    each start anew on the samples still not fooled. Samples the model already misclassifies
    are returned unchanged. Defaults are AutoAttack's (p_init 0.8, 5,000 queries, 1 restart,
    margin loss, schedule not rescaled); eps 0.3 is MNIST's L-inf budget (set eps for L2).

    Args:
        eps: radius of the ball, >= 0 (default 0.3).
        norm: "linf" (default), "l2" or "l1" (the L1 Square of Croce and Hein, "Mind the
            box", ICML 2021: L1 patterns, projection onto the L1 ball and the box).
        n_queries: search steps per run after the start, >= 1 (default 5000); a sample spends
            at most n_queries + 1 queries per run.
        p_init: fraction of the image the first windows cover, in (0, 1] (default 0.8).
        n_restarts: runs, >= 1 (default 1).
        loss: "margin" (default; z_y - max_{i != y} z_i) or "ce" (the negative
            cross-entropy), the score each query must lower.
        rescale_schedule: stretch the p schedule, written for 10,000 queries, to n_queries
            (default False, as AutoAttack runs it).

    Input: x float32 (batch, H, W, C) in [0, 1]; y int (batch,). Output: ``x_adv`` in [0, 1]
    within eps of x; ``extras["queries"]`` (batch,) int32: queries spent on each sample over
    all runs (0 for samples not attacked).

    Example:
        >>> out = Square(eps=0.3)(model, x, y, seed=0)
        >>> out = Square(eps=2.0, norm="l2", n_queries=1000)(model, x, y, seed=0)
    """

    name = "square"
    randomized = True

    def __post_init__(self) -> None:
        check_norm(self.norm, self.name)  # l1 is for the attacks of L1_ATTACKS

    def run_on(self, model: Model, x: np.ndarray, y: np.ndarray, *, seed: int, ids: np.ndarray,
               total: int, logits: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        if x.ndim != 4:
            raise ParameterError(f"square needs images (batch, height, width, channels), got "
                                 f"an array of shape {x.shape}")
        labels = y.astype(np.int32)
        attack = self.clean_logits(model, x, logits).argmax(axis=1) == labels
        fn = self.compiled(model, "square", lambda: build_square(
            model, eps=self.eps, norm=self.norm, n_queries=self.n_queries, p_init=self.p_init,
            rescale_schedule=self.rescale_schedule, loss=self.loss,
            image_shape=tuple(int(d) for d in x.shape[1:])))
        x_adv = x.copy()
        fooled = np.zeros(len(x), bool)
        best_loss = np.full(len(x), np.inf, np.float32)
        queries = np.zeros(len(x), np.int32)
        ids = ids.astype(np.int32)
        for restart in range(self.n_restarts):
            todo = np.flatnonzero(attack & ~fooled)
            if todo.size == 0:
                break
            progress.iterations(self.n_restarts * self.n_queries, base=restart * self.n_queries,
                                label="query", samples=todo.size)
            out_x, out_fooled, out_queries, out_loss = (t.numpy() for t in fn(
                tf.constant(x[todo]), tf.constant(labels[todo]), tf.constant(ids[todo]),
                tf.constant(total, tf.int32), tf.constant([seed, restart], tf.int64)))
            better = out_fooled | (out_loss < best_loss[todo])
            x_adv[todo[better]] = out_x[better]
            best_loss[todo[better]] = out_loss[better]
            fooled[todo[out_fooled]] = True
            queries[todo] += out_queries
        return (self.held(x, x_adv), fooled | ~attack,
                {"queries": queries})
