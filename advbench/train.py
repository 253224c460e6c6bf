"""The training loop shared by every defense.

Adam, batch 128, a fixed 10% validation split, early stopping on validation accuracy
(patience 5) with the best weights kept: the paper authors' schedule. One compiled train step
per run; GDA's noisy copies are drawn inside that step, so an epoch over (1 + copies) passes of
the data never holds more than the clean training set in memory.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import keras
import numpy as np
import tensorflow as tf

from advbench import data
from advbench.checks import check_int, check_range, check_seed
from advbench.defenses.base import Defense
from advbench.errors import ParameterError
from advbench.models import build_model, predict_labels, zoo_name
from advbench.ops import per_sample_soft_cross_entropy
from advbench.progress import Progress
from advbench.types import Model, PathLike

if TYPE_CHECKING:
    from advbench.attacks.base import Attack
    from advbench.models.adapt import Preprocessing


@dataclasses.dataclass
class TrainConfig:
    dataset: str = "mnist"
    architecture: str = "cnn"
    activation: str = "relu"
    brelu_t: float = 1.0
    epochs: int = 20
    batch_size: int = 128
    learning_rate: float = 1e-3
    patience: int = 5
    seed: int = 0
    limit: int | None = None
    data_dir: PathLike | None = None

    def validate(self) -> None:
        data.dataset_info(self.dataset)
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
    as a noisy copy."""
    index = np.tile(np.arange(n), copies + 1)
    noisy = np.repeat(np.arange(copies + 1) > 0, n)
    perm = rng.permutation(len(index))
    return index[perm], noisy[perm]


def make_train_step(model: Model, optimizer: keras.optimizers.Optimizer, defense: Defense,
                    num_classes: int) -> Callable:
    """One compiled optimisation step: (x, labels, noisy mask, seed) -> (loss, accuracy)."""

    @tf.function(reduce_retracing=True)
    def step(x, labels, noisy, seed):
        x = defense.perturb_batch(x, noisy, seed)
        targets = defense.target_distribution(labels, num_classes)
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            per_sample = per_sample_soft_cross_entropy(targets, logits)
            if defense.has_online_loss:
                per_sample += defense.online_loss(model, x, labels, targets, logits, seed)
            loss = tf.reduce_mean(per_sample)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        correct = tf.equal(tf.argmax(logits, axis=1, output_type=labels.dtype), labels)
        return loss, tf.reduce_mean(tf.cast(correct, tf.float32))

    return step


class _Fitter:
    """Runs epochs with early stopping over one training set."""

    def __init__(self, model, step, config: TrainConfig, copies: int, progress: Progress):
        self.model, self.step, self.config = model, step, config
        self.copies, self.progress = copies, progress
        self.global_step = 0
        self.samples_processed = 0
        self.compute_seconds = 0.0

    def fit(self, x, y, x_val, y_val, *, phase: str, rng: np.random.Generator) -> list[dict]:
        cfg = self.config
        history: list[dict] = []
        best_accuracy, best_weights, waited = -1.0, None, 0
        batches = -(-len(x) * (self.copies + 1) // cfg.batch_size)
        for epoch in range(1, cfg.epochs + 1):
            order, noisy = epoch_order(len(x), self.copies, rng)
            self.progress.start(f"{phase}epoch {epoch}/{cfg.epochs}", batches)
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
            history.append(entry)
            self.progress.log(f"{phase}epoch {epoch}: loss {entry['loss']:.4f} "
                              f"acc {entry['accuracy']:.4f} val_acc {val_accuracy:.4f}")
            if val_accuracy > best_accuracy:
                best_accuracy, best_weights, waited = val_accuracy, self.model.get_weights(), 0
            else:
                waited += 1
                if waited >= cfg.patience:
                    self.progress.log(f"early stop: no validation gain in {waited} epochs")
                    break
        self.model.set_weights(best_weights)
        return history


def craft_training_adversarials(attack: Attack, model: Model, x: np.ndarray, y: np.ndarray,
                                seed: int, batch_size: int = 512,
                                progress: Progress | None = None) -> np.ndarray:
    """Adversarials of a whole training set with one attack (for static augmentation)."""
    out = np.empty_like(x)
    batches = -(-len(x) // batch_size)
    if progress:
        progress.start(f"crafting {attack.name}", batches)
    for b in range(batches):
        sl = slice(b * batch_size, (b + 1) * batch_size)
        out[sl] = attack(model, x[sl], y[sl], seed=data.batch_seed(seed, sl.start)).x_adv
        if progress:
            progress.advance(samples=len(out[sl]))
    return out


def prepare_architecture(path: PathLike, config: TrainConfig, defense: Defense, *,
                         fine_tune: bool = False,
                         preprocessing: Preprocessing | None = None, outputs: str = "auto",
                         custom_objects: str | None = None) -> tuple[Model, dict[str, Any]]:
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
    from advbench.models.adapt import Preprocessing, adapt, convert_relu, reinitialize
    from advbench.models.layers import FeatureSqueezing

    config.validate()
    info = data.dataset_info(config.dataset)
    kind = foreign.detect_kind(path)
    if kind not in ("keras", "h5"):
        raise ParameterError(f"train --model takes a .keras or legacy .h5 architecture; {path} "
                             f"is {foreign.MODEL_KINDS[kind]}, which advbench cannot train")
    keras.utils.set_random_seed(config.seed)
    model = reinitialize(foreign.load_foreign(path, kind, custom_objects),
                         keep_weights=fine_tune)
    changes: list[str] = []
    if config.activation == "brelu":
        model, changes = convert_relu(model, config.brelu_t)
        if not changes:
            changes = [f"{Path(path).name}: no ReLU found; --act brelu changed nothing"]
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
        "preprocessing": (preprocessing or Preprocessing()).as_dict(),
        "outputs": adapted.outputs,
        "notes": adapted.notes,
    }
    return adapted.model, source


def train(config: TrainConfig, defense: Defense, *, progress: Progress | None = None,
          model: keras.Model | None = None, source: dict[str, Any] | None = None
          ) -> tuple[keras.Model, dict[str, Any]]:
    """Train one model; returns it with the metadata its artifact stores.

    ``model`` (with its ``source``, from ``prepare_architecture``) trains the user's own
    architecture instead of ``config.architecture`` of the zoo.
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

    keras.utils.set_random_seed(config.seed)
    tf.config.experimental.enable_op_determinism()
    if model is None:
        model = build_model(config.architecture, info.input_shape, info.num_classes,
                            activation=config.activation, brelu_t=config.brelu_t,
                            **defense.model_options())
    optimizer = keras.optimizers.Adam(learning_rate=config.learning_rate)
    step = make_train_step(model, optimizer, defense, info.num_classes)
    fitter = _Fitter(model, step, config, defense.copies, progress)
    rng = np.random.default_rng(config.seed)

    started = time.perf_counter()
    history = fitter.fit(x, y, x_val, y_val, phase="", rng=rng)
    augmentation = defense.static_augmentation()
    if augmentation is not None:
        # The paper's static augmentation: adversarials of the training set, crafted once on
        # the model of the first phase, appended; training goes on over the union.
        x_adv = craft_training_adversarials(augmentation, model, x, y, config.seed,
                                            progress=progress)
        history += fitter.fit(np.concatenate([x, x_adv]), np.concatenate([y, y]),
                              x_val, y_val, phase="augmented: ", rng=rng)
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
    }
    return model, metadata
