"""The stages of a benchmark run as Python calls: what each ``advbench`` command does, one call
each, with the same artifacts, run keys, default paths and output locks (docs/python.md).

    from advbench import stages
    from advbench.attacks import make_attack

    model = stages.open_model("own.keras", dataset="own.npz")
    run = stages.attack(model, make_attack("pgd", eps=0.1), limit=100)
    score = stages.evaluate(model, [run.path], limit=100)

The ``*_from_options`` calls (``attack_from_options``, ``evaluate_from_options``...) are the
commands themselves: they take the option values as typed (None: not given), check them
before the model loads (``OptionError``: the command's usage error), open the MODEL reference,
fill the data set's defaults and make the stage call, so that a command only parses, makes
that one call and prints.

Each stage owns its run: it loads the samples once, computes the run key
(``outputs.run_key``), picks the default path, reuses a complete artifact of the same key,
resumes an interrupted one, refuses anything else without ``overwrite`` and holds the output
lock while it writes (``outputs.claim_output``). Errors are ``advbench.core.errors.AdvbenchError``
subclasses with a one-line message: ``ParameterError`` (bad values, or options that do not
apply; ``OptionError`` when refused before any work), ``ArtifactError`` (an unreadable model
or artifact, an output of another run), ``DataError`` (data files), ``OutputError`` (an
output that cannot be written, or is being written by another run).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, TypeVar, cast

import numpy as np

from advbench import data
from advbench.attacks.base import Attack
from advbench.core.errors import OptionError, ParameterError
from advbench.core.progress import Progress
from advbench.core.types import PathLike
from advbench.run.loading import LoadedModel, ModelSource
from advbench.run.shards import Shard

__all__ = ["LoadedModel", "ModelSource", "open_model", "open_models", "attack", "AttackOutcome",
           "evaluate", "distance_part", "transfer", "certify", "audit", "train", "curves",
           "build_attack", "build_defense", "audit_settings", "audit_lines", "check_engine",
           "require_engine", "check_attack_options", "check_train_options", "check_evaluate_options",
           "check_reproduce_options", "check_distance_shard_options", "list_models",
           "scored_on", "data_source", "reading_options", "check_samples", "check_outputs",
           "attack_with_budget", "check_curve_options", "attack_from_options",
           "curves_from_options", "transfer_from_options", "gate_options",
           "evaluate_from_options", "audit_from_options", "train_config", "export",
           "reproduction", "reproduction_plan", "reproduce", "check_certify_options",
           "distance_part_from_options"]

Say = Callable[[str], None]


def _quiet(_: str) -> None:
    """The default ``say`` of a Python call: no start lines (progress still logs)."""


@contextlib.contextmanager
def _as_options() -> Iterator[None]:
    """The ParameterErrors of option values raised here as OptionErrors."""
    try:
        yield
    except OptionError:
        raise
    except ParameterError as e:
        raise OptionError(str(e)) from None


Rule = TypeVar("Rule", bound=Callable[..., Any])


def _option_rule(check: Rule) -> Rule:
    """A rule on a command's options: its ParameterErrors are OptionErrors (usage errors)."""
    @functools.wraps(check)
    def rule(*args: Any, **kwargs: Any) -> Any:
        with _as_options():
            return check(*args, **kwargs)
    return cast(Rule, rule)


def open_model(ref: str, *, dataset: str | None = None, data_dir: PathLike | None = None,
               models_dir: PathLike | None = None, say: Say | None = None,
               **reading: Any) -> LoadedModel:
    """The model MODEL names, read as every command reads it (``loading.open_model``).

    Args:
        ref: a zoo name (resolved in ``models_dir``, default ``models/``), an advbench model
            artifact (.h5), or your own Keras model: a .keras file, a legacy .h5 full model or
            a SavedModel folder.
        dataset: the data your own model takes: "mnist", "cifar10", or your data's path (an
            .npz with x_train, y_train, x_test, y_test, or x, y as a test split; or a folder
            of one sub-folder of images per class). Required for your own model.
        reading: how to read your own model: ``custom_objects`` (a module name),
            ``outputs`` ("auto", "logits", "probabilities"), ``preprocessing``
            (``models.adapt.Preprocessing``: the input range, mean and std it expects),
            ``model_output`` (a multi-output model's class-score output); ``strict=False``
            lets them pass for an advbench artifact (a command over several models).
        say: gets the notes on how your model was read (warnings start "Warning:").

    Returns: ``LoadedModel``: ``.model`` takes float32 (N, H, W, C) images in [0, 1] and
        gives (N, classes) logits; ``.meta["content_hash"]`` is its identity (artifacts
        crafted on it are white-box for it); ``.source`` reopens it the same way.
    Raises: ArtifactError (unreadable or unsafe file), ParameterError (no data set for your
        own model, reading options for an advbench artifact), DataError (bad data).
    """
    from advbench.run.loading import open_model as opened

    loaded = opened(ref, dataset=_data_name(dataset), data_dir=data_dir, models_dir=models_dir,
                    **reading)
    for note in loaded.meta.get("notes", []):
        (say or _quiet)(note)
    return loaded


def open_models(refs: Sequence[str], *, dataset: str | None = None,
                data_dir: PathLike | None = None, models_dir: PathLike | None = None,
                say: Say | None = None, **reading: Any) -> list[LoadedModel]:
    """The models of several MODEL references (transfer's sources and targets): a file named
    twice is opened once, so that source and target are the same object (and the same
    identity: white-box) when they are the same file. Foreign models take ``dataset``, else
    the first advbench model's data set; ``reading`` (see ``open_model``) applies to the
    foreign ones and is refused (ParameterError) when every model is an advbench artifact.
    ``say`` gets the notes on how each was read."""
    from advbench.run.loading import model_data, open_model as opened
    from advbench.models.zoo import resolve_model

    dataset = _data_name(dataset)
    if dataset is None:
        dataset = next((d for d in (model_data(ref, models_dir) for ref in refs) if d), None)
    loaded: dict[str, LoadedModel] = {}
    out = []
    for ref in refs:
        key = str(resolve_model(ref, dataset if dataset in data.DATASETS else None,
                                models_dir).resolve())
        if key not in loaded:
            loaded[key] = opened(ref, dataset=dataset, data_dir=data_dir,
                                 models_dir=models_dir, strict=False, **reading)
            for note in loaded[key].meta.get("notes", []):
                (say or _quiet)(note)
        out.append(loaded[key])
    if (reading.get("custom_objects") or reading.get("outputs", "auto") != "auto"
            or reading.get("preprocessing") or reading.get("model_output") is not None) \
            and not any("model_kind" in m.meta for m in out):
        raise ParameterError("--custom-objects, --outputs, --model-output, --input-range, "
                             "--mean and --std apply to foreign model files; every model here "
                             "is an advbench artifact")
    return out


def _data_name(dataset: str | None) -> str | None:
    """A data set as artifacts name it: a built-in name, or a user's data as its absolute
    path (``data.source_name``), so the CLI and a Python call give one run key."""
    return None if dataset is None else data.source_name(str(dataset))


def _dataset_of(model: LoadedModel, dataset: str | None) -> str:
    """The data a stage works on: ``dataset``, else the model's own."""
    found = dataset or model.meta.get("dataset")
    if not found:
        raise ParameterError(f"{model.path} has no data set of its own; say which data it "
                             "takes: dataset='mnist', 'cifar10' or your data's path")
    return str(found)


def _opened(model: LoadedModel | str, dataset: str | None, data_dir: PathLike | None,
            models_dir: PathLike | None = None) -> LoadedModel:
    return model if isinstance(model, LoadedModel) else open_model(
        model, dataset=dataset, data_dir=data_dir, models_dir=models_dir)


def list_models(paths: Sequence[PathLike] = (), models_dir: PathLike | None = None
                ) -> tuple[Path, list[dict[str, Any]]]:
    """(the zoo store, one row per model artifact: path, zoo name, data set, architecture,
    activation, defense and its parameters, epochs, training images, clean test accuracy,
    training time, seed) of ``paths``, or of every .h5 in the store (``advbench models``);
    read from the artifacts' metadata, no model loaded. A missing field is None."""
    from advbench.run.artifacts import read_model_metadata
    from advbench.models.zoo import models_dir as default_models_dir

    store = default_models_dir(models_dir)
    rows = []
    for path in [Path(p) for p in paths] or sorted(store.glob("*.h5")):
        meta = read_model_metadata(path)
        rows.append({"path": str(path), "name": meta.get("zoo_name"), **{
            field: meta.get(field) for field in (
                "dataset", "architecture", "activation", "defense", "defense_params",
                "epochs_run", "train_samples", "clean_test_accuracy", "training_time_s",
                "seed")}})
    return store, rows


# -- attack ---------------------------------------------------------------------------------
@dataclasses.dataclass
class AttackOutcome:
    """What ``attack`` wrote: ``path`` (the attack artifact, or with ``engine="ray"`` the
    merged one) and the clean ``samples`` (x float32 (N, H, W, C) in [0, 1], y int64 (N,),
    indices into the split int64 (N,)) it attacked."""

    path: Path
    samples: tuple[np.ndarray, np.ndarray, np.ndarray]

    def summary(self) -> dict[str, Any]:
        """The run's summary (``runner.artifact_summary``: success rates both ways, norms,
        robustness of a minimal attack), what ``advbench attack --json`` prints."""
        from advbench.run.runner import artifact_summary

        return artifact_summary(self.path, self.samples[0])


def attack(model: LoadedModel | str, attack: Attack, *, dataset: str | None = None,
           split: str = "test", limit: int | None = None, start: int = 0,
           batch_size: int = 128, seed: int = 0, data_dir: PathLike | None = None,
           target_mode: str | None = None, start_from: str = "prediction",
           defaults_from: str = "", output: PathLike | None = None,
           runs_dir: PathLike = "runs", resume: bool = True, overwrite: bool = False,
           shard: Shard | None = None, engine: str = "local", workers: int | None = None,
           progress: Progress | None = None, say: Say | None = None,
           budget: Any = None) -> AttackOutcome:
    """Attack a slice of a data split with ``attack`` on ``model`` and write the attack
    artifact (``advbench attack``).

    Args:
        model: a ``LoadedModel`` (``open_model``) or a MODEL reference opened here (a zoo
            name, an advbench .h5, or a foreign model with ``dataset``).
        attack: an ``advbench.attacks`` object (``make_attack("pgd", eps=0.3)``); it never
            holds the model.
        dataset: the data (a built-in name or a user's .npz / image folder); default the
            model's.
        split, limit, start, batch_size, seed, data_dir: the samples (``runner.Samples``):
            ``limit`` draws a class-balanced subset; batches and their seeds are fixed by
            ``batch_size`` and ``seed`` (so shards and resumed runs give the same bits).
        target_mode: None (untargeted), "random" or "least-likely".
        start_from: "prediction" or "label", for untargeted deepfool, cw-l2 and jsma.
        defaults_from: which parameters took the data set's defaults, stored as provenance.
        output: the artifact path; default ``<runs_dir>/<model stem>-<attack>-<key>.h5``.
        resume, overwrite: what to do with an existing output (``outputs.claim_output``).
        shard: attack only this shard's batches, into ``<output stem>-shard<I>of<N>.h5``.
        engine, workers: "ray" runs ``workers`` shards as Ray tasks and merges them.
        progress: progress and log lines (default: silent); say: where the run's start
            line goes (default: nowhere); budget: the ``budgets.Budget`` whose defaults the
            attack took, named in the start line.

    Returns: ``AttackOutcome`` (path and samples).
    Raises: ParameterError (bad sample parameters, targets for an untargeted attack),
        ArtifactError (the model does not take the data; an output of another run),
        OutputError (the output cannot be written or is held by another run).
    """
    from advbench.run.artifacts import run_artifact_path
    from advbench.run.runner import AttackRun, attack_split, run_key

    dataset = _data_name(dataset)
    model = _opened(model, dataset, data_dir)
    progress = progress or Progress(quiet=True)
    run = AttackRun(model_path=str(model.path), dataset=_dataset_of(model, dataset),
                    split=split, limit=limit, start=start, batch_size=batch_size, seed=seed,
                    data_dir=data_dir, target_mode=target_mode, start_from=start_from,
                    defaults_from=defaults_from)
    run.validate()
    samples = run.load()  # once: the key needs the indices, the attack the images
    if output is None:
        key = run_key(run, attack, model.meta.get("content_hash", ""), samples[2])
        output = run_artifact_path(runs_dir, model.path, attack.name, key)
    if engine == "ray":
        from advbench.run.ray_engine import attack_with_ray

        if workers is None:
            raise ParameterError("engine ray makes its own shards: give workers")
        if budget is not None and budget.note:
            (say or _quiet)(budget.note)
        return AttackOutcome(attack_with_ray(run, attack, output, model=model,
                                             workers=workers, overwrite=overwrite,
                                             progress=progress), samples)
    if shard is not None:
        from advbench.run.shards import shard_output

        # Each shard writes its own artifact: "-o runs/pgd.h5" gives runs/pgd-shard0of4.h5...
        output = shard_output(output, shard)
    for line in attack_lines(attack, run, len(samples[0]), shard, budget):
        (say or _quiet)(line)
    return AttackOutcome(attack_split(run, attack, model.model, model.meta, Path(output),
                                      resume=resume, overwrite=overwrite, progress=progress,
                                      shard=shard, samples=samples), samples)


def attack_lines(attack: Attack, run: Any, count: int, shard: Shard | None,
                 budget: Any = None) -> list[str]:
    """The lines that start an attack run: the budget's note (defaults borrowed by image
    size), then every parameter it uses."""
    from advbench.run.runner import run_parameters

    lines = [budget.note] if budget is not None and budget.note else []
    return lines + [run_parameters(run, attack, count, shard), *attack.setting_lines()]


def audit_lines(eps: float, norm: str, checks: Sequence[str], settings: Any, budget: Any,
                samples: Any, count: int) -> list[str]:
    """The lines that start an audit: the budget's note (defaults borrowed by image size),
    then the budget (and where its default came from), the checks by number, every setting,
    the seed and the ``count`` samples of ``samples`` (a ``data.samples.Samples``)."""
    from advbench.score.audit import audit_parameters

    drawn = " (class-balanced)" if samples.limit is not None else ""
    described = (f"{count} samples{drawn} of {data.display_name(samples.dataset)} "
                 f"{samples.split} (start {samples.start}, batch size {samples.batch_size})")
    lines = [budget.note] if budget.note else []
    return lines + [audit_parameters(eps, norm, checks, settings, seed=samples.seed,
                                     samples=described, budget=budget)]


# -- curves ---------------------------------------------------------------------------------
def curves(sources: Sequence[LoadedModel], targets: Sequence[LoadedModel],
           eps: Sequence[float], *, attack: str = "fgsm", norm: str = "linf",
           alpha: float = 0.05, dataset: str | None = None, split: str = "test",
           limit: int | None = None, start: int = 0, batch_size: int = 128, seed: int = 0,
           data_dir: PathLike | None = None, output: PathLike | None = None,
           runs_dir: PathLike = "runs", overwrite: bool = False,
           progress: Progress | None = None, say: Say | None = None) -> list[Any]:
    """Compute (or reuse) one accuracy-vs-eps curve artifact per source, every target scored
    on it (``curves.run_curve``; fgsm and rand-fgsm). Returns the ``curves.Curve`` objects
    read back. ``output`` names the artifact of a single source (ParameterError with
    several); ``say`` gets one "wrote PATH" / "reusing PATH" line per curve."""
    from advbench.run.curves import CurveRun, read_curve, run_curve

    if output is not None and len(sources) > 1:
        raise ParameterError("-o names one curve artifact; with several --source leave it out")
    run = CurveRun(dataset=_dataset_of(sources[0], dataset), split=split, limit=limit,
                   start=start, batch_size=batch_size, seed=seed, data_dir=data_dir)
    found = []
    for source in sources:
        path, reused = run_curve(run, tuple(source), [tuple(t) for t in targets], eps,
                                 attack=attack, norm=norm, alpha=alpha, output=output,
                                 runs_dir=runs_dir, overwrite=overwrite,
                                 progress=progress or Progress(quiet=True))
        (say or _quiet)(f"{'reusing' if reused else 'wrote'} {path}")
        found.append(read_curve(path))
    return found


# -- evaluate -------------------------------------------------------------------------------
def evaluate(model: LoadedModel | str, artifacts: Sequence[PathLike] = (), *,
             dataset: str | None = None, split: str = "test", limit: int | None = None,
             start: int = 0, seed: int = 0, batch_size: int = 256,
             data_dir: PathLike | None = None, thresholds: Sequence[Any] = (),
             output: PathLike | None = None, overwrite: bool = False,
             progress: Progress | None = None, **options: Any) -> Any:
    """Score ``model`` on the clean split and on saved ``artifacts`` (``advbench evaluate``;
    never re-attacking), check the gate and write the evaluation artifact to ``output``.

    Args:
        model: a ``LoadedModel`` or a MODEL reference (see ``attack``).
        artifacts: attack, curve and certification artifact paths (shards of one run are
            merged in memory).
        dataset: the data the model is scored on, default its own (another data set of the
            same image shape is scored as that data).
        split, limit, start, seed, batch_size, data_dir: the clean samples.
        thresholds: ``evaluate.Threshold`` objects (``evaluate.parse_threshold``).
        output: the evaluation artifact (schema ``advbench.evaluation``), written holding the
            output lock; an existing evaluation of the same model and artifacts is replaced
            (a rerun), any other file refused unless ``overwrite``.
        options: ``evaluate.evaluate``'s keywords (sensitivity, distance, distance_variant,
            success_against, sensitivity_variant, radii).

    Returns: ``evaluate.Score``; ``summary["gate"]`` holds the thresholds, the missed ones
        (one message each) and ``passed``.
    Raises: as ``evaluate.evaluate``; ParameterError for a threshold of a metric no artifact
        gives; OutputError when ``output`` cannot be written, is held by another run, or
        holds something else and ``overwrite`` is False.
    """
    import contextlib

    from advbench.score.evaluate import (check_evaluation_output, check_thresholds,
                                         evaluation_inputs, write_evaluation)
    from advbench.score.evaluate import evaluate as score
    from advbench.core.files import output_lock

    dataset = _data_name(dataset)
    with output_lock(output, "artifact") if output else contextlib.nullcontext():
        model = _opened(model, dataset, data_dir)
        inputs = evaluation_inputs(model.path, artifacts)
        if output:
            check_evaluation_output(output, inputs, overwrite=overwrite)
        meta = scored_on(model.meta, dataset, data_dir)
        result = score(model.model, meta, model.path, list(artifacts), split=split,
                       limit=limit, start=start, seed=seed, data_dir=data_dir,
                       batch_size=batch_size, progress=progress or Progress(quiet=True),
                       **options)
        missed = check_thresholds(result.summary, list(thresholds))
        result.summary["gate"] = {
            "thresholds": [f"{t.label}{'>=' if t.bound == 'under' else '<='}{t.value:g}"
                           for t in thresholds], "missed": missed, "passed": not missed}
        if output:
            write_evaluation(output, result, lock=False, inputs=inputs)
    return result


def distance_part(model: LoadedModel, artifacts: Sequence[PathLike], shard: Shard, *,
                  output: PathLike, dataset: str | None = None,
                  data_dir: PathLike | None = None, distance_variant: str = "l2",
                  progress: Progress | None = None) -> Any:
    """One part of the training-set distances ``evaluate`` computes for ``artifacts``
    (``evaluate --distance-shard``: query blocks I, I+N, ... of ``shard``; see
    ``evaluate.distance_part``), written to ``output`` holding its lock. Returns the
    ``evaluate.Score`` of the part."""
    from advbench.score.evaluate import DISTANCE_PART, write_evaluation
    from advbench.score.evaluate import distance_part as part_of
    from advbench.core.files import output_lock

    dataset = _data_name(dataset)
    with output_lock(output, "artifact"):
        part = part_of(scored_on(model.meta, dataset, data_dir), model.path, list(artifacts),
                       shard, data_dir=data_dir, distance_variant=distance_variant,
                       progress=progress or Progress(quiet=True))
        write_evaluation(output, part, kind=DISTANCE_PART, lock=False)
    return part


def scored_on(meta: dict, dataset: str | None, data_dir: PathLike | None) -> dict:
    """The model's metadata with ``dataset`` as its data when it is scored on other data than
    its own (of the same image shape)."""
    if not dataset or dataset == meta.get("dataset"):
        return meta
    return {**meta, "dataset": dataset, "data_hash": data.fingerprint(dataset, data_dir)}


# -- transfer -------------------------------------------------------------------------------
def transfer(sources: Sequence[LoadedModel], targets: Sequence[LoadedModel], attack: Attack, *,
             output: PathLike | None = None, **samples: Any) -> Any:
    """The transfer matrix (``advbench transfer``): ``attack`` crafted on each source (attack
    artifacts of the same run key reused from ``runs_dir``), scored on each target; written
    to ``output`` (an evaluation artifact of kind "transfer") holding its lock.
    ``samples``: ``transfer.transfer``'s keywords (dataset, split, limit, start, seed,
    batch_size, data_dir, runs_dir, progress). Returns ``evaluate.Score``."""
    import contextlib

    from advbench.score.evaluate import write_evaluation
    from advbench.core.files import output_lock
    from advbench.score.transfer import transfer as matrix

    if samples.get("dataset") is not None:
        samples["dataset"] = _data_name(samples["dataset"])
    with output_lock(output, "artifact") if output else contextlib.nullcontext():
        result = matrix([tuple(s) for s in sources], [tuple(t) for t in targets], attack,
                        **samples)
        if output:
            write_evaluation(output, result, kind="transfer", lock=False)
    return result


# -- certify --------------------------------------------------------------------------------
def certify(model: LoadedModel | str, *, sigma: float, dataset: str | None = None,
            output: PathLike | None = None, runs_dir: PathLike = "runs",
            overwrite: bool = False, resume: bool = True, sigma_mismatch_ok: bool = False,
            shard: Shard | None = None, engine: str = "local", workers: int | None = None,
            progress: Progress | None = None, data_dir: PathLike | None = None,
            **run: Any) -> Path:
    """Certify ``model``'s smoothed classifier by randomized smoothing (``advbench certify``;
    Cohen et al. 2019) and write the certification artifact; returns its path.

    ``run``: ``certify.CertifyRun``'s fields (n0, n, alpha, mode, split, limit, start,
    batch_size, seed). Output, reuse, resume, shards and ``engine="ray"`` with ``workers``
    shards as for ``attack``; default path ``<runs_dir>/<model stem>-<mode>-s<sigma>-<key>.h5``.
    Raises as ``certify.certify_split`` (``certify.certify_with_ray``).
    """
    from advbench.score.certify import CertifyRun, certify_split, certify_with_ray

    dataset = _data_name(dataset)
    model = _opened(model, dataset, data_dir)
    certify_run = CertifyRun(model_path=str(model.path), sigma=sigma, data_dir=data_dir,
                             dataset=_dataset_of(model, dataset), **run)
    if engine == "ray":
        if workers is None or shard is not None:
            raise ParameterError("engine ray makes its own shards: give workers, not shard")
        return certify_with_ray(certify_run, model, output, workers=workers, runs_dir=runs_dir,
                                overwrite=overwrite, sigma_mismatch_ok=sigma_mismatch_ok,
                                progress=progress)
    return certify_split(certify_run, model.model, model.meta, output, runs_dir=runs_dir,
                         overwrite=overwrite, resume=resume,
                         sigma_mismatch_ok=sigma_mismatch_ok, shard=shard,
                         progress=progress)


# -- audit ----------------------------------------------------------------------------------
def audit(model: LoadedModel | str, *, eps: float, norm: str = "linf",
          checks: Sequence[str] | None = None, settings: Any = None,
          dataset: str | None = None, split: str = "test", limit: int = 500, start: int = 0,
          batch_size: int = 128, seed: int = 0, data_dir: PathLike | None = None,
          surrogate: LoadedModel | None = None, output: PathLike | None = None,
          overwrite: bool = False, progress: Progress | None = None,
          announce: Callable[[Any, int], None] | None = None) -> dict[str, Any]:
    """Audit ``model`` for gradient masking (``advbench audit``: Carlini et al. 2019's sanity
    checks) and return the audit summary; with ``output``, the record (schema
    ``advbench.audit``) is reused when it holds the same audit (same run key: model, data,
    samples, eps, norm, checks, settings, surrogate), refused when it holds another (unless
    ``overwrite``) and written holding the output lock.

    Args:
        eps, norm: the budget audited (eps > 0; at most 1 in "linf").
        checks: names of ``names.AUDIT_CHECKS`` (default: all).
        settings: ``audit.AuditSettings`` (default: its defaults).
        surrogate: check 3's source model (a ``LoadedModel``, not ``model`` itself); None
            trains one (``audit.train_surrogate``) when check 3 runs.
        the rest: the samples and output, as for ``attack`` (``limit`` default 500).
        announce: called with the ``data.samples.Samples`` and their count once they are
            loaded and the model fits them (the command's start line).
    Raises: ParameterError (bad values, a surrogate that is the model itself), ArtifactError
        (the model or surrogate does not take the data; a record of another audit),
        OutputError.
    """
    import contextlib

    from advbench.score.audit import (AuditSettings, audit as run_audit, audit_key, stored_audit,
                                      train_surrogate, write_audit)
    from advbench.core.files import output_lock
    from advbench.score import AUDIT_CHECKS
    from advbench.data.samples import Samples, check_model_fits

    dataset = _data_name(dataset)
    model = _opened(model, dataset, data_dir)
    checks = tuple(checks or AUDIT_CHECKS)
    settings = settings or AuditSettings()
    progress = progress or Progress(quiet=True)
    dataset = _dataset_of(model, dataset)
    samples = Samples(dataset=dataset, split=split, limit=limit, start=start,
                      batch_size=batch_size, seed=seed, data_dir=data_dir)
    samples.validate()
    x, y, indices = samples.load()
    check_model_fits(model.model, model.meta, model.path, x, dataset)
    if announce is not None:
        announce(samples, len(y))
    transfer_check = "white-box-vs-transfer" in checks
    source: Callable[[], tuple[Any, dict[str, Any]]] | None = None
    surrogate_id: dict[str, Any] = {}
    if transfer_check and surrogate is not None:
        if surrogate.meta.get("content_hash") == model.meta.get("content_hash"):
            raise ParameterError(f"--surrogate {surrogate.path} is MODEL itself, so its "
                                 "attacks are white-box; give another model or leave "
                                 "--surrogate out to train one")
        check_model_fits(surrogate.model, surrogate.meta, surrogate.path, x, dataset)
        info = {"source": str(surrogate.path), "hash": surrogate.meta.get("content_hash"),
                "clean_test_accuracy": surrogate.meta.get("clean_test_accuracy")}
        surrogate_id = {"surrogate": surrogate.meta.get("content_hash")}
        source = (lambda: (surrogate.model, info))
    elif transfer_check:
        # Trained only when check 3 runs (the record may already hold the audit).
        source = (lambda: train_surrogate(dataset, data_dir=data_dir, settings=settings,
                                          seed=seed, progress=progress))
    key = audit_key({"model_hash": model.meta.get("content_hash"), "dataset": dataset,
                     "data_hash": data.fingerprint(dataset, data_dir), "split": split,
                     "seed": seed, "batch_size": batch_size, "eps": eps, "norm": norm,
                     "checks": list(checks), "settings": dataclasses.asdict(settings),
                     **surrogate_id}, indices)
    with output_lock(output, "artifact") if output else contextlib.nullcontext():
        summary = stored_audit(output, key, overwrite) if output else None
        if summary is not None:
            progress.log(f"{output} holds this audit already; reusing it (--overwrite reruns "
                         "it)")
            return summary
        result = run_audit(model.model, x, y, eps=eps, norm=norm, checks=checks,
                           settings=settings, batch_size=batch_size, seed=seed,
                           surrogate=source, progress=progress)
        result.summary.update(model={"path": str(model.path), "name": model.meta.get("zoo_name"),
                                     "hash": model.meta.get("content_hash")},
                              dataset=dataset, split=split)
        if output:
            result.per_sample["indices"] = indices
            write_audit(output, result, lock=False, attrs={
                "key": key, "model_path": str(model.path),
                "model_hash": model.meta.get("content_hash", ""), "dataset": dataset,
                "split": split, "limit": limit, "start": start, "seed": seed,
                "batch_size": batch_size})
    return result.summary


# -- train ----------------------------------------------------------------------------------
def train(config: Any, defense: Any, *, output: PathLike | None = None,
          models_dir: PathLike | None = None, architecture_file: str | None = None,
          fine_tune: bool = False, reading: dict[str, Any] | None = None,
          overwrite: bool = False, progress: Progress | None = None,
          say: Say | None = None, notes: Sequence[str] = (),
          announce: str | None = None) -> tuple[Path | None, dict]:
    """Train a model with a defense and write its artifact (``advbench train``).

    Args:
        config: ``train.TrainConfig`` (validated here); defense: ``defenses.make_defense``.
        output: the model artifact; default the zoo path
            ``<models_dir>/<data>-<architecture>-<act>-<defense>.h5``.
        architecture_file: the user's own architecture (.keras / legacy .h5) instead of
            ``config.architecture``, read with ``reading`` (``loading.open_model``'s reading
            keywords); ``fine_tune`` starts from its weights.
        overwrite: replace an existing model file (refused otherwise, before training:
            attack artifacts made on the old model would turn black-box).
        say: where ``notes`` (defaults borrowed by image size) and the notes on a user's
            architecture go; announce: the start line (``progress``; default
            ``train.training_line``: every parameter of the run).

    With ``config.strategy`` "multi-worker" every worker trains and only the chief claims
    and writes the output; the others return (None, metadata).
    Returns: (path or None, the model's metadata).
    Raises: ParameterError (config), OutputError (an existing output, a lock held), as
        ``train.train``.
    """
    from advbench.run.artifacts import save_model
    from advbench.run.distribute import is_chief
    from advbench.models.zoo import zoo_path
    from advbench.run.outputs import claim_output
    from advbench.run.train import prepare_architecture, train as run_training, training_line

    config.validate()
    say = say or _quiet
    stem = Path(architecture_file).stem if architecture_file else config.architecture
    path = Path(output) if output else zoo_path(Path(data.display_name(config.dataset)).stem,
                                               stem, config.activation, defense.name,
                                               models_dir)
    announce = training_line(config, defense, stem) if announce is None else announce
    chief = is_chief()
    # Only the chief writes, so only it holds the lock; every worker refuses alike.
    with claim_output(path, what="model artifact", overwrite=overwrite, lock=chief,
                      refusal="pass --overwrite to replace it (attack artifacts made on it "
                              "then no longer match it) or choose another -o"):
        for line in notes if chief else ():
            say(line)
        model = source = None
        if architecture_file:
            model, source = prepare_architecture(architecture_file, config, defense,
                                                 fine_tune=fine_tune, **(reading or {}))
            for line in source["notes"] + source["brelu_changes"]:
                say(line)
        model, metadata = run_training(
            config, defense, model=model, source=source, announce=announce,
            progress=(progress or Progress(quiet=True)) if chief else Progress(quiet=True))
        if not chief:
            return None, metadata
        save_model(path, model, metadata)
    return path, metadata


# -- the commands' rules on their options, for any caller --------------------------------------
@_option_rule
def build_attack(name: str, values: dict[str, Any]) -> Attack:
    """The attack ``name`` (``attacks.make_attack``) of option values by parameter name (a
    None value: not given), refusing the parameters it does not take (named by their flags,
    ``attacks.ATTACK_SPECS``) and an L-inf eps above 1 (an eps in the model's own pixel units,
    8 meaning 8/255, would turn every pixel into 0 or 1 and call it an attack).

    Raises: OptionError (a ParameterError: one line, naming the flags)."""
    from advbench.attacks import ATTACK_SPECS, make_attack
    from advbench.attacks.budgets import shown
    from advbench.core.errors import flags_verb
    from advbench.core.params import stray_flags

    given = {k: v for k, v in values.items() if v is not None}
    stray = stray_flags(ATTACK_SPECS, name, given)
    if stray:
        raise ParameterError(f"{flags_verb(stray, 'does', 'do')} not apply to --attack {name}")
    attack = make_attack(name, **given)
    eps = given.get("eps")
    if eps is not None and getattr(attack, "norm", None) == "linf" and eps > 1:
        raise ParameterError(
            f"--eps {shown(float(eps))} is above 1, the whole [0, 1] image box in L-inf: "
            "attacks perturb images in [0, 1] whatever range the model takes; give eps in "
            "those units, e.g. --eps 8/255")
    return attack


@_option_rule
def build_defense(defense: str, dataset: str, values: dict[str, Any],
                  notes: list[str] | None = None) -> Any:
    """The defense ``defense`` (``defenses.make_defense``) of `train`'s option values by flag
    name (``gda_sigma``; None: not given), refusing the flags of another defense.

    Its data-set defaults (GDA sigma, FGSM-AT eps, feature squeezing bits) are those of
    ``dataset``, or, for a user's data, of the built-in set of its image size (said in
    ``notes``); a user's data of another size must give them.

    Raises: OptionError (a ParameterError: one line, naming the flags)."""
    from advbench.attacks.budgets import matching_dataset
    from advbench.core.errors import flags_verb
    from advbench.core.params import flag_table
    from advbench.defenses import DEFENSE_PARAMETERS, DEFENSE_SPECS, make_defense

    rows = {flag[2:].replace("-", "_"): (flag, owners, p.name)
            for flag, (p, owners) in flag_table(DEFENSE_SPECS, DEFENSE_PARAMETERS).items()}
    given = {dest: value for dest, value in values.items() if value is not None}
    # A flag's defenses: those declaring its parameter (--gda-sigma: gda and gda-cohen).
    stray = sorted(rows[dest][0] for dest in given if defense not in rows[dest][1])
    if stray:
        raise ParameterError(f"{flags_verb(stray, 'does', 'do')} not apply to --defense "
                             f"{defense}")
    params = {rows[dest][2]: v for dest, v in given.items()}
    if dataset not in data.DATASETS:
        shape = data.dataset_info(dataset).input_shape
        source = matching_dataset(dataset, shape)
        flag_of = {param: flag for flag, owners, param in rows.values() if defense in owners}
        dataset_defaults = DEFENSE_SPECS[defense].dataset_defaults
        wanted = [p for p in dataset_defaults.get("mnist", {}) if p not in params]
        size = "x".join(str(s) for s in shape)
        if wanted and source is None:
            raise ParameterError(
                f"--data {dataset} holds {size} images, the shape of no built-in data set "
                f"(mnist 28x28x1, cifar10 32x32x3), so {' and '.join(flag_of[p] for p in wanted)}"
                f" {'has' if len(wanted) == 1 else 'have'} no default; give "
                f"{'it' if len(wanted) == 1 else 'them'}")
        if wanted and notes is not None and source is not None:
            taken = ", ".join(f"{flag_of[p]} {dataset_defaults[source][p]}" for p in wanted)
            notes.append(f"--data {dataset} holds {size} images, {source}'s shape: {defense} "
                         f"takes {source}'s default {taken}")
        dataset = source or dataset
    return make_defense(defense, dataset, **params)


@_option_rule
def audit_settings(checks: Sequence[str] | None, *, eps: float | None, norm: str,
                   values: dict[str, Any], given: Sequence[str] = (),
                   surrogate: bool = False, surrogate_values: dict[str, Any] | None = None,
                   unbounded_eps: float | None = None, limit: int | None = None
                   ) -> tuple[tuple[str, ...], Any, int]:
    """(checks, ``audit.AuditSettings``, limit) of `advbench audit`'s options, each checked
    against the checks chosen (default: all of ``score.AUDIT_CHECKS``).

    Args:
        values: the budgets and thresholds by name (``score.AUDIT_PARAMS``); ``given``: the
            names of those the caller set (a setting no chosen check uses is refused,
            ``score.AUDIT_SETTING_CHECKS``).
        surrogate: a surrogate model is given (check 3's source); ``surrogate_values``: the
            trained surrogate's options by flag (``--surrogate-epochs``: None not given).
        unbounded_eps: check 4's eps; limit: the samples (default ``score.AUDIT_SAMPLES``).

    Raises: OptionError (a ParameterError: one line, naming the flags)."""
    from advbench.core.checks import check_range
    from advbench.core.errors import flags_verb
    from advbench.score import AUDIT_CHECKS, AUDIT_PARAMS, AUDIT_SAMPLES, AUDIT_SETTING_CHECKS
    from advbench.score.audit import AuditSettings, check_audit_norm

    checks = tuple(checks or AUDIT_CHECKS)
    surrogate_given = {flag: v for flag, v in (surrogate_values or {}).items() if v is not None}
    stray = (["--surrogate"] if surrogate else []) + list(surrogate_given)
    if stray and "white-box-vs-transfer" not in checks:
        raise ParameterError(f"{flags_verb(stray, 'applies', 'apply')} to check 3 "
                             "(white-box-vs-transfer), which --checks leaves out")
    if surrogate and surrogate_given:
        raise ParameterError(f"{flags_verb(list(surrogate_given), 'shapes', 'shape')} the "
                             "surrogate advbench trains; drop "
                             f"{'it' if len(surrogate_given) == 1 else 'them'} with --surrogate")
    if unbounded_eps is not None and "unbounded-attack" not in checks:
        raise ParameterError("--unbounded-eps applies to check 4 (unbounded-attack), which "
                             "--checks leaves out")
    chosen = {i for i, name in enumerate(AUDIT_CHECKS, start=1) if name in checks}
    unused = [(p.cli_flag, AUDIT_SETTING_CHECKS[p.name]) for p in AUDIT_PARAMS
              if p.name in given and p.name in AUDIT_SETTING_CHECKS
              and not chosen & set(AUDIT_SETTING_CHECKS[p.name])]
    if unused:
        named = [f"{flag} (check{'s' if len(numbers) > 1 else ''} "
                 f"{', '.join(map(str, numbers))})" for flag, numbers in unused]
        one = len(unused) == 1
        raise ParameterError(
            f"{flags_verb(named, 'does', 'do')} not apply to the checks chosen by --checks "
            f"({', '.join(map(str, sorted(chosen)))}); drop {'it' if one else 'them'} or add "
            f"{'its' if one else 'their'} checks")
    check_audit_norm(norm)
    if eps is not None:
        check_range("eps", eps, low=0.0, low_inclusive=False,
                    high=1.0 if norm == "linf" else None)
    settings = AuditSettings(**values, unbounded_eps=unbounded_eps, **{
        flag.lstrip("-").replace("-", "_"): value for flag, value in surrogate_given.items()})
    settings.validate()
    return checks, settings, AUDIT_SAMPLES if limit is None else limit


def require_engine(engine: str) -> None:
    """ParameterError (exit 1, not a usage error) when ``engine`` is "ray" and Ray is not
    installed: said before any start line or model load, not after them."""
    import importlib.util

    if engine == "ray" and importlib.util.find_spec("ray") is None:
        raise ParameterError("--engine ray needs Ray: pip install 'advbench[ray]'")


@_option_rule
def check_engine(engine: str, workers: int | None = None, shard: Shard | None = None) -> None:
    """Ray makes its own shards from ``workers``; a job array gives ``shard``: never both.

    Raises: OptionError (a ParameterError: one line, naming the flags)."""
    if engine == "ray" and (shard is not None or workers is None):
        raise ParameterError("--engine ray makes its own shards: give --workers N, not --shard")
    if engine != "ray" and workers is not None:
        raise ParameterError("--workers is for --engine ray; a job array gives --shard I/N")


@_option_rule
def check_attack_options(attack: Attack, name: str, *, target_mode: str | None = None,
                         start_from: str = "prediction") -> None:
    """`advbench attack`'s options checked against the attack: targets only for attacks
    that take them, ``start_from`` only for the untargeted minimal attacks
    (``run.START_FROM_ATTACKS``).

    Raises: OptionError (a ParameterError: one line, naming the flags)."""
    from advbench.run import START_FROM_ATTACKS

    if target_mode is not None and not attack.accepts_targets():
        raise ParameterError(f"{attack.untargeted_only()} is untargeted only; drop --target")
    if start_from != "prediction" and (name not in START_FROM_ATTACKS
                                       or target_mode is not None):
        raise ParameterError("--from applies to untargeted deepfool, cw-l2, jsma and fmn "
                             "(fgsm-min always starts from the prediction, bounded attacks "
                             "from the label)")


@_option_rule
def check_train_options(architecture: str, *, fine_tune: bool = False,
                        reading: dict[str, Any] | None = None, brelu_t: float | None = None,
                        activation: str = "relu") -> bool:
    """Whether ``architecture`` is the user's own file (not a zoo architecture); the options
    that apply only to one (``fine_tune``, ``reading``) or only to BReLU refused.

    Raises: OptionError (a ParameterError: one line, naming the flags)."""
    from advbench.core.errors import flags_verb
    from advbench.models.zoo import ARCHITECTURES

    reading = reading or {}
    own = architecture not in ARCHITECTURES
    given = [flag for flag, value in (("--fine-tune", fine_tune),
                                      ("--custom-objects", reading.get("custom_objects")),
                                      ("--outputs", reading.get("outputs", "auto") != "auto"),
                                      ("--model-output", reading.get("model_output") is not None),
                                      ("--input-range/--mean/--std", reading.get("preprocessing")))
             if value]
    if given and not own:
        raise ParameterError(f"{flags_verb(given, 'applies', 'apply')} to --model FILE (your "
                             "own architecture)")
    if brelu_t is not None and activation != "brelu":
        raise ParameterError(f"--brelu-t does not apply to --act {activation}")
    return own


@_option_rule
def check_evaluate_options(eps: float | tuple[float, ...] | None, *, alpha: float | None = None,
                           source: str | None = None, plot: PathLike | None = None,
                           artifacts: Sequence[PathLike] = ()) -> tuple[float, ...] | None:
    """The eps list of `advbench evaluate`'s curve (None: no curve), its options checked:
    ``alpha`` and ``source`` shape a curve, ``plot`` draws one (of the eps, or of a curve or
    certification artifact among ``artifacts``).

    Raises: OptionError (a ParameterError: one line, naming the flags)."""
    from advbench.core.checks import check_range
    from advbench.run.artifacts import CERTIFICATION_SCHEMA, CURVE_SCHEMA, artifact_kind

    if alpha is not None:
        check_range("alpha", alpha, low=0.0)
    if isinstance(eps, float):
        eps = (eps,)
    if (source or alpha is not None) and eps is None:
        raise ParameterError("--source and --alpha shape the --eps curve; give --eps too")
    if plot and eps is None and not any(
            Path(p).exists() and artifact_kind(p) in (CURVE_SCHEMA, CERTIFICATION_SCHEMA)
            for p in artifacts):
        raise ParameterError("--plot draws a curve: give --eps, a curve artifact or a "
                             "certification artifact")
    return eps


@_option_rule
def check_reproduce_options(*, seed: int = 0, plan: bool = False, as_json: bool = False,
                            stage: str | None = None, emit: Any = None, engine: str = "local",
                            workers: int | None = None) -> None:
    """`advbench reproduce`'s options checked against each other: one of the plan, a stage
    and the emitted jobs; JSON only for the plan; Ray runs every stage with its workers.

    Raises: OptionError (a ParameterError: one line, naming the flags)."""
    from advbench.core.checks import check_seed

    check_seed(seed)
    if as_json and not plan:
        raise ParameterError("--json prints the --plan; give --plan too")
    if sum(map(bool, (plan, stage, emit))) > 1:
        raise ParameterError("give one of --plan, --stage and --emit")
    if engine == "ray" and (plan or stage or emit):
        raise ParameterError("--engine ray runs every stage; drop --plan, --stage and --emit")
    if engine != "ray" and workers is not None:
        raise ParameterError("--workers is for --engine ray")


@_option_rule
def check_distance_shard_options(*, distance: bool = True, output: PathLike | None = None,
                                 stray: Sequence[str] = ()) -> None:
    """`advbench evaluate --distance-shard`'s options: it computes one part of the
    training-set distance (so ``distance`` on) into ``output``, and nothing else (``stray``:
    the flags of a full evaluation given).

    Raises: OptionError (a ParameterError: one line, naming the flags)."""
    from advbench.core.errors import flags_verb

    if stray:
        raise ParameterError(f"{flags_verb(list(stray), 'does', 'do')} not apply to "
                             "--distance-shard: it only computes a part of the training-set "
                             "distance")
    if not distance:
        raise ParameterError("--distance-shard computes the training-set distance; drop "
                             "--no-distance")
    if not output:
        raise ParameterError("--distance-shard writes its part to -o PART.h5 (as "
                             "PART-shard<I>of<N>.h5)")


# -- the commands from their option values --------------------------------------------------
# What each command does between parsing its flags and printing, for any caller: option values
# in (None: not given), the same checks, defaults, messages and stage call out. A value refused
# before any work is an OptionError (the command's usage error, exit 2).
def data_source(dataset: str | None = None, data_path: PathLike | None = None,
                say: Say | None = None) -> str | None:
    """The data a command works on: ``dataset`` (a built-in name) or ``data_path`` (your .npz
    or image folder, named as artifacts name it: its absolute path, ``data.source_name``);
    None when neither is given. With ``say``, what was detected about your data (one
    sentence each) is said.

    Raises: OptionError (both given), DataError (unreadable data)."""
    if dataset and data_path:
        raise OptionError("Use just one of --dataset or --data")
    if data_path is None:
        return dataset
    name = data.source_name(str(data_path))
    if say is not None:
        for note in data.notes(name):
            say(note)
    return name


def reading_options(*, custom_objects: str | None = None, outputs: str = "auto",
                    input_range: str | None = None, mean: str | None = None,
                    std: str | None = None, model_output: str | None = None) -> dict[str, Any]:
    """``open_model``'s reading keywords of the reading options as typed: ``input_range``
    "LOW:HIGH" (e.g. "0:255"), ``mean`` and ``std`` "M[,M,M]" (one value per channel), giving
    a ``models.adapt.Preprocessing`` when any is given (the others take 0:1, 0 and 1).

    Raises: ParameterError (a bad range or channel list)."""
    from advbench.models.adapt import Preprocessing, parse_channels, parse_range

    preprocessing = None
    if input_range or mean or std:
        preprocessing = Preprocessing(
            input_range=parse_range(input_range) if input_range else (0.0, 1.0),
            mean=parse_channels(mean, "--mean") if mean else (0.0,),
            std=parse_channels(std, "--std") if std else (1.0,))
    return {"custom_objects": custom_objects, "outputs": outputs,
            "preprocessing": preprocessing, "model_output": model_output}


@_option_rule
def check_samples(*, limit: int | None = None, start: int = 0, batch_size: int = 128,
                  seed: int = 0, split: str = "test") -> None:
    """The sample options checked before any work (``data.samples.Samples.validate``: batch
    size and limit in [1, 2**31), start in [0, 2**31), seed in [0, 2**32)).

    Raises: OptionError."""
    from advbench.data.samples import Samples

    Samples(dataset="", split=split, limit=limit, start=start, batch_size=batch_size,
            seed=seed).validate()


def check_outputs(*, output: PathLike | None = None, csv_path: PathLike | None = None,
                  plot: PathLike | None = None) -> None:
    """Refuse, before any work, outputs that cannot be written (``files.check_writable``:
    the artifact, the CSV, the plot; None: not asked for); each stage holds its artifact's
    lock while it runs (``outputs.claim_output``).

    Raises: OutputError (one line)."""
    from advbench.core.files import check_writable

    for path, what in ((output, "artifact"), (csv_path, "CSV"), (plot, "plot")):
        if path:
            check_writable(path, what)


def _open_said(ref: LoadedModel | str, dataset: str | None, *, models_dir: PathLike | None,
               data_dir: PathLike | None, reading: dict[str, Any] | None, say_note: Say | None,
               strict: bool = True) -> LoadedModel:
    """``ref`` opened as a command opens its MODEL (a LoadedModel as it is), the notes on how
    it was read said to ``say_note``."""
    if isinstance(ref, LoadedModel):
        return ref
    return open_model(ref, dataset=dataset, data_dir=data_dir, models_dir=models_dir,
                      say=say_note, strict=strict, **(reading or {}))


def _budget(name: str, values: dict[str, Any], dataset: str | None, data_path: Any,
            input_shape: tuple | None = None) -> Any:
    """``budgets.attack_budget`` of option values: a user's data gives its image shape."""
    from advbench.attacks.budgets import attack_budget

    if dataset and dataset not in data.DATASETS:
        input_shape = data.dataset_info(dataset).input_shape
    with _as_options():
        return attack_budget(name, dataset, norm=values.get("norm"), given=values,
                             input_shape=input_shape, steps=values.get("steps"),
                             source_text=f"--data {data_path}" if data_path else None)


def attack_with_budget(name: str, values: dict[str, Any], *, dataset: str | None = None,
                       data_path: PathLike | None = None, model: LoadedModel | None = None
                       ) -> tuple[Attack, Any]:
    """(attack, ``budgets.Budget``) of an attack's option values (``build_attack``; None:
    not given) with the eps-like defaults of the data (``budgets.attack_budget``: the values
    given are kept): ``dataset`` when it is known before the model loads, else ``model``'s
    data set and input shape. Budget None when neither is given: the attack then has its
    constructor's defaults, built to check the values before TensorFlow starts.
    ``data_path``: your data as typed, to name it in messages.

    Raises: OptionError (bad values; your data of no built-in image size without an eps),
        DataError (unreadable data)."""
    if model is None and not dataset:
        return build_attack(name, values), None
    input_shape = None
    if model is not None:
        dataset = dataset or model.meta.get("dataset")
        input_shape = tuple(model.model.input_shape[1:])
    budget = _budget(name, values, dataset, data_path, input_shape)
    return build_attack(name, {**values, **budget.values}), budget


def check_curve_options(eps: Any, *, command: str = "attack", plot: PathLike | None = None,
                        output: PathLike | None = None, shard: Shard | None = None,
                        engine: str = "local", target_mode: str | None = None,
                        runs_dir: PathLike = "runs") -> bool:
    """Whether ``eps`` (a tuple: an eps list) asks `attack` or `transfer` (``command``) for
    accuracy-vs-eps curves, the options checked against it: a curve is untargeted, one
    process's, written to ``output`` by `attack` (``check_outputs``) and to ``runs_dir`` by
    `transfer`; ``plot`` draws one.

    Raises: OptionError (one line, naming the flags), OutputError."""
    curve = isinstance(eps, tuple)
    if curve and command == "attack":
        if shard is not None or engine == "ray":
            raise OptionError("--shard and --engine ray split attack runs, not curves; give "
                              "one --eps value")
        if target_mode is not None:
            raise OptionError("curves (an eps list) are untargeted; drop --target")
        check_outputs(output=output, plot=plot)
    elif curve and output:
        raise OptionError("-o writes the matrix artifact of one eps; curve artifacts are "
                          f"written to --runs-dir ({runs_dir})")
    if plot and not curve:
        raise OptionError("--plot draws a curve: give an eps list, e.g. --eps 0.01:1:0.01")
    return curve


def attack_from_options(model: LoadedModel | str, name: str, values: dict[str, Any], *,
                        dataset: str | None = None, data_path: PathLike | None = None,
                        models_dir: PathLike | None = None,
                        reading: dict[str, Any] | None = None,
                        say_note: Say | None = None, **run: Any) -> AttackOutcome:
    """`advbench attack` with one eps: the attack ``name`` of its option ``values``
    (``attack_with_budget``: the data set's eps-like defaults), checked against the targets,
    ``start_from``, the samples and the output before the model loads, then ``attack``.

    Args:
        model: a MODEL reference opened here (``open_model`` with ``models_dir`` and
            ``reading``; its notes said to ``say_note``) or a ``LoadedModel``.
        dataset: ``data_source``'s name of the data (default: the model's); data_path: your
            data as typed (named in messages).
        run: ``attack``'s keywords (samples, target_mode, start_from, output, resume,
            overwrite, shard, engine, workers, data_dir, runs_dir, progress, say).

    Returns: ``AttackOutcome``.
    Raises: OptionError (options refused before any work), then as ``attack``.
    """
    attack_obj, budget = attack_with_budget(name, values, dataset=dataset, data_path=data_path)
    check_attack_options(attack_obj, name, target_mode=run.get("target_mode"),
                         start_from=run.get("start_from", "prediction"))
    check_samples(**{k: run[k] for k in ("limit", "start", "batch_size", "seed") if k in run})
    check_outputs(output=run.get("output"))
    model = _open_said(model, dataset, models_dir=models_dir, data_dir=run.get("data_dir"),
                       reading=reading, say_note=say_note)
    if budget is None:  # the model's data set, known once it is loaded
        attack_obj, budget = attack_with_budget(name, values, dataset=dataset,
                                                data_path=data_path, model=model)
    return attack(model, attack_obj, dataset=dataset, defaults_from=budget.defaults_from,
                  budget=budget, **run)


def curves_from_options(name: str, values: dict[str, Any], sources: Sequence[str],
                        targets: Sequence[str], *, dataset: str | None = None,
                        split: str = "test", limit: int | None = None, start: int = 0,
                        batch_size: int = 128, seed: int = 0, data_dir: PathLike | None = None,
                        models_dir: PathLike | None = None, reading: dict[str, Any] | None = None,
                        say: Say | None = None, say_note: Say | None = None,
                        **options: Any) -> list[Any]:
    """The accuracy-vs-eps curves of an eps list (``values["eps"]``, a tuple) of fgsm or
    rand-fgsm: the attack's other ``values`` checked (at the largest eps) before the models
    load, rand-fgsm's alpha from the data set, every parameter said to ``say``, then
    ``curves`` on the ``sources`` and ``targets`` (MODEL references, opened as
    ``open_models`` opens them, their notes said to ``say_note``).

    ``options``: ``curves``' output, overwrite, runs_dir and progress.
    Returns: the ``curves.Curve`` objects, one per source.
    Raises: OptionError (another attack, bad values, -o with several sources), then as
        ``curves``.
    """
    from advbench.attacks.budgets import parameter_line, shown
    from advbench.run.curves import CURVE_ATTACKS

    if name not in CURVE_ATTACKS:
        raise OptionError(f"an eps list draws a curve, which only {' and '.join(CURVE_ATTACKS)}"
                          f" compute; give one --eps value for --attack {name}")
    eps = values["eps"]
    # rand-fgsm's alpha from the data set (the eps are given), once it is known.
    budget = _budget(name, values, dataset, None) if dataset else None
    # The other values checked against the attack (alpha <= eps holds for the largest eps).
    checked = {**values, **(budget.values if budget else {}), "eps": max(eps)}
    if name == "rand-fgsm" and checked.get("alpha") is None:
        checked["alpha"] = 0.0  # checked against the data set's default once it is known
    attack_obj = build_attack(name, checked)
    check_samples(limit=limit, start=start, batch_size=batch_size, seed=seed)
    models = open_models([*sources, *targets], dataset=dataset, data_dir=data_dir,
                         models_dir=models_dir, say=say_note, **(reading or {}))
    crafted_on, scored = models[:len(sources)], models[len(sources):]
    dataset = dataset or crafted_on[0].meta.get("dataset")
    if budget is None:
        budget = _budget(name, values, dataset, None,
                         input_shape=tuple(crafted_on[0].model.input_shape[1:]))
        attack_obj = build_attack(name, {**values, **budget.values, "eps": max(eps)})
    norm = getattr(attack_obj, "norm", "linf")
    if say is not None:
        # Every parameter of the curve, as an attack run's line gives them.
        params: dict[str, Any] = {"norm": norm, "eps": ",".join(shown(e) for e in eps)}
        if name == "rand-fgsm":
            params["alpha"] = float(attack_obj.alpha)
        if budget.note:
            say(budget.note)
        say(parameter_line(
            f"{name} curve", params, budget=budget, extra="untargeted", seed=seed,
            samples=(f"{f'{limit} samples (class-balanced)' if limit else 'all samples'} of "
                     f"{data.display_name(dataset)} "
                     f"{split} (start {start}, batch size {batch_size})")))
    if options.get("output") is not None and len(crafted_on) > 1:
        raise OptionError("-o names one curve artifact; with several --source leave it out")
    return curves(crafted_on, scored, eps, attack=name, norm=norm,
                  alpha=getattr(attack_obj, "alpha", 0.05), dataset=dataset, split=split,
                  limit=limit, start=start, batch_size=batch_size, seed=seed,
                  data_dir=data_dir, say=say, **options)


def transfer_from_options(name: str, values: dict[str, Any], sources: Sequence[str],
                          targets: Sequence[str], *, dataset: str | None = None,
                          data_path: PathLike | None = None, models_dir: PathLike | None = None,
                          reading: dict[str, Any] | None = None, output: PathLike | None = None,
                          say: Say | None = None, say_note: Say | None = None,
                          **samples: Any) -> Any:
    """`advbench transfer` with one eps: the attack ``name`` of its option ``values`` with
    the data's eps-like defaults (``dataset``'s, else the first source's once loaded), the
    samples checked before the models load, its parameters said to ``say``, then
    ``transfer`` on the ``sources`` and ``targets`` (MODEL references, ``open_models``; their
    notes said to ``say_note``).

    ``samples``: ``transfer``'s split, limit, start, batch_size, seed, data_dir, runs_dir and
    progress. Returns ``evaluate.Score``.
    Raises: OptionError (options refused before any work), then as ``transfer``.
    """
    from advbench.attacks.budgets import parameter_line

    attack_obj, budget = attack_with_budget(name, values, dataset=dataset, data_path=data_path)
    check_samples(**{k: samples[k] for k in ("limit", "start", "batch_size", "seed")
                     if k in samples})
    models = open_models([*sources, *targets], dataset=dataset,
                         data_dir=samples.get("data_dir"), models_dir=models_dir, say=say_note,
                         **(reading or {}))
    crafted_on, scored = models[:len(sources)], models[len(sources):]
    if budget is None:  # the first source's data set
        attack_obj, budget = attack_with_budget(name, values, model=crafted_on[0])
    for line in ([budget.note] if budget.note else []) + [parameter_line(
            attack_obj.name, {"norm": attack_obj.norm, **attack_obj.params()}, budget=budget,
            seed=samples.get("seed", 0))]:
        (say or _quiet)(line)
    samples["progress"] = samples.get("progress") or Progress(quiet=True)
    return transfer(crafted_on, scored, attack_obj, output=output, dataset=dataset, **samples)


def gate_options(fail_under: Sequence[str] = (), fail_over: Sequence[str] = (),
                 radii: str | None = None) -> tuple[list[Any], tuple[float, ...]]:
    """(thresholds, radii) of `advbench evaluate`'s gate options: ``fail_under`` and
    ``fail_over`` "NAME=VALUE" texts (``evaluate.parse_threshold``), ``radii`` "R[,R...]"
    (default ``certify.DEFAULT_RADII``) joined by the radii the thresholds name
    (``certified_accuracy@R``), sorted and unique.

    Raises: OptionError (its ``flag`` set for a bad threshold or radius list)."""
    from advbench.score.certify import DEFAULT_RADII
    from advbench.score.evaluate import parse_radii, parse_threshold, threshold_radii

    thresholds = []
    for flag, bound, texts in (("--fail-under", "under", fail_under),
                               ("--fail-over", "over", fail_over)):
        for text in texts:
            try:
                thresholds.append(parse_threshold(text, bound))
            except ParameterError as e:
                raise OptionError(str(e), flag=flag) from None
    try:
        given = DEFAULT_RADII if radii is None else tuple(float(r) for r in radii.split(","))
    except ValueError:
        raise OptionError(f"{radii!r} is not a comma-separated list of numbers",
                          flag="--radii") from None
    with _as_options():
        return thresholds, parse_radii(given + threshold_radii(thresholds))


def evaluate_from_options(model: LoadedModel | str, artifacts: Sequence[PathLike] = (), *,
                          dataset: str | None = None, eps: Sequence[float] | None = None,
                          curve_attack: str = "fgsm", alpha: float | None = None,
                          source: str | None = None, models_dir: PathLike | None = None,
                          reading: dict[str, Any] | None = None, runs_dir: PathLike = "runs",
                          say: Say | None = None, say_note: Say | None = None,
                          **options: Any) -> tuple[LoadedModel, Any]:
    """`advbench evaluate`: ``model`` (a MODEL reference opened as ``attack_from_options``
    opens it, or a ``LoadedModel``) scored by ``evaluate`` on ``artifacts`` and, with an
    ``eps`` list (``check_evaluate_options``), on the accuracy-vs-eps curve of
    ``curve_attack`` (rand-fgsm's ``alpha``) crafted on ``source`` (default: the model) and
    scored on the model (``curves_from_options``, reused from or written to ``runs_dir``).

    ``options``: ``evaluate``'s keywords (samples, data_dir, thresholds, output, overwrite,
    progress, and ``evaluate.evaluate``'s).
    Returns: (the ``LoadedModel``, ``evaluate.Score``).
    Raises: OptionError (GateError: a threshold of a metric no artifact gives), then as
        ``evaluate``.
    """
    data_dir = options.get("data_dir")
    model = _open_said(model, dataset, models_dir=models_dir, data_dir=data_dir,
                       reading=reading, say_note=say_note)
    found = [] if eps is None else curves_from_options(
        curve_attack, {"eps": tuple(eps), "alpha": alpha}, [source or str(model.path)],
        [str(model.path)], dataset=scored_on(model.meta, dataset, data_dir)["dataset"],
        data_dir=data_dir, models_dir=models_dir, reading=reading, say=say,
        say_note=say_note, runs_dir=runs_dir, progress=options.get("progress"),
        **{k: options[k] for k in ("split", "limit", "start", "batch_size", "seed")
           if k in options})
    return model, evaluate(model, [*artifacts, *(str(c.path) for c in found)], dataset=dataset,
                           **options)


def audit_from_options(model: LoadedModel | str, *, eps: float | None, norm: str = "linf",
                       checks: Sequence[str] | None = None, settings: Any = None,
                       dataset: str | None = None, data_path: PathLike | None = None,
                       models_dir: PathLike | None = None,
                       reading: dict[str, Any] | None = None, surrogate: str | None = None,
                       say: Say | None = None, say_note: Say | None = None,
                       **run: Any) -> dict[str, Any]:
    """`advbench audit` (``checks`` and ``settings`` from ``audit_settings``): the budget
    (``eps`` None: the data's default, ``budgets.attack_budget("audit")``, known before the
    model loads for ``dataset``, else from the model's data set and input shape), the
    ``surrogate`` MODEL reference opened when check 3 runs, the start lines said to ``say``
    once the samples are loaded, then ``audit``.

    ``run``: ``audit``'s samples, data_dir, output, overwrite and progress.
    Returns: the audit summary.
    Raises: OptionError (no eps for data of no built-in image size, a surrogate that is the
        model itself), then as ``audit``.
    """
    from advbench.score import AUDIT_CHECKS
    from advbench.score.audit import AuditSettings

    data_dir = run.get("data_dir")
    checks, settings = tuple(checks or AUDIT_CHECKS), settings or AuditSettings()
    asked = {"eps": eps, "norm": norm}
    budget = _budget("audit", asked, dataset, data_path) if dataset else None
    model = _open_said(model, dataset, models_dir=models_dir, data_dir=data_dir,
                       reading=reading, say_note=say_note)
    budget = budget or _budget("audit", asked, dataset or model.meta.get("dataset"), data_path,
                               input_shape=tuple(model.model.input_shape[1:]))
    eps = budget.values.get("eps", eps)
    opened = None
    if surrogate and "white-box-vs-transfer" in checks:
        opened = _open_said(surrogate, dataset or model.meta.get("dataset"),
                            models_dir=models_dir, data_dir=data_dir, reading=None,
                            say_note=say_note, strict=False)
        if opened.meta.get("content_hash") == model.meta.get("content_hash"):
            raise OptionError(f"--surrogate {surrogate} is MODEL itself, so its attacks are "
                              "white-box; give another model or leave --surrogate out to "
                              "train one")

    def announce(samples: Any, count: int) -> None:
        for line in audit_lines(eps, norm, checks, settings, budget, samples, count):
            (say or _quiet)(line)

    return audit(model, eps=eps, norm=norm, checks=checks, settings=settings, dataset=dataset,
                 surrogate=opened, announce=None if say is None else announce, **run)


def train_config(defense: str, dataset: str, values: dict[str, Any],
                 notes: list[str] | None = None, *, architecture: str = "cnn",
                 brelu_t: float | None = None, devices: str | None = None,
                 **fields: Any) -> tuple[Any, Any]:
    """(defense, ``train.TrainConfig``) of `advbench train`'s options: the defense of its flag
    values (``build_defense``; defaults borrowed by image size said in ``notes``) and the
    config of ``fields`` (``TrainConfig``'s), validated. ``architecture``: a zoo name, or
    your own file (then the config names "cnn", unused: the file is the architecture);
    ``brelu_t`` None: 1.0; ``devices``: "cpu:0,cpu:1" or "gpu:0,gpu:1" (None: all GPUs, else
    the CPU; ``distribute.parse_devices``).

    Raises: OptionError (one line, naming the flags)."""
    from advbench.models.zoo import ARCHITECTURES
    from advbench.run.distribute import parse_devices
    from advbench.run.train import TrainConfig

    with _as_options():
        spec = build_defense(defense, dataset, values, notes)
        config = TrainConfig(dataset=dataset, devices=tuple(parse_devices(devices)),
                             architecture=architecture if architecture in ARCHITECTURES
                             else "cnn", brelu_t=1.0 if brelu_t is None else brelu_t, **fields)
        config.validate()
    return spec, config


def export(model: LoadedModel | str, output: PathLike, *, dataset: str | None = None,
           data_dir: PathLike | None = None, models_dir: PathLike | None = None,
           reading: dict[str, Any] | None = None, overwrite: bool = False,
           say: Say | None = None, say_note: Say | None = None) -> Path:
    """Write ``model`` (a MODEL reference opened as ``attack_from_options`` opens it, or a
    ``LoadedModel``) as a standard Keras 3 .keras file (``advbench export``): the input
    range advbench put in front is left out, so the file takes what the model took
    (``export.with_original_input``; what it takes is said to ``say_note``); the advbench
    layers it holds (to import before loading it) are said to ``say``. Returns the path.

    Raises: OutputError (``output`` cannot be written, or exists without ``overwrite``:
        checked before the model loads), then as ``open_model``."""
    from advbench.core.files import check_writable
    from advbench.models.export import (SAVEDMODEL_NOT_EXPORTED, check_keras_name,
                                        custom_layers, export_keras, with_original_input)
    from advbench.run.outputs import read_claim

    # Before the model loads (export_keras checks again, holding the output lock).
    check_keras_name(output)
    if isinstance(model, str) and (Path(model) / "saved_model.pb").is_file():
        raise ParameterError(SAVEDMODEL_NOT_EXPORTED)
    check_writable(output, "model file")
    read_claim(output, overwrite=overwrite)
    loaded = _open_said(model, dataset, models_dir=models_dir, data_dir=data_dir,
                        reading=reading, say_note=say_note)
    keras_model, contract = with_original_input(loaded.model)
    if contract:
        (say_note or _quiet)(contract)
    path = export_keras(keras_model, output, overwrite=overwrite)
    needs = custom_layers(keras_model)
    if needs:
        (say or _quiet)(f"{path} holds advbench's {', '.join(needs)}: `import "
                        "advbench.models.layers` before keras.saving.load_model")
    return path


# -- reproduce ------------------------------------------------------------------------------
def reproduction(dataset: str, profile: str, out: PathLike, *, seed: int = 0,
                 data_dir: PathLike | None = None, models_dir: PathLike | None = None,
                 stage: str | None = None, plan: bool = False,
                 progress: Progress | None = None) -> Any:
    """The ``paper.experiments.Reproduction`` of `advbench reproduce`'s options: ``stage``
    (an id of its plan) checked, and the results folder ``<out>/<dataset>/<profile>``
    created unless only the ``plan`` is asked for.

    Raises: ParameterError (an unknown data set or profile), OptionError (an unknown stage),
        OutputError (a folder that cannot be written)."""
    from advbench.core.files import ensure_folder
    from advbench.paper.experiments import Reproduction

    repro = Reproduction(dataset, profile, str(out), data_dir=data_dir, models_dir=models_dir,
                         seed=seed, progress=progress)
    if stage is not None:
        with _as_options():
            repro.stage(stage)  # an unknown stage is refused before any folder
    if not plan:
        ensure_folder(Path(out) / dataset / profile, "results folder")
    return repro


def reproduction_plan(repro: Any, out: PathLike, *, data_dir: PathLike | None = None,
                      models_dir: PathLike | None = None,
                      emit: tuple[str, PathLike] | None = None) -> list[Any]:
    """The stages of ``repro`` as a graph (``paper.plan.plan``: one dict per stage, "id",
    "name", "needs", "command", each after those it needs), or with ``emit`` (a format of
    ``paper.plan.EMITTERS`` and a folder) the paths of the job scripts written there."""
    from advbench.paper.plan import EMITTERS, base_command, plan

    nodes = plan(repro, base_command(repro, str(out),
                                     data_dir=str(data_dir) if data_dir else None,
                                     models_dir=str(models_dir) if models_dir else None))
    return list(EMITTERS[emit[0]](nodes, emit[1])) if emit else nodes


def reproduce(repro: Any, out: PathLike, *, stage: str | None = None, engine: str = "local",
              workers: int | None = None) -> Any:
    """Run ``repro`` (``reproduction``; ``out`` its results folder as given): its ``stage``
    only (returns the stage's id), or every stage not done yet, with ``engine="ray"`` as Ray
    tasks after those they need (``workers`` CPUs of a local Ray; RAY_ADDRESS a cluster),
    then write the report (returns its path)."""
    if stage is not None:
        repro.run_stage(stage)  # its seconds kept in timings.json for the report
        return stage
    if engine == "ray":
        from advbench.paper.plan import base_command, plan, reproduce_with_ray

        # Absolute paths: a Ray worker's working folder is not ours.
        settings = {"dataset": repro.dataset, "profile": repro.profile.name,
                    "out": str(Path(out).resolve()), "seed": repro.seed,
                    "data_dir": repro.data_dir and str(Path(repro.data_dir).resolve()),
                    "models_dir": repro.models_dir and str(Path(repro.models_dir).resolve())}
        reproduce_with_ray(settings, plan(repro, base_command(repro, str(out))),
                           workers=workers, progress=repro.progress)
    return repro.run()  # finds every stage done (or does what is left), writes the report


@_option_rule
def check_certify_options(*, sigma: float, **run: Any) -> None:
    """`advbench certify`'s values checked before any work (``certify.CertifyRun.validate``:
    sigma, n0, n, alpha, mode and the samples; ``run``: its fields).

    Raises: OptionError."""
    from advbench.score.certify import CertifyRun

    CertifyRun(model_path="", dataset="", sigma=sigma, **run).validate()


def distance_part_from_options(model: LoadedModel | str, artifacts: Sequence[PathLike],
                               shard: Shard, *, output: PathLike, dataset: str | None = None,
                               data_dir: PathLike | None = None,
                               models_dir: PathLike | None = None,
                               reading: dict[str, Any] | None = None,
                               distance_variant: str = "l2", progress: Progress | None = None,
                               say: Say | None = None,
                               say_note: Say | None = None) -> tuple[Path, Any]:
    """`advbench evaluate --distance-shard`: ``distance_part`` of ``shard`` written to the
    shard's own file beside ``output`` (``-o parts/df.h5`` -> ``parts/df-shard0of4.h5``,
    ``shards.shard_output``; checked writable before the model loads), ``model`` opened as
    ``attack_from_options`` opens it; a shard that holds no rows is said to ``say``.

    Returns: (the part's path, its ``evaluate.Score``).
    Raises: OutputError, then as ``distance_part``."""
    from advbench.run.shards import shard_output
    from advbench.score.evaluate import DISTANCE_BLOCK

    path = Path(shard_output(output, shard))
    check_outputs(output=path)
    model = _open_said(model, dataset, models_dir=models_dir, data_dir=data_dir,
                       reading=reading, say_note=say_note)
    part = distance_part(model, artifacts, shard, output=path, dataset=dataset,
                         data_dir=data_dir, distance_variant=distance_variant,
                         progress=progress)
    if say is not None and not any(run["rows"] for run in part.summary["runs"]):
        say(f"shard {shard} holds no rows: the runs have fewer blocks of {DISTANCE_BLOCK} "
            f"query rows than {shard.count} shards")
    return path, part
