"""Training cost per processed sample: GDA (10 noisy copies) vs plain training.

Both run the same compiled train step of advbench.run.train on the paper's CNN, interleaved in
rounds so that machine noise hits both alike; the figure of merit is the ratio of seconds per
processed sample (target: GDA <= 1.1x plain). GDA draws its noise inside the step, so the
ratio measures the noise generation and nothing else.

    python bench/bench_train.py [--rounds 5] [--steps 20] [--batch-size 128]
"""

from __future__ import annotations

import argparse
import time

__import__("advbench")  # its TensorFlow environment defaults, before TensorFlow loads
import keras
import numpy as np
import tensorflow as tf

from advbench.defenses import make_defense
from advbench.models.zoo import build_model
from advbench.run.train import epoch_order, make_train_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--architecture", default="cnn")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    x = rng.random((2048, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, 2048).astype(np.int32)
    runners = {}
    for name in ("none", "gda"):
        keras.utils.set_random_seed(0)
        model = build_model(args.architecture, (28, 28, 1))
        defense = make_defense(name, "mnist")
        step = make_train_step(model, keras.optimizers.Adam(1e-3), defense, 10)
        order, noisy = epoch_order(len(x), defense.copies, rng)
        runners[name] = (step, order, noisy)

    def run(name: str, steps: int, offset: int) -> float:
        step, order, noisy = runners[name]
        started = time.perf_counter()
        for s in range(steps):
            sl = slice(((offset + s) * args.batch_size) % (len(order) - args.batch_size), None)
            sl = slice(sl.start, sl.start + args.batch_size)
            loss, _ = step(tf.constant(x[order[sl]]), tf.constant(y[order[sl]]),
                           tf.constant(noisy[sl]), tf.constant([0, offset + s], tf.int32))
        float(loss)
        return time.perf_counter() - started

    for name in runners:  # trace and warm up
        run(name, 3, 0)
    totals = {name: 0.0 for name in runners}
    for r in range(args.rounds):
        for name in (("none", "gda") if r % 2 == 0 else ("gda", "none")):
            totals[name] += run(name, args.steps, r * args.steps)
    samples = args.rounds * args.steps * args.batch_size
    per_sample = {name: totals[name] / samples for name in totals}
    ratio = per_sample["gda"] / per_sample["none"]
    print(f"architecture {args.architecture}, batch {args.batch_size}, "
          f"{samples} processed samples each, {args.rounds} interleaved rounds")
    print(f"{'training':<22}{'us/sample':>12}{'samples/s':>12}")
    for name, label in (("none", "plain"), ("gda", "GDA (10 copies)")):
        print(f"{label:<22}{1e6 * per_sample[name]:>12.1f}{1 / per_sample[name]:>12.0f}")
    print(f"GDA / plain cost per processed sample: {ratio:.3f}x (target <= 1.1x)")


if __name__ == "__main__":
    main()
