"""Benchmark of the evaluation metrics on MNIST: training-set distance and an eps sweep.

1. Training-set distance: exact nearest training image (L2) for 10,000 adversarial stand-ins
   (test images moved by 0.1 * a random sign pattern, as an FGSM step would) against the
   60,000 MNIST training images (``metrics.nearest_training_distance``).
2. Accuracy-vs-eps sweep: FGSM at 100 eps (0.01 to 1) on 10,000 test images, one gradient
   per image (``curves.sweep``).

Each is reported in samples/s next to the model's raw forward throughput (batch 256) measured
in the same run: a sweep of E eps forwards E images per sample, so its ceiling is
forward/E samples/s plus one gradient.

Usage:
    python bench/bench_metrics.py [--model PATH] [--data-dir ../shared/data] [--json out.json]

Without --model it trains the paper's CNN for one epoch on MNIST first (about a minute on
two CPU cores).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
__import__("advbench")  # its TensorFlow environment defaults, before TensorFlow loads
import tensorflow as tf  # noqa: E402

from advbench import data  # noqa: E402
from advbench.data.samples import training_set  # noqa: E402
from advbench.models.zoo import build_model, forward_function  # noqa: E402
from advbench.run import curves, metrics  # noqa: E402


def default_data_dir() -> str | None:
    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    return str(shared) if shared.is_dir() else None


def trained_cnn(data_dir):
    """The paper's CNN trained one epoch on MNIST (Adam, batch 128)."""
    import keras

    keras.utils.set_random_seed(0)
    x, y, _ = data.load("mnist", "train", data_dir=data_dir)
    model = build_model("cnn", (28, 28, 1))
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    started = time.perf_counter()
    model.fit(x, y, batch_size=128, epochs=1, verbose=0)
    print(f"trained 1 epoch in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return model


def forward_throughput(model, x: np.ndarray, batch_size: int = 256) -> float:
    """Images per second of the compiled inference pass (logits), after a warm-up."""
    forward = forward_function(model)
    forward(tf.constant(x[:batch_size])).numpy()
    started = time.perf_counter()
    for start in range(0, len(x), batch_size):
        forward(tf.constant(x[start:start + batch_size])).numpy()
    return len(x) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="advbench model artifact [default: train a CNN]")
    parser.add_argument("--data-dir", default=default_data_dir())
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--sweep-samples", type=int, default=10_000)
    parser.add_argument("--eps", default="0.01:1:0.01")
    parser.add_argument("--batch-size", type=int, default=128, help="sweep gradient batch")
    parser.add_argument("--chunk-size", type=int, default=2048, help="distance block rows")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    if args.model:
        from advbench.run.artifacts import load_model

        model, _ = load_model(args.model)
    else:
        model = trained_cnn(args.data_dir)
    x_test, y_test, _ = data.load("mnist", "test", data_dir=args.data_dir)
    x_train = training_set("mnist", args.data_dir)
    devices = [d.device_type for d in tf.config.list_physical_devices()]
    results = {"devices": devices, "train_images": int(len(x_train))}

    forward = forward_throughput(model, x_test)
    results["forward_images_per_s"] = round(forward, 1)

    # 1. training-set distance
    rng = np.random.default_rng(0)
    queries = x_test[:args.queries]
    stand_ins = np.clip(queries + 0.1 * np.sign(rng.standard_normal(queries.shape)), 0, 1
                        ).astype(np.float32)
    metrics.nearest_training_distance(stand_ins[:64], x_train[:4096])  # trace once
    started = time.perf_counter()
    distances, _ = metrics.nearest_training_distance(stand_ins, x_train,
                                                     chunk_size=args.chunk_size)
    elapsed = time.perf_counter() - started
    results["distance"] = {"queries": int(len(stand_ins)), "seconds": round(elapsed, 2),
                           "samples_per_s": round(len(stand_ins) / elapsed, 1),
                           "mean_distance": round(float(distances.mean()), 4)}

    # 2. eps sweep
    eps = curves.parse_eps(args.eps)
    x, y = x_test[:args.sweep_samples], y_test[:args.sweep_samples]
    curves.sweep(model, [model], x[:args.batch_size], y[:args.batch_size], eps[:2],
                 batch_size=args.batch_size)  # trace once
    started = time.perf_counter()
    out = curves.sweep(model, [model], x, y, eps, batch_size=args.batch_size)
    elapsed = time.perf_counter() - started
    accuracy = (out["pred_adv"][0] == y).mean(axis=1)
    results["sweep"] = {
        "samples": int(len(x)), "eps_points": len(eps), "seconds": round(elapsed, 2),
        "samples_per_s": round(len(x) / elapsed, 1),
        "images_forwarded_per_s": round(len(x) * len(eps) / elapsed, 1),
        "ceiling_samples_per_s": round(forward / len(eps), 1),
        "accuracy_at": {f"{e:g}": round(float(a), 4) for e, a in zip(eps, accuracy)
                        if round(e, 2) in (0.01, 0.1, 0.3, 0.5, 1.0)},
    }
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
