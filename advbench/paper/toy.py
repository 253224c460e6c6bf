"""The paper's toy experiment (Figure 2): decision regions and confidence of a small MLP
trained on 2-D data with each data augmentation.

Section 3.2 of "Efficient Defenses Against Adversarial Attacks" (Zantedeschi, Nicolae, Rawat,
2017, https://arxiv.org/abs/1707.06728): for every original point x of a toy data set, one
artificial point x' is added, clipped into the input domain [0, 1]^2, and a softmax network
with two dense ReLU hidden layers is trained on the union. The paper's claim to check: Gaussian
data augmentation (GDA) smooths the model's confidence without costing clean accuracy.

Points are shaped (N, 2, 1, 1): the two coordinates are the two "pixels" of a 2x1 grey image,
so the project's attacks and ``build_model("mlp", ...)`` apply unchanged. The adversarial
augmentations are crafted on the model trained on the clean data alone (the "none" panel);
every panel's model is then trained from the same initial weights with the same schedule, on
the clean points plus that panel's added points.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from advbench.attacks.fgsm import FGSM
from advbench.attacks.jsma import JSMA
from advbench.attacks.vat import VirtualAdversarial
from advbench.core.errors import ParameterError
from advbench.core.progress import Progress
from advbench.core.types import Model
from advbench.models.zoo import build_model, predict_logits
from advbench.run.metrics import loss_sensitivity_per_sample
from advbench.score.report import save_figure, write_text

#: Shape of one toy point as an "image": (H, W, C) = (2, 1, 1).
POINT_SHAPE = (2, 1, 1)

#: Perturbation size of the FGSM (L2 norm) and VAT augmentations, and Gaussian sigma (paper).
ADVERSARIAL_EPS = 0.3
GAUSSIAN_SIGMA = 0.3
#: JSMA feature change (paper).
JSMA_THETA = 0.1
#: The paper does not give the uniform noise's range ("x' ~ U(x)"); we draw each coordinate
#: from U(x_i - 0.3, x_i + 0.3), the same reach per coordinate as the other augmentations.
UNIFORM_HALF_WIDTH = 0.3

#: Max-probability levels drawn as black confidence contours.
CONFIDENCE_LEVELS = (0.6, 0.7, 0.8, 0.9)
#: Points per side of the grid over [0, 1]^2 used for the plot and the smoothness figures.
GRID_SIZE = 201


# -- data sets ------------------------------------------------------------------------------
def _to_unit_square(points: np.ndarray, center, scale: float) -> np.ndarray:
    """A fixed affine map (same for train and test) into [0, 1]^2, aspect ratio kept, then
    clipping of the rare noise outliers that fall outside."""
    mapped = (points - np.asarray(center)) * scale + 0.5
    return np.clip(mapped, 0.0, 1.0)


def _as_images(points: np.ndarray, labels: np.ndarray, rng: np.random.Generator):
    order = rng.permutation(len(points))
    x = points[order].astype(np.float32).reshape((-1, *POINT_SHAPE))
    return x, labels[order].astype(np.int64)


def make_circles(n: int, seed: int, *, noise: float = 0.05,
                 factor: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Two concentric circles: class 0 the outer one, class 1 the inner one (radius ``factor``).

    Same construction as scikit-learn's ``make_circles(noise=0.05, factor=0.5)`` (evenly
    spaced angles, Gaussian noise of std ``noise``), then mapped into [0, 1]^2: centre (0.5,
    0.5), outer radius 0.4.

    Returns:
        x float32 (n, 2, 1, 1) in [0, 1], y int64 (n,) in {0, 1}, shuffled.

    Example:
        >>> x, y = make_circles(300, seed=0)
    """
    rng = np.random.default_rng(seed)
    n_outer = n // 2
    n_inner = n - n_outer
    outer = np.linspace(0, 2 * np.pi, n_outer, endpoint=False)
    inner = np.linspace(0, 2 * np.pi, n_inner, endpoint=False)
    points = np.concatenate([np.stack([np.cos(outer), np.sin(outer)], axis=1),
                             factor * np.stack([np.cos(inner), np.sin(inner)], axis=1)])
    points += rng.normal(scale=noise, size=points.shape)
    labels = np.concatenate([np.zeros(n_outer), np.ones(n_inner)])
    return _as_images(_to_unit_square(points, (0.0, 0.0), 0.4), labels, rng)


def make_moons(n: int, seed: int, *, noise: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaved half-moons: class 0 the upper one, class 1 the lower one.

    Same construction as scikit-learn's ``make_moons(noise=0.1)``, then mapped into [0, 1]^2
    with the aspect ratio kept: the moons' span x in [-1, 2] becomes [0.1, 0.9].

    Returns:
        x float32 (n, 2, 1, 1) in [0, 1], y int64 (n,) in {0, 1}, shuffled.

    Example:
        >>> x, y = make_moons(300, seed=0)
    """
    rng = np.random.default_rng(seed)
    n_outer = n // 2
    n_inner = n - n_outer
    outer = np.linspace(0, np.pi, n_outer)
    inner = np.linspace(0, np.pi, n_inner)
    points = np.concatenate([np.stack([np.cos(outer), np.sin(outer)], axis=1),
                             np.stack([1 - np.cos(inner), 0.5 - np.sin(inner)], axis=1)])
    points += rng.normal(scale=noise, size=points.shape)
    labels = np.concatenate([np.zeros(n_outer), np.ones(n_inner)])
    return _as_images(_to_unit_square(points, (0.5, 0.25), 0.8 / 3.0), labels, rng)


#: Toy data sets by CLI name: (n, seed) -> (x (n, 2, 1, 1) float32 in [0, 1], y int64 (n,)).
TOY_DATASETS: dict[str, Callable] = {
    "circles": make_circles,
    "moons": make_moons,
}


def make_toy_data(dataset: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points of a toy data set by name (see ``TOY_DATASETS``)."""
    if dataset not in TOY_DATASETS:
        raise ParameterError(f"unknown toy data set {dataset!r}; choose one of: "
                             f"{', '.join(sorted(TOY_DATASETS))}")
    if int(n) < 2:
        raise ParameterError(f"a toy data set needs at least 2 points (one per class), got {n}")
    return TOY_DATASETS[dataset](int(n), int(seed))


# -- augmentations --------------------------------------------------------------------------
# Each takes the model trained on the clean data, the clean points x (N, 2, 1, 1), labels y
# and a seed, and returns the artificial points (one per original, in [0, 1]).
def augment_none(model: Model, x: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """No augmentation: the reference panel."""
    return np.zeros((0, *x.shape[1:]), np.float32)


def augment_fgsm(model: Model, x: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """FGSM with the L2 norm, eps 0.3: x' = clip(x + 0.3 * g / ||g||_2)."""
    return FGSM(eps=ADVERSARIAL_EPS, norm="l2")(model, x, y, seed=seed).x_adv


def augment_vat(model: Model, x: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """Virtual adversarial point, ||x' - x||_2 = 0.3 before clipping (labels unused)."""
    return VirtualAdversarial(eps=ADVERSARIAL_EPS)(model, x, y, seed=seed).x_adv


def augment_jsma(model: Model, x: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """JSMA with theta 0.1 towards the other class. With two features the only pair is both
    coordinates, so a point moves along (+0.1, +0.1) steps until the model predicts the other
    class, a coordinate reaches 1, or the saliency map's sign conditions fail (then x' = x)."""
    return JSMA(theta=JSMA_THETA)(model, x, y, seed=seed).x_adv


def augment_uniform(model: Model, x: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """x' ~ U(x - 0.3, x + 0.3) per coordinate, clipped."""
    rng = np.random.default_rng([seed, 1])
    noise = rng.uniform(-UNIFORM_HALF_WIDTH, UNIFORM_HALF_WIDTH, size=x.shape)
    return np.clip(x + noise, 0.0, 1.0).astype(np.float32)


def augment_gaussian(model: Model, x: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """GDA: x' ~ N(x, 0.3^2 I), clipped."""
    rng = np.random.default_rng([seed, 2])
    noise = rng.normal(scale=GAUSSIAN_SIGMA, size=x.shape)
    return np.clip(x + noise, 0.0, 1.0).astype(np.float32)


#: Augmentations by name, in the order of the figure's panels.
AUGMENTATIONS: dict[str, Callable] = {
    "none": augment_none,
    "fgsm": augment_fgsm,
    "vat": augment_vat,
    "jsma": augment_jsma,
    "uniform": augment_uniform,
    "gaussian": augment_gaussian,
}

#: Panel titles.
AUGMENTATION_TITLES = {
    "none": "no augmentation",
    "fgsm": "FGSM (L2, eps 0.3)",
    "vat": "VAT (eps 0.3)",
    "jsma": "JSMA (theta 0.1)",
    "uniform": f"uniform (+-{UNIFORM_HALF_WIDTH:g})",
    "gaussian": f"Gaussian, GDA (sigma {GAUSSIAN_SIGMA:g})",
}


def augment(name: str, model: Model, x: np.ndarray, y: np.ndarray, seed: int = 0) -> np.ndarray:
    """The points that augmentation ``name`` adds to (x, y): one per original, in [0, 1].

    Args:
        name: a key of ``AUGMENTATIONS``.
        model: the Keras model (logits) trained on the clean data; used by fgsm, vat, jsma.
        x: float32 (N, 2, 1, 1) in [0, 1]; y: int (N,).
        seed: seed of the random augmentations (uniform, gaussian, VAT's start, JSMA's target).

    Returns:
        float32 (N, 2, 1, 1) in [0, 1] ((0, 2, 1, 1) for "none"), labelled like x.

    Example:
        >>> x_added = augment("gaussian", model, x, y, seed=0)
    """
    if name not in AUGMENTATIONS:
        raise ParameterError(f"unknown augmentation {name!r}; choose one of: "
                             f"{', '.join(AUGMENTATIONS)}")
    return np.asarray(AUGMENTATIONS[name](model, x, y, seed), dtype=np.float32)


# -- training -------------------------------------------------------------------------------
def train_mlp(x: np.ndarray, y: np.ndarray, *, seed: int = 0, epochs: int = 300,
              batch_size: int = 64, learning_rate: float = 3e-3) -> keras.Model:
    """The paper's toy network (two dense ReLU hidden layers of 64, softmax on the logits)
    trained with Adam on mini-batches for a fixed number of epochs.

    The initial weights and the batch order come from ``seed`` only, so every panel of the
    figure starts from the same network. An epoch runs as one compiled loop over the batches.

    Args:
        x: float32 (N, 2, 1, 1) in [0, 1]; y: int (N,) in {0, 1}.
        seed: seed of the initial weights and the shuffling (default 0).
        epochs: passes over the data (default 300), >= 1.
        batch_size: default 64; learning_rate: Adam's, default 3e-3.

    Returns:
        the trained Keras model (logits).

    Example:
        >>> model = train_mlp(x, y, epochs=100)
    """
    if int(epochs) < 1:
        raise ParameterError(f"epochs must be >= 1, got {epochs}")
    if int(batch_size) < 1:
        raise ParameterError(f"batch size must be >= 1, got {batch_size}")
    keras.utils.set_random_seed(seed)
    model = build_model("mlp", POINT_SHAPE, 2)
    optimizer = keras.optimizers.Adam(learning_rate=learning_rate)
    optimizer.build(model.trainable_variables)
    x_all = tf.constant(x, tf.float32)
    y_all = tf.constant(y, tf.int32)
    n = len(x)
    batches = -(-n // batch_size)

    @tf.function
    def run_epoch(order):
        for b in tf.range(batches):
            idx = order[b * batch_size:(b + 1) * batch_size]
            xb, yb = tf.gather(x_all, idx), tf.gather(y_all, idx)
            with tf.GradientTape() as tape:
                logits = model(xb, training=True)
                loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                    labels=yb, logits=logits))
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))

    rng = np.random.default_rng([seed, 3])
    for _ in range(int(epochs)):
        run_epoch(tf.constant(rng.permutation(n), tf.int32))
    return model


# -- measurements ---------------------------------------------------------------------------
def unit_grid(size: int = GRID_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """The (size * size, 2, 1, 1) grid over [0, 1]^2 and its two axes."""
    axis = np.linspace(0.0, 1.0, size, dtype=np.float32)
    gx, gy = np.meshgrid(axis, axis)
    points = np.stack([gx.ravel(), gy.ravel()], axis=1).reshape((-1, *POINT_SHAPE))
    return points, axis


def probabilities(model: Model, x: np.ndarray) -> np.ndarray:
    """Softmax probabilities (N, 2) of the model's logits."""
    logits = predict_logits(model, x, batch_size=8192).astype(np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)


def probability_slopes(model: Model, x: np.ndarray, batch_size: int = 8192) -> np.ndarray:
    """||dP(class 1 | x)/dx||_2 per point (N,): how fast the model's belief changes at x."""
    @tf.function
    def slopes(xb):
        with tf.GradientTape() as tape:
            tape.watch(xb)
            p1 = tf.nn.softmax(model(xb, training=False))[:, 1]
        gradient = tape.gradient(p1, xb)
        return tf.norm(tf.reshape(gradient, [tf.shape(xb)[0], -1]), axis=1)

    return np.concatenate([slopes(tf.constant(x[i:i + batch_size])).numpy()
                           for i in range(0, len(x), batch_size)]).astype(np.float64)


def panel_metrics(model: Model, x_train: np.ndarray, y_train: np.ndarray,
                  x_test: np.ndarray, y_test: np.ndarray, grid: np.ndarray) -> dict:
    """Accuracy and smoothness figures of one panel's model.

    - ``train_accuracy``: on the original (clean) training points; ``test_accuracy``: on the
      held-out test points.
    - ``test_loss_sensitivity``: mean ||dJ(x, y)/dx||_2 over the test points, true labels (the
      paper's Table 3 metric, ``advbench.run.metrics``).
    - ``grid_max_slope``: the largest ||dP(class 1)/dx||_2 over the [0, 1]^2 grid, a Lipschitz
      estimate of the model's belief: a sharp cliff between the classes gives a large value,
      a gradual change of confidence a small one (the transition is ~1/slope wide).
    - ``grid_mean_confidence``: mean max-probability over the grid (lower = less confident away
      from the data); ``grid_confident_area``: fraction of the grid with max-probability >= 0.9.
    """
    p_grid = probabilities(model, grid)
    confidence = p_grid.max(axis=1)
    return {
        "train_accuracy": float(np.mean(probabilities(model, x_train).argmax(1) == y_train)),
        "test_accuracy": float(np.mean(probabilities(model, x_test).argmax(1) == y_test)),
        "test_loss_sensitivity": float(np.mean(
            loss_sensitivity_per_sample(model, x_test, y_test, batch_size=4096))),
        "grid_max_slope": float(probability_slopes(model, grid).max()),
        "grid_mean_confidence": float(confidence.mean()),
        "grid_confident_area": float(np.mean(confidence >= CONFIDENCE_LEVELS[-1])),
    }


# -- the figure -----------------------------------------------------------------------------
CLASS_COLORS = ("#d62728", "#1f77b4")


def plot_panels(panels: list[dict], path: Path, *, title: str) -> Path:
    """Save the 2 x 3 figure: per panel, P(class 1) as colour, black max-probability contours
    at ``CONFIDENCE_LEVELS``, the decision boundary, original points and added (smaller) ones.

    Each entry of ``panels``: name, probability grid (size, size) of class 1, axis (size,),
    x_train, y_train, x_added, metrics.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    columns = 3
    rows = -(-len(panels) // columns)
    figure, axes_grid = plt.subplots(rows, columns, figsize=(4.4 * columns, 4.7 * rows + 0.9),
                                     sharex=True, sharey=True, squeeze=False)
    # Two-class confidence contours: max(p, 1 - p) = c  <=>  p in {1 - c, c}.
    levels = sorted({round(1 - c, 6) for c in CONFIDENCE_LEVELS}
                    | {round(c, 6) for c in CONFIDENCE_LEVELS})
    image = None
    for index, axes in enumerate(axes_grid.flat):
        if index >= len(panels):
            axes.set_visible(False)
            continue
        panel = panels[index]
        axis, p1 = panel["axis"], panel["p1"]
        image = axes.contourf(axis, axis, p1, levels=np.linspace(0, 1, 21), cmap="RdBu",
                              vmin=0, vmax=1, alpha=0.75)
        lines = axes.contour(axis, axis, p1, levels=levels, colors="black", linewidths=0.8)
        axes.clabel(lines, fmt=lambda v: f"{max(v, 1 - v):.1f}", fontsize=7, inline=True)
        axes.contour(axis, axis, p1, levels=[0.5], colors="black", linewidths=1.8,
                     linestyles="dashed")
        x_added = panel["x_added"].reshape(-1, 2)
        y_added = panel["y_train"][:len(x_added)]
        x_train = panel["x_train"].reshape(-1, 2)
        for label, color in enumerate(CLASS_COLORS):
            added = x_added[y_added == label]
            # Small, with a thin dark edge: visible on the region of their own colour too.
            axes.scatter(added[:, 0], added[:, 1], s=7, c=color, edgecolors="black",
                         linewidths=0.25)
            orig = x_train[panel["y_train"] == label]
            axes.scatter(orig[:, 0], orig[:, 1], s=16, c=color, edgecolors="black",
                         linewidths=0.4)
        metrics = panel["metrics"]
        axes.set_title(f"{AUGMENTATION_TITLES[panel['name']]}\n"
                       f"test acc {100 * metrics['test_accuracy']:.1f}%, "
                       f"max slope {metrics['grid_max_slope']:.1f}\n"
                       f"confidence >= 0.9 on {100 * metrics['grid_confident_area']:.0f}% "
                       "of the square", fontsize=10)
        axes.set_xlim(0, 1)
        axes.set_ylim(0, 1)
        axes.set_aspect("equal")
        if index % columns == 0:
            axes.set_ylabel("x2 (second coordinate)")
        if index // columns == rows - 1:
            axes.set_xlabel("x1 (first coordinate)")
    handles = [
        Line2D([], [], marker="o", ls="", color=CLASS_COLORS[0], markeredgecolor="black",
               label="class 0 (original)"),
        Line2D([], [], marker="o", ls="", color=CLASS_COLORS[1], markeredgecolor="black",
               label="class 1 (original)"),
        Line2D([], [], marker="o", ls="", color="grey", markeredgecolor="black",
               markeredgewidth=0.3, markersize=3, label="added point (class colour)"),
        Line2D([], [], color="black", lw=0.8, label="confidence 0.6 / 0.7 / 0.8 / 0.9"),
        Line2D([], [], color="black", lw=1.8, ls="--", label="decision boundary"),
    ]
    figure.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=9,
                  frameon=False)
    figure.suptitle(title, fontsize=12)
    figure.tight_layout(rect=(0, 0.05, 0.92, 1))
    if image is not None:  # at least one panel drawn
        colorbar_axes = figure.add_axes((0.93, 0.2, 0.015, 0.6))
        bar = figure.colorbar(image, cax=colorbar_axes, ticks=np.linspace(0, 1, 6))
        bar.set_label("P(class 1)")
    path = Path(path)
    try:
        save_figure(figure, path, dpi=100)
    finally:
        plt.close(figure)
    return path


# -- the experiment -------------------------------------------------------------------------
def run_toy(dataset: str, out_dir: Path, *, seed: int = 0, epochs: int = 300,
            n_train: int = 300, n_test: int = 1000,
            augmentations: Sequence[str] | None = None,
            progress: Progress | None = None) -> dict:
    """Figure 2 of the paper for one toy data set: train the MLP with each augmentation, save
    the figure ``<out_dir>/toy-<dataset>.png`` and the numbers ``toy-<dataset>.json``.

    The clean model (panel "none") is trained first; FGSM, VAT and JSMA points are crafted on
    it. Every other panel's model is trained from the same initial weights, for the same
    epochs, on the clean points plus one added point per original.

    Args:
        dataset: "circles" or "moons" (``TOY_DATASETS``).
        out_dir: folder for the PNG and JSON (created).
        seed: seed of the data, the augmentations and the training (default 0); the test set
            uses ``seed + 1``.
        epochs: training epochs per panel (default 300).
        n_train: original training points (default 300); n_test: test points (default 1000).
        augmentations: names to draw, default all of ``AUGMENTATIONS`` in order; "none" is
            always trained (the adversarial ones are crafted on its model).
        progress: an ``advbench.core.progress.Progress`` (default: silent).

    Returns:
        {"dataset", "png", "json", "seed", "epochs", "n_train", "n_test", "seconds",
         "panels": {augmentation: {"added_points", "mean_shift", "moved_fraction",
         "train_accuracy", "test_accuracy", "test_loss_sensitivity", "grid_max_slope",
         "grid_mean_confidence", "grid_confident_area"}}}

    Example:
        >>> result = run_toy("moons", Path("results/toy"))
        >>> result["panels"]["gaussian"]["test_accuracy"]
    """
    if dataset not in TOY_DATASETS:
        raise ParameterError(f"unknown toy data set {dataset!r}; choose one of: "
                             f"{', '.join(sorted(TOY_DATASETS))}")
    names = list(AUGMENTATIONS) if augmentations is None else list(augmentations)
    unknown = [name for name in names if name not in AUGMENTATIONS]
    if unknown:
        raise ParameterError(f"unknown augmentation(s) {', '.join(map(repr, unknown))}; "
                             f"choose from: {', '.join(AUGMENTATIONS)}")
    # The clean model comes first: the adversarial augmentations are crafted on it.
    names = ["none"] + [name for name in dict.fromkeys(names) if name != "none"]
    progress = progress or Progress(quiet=True)
    started = time.perf_counter()
    x_train, y_train = make_toy_data(dataset, n_train, seed)
    x_test, y_test = make_toy_data(dataset, n_test, seed + 1)
    grid, axis = unit_grid()

    progress.start(f"toy {dataset}", len(names))
    clean_model = None
    panels, metrics = [], {}
    for name in names:
        if name == "none":
            x_added = augment("none", None, x_train, y_train, seed)
            model = clean_model = train_mlp(x_train, y_train, seed=seed, epochs=epochs)
        else:
            x_added = augment(name, clean_model, x_train, y_train, seed)
            model = train_mlp(np.concatenate([x_train, x_added]),
                              np.concatenate([y_train, y_train[:len(x_added)]]),
                              seed=seed, epochs=epochs)
        shift = np.linalg.norm((x_added - x_train[:len(x_added)]).reshape(-1, 2), axis=1)
        metrics[name] = {
            "added_points": int(len(x_added)),
            "mean_shift": float(shift.mean()) if len(shift) else 0.0,
            "moved_fraction": float(np.mean(shift > 1e-6)) if len(shift) else 0.0,
            **panel_metrics(model, x_train, y_train, x_test, y_test, grid),
        }
        p1 = probabilities(model, grid)[:, 1].reshape(len(axis), len(axis))
        panels.append({"name": name, "axis": axis, "p1": p1, "x_train": x_train,
                       "y_train": y_train, "x_added": x_added, "metrics": metrics[name]})
        progress.advance(status=f"{name}: test acc {metrics[name]['test_accuracy']:.3f}")
    progress.close()

    out_dir = Path(out_dir)
    png = plot_panels(panels, out_dir / f"toy-{dataset}.png",
                      title=f"{dataset}: MLP (2 x 64 ReLU) trained with each augmentation, "
                            f"{n_train} points + 1 added per point, {epochs} epochs, seed {seed}")
    result = {"dataset": dataset, "png": str(png), "json": str(out_dir / f"toy-{dataset}.json"),
              "seed": seed, "epochs": epochs, "n_train": n_train, "n_test": n_test,
              "seconds": round(time.perf_counter() - started, 2), "panels": metrics}
    write_text(out_dir / f"toy-{dataset}.json", json.dumps(result, indent=2) + "\n")
    return result
