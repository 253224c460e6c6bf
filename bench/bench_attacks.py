"""Attack speed and quality side by side with ART 1.20.1, Foolbox 3.3.4 and CleverHans 4.0
on the paper's MNIST CNN, each peer at its default batch size and at its best.

One process, one trained CNN (Conv 64-128-128 + Dense, one epoch on MNIST), the first
``--limit`` MNIST test images, every library on the same machine and the same Keras model
(ART through its TensorFlowV2Classifier, Foolbox through its TensorFlowModel, CleverHans'
tf2 functions called on the model):

    attack    advbench (setting)              ART 1.20.1          Foolbox 3.3.4        CleverHans 4.0
    fgsm      FGSM(eps=0.1)                   FastGradientMethod  FGSM                 fast_gradient_method
    fgsm-min  MinimalFGSM(0.01, eps_max=1)    FastGradientMethod(minimal=True)
    pgd       PGD(eps=0.1, 40 x 0.01)         ProjectedGradient-  LinfPGD              projected_gradient_descent
                                              Descent
    deepfool  DeepFool(100 steps, overshoot   DeepFool(epsilon=   L2DeepFoolAttack
              0.02)                           0.02)               (candidates=10)
    cw-l2     ART's budget: 10 x 10 steps     CarliniL2Method
              5 x 100 Adam steps, lr 0.05,                        L2CarliniWagnerAttack carlini_wagner_l2
              c0 0.1                                              (same budget)         (same budget)
              our defaults (9 x 1,000)
    jsma      JSMA(theta=0.1, gamma=1)        SaliencyMapMethod

All at confidence 2.3 for C&W. Every peer runs each of its attacks at its own default batch
size (ART: 32 for FGM and PGD, 1 for the others; Foolbox and CleverHans' FGSM and PGD: the
whole set in one call; CleverHans' C&W: 128) and at 50, 250 and 1,000 (capped at the number
of images): the fastest is its best batch, and the ratio ours/peer is given at both. Ours run
at ``--batch-size`` (250).

The peers' slow attacks (deepfool, cw-l2, jsma) run on the first ``--peer-limit`` images,
a batch under 10 on the first ``--small-batch-limit`` of those (a rate per sample that does
not depend on the count); ours run on all ``--limit`` images and again on the peers' images,
and the ratio ours/peer compares the two on the same images. Fast attacks are timed as the
median of repeated runs (3 s at least), slow ones once. Success and norms are taken over the
samples the model classifies correctly, norms over the successful ones, and "both" compares
the mean L2 (L0 for JSMA) of ours and the peer's over the samples both fooled. JSMA gets the
same random target per sample in both libraries and succeeds when the prediction is the
target.

The raw forward+backward throughput of the CNN at batch 256 is measured in the same run. For
ours and ART the script counts the model passes each attack needed (from our per-sample
iteration counts; by counting calls into ART's classifier) and converts them into the time
those passes take at the raw rates: the "pass share" is that time over the measured time.
Ours differentiate the model's attack twin (``advbench.models.gradients``: same forward pass,
faster input gradient), whose rate is the reference for our rows.

Usage:
    python bench/bench_attacks.py [--limit 1000] [--peer-limit 100] [--attacks fgsm,jsma]
        [--peers art,foolbox,cleverhans] [--model PATH] [--batch-size 250] [--quick]
        [--json out.json]

``--model PATH`` loads the model artifact at PATH, or trains one (about a minute on two CPU
cores) and saves it there. ``--quick`` is a smoke check on tiny sizes. The peers come with
the optional extra ``pip install -e '.[bench]'``; a peer that is not installed is skipped
with a line saying so.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import (art_classifier, base_parser, log, machine_line, run_ours,  # noqa: E402
                      start, warm_up)

import numpy as np  # noqa: E402
__import__("advbench")  # its TensorFlow environment defaults, before TensorFlow loads
import tensorflow as tf  # noqa: E402

from advbench.attacks.carlini_wagner import CarliniWagnerL2  # noqa: E402
from advbench.attacks.deepfool import DeepFool  # noqa: E402
from advbench.attacks.fgsm import FGSM  # noqa: E402
from advbench.attacks.fgsm_min import MinimalFGSM  # noqa: E402
from advbench.attacks.jsma import JSMA  # noqa: E402
from advbench.attacks.pgd import PGD  # noqa: E402
from advbench.attacks.targets import choose_targets  # noqa: E402
from advbench.models.gradients import attack_model  # noqa: E402
from advbench.models.zoo import predict_labels  # noqa: E402
from advbench.run.metrics import perturbation_norms  # noqa: E402

ALL_ATTACKS = ("fgsm", "fgsm-min", "pgd", "deepfool", "cw-l2", "jsma")
# Attacks at which a peer runs at a few samples a second: measured on --peer-limit images.
SLOW_ATTACKS = ("deepfool", "cw-l2", "jsma")
# Batch sizes every peer also runs at, besides its default (capped at the number of images).
SWEEP = (50, 250, 1000)
EPS = 0.1
PGD_STEPS, PGD_STEP_SIZE = 40, 0.01


# -- the peers -------------------------------------------------------------------------------
def art_wrap(model):
    return art_classifier(model)


def art_attack(wrapped, name: str, batch: int):
    """ART's attack ``name`` at ``batch``: run(x, y, target) -> x_adv. ART takes one-hot
    labels (the true ones; JSMA's targets) and chunks the set itself."""
    from art.attacks.evasion import (CarliniL2Method, DeepFool as ArtDeepFool,
                                     FastGradientMethod, ProjectedGradientDescent,
                                     SaliencyMapMethod)

    classifier, counter = wrapped
    attack = {
        "fgsm": lambda: FastGradientMethod(classifier, eps=EPS, batch_size=batch),
        "fgsm-min": lambda: FastGradientMethod(classifier, minimal=True, eps_step=0.01,
                                               eps=1.0, batch_size=batch),
        "pgd": lambda: ProjectedGradientDescent(
            classifier, norm=np.inf, eps=EPS, eps_step=PGD_STEP_SIZE, max_iter=PGD_STEPS,
            num_random_init=1, batch_size=batch, verbose=False),
        # ART calls the overshoot "epsilon" and applies it once to the final perturbation.
        "deepfool": lambda: ArtDeepFool(classifier, max_iter=100, epsilon=0.02,
                                        batch_size=batch, verbose=False),
        # ART's defaults otherwise: 10 binary-search steps of 10 line-searched steps.
        "cw-l2": lambda: CarliniL2Method(classifier, confidence=2.3, batch_size=batch,
                                         verbose=False),
        "jsma": lambda: SaliencyMapMethod(classifier, theta=0.1, gamma=1.0, batch_size=batch,
                                          verbose=False),
    }[name]()

    def run(x, y, target):
        counter.reset()  # it ends holding the passes of the last run
        labels = y if target is None else target
        return attack.generate(x, y=np.eye(10, dtype=np.float32)[labels]).astype(np.float32)
    return run


def art_passes(wrapped) -> tuple[float, float]:
    counter = wrapped[1]
    return float(counter.forward), float(counter.backward)


def foolbox_wrap(model):
    import foolbox

    return foolbox.TensorFlowModel(model, bounds=(0.0, 1.0))


def foolbox_attack(fmodel, name: str, batch: int):
    """Foolbox's attack ``name``: it attacks what it is given in one call, so ``batch`` is
    the size of the calls (the default: the whole set)."""
    import foolbox

    attack, epsilons = {
        "fgsm": lambda: (foolbox.attacks.FGSM(), EPS),
        "pgd": lambda: (foolbox.attacks.LinfPGD(abs_stepsize=PGD_STEP_SIZE, steps=PGD_STEPS,
                                                random_start=True), EPS),
        "deepfool": lambda: (foolbox.attacks.L2DeepFoolAttack(
            steps=100, candidates=10, overshoot=0.02, loss="logits"), None),
        "cw-l2": lambda: (foolbox.attacks.L2CarliniWagnerAttack(
            binary_search_steps=5, steps=100, stepsize=0.05, confidence=2.3,
            initial_const=0.1), None),
    }[name]()

    def one_call(x, y, target):
        _, clipped, _ = attack(fmodel, tf.constant(x), tf.constant(y.astype(np.int64)),
                               epsilons=epsilons)
        return clipped.numpy()
    return in_calls(one_call, batch)


def cleverhans_wrap(model):
    return model  # CleverHans' tf2 functions take the model as a callable


def cleverhans_attack(model, name: str, batch: int):
    """CleverHans' tf2 function ``name``: FGSM and PGD attack what they are given in one call
    (``batch``: the size of the calls), C&W chunks the set by its ``batch_size``."""
    from cleverhans.tf2.attacks.fast_gradient_method import fast_gradient_method
    from cleverhans.tf2.attacks.projected_gradient_descent import projected_gradient_descent

    if name == "cw-l2":
        # Untargeted when no y is given (it attacks the model's prediction).
        attack = cleverhans_carlini_wagner(model, batch_size=batch, binary_search_steps=5,
                                           max_iterations=100, learning_rate=0.05,
                                           initial_const=0.1, confidence=2.3)
        return lambda x, y, target: attack.attack(x)
    call = {
        "fgsm": lambda x, y: fast_gradient_method(model, x, EPS, np.inf, clip_min=0.0,
                                                  clip_max=1.0, y=y),
        "pgd": lambda x, y: projected_gradient_descent(
            model, x, EPS, PGD_STEP_SIZE, PGD_STEPS, np.inf, clip_min=0.0, clip_max=1.0, y=y,
            rand_init=True, rand_minmax=EPS),
    }[name]
    return in_calls(lambda x, y, target: call(tf.constant(x), tf.constant(y)).numpy(), batch)


def cleverhans_carlini_wagner(model, **kwargs):
    """CleverHans 4.0's CarliniWagnerL2 made to run under Keras 3, its algorithm unchanged.

    It resets its Adam between binary-search steps through Keras 2's ``optimizer.variables()``;
    Keras 3 has a list there, which also holds the learning rate, and an optimizer that
    refuses a variable it was not built on, where CleverHans makes a new one per batch. So each
    batch gets a fresh Adam whose ``variables()`` are the step count and the moments.
    """
    import keras
    from cleverhans.tf2.attacks.carlini_wagner_l2 import CarliniWagnerL2

    class ResettableAdam:
        def __init__(self, learning_rate):
            self.adam = keras.optimizers.Adam(learning_rate)

        def apply_gradients(self, pairs):
            self.adam.apply_gradients(pairs)

        def variables(self):
            return [v for v in self.adam.variables if v.name != "learning_rate"]

    class KerasThreeCarliniWagnerL2(CarliniWagnerL2):
        def _attack(self, x):
            self.optimizer = ResettableAdam(self.learning_rate)
            return super()._attack(x)

    return KerasThreeCarliniWagnerL2(model, **kwargs)


def in_calls(one_call, batch: int):
    """run(x, y, target) that attacks the set ``batch`` images per call."""
    def run(x, y, target):
        return np.concatenate([one_call(x[i:i + batch], y[i:i + batch],
                                        None if target is None else target[i:i + batch])
                               for i in range(0, len(x), batch)]).astype(np.float32)
    return run


@dataclass(frozen=True)
class Peer:
    """A library compared with ours: how to wrap the model and build its attacks."""
    name: str
    package: str  # its distribution name, for the version and the skip line
    module: str
    #: attack -> the peer's default batch size; None: the whole set in one call.
    defaults: dict
    wrap: Callable
    attack: Callable  # (wrapped model, attack name, batch) -> run(x, y, target) -> x_adv
    passes: Callable | None = None  # (wrapped model) -> (forward, backward) rows of the last run


PEERS = {
    "art": Peer("ART", "adversarial-robustness-toolbox", "art",
                {"fgsm": 32, "fgsm-min": 32, "pgd": 32, "deepfool": 1, "cw-l2": 1, "jsma": 1},
                art_wrap, art_attack, art_passes),
    "foolbox": Peer("Foolbox", "foolbox", "foolbox",
                    {"fgsm": None, "pgd": None, "deepfool": None, "cw-l2": None},
                    foolbox_wrap, foolbox_attack),
    "cleverhans": Peer("CleverHans", "cleverhans", "cleverhans",
                       {"fgsm": None, "pgd": None, "cw-l2": 128},
                       cleverhans_wrap, cleverhans_attack),
}


def peer_label(peer: Peer) -> str:
    return f"{peer.name} {importlib.metadata.version(peer.package)}"


# -- ours ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Setting:
    """One configuration of our attack and the peers run against it."""
    label: str
    attack: object
    peers: tuple
    subset_only: bool = False  # too slow for all --limit images: the peers' first ones only


def settings(name: str, quick: bool) -> list[Setting]:
    """Our configuration(s) of ``name`` and the peers each is compared with.

    C&W: ART's defaults (10 binary-search steps of 10 line-searched steps from c = 0.01) are
    matched by ours at 10 x 10 Adam steps at a learning rate of 0.1 (at Adam's 0.01, ten steps
    cannot reach the boundary); Foolbox and CleverHans run the same 5 x 100 Adam steps as
    ours (the `reproduce --profile quick` budget); ours at its defaults (9 search steps of up
    to 1,000 Adam steps) run alone, on the first --cw-defaults-limit images.
    """
    everyone = ("art", "foolbox", "cleverhans")
    if name == "fgsm":
        return [Setting("eps 0.1", FGSM(eps=EPS), everyone)]
    if name == "fgsm-min":
        return [Setting("eps step 0.01", MinimalFGSM(eps_step=0.01, eps_max=1.0), ("art",))]
    if name == "pgd":
        return [Setting(f"eps 0.1, {PGD_STEPS} x {PGD_STEP_SIZE}",
                        PGD(eps=EPS, step_size=PGD_STEP_SIZE, steps=PGD_STEPS), everyone)]
    if name == "deepfool":
        return [Setting("100 steps, overshoot 0.02", DeepFool(max_iter=100, overshoot=0.02),
                        ("art", "foolbox"))]
    if name == "cw-l2":
        defaults = (CarliniWagnerL2(confidence=2.3, max_iter=50, binary_search_steps=3)
                    if quick else CarliniWagnerL2(confidence=2.3))
        return [
            Setting("ART's budget, 10 x 10", CarliniWagnerL2(
                confidence=2.3, max_iter=10, binary_search_steps=10, initial_const=0.01,
                learning_rate=0.1), ("art",)),
            Setting("5 x 100", CarliniWagnerL2(confidence=2.3, max_iter=100,
                                               binary_search_steps=5, learning_rate=0.05,
                                               initial_const=0.1), ("foolbox", "cleverhans")),
            Setting("our defaults, 9 x 1000", defaults, (), subset_only=True),
        ]
    if name == "jsma":
        return [Setting("theta 0.1, gamma 1", JSMA(theta=0.1, gamma=1.0), ("art",))]
    raise ValueError(name)


def median_time(run, repeat: bool, min_seconds: float = 3.0, max_runs: int = 15):
    """(last result, median seconds) of ``run()``: once, or with ``repeat`` after one untimed
    run (the first call at the set's shapes pays for memory and oneDNN primitives, eager
    libraries on every new shape) and again until ``min_seconds`` have passed (at most
    ``max_runs``), so that sub-second attacks (FGSM runs 1,000 images in about 0.2 s) are not
    timed on one noisy run. Every library gets the same."""
    if repeat:
        run()
    times = []
    while True:
        started = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - started)
        if not repeat or sum(times) >= min_seconds or len(times) >= max_runs:
            return result, float(np.median(times))


def sweep(peer: Peer, wrapped, name: str, x, y, target, slow: bool, small_limit: int) -> dict:
    """The peer's attack ``name`` at its default batch size and at each of SWEEP (capped at
    len(x)): {"default": batch, "runs": [{batch, n, seconds, rate, passes}], "best": the
    fastest run, "x_adv": the adversarials of the fastest run on all len(x) images}."""
    n = len(x)
    default = min(peer.defaults[name] or n, n)
    runs, x_adv, best_full = [], None, None
    for batch in sorted({default, *(min(b, n) for b in SWEEP)}):
        m = min(n, small_limit) if slow and batch < min(10, n) else n
        run = peer.attack(wrapped, name, batch)
        run(x[:2], y[:2], None if target is None else target[:2])  # warm-up, traces
        adv, seconds = median_time(
            lambda: run(x[:m], y[:m], None if target is None else target[:m]), repeat=not slow)
        passes = peer.passes(wrapped) if peer.passes else None
        record = {"batch": batch, "n": m, "seconds": seconds, "rate": m / seconds,
                  "passes": None if passes is None else (passes[0] / m, passes[1] / m)}
        runs.append(record)
        log(f"  {peer.name} batch {batch} on {m}: {record['rate']:.1f}/s")
        if m == n and (best_full is None or record["rate"] > best_full["rate"]):
            best_full, x_adv = record, adv
    return {"default": default, "runs": runs, "x_adv": x_adv,
            "best": max(runs, key=lambda r: r["rate"])}


def run_timed_ours(setting: Setting, name: str, model, x, y, target, batch_size: int,
                   slow: bool) -> dict:
    """Our attack on x, timed like the peers' (median of repeats for the fast ones)."""
    (adv, extras, _), seconds = median_time(
        lambda: run_ours(setting.attack, model, x, y, target, batch_size), repeat=not slow)
    forward, backward = our_passes(name, extras, len(x))
    return {"n": len(x), "seconds": seconds, "rate": len(x) / seconds, "x_adv": adv,
            "extras": extras, "passes": (forward / len(x), backward / len(x))}


def both_succeeded(ours: dict, peer: dict) -> dict | None:
    """Mean L2 and L0 of ours and the peer's over the samples both fooled (same images)."""
    both = ours["success_mask"] & peer["success_mask"]
    if not both.any():
        return None
    return {"n": int(both.sum()),
            "ours_l2": float(ours["l2_all"][both].mean()),
            "peer_l2": float(peer["l2_all"][both].mean()),
            "ours_l0": float(ours["l0_all"][both].mean()),
            "peer_l0": float(peer["l0_all"][both].mean())}


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
    if name == "pgd":
        return float(PGD_STEPS * n), float(PGD_STEPS * n)
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
    successful ones; the per-sample success mask and norms."""
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
        "l0_all": norms["l0"],
    }


def recovered_eps(x: np.ndarray, x_adv: np.ndarray) -> np.ndarray:
    """Per sample, the step size of a sign step x_adv = clip(x + eps * sign(g), 0, 1)."""
    delta = np.abs(x_adv - x).reshape(len(x), -1)
    inside = (x_adv > 0.0) & (x_adv < 1.0)
    unclipped = np.where(inside.reshape(len(x), -1) & (delta > 0), delta, 0.0).max(axis=1)
    return np.where(unclipped > 0, unclipped, delta.max(axis=1))


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0],
                         "first N MNIST test images for our attacks and the peers' fast ones",
                         "smoke check: 20 images, the peers' slow attacks on 4, model trained "
                         "on 2,000 images, small C&W")
    parser.add_argument("--peer-limit", type=int, default=100,
                        help="first N images for the peers' slow attacks (deepfool, cw-l2, jsma)")
    parser.add_argument("--small-batch-limit", type=int, default=20,
                        help="first N of those for a slow attack at a batch under 10")
    parser.add_argument("--attacks", default=",".join(ALL_ATTACKS),
                        help=f"comma list out of {','.join(ALL_ATTACKS)}")
    parser.add_argument("--peers", default=",".join(PEERS),
                        help=f"comma list out of {','.join(PEERS)}")
    parser.add_argument("--cw-defaults-limit", type=int, default=20,
                        help="first N of the peers' images for C&W at our defaults (about 50 "
                             "times ART's optimisation budget, so the slowest row)")
    args = parser.parse_args()
    attacks = [a.strip() for a in args.attacks.split(",") if a.strip()]
    unknown = sorted(set(attacks) - set(ALL_ATTACKS))
    if unknown:
        parser.error(f"unknown attack(s) {', '.join(unknown)}; choose from {', '.join(ALL_ATTACKS)}")
    peer_keys = [p.strip() for p in args.peers.split(",") if p.strip()]
    unknown = sorted(set(peer_keys) - set(PEERS))
    if unknown:
        parser.error(f"unknown peer(s) {', '.join(unknown)}; choose from {', '.join(PEERS)}")
    train_limit = None
    if args.quick:
        args.limit, args.peer_limit, args.batch_size, train_limit = 20, 4, 20, 2000
        args.cw_defaults_limit, args.small_batch_limit = 2, 2
    peer_limit = min(args.peer_limit, args.limit)

    notes = []
    peers = {}
    for key in peer_keys:
        peer = PEERS[key]
        if importlib.util.find_spec(peer.module) is None:
            notes.append(f"{peer.name}: not installed, skipped (pip install -e '.[bench]' "
                         f"installs {peer.package}).")
            log(notes[-1])
            continue
        peers[key] = peer

    setup = start(args, train_limit)
    model, x, y, correct = setup.model, setup.x, setup.y, setup.correct
    log(f"the peers' slow attacks on the first {peer_limit}")
    wrapped = {}
    for key, peer in list(peers.items()):
        try:
            wrapped[key] = peer.wrap(model)
        except Exception as error:  # a peer that cannot take the model is reported, not fatal
            notes.append(f"{peer.name}: cannot wrap the model ({type(error).__name__}: "
                         f"{error}), skipped.")
            log(notes[-1])
            del peers[key]

    rates = raw_rates(model, x)
    # Our attacks differentiate the model's attack twin (same forward, sub-pixel input
    # gradient of the first convolution): its rates are the reference for our pass share.
    twin_gradient_rate = raw_rates(attack_model(model), x)[1]
    forward_rate, gradient_rate = rates
    t_forward = 1.0 / forward_rate
    t_backward = {False: 1.0 / gradient_rate - t_forward,
                  True: 1.0 / twin_gradient_rate - t_forward}
    log(f"raw rates, batch 256: forward {forward_rate:,.0f}/s, forward+backward "
        f"{gradient_rate:,.0f}/s (Keras model), {twin_gradient_rate:,.0f}/s (attack twin)")
    flops, peak = model_flops(model), matmul_peak()

    def pass_share(passes, seconds_per_sample, twin):
        if passes is None:
            return None
        return (passes[0] * t_forward + passes[1] * t_backward[twin]) / seconds_per_sample

    # JSMA targets: one random wrong class per sample, the same for every library.
    targets = choose_targets(tf.constant(np.zeros((len(y), 10), np.float32)), tf.constant(y),
                             "random", tf.constant([0, 1], tf.int64)).numpy().astype(np.int64)

    rows = []
    for name in attacks:
        slow = name in SLOW_ATTACKS
        n_peer = peer_limit if slow else len(x)
        target = targets if name == "jsma" else None

        def sub(array, n):
            return None if array is None else array[:n]

        def judged(run, n):
            return quality(model, x[:n], y[:n], run["x_adv"], correct[:n], sub(target, n))

        for setting in settings(name, args.quick):
            warm_up(setting.attack, model, x, y, target)
            n = min(n_peer, args.cw_defaults_limit) if setting.subset_only else len(x)
            log(f"{name}, {setting.label}: advbench on {n} images ...")
            ours = run_timed_ours(setting, name, model, x[:n], y[:n], sub(target, n),
                                  args.batch_size, slow)
            ours_quality = judged(ours, n)
            row = {"attack": name, "setting": setting.label, "library": "advbench",
                   "batch": min(args.batch_size, n), "n": n, "rate": ours["rate"],
                   "passes": ours["passes"],
                   "pass_share": pass_share(ours["passes"], 1.0 / ours["rate"], True),
                   **ours_quality}
            rows.append(row)
            log(f"  advbench {row['rate']:.1f}/s, success {row['success']:.3f}, "
                f"L2 {row['l2']:.3f}")
            same_images, same_quality = ours, ours_quality
            if slow and not setting.subset_only and n_peer < n:
                log(f"{name}, {setting.label}: advbench on the peers' {n_peer} images ...")
                same_images = run_timed_ours(setting, name, model, x[:n_peer], y[:n_peer],
                                             sub(target, n_peer), args.batch_size, slow)
                same_quality = judged(same_images, n_peer)
                rows.append({"attack": name, "setting": setting.label,
                             "library": "advbench, the peers' images",
                             "batch": min(args.batch_size, n_peer), "n": n_peer,
                             "rate": same_images["rate"], "passes": same_images["passes"],
                             "pass_share": pass_share(same_images["passes"],
                                                      1.0 / same_images["rate"], True),
                             **same_quality})
            for key in setting.peers:
                if key not in peers:
                    continue
                peer = peers[key]
                log(f"{name}, {setting.label}: {peer.name} on {n_peer} images ...")
                try:
                    result = sweep(peer, wrapped[key], name, x[:n_peer], y[:n_peer],
                                   sub(target, n_peer), slow, args.small_batch_limit)
                except Exception as error:  # a peer's failure is a line in the report
                    notes.append(f"{peer.name} {name}: failed ({type(error).__name__}: "
                                 f"{error}).")
                    log(notes[-1])
                    continue
                default_run = next(r for r in result["runs"] if r["batch"] == result["default"])
                best = result["best"]
                peer_quality = quality(model, x[:n_peer], y[:n_peer], result["x_adv"],
                                       correct[:n_peer], sub(target, n_peer))
                peer_row = {
                    "attack": name, "setting": setting.label, "library": peer_label(peer),
                    "n": n_peer, "default": default_run, "best": best, "runs": result["runs"],
                    "default_is_all": peer.defaults[name] is None,
                    "vs_default": same_images["rate"] / default_run["rate"],
                    "vs_best": same_images["rate"] / best["rate"],
                    "pass_share": pass_share(best["passes"], 1.0 / best["rate"], False),
                    "both": both_succeeded(same_quality, peer_quality), **peer_quality}
                rows.append(peer_row)
                log(f"  {peer.name}: best batch {best['batch']} {best['rate']:.1f}/s, ours "
                    f"{peer_row['vs_best']:.1f}x; success {peer_row['success']:.3f}, "
                    f"L2 {peer_row['l2']:.3f}")
                if name == "fgsm-min":
                    row.update(eps_check(x, y, ours, result["x_adv"], model, t_forward,
                                         twin_gradient_rate, best["rate"]))

    load_end = os.getloadavg()
    print_report(rows, notes, args, peer_limit, setup.load_start, load_end, rates,
                 twin_gradient_rate, float(correct.mean()), flops, peak)
    if args.json:
        for row in rows:
            for key in ("success_mask", "l2_all", "l0_all"):
                row.pop(key, None)
        Path(args.json).write_text(json.dumps({
            "load_average_start": setup.load_start, "load_average_end": load_end,
            "forward_rate": forward_rate, "gradient_rate": gradient_rate,
            "twin_gradient_rate": twin_gradient_rate, "model_flops": flops,
            "matmul_gflops": peak, "notes": notes, "rows": rows}, indent=2, default=float))


def eps_check(x, y, ours: dict, art_adv, model, t_forward: float, twin_gradient_rate: float,
              art_rate: float) -> dict:
    """Minimal FGSM: do ours and ART's find the same per-sample eps, and the floor on the
    time of any exact search on this machine."""
    # ART does not return its eps: read it off a pixel that moved without being clipped
    # (|delta| = eps there); samples with none fall back to the L-inf norm.
    art_eps = recovered_eps(x, art_adv)
    found = ours["extras"]["found"]
    art_found = predict_labels(model, art_adv) != y
    mismatch = (found != art_found) | (np.abs(ours["extras"]["eps"] - art_eps) > 1e-5)
    # The exact search cannot skip a grid point below a sample's first flip: those forwards
    # plus the one gradient, at the raw batch-256 rates, are a floor on any exact method.
    floor_forwards = ours["passes"][0] - 1.0
    floor_rate = 1.0 / (floor_forwards * t_forward + 1.0 / twin_gradient_rate)
    return {"eps_mismatches": int(mismatch.sum()), "eps_identical": not mismatch.any(),
            "x_adv_max_difference": float(np.abs(ours["x_adv"] - art_adv).max()),
            "floor_forwards": floor_forwards, "floor_rate": floor_rate,
            "floor_vs_art": floor_rate / art_rate}


def print_report(rows, notes, args, peer_limit, load_start, load_end, rates,
                 twin_gradient_rate, accuracy, flops, peak):
    forward_rate, gradient_rate = rates
    peers = sorted({row["library"] for row in rows if "runs" in row})
    print(f"advbench vs {', '.join(peers) or 'no peer'}: paper's MNIST CNN trained 1 epoch, "
          f"first {args.limit} MNIST test images (clean accuracy {accuracy:.1%}); the peers' "
          f"slow attacks (deepfool, cw-l2, jsma) on the first {peer_limit}, at a batch under "
          f"10 on the first {min(args.small_batch_limit, peer_limit)}.")
    print(f"{machine_line(load_start, load_end)}; our batch size {args.batch_size}.")
    print(f"Raw model throughput at batch 256: forward {forward_rate:,.0f}/s, "
          f"forward+backward {gradient_rate:,.0f}/s (the Keras model, as the peers run it), "
          f"{twin_gradient_rate:,.0f}/s (advbench's attack twin). The forward pass is "
          f"{flops / 1e6:.2f} MFLOP per image: {flops * forward_rate / 1e9:.0f} GFLOP/s, "
          f"against a float32 matmul peak of {peak:.0f} GFLOP/s measured in the same run.")
    for note in notes:
        print(note)

    def fmt(value, spec):
        return "-" if value is None or value != value else format(value, spec)

    def passes(row, spec):
        return "-" if row is None or row["passes"] is None else (
            f"{row['passes'][0]:{spec}} + {row['passes'][1]:{spec}}")

    print()
    print("Speed. ours/peer: our samples/s over the peer's, on the same images.")
    print()
    print("| attack | setting | library | images | default batch: samples/s | ours/peer | "
          "best batch: samples/s | ours/peer | every batch tried: samples/s | "
          "fwd + bwd passes/sample | pass share |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        head = f"| {row['attack']} | {row['setting']} | {row['library']} | {row['n']} |"
        if "runs" not in row:
            print(f"{head} {row['batch']}: {row['rate']:,.1f} | | | | | {passes(row, '.1f')} | "
                  f"{fmt(row['pass_share'], '.0%')} |")
            continue
        default, best = row["default"], row["best"]
        default_label = f"{default['batch']} (all)" if row["default_is_all"] else default["batch"]
        tried = ", ".join(f"{r['batch']}: {r['rate']:,.1f}"
                          + ("" if r["n"] == row["n"] else f" (on {r['n']})")
                          for r in row["runs"])
        print(f"{head} {default_label}: {default['rate']:,.1f} | **{row['vs_default']:.1f}x** | "
              f"{best['batch']}: {best['rate']:,.1f} | **{row['vs_best']:.1f}x** | {tried} | "
              f"{passes(best, '.1f')} | {fmt(row['pass_share'], '.0%')} |")
    print()
    print("Quality. success: over the correctly classified images (jsma: prediction = the "
          "given random target); mean L2/L0 over the successful ones; both: over the samples "
          "both ours and the peer fooled, on the same images.")
    print()
    print("| attack | setting | library | images | success | mean L2 | mean L0 (jsma) | "
          "both fooled | L2 ours vs peer | L0 ours vs peer |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        both = row.get("both")
        jsma = row["attack"] == "jsma"
        pair = ("| | |" if both is None else
                f"{both['n']} | {both['ours_l2']:.3f} vs {both['peer_l2']:.3f} | "
                + (f"{both['ours_l0']:.1f} vs {both['peer_l0']:.1f} |" if jsma else "- |"))
        print(f"| {row['attack']} | {row['setting']} | {row['library']} | {row['n']} | "
              f"{row['success']:.1%} | {fmt(row['l2'], '.3f')} | "
              f"{fmt(row['l0'], '.1f') if jsma else '-'} | {pair}")
    print()
    for row in rows:
        if row["attack"] == "fgsm" and row["library"] == "advbench":
            print(f"fgsm: advbench at {row['rate'] / gradient_rate:.2f}x the Keras model's raw "
                  f"forward+backward throughput ({row['rate']:,.0f} vs {gradient_rate:,.0f} "
                  f"samples/s), {row['rate'] / twin_gradient_rate:.2f}x its attack twin's "
                  f"({twin_gradient_rate:,.0f}/s).")
        if "eps_identical" in row:
            print(f"fgsm-min: per-sample minimal eps identical to ART's: {row['eps_identical']} "
                  f"({row['eps_mismatches']} of {row['n']} samples differ; largest x_adv "
                  f"difference {row['x_adv_max_difference']:.2g}).")
            print(f"fgsm-min floor: an exact search forwards every grid point up to each "
                  f"sample's first flip, {row['floor_forwards']:.2f} per sample here, plus one "
                  f"gradient; at the raw batch-256 rates that alone allows at most "
                  f"{row['floor_rate']:,.0f} samples/s = {row['floor_vs_art']:.1f}x ART at its "
                  f"best batch on this machine.")
    print("pass share: the time the counted model passes take at the raw batch-256 rates "
          "(ours: the attack twin's) / measured time; counted for ours and ART only.")


if __name__ == "__main__":
    main()
