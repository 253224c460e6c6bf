"""FAB-T side by side with the authors' code (fra31/auto-attack, ``FABAttack_PT``) on the same
weights, images, norm and eps: robust accuracy, median perturbation norm on the samples both
fool, and samples/s.

One process: the Keras model is ported to PyTorch (``torch_port.port_keras_model``) and its
logits checked against Keras' to 1e-4 on the images attacked; advbench's ``FABTargeted(norm,
eps)`` and the authors' ``FABAttack_PT(model, norm, eps, n_restarts=1, n_iter=100,
targeted=True, n_target_classes=9)`` (AutoAttack's standard FAB-T) attack the first
``--limit`` MNIST test images, in batches of ``--batch-size`` each (AutoAttack's 250),
alternately batch by batch (so a shared CPU's load falls on both alike), with the same number
of threads (TensorFlow intra-op and torch). Both are scored with the Keras
model: robust accuracy is the fraction still classified correctly (clean errors count as
broken), the median norm is taken over the samples both attacks fool. The two projections'
agreement on random 784-feature rows is printed first. The load average at the start and the
end is printed with the table: the CPU may be shared.

The authors' code is not installed: put a checkout on the path with ``--reference``
(``git --git-dir=<mirror> archive HEAD | tar -x -C /tmp/autoattack_ref``; it needs only torch).

Usage:
    python bench/bench_fab.py --model PATH [--limit 1000] [--runs linf:0.3,l2:1.5]
        [--reference /tmp/autoattack_ref] [--threads 2] [--batch-size 250] [--json out.json]

Needs the optional extra: ``pip install -e '.[bench]'`` (torch).
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

from benchlib import base_parser, log, machine_line, start, warm_up  # noqa: E402 (sets path)
from torch_port import check_logits, port_keras_model

REFERENCE_NORMS = {"linf": "Linf", "l2": "L2", "l1": "L1"}


def parse_runs(text: str) -> list[tuple[str, float]]:
    runs = []
    for part in text.split(","):
        norm, _, eps = part.partition(":")
        if norm not in REFERENCE_NORMS or not eps:
            raise SystemExit(f"--runs takes norm:eps pairs such as linf:0.3,l2:1.5, got {part!r}")
        runs.append((norm, float(eps)))
    return runs


def norms(x: np.ndarray, x_adv: np.ndarray, norm: str) -> np.ndarray:
    delta = (x_adv.astype(np.float64) - x).reshape(len(x), -1)
    return np.linalg.norm(delta, ord={"linf": np.inf, "l2": 2, "l1": 1}[norm], axis=1)


def projection_agreement(seed: int = 0) -> dict[str, float]:
    """Largest difference of the two projections' steps on 200 random 784-feature rows (half
    the pixels at 0, a tenth of the weights 0), per norm."""
    __import__("advbench")  # its TensorFlow environment defaults, before TensorFlow loads
    import tensorflow as tf
    import torch
    from autoattack.fab_projections import projection_l1, projection_l2, projection_linf

    from advbench.attacks.fab import project

    rng = np.random.default_rng(seed)
    m, d = 200, 784
    t = rng.uniform(0, 1, (m, d)).astype(np.float32)
    t[rng.uniform(size=(m, d)) < 0.5] = 0.0
    w = rng.normal(size=(m, d)).astype(np.float32)
    w[rng.uniform(size=(m, d)) < 0.1] = 0.0
    b = ((w * t).sum(1) + rng.normal(size=m) * rng.choice([0.1, 1, 10], m)).astype(np.float32)
    out = {}
    for norm, theirs in (("linf", projection_linf), ("l2", projection_l2),
                         ("l1", projection_l1)):
        ours = project(norm, tf.constant(t), tf.constant(w),
                       tf.constant((w * t).sum(1) - b)).numpy()
        ref = theirs(torch.from_numpy(t.copy()), torch.from_numpy(w.copy()),
                     torch.from_numpy(b.copy())).numpy()
        out[norm] = float(np.abs(ours - ref).max())
    return out


def run_both(model, net, x: np.ndarray, y: np.ndarray, norm: str, eps: float,
             batch_size: int) -> tuple[np.ndarray, float, np.ndarray, float]:
    """advbench's and the authors' FAB-T on the same batches, alternately (ours, then theirs,
    batch by batch), so that a shared CPU's load falls on both alike. Returns (ours,
    seconds, theirs, seconds); our tracing is done before, on two images."""
    import torch
    from autoattack.fab_pt import FABAttack_PT

    from advbench.attacks.fab import FABTargeted

    ours_attack = FABTargeted(norm=norm, eps=eps)
    warm_up(ours_attack, model, x, y)
    reference = FABAttack_PT(net, norm=REFERENCE_NORMS[norm], n_restarts=1, n_iter=100,
                             eps=eps, seed=0, targeted=True, device="cpu", n_target_classes=9)
    ours, theirs, ours_s, theirs_s = [], [], 0.0, 0.0
    for i in range(0, len(x), batch_size):
        xb, yb = x[i:i + batch_size], y[i:i + batch_size]
        started = time.perf_counter()
        ours.append(ours_attack(model, xb, yb, seed=i).x_adv)
        ours_s += time.perf_counter() - started
        xt = torch.from_numpy(xb.transpose(0, 3, 1, 2).copy())
        started = time.perf_counter()
        adv = reference.perturb(xt, torch.from_numpy(yb.astype(np.int64)))
        theirs_s += time.perf_counter() - started
        theirs.append(adv.numpy().transpose(0, 2, 3, 1))
        log(f"  {i + len(xb)} images: advbench {ours_s:.0f} s, reference {theirs_s:.0f} s, "
            f"load {os.getloadavg()[0]:.2f}")
    return np.concatenate(ours), ours_s, np.concatenate(theirs), theirs_s


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0], "MNIST test images attacked (default 1000)",
                         "train a 1-epoch CNN on 2,000 images instead of loading --model")
    parser.add_argument("--runs", default="linf:0.3,l2:1.5", help="norm:eps pairs")
    parser.add_argument("--reference", default=os.environ.get("AUTOATTACK_REF",
                                                              "/tmp/autoattack_ref"),
                        help="a checkout of fra31/auto-attack (the folder holding autoattack/)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="intra-op threads of both TensorFlow and torch")
    args = parser.parse_args()
    sys.path.insert(0, args.reference)
    import tensorflow as tf
    import torch

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    setup = start(args, train_limit=2000 if args.quick else None)
    net = port_keras_model(setup.model)
    diff = check_logits(setup.model, net, setup.x)
    log(f"ported logits: max |difference| {diff:.2e} on {len(setup.x)} images")
    agreement = projection_agreement()
    log("projections, max |step difference| against the authors': "
        + ", ".join(f"{k} {v:.1e}" for k, v in agreement.items()))
    from advbench.models.zoo import predict_labels

    rows = []
    for norm, eps in parse_runs(args.runs):
        x, y = setup.x, setup.y
        log(f"{norm} eps {eps:g}: advbench and the reference, batch by batch ...")
        ours, ours_s, ref, ref_s = run_both(setup.model, net, x, y, norm, eps, args.batch_size)
        fooled_ours = predict_labels(setup.model, ours) != y
        fooled_ref = predict_labels(setup.model, ref) != y
        both = fooled_ours & fooled_ref & setup.correct
        n_ours, n_ref = norms(x, ours, norm), norms(x, ref, norm)
        row = {
            "norm": norm, "eps": eps, "images": int(len(x)), "threads": args.threads,
            "clean_accuracy": float(setup.correct.mean()),
            "robust_accuracy": {"advbench": float(1 - fooled_ours.mean()),
                                "reference": float(1 - fooled_ref.mean())},
            "both_fool": int(both.sum()),
            "median_norm": {"advbench": float(np.median(n_ours[both])),
                            "reference": float(np.median(n_ref[both]))},
            "largest_norm": {"advbench": float(n_ours.max()), "reference": float(n_ref.max())},
            "samples_per_s": {"advbench": len(x) / ours_s, "reference": len(x) / ref_s},
            "seconds": {"advbench": ours_s, "reference": ref_s},
        }
        row["median_ratio"] = row["median_norm"]["advbench"] / row["median_norm"]["reference"]
        row["speed_ratio"] = row["samples_per_s"]["advbench"] / row["samples_per_s"]["reference"]
        rows.append(row)
        log(json.dumps(row))
    load_end = os.getloadavg()
    print(machine_line(setup.load_start, load_end) + f"; torch {torch.__version__}, "
          f"{args.threads} thread(s) each; logits agree to {diff:.1e}")
    print("| norm | eps | images | robust acc advbench / reference | both fool | median norm "
          "advbench / reference (ratio) | samples/s advbench / reference (ratio) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['norm']} | {r['eps']:g} | {r['images']} | "
              f"{r['robust_accuracy']['advbench']:.1%} / {r['robust_accuracy']['reference']:.1%}"
              f" | {r['both_fool']} | {r['median_norm']['advbench']:.4f} / "
              f"{r['median_norm']['reference']:.4f} ({r['median_ratio']:.4f}) | "
              f"{r['samples_per_s']['advbench']:.2f} / {r['samples_per_s']['reference']:.2f} "
              f"({r['speed_ratio']:.2f}x) |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "projection_agreement": agreement,
                       "logit_difference": diff, "load_start": setup.load_start,
                       "load_end": load_end}, f, indent=1)


if __name__ == "__main__":
    main()
