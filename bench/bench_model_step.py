"""One attack step's model cost, TensorFlow against PyTorch: a forward and backward pass to the
input (cross-entropy gradient) through a Keras model, through its attack twin
(``advbench.models.gradients.attack_model``) and through its PyTorch port (``torch_port.py``,
what bench_autoattack.py gives the reference), per batch size, at one thread count.

On the samples an attack cannot fool, every iteration of APGD, FAB or Square is this pass
plus a few element-wise operations, so this table bounds how far ahead of the reference
advbench can be there; advbench's lead elsewhere comes from dropping fooled samples, which the
reference keeps stepping. The TensorFlow passes run ``REPS`` steps inside one ``tf.while_loop``
(each step moves the input, so nothing is loop-invariant), as the attacks do; torch runs them
eagerly, as the reference does. Rounds alternate between the three sides; each side's best
round is reported.

Usage (the ``bench`` extra, bench/ on the path):
    python bench/bench_model_step.py MODEL.h5 [MODEL.h5 ...] [--threads 1]
        [--batches 2,8,64,250] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

__import__("advbench")  # its TensorFlow environment defaults, before TensorFlow loads

import numpy as np  # noqa: E402

#: Steps per timed call.
REPS = 30


def tensorflow_steps(model):
    import tensorflow as tf

    @tf.function(autograph=False)
    def steps(x, y):
        def body(i, acc):
            moved = tf.clip_by_value(x + 1e-3 * tf.sign(acc), 0.0, 1.0)
            with tf.GradientTape() as tape:
                tape.watch(moved)
                loss = tf.nn.sparse_softmax_cross_entropy_with_logits(
                    y, model(moved, training=False))
            return i + 1, acc + tape.gradient(loss, moved)
        return tf.while_loop(lambda i, _: i < REPS, body, (0, tf.zeros_like(x)))[1]
    return lambda x, y: steps(x, y).numpy()


def torch_steps(net):
    import torch

    def steps(x, y):
        acc = torch.zeros_like(x)
        for _ in range(REPS):
            moved = (x + 1e-3 * acc.sign()).clamp(0, 1).requires_grad_(True)
            loss = torch.nn.functional.cross_entropy(net(moved), y, reduction="sum")
            acc = acc + torch.autograd.grad(loss, moved)[0]
        return acc
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="Keras model files (.h5 / .keras)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batches", default="2,8,64,250")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    import tensorflow as tf
    import torch

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    torch.set_num_threads(args.threads)
    from torch_port import port_keras_model

    from advbench.models.gradients import attack_model
    from advbench.run.artifacts import load_model

    load = os.getloadavg()
    print(f"TensorFlow {tf.__version__} (TF_ENABLE_ONEDNN_OPTS="
          f"{os.environ.get('TF_ENABLE_ONEDNN_OPTS')}), torch {torch.__version__}, "
          f"{args.threads} thread(s); "
          f"load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; ms per step "
          f"(best of {args.rounds} rounds of {REPS} steps)\n")
    print("| model | batch | Keras model ms | attack twin ms | torch port ms "
          "| twin's speed / torch's |")
    print("|---|---|---|---|---|---|")
    for path in args.models:
        model, _ = load_model(path)
        sides = {"keras": tensorflow_steps(model), "twin": tensorflow_steps(attack_model(model))}
        net = port_keras_model(model)
        sides["torch"] = torch_steps(net)
        rng = np.random.default_rng(0)
        for batch in (int(b) for b in args.batches.split(",")):
            x = rng.uniform(size=(batch, *model.input_shape[1:])).astype(np.float32)
            y = (np.arange(batch) % int(model.output_shape[-1])).astype(np.int64)
            inputs = {"keras": (tf.constant(x), tf.constant(y.astype(np.int32))),
                      "torch": (torch.tensor(x).permute(0, 3, 1, 2).contiguous(),
                                torch.tensor(y))}
            inputs["twin"] = inputs["keras"]
            best = dict.fromkeys(sides, float("inf"))
            for name, steps in sides.items():
                steps(*inputs[name])  # trace / warm up
            for _ in range(args.rounds):
                for name, steps in sides.items():
                    start = time.perf_counter()
                    steps(*inputs[name])
                    best[name] = min(best[name], (time.perf_counter() - start) / REPS * 1e3)
            print(f"| {Path(path).name} | {batch} | {best['keras']:.2f} | {best['twin']:.2f} | "
                  f"{best['torch']:.2f} | {best['torch'] / best['twin']:.2f}x |", flush=True)
    load = os.getloadavg()
    print(f"\nload average at end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
