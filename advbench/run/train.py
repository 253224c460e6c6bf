"""The training loop shared by every defense.

Adam, batch 128, a fixed 10% validation split, early stopping on validation accuracy
(patience 5) with the best weights kept: the paper authors' schedule. One compiled train step
per run; GDA's noisy copies are drawn inside that step, so an epoch over (1 + copies) passes of
the data never holds more than the clean training set in memory.

The step runs through a tf.distribute strategy (``advbench.run.distribute``; the default one on a
single device): every replica receives the global batch, draws the batch's randomness on it
(GDA noise, VAT's start direction) and takes its own rows, and the loss is summed over the
replicas' rows and divided by the global batch size, so N replicas compute the one-device
step up to float rounding. With ``checkpoint_dir`` the state after every epoch is saved, and
the same call resumes from it.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, cast

import keras
import numpy as np
import tensorflow as tf

from advbench import data
from advbench.core.checks import check_int, check_range, check_seed
from advbench.core.errors import ArtifactError, ParameterError
from advbench.core.ops import per_sample_soft_cross_entropy
from advbench.core.progress import Progress
from advbench.core.types import Model, PathLike
from advbench.defenses.base import Defense
from advbench.models.zoo import build_model, predict_labels, zoo_name
from advbench.run import TRAIN_DEFAULTS, distribute, outputs
from advbench.run.artifacts import read_arrays, write_arrays

if TYPE_CHECKING:
    from advbench.attacks.base import Attack
    from advbench.models.adapt import Preprocessing


@dataclasses.dataclass
class TrainConfig:
    dataset: str = "mnist"
    architecture: str = "cnn"
    activation: str = "relu"
    brelu_t: float = 1.0
    # The training parameters' defaults are declared once, with their flags (TRAIN_PARAMS).
    epochs: int = cast(int, TRAIN_DEFAULTS["epochs"])
    batch_size: int = cast(int, TRAIN_DEFAULTS["batch_size"])
    learning_rate: float = cast(float, TRAIN_DEFAULTS["learning_rate"])
    patience: int = cast(int, TRAIN_DEFAULTS["patience"])
    seed: int = cast(int, TRAIN_DEFAULTS["seed"])
    limit: int | None = cast("int | None", TRAIN_DEFAULTS["limit"])
    data_dir: PathLike | None = None
    strategy: str = "none"
    devices: tuple[str, ...] = ()  # TensorFlow names, "/cpu:0" (distribute.parse_devices)
    checkpoint_dir: str | None = None

    def validate(self) -> None:
        data.dataset_info(self.dataset)
        if self.strategy not in distribute.STRATEGIES:
            raise ParameterError(f"strategy must be one of {', '.join(distribute.STRATEGIES)}, "
                                 f"got {self.strategy!r}")
        for name in ("epochs", "batch_size", "patience"):
            check_int(name.replace("_", "-"), getattr(self, name), low=1)
        check_range("learning rate", self.learning_rate, low=0.0, low_inclusive=False)
        check_range("brelu t", self.brelu_t, low=0.0, low_inclusive=False)
        check_seed(self.seed)
        if self.limit is not None:
            check_int("limit", self.limit, low=1)
            if self.limit < 10:
                raise ParameterError(
                    f"limit must be >= 10 (one image per class), got {self.limit}")


def epoch_order(n: int, copies: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Shuffled (index, noisy) pairs of one epoch: every image once clean and ``copies`` times
    as a noisy copy. ``noisy`` is int32: 0 for the clean pass, else 1 + c * n + i for copy c
    of image i, a key that names the same copy in every epoch (GDA's noise drawn once)."""
    index = np.tile(np.arange(n), copies + 1)
    noisy = np.where(np.arange(n * (copies + 1)) >= n, np.arange(n * (copies + 1)) + 1,
                     0).astype(np.int32)
    perm = rng.permutation(len(index))
    return index[perm], noisy[perm]


def make_train_step(model: Model, optimizer: keras.optimizers.Optimizer, defense: Defense,
                    num_classes: int,
                    strategy: tf.distribute.Strategy | None = None) -> Callable:
    """One compiled optimisation step: (x, labels, noisy mask, seed) of the global batch ->
    (loss, accuracy), run on every replica of ``strategy`` (default: the current one)."""
    strategy = strategy or tf.distribute.get_strategy()
    if not optimizer.built:
        # Its variables must exist before the compiled step: tf.function cannot create them
        # inside strategy.run's conditional apply.
        with strategy.scope():
            optimizer.build(model.trainable_variables)

    def replica_step(x, labels, noisy, seed):
        context = tf.distribute.get_replica_context()
        replicas = context.num_replicas_in_sync
        replica = tf.cast(context.replica_id_in_sync_group, tf.int32)
        total = tf.shape(x)[0]
        # Randomness is drawn on the global batch, then each replica takes its rows: the
        # same numbers whatever the replica count.
        x = defense.perturb_batch(x, noisy, seed)
        targets = defense.target_distribution(labels, num_classes)
        first = total * replica // replicas
        last = total * (replica + 1) // replicas
        x, labels, targets = x[first:last], labels[first:last], targets[first:last]
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            per_sample = per_sample_soft_cross_entropy(targets, logits)
            if defense.has_online_loss:
                per_sample += defense.online_loss(model, x, labels, targets, logits, seed,
                                                  rows=(first, total))
            # Summed over all replicas' rows (the optimizer sums their gradients): the mean
            # over the global batch.
            loss = tf.reduce_sum(per_sample) / tf.cast(total, per_sample.dtype)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        correct = tf.equal(tf.argmax(logits, axis=1, output_type=labels.dtype), labels)
        return loss, tf.reduce_sum(tf.cast(correct, tf.float32))

    @tf.function(reduce_retracing=True)
    def step(x, labels, noisy, seed):
        loss, correct = strategy.run(replica_step, args=(x, labels, noisy, seed))
        loss = strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None)
        correct = strategy.reduce(tf.distribute.ReduceOp.SUM, correct, axis=None)
        return loss, correct / tf.cast(tf.shape(x)[0], tf.float32)

    return step


class _Fitter:
    """Runs epochs with early stopping over one training set, checkpointing each epoch."""

    def __init__(self, model, optimizer, step, config: TrainConfig, copies: int,
                 progress: Progress, checkpoint: "Checkpoint | None" = None):
        self.model, self.optimizer, self.step, self.config = model, optimizer, step, config
        self.copies, self.progress, self.checkpoint = copies, progress, checkpoint
        self.global_step = 0
        self.samples_processed = 0
        self.compute_seconds = 0.0
        self.history: list[dict] = []  # every phase's epochs
        self.extra_arrays: dict[str, list[np.ndarray]] = {}  # stored with each checkpoint

    def fit(self, x, y, x_val, y_val, *, phase: str, rng: np.random.Generator,
            resume: dict | None = None) -> None:
        cfg = self.config
        best_accuracy, best_weights, waited, first, stopped = -1.0, None, 0, 1, False
        if resume is not None:
            best_accuracy, best_weights = resume["best_accuracy"], resume["best_weights"]
            waited, first, stopped = resume["waited"], resume["epoch"] + 1, resume["stopped"]
        batches = -(-len(x) * (self.copies + 1) // cfg.batch_size)
        for epoch in range(first, cfg.epochs + 1):
            if stopped:
                break
            order, noisy = epoch_order(len(x), self.copies, rng)
            self.progress.start(f"{phase}epoch {epoch}/{cfg.epochs}", batches, unit="batches")
            started = time.perf_counter()
            loss_sum = acc_sum = 0.0
            for b in range(batches):
                sl = slice(b * cfg.batch_size, (b + 1) * cfg.batch_size)
                idx = order[sl]
                seed = tf.constant([cfg.seed, self.global_step], dtype=tf.int32)
                loss, acc = self.step(tf.constant(x[idx]), tf.constant(y[idx], tf.int32),
                                      tf.constant(noisy[sl]), seed)
                self.global_step += 1
                self.samples_processed += len(idx)
                loss_sum += float(loss)
                acc_sum += float(acc)
                self.progress.advance(samples=len(idx), status=(
                    f"loss {loss_sum / (b + 1):.4f} acc {acc_sum / (b + 1):.4f}"))
            self.compute_seconds += time.perf_counter() - started
            val_accuracy = float(np.mean(predict_labels(self.model, x_val) == y_val))
            entry = {"phase": phase.strip(": ") or "train", "epoch": epoch,
                     "loss": loss_sum / batches, "accuracy": acc_sum / batches,
                     "val_accuracy": val_accuracy,
                     "seconds": round(time.perf_counter() - started, 3)}
            self.history.append(entry)
            if val_accuracy > best_accuracy:
                best_accuracy, best_weights, waited = val_accuracy, self.model.get_weights(), 0
            else:
                waited += 1
                stopped = waited >= cfg.patience
            if self.checkpoint is not None:
                self.checkpoint.save(self, rng, phase=phase, epoch=epoch, waited=waited,
                                     stopped=stopped, best_accuracy=best_accuracy,
                                     best_weights=best_weights)
            self.progress.log(f"{phase}epoch {epoch}: loss {entry['loss']:.4f} "
                              f"acc {entry['accuracy']:.4f} val_acc {val_accuracy:.4f}")
            if stopped:
                self.progress.log(f"early stop: no validation gain in {waited} epochs")
        self.model.set_weights(best_weights)


CHECKPOINT_SCHEMA = "advbench.checkpoint"


class Checkpoint:
    """The training state after an epoch, in ``<directory>/checkpoint.h5``: model weights,
    optimizer variables, best weights, epoch, patience counter, step counters, history and
    the epoch-order RNG state; written atomically by the chief worker only (shared storage
    assumed for multi-worker runs), read by every worker when the same command is rerun."""

    def __init__(self, directory: str | Path, key: str, *, write: bool = True):
        self.path = Path(directory) / "checkpoint.h5"
        self.key, self.write = key, write

    def save(self, fitter: _Fitter, rng: np.random.Generator, *, phase: str, epoch: int,
             waited: int, stopped: bool, best_accuracy: float,
             best_weights: list[np.ndarray] | None) -> None:
        if not self.write:
            return
        attrs = {"key": self.key, "phase": phase, "epoch": epoch, "waited": waited,
                 "stopped": stopped, "best_accuracy": best_accuracy,
                 "global_step": fitter.global_step,
                 "samples_processed": fitter.samples_processed,
                 "compute_seconds": fitter.compute_seconds,
                 "history": json.dumps(fitter.history),
                 "rng_state": json.dumps(rng.bit_generator.state)}
        arrays = {}
        groups = {"weights": fitter.model.get_weights(), "best": best_weights or [],
                  "optimizer": [np.asarray(v) for v in fitter.optimizer.variables],
                  **fitter.extra_arrays}
        for group, values in groups.items():
            arrays.update({f"{group}/{i:04d}": w for i, w in enumerate(values)})
        write_arrays(self.path, CHECKPOINT_SCHEMA, attrs, arrays)

    def load(self) -> dict | None:
        """The saved state as a dict (None when there is no checkpoint); ArtifactError when
        it belongs to another training run."""
        if not self.path.exists():
            return None
        attrs, arrays = read_arrays(self.path, CHECKPOINT_SCHEMA)
        if attrs.get("key") != self.key:
            raise ArtifactError(f"{self.path} is the checkpoint of another training run (other "
                                "data, model, defense or settings); give another "
                                "--checkpoint-dir or delete it")
        groups: dict[str, list[np.ndarray]] = {}
        for name in sorted(arrays):
            group, _ = name.split("/")
            groups.setdefault(group, []).append(arrays[name])
        history = attrs["history"]
        rng_state = attrs["rng_state"]
        return {**attrs, "history": json.loads(history) if isinstance(history, str) else history,
                "rng_state": json.loads(rng_state) if isinstance(rng_state, str) else rng_state,
                "best_weights": groups.get("best", []), "weights": groups.get("weights", []),
                "optimizer": groups.get("optimizer", []), "phase1": groups.get("phase1")}

    def restore(self, state: dict, fitter: _Fitter, rng: np.random.Generator) -> None:
        """Put the saved weights, optimizer variables, counters and RNG state in place."""
        fitter.model.set_weights(state["weights"])
        fitter.optimizer.build(fitter.model.trainable_variables)
        for variable, value in zip(fitter.optimizer.variables, state["optimizer"]):
            variable.assign(value)
        fitter.global_step = int(state["global_step"])
        fitter.samples_processed = int(state["samples_processed"])
        fitter.compute_seconds = float(state["compute_seconds"])
        fitter.history = list(state["history"])
        rng.bit_generator.state = state["rng_state"]


def training_key(config: TrainConfig, defense: Defense,
                 source: dict[str, Any] | None = None) -> str:
    """The run key (``outputs.run_key``) of a training run: what determines it (with
    ``source``, the user's architecture file of ``prepare_architecture``); where it runs (strategy, devices) and where it
    checkpoints do not count, so a launcher may resume on other devices."""
    fields = dataclasses.asdict(config)
    for name in ("strategy", "devices", "checkpoint_dir"):
        fields.pop(name)
    payload = {**fields, "data_dir": str(fields["data_dir"]), "defense": repr(defense),
               "source": (source or {}).get("hash")}
    return outputs.run_key(payload)


def craft_training_adversarials(attack: Attack, model: Model, x: np.ndarray, y: np.ndarray,
                                seed: int, batch_size: int = 512,
                                progress: Progress | None = None) -> np.ndarray:
    """Adversarials of a whole training set with one attack (for static augmentation),
    batched and seeded by the attack driver (``runner.attack_arrays``)."""
    from advbench.run.runner import attack_arrays

    return attack_arrays(attack, model, x, y, seed=seed, batch_size=batch_size,
                         progress=progress)


def prepare_architecture(path: PathLike, config: TrainConfig, defense: Defense, *,
                         fine_tune: bool = False,
                         preprocessing: Preprocessing | None = None, outputs: str = "auto",
                         custom_objects: str | None = None,
                         model_output: str | None = None) -> tuple[Model, dict[str, Any]]:
    """The user's own architecture (a .keras or legacy .h5 file) made ready for ``train``.

    Loaded safely (``models.foreign.load_foreign``); weights re-drawn from its initializers
    under ``config.seed`` unless ``fine_tune``; with ``config.activation == "brelu"`` every
    ReLU turned into BRELU(``config.brelu_t``) (``models.adapt.convert_relu``); the
    defense's input layer (feature squeezing) and the model's preprocessing in front, its
    final softmax removed (``models.adapt.adapt``).

    Returns (model, source): ``source`` describes what was trained (path, kind, hash,
    fine_tune, the BRELU changes, preprocessing, outputs, notes) and goes into the
    artifact. Raises ParameterError for a SavedModel or a subclassed model.
    """
    from advbench.models import foreign
    from advbench.models.adapt import (adapt, convert_relu, describe_left, other_activations,
                                       reinitialize, select_output)
    from advbench.models.layers import FeatureSqueezing

    config.validate()
    info = data.dataset_info(config.dataset)
    kind = foreign.detect_kind(path)
    if kind not in ("keras", "h5"):
        raise ParameterError(f"train --model takes a .keras or legacy .h5 architecture; {path} "
                             f"is {foreign.MODEL_KINDS[kind]}, which advbench cannot train")
    keras.utils.set_random_seed(config.seed)
    model = reinitialize(select_output(foreign.load_foreign(path, kind, custom_objects),
                                       model_output, Path(path).name),
                         keep_weights=fine_tune)
    changes: list[str] = []
    left: dict[str, list[str]] = {}
    if config.activation == "brelu":
        left = other_activations(model)
        model, changes = convert_relu(model, config.brelu_t)
        summary = describe_left(Path(path).name, left, len(changes))
        if not changes:
            changes = [f"{Path(path).name}: no ReLU found; --act brelu changed nothing"]
        if summary:
            changes.append(summary)
    options = defense.model_options()
    front = ([FeatureSqueezing(bit_depth=options.pop("squeeze_bits"), name="feature_squeezing")]
             if "squeeze_bits" in options else [])
    if options:
        raise ParameterError(f"--defense {defense.name} changes the architecture in a way "
                             "advbench cannot apply to your model")
    adapted = adapt(model, info.input_shape, info.num_classes, preprocessing=preprocessing,
                    outputs=outputs, name=Path(path).name, front=front)
    source = {
        "path": str(Path(path).resolve()), "kind": kind,
        "hash": foreign.content_hash(path), "fine_tune": fine_tune, "brelu_changes": changes,
        "brelu_left": left,
        "preprocessing": adapted.preprocessing.as_dict(),
        "input_scale": adapted.input_scale,
        "outputs": adapted.outputs,
        "notes": adapted.notes,
    }
    return adapted.model, source


def training_line(config: TrainConfig, defense: Any, architecture: str) -> str:
    """The line that starts a training run (`advbench train`, reproduce's train stages):
    every parameter it uses."""
    from advbench.attacks.budgets import shown

    params = " ".join(f"{k}={shown(v) if isinstance(v, float) else v}"
                      for k, v in defense.params().items())
    brelu = f" (t={config.brelu_t:g})" if config.activation == "brelu" else ""
    return (f"train {architecture} {config.activation}{brelu}, defense {defense.name}"
            f"{': ' + params if params else ''}; epochs {config.epochs}, batch size "
            f"{config.batch_size}, learning rate {config.learning_rate:g}, patience "
            f"{config.patience}; seed {config.seed}; {data.display_name(config.dataset)} "
            f"train split{f', limit {config.limit}' if config.limit else ''}")


def train(config: TrainConfig, defense: Defense, *, progress: Progress | None = None,
          model: keras.Model | None = None, source: dict[str, Any] | None = None,
          announce: str = "") -> tuple[keras.Model, dict[str, Any]]:
    """Train one model; returns it with the metadata its artifact stores (with the strategy,
    replica count and devices it ran on). Only the chief worker should write the artifact
    (``distribute.is_chief``).

    ``model`` (with its ``source``, from ``prepare_architecture``) trains the user's own
    architecture instead of ``config.architecture`` of the zoo (with ``--strategy none``
    only). With ``config.checkpoint_dir`` the training state is saved after every epoch and
    a rerun of the same call resumes from it, ending with the weights of an uninterrupted
    run. ``announce``: the line (every parameter of the run) logged once the data is read.
    Raises ParameterError for bad settings or devices, ArtifactError for a checkpoint of
    another run.
    """
    config.validate()
    progress = progress or Progress(quiet=True)
    info = data.dataset_info(config.dataset)
    x, y, _ = data.load(config.dataset, "train", data_dir=config.data_dir,
                        limit=config.limit, seed=config.seed)
    val_limit = None if config.limit is None else max(10, config.limit // 9)
    x_val, y_val, _ = data.load(config.dataset, "validation", data_dir=config.data_dir,
                                limit=val_limit, seed=config.seed)
    x_test, y_test, _ = data.load(config.dataset, "test", data_dir=config.data_dir)
    if announce:
        progress.log(announce)

    keras.utils.set_random_seed(config.seed)
    tf.config.experimental.enable_op_determinism()
    if model is not None and config.strategy != "none":
        raise ParameterError("--strategy mirrored and multi-worker train the zoo's "
                             "architectures; train your own model with --strategy none")
    strategy = distribute.make_strategy(config.strategy, list(config.devices))
    with strategy.scope():
        if model is None:
            model = build_model(config.architecture, info.input_shape, info.num_classes,
                                activation=config.activation, brelu_t=config.brelu_t,
                                **defense.model_options())
        optimizer = keras.optimizers.Adam(learning_rate=config.learning_rate)
        optimizer.build(model.trainable_variables)
    step = make_train_step(model, optimizer, defense, info.num_classes, strategy)
    # The untrained state, for a defense that learns its augmented set from scratch.
    initial_state = ((model.get_weights(), [v.numpy() for v in optimizer.variables])
                     if defense.fresh_after_crafting else None)
    checkpoint = None if config.checkpoint_dir is None else Checkpoint(
        config.checkpoint_dir, training_key(config, defense, source),
        write=distribute.is_chief())
    fitter = _Fitter(model, optimizer, step, config, defense.copies, progress, checkpoint)
    rng = np.random.default_rng(config.seed)
    state = checkpoint.load() if checkpoint is not None else None
    augmented = state is not None and state["phase"] == "augmented: "
    if checkpoint is not None and state is not None:
        with strategy.scope():
            checkpoint.restore(state, fitter, rng)
        progress.log(f"resuming from {checkpoint.path} after {state['phase']}epoch "
                     f"{state['epoch']}")

    started = time.perf_counter()
    if not augmented:
        fitter.fit(x, y, x_val, y_val, phase="", rng=rng, resume=state)
    augmentation = defense.static_augmentation()
    if augmentation is not None:
        # The paper's static augmentation: adversarials of the training set, crafted once on
        # the model of the first phase, appended; training goes on over the union.
        if state is not None and augmented:
            phase_weights = model.get_weights()
            model.set_weights(state["phase1"])
        fitter.extra_arrays["phase1"] = model.get_weights()
        x_adv = craft_training_adversarials(augmentation, model, x, y, config.seed,
                                            progress=progress)
        if augmented:
            model.set_weights(phase_weights)
        elif initial_state is not None:
            # The authors' code: a fresh model learns the union (the phase-1 model only
            # crafted the adversarials, as their separately trained CNN did).
            model.set_weights(initial_state[0])
            for variable, value in zip(optimizer.variables, initial_state[1]):
                variable.assign(value)
        fitter.fit(np.concatenate([x, x_adv]), np.concatenate([y, y]),
                   x_val, y_val, phase="augmented: ", rng=rng, resume=state if augmented else None)
    history = fitter.history
    training_time = time.perf_counter() - started
    progress.close()

    test_accuracy = float(np.mean(predict_labels(model, x_test) == y_test))
    architecture = config.architecture if source is None else Path(source["path"]).stem
    metadata = {
        "dataset": info.name,
        "data_hash": data.fingerprint(info.name, config.data_dir),
        "class_names": list(info.class_names),
        "architecture": architecture if source is None else "own",
        "activation": config.activation,
        "brelu_t": config.brelu_t,
        "defense": defense.name,
        "defense_params": defense.params(),
        "zoo_name": zoo_name(architecture, config.activation, defense.name),
        "source": source,
        "input_shape": list(info.input_shape),
        "num_classes": info.num_classes,
        "seed": config.seed,
        "epochs": config.epochs,
        "epochs_run": len(history),
        "batch_size": config.batch_size,
        "learning_rate": config.learning_rate,
        "patience": config.patience,
        "limit": config.limit,
        "train_samples": int(len(x)),
        "samples_processed": int(fitter.samples_processed),
        "history": history,
        "clean_test_accuracy": test_accuracy,
        "test_samples": int(len(x_test)),
        "training_time_s": round(training_time, 3),
        **distribute.describe(strategy, config.strategy),
    }
    return model, metadata
