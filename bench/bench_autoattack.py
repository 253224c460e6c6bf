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

Chunks: a 1,000-image comparison can run as several invocations, each on a slice of the same
class-balanced order (``--limit 1000 --start 0 --count 100``, then ``--start 100``, ...); the
JSON holds per-sample results (the images' indices into the test split, the member of
advbench's ensemble that broke each image, the reference's final verdict) and counts, and

    python bench/bench_autoattack.py --merge chunk-*.json

checks that the chunks are of one configuration and do not overlap, then prints the table of
their union (counts, seconds and samples/s summed over the chunks). Each chunk is its own run:
advbench draws its randomness per image from (seed, the image's row in the chunk), so an
image's attack depends on the chunking, not only on the seed (the reference draws from
torch's global generator either way).
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

__import__("advbench")  # its TensorFlow environment defaults, before TensorFlow loads

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


#: The fields of a run that chunks to be merged must share.
CONFIGURATION = ("model", "dataset", "limit", "norm", "eps", "version", "seed", "threads",
                 "batch_size", "members")


def counts(after: dict[str, float], images: int) -> dict[str, int]:
    """Robust accuracies (fractions of ``images``) as image counts; exact, as both sides'
    fractions are counts over ``images`` (the reference's log rounds to 0.01%)."""
    return {name: int(round(value * images)) for name, value in after.items()}


def merge(paths: list[str]) -> dict[str, Any]:
    """The union of the chunks' JSON files (``--json`` of runs with ``--start``/``--count``):
    counts and seconds summed, per-sample arrays concatenated in image order. ValueError when
    the chunks differ in configuration (``CONFIGURATION``) or share an image."""
    runs = [json.loads(Path(path).read_text()) for path in paths]
    first = runs[0]
    for path, run in zip(paths, runs):
        if "indices" not in run:
            raise ValueError(f"{path} has no per-sample results (a run before --start); "
                             "rerun it")
        for key in CONFIGURATION:
            if run.get(key) != first.get(key):
                raise ValueError(f"{path}: {key} {run.get(key)!r} differs from {paths[0]}'s "
                                 f"{first.get(key)!r}; merge runs of one configuration")
    indices = np.concatenate([run["indices"] for run in runs])
    if len(np.unique(indices)) != len(indices):
        raise ValueError("the chunks share images (their --start/--count overlap); merge "
                         "disjoint chunks")
    merged: dict[str, Any] = {key: first[key] for key in CONFIGURATION}
    merged["chunks"] = [{"path": path, "start": run["start"], "images": run["images"],
                         "load_start": run["load_start"], "load_end": run.get("load_end")}
                        for path, run in zip(paths, runs)]
    merged["images"] = int(len(indices))
    order = np.argsort(indices, kind="stable")
    merged["indices"] = indices[order].tolist()
    for side in ("advbench", "reference"):
        if any(side not in run for run in runs):
            continue
        total: dict[str, Any] = {"counts": {}, "seconds": {}, "entering": {},
                                 "total_seconds": 0.0}
        for run in runs:
            part = run[side]
            for key in ("counts", "seconds", "entering"):
                for name, value in part.get(key, {}).items():
                    total[key][name] = total[key].get(name, 0) + value
            total["total_seconds"] += part["total_seconds"]
        total["after"] = {name: count / len(indices) for name, count in total["counts"].items()}
        per_sample = "broken_by" if side == "advbench" else "robust"
        total[per_sample] = np.concatenate([run[side][per_sample] for run in runs])[
            order].tolist()
        merged[side] = total
    return merged


def table(result: dict[str, Any]) -> str:
    """The comparison as docs/performance.md prints it: robust % after each member, each
    member's seconds (on the samples entering it) and samples/s, both sides."""
    ours, theirs = result["advbench"], result.get("reference", {})
    lines = ["| after | advbench robust % | reference robust % | advbench s | reference s | "
             "advbench samples/s | reference samples/s |", "|---|---|---|---|---|---|---|"]

    def pct(side: dict, name: str) -> str:
        return f"{100 * side['after'][name]:.1f}" if name in side.get("after", {}) else "-"

    lines.append(f"| clean | {pct(ours, 'clean')} | {pct(theirs, 'clean')} | | | | |")
    for name in result["members"]:
        cells = []
        for side in (ours, theirs):
            sec = side.get("seconds", {}).get(name)
            n = side.get("entering", {}).get(name)
            cells.append("" if sec is None else f"{sec:.1f}" + (f" ({n})" if n else ""))
        rates = []
        for side in (ours, theirs):
            sec = side.get("seconds", {}).get(name)
            n = side.get("entering", {}).get(name)
            rates.append(f"{n / sec:.2f}" if sec and n else "")
        lines.append(f"| {name} | {pct(ours, name)} | {pct(theirs, name)} | {cells[0]} | "
                     f"{cells[1]} | {rates[0]} | {rates[1]} |")
    images = result["images"]
    total = [side.get("total_seconds") for side in (ours, theirs)]
    lines.append("| ensemble | **{}** | **{}** | {} | {} | {} | {} |".format(
        pct(ours, result["members"][-1]), pct(theirs, result["members"][-1]) if theirs else "-",
        *(f"{t:.1f}" if t else "" for t in total),
        *(f"{images / t:.2f}" if t else "" for t in total)))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="Keras model file (.h5 / .keras)")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--data-dir", default=os.environ.get("ADVBENCH_DATA"))
    parser.add_argument("--limit", type=int, default=1000, help="test images (class-balanced, "
                        "advbench.data.load(limit=..., seed=0))")
    parser.add_argument("--start", type=int, default=0,
                        help="first image of this chunk in the --limit images' order")
    parser.add_argument("--count", type=int, default=None,
                        help="images of this chunk (default: all from --start on)")
    parser.add_argument("--norm", choices=sorted(REFERENCE_NORMS), default="linf")
    parser.add_argument("--eps", type=str, default="0.3", help="a number or a fraction, 8/255")
    parser.add_argument("--version", default="standard")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=500,
                        help="images per call, both (the reference's bs)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reference", help="folder holding autoattack/")
    parser.add_argument("--skip-reference", action="store_true",
                        help="run advbench only (the reference's numbers from another run)")
    parser.add_argument("--json", default=None)
    parser.add_argument("--merge", nargs="+", metavar="JSON",
                        help="print (and with --json write) the union of chunks' JSON files "
                             "instead of running")
    args = parser.parse_args()
    if args.merge:
        try:
            merged = merge(args.merge)
        except ValueError as error:
            parser.exit(1, f"error: {error}\n")
        print(table(merged))
        if args.json:
            Path(args.json).write_text(json.dumps(merged, indent=1))
        return
    if args.model is None or (args.reference is None and not args.skip_reference):
        parser.error("--model and --reference are required (--reference unless "
                     "--skip-reference) when not merging")
    if args.count is not None and args.count < 1:
        parser.error(f"--count must be >= 1, got {args.count}")
    eps = (float(args.eps.split("/")[0]) / float(args.eps.split("/")[1]) if "/" in args.eps
           else float(args.eps))
    if args.reference:
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
    log(f"load average at start: {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f}; "
        f"TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS')}")
    model, _ = load_model(args.model)
    x, y, indices = data.load(args.dataset, "test", data_dir=args.data_dir, limit=args.limit,
                              seed=0, start=args.start)
    if args.count is not None:
        x, y, indices = x[:args.count], y[:args.count], indices[:args.count]
    net = port_keras_model(model)
    logit_gap = check_logits(model, net, x)
    log(f"{len(x)} images (from {args.start} of {args.limit}); ported logits within "
        f"{logit_gap:.2e} of Keras'")
    if not args.skip_reference:
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
    broken_by = []
    for begin in range(0, len(x), args.batch_size):
        batch = slice(begin, begin + args.batch_size)
        start = time.perf_counter()
        out = attack(model, x[batch], y[batch], seed=args.seed)
        ours_total += time.perf_counter() - start
        broken_by.append(out.extras["broken_by"])
        table_batch = robust_accuracy_by_attack(out.extras["broken_by"], names)
        for key, value in table_batch.items():
            ours_after[key] = ours_after.get(key, 0.0) + value * len(x[batch]) / len(x)
        delta = np.abs(out.x_adv.astype(np.float64) - x[batch]).reshape(len(out.x_adv), -1)
        size = {"linf": delta.max(1), "l2": np.sqrt((delta ** 2).sum(1)),
                "l1": delta.sum(1)}[args.norm]
        if size.max() > eps or out.x_adv.min() < 0 or out.x_adv.max() > 1:
            raise SystemExit(f"advbench's x_adv leaves the ball or the box: {size.max()}")
    log(f"advbench: {ours_after} in {ours_total:.1f} s")

    result: dict[str, Any] = {
        "model": args.model, "dataset": args.dataset, "limit": args.limit,
        "start": args.start, "images": len(x), "norm": args.norm,
        "eps": eps, "version": args.version, "seed": args.seed, "threads": args.threads,
        "batch_size": args.batch_size, "members": list(names), "skipped": attack.skipped,
        "logit_gap": logit_gap, "load_start": load_start,
        "indices": indices.tolist(),
        "advbench": {"after": ours_after, "counts": counts(ours_after, len(x)),
                     "seconds": seconds, "entering": entering, "total_seconds": ours_total,
                     "broken_by": np.concatenate(broken_by).tolist()},
        "tensorflow": tf.__version__, "torch": torch.__version__,
        "tf_enable_onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
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
            robust = (net(x_ref).argmax(1) == yt).numpy()
        ref_after = {"clean": clean, **after}
        # Members the reference did not run (none left) leave the robust accuracy as it was.
        for name in names:
            ref_after.setdefault(name, list(ref_after.values())[-1])
        ref_counts = counts(ref_after, len(x))
        # The samples entering a member: those still robust after the one before it.
        ref_entering = {name: ref_counts[before] for before, name in zip(["clean", *names], names)
                        if name in ref_seconds}
        result["reference"] = {"after": ref_after, "counts": ref_counts,
                               "final": float(robust.mean()), "seconds": ref_seconds,
                               "entering": ref_entering, "total_seconds": ref_total,
                               "robust": robust.tolist()}
        log(f"reference: {result['reference']['after']} in {ref_total:.1f} s")
    result["load_end"] = os.getloadavg()
    log(f"load average at end: {' '.join(f'{v:.2f}' for v in result['load_end'])}")
    print(table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
