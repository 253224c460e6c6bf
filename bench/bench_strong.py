"""AutoAttack's attacks side by side with IBM ART 1.20.1 on the paper's MNIST CNN: robust
accuracy and speed.

One process, one trained CNN (the model of ``bench_attacks.py``), the first ``--limit`` MNIST
test images, L-inf, each eps of ``--eps``:

    attack      advbench                              ART 1.20.1 (TensorFlowV2Classifier)
    apgd-ce     APGDCrossEntropy(eps): 100 steps,     AutoProjectedGradientDescent(eps,
                1 restart                             eps_step=2 eps, max_iter=100,
                                                      nb_random_init=1, loss_type="cross_entropy")
    square      Square(eps): 5,000 queries,           SquareAttack(eps, max_iter=5000,
                p_init 0.8, 1 restart                 p_init=0.8, nb_restarts=1)
    autoattack  AutoAttack(eps), standard version:    AutoAttack(eps, attacks=[the APGD-CE
                APGD-CE, APGD-T (9 targets), Square   above, the same on loss_type=
                                                      "difference_logits_ratio", the Square
                                                      above])

ART's AutoAttack gets the standard version's budget as far as ART allows: ART has no APGD-T
(its targeted mode runs every attack against every class), so its second attack is APGD on
the untargeted DLR loss, as in AutoAttack's "plus" version. ART's default AutoAttack (5
restarts of each APGD, DeepFool, 5 restarts of Square) is much slower; ``--art-default``
adds it. Both libraries run at their own defaults otherwise: ART at its batch sizes (32 for
APGD and AutoAttack, 128 for Square), ours at ``--batch-size`` (250).

ART's APGD runs on all ``--limit`` images; ART's Square and AutoAttack spend up to 5,000
queries on every robust sample and run on the first ``--art-limit`` images. Ours run on the
images ART ran on (robust accuracy and speed compared on the same images: the "vs ART"
ratio) and on all ``--limit`` images. Robust accuracy is the fraction of the images still
classified correctly after the attack (the clean errors count as broken). Every attack is
timed once, after a warm-up on two images; the CPU may be shared, so the load average at
the start and the end is printed with the table.

Usage:
    python bench/bench_strong.py [--model PATH] [--limit 1000] [--art-limit 100]
        [--eps 0.1,0.3] [--attacks apgd-ce,square,autoattack] [--art-default]
        [--batch-size 250] [--quick] [--json out.json]

Needs the optional extra: ``pip install -e '.[bench]'`` (adversarial-robustness-toolbox).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import (art_classifier, base_parser, log, machine_line, run_ours,  # noqa: E402
                      start, warm_up)

import numpy as np  # noqa: E402

from advbench.attacks.apgd_ce import APGDCrossEntropy  # noqa: E402
from advbench.attacks.autoattack import AutoAttack, robust_accuracy_by_attack  # noqa: E402
from advbench.attacks.square import Square  # noqa: E402
from advbench.models.zoo import predict_labels  # noqa: E402

ALL_ATTACKS = ("apgd-ce", "square", "autoattack")
#: ART attacks that spend thousands of queries per robust sample: run on --art-limit images.
SLOW_ATTACKS = ("square", "autoattack")


def art_attacks(name: str, classifier, eps: float, quick: bool, default: bool):
    """ART's attack(s) for ``name``: label -> attack object."""
    from art.attacks.evasion import AutoAttack as ArtAutoAttack
    from art.attacks.evasion import AutoProjectedGradientDescent, SquareAttack

    iters, queries = (10, 100) if quick else (100, 5000)

    def apgd(loss_type):
        return AutoProjectedGradientDescent(
            classifier, norm=np.inf, eps=eps, eps_step=2 * eps, max_iter=iters,
            nb_random_init=1, loss_type=loss_type, verbose=False)

    def square():
        return SquareAttack(classifier, norm=np.inf, eps=eps, max_iter=queries, p_init=0.8,
                            nb_restarts=1, verbose=False)

    if name == "apgd-ce":
        return {"ART 1.20.1": apgd("cross_entropy")}
    if name == "square":
        return {"ART 1.20.1": square()}
    if name == "autoattack":
        attacks = {"ART 1.20.1, standard budget": ArtAutoAttack(
            classifier, norm=np.inf, eps=eps, eps_step=2 * eps,
            attacks=[apgd("cross_entropy"), apgd("difference_logits_ratio"), square()])}
        if default:
            attacks["ART 1.20.1, its defaults"] = ArtAutoAttack(classifier, norm=np.inf,
                                                                eps=eps, eps_step=2 * eps)
        return attacks
    raise ValueError(name)


def our_attack(name: str, eps: float, quick: bool):
    iters, queries = (10, 100) if quick else (100, 5000)
    if name == "apgd-ce":
        return APGDCrossEntropy(eps=eps, n_iter=iters)
    if name == "square":
        return Square(eps=eps, n_queries=queries)
    if name == "autoattack":
        return AutoAttack(eps=eps, n_iter=iters, n_queries=queries)
    raise ValueError(name)


def attack_list(text: str) -> list[str]:
    """``--attacks``: a comma list of names out of ALL_ATTACKS (argparse reports the error)."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = sorted(set(names) - set(ALL_ATTACKS))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown attack(s) {', '.join(unknown)}; choose "
                                         f"from {', '.join(ALL_ATTACKS)}")
    return names


def robust_accuracy(model, x, y, x_adv) -> float:
    return float(np.mean(predict_labels(model, x_adv) == y))


def largest_linf(x, x_adv) -> float:
    return float(np.abs(x_adv.astype(np.float64) - x).reshape(len(x), -1).max())


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0],
                         "first N MNIST test images for our attacks and ART's APGD",
                         "smoke check: 20 images, ART on 4, 10 steps and 100 queries")
    parser.add_argument("--art-limit", type=int, default=100,
                        help="first N images for ART's square and autoattack")
    parser.add_argument("--eps", default="0.1,0.3", help="comma list of L-inf budgets")
    parser.add_argument("--attacks", default=list(ALL_ATTACKS), type=attack_list,
                        help=f"comma list out of {','.join(ALL_ATTACKS)}")
    parser.add_argument("--art-default", action="store_true",
                        help="also run ART's AutoAttack at its default attacks (slow)")
    args = parser.parse_args()
    attacks = args.attacks
    eps_values = [float(e) for e in args.eps.split(",") if e.strip()]
    train_limit = None
    if args.quick:
        args.limit, args.art_limit, args.batch_size, train_limit = 20, 4, 20, 2000
    art_limit = min(args.art_limit, args.limit)
    if importlib.util.find_spec("art") is None:
        sys.exit("ART is not installed: pip install -e '.[bench]' (adversarial-robustness-toolbox)")

    setup = start(args, train_limit)
    model, x, y, load_start = setup.model, setup.x, setup.y, setup.load_start
    clean = float(setup.correct.mean())
    classifier, _ = art_classifier(model)

    rows, tables = [], {}
    for eps in eps_values:
        for name in attacks:
            n_art = art_limit if name in SLOW_ATTACKS else len(x)
            ours = our_attack(name, eps, args.quick)
            warm_up(ours, model, x, y)
            for label, art in art_attacks(name, classifier, eps, args.quick,
                                          args.art_default).items():
                art.generate(x[:2], y=np.eye(10, dtype=np.float32)[y[:2]])
                log(f"eps {eps} {name}: {label} on {n_art} images ...")
                started = time.perf_counter()
                art_adv = art.generate(x[:n_art], y=np.eye(10, dtype=np.float32)[y[:n_art]])
                seconds = time.perf_counter() - started
                art_adv = art_adv.astype(np.float32)
                art_row = {"eps": eps, "attack": name, "library": label, "n": n_art,
                           "seconds": seconds, "rate": n_art / seconds,
                           "robust_accuracy": robust_accuracy(model, x[:n_art], y[:n_art], art_adv),
                           "linf": largest_linf(x[:n_art], art_adv)}
                rows.append(art_row)
                log(f"  {label}: robust accuracy {art_row['robust_accuracy']:.3f}, "
                    f"{art_row['rate']:.1f}/s")
            art_rows = [r for r in rows if r["eps"] == eps and r["attack"] == name]
            reference = art_rows[0]
            for n in sorted({n_art, len(x)}):
                log(f"eps {eps} {name}: advbench on {n} images ...")
                adv, extras, seconds = run_ours(ours, model, x[:n], y[:n], None, args.batch_size)
                row = {"eps": eps, "attack": name, "library": "advbench", "n": n,
                       "seconds": seconds, "rate": n / seconds,
                       "robust_accuracy": robust_accuracy(model, x[:n], y[:n], adv),
                       "linf": largest_linf(x[:n], adv)}
                if n == n_art:
                    row["vs_art"] = {r["library"]: row["rate"] / r["rate"] for r in art_rows}
                    row["robust_accuracy_minus_art"] = (row["robust_accuracy"]
                                                        - reference["robust_accuracy"])
                if name == "autoattack":
                    tables[(eps, n)] = robust_accuracy_by_attack(extras["broken_by"],
                                                                 ours.attack_names)
                rows.append(row)
                log(f"  advbench: robust accuracy {row['robust_accuracy']:.3f}, "
                    f"{row['rate']:.1f}/s")
    load_end = os.getloadavg()
    print_report(rows, tables, args, art_limit, clean, load_start, load_end)
    if args.json:
        Path(args.json).write_text(json.dumps({
            "load_average_start": load_start, "load_average_end": load_end,
            "clean_accuracy": clean, "rows": rows,
            "autoattack_tables": {f"eps={e} n={n}": t for (e, n), t in tables.items()}},
            indent=2, default=float))


def print_report(rows, tables, args, art_limit, clean, load_start, load_end):
    import art

    print(f"advbench vs ART {art.__version__}, L-inf: paper's MNIST CNN trained 1 epoch, first "
          f"{args.limit} MNIST test images (clean accuracy {clean:.1%}); ART's square and "
          f"autoattack on the first {art_limit}.")
    print(f"{machine_line(load_start, load_end)}; our batch size {args.batch_size}, ART's "
          f"defaults.")
    print()
    print("| eps | attack | library | images | robust accuracy | samples/s | vs ART | "
          "largest L-inf |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        ratio = row.get("vs_art")
        ratio_text = ("1" if row["library"] != "advbench" else "" if ratio is None else
                      ", ".join(f"**{v:.1f}x**" for v in ratio.values()))
        delta = row.get("robust_accuracy_minus_art")
        accuracy = f"{row['robust_accuracy']:.1%}"
        if delta is not None:
            accuracy += f" ({delta * 100:+.1f} pt)"
        print(f"| {row['eps']:g} | {row['attack']} | {row['library']} | {row['n']} | {accuracy} "
              f"| {row['rate']:,.1f} | {ratio_text} | {row['linf']:.4f} |")
    print()
    for (eps, n), table in tables.items():
        steps = ", ".join(f"{k} {v:.1%}" for k, v in table.items())
        print(f"advbench autoattack, eps {eps:g}, {n} images, robust accuracy after each "
              f"attack: {steps}.")
    print("vs ART: our samples/s over ART's on the same images (two ratios where two ART "
          "configurations ran). pt: our robust accuracy minus ART's (the first ART row) on "
          "the same images, in percentage points.")


if __name__ == "__main__":
    main()
