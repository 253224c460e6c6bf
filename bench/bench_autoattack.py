"""advbench's AutoAttack against the authors' (fra31/auto-attack, PyTorch) on the same weights,
images, norm and eps: robust accuracy after each member and after the ensemble, and the
seconds (samples/s) of each member and of the ensemble, at one thread count, one after the
other in one process.

The Keras model is ported to PyTorch by ``torch_port.py`` (logits checked to 1e-4 on the
images first). The reference is the authors' source, not a pip package: put its checkout on
the path with ``--reference DIR`` (the folder holding ``autoattack/``), e.g.

    git --git-dir=<mirror of fra31/auto-attack> archive HEAD | tar -x -C /tmp/autoattack_ref
    flock /tmp/advbench-heavy.lock python bench/bench_autoattack.py \\
        --model results/mnist/demo/models/mnist-cnn.h5 --norm linf --eps 0.3 --limit 1000 \\
        --reference /tmp/autoattack_ref --json linf-0.3.json

Both ensembles are the version's (``--version``) as the authors set it; a member advbench
does not have (``AutoAttack.skipped``) is left out of the reference's run too, so the rows
compare member by member, and the output says which. The members' versions and settings are
checked equal to the reference's objects first (``reference_members``).

Timing: a member's seconds are its wall time inside its ensemble (advbench: its ``run_on``;
the reference: the differences of its own "total time" log), on the samples still robust
when it starts; samples/s = those samples / seconds. The load average is logged beside.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import sys
import time
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

#: advbench's norm names -> the reference's.
REFERENCE_NORMS = {"linf": "Linf", "l2": "L2", "l1": "L1"}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def reference_autoattack(model: Any, norm: str, eps: float, version: str, seed: int = 0,
                         log_path: str | None = None) -> Any:
    """The authors' ``AutoAttack`` object (the reference must be importable), on the CPU."""
    from autoattack import AutoAttack as Reference

    with redirect_stdout(io.StringIO()):  # set_version prints its settings
        return Reference(model, norm=REFERENCE_NORMS[norm], eps=eps, version=version,
                         seed=seed, device="cpu", verbose=log_path is not None,
                         log_path=log_path)


def reference_members(version: str, norm: str) -> tuple[tuple[str, dict[str, Any]], ...]:
    """The reference's members of ``version`` at ``norm``, in order, each with its settings
    under advbench's parameter names (as the authors' ``run_standard_evaluation`` runs it:
    FAB-T with one restart)."""
    import torch

    aa = reference_autoattack(torch.nn.Identity(), norm, 1.0, version)
    members = []
    for name in aa.attacks_to_run:
        if name in ("apgd-ce", "apgd-dlr", "apgd-t"):
            obj = aa.apgd_targeted if name == "apgd-t" else aa.apgd
            settings = {"n_iter": obj.n_iter, "rho": obj.thr_decr, "n_restarts": obj.n_restarts,
                        "eot_iter": obj.eot_iter, "use_largereps": obj.use_largereps}
            if name == "apgd-t":
                settings["n_target_classes"] = obj.n_target_classes
        elif name in ("fab", "fab-t"):
            obj = aa.fab
            settings = {"n_iter": obj.n_iter, "alpha_max": obj.alpha_max, "eta": obj.eta,
                        "beta": obj.beta, "n_restarts": 1 if name == "fab-t" else obj.n_restarts}
            if name == "fab-t":
                settings["n_target_classes"] = obj.n_target_classes
        elif name == "square":
            obj = aa.square
            settings = {"n_queries": obj.n_queries, "p_init": obj.p_init,
                        "n_restarts": obj.n_restarts, "loss": obj.loss,
                        "rescale_schedule": obj.rescale_schedule}
        else:
            raise ValueError(f"unknown reference member {name!r}")
        members.append((name, settings))
    return tuple(members)


def check_members(version: str, norm: str) -> None:
    """advbench's members of ``version`` at ``norm`` equal the reference's: names, order,
    and every setting the reference has (those advbench runs: from the built attack; those
    it skips: from ``VERSION_MEMBERS``). ValueError naming the first difference."""
    from advbench.attacks.autoattack import VERSION_MEMBERS, AutoAttack

    ours = VERSION_MEMBERS[version][norm]
    theirs = reference_members(version, norm)
    if [n for n, _ in ours] != [n for n, _ in theirs]:
        raise ValueError(f"{version} {norm}: members {[n for n, _ in ours]} != the "
                         f"reference's {[n for n, _ in theirs]}")
    built = {a.name: a.params() for a in AutoAttack(eps=1.0, norm=norm, version=version).attacks}
    for (name, settings), (_, reference) in zip(ours, theirs):
        have = built.get(name, settings)
        for key, value in reference.items():
            if key in have and have[key] != value:
                raise ValueError(f"{version} {norm} {name}: {key} {have[key]!r} != the "
                                 f"reference's {value!r}")
            if key not in have and name in built:
                raise ValueError(f"{version} {norm} {name}: advbench has no {key} "
                                 f"(the reference's {value!r})")


def parse_reference_log(text: str) -> tuple[float, dict[str, float], dict[str, float]]:
    """(clean accuracy, robust accuracy after each member, seconds of each member) from the
    reference's log lines ("initial accuracy: 98.90%", "robust accuracy after APGD-CE:
    4.20% (total time 12.3 s)")."""
    clean = float(re.search(r"initial accuracy: ([\d.]+)%", text).group(1)) / 100
    after: dict[str, float] = {}
    seconds: dict[str, float] = {}
    total = 0.0
    for name, acc, t in re.findall(
            r"robust accuracy after ([A-Z0-9-]+): ([\d.]+)% \(total time ([\d.]+) s\)", text):
        after[name.lower()] = float(acc) / 100
        seconds[name.lower()] = float(t) - total
        total = float(t)
    return clean, after, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="Keras model file (.h5 / .keras)")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--data-dir", default=os.environ.get("ADVBENCH_DATA"))
    parser.add_argument("--limit", type=int, default=1000, help="test images (class-balanced, "
                        "advbench.data.load(limit=..., seed=0))")
    parser.add_argument("--norm", choices=sorted(REFERENCE_NORMS), default="linf")
    parser.add_argument("--eps", type=str, default="0.3", help="a number or a fraction, 8/255")
    parser.add_argument("--version", default="standard")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=500,
                        help="images per call, both (the reference's bs)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reference", required=True, help="folder holding autoattack/")
    parser.add_argument("--skip-reference", action="store_true",
                        help="run advbench only (the reference's numbers from another run)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    eps = (float(args.eps.split("/")[0]) / float(args.eps.split("/")[1]) if "/" in args.eps
           else float(args.eps))
    sys.path.insert(0, str(Path(args.reference).resolve()))

    import tensorflow as tf
    import torch

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    torch.set_num_threads(args.threads)
    from torch_port import check_logits, port_keras_model

    from advbench import data
    from advbench.run.artifacts import load_model
    from advbench.attacks.autoattack import AutoAttack, robust_accuracy_by_attack

    load_start = os.getloadavg()
    log(f"load average at start: {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f}")
    model, _ = load_model(args.model)
    x, y, _ = data.load(args.dataset, "test", data_dir=args.data_dir, limit=args.limit, seed=0)
    net = port_keras_model(model)
    logit_gap = check_logits(model, net, x)
    log(f"{len(x)} images; ported logits within {logit_gap:.2e} of Keras'")
    check_members(args.version, args.norm)
    log(f"{args.version} {args.norm}: advbench's members and settings equal the reference's")

    attack = AutoAttack(eps=eps, norm=args.norm, version=args.version)
    names = attack.attack_names
    if attack.skipped:
        log(f"not in advbench, left out of both runs: {attack.skipped}")
    seconds: dict[str, float] = {}
    entering: dict[str, int] = {}
    for member in attack.attacks:
        def timed(model, x, y, *, _run=member.run_on, _name=member.name, **kwargs):
            start = time.perf_counter()
            result = _run(model, x, y, **kwargs)
            seconds[_name] = seconds.get(_name, 0.0) + time.perf_counter() - start
            entering[_name] = entering.get(_name, 0) + len(x)
            return result
        member.run_on = timed  # type: ignore[method-assign]
    ours_after: dict[str, float] = {}
    ours_total = 0.0
    for begin in range(0, len(x), args.batch_size):
        batch = slice(begin, begin + args.batch_size)
        start = time.perf_counter()
        out = attack(model, x[batch], y[batch], seed=args.seed)
        ours_total += time.perf_counter() - start
        table = robust_accuracy_by_attack(out.extras["broken_by"], names)
        for key, value in table.items():
            ours_after[key] = ours_after.get(key, 0.0) + value * len(x[batch]) / len(x)
        delta = np.abs(out.x_adv.astype(np.float64) - x[batch]).reshape(len(out.x_adv), -1)
        size = {"linf": delta.max(1), "l2": np.sqrt((delta ** 2).sum(1)),
                "l1": delta.sum(1)}[args.norm]
        if size.max() > eps or out.x_adv.min() < 0 or out.x_adv.max() > 1:
            raise SystemExit(f"advbench's x_adv leaves the ball or the box: {size.max()}")
    log(f"advbench: {ours_after} in {ours_total:.1f} s")

    result: dict[str, Any] = {
        "model": args.model, "dataset": args.dataset, "images": len(x), "norm": args.norm,
        "eps": eps, "version": args.version, "seed": args.seed, "threads": args.threads,
        "batch_size": args.batch_size, "members": list(names), "skipped": attack.skipped,
        "logit_gap": logit_gap, "load_start": load_start,
        "advbench": {"after": ours_after, "seconds": seconds, "entering": entering,
                     "total_seconds": ours_total},
        "tensorflow": tf.__version__, "torch": torch.__version__,
    }
    if not args.skip_reference:
        log_path = Path(args.json or "bench_autoattack").with_suffix(".reference.log")
        log_path.unlink(missing_ok=True)
        reference = reference_autoattack(net, args.norm, eps, args.version, seed=args.seed,
                                         log_path=str(log_path))
        reference.attacks_to_run = [n for n in reference.attacks_to_run if n in names]
        xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
        yt = torch.from_numpy(y.astype(np.int64))
        start = time.perf_counter()
        with redirect_stdout(io.StringIO()):
            x_ref = reference.run_standard_evaluation(xt, yt, bs=args.batch_size)
        ref_total = time.perf_counter() - start
        clean, after, ref_seconds = parse_reference_log(log_path.read_text())
        with torch.no_grad():
            final = float((net(x_ref).argmax(1) == yt).float().mean())
        result["reference"] = {"after": {"clean": clean, **after}, "final": final,
                               "seconds": ref_seconds, "total_seconds": ref_total}
        log(f"reference: {result['reference']['after']} in {ref_total:.1f} s")
    result["load_end"] = os.getloadavg()
    log(f"load average at end: {' '.join(f'{v:.2f}' for v in result['load_end'])}")
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
