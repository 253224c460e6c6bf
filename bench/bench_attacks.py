"""Attack speed and quality side by side with IBM ART 1.20.1 on the paper's MNIST CNN.

One process, one trained CNN (Conv 64-128-128 + Dense, one epoch on MNIST), the first
``--limit`` MNIST test images, both libraries on the same machine:

    attack     advbench                               ART 1.20.1 (TensorFlowV2Classifier)
    fgsm       FGSM(eps=0.1)                           FastGradientMethod(eps=0.1)
    fgsm-min   MinimalFGSM(eps_step=0.01, eps_max=1)   FastGradientMethod(minimal=True, ...)
    deepfool   DeepFool(max_iter=100, overshoot=0.02)  DeepFool(max_iter=100, epsilon=0.02)
    cw-l2      CarliniWagnerL2(confidence=2.3), ours   CarliniL2Method(confidence=2.3)
               at its defaults and at ART's budget
    jsma       JSMA(theta=0.1, gamma=1)                SaliencyMapMethod(theta=0.1, gamma=1)

ART's slow attacks (deepfool, cw-l2, jsma) run on the first ``--art-limit`` images only;
ours run on all ``--limit`` images (the speed figure) and again on that subset, so that the
quality figures compare the two libraries on the same images. The fast attacks (fgsm,
fgsm-min) are timed as the median of repeated runs (3 s at least), the slow ones once.
Success and norms are taken
over the samples the model classifies correctly (ART's DeepFool moves misclassified samples
too, ours leaves them alone), norms over the successful ones. JSMA gets the same random
target per sample in both libraries and succeeds when the prediction is the target.

The raw forward+backward throughput of the CNN at batch 256 (one input gradient, the ceiling
for a one-gradient attack) is measured in the same run. For every attack the script counts
the model passes the attack needed (from its per-sample iteration counts for ours, from
counting calls into the classifier for ART) and converts them into the time those passes
take at the measured raw rates: the "pass share" is that time over the measured time, the
rest is overhead (Python, data movement, small batches, bookkeeping). ART runs the Keras
model; ours differentiate its attack twin (``advbench.models.gradients``: same forward pass,
faster input gradient), whose forward+backward rate is measured too and is the reference
for our rows.

Usage:
    python bench/bench_attacks.py [--limit 1000] [--art-limit 100] [--attacks fgsm,jsma]
        [--model PATH] [--batch-size 250] [--quick] [--json out.json]

``--model PATH`` loads the model artifact at PATH, or trains one (about a minute on two CPU
cores) and saves it there. ``--quick`` is a smoke check on tiny sizes (under two minutes).
Needs the optional extra: ``pip install -e '.[bench]'`` (adversarial-robustness-toolbox).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

# ART's class_gradient calls tape.gradient inside the tape's context: TF warns on every call.
tf.get_logger().setLevel("ERROR")
warnings.filterwarnings("ignore", message="PyTorch not found")

from advbench import data  # noqa: E402
from advbench.attacks.carlini_wagner import CarliniWagnerL2  # noqa: E402
from advbench.attacks.deepfool import DeepFool  # noqa: E402
from advbench.attacks.fgsm import FGSM  # noqa: E402
from advbench.attacks.fgsm_min import MinimalFGSM  # noqa: E402
from advbench.attacks.jsma import JSMA  # noqa: E402
from advbench.attacks.targets import choose_targets  # noqa: E402
from advbench.models import predict_labels  # noqa: E402
from advbench.models.gradients import attack_model  # noqa: E402
from advbench.metrics import perturbation_norms  # noqa: E402

ALL_ATTACKS = ("fgsm", "fgsm-min", "deepfool", "cw-l2", "jsma")
# ART's attacks that run at a few samples a second: measured on the --art-limit subset.
SLOW_ATTACKS = ("deepfool", "cw-l2", "jsma")


def default_data_dir() -> str | None:
    if os.environ.get("ADVBENCH_DATA"):
        return os.environ["ADVBENCH_DATA"]
    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    return str(shared) if shared.is_dir() else None


# -- model -----------------------------------------------------------------------------------
def trained_cnn(path: str | None, data_dir: str | None, limit: int | None):
    """The paper's CNN trained one epoch on MNIST (advbench.train: Adam, batch 128), loaded
    from ``path`` when it exists, else trained and saved there."""
    from advbench.artifacts import load_model, save_model
    from advbench.defenses import make_defense
    from advbench.train import TrainConfig, train

    if path and Path(path).exists():
        model, meta = load_model(path)
        log(f"model: {path} (clean test accuracy {meta.get('clean_test_accuracy', float('nan')):.4f})")
        return model
    started = time.perf_counter()
    model, meta = train(TrainConfig(epochs=1, limit=limit, data_dir=data_dir),
                        make_defense("none", "mnist"))
    log(f"model: trained 1 epoch in {time.perf_counter() - started:.0f} s, clean test accuracy "
        f"{meta['clean_test_accuracy']:.4f}")
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        save_model(path, model, meta)
    return model


def raw_rates(model, x: np.ndarray, batch_size: int = 256, seconds: float = 3.0):
    """Samples/s of the compiled forward pass and of forward+backward (gradient of the summed
    cross-entropy w.r.t. the input, what FGSM needs), at ``batch_size``."""
    loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="sum")

    @tf.function
    def forward(xb):
        return model(xb, training=False)

    @tf.function
    def gradient(xb, yb):
        with tf.GradientTape() as tape:
            tape.watch(xb)
            loss = loss_fn(yb, model(xb, training=False))
        return tape.gradient(loss, xb)

    reps = -(-batch_size // len(x))
    xb = tf.constant(np.concatenate([x] * reps)[:batch_size])
    yb = tf.zeros([batch_size], tf.int64)

    def rate(fn, *args):
        fn(*args).numpy()  # trace
        count, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            fn(*args).numpy()
            count += 1
        return count * batch_size / (time.perf_counter() - started)

    return rate(forward, xb), rate(gradient, xb, yb)


def model_flops(model) -> float:
    """Floating-point operations of one forward pass of one image: 2 x the multiply-adds of
    the Conv2D and Dense layers (activations, biases and pooling are left out)."""
    import keras

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kernel_h, kernel_w, channels_in, channels_out = layer.kernel.shape
            _, out_h, out_w, _ = layer.output.shape
            total += out_h * out_w * channels_out * kernel_h * kernel_w * channels_in
        elif isinstance(layer, keras.layers.Dense):
            total += int(np.prod(layer.kernel.shape))
    return 2.0 * total


def matmul_peak(size: int = 2048, seconds: float = 3.0) -> float:
    """GFLOP/s of a float32 size x size matrix product: what this CPU's cores can do."""
    a = tf.random.normal([size, size], seed=0)
    b = tf.random.normal([size, size], seed=1)
    product = tf.function(lambda u, v: tf.matmul(u, v))
    product(a, b).numpy()
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        product(a, b).numpy()
        count += 1
    return count * 2.0 * size ** 3 / (time.perf_counter() - started) / 1e9


# -- ART -------------------------------------------------------------------------------------
class PassCounter:
    """Counts the rows ART sends through the model (forward and backward passes) by wrapping
    the classifier's predict / loss_gradient / class_gradient.

    ART's TensorFlowV2Classifier.class_gradient runs one forward and one backward pass per
    class it differentiates: all classes for ``label=None``, one for an int, one per distinct
    label for an array.
    """

    def __init__(self, classifier):
        self.forward = 0
        self.backward = 0
        for name in ("predict", "loss_gradient", "class_gradient"):
            setattr(classifier, name, self._wrap(name, getattr(classifier, name)))

    def _wrap(self, name, method):
        def counted(x, *args, **kwargs):
            rows = len(x)
            passes = 1
            if name == "predict":
                passes = 0
            elif name == "class_gradient":
                label = kwargs.get("label", args[0] if args else None)
                if label is None:
                    passes = 10
                elif not isinstance(label, (int, np.integer)):
                    passes = len(np.unique(label))
            self.forward += rows * max(passes, 1)
            self.backward += rows * passes
            return method(x, *args, **kwargs)
        return counted

    def reset(self):
        self.forward = self.backward = 0


def art_classifier(model):
    from art.estimators.classification import TensorFlowV2Classifier

    classifier = TensorFlowV2Classifier(
        model=model, nb_classes=10, input_shape=(28, 28, 1),
        loss_object=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        clip_values=(0.0, 1.0))
    return classifier, PassCounter(classifier)


def art_attack(name: str, classifier):
    from art.attacks.evasion import (CarliniL2Method, DeepFool as ArtDeepFool,
                                     FastGradientMethod, SaliencyMapMethod)

    # ART's own batch sizes (32 for FGM, 1 for the others), as a user gets them.
    if name == "fgsm":
        return FastGradientMethod(classifier, eps=0.1)
    if name == "fgsm-min":
        return FastGradientMethod(classifier, minimal=True, eps_step=0.01, eps=1.0)
    if name == "deepfool":
        # ART calls the overshoot "epsilon" and applies it once to the final perturbation.
        return ArtDeepFool(classifier, max_iter=100, epsilon=0.02, verbose=False)
    if name == "cw-l2":
        return CarliniL2Method(classifier, confidence=2.3, verbose=False)
    if name == "jsma":
        return SaliencyMapMethod(classifier, theta=0.1, gamma=1.0, verbose=False)
    raise ValueError(name)


# -- ours ------------------------------------------------------------------------------------
def our_attacks(name: str, quick: bool = False) -> dict[str, tuple[object, bool]]:
    """The advbench attack(s) compared with ART's ``name``: label -> (attack, subset only).

    C&W at our defaults (9 search steps of up to 1,000 Adam steps) spends far more
    optimisation per sample than ART's defaults (10 search steps of 10 line-searched steps),
    so it runs on ART's subset only; the row at ART's budget gives both 10 x 10 steps from
    c = 0.01, with Adam at a learning rate of 0.1 standing in for ART's learning-rate line
    search (at Adam's 0.01, ten steps cannot reach the boundary).
    """
    if name == "fgsm":
        return {"advbench": (FGSM(eps=0.1), False)}
    if name == "fgsm-min":
        return {"advbench": (MinimalFGSM(eps_step=0.01, eps_max=1.0), False)}
    if name == "deepfool":
        return {"advbench": (DeepFool(max_iter=100, overshoot=0.02), False)}
    if name == "cw-l2":
        defaults = (CarliniWagnerL2(confidence=2.3, max_iter=50, binary_search_steps=3)
                    if quick else CarliniWagnerL2(confidence=2.3))
        # The middle budget is the one `advbench reproduce --profile quick` uses.
        middle = CarliniWagnerL2(confidence=2.3, max_iter=100, binary_search_steps=5,
                                 learning_rate=0.05, initial_const=0.1)
        return {"advbench, defaults": (defaults, True),
                "advbench, 5 x 100 steps": (middle, False),
                "advbench, ART's budget": (CarliniWagnerL2(
                    confidence=2.3, max_iter=10, binary_search_steps=10, initial_const=0.01,
                    learning_rate=0.1), False)}
    if name == "jsma":
        return {"advbench": (JSMA(theta=0.1, gamma=1.0), False)}
    raise ValueError(name)


def run_ours(attack, model, x, y, target, batch_size: int):
    """x_adv and the extras of the whole set, batch by batch; returns (x_adv, extras, seconds)."""
    parts, extras = [], {}
    started = time.perf_counter()
    for i in range(0, len(x), batch_size):
        sl = slice(i, i + batch_size)
        out = attack(model, x[sl], y[sl], target=None if target is None else target[sl],
                     seed=i)
        parts.append(out.x_adv)
        for key, value in out.extras.items():
            extras.setdefault(key, []).append(np.asarray(value))
    seconds = time.perf_counter() - started
    return np.concatenate(parts), {k: np.concatenate(v) for k, v in extras.items()}, seconds


def median_time(run, repeat: bool, min_seconds: float = 3.0, max_runs: int = 15):
    """(last result, median seconds) of ``run()``: once, or with ``repeat`` again until
    ``min_seconds`` have passed (at most ``max_runs``), so that sub-second attacks (FGSM runs
    1,000 images in about 0.2 s) are not timed on one noisy run. Both libraries get the same."""
    times = []
    while True:
        started = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - started)
        if not repeat or sum(times) >= min_seconds or len(times) >= max_runs:
            return result, float(np.median(times))


def warm_up(attack, model, x, y, target):
    """Trace the attack's tf.functions outside the timing: two batch sizes, so that
    ``reduce_retracing`` settles on a shape-generic trace reused by every later batch."""
    for n in (2, 3):
        attack(model, x[:n], y[:n], target=None if target is None else target[:n], seed=0)


def our_passes(name: str, extras: dict, n: int) -> tuple[float, float]:
    """(forward rows, backward rows) our attack needed, from its per-sample extras.

    DeepFool step: one forward, 9 backward passes from it, one forward to test the new
    iterate. JSMA iteration: one forward and two backward passes, plus one final forward that
    finds the target reached. C&W: one forward and backward per Adam step, plus the clean
    prediction. fgsm-min: the gradient at x plus one forward per grid point up to the first
    that flips (a lower bound: our chunked search forwards a few more).
    """
    if name == "fgsm":
        return float(n), float(n)
    if name == "fgsm-min":
        first = np.rint(extras["eps"] / 0.01)  # grid index + 1: grid points forwarded
        return float(n + first.sum()), float(n)
    if name == "deepfool":
        steps = float(extras["iterations"].sum())
        return n + 2 * steps, 9 * steps
    if name == "cw-l2":
        steps = float(extras["iterations"].sum())
        return n + steps, steps
    if name == "jsma":
        steps = float(extras["iterations"].sum())
        return n + steps, 2 * steps
    raise ValueError(name)


# -- quality ---------------------------------------------------------------------------------
def quality(model, x, y, x_adv, correct, target=None) -> dict:
    """Success rate over the correctly classified samples; mean L2 (and L0) over the
    successful ones."""
    predictions = predict_labels(model, x_adv)
    success = (predictions == target) if target is not None else (predictions != y)
    success = success & correct
    norms = perturbation_norms(x, x_adv)
    hit = success
    return {
        "success": float(success.sum() / max(correct.sum(), 1)),
        "l2": float(norms["l2"][hit].mean()) if hit.any() else float("nan"),
        "l0": float(norms["l0"][hit].mean()) if hit.any() else float("nan"),
        "success_mask": success,
        "l2_all": norms["l2"],
    }


def recovered_eps(x: np.ndarray, x_adv: np.ndarray) -> np.ndarray:
    """Per sample, the step size of a sign step x_adv = clip(x + eps * sign(g), 0, 1)."""
    delta = np.abs(x_adv - x).reshape(len(x), -1)
    inside = (x_adv > 0.0) & (x_adv < 1.0)
    unclipped = np.where(inside.reshape(len(x), -1) & (delta > 0), delta, 0.0).max(axis=1)
    return np.where(unclipped > 0, unclipped, delta.max(axis=1))


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=1000,
                        help="first N MNIST test images for our attacks and ART's fast ones")
    parser.add_argument("--art-limit", type=int, default=100,
                        help="first N images for ART's slow attacks (deepfool, cw-l2, jsma)")
    parser.add_argument("--attacks", default=",".join(ALL_ATTACKS),
                        help=f"comma list out of {','.join(ALL_ATTACKS)}")
    parser.add_argument("--model", default=None,
                        help="model artifact to load, or where to save the one trained here")
    parser.add_argument("--batch-size", type=int, default=250, help="our attacks' batch size")
    parser.add_argument("--cw-defaults-limit", type=int, default=20,
                        help="first N of ART's images for C&W at our defaults (about 50 times "
                             "ART's optimisation budget, so the slowest row)")
    parser.add_argument("--data-dir", default=default_data_dir())
    parser.add_argument("--quick", action="store_true",
                        help="smoke check: 20 images, ART on 2, model trained on 2,000 images, small C&W")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    attacks = [a.strip() for a in args.attacks.split(",") if a.strip()]
    unknown = sorted(set(attacks) - set(ALL_ATTACKS))
    if unknown:
        parser.error(f"unknown attack(s) {', '.join(unknown)}; choose from {', '.join(ALL_ATTACKS)}")
    train_limit = None
    if args.quick:
        args.limit, args.art_limit, args.batch_size, train_limit = 20, 2, 20, 2000
        args.cw_defaults_limit = 2
    art_limit = min(args.art_limit, args.limit)

    if importlib.util.find_spec("art") is None:
        sys.exit("ART is not installed: pip install -e '.[bench]' (adversarial-robustness-toolbox)")

    load_average = os.getloadavg()
    log(f"load average at start: {load_average[0]:.2f} {load_average[1]:.2f} {load_average[2]:.2f}")
    model = trained_cnn(None if args.quick else args.model, args.data_dir, train_limit)
    x_all, y_all, _ = data.load("mnist", "test", data_dir=args.data_dir)
    x, y = x_all[:args.limit], y_all[:args.limit]
    clean = predict_labels(model, x)
    correct = clean == y
    log(f"{len(x)} test images, clean accuracy on them {correct.mean():.4f}; "
        f"ART's slow attacks on the first {art_limit}")

    forward_rate, gradient_rate = raw_rates(model, x)
    # Our attacks differentiate the model's attack twin (same forward, sub-pixel input
    # gradient of the first convolution): its rates are the reference for our pass share.
    _, twin_gradient_rate = raw_rates(attack_model(model), x)
    t_forward = 1.0 / forward_rate
    t_backward = 1.0 / gradient_rate - t_forward
    t_backward_twin = 1.0 / twin_gradient_rate - t_forward
    log(f"raw rates, batch 256: forward {forward_rate:,.0f}/s, forward+backward "
        f"{gradient_rate:,.0f}/s (Keras model), {twin_gradient_rate:,.0f}/s (attack twin)")
    flops, peak = model_flops(model), matmul_peak()
    log(f"model forward: {flops / 1e6:.2f} MFLOP/image, {flops * forward_rate / 1e9:.0f} GFLOP/s "
        f"at batch 256; float32 matmul peak {peak:.0f} GFLOP/s")

    def pass_seconds(forward_rows, backward_rows, twin=False):
        return forward_rows * t_forward + backward_rows * (t_backward_twin if twin else t_backward)

    classifier, counter = art_classifier(model)
    # JSMA targets: one random wrong class per sample, the same for both libraries.
    targets = choose_targets(tf.constant(np.zeros((len(y), 10), np.float32)), tf.constant(y),
                             "random", tf.constant([0, 1], tf.int64)).numpy().astype(np.int64)

    rows = []
    for name in attacks:
        slow = name in SLOW_ATTACKS
        n_art = art_limit if slow else len(x)
        target = targets if name == "jsma" else None
        # ART: y one-hot (true labels; JSMA: its targets), warmed up on two images.
        attack = art_attack(name, classifier)
        labels = target if target is not None else y
        onehot = np.eye(10, dtype=np.float32)[labels]
        attack.generate(x[:2], y=onehot[:2])
        log(f"{name}: ART on {n_art} images ...")
        # The counter is reset before each run: it ends holding the passes of one run.
        art_adv, art_seconds = median_time(
            lambda: (counter.reset(), attack.generate(x[:n_art], y=onehot[:n_art]))[1],
            repeat=not slow)
        art_adv = art_adv.astype(np.float32)
        art_quality = quality(model, x[:n_art], y[:n_art], art_adv, correct[:n_art],
                              None if target is None else target[:n_art])
        art_row = {"attack": name, "library": "ART 1.20.1", "n": n_art,
                   "seconds": art_seconds, "rate": n_art / art_seconds,
                   "pass_share": pass_seconds(counter.forward, counter.backward) / art_seconds,
                   "passes": (counter.forward / n_art, counter.backward / n_art),
                   **art_quality}
        rows.append(art_row)
        log(f"  ART {art_row['rate']:.1f}/s, success {art_row['success']:.3f}, "
            f"L2 {art_row['l2']:.3f}")

        for label, (ours, subset_only) in our_attacks(name, args.quick).items():
            warm_up(ours, model, x, y, target)
            n = min(n_art, args.cw_defaults_limit) if subset_only else len(x)
            log(f"{name}: {label} on {n} images ...")
            (adv, extras, _), seconds = median_time(
                lambda: run_ours(ours, model, x[:n], y[:n],
                                 None if target is None else target[:n], args.batch_size),
                repeat=not slow)
            forward_rows, backward_rows = our_passes(name, extras, n)
            full = {"attack": name, "library": label, "n": n, "seconds": seconds,
                    "rate": n / seconds,
                    "pass_share": pass_seconds(forward_rows, backward_rows, twin=True) / seconds,
                    "passes": (forward_rows / n, backward_rows / n),
                    **quality(model, x[:n], y[:n], adv, correct[:n],
                              None if target is None else target[:n])}
            if slow and subset_only:
                # Compared with ART on the same first n images.
                both = full["success_mask"] & art_quality["success_mask"][:n]
                full["subset"] = {"n": n, "rate": full["rate"], "success": full["success"],
                                  "l2": full["l2"], "l0": full["l0"], "same_run": True,
                                  "art_success": float(art_quality["success_mask"][:n].sum()
                                                       / max(correct[:n].sum(), 1)),
                                  "l2_both": float(full["l2_all"][both].mean()) if both.any() else None,
                                  "art_l2_both": float(art_quality["l2_all"][:n][both].mean())
                                  if both.any() else None}
            elif slow:
                # Quality on ART's images: the same first n_art samples, attacked alone.
                sub_adv, _, sub_seconds = run_ours(ours, model, x[:n_art], y[:n_art],
                                                   None if target is None else target[:n_art],
                                                   args.batch_size)
                subset = quality(model, x[:n_art], y[:n_art], sub_adv, correct[:n_art],
                                 None if target is None else target[:n_art])
                both = subset["success_mask"] & art_quality["success_mask"]
                full["subset"] = {
                    "n": n_art, "rate": n_art / sub_seconds, "success": subset["success"],
                    "l2": subset["l2"], "l0": subset["l0"],
                    # Mean L2 over the samples both libraries fooled: same conditioning set.
                    "l2_both": float(subset["l2_all"][both].mean()) if both.any() else None,
                    "art_l2_both": (float(art_quality["l2_all"][both].mean())
                                    if both.any() else None),
                }
            else:
                full["subset"] = None
            if name == "fgsm-min":
                # ART does not return its eps: read it off a pixel that moved without being
                # clipped (|delta| = eps there); samples with none fall back to the L-inf norm.
                art_eps = recovered_eps(x, art_adv)
                found = extras["found"]
                art_found = predict_labels(model, art_adv) != y
                mismatch = (found != art_found) | (np.abs(extras["eps"] - art_eps) > 1e-5)
                full["eps_mismatches"] = int(mismatch.sum())
                full["eps_identical"] = not mismatch.any()
                full["x_adv_max_difference"] = float(np.abs(adv - art_adv).max())
                # The exact search cannot skip a grid point below a sample's first flip: those
                # forwards plus the one gradient, at the raw batch-256 rates, are a floor on
                # the time of any exact method on this machine.
                floor_forwards = forward_rows / n - 1.0
                floor_seconds = floor_forwards * t_forward + 1.0 / twin_gradient_rate
                full["floor_forwards"] = floor_forwards
                full["floor_rate"] = 1.0 / floor_seconds
                full["floor_vs_art"] = full["floor_rate"] / art_row["rate"]
            full["speedup"] = full["rate"] / art_row["rate"]
            rows.append(full)
            log(f"  {label} {full['rate']:.1f}/s ({full['speedup']:.1f}x ART), success "
                f"{full['success']:.3f}, L2 {full['l2']:.3f}")

    print_report(rows, args, art_limit, load_average, forward_rate, gradient_rate,
                 twin_gradient_rate, float(correct.mean()), flops, peak)
    if args.json:
        for row in rows:
            row.pop("success_mask", None)
            row.pop("l2_all", None)
        Path(args.json).write_text(json.dumps({
            "load_average": load_average, "forward_rate": forward_rate,
            "gradient_rate": gradient_rate, "twin_gradient_rate": twin_gradient_rate,
            "model_flops": flops, "matmul_gflops": peak,
            "rows": rows}, indent=2, default=float))


def print_report(rows, args, art_limit, load_average, forward_rate, gradient_rate,
                 twin_gradient_rate, accuracy, flops, peak):
    import platform

    import art
    import keras

    print(f"advbench vs ART {art.__version__}: paper's MNIST CNN trained 1 epoch, first "
          f"{args.limit} MNIST test images (clean accuracy {accuracy:.1%}); ART's slow attacks "
          f"(deepfool, cw-l2, jsma) on the first {art_limit}.")
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPU(s), {'GPU' if tf.config.list_physical_devices('GPU') else 'no GPU'}; "
          f"load average at start {load_average[0]:.2f} {load_average[1]:.2f} "
          f"{load_average[2]:.2f}; our batch size {args.batch_size}.")
    print(f"Raw model throughput at batch 256: forward {forward_rate:,.0f}/s, "
          f"forward+backward {gradient_rate:,.0f}/s (the Keras model, as ART runs it), "
          f"{twin_gradient_rate:,.0f}/s (advbench's attack twin). The forward pass is {flops / 1e6:.2f} MFLOP "
          f"per image: {flops * forward_rate / 1e9:.0f} GFLOP/s, against a float32 matmul peak "
          f"of {peak:.0f} GFLOP/s measured in the same run.")
    print()
    print("| attack | library | images | samples/s | vs ART | success | mean L2 | mean L0 | "
          "fwd + bwd passes/sample | pass share |")
    print("|---|---|---|---|---|---|---|---|---|---|")

    def fmt(value, spec):
        return "-" if value is None or value != value else format(value, spec)

    for row in rows:
        ratio = row.get("speedup")
        ratio_text = "1" if ratio is None else f"**{ratio:.1f}x**"
        l0 = fmt(row["l0"], ".1f") if row["attack"] == "jsma" else "-"
        print(f"| {row['attack']} | {row['library']} | {row['n']} | {row['rate']:,.1f} | "
              f"{ratio_text} | {row['success']:.1%} | {fmt(row['l2'], '.3f')} | {l0} | "
              f"{row['passes'][0]:.1f} + {row['passes'][1]:.1f} | {row['pass_share']:.0%} |")
        subset = row.get("subset")
        if subset and subset.get("same_run"):
            if subset["l2_both"] is not None:
                print(f"| {row['attack']} | (ART's first {subset['n']} images, where ART's "
                      f"success is {subset['art_success']:.1%}; on samples both fooled: L2 "
                      f"{subset['l2_both']:.3f} vs ART {subset['art_l2_both']:.3f}) | | | | | | | | |")
        elif subset:
            both = ("" if subset["l2_both"] is None else
                    f" (on samples both fooled: {subset['l2_both']:.3f} vs ART "
                    f"{subset['art_l2_both']:.3f})")
            l0 = fmt(subset["l0"], ".1f") if row["attack"] == "jsma" else "-"
            print(f"| {row['attack']} | {row['library']}, ART's images | {subset['n']} | "
                  f"{subset['rate']:,.1f} | | {subset['success']:.1%} | "
                  f"{fmt(subset['l2'], '.3f')}{both} | {l0} | | |")
    print()
    for row in rows:
        if row["attack"] == "fgsm" and row["library"] == "advbench":
            print(f"fgsm: advbench at {row['rate'] / gradient_rate:.2f}x the Keras model's raw "
                  f"forward+backward throughput ({row['rate']:,.0f} vs {gradient_rate:,.0f} "
                  f"samples/s), {row['rate'] / twin_gradient_rate:.2f}x its attack twin's "
                  f"({twin_gradient_rate:,.0f}/s).")
        if "eps_identical" in row:
            print(f"fgsm-min: per-sample minimal eps identical to ART's: {row['eps_identical']} "
                  f"({row['eps_mismatches']} of {row['n']} samples differ; largest x_adv difference "
                  f"{row['x_adv_max_difference']:.2g}).")
            print(f"fgsm-min floor: an exact search forwards every grid point up to each "
                  f"sample's first flip, {row['floor_forwards']:.2f} per sample here, plus one "
                  f"gradient; at the raw batch-256 rates that alone allows at most "
                  f"{row['floor_rate']:,.0f} samples/s = {row['floor_vs_art']:.1f}x ART on this "
                  f"machine.")
    print("success: over the correctly classified images (jsma: prediction = the given random "
          "target); mean L2/L0 over the successful ones. pass share: time the counted model "
          "passes take at the raw batch-256 rates (ours: the attack twin's) / measured time.")


if __name__ == "__main__":
    main()
