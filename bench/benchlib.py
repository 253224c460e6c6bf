"""What the side-by-side benchmarks share: the arguments, the trained CNN, the MNIST test
images, ART's classifier around the model, and running and timing our attacks.

Imported by ``bench_attacks.py`` and ``bench_strong.py`` (both put ``bench/`` first on the path
by running from it).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
__import__("advbench")  # its TensorFlow environment defaults, before TensorFlow loads
import tensorflow as tf  # noqa: E402

# ART's class_gradient calls tape.gradient inside the tape's context: TF warns on every call.
tf.get_logger().setLevel("ERROR")
warnings.filterwarnings("ignore", message="PyTorch not found")

from advbench import data  # noqa: E402
from advbench.models.zoo import predict_labels  # noqa: E402


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def default_data_dir() -> str | None:
    if os.environ.get("ADVBENCH_DATA"):
        return os.environ["ADVBENCH_DATA"]
    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    return str(shared) if shared.is_dir() else None


def base_parser(description: str, limit_help: str, quick_help: str) -> argparse.ArgumentParser:
    """The arguments every side-by-side benchmark takes: --limit, --model, --batch-size,
    --data-dir, --quick and --json."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--limit", type=int, default=1000, help=limit_help)
    parser.add_argument("--model", default=None,
                        help="model artifact to load, or where to save the one trained here")
    parser.add_argument("--batch-size", type=int, default=250, help="our attacks' batch size")
    parser.add_argument("--data-dir", default=default_data_dir())
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--json", default=None, help="also write the results here")
    return parser


@dataclass
class Setup:
    """The model and the first ``--limit`` MNIST test images a benchmark run attacks."""
    model: object
    x: np.ndarray
    y: np.ndarray
    correct: np.ndarray  # bool (n,): the model classifies the image correctly
    load_start: tuple[float, float, float]


def start(args, train_limit: int | None) -> Setup:
    """Logs the load average, loads (or trains) the model and the test images."""
    load_start = os.getloadavg()
    log(f"load average at start: {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f}")
    model = trained_cnn(None if args.quick else args.model, args.data_dir, train_limit)
    x_all, y_all, _ = data.load("mnist", "test", data_dir=args.data_dir)
    x, y = x_all[:args.limit], y_all[:args.limit]
    correct = predict_labels(model, x) == y
    log(f"{len(x)} test images, clean accuracy on them {correct.mean():.4f}")
    return Setup(model, x, y, correct, load_start)


def trained_cnn(path: str | None, data_dir: str | None, limit: int | None):
    """The paper's CNN trained one epoch on MNIST (advbench.run.train: Adam, batch 128), loaded
    from ``path`` when it exists, else trained and saved there."""
    from advbench.run.artifacts import load_model, save_model
    from advbench.defenses import make_defense
    from advbench.run.train import TrainConfig, train

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


def machine_line(load_start, load_end) -> str:
    """The versions, the CPU, whether there is a GPU and the load average at the start and
    the end of the run: the first words of a report."""
    import platform

    import keras

    return (f"TensorFlow {tf.__version__}, Keras {keras.__version__}, "
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU(s), "
            f"{'GPU' if tf.config.list_physical_devices('GPU') else 'no GPU'}; load average "
            f"{load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f} at the start, "
            f"{load_end[0]:.2f} {load_end[1]:.2f} {load_end[2]:.2f} at the end")


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
    """ART's TensorFlowV2Classifier around the Keras model (logits, inputs in [0, 1]) and the
    counter of its passes."""
    from art.estimators.classification import TensorFlowV2Classifier

    classifier = TensorFlowV2Classifier(
        model=model, nb_classes=10, input_shape=(28, 28, 1),
        loss_object=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        clip_values=(0.0, 1.0))
    return classifier, PassCounter(classifier)


# -- ours ------------------------------------------------------------------------------------
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


def warm_up(attack, model, x, y, target=None):
    """Trace the attack's tf.functions outside the timing: two batch sizes, so that
    ``reduce_retracing`` settles on a shape-generic trace reused by every later batch."""
    for n in (2, 3):
        attack(model, x[:n], y[:n], target=None if target is None else target[:n], seed=0)
