"""What progress inside an attack's compiled loop costs: samples/s of C&W, PGD and Square
with a bar that does not listen (as before: the graph without callback, ``advbench.core.ops.
report_step`` the identity, while the bar draws as the driver's did) and with one that
listens (a host callback about ``advbench.core.ops.REPORTS`` times per loop), alternated round
by round in one process so that both see the same load; the x_adv of the two must be
bit-identical.

The model: a small MNIST CNN (two convolutions, 16 and 32 filters, one dense layer) trained
one epoch on 5,000 MNIST training images (needs MNIST under $ADVBENCH_DATA).

    python bench/bench_progress.py [--limit 64] [--rounds 5] [--bar terminal|plain]
"""

from __future__ import annotations

import argparse
import io
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__import__("advbench")  # its TensorFlow environment defaults, before TensorFlow loads
import keras  # noqa: E402
import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402

from advbench import data  # noqa: E402
from advbench.attacks import make_attack  # noqa: E402
from advbench.core import progress  # noqa: E402
from advbench.core.progress import Progress  # noqa: E402

ATTACKS = {"cw-l2": dict(max_iter=100, binary_search_steps=3), "pgd": dict(eps=0.3, steps=40),
           "square": dict(eps=0.3, n_queries=300)}


def small_cnn() -> keras.Model:
    x, y, _ = data.load("mnist", "train", limit=5000)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((28, 28, 1)), keras.layers.Conv2D(16, 3, activation="relu"),
        keras.layers.MaxPooling2D(), keras.layers.Conv2D(32, 3, activation="relu"),
        keras.layers.MaxPooling2D(), keras.layers.Flatten(), keras.layers.Dense(10)])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=1, batch_size=64, verbose=0)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=64, help="test images, one batch")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (after a warm-up)")
    parser.add_argument("--bar", choices=("terminal", "plain"), default="terminal",
                        help="the listening bar: a rich bar or plain log lines")
    args = parser.parse_args()
    model = small_cnn()
    x, y, _ = data.load("mnist", "test", limit=args.limit)
    print(f"{len(x)} MNIST test images in one batch, small CNN, bar: {args.bar}, median of "
          f"{args.rounds} alternated rounds")
    print("| attack | parameters | bar, no callback (samples/s) | bar and callback (samples/s) "
          "| ratio | x_adv identical | load (1 min) |")
    print("|---|---|---|---|---|---|---|")
    for name, params in ATTACKS.items():
        attack = make_attack(name, **params)
        console = Console(file=io.StringIO(), force_terminal=args.bar == "terminal", width=150)
        bar = Progress(console=console, interval=30.0)
        times: dict[str, list[float]] = {"off": [], "on": []}
        outs = {}
        for r in range(args.rounds + 1):
            for which in ("off", "on"):
                bar.start(name, 1)
                if which == "off":  # the bar draws, the loop does not call back (as before)
                    progress._listening.remove(bar)
                began = time.perf_counter()
                outs[which] = attack(model, x, y, seed=1).x_adv
                if r:  # round 0 traces both graphs
                    times[which].append(time.perf_counter() - began)
                bar.close()
        off, on = (len(x) / float(np.median(times[k])) for k in ("off", "on"))
        same = bool(np.array_equal(outs["off"], outs["on"]))
        described = ", ".join(f"{k} {v}" for k, v in params.items())
        print(f"| {name} | {described} | {off:.1f} | {on:.1f} | {on / off:.3f} | {same} | "
              f"{os.getloadavg()[0]:.1f} |", flush=True)


if __name__ == "__main__":
    main()
