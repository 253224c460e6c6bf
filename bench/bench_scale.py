"""Scaling out on one machine: an attack as 1 vs 2 shard processes, and mirrored training on
2 logical devices vs 1.

Attack: `advbench attack --attack pgd` (fixed steps, no early stop) on an untrained paper
CNN, once as one process and once as two `--shard I/2` processes started together and then
`advbench merge`d; it reports wall time (TensorFlow start-up included), the attack time each
artifact records, the speed-up, and checks that the merge equals the one-process artifact.
On a machine with C free cores two shards gain at most min(2, C) x, less the start-up of a
second TensorFlow and the two processes' competition for memory bandwidth; TensorFlow
already spreads one process over the cores (intra-op threads), so on 2 cores expect ~1x.

Training: seconds per step of the paper CNN's train step (advbench.run.train.make_train_step) on
`--strategy none` vs `mirrored` over 2 logical CPU devices of the same cores, which measures
the strategy's overhead (splitting, the gradient all-reduce), not a speed-up.

    python bench/bench_scale.py [--samples 512] [--steps 10] [--train-steps 30]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def attack_bench(args: argparse.Namespace, folder: Path) -> dict:
    from advbench.run.artifacts import ATTACK_SCHEMA, read_arrays, save_model
    from advbench.models.zoo import build_model

    model_path = folder / "mnist-cnn-untrained.h5"
    save_model(model_path, build_model("cnn", (28, 28, 1)), {"dataset": "mnist"})
    command = [sys.executable, "-m", "advbench", "attack", str(model_path), "--attack", "pgd",
               "--steps", str(args.steps), "--no-early-stop", "--limit", str(args.samples),
               "--batch-size", "128", "-q"]
    if args.data_dir:
        command += ["--data-dir", args.data_dir]
    started = time.perf_counter()
    subprocess.run([*command, "-o", str(folder / "one.h5")], check=True,
                   stdout=subprocess.DEVNULL)
    one_wall = time.perf_counter() - started
    started = time.perf_counter()
    shards = [subprocess.Popen([*command, "--shard", f"{i}/2", "-o", str(folder / "s.h5")],
                               stdout=subprocess.PIPE, text=True) for i in range(2)]
    paths = [p.communicate()[0].strip() for p in shards]
    two_wall = time.perf_counter() - started
    subprocess.run([sys.executable, "-m", "advbench", "merge", *paths, "-o",
                    str(folder / "merged.h5")], check=True, stdout=subprocess.DEVNULL)
    one_attrs, one = read_arrays(folder / "one.h5", ATTACK_SCHEMA)
    _, merged = read_arrays(folder / "merged.h5", ATTACK_SCHEMA)
    shard_times = [read_arrays(p, ATTACK_SCHEMA, names=[])[0]["wall_time_s"] for p in paths]
    identical = sorted(one) == sorted(merged) and all(
        np.array_equal(one[k], merged[k]) for k in one)
    return {"samples": args.samples, "pgd_steps": args.steps,
            "one_process_wall_s": round(one_wall, 2),
            "one_process_attack_s": one_attrs["wall_time_s"],
            "two_shards_wall_s": round(two_wall, 2), "shard_attack_s": shard_times,
            "speedup_wall": round(one_wall / two_wall, 2),
            "speedup_attack": round(one_attrs["wall_time_s"] / max(shard_times), 2),
            "merged_bit_identical": bool(identical)}


def training_bench(args: argparse.Namespace) -> dict:
    # In a fresh process: logical CPU devices exist only if made before TensorFlow starts.
    code = f"""
import json, time, keras, numpy as np, tensorflow as tf
from advbench.defenses import make_defense
from advbench.run.distribute import make_strategy
from advbench.models import build_model
from advbench.run.train import make_train_step
# The mirrored strategy first: it makes the logical CPU devices before TensorFlow starts.
strategies = {{"mirrored": make_strategy("mirrored", ["/cpu:0", "/cpu:1"])}}
strategies["none"] = make_strategy("none")
rng = np.random.default_rng(0)
x = tf.constant(rng.random((128, 28, 28, 1), dtype=np.float32))
y = tf.constant(rng.integers(0, 10, 128).astype(np.int32))
noisy = tf.zeros(128, tf.bool)
out = {{}}
for name in ("none", "mirrored", "none", "mirrored"):
    strategy = strategies[name]
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = build_model("cnn", (28, 28, 1))
        optimizer = keras.optimizers.Adam(1e-3)
    step = make_train_step(model, optimizer, make_defense("none", "mnist"), 10, strategy)
    for s in range(3):
        step(x, y, noisy, tf.constant([0, s]))
    started = time.perf_counter()
    for s in range({args.train_steps}):
        float(step(x, y, noisy, tf.constant([0, s]))[0])
    out.setdefault(name, []).append((time.perf_counter() - started) / {args.train_steps})
print(json.dumps({{k: min(v) for k, v in out.items()}}))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"training bench failed:\n{result.stderr[-3000:]}")
    per_step = json.loads(result.stdout.strip().splitlines()[-1])
    return {"batch": 128, "steps": args.train_steps,
            "none_s_per_step": round(per_step["none"], 4),
            "mirrored_2_cpu_s_per_step": round(per_step["mirrored"], 4),
            "mirrored_overhead": round(per_step["mirrored"] / per_step["none"], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--steps", type=int, default=10, help="PGD steps.")
    parser.add_argument("--train-steps", type=int, default=30)
    parser.add_argument("--data-dir", default=os.environ.get("ADVBENCH_DATA"))
    args = parser.parse_args()
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as folder:
        attack = attack_bench(args, Path(folder))
    training = training_bench(args)
    print(json.dumps({"cpus": os.cpu_count(), "load_average_before": [round(v, 2) for v in load],
                      "load_average_after": [round(v, 2) for v in os.getloadavg()],
                      "attack": attack, "training": training}, indent=2))


if __name__ == "__main__":
    main()
