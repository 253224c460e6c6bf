"""Fast Minimum-Norm (fmn) side by side with Foolbox 3.3.4's FMN on the same MNIST model and
images, in L0, L1, L2 and L-inf: median perturbation norm on the samples both fool, success
rates and samples/s.

One process, one model (``--model``, e.g. the demo CNN ``mnist-cnn.h5``), the first
``--limit`` MNIST test images, for each norm of ``--norms``:

    advbench  FMN(norm=N, steps=S)                 alpha 1 -> 0.01, gamma 0.05 -> 0.001
    Foolbox   L0/L1/L2/LInfFMNAttack(steps=S)      the same defaults, on
              foolbox.TensorFlowModel(model, bounds=(0, 1)): the same Keras model

Both attack each image off the model's clean prediction (advbench's default start for minimal
attacks; Foolbox's ``Misclassification`` of those labels), untargeted, from x itself (no
starting points), batch by batch at ``--batch-size``. Success is the prediction changing;
norms are measured on x_adv - x in float64, L0 as the features changed by more than 1e-6
(``advbench.run.metrics``). Each attack is timed once after a warm-up on two images; both run in
this process with TensorFlow's one thread pool, so the thread count is the same, and the load
average is printed before and after each norm.

With ``--authors FILE`` (the authors' ``src/attacks/fmn.py`` of
pralab/Fast-Minimum-Norm-FMN-Attack, which needs PyTorch) and ``bench/torch_port.py`` on the
path, their implementation runs too, on the model ported to PyTorch (logits checked to 1e-4).

Usage:
    python bench/bench_fmn.py --model mnist-cnn.h5 [--limit 1000] [--steps 100]
        [--norms l0,l1,l2,linf] [--batch-size 250] [--authors fmn.py] [--json out.json]

Needs the optional extra: ``pip install -e '.[bench]'`` (foolbox).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import base_parser, log, machine_line, run_ours, start, warm_up  # noqa: E402

import numpy as np  # noqa: E402
__import__("advbench")  # its TensorFlow environment defaults, before TensorFlow loads
import tensorflow as tf  # noqa: E402

from advbench.attacks.fmn import FMN  # noqa: E402
from advbench.models.zoo import predict_labels  # noqa: E402
from advbench.run.metrics import L0_TOLERANCE  # noqa: E402

FOOLBOX_CLASSES = {"l0": "L0FMNAttack", "l1": "L1FMNAttack", "l2": "L2FMNAttack",
                   "linf": "LInfFMNAttack"}


def sizes(x: np.ndarray, x_adv: np.ndarray, norm: str) -> np.ndarray:
    diff = (x_adv.astype(np.float64) - x.astype(np.float64)).reshape(len(x), -1)
    if norm == "l0":
        return np.count_nonzero(np.abs(diff) > L0_TOLERANCE, axis=1).astype(np.float64)
    return np.linalg.norm(diff, ord={"l1": 1, "l2": 2, "linf": np.inf}[norm], axis=1)


def run_batches(attack, x, labels, batch_size: int) -> tuple[np.ndarray, float]:
    """A reference attack's x_adv over the set, batch by batch; (x_adv, seconds)."""
    parts = []
    started = time.perf_counter()
    for i in range(0, len(x), batch_size):
        parts.append(np.asarray(attack(x[i:i + batch_size], labels[i:i + batch_size]),
                                np.float32))
    return np.concatenate(parts), time.perf_counter() - started


def foolbox_attack(model, norm: str, steps: int):
    import foolbox as fb

    fmodel = fb.TensorFlowModel(model, bounds=(0.0, 1.0))
    attack = getattr(fb.attacks, FOOLBOX_CLASSES[norm])(steps=steps)

    def run(x, labels):
        _, clipped, _ = attack(fmodel, tf.constant(x), tf.constant(labels, tf.int64),
                               epsilons=None)
        return clipped.numpy()

    return run


def authors_attack(model, norm: str, steps: int, path: str, x_check: np.ndarray):
    """The authors' FMN on the model ported to PyTorch (NCHW), returning NHWC images."""
    import foolbox as fb
    import torch
    from torch_port import check_logits, port_keras_model

    spec = importlib.util.spec_from_file_location("fmn_authors", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    net = port_keras_model(model)
    log(f"  authors' port: max |logit difference| {check_logits(model, net, x_check):.2g}")
    fmodel = fb.PyTorchModel(net, bounds=(0.0, 1.0))
    attack = getattr(module, FOOLBOX_CLASSES[norm])(steps=steps)

    def run(x, labels):
        xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
        _, clipped, _ = attack(fmodel, xt, torch.from_numpy(labels.astype(np.int64)),
                               epsilons=None)
        return clipped.detach().numpy().transpose(0, 2, 3, 1)

    return run


def compare(name: str, ours: dict, ref: dict, x, norm: str) -> dict:
    both = ours["fooled"] & ref["fooled"]
    ours_median = float(np.median(ours["size"][both])) if both.any() else float("nan")
    ref_median = float(np.median(ref["size"][both])) if both.any() else float("nan")
    return {"reference": name, "both_fooled": int(both.sum()),
            "median_ours": ours_median, "median_reference": ref_median,
            "median_ratio": ours_median / ref_median if ref_median else float("nan"),
            "success_ours": float(ours["fooled"].mean()),
            "success_reference": float(ref["fooled"].mean()),
            "samples_per_s_ours": ours["rate"], "samples_per_s_reference": ref["rate"],
            "speedup": ours["rate"] / ref["rate"]}


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0], "MNIST test images attacked (default 1000)",
                         "100 images, 20 steps")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--norms", default="l0,l1,l2,linf")
    parser.add_argument("--authors", default=None,
                        help="the authors' src/attacks/fmn.py (needs torch and torch_port)")
    args = parser.parse_args()
    if args.quick:
        args.limit, args.steps = 100, 20
    setup = start(args, train_limit=None)
    model, x = setup.model, setup.x
    labels = predict_labels(model, x).astype(np.int64)  # off the clean prediction
    log(f"TensorFlow threads: intra {tf.config.threading.get_intra_op_parallelism_threads()} "
        f"inter {tf.config.threading.get_inter_op_parallelism_threads()} (0: all cores)")
    results = []
    for norm in args.norms.split(","):
        log(f"{norm}: load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
        runs = {}
        ours = FMN(norm=norm, steps=args.steps)
        warm_up(ours, model, x, labels)
        x_adv, _, seconds = run_ours(ours, model, x, labels, None, args.batch_size)
        runs["advbench"] = (x_adv, seconds)
        refs = {"foolbox 3.3.4": foolbox_attack(model, norm, args.steps)}
        if args.authors:
            refs["authors"] = authors_attack(model, norm, args.steps, args.authors, x[:100])
        for name, attack in refs.items():
            attack(x[:2], labels[:2])  # warm-up
            runs[name] = run_batches(attack, x, labels, args.batch_size)
        measured = {}
        for name, (x_adv, seconds) in runs.items():
            assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0, name
            measured[name] = {"fooled": predict_labels(model, x_adv) != labels,
                              "size": sizes(x, x_adv, norm), "rate": len(x) / seconds}
            log(f"  {name}: {len(x) / seconds:.1f} samples/s, success "
                f"{measured[name]['fooled'].mean():.4f}")
        for name in refs:
            row = {"norm": norm, **compare(name, measured["advbench"], measured[name], x, norm)}
            results.append(row)
            log(f"  vs {name}: median {row['median_ours']:.4g} vs {row['median_reference']:.4g}"
                f" (ratio {row['median_ratio']:.4f}) on {row['both_fooled']} both fool; "
                f"success {row['success_ours']:.4f} vs {row['success_reference']:.4f}; "
                f"{row['samples_per_s_ours']:.1f} vs {row['samples_per_s_reference']:.1f} "
                f"samples/s ({row['speedup']:.2f}x)")
    load_end = os.getloadavg()
    print(machine_line(setup.load_start, load_end))
    print(f"{len(x)} MNIST test images, {args.steps} steps, batch {args.batch_size}, "
          "untargeted off the clean prediction, from x")
    print("| norm | reference | both fool | median ours | median reference | ratio | "
          "success ours | success reference | samples/s ours | samples/s reference | speed-up |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['norm']} | {r['reference']} | {r['both_fooled']} | {r['median_ours']:.4g} | "
              f"{r['median_reference']:.4g} | {r['median_ratio']:.4f} | {r['success_ours']:.1%} | "
              f"{r['success_reference']:.1%} | {r['samples_per_s_ours']:.1f} | "
              f"{r['samples_per_s_reference']:.1f} | {r['speedup']:.2f}x |")
    if args.json:
        Path(args.json).write_text(json.dumps({"limit": len(x), "steps": args.steps,
                                               "results": results}, indent=2))


if __name__ == "__main__":
    main()
