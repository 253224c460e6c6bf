"""The attack twin's input gradient against TensorFlow's, side by side in one process.

Three tables, each a ratio taken in the same run (``make bench-gradients``):
- per convolution: us per image of the input gradient by TensorFlow's Conv2DBackpropInput
  (``tf.nn.conv2d_transpose``) and by ``subpixel_input_gradient``, for the zoo's layers and
  a few others; the column "twin uses it" is ``subpixel_eligible``'s rule;
- per Dense layer and batch size: ms of the input gradient as TensorFlow's MatMul gradient
  computes it (``dy @ kernel^T``, ``transpose_b``) and as the twin's
  ``TransposedGradientDense`` does (``(kernel @ dy^T)^T``), and whether the two are
  bit-identical; attacks run their late steps on a few samples, so small batches count;
- per zoo model: images/s of one forward and backward pass to the input (cross-entropy
  gradient, what FGSM needs) through the Keras model and through ``attack_model``'s twin.

Rounds alternate between the two sides so that a noisy moment hits both; the best round of
each is reported.

Usage:
    python bench/bench_gradients.py [--batch-size 250] [--seconds 1.5] [--rounds 3]
                                    [--threads N]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

__import__("advbench")  # its TensorFlow environment defaults, before TensorFlow loads
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from advbench.models.gradients import (attack_model, subpixel_eligible,  # noqa: E402
                                       subpixel_input_gradient)
from advbench.models.zoo import build_model  # noqa: E402

# (label, input (H, W, C), kernel, stride, padding, output channels)
LAYERS = [
    ("CNN/ResNet conv1", (28, 28, 1), 8, 2, "SAME", 64),
    ("CNN conv2", (14, 14, 64), 6, 2, "VALID", 128),
    ("CNN conv3", (5, 5, 128), 5, 1, "VALID", 128),
    ("CIFAR CNN conv1", (32, 32, 3), 3, 1, "SAME", 32),
    ("4x4 s2, 3 ch", (32, 32, 3), 4, 2, "SAME", 64),
    ("5x5 s3, 3 ch", (17, 17, 3), 5, 3, "VALID", 8),
    ("3x3 s2, 8 ch", (16, 16, 8), 3, 2, "SAME", 64),
]
MODELS = [("cnn", (28, 28, 1)), ("resnet", (28, 28, 1)), ("cifar-cnn", (32, 32, 3))]
# (label, inputs, outputs) of Dense layers: the CIFAR CNN's two, the MLP's first.
DENSE = [("CIFAR CNN dense1", 3136, 500), ("CIFAR CNN logits", 500, 10), ("MLP dense", 784, 256)]
DENSE_BATCHES = (1, 3, 16, 64, 250)


def best_rates(functions: dict, args, batch: int, rounds: int, seconds: float) -> dict:
    """Best images/s of each function over alternating rounds of ``seconds`` each."""
    for function in functions.values():
        function(*args).numpy()  # trace
    best = dict.fromkeys(functions, 0.0)
    for _ in range(rounds):
        for name, function in functions.items():
            count, started = 0, time.perf_counter()
            while time.perf_counter() - started < seconds:
                function(*args).numpy()
                count += 1
            best[name] = max(best[name], count * batch / (time.perf_counter() - started))
    return best


def layer_table(batch: int, rounds: int, seconds: float) -> None:
    print("| convolution | kernel, stride, channels | TensorFlow us/image | sub-pixel us/image "
          "| ratio | twin uses it |")
    print("|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for label, shape, kernel, stride, padding, channels in LAYERS:
        weights = tf.constant(rng.normal(size=(kernel, kernel, shape[-1], channels)), tf.float32)
        x_shape = (batch, *shape)
        dy_shape = tf.nn.conv2d(tf.zeros(x_shape), weights, stride, padding).shape
        dy = tf.constant(rng.normal(size=dy_shape), tf.float32)
        functions = {
            "tf": tf.function(lambda d, w, s=stride, p=padding, xs=x_shape:
                              tf.nn.conv2d_transpose(d, w, xs, s, p)),
            "subpixel": tf.function(lambda d, w, s=stride, p=padding, hw=shape[:2]:
                                    subpixel_input_gradient(d, w, hw, (s, s), p)),
        }
        rates = best_rates(functions, (dy, weights), batch, rounds, seconds)
        conv = keras.layers.Conv2D(channels, kernel, strides=stride, padding=padding.lower())
        conv.build((None, *shape))
        print(f"| {label} | {kernel}x{kernel}, {stride}, {shape[-1]} -> {channels} | "
              f"{1e6 / rates['tf']:.1f} | {1e6 / rates['subpixel']:.1f} | "
              f"{rates['subpixel'] / rates['tf']:.2f}x | "
              f"{'yes' if subpixel_eligible(conv) else 'no'} |")


def dense_table(rounds: int, seconds: float) -> None:
    print("| Dense layer | batch | TensorFlow ms | twin ms | ratio | bit-identical |")
    print("|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for label, inputs, outputs in DENSE:
        kernel = tf.constant(rng.normal(size=(inputs, outputs)), tf.float32)
        for batch in DENSE_BATCHES:
            dy = tf.constant(rng.normal(size=(batch, outputs)), tf.float32)
            functions = {
                "tf": tf.function(lambda d, k: tf.matmul(d, k, transpose_b=True)),
                "twin": tf.function(lambda d, k: tf.transpose(tf.matmul(k, d, transpose_b=True))),
            }
            same = np.array_equal(functions["tf"](dy, kernel).numpy(),
                                  functions["twin"](dy, kernel).numpy())
            rates = best_rates(functions, (dy, kernel), batch, rounds, seconds)
            print(f"| {label} {inputs} -> {outputs} | {batch} | {1e3 * batch / rates['tf']:.3f} "
                  f"| {1e3 * batch / rates['twin']:.3f} | {rates['twin'] / rates['tf']:.2f}x "
                  f"| {'yes' if same else 'no'} |")


def model_table(batch: int, rounds: int, seconds: float) -> None:
    print("| model | Keras model fwd+bwd/s | attack twin fwd+bwd/s | ratio |")
    print("|---|---|---|---|")
    for architecture, shape in MODELS:
        keras.utils.set_random_seed(0)
        model = build_model(architecture, shape)
        x = tf.constant(np.random.default_rng(1).uniform(size=(batch, *shape)), tf.float32)
        labels = tf.constant(np.arange(batch) % 10, tf.int32)

        def gradient_of(differentiated):
            @tf.function
            def gradient(xb, yb):
                with tf.GradientTape() as tape:
                    tape.watch(xb)
                    loss = tf.nn.sparse_softmax_cross_entropy_with_logits(
                        yb, differentiated(xb, training=False))
                return tape.gradient(loss, xb)
            return gradient

        rates = best_rates({"keras": gradient_of(model), "twin": gradient_of(attack_model(model))},
                           (x, labels), batch, rounds, seconds)
        print(f"| {architecture} | {rates['keras']:,.0f} | {rates['twin']:,.0f} | "
              f"{rates['twin'] / rates['keras']:.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--seconds", type=float, default=1.5, help="length of one round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None,
                        help="TensorFlow's intra- and inter-op threads (default: its own)")
    args = parser.parse_args()
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    load = os.getloadavg()
    print(f"TensorFlow {tf.__version__}, {os.cpu_count()} CPU(s), "
          f"{'GPU' if tf.config.list_physical_devices('GPU') else 'no GPU'}; batch "
          f"{args.batch_size}; threads {args.threads or 'default'}; load average at start "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print()
    layer_table(args.batch_size, args.rounds, args.seconds)
    print()
    dense_table(args.rounds, args.seconds)
    print()
    model_table(args.batch_size, args.rounds, args.seconds)


if __name__ == "__main__":
    main()
