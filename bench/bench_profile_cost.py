"""Estimate what `advbench reproduce --dataset D --profile P` costs on this machine, without
running it: short probes measure unit costs, the profile's stage graph multiplies them out.

Probes (CPU time of this process, all threads: insensitive to other processes on a shared
machine): training per processed sample and a fixed part (data loading, validation, the
10,000-image test accuracy) per model kind, from short trainings; minimal FGSM, DeepFool,
JSMA and C&W per image on 50 test images of the probe ResNet; one FGSM sweep per image, eps
and target. CPU seconds become wall seconds of an idle machine through ``--wall-per-cpu``
(default 0.755: the quick MNIST run of 2026-11-25, alone on 2 cores, trained the CNN at 550
us of wall time per sample; this probe measured 729 us of CPU time per sample for the same
model, as TensorFlow keeps about 1.3 of the 2 cores busy).

    python bench/bench_profile_cost.py --dataset mnist --profile quick [--json out.json]
    python bench/bench_profile_cost.py --dataset cifar10 --units bench/profile_cost_units_cifar10.json

The committed ``bench/profile_cost_units_*.json`` hold the units measured on the development
machine (their "note" says how they were checked against one full-size training); with
``--units`` the estimate of a resized profile takes seconds. Numbers and method:
docs/results/README.md.
"""

from __future__ import annotations

import argparse
import json
import time

from advbench import data
from advbench.attacks import make_attack
from advbench.defenses import make_defense
from advbench.paper.experiments import Reproduction
from advbench.paper.profiles import MODEL_SPECS
from advbench.run.curves import parse_eps, sweep
from advbench.run.train import TrainConfig, train

EXPENSIVE = ("fgsm-min", "deepfool", "jsma", "cw-l2")


def cpu(fn):
    started = time.process_time()
    value = fn()
    return time.process_time() - started, value


def probe(dataset: str, limit: int, epochs: int, attack_params: dict) -> dict:
    """Unit CPU costs: {"train": {kind: (fixed_s, per_sample_s)}, "attack": {name: s/image},
    "forward": s per image, eps and target of a sweep}."""
    data.load(dataset, "train")
    data.load(dataset, "test")
    kinds = {"cnn": ("cnn", "relu", "none"), "brelu": ("cnn", "brelu", "none"),
             "resnet": ("resnet", "relu", "none"), "gda": ("cnn", "relu", "gda"),
             "fgsm-at": ("cnn", "relu", "fgsm-at"), "vat": ("cnn", "relu", "vat")}
    passes = {"gda": 11, "fgsm-at": 3, "vat": 3}
    costs, models = {}, {}
    for kind, (arch, act, defense) in kinds.items():
        n = max(10, limit // passes.get(kind, 1))
        config = TrainConfig(dataset=dataset, architecture=arch, activation=act, epochs=epochs,
                             seed=0, limit=n)
        seconds, (model, meta) = cpu(lambda: train(config, make_defense(defense, dataset)))
        costs[kind] = (seconds, meta["samples_processed"])
        models[kind] = model
        print(f"train {kind}: {seconds:.1f} s CPU for {meta['samples_processed']} samples",
              flush=True)
    # The fixed part from a second, smaller CNN training (a straight line through both).
    small = TrainConfig(dataset=dataset, architecture="cnn", epochs=epochs, seed=0,
                        limit=max(10, limit // 4))
    seconds, (_, meta) = cpu(lambda: train(small, make_defense("none", dataset)))
    big_s, big_n = costs["cnn"]
    per_sample = (big_s - seconds) / (big_n - meta["samples_processed"])
    fixed = seconds - per_sample * meta["samples_processed"]
    out: dict = {"train": {k: (fixed, (s - fixed) / n) for k, (s, n) in costs.items()},
                 "attack": {}}
    x, y, _ = data.load(dataset, "test", limit=50, seed=0)
    for name in EXPENSIVE:
        seconds, _ = cpu(lambda: make_attack(name, **attack_params.get(name, {}))(
            models["resnet"], x, y, seed=0))
        out["attack"][name] = seconds / len(x)
        print(f"{name}: {seconds / len(x):.3f} s CPU per image", flush=True)
    x, y, _ = data.load(dataset, "test", limit=500, seed=0)
    eps = parse_eps("0.02:1:0.02")
    targets = [models[k] for k in ("cnn", "brelu", "resnet", "gda")]
    seconds, _ = cpu(lambda: sweep(models["resnet"], targets, x, y, eps, batch_size=256))
    out["forward"] = seconds / (len(x) * len(eps) * len(targets))
    return out


def estimate(repro: Reproduction, units: dict, wall_per_cpu: float) -> dict[str, float]:
    """Wall seconds per kind of stage for ``repro``'s graph on an idle machine."""
    p = repro.profile
    n_eps = len(parse_eps(p.eps_grid))
    test = p.test_limit or data.dataset_info(repro.dataset).test_size
    totals: dict[str, float] = {}

    def add(kind: str, cpu_seconds: float) -> None:
        totals[kind] = totals.get(kind, 0.0) + cpu_seconds * wall_per_cpu

    defenses = [m for m in p.models if MODEL_SPECS[m][0] == "cnn"]
    for stage in repro.stages():
        sid, _, tag = stage.id.partition("@")
        seed = int(tag[4:]) if tag else repro.seed
        if sid.startswith("train:"):
            name = sid[6:]
            architecture, activation, defense = MODEL_SPECS[name]
            kind = {"gda": "gda", "fgsm-at": "fgsm-at", "vat": "vat"}.get(
                defense, "resnet" if architecture == "resnet" else
                "brelu" if activation == "brelu" else "cnn")
            config, defense_object = repro._train_config(name, seed)
            images = config.limit or data.dataset_info(repro.dataset).train_size
            per_epoch = images * (3 if defense in ("fgsm-at", "vat") else
                                  1 + defense_object.copies)
            fixed, per_sample = units["train"][kind]
            if activation == "brelu" and kind == "resnet":
                per_sample *= units["train"]["brelu"][1] / units["train"]["cnn"][1]
            add("train", fixed + per_sample * per_epoch * config.epochs)
        elif sid.startswith("attack:"):
            _, attack, _ = sid.split(":")
            images = repro._limit_for(attack, seed) or test
            add(f"attack {attack}", units["attack"].get(attack, 2 * units["forward"]) * images)
        elif sid.startswith("curve:"):
            add("curves", test * (n_eps + 2) * units["forward"])
        elif sid.startswith("blackbox-curve:"):
            add("curves", test * (n_eps * len(defenses) + 2) * units["forward"])
        elif sid.startswith("table2:"):
            add("table 2", (p.expensive_limit or test) * units["attack"]["fgsm-min"])
        elif sid.startswith(("table1", "table3", "table4")):
            add("tables", test * 20 * units["forward"])  # a few passes per model and image
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--probe-limit", type=int, default=4000)
    parser.add_argument("--probe-epochs", type=int, default=1)
    parser.add_argument("--wall-per-cpu", type=float, default=0.755)
    parser.add_argument("--json", default=None, help="write the units and the estimate")
    parser.add_argument("--units", default=None,
                        help="reuse the units of an earlier --json instead of probing")
    args = parser.parse_args()
    repro = Reproduction(args.dataset, args.profile, "/tmp/unused")
    if args.units:
        with open(args.units) as f:
            units = json.load(f)["units"]
    else:
        units = probe(args.dataset, args.probe_limit, args.probe_epochs,
                      repro.profile.attack_params)
    totals = estimate(repro, units, args.wall_per_cpu)
    for kind, seconds in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"{kind:20s} {seconds / 60:6.1f} min")
    print(f"{'total':20s} {sum(totals.values()) / 60:6.1f} min "
          f"({len(repro.stages())} stages, {len(repro.seeds)} seeds)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"units": units, "minutes": {k: v / 60 for k, v in totals.items()}}, f,
                      indent=1)


if __name__ == "__main__":
    main()
