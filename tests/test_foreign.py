"""Foreign model files (.keras, legacy .h5, SavedModel): detection, safe loading, adapting to
advbench's convention ([0, 1] in, logits out), BRELU conversion and export."""

from __future__ import annotations

import json
import math
import os
import re
import sys
import zipfile
import zlib
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

from advbench.core.errors import ArtifactError, ParameterError
from advbench.models import adapt as adapt_mod, foreign
from advbench.models.adapt import Preprocessing, adapt, convert_relu, reinitialize
from advbench.models.export import custom_layers, export_keras
from advbench.models.gradients import SubpixelGradientConv2D, attack_model
from conftest import peak_rss, reset_peak_rss

SHAPE = (8, 8, 1)
CLASSES = 3


def small_cnn(softmax: bool, sequential: bool = True, seed: int = 0):
    """A strided conv net (the twin's case) with or without a final softmax."""
    keras.utils.set_random_seed(seed)
    layers = [keras.layers.Conv2D(4, 3, strides=2, activation="relu", name="conv"),
              keras.layers.Flatten(name="flatten"),
              keras.layers.Dense(CLASSES, activation="softmax" if softmax else None,
                                 name="scores")]
    if sequential:
        return keras.Sequential([keras.Input(SHAPE), *layers], name="seq")
    inputs = keras.Input(SHAPE)
    x = inputs
    for layer in layers:
        x = layer(x)
    return keras.Model(inputs, x, name="func")


def save(model, folder, kind):
    """``model`` written as a foreign file of ``kind``; returns the path."""
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "keras":
        path = folder / "model.keras"
        model.save(path)
    elif kind == "h5":
        path = folder / "model.h5"
        model.save(path)
    else:
        path = folder / "savedmodel"
        model.export(str(path), verbose=False)
    return path


def probe(n=12, seed=1, shape=SHAPE):
    return np.random.default_rng(seed).uniform(0, 1, (n, *shape)).astype(np.float32)


def logits_of(model, x):
    """The logits of a softmax model: its last Dense layer's pre-activation."""
    features = keras.Model(model.inputs, model.get_layer("flatten").output)(x)
    dense = model.get_layer("scores")
    return np.asarray(features @ dense.kernel + dense.bias)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Every kind of file, with and without softmax, of the same weights."""
    root = tmp_path_factory.mktemp("foreign")
    softmax = small_cnn(softmax=True)
    plain = small_cnn(softmax=False)
    plain.set_weights(softmax.get_weights())
    out = {}
    for kind in foreign.FOREIGN_KINDS:
        out[kind, True] = save(softmax, root / f"{kind}-softmax", kind)
        out[kind, False] = save(plain, root / f"{kind}-logits", kind)
    return out, softmax


# -- detection -------------------------------------------------------------------------------
def test_kinds_are_detected_from_the_content(files, tmp_path):
    paths, _ = files
    for (kind, _), path in paths.items():
        assert foreign.detect_kind(path) == kind
        renamed = tmp_path / f"{kind}-renamed.bin"
        if path.is_file():
            renamed.write_bytes(path.read_bytes())
            assert foreign.detect_kind(renamed) == kind


def test_our_artifacts_and_other_files(tmp_path, tiny_model):
    from advbench.run.artifacts import ATTACK_SCHEMA, save_model, write_arrays

    save_model(tmp_path / "ours.h5", tiny_model, {"dataset": "mnist"})
    assert foreign.detect_kind(tmp_path / "ours.h5") == "advbench"
    write_arrays(tmp_path / "attack.h5", ATTACK_SCHEMA, {}, {"x": np.zeros(2)})
    tiny_model.save_weights(tmp_path / "only.weights.h5")
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "empty").mkdir()
    accepted = foreign.accepted_kinds()
    for name, message in [
        ("attack.h5", "is a 'advbench.attack' artifact, not a model; pass " + accepted),
        ("only.weights.h5", "holds Keras weights without the architecture; save the whole model "
                            "(model.save('model.keras'))"),
        ("notes.txt", "is not a model file advbench reads; pass " + accepted),
        ("empty", "is a folder without saved_model.pb; a model is " + accepted),
    ]:
        with pytest.raises(ArtifactError, match=re.escape(f"{tmp_path / name} {message}")):
            foreign.detect_kind(tmp_path / name)
    assert accepted == ("an advbench model artifact (.h5 from `advbench train`), a Keras 3 "
                        ".keras file, a legacy Keras .h5 full-model file, a TensorFlow "
                        "SavedModel directory")


def test_content_hash_of_files_and_folders(files, tmp_path):
    paths, _ = files
    a = foreign.content_hash(paths["keras", True])
    assert a == foreign.content_hash(paths["keras", True]) != foreign.content_hash(
        paths["keras", False])
    folder = paths["savedmodel", True]
    assert len(foreign.content_hash(folder)) == 64
    assert foreign.content_hash(folder) != foreign.content_hash(paths["savedmodel", False])


# -- outputs: softmax removed, probabilities refused -------------------------------------------
@pytest.mark.parametrize("kind", ["keras", "h5"])
@pytest.mark.parametrize("softmax", [True, False])
def test_keras_files_give_logits(files, kind, softmax):
    paths, reference = files
    model = foreign.load_foreign(paths[kind, softmax])
    adapted = adapt(model, SHAPE, CLASSES, name="m")
    x = probe()
    np.testing.assert_allclose(adapted.model(x), logits_of(reference, x), rtol=1e-5, atol=1e-6)
    assert adapted.outputs == ("softmax removed" if softmax else "logits")
    assert ("m: its final softmax ('scores') is removed: advbench attacks the logits"
            in adapted.notes) == softmax


def test_savedmodel_softmax_is_refused_then_read_as_probabilities(files):
    paths, reference = files
    model = foreign.load_foreign(paths["savedmodel", True])
    with pytest.raises(ArtifactError, match=re.escape(
            "m's outputs look like probabilities (non-negative, rows summing to 1) but it has "
            "no final softmax layer to remove; pass --outputs probabilities (advbench takes "
            "their log) or --outputs logits (they are logits)")):
        adapt(model, SHAPE, CLASSES, name="m")
    adapted = adapt(model, SHAPE, CLASSES, outputs="probabilities", name="m")
    assert adapted.outputs == "log of probabilities"
    x = probe()
    expected = tf.nn.log_softmax(logits_of(reference, x)).numpy()
    np.testing.assert_allclose(adapted.model(x), expected, rtol=1e-4, atol=1e-5)
    assert attack_model(adapted.model) is adapted.model  # no twin through a compiled graph


def test_savedmodel_logits(files):
    paths, reference = files
    adapted = adapt(foreign.load_foreign(paths["savedmodel", False]), SHAPE, CLASSES)
    x = probe()
    np.testing.assert_allclose(adapted.model(x), logits_of(reference, x), rtol=1e-5, atol=1e-6)
    with tf.GradientTape() as tape:
        xt = tf.constant(x)
        tape.watch(xt)
        out = adapted.model(xt)[:, 0]
    assert np.abs(tape.gradient(out, xt).numpy()).sum() > 0


def test_probabilities_without_a_softmax_layer_are_refused(tmp_path):
    keras.utils.set_random_seed(0)
    inputs = keras.Input(SHAPE)
    x = keras.layers.Dense(CLASSES, activation="softmax")(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, keras.layers.Identity()(x))
    with pytest.raises(ArtifactError, match="outputs look like probabilities"):
        adapt(model, SHAPE, CLASSES)
    assert adapt(model, SHAPE, CLASSES, outputs="logits").outputs == "logits"
    logged = adapt(model, SHAPE, CLASSES, outputs="probabilities").model
    np.testing.assert_allclose(logged(probe()), np.log(model(probe())), rtol=1e-5, atol=1e-6)


def test_softmax_layer_and_activation_layer_are_removed():
    keras.utils.set_random_seed(0)
    for final in (keras.layers.Softmax(name="sm"), keras.layers.Activation("softmax", name="sm")):
        inputs = keras.Input(SHAPE)
        z = keras.layers.Dense(CLASSES, name="z")(keras.layers.Flatten()(inputs))
        model = keras.Model(inputs, final(z))
        adapted = adapt(model, SHAPE, CLASSES)
        np.testing.assert_allclose(adapted.model(probe()), keras.Model(inputs, z)(probe()),
                                   rtol=1e-6)
        assert [layer.name for layer in adapted.model.layers][-1] == "z"


def test_nested_models_are_flattened_for_the_twin():
    inner = small_cnn(softmax=True)
    inputs = keras.Input(SHAPE)
    outer = keras.Model(inputs, inner(inputs))
    adapted = adapt(outer, SHAPE, CLASSES)
    assert not any(isinstance(layer, keras.Model) for layer in adapted.model.layers)
    twin = attack_model(adapted.model)
    assert any(isinstance(layer, SubpixelGradientConv2D) for layer in twin.layers)
    np.testing.assert_allclose(adapted.model(probe()), logits_of(inner, probe()), rtol=1e-5,
                               atol=1e-6)


@pytest.mark.parametrize("sequential", [True, False])
def test_attack_twin_works_for_foreign_graph_models(files, tmp_path, sequential):
    model = small_cnn(softmax=True, sequential=sequential)
    adapted = adapt(foreign.load_foreign(save(model, tmp_path, "keras")), SHAPE, CLASSES).model
    twin = attack_model(adapted)
    assert twin is not adapted
    assert any(isinstance(layer, SubpixelGradientConv2D) for layer in twin.layers)
    x = tf.constant(probe())
    labels = tf.constant(np.arange(len(x)) % CLASSES)
    grads = []
    for m in (adapted, twin):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, m(x))
        grads.append(tape.gradient(loss, x).numpy())
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("outputs_shape, message", [
    ((5,), "m outputs 5 class scores but the data has 3 classes; pass the data it was trained "
           "on"),
    ((1,), "m outputs 1 class scores but the data has 3 classes (a sigmoid binary classifier? "
           "make its last layer Dense(2)); pass the data it was trained on"),
    ((2, 3), "m outputs shape (None, 2, 3); advbench needs one axis of class scores, (batch, "
             "classes)"),
])
def test_output_shape_checks(outputs_shape, message):
    inputs = keras.Input(SHAPE)
    x = keras.layers.Dense(int(np.prod(outputs_shape)))(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, keras.layers.Reshape(outputs_shape)(x))
    with pytest.raises(ArtifactError, match=re.escape(message)):
        adapt(model, SHAPE, CLASSES, outputs="logits", name="m")


def test_inputs_without_channel_axis_and_channels_first():
    keras.utils.set_random_seed(0)
    flat = keras.Sequential([keras.Input((8, 8)), keras.layers.Flatten(),
                             keras.layers.Dense(CLASSES)])
    adapted = adapt(flat, SHAPE, CLASSES)
    np.testing.assert_allclose(adapted.model(probe()), flat(probe()[..., 0]), rtol=1e-6)
    assert "takes (8, 8) images without a channel axis" in adapted.notes[0]
    first = keras.Sequential([keras.Input((3, 8, 8)), keras.layers.Flatten(),
                              keras.layers.Dense(CLASSES)])
    x = probe(shape=(8, 8, 3))
    np.testing.assert_allclose(adapt(first, (8, 8, 3), CLASSES).model(x),
                               first(x.transpose(0, 3, 1, 2)), rtol=1e-6)
    with pytest.raises(ArtifactError, match=re.escape(
            "m takes images of shape (8, 8) but the data's are (9, 9, 1); pass the data it was "
            "trained on (or resize the data to its input)")):
        adapt(flat, (9, 9, 1), CLASSES, name="m")


# -- preprocessing -----------------------------------------------------------------------------
def test_model_expecting_0_255_and_normalisation(tmp_path):
    reference = small_cnn(softmax=False)
    # The same network for 0-255 inputs, mean 10 and std 2: first-layer weights rescaled.
    kernel, bias, *rest = reference.get_weights()
    model = small_cnn(softmax=True)
    scale = 1.0 / 255.0
    model.set_weights([kernel * scale, bias, *rest])
    path = save(model, tmp_path, "h5")
    pre = Preprocessing(input_range=(0.0, 255.0))
    adapted = adapt(foreign.load_foreign(path), SHAPE, CLASSES, preprocessing=pre, name="m")
    np.testing.assert_allclose(adapted.model(probe()), reference(probe()), rtol=1e-4, atol=1e-5)
    assert "m: inputs mapped from [0, 1] to the model's 0..255" in adapted.notes
    normalised = Preprocessing((0.0, 255.0), mean=(10.0,), std=(2.0,))
    # kernel' . (255 x - 10) / 2 + bias' = kernel . x + bias
    model.set_weights([kernel * 2.0 * scale, bias + (kernel * 10.0 * scale).sum(axis=(0, 1, 2)),
                       *rest])
    adapted = adapt(model, SHAPE, CLASSES, preprocessing=normalised)
    np.testing.assert_allclose(adapted.model(probe()), reference(probe()), rtol=1e-4, atol=1e-4)
    assert attack_model(adapted.model) is not adapted.model  # the twin still applies


@pytest.mark.parametrize("pre, message", [
    (Preprocessing((1.0, 0.0)), "--input-range must be LOW:HIGH with HIGH > LOW, got 1:0"),
    (Preprocessing(mean=(1.0, 2.0)), "--mean has 2 values for 1-channel images; give one value "
                                     "or 1"),
    (Preprocessing(std=(0.0,)), "--std values must be > 0, got [0.0]"),
])
def test_bad_preprocessing(pre, message):
    with pytest.raises(ParameterError, match=re.escape(message)):
        adapt(small_cnn(softmax=False), SHAPE, CLASSES, preprocessing=pre)


def test_parse_range_and_channels():
    assert adapt_mod.parse_range("0:255") == (0.0, 255.0)
    assert adapt_mod.parse_channels("0.5,0.25", "--mean") == (0.5, 0.25)
    with pytest.raises(ParameterError, match=re.escape(
            "--input-range '0-255' is not LOW:HIGH (e.g. 0:255)")):
        adapt_mod.parse_range("0-255")
    with pytest.raises(ParameterError, match=re.escape(
            "--std 'a,b' is not a comma list of numbers")):
        adapt_mod.parse_channels("a,b", "--std")


# -- safety ----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["keras", "h5"])
def test_lambda_layers_never_run(tmp_path, kind):
    marker = tmp_path / "marker"

    def write_marker(x, where=str(marker)):
        with open(where, "w") as f:
            f.write("code from the file ran")
        return x

    inputs = keras.Input(SHAPE)
    x = keras.layers.Lambda(write_marker, name="sneaky")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(CLASSES)(keras.layers.Flatten()(x)))
    path = save(model, tmp_path / "files", kind)
    marker.unlink()  # building the model ran the function once
    with pytest.raises(ArtifactError, match=re.escape(
            f"{path}: layer 'sneaky' is a Lambda layer, whose code is stored in the file and "
            "never run by advbench; replace it by a registered custom layer and pass "
            "--custom-objects MODULE")):
        foreign.load_foreign(path)
    assert not marker.exists()


CUSTOM_MODULE = '''
import keras


class Doubler(keras.layers.Layer):
    def call(self, x):
        return 2.0 * x


class Net(keras.Model):
    def __init__(self, classes=3, **kwargs):
        super().__init__(**kwargs)
        self.classes = classes
        self.conv = keras.layers.Conv2D(4, 3, strides=2, activation="relu")
        self.flat = keras.layers.Flatten()
        self.dense = keras.layers.Dense(classes)

    def call(self, x):
        return self.dense(self.flat(self.conv(x)))

    def get_config(self):
        return {**super().get_config(), "classes": self.classes}
'''


@pytest.fixture
def custom_module(tmp_path, monkeypatch):
    name = f"user_layers_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(CUSTOM_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = __import__(name)
    yield name, module
    sys.modules.pop(name, None)


def test_unknown_custom_layers_are_refused_unless_given(tmp_path, custom_module):
    name, module = custom_module
    inputs = keras.Input(SHAPE)
    x = module.Doubler(name="double")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(CLASSES)(keras.layers.Flatten()(x)))
    path = save(model, tmp_path / "files", "keras")
    with pytest.raises(ArtifactError, match=re.escape(
            f"{path}: layer 'double' uses Doubler from {name}, which is not Keras' own; if you "
            "trust it, pass --custom-objects MODULE (your module that defines it)")):
        foreign.load_foreign(path)
    loaded = foreign.load_foreign(path, custom_objects=name)
    np.testing.assert_allclose(loaded(probe()), model(probe()), rtol=1e-6)


def test_subclassed_models_fall_back_to_tensorflow_gradients(tmp_path, custom_module):
    name, module = custom_module
    keras.utils.set_random_seed(0)
    net = module.Net()
    net(probe())
    path = tmp_path / "net.keras"
    net.save(path)
    with pytest.raises(ArtifactError, match="uses Net from"):
        foreign.load_foreign(path)
    adapted = adapt(foreign.load_foreign(path, custom_objects=name), SHAPE, CLASSES, name="net")
    assert "net: a subclassed model (or SavedModel): attacks use TensorFlow's own gradient" in \
        adapted.notes
    assert attack_model(adapted.model) is adapted.model
    np.testing.assert_allclose(adapted.model(probe()), net(probe()), rtol=1e-5, atol=1e-6)


def test_custom_objects_module_must_import():
    with pytest.raises(ParameterError, match=re.escape(
            "--custom-objects no_such_module_here: cannot import it (ModuleNotFoundError: No "
            "module named 'no_such_module_here'); pass an importable module (on PYTHONPATH) "
            "that defines your layers")):
        foreign.load_custom_objects("no_such_module_here")


def hostile_savedmodel(path, body, signature=True):
    """A SavedModel whose ``serve`` runs ``body(x)`` (for its side effects) and returns
    logits: what an attacker would write with TensorFlow."""

    class Hostile(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable(tf.ones((64, CLASSES)))

        @tf.function(input_signature=[tf.TensorSpec([None, *SHAPE], tf.float32)])
        def serve(self, x):
            body(x)
            return tf.reshape(x, (-1, 64)) @ self.w

    module = Hostile()
    tf.saved_model.save(module, str(path),
                        signatures={"serving_default": module.serve} if signature else None)
    return path


def refusal(path, op, function):
    """The one-line refusal of ``op`` in ``function`` (a regular expression: TensorFlow
    numbers its functions)."""
    return (re.escape(f"{path}: the SavedModel has op {op} (in ") + function
            + re.escape(", which is not among the ops advbench runs (computation only: no "
                        "files, network, printing or Python); export the model for inference "
                        "only") + "$")


def _print_to_file(marker):
    def body(x):
        tf.print("attacker text", output_stream=f"file://{marker}")
    return body


def _inner_print(marker):
    @tf.function
    def inner(x):
        tf.print("attacker text", output_stream=f"file://{marker}")
        return x

    return inner


def _dataset_save(marker):
    def body(x):
        tf.data.Dataset.from_tensors(x).save(str(marker))
    return body


def _tfrecord(marker):
    def body(x):
        tf.data.TFRecordDataset([str(marker)]).reduce(tf.constant(""), lambda a, b: b)
    return body


def _csv(marker):
    def body(x):
        tf.data.experimental.CsvDataset([str(marker)], [tf.float32]).reduce(
            tf.constant(0.0), lambda a, b: b)
    return body


def _snapshot(marker):
    def body(x):
        tf.data.Dataset.from_tensors(x).snapshot(str(marker)).reduce(
            tf.constant(0.0), lambda a, b: a)
    return body


def _py_function(marker):
    def body(x):
        tf.py_function(lambda t: marker.write_text("python ran") and t, [x], tf.float32)
    return body


def _data_service(marker):
    def body(x):
        # Sends the data to a tf.data service dispatcher over the network.
        dataset = tf.data.Dataset.from_tensors(x).apply(tf.data.experimental.service.distribute(
            "parallel_epochs", "grpc://localhost:5050", job_name=str(marker)))
        dataset.reduce(tf.constant(0.0), lambda a, b: a)
    return body


def _save_v2(marker):
    def body(x):
        tf.raw_ops.SaveV2(prefix=str(marker), tensor_names=["x"], shape_and_slices=[""],
                          tensors=[x])
    return body


@pytest.mark.parametrize("make_body, op, function", [
    (_print_to_file, "PrintV2", r"__inference_serve_\d+\)"),
    (_inner_print, "PrintV2", r"__inference_inner_\d+\)"),
    (lambda m: lambda x: tf.io.write_file(str(m), "graph code ran"), "WriteFile",
     r"__inference_serve_\d+\)"),
    (lambda m: lambda x: tf.io.read_file(str(m)), "ReadFile", r"__inference_serve_\d+\)"),
    (_dataset_save, "SaveDataset", r"__inference_serve_\d+\)"),
    (_tfrecord, "TFRecordDataset", r"__inference_Dataset_flat_map_read_one_file_\d+\)"),
    (_csv, "CSVDatasetV2", r"__inference_serve_\d+\)"),
    (_snapshot, "ParallelInterleaveDatasetV4",
     r"__inference_Dataset_snapshot\(\)_reader_fu_lambda_\d+\)"),
    (_py_function, "EagerPyFunc", r"__inference_serve_\d+\)"),
    (_data_service, "UncompressElement",
     r"__inference_DataServiceDataset_uncompress_lambda_\d+\)"),
    (_save_v2, "SaveV2", r"__inference_serve_\d+\)"),
], ids=["print-to-file", "print-in-nested-function", "write-file", "read-file",
        "dataset-save", "tfrecord", "csv", "snapshot", "py-function", "data-service",
        "checkpoint-op-outside-the-saver"])
def test_hostile_savedmodels_are_refused_before_anything_runs(tmp_path, make_body, op,
                                                              function):
    import shutil

    marker = tmp_path / "marker"
    path = hostile_savedmodel(tmp_path / "hostile", make_body(marker))
    if marker.is_dir():  # Dataset.save ran while TensorFlow traced it, in the attacker's hands
        shutil.rmtree(marker)
    with pytest.raises(ArtifactError, match=refusal(path, op, function)):
        foreign.load_foreign(path)
    assert not marker.exists()
    assert op not in foreign.allowed_ops()


def test_print_to_file_is_refused_in_a_function_no_signature_calls(tmp_path):
    """Every function of the graph is checked, not only those the endpoints reach."""
    marker = tmp_path / "marker"

    class Hidden(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable(tf.ones((64, CLASSES)))

        @tf.function(input_signature=[tf.TensorSpec([None, *SHAPE], tf.float32)])
        def serve(self, x):
            return tf.reshape(x, (-1, 64)) @ self.w

        @tf.function(input_signature=[tf.TensorSpec([], tf.float32)])
        def other(self, x):
            tf.print("attacker text", output_stream=f"file://{marker}")
            return x

    module = Hidden()
    path = tmp_path / "hidden"
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    with pytest.raises(ArtifactError, match=refusal(path, "PrintV2",
                                                    r"__inference_other_\d+\)")):
        foreign.load_foreign(path)
    assert not marker.exists()


def test_the_allowed_ops_are_plain_data():
    document = json.loads(foreign.ALLOWED_OPS_FILE.read_text())
    assert set(document["ops"]) == foreign.allowed_ops()
    assert document["ops"] == sorted(set(document["ops"]))
    assert not foreign.allowed_ops() & {"PrintV2", "WriteFile", "ReadFile", "EagerPyFunc",
                                        "PyFunc", "SaveV2", "RestoreV2", "MergeV2Checkpoints",
                                        "StringFormat", "MatchingFiles", "ImmutableConst"}


@pytest.mark.parametrize("architecture", ["resnet", "mlp"])
def test_zoo_savedmodels_are_accepted(tmp_path, architecture):
    from advbench.models.zoo import build_model

    model = build_model(architecture, (28, 28, 1), 10, activation="brelu", squeeze_bits=4)
    model.export(str(tmp_path / "zoo"), verbose=False)
    foreign.check_savedmodel_safe(tmp_path / "zoo")
    foreign.check_savedmodel_memory(tmp_path / "zoo")
    x = probe(4, shape=(28, 28, 1))
    np.testing.assert_allclose(foreign.load_foreign(tmp_path / "zoo")(x), model(x), rtol=1e-5,
                               atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(n for n in dir(keras.applications) if n[0].isupper()))
def test_every_keras_application_exported_is_accepted(tmp_path, name):
    """Every keras.applications architecture (weights=None, its smallest input), exported
    with model.export, passes the allow-list (minutes each for the large ones)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    try:
        from savedmodel_ops import build_application
    finally:
        sys.path.pop(0)
    build_application(name).export(str(tmp_path / name), verbose=False)
    foreign.check_savedmodel_safe(tmp_path / name)
    foreign.check_savedmodel_memory(tmp_path / name)



# -- a SavedModel's allocations are bounded before it runs in advbench's process -----------------
def allocating_savedmodel(path, allocate, shape=SHAPE):
    """A SavedModel whose ``serve`` returns logits that depend on ``allocate(x)`` (a tensor),
    so that TensorFlow cannot prune the allocation."""

    class Allocating(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable(tf.ones((math.prod(shape), CLASSES)))

        @tf.function(input_signature=[tf.TensorSpec([None, *shape], tf.float32)])
        def serve(self, x):
            big = tf.reduce_sum(allocate(x))
            return tf.reshape(x, (-1, math.prod(shape))) @ self.w + 0.0 * big

    module = Allocating()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


def _grow_a_list(x):
    """A while loop that pushes 4 MB per step for 4,000 steps (16 GB): shapes inference cannot
    bound a loop."""
    def body(i, tensors):
        return i + 1, tf.raw_ops.TensorListPushBack(
            input_handle=tensors, tensor=tf.fill([1_000_000], tf.cast(i, tf.float32)))

    empty = tf.raw_ops.TensorListReserve(element_shape=[1_000_000], num_elements=0,
                                         element_dtype=tf.float32)
    _, tensors = tf.while_loop(lambda i, t: i < 4000, body, [0, empty])
    return tf.raw_ops.TensorListGetItem(input_handle=tensors, index=3999,
                                        element_shape=[1_000_000], element_dtype=tf.float32)


@pytest.mark.parametrize("allocate, op, node, shape, size", [
    (lambda x: tf.zeros([60000, 60000]), "Fill", "zeros", "(60000, 60000)", "13.4 GiB"),
    (lambda x: tf.tile(x, [1, 9000, 9000, 1]), "Tile", "Tile", "(None, 72000, 72000, 1)",
     "19.3 GiB"),
    (lambda x: tf.broadcast_to(x[:1, :1, :1, :1], [70000, 70000, 1, 1]), "BroadcastTo",
     "BroadcastTo", "(70000, 70000, 1, 1)", "18.3 GiB"),
], ids=["zeros", "tile", "broadcast-to"])
def test_a_savedmodel_allocating_a_static_size_is_refused_before_it_loads(
        tmp_path, allocate, op, node, shape, size):
    path = allocating_savedmodel(tmp_path / "big", allocate)
    before = reset_peak_rss()
    with pytest.raises(ArtifactError) as info:
        foreign.load_foreign(path)
    assert re.fullmatch(re.escape(f"{path}: the SavedModel's op {op} ({node} in ")
                        + r"__inference_serve_\d+"
                        + re.escape(f") makes a tensor of shape {shape}, {size} for one "
                                    "image, more than the 4 GiB advbench allows; refusing it"),
                        str(info.value)), str(info.value)
    assert peak_rss() - before < 200 * 1024  # KiB: nothing of the size was allocated


#: TensorFlow's CPU allocator, as its out-of-memory messages name it: oneDNN's when its kernels
#: are on (advbench's default, advbench/__init__.py), else TensorFlow's own.
CPU_ALLOCATOR = "cpu" if os.environ.get("TF_ENABLE_ONEDNN_OPTS") == "0" else "mklcpu"


@pytest.mark.parametrize("allocate, reason", [
    # A shape computed from the pixels: unknown to shape inference.
    (lambda x: tf.zeros(tf.stack([tf.cast(tf.reduce_max(x) * 0 + 60000, tf.int32)] * 2)),
     "ResourceExhaustedError: OOM when allocating tensor with shape[60000,60000] and type "
     f"float on /job:localhost/replica:0/task:0/device:CPU:0 by allocator {CPU_ALLOCATOR}"),
    pytest.param(_grow_a_list, "ResourceExhaustedError: OOM when allocating tensor with "
                 "shape[1000000] and type float on /job:localhost/replica:0/task:0/device:CPU:0 "
                 f"by allocator {CPU_ALLOCATOR}", marks=pytest.mark.slow),
], ids=["shape-from-data", "growing-loop"])
def test_a_savedmodel_allocating_as_it_runs_is_refused_by_its_probe(tmp_path, allocate,
                                                                     reason):
    import resource

    path = allocating_savedmodel(tmp_path / "grows", allocate)
    with pytest.raises(ArtifactError) as info:
        foreign.open_foreign(path, SHAPE, CLASSES, preprocessing=Preprocessing())
    assert str(info.value) == (
        f"{path}: the SavedModel's first forward pass on 8 images failed in a process limited "
        f"to 2 GiB of memory ({reason}); refusing it: it allocates more than advbench allows, "
        "or does not run on these images")
    # The child's peak is its limit (RLIMIT_DATA bounds the data segment, not the whole RSS).
    assert resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss < 2.5 * 2 ** 20  # KiB


def test_the_probe_limit_grows_with_the_weights_the_folder_holds(tmp_path):
    """A large real model (ConvNeXtXLarge: 1.4 GB of weights) must fit its probe: the limit
    is PROBE_MEMORY plus PROBE_WEIGHT_FACTOR times the bytes of variables/, which are on disk
    (not a size the file declares)."""
    (tmp_path / "variables").mkdir()
    (tmp_path / "variables" / "variables.data-00000-of-00001").write_bytes(b"\0" * 1000)
    (tmp_path / "variables" / "variables.index").write_bytes(b"\0" * 24)
    assert foreign.probe_memory(tmp_path) == foreign.PROBE_MEMORY + 3 * 1024
    assert foreign.probe_memory(tmp_path / "none") == foreign.PROBE_MEMORY


def test_a_savedmodel_that_runs_passes_its_probe(tmp_path):
    path = allocating_savedmodel(tmp_path / "fine", lambda x: tf.zeros([100, 100]))
    assert foreign.probe_savedmodel(path, probe(12)) > 0
    assert foreign.probe_savedmodel(path) > 0  # uniform images of the endpoint's shape
    # Passed once in this process, the same files and images are not probed again; a file
    # changed since is.
    key = foreign._probe_key(path, probe(12), foreign.probe_memory(path))
    assert key in foreign._PROBED
    (path / "assets").mkdir(exist_ok=True)
    (path / "assets" / "note.txt").write_text("changed")
    assert foreign._probe_key(path, probe(12), foreign.probe_memory(path)) not in foreign._PROBED


def test_evaluate_refuses_a_savedmodel_allocating_gigabytes_in_one_line(tmp_path,
                                                                       fake_data_dir):
    from click.testing import CliRunner

    from advbench.cli import main

    path = allocating_savedmodel(tmp_path / "big", lambda x: tf.zeros([60000, 60000]),
                                 shape=(28, 28, 1))
    result = CliRunner().invoke(main, ["evaluate", str(path), "--dataset", "mnist",
                                       "--data-dir", str(fake_data_dir), "--limit", "10", "-q"])
    assert result.exit_code == 1, result.output
    assert re.fullmatch(re.escape(f"Error: {path}: the SavedModel's op Fill (zeros in ")
                        + r"__inference_serve_\d+" + re.escape(
                            ") makes a tensor of shape (60000, 60000), 13.4 GiB for one image, "
                            "more than the 4 GiB advbench allows; refusing it") + "\n",
                        result.output), result.output

# -- BRELU conversion and fresh weights ---------------------------------------------------------
def relu_zoo():
    """One of each way of writing a ReLU, plus activations that are not plain ReLUs."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input(SHAPE)
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv_relu")(inputs)
    x = keras.layers.Conv2D(4, 3, name="conv_plain")(x)
    x = keras.layers.ReLU(name="relu_layer")(x)
    x = keras.layers.Conv2D(4, 1, name="conv_tanh", activation="tanh")(x)
    x = keras.layers.Activation("relu", name="act_relu")(x)
    x = keras.layers.LeakyReLU(negative_slope=0.1, name="leaky")(x)
    x = keras.layers.ReLU(max_value=6.0, name="relu6")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(6, activation="relu", name="dense_relu")(x)
    return keras.Model(inputs, keras.layers.Dense(CLASSES, activation="softmax", name="out")(x))


@pytest.mark.parametrize("sequential", [False, True])
def test_convert_relu_replaces_every_relu_and_nothing_else(sequential):
    model = relu_zoo()
    if sequential:
        model = keras.Sequential([keras.Input(SHAPE), *model.layers[1:]])
    converted, changes = convert_relu(model, brelu_t=0.5)
    assert changes == [
        "conv_relu: activation relu -> linear + BRELU(t=0.5) (conv_relu_brelu)",
        "relu_layer: ReLU relu -> BRELU(t=0.5)",
        "act_relu: Activation relu -> BRELU(t=0.5)",
        "dense_relu: activation relu -> linear + BRELU(t=0.5) (dense_relu_brelu)",
    ]
    for layer in converted.layers:
        assert getattr(getattr(layer, "activation", None), "__name__", "") != "relu"
        assert not isinstance(layer, keras.layers.Activation) or layer.name != "act_relu"
        if isinstance(layer, keras.layers.ReLU) and layer.name != "relu6":
            assert float(layer.max_value) == 0.5
    # Nothing else changed: the same weights, and with a cap no activation reaches the
    # network computes what the original computes.
    for a, b in zip(model.get_weights(), converted.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    uncapped, _ = convert_relu(model, brelu_t=1e9)
    np.testing.assert_allclose(uncapped(probe()), model(probe()), rtol=1e-6)
    kept = {layer.name: type(layer) for layer in model.layers
            if not adapt_mod.is_relu(layer) and not isinstance(layer, keras.layers.InputLayer)}
    assert {name: type(converted.get_layer(name)) for name in kept} == kept
    assert not set(map(id, converted.layers)) & set(map(id, model.layers))


def test_reinitialize_draws_new_weights_unless_fine_tuning():
    model = relu_zoo()
    fresh = reinitialize(model)
    assert not np.array_equal(fresh.get_weights()[0], model.get_weights()[0])
    tuned = reinitialize(model, keep_weights=True)
    for a, b in zip(model.get_weights(), tuned.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert tuned.layers[1] is not model.layers[1]


# -- export ----------------------------------------------------------------------------------
@pytest.mark.parametrize("defended", [False, True])
def test_export_round_trip_gives_identical_logits(tmp_path, defended):
    from advbench.models.zoo import build_model

    keras.utils.set_random_seed(0)
    model = build_model("mlp", SHAPE, CLASSES, activation="brelu",
                        squeeze_bits=3 if defended else None)
    path = export_keras(model, tmp_path / "out" / "model.keras")
    assert custom_layers(model) == (["FeatureSqueezing"] if defended else [])
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(loaded.predict(probe(), verbose=0),
                                  model.predict(probe(), verbose=0))
    assert not list((tmp_path / "out").glob(".*tmp*"))


def test_export_of_an_adapted_model_needs_nothing_of_advbench(tmp_path, files):
    paths, _ = files
    adapted = adapt(foreign.load_foreign(paths["h5", True]), SHAPE, CLASSES,
                    preprocessing=Preprocessing((0.0, 255.0), (3.0,), (2.0,))).model
    path = export_keras(adapted, tmp_path / "a.keras")
    config = foreign.read_keras_config(path, "keras")
    foreign.check_config_safe(config, path)  # Keras' own layers only
    np.testing.assert_array_equal(keras.saving.load_model(path)(probe()), adapted(probe()))


def test_export_refusals(tmp_path, files):
    paths, _ = files
    with pytest.raises(ParameterError, match=re.escape(
            "export writes a Keras 3 file; name it *.keras, not m.h5")):
        export_keras(small_cnn(softmax=False), tmp_path / "m.h5")
    saved = adapt(foreign.load_foreign(paths["savedmodel", False]), SHAPE, CLASSES).model
    with pytest.raises(ParameterError, match="a SavedModel cannot be written as a .keras file"):
        export_keras(saved, tmp_path / "m.keras")


def test_export_goes_through_the_output_guards(tmp_path, monkeypatch):
    from advbench.core import files
    from advbench.core.errors import OutputError

    model = small_cnn(softmax=False)
    out = tmp_path / "m.keras"
    out.write_bytes(b"previous")
    with pytest.raises(OutputError) as info:
        export_keras(model, out)
    assert str(info.value) == f"{out} exists; choose another -o or pass --overwrite"
    assert out.read_bytes() == b"previous"
    # A second writer of the same output waits for the lock, then refuses.
    monkeypatch.setattr(files, "LOCK_WAIT_S", 0.1)
    with files.output_lock(out):
        with pytest.raises(OutputError, match=rf"^{re.escape(str(out))} is being written by "
                                              rf"process {os.getpid()} "):
            export_keras(model, out, overwrite=True)
    assert out.read_bytes() == b"previous"
    assert export_keras(model, out, overwrite=True) == out
    np.testing.assert_array_equal(keras.saving.load_model(out)(probe()), model(probe()))
    assert sorted(p.name for p in tmp_path.iterdir()) == [".m.keras.lock", "m.keras"]
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OutputError) as info:
        export_keras(model, tmp_path / "afile" / "m.keras")
    assert str(info.value) == (f"cannot write model file {tmp_path / 'afile' / 'm.keras'}: "
                               f"{tmp_path / 'afile'} is a file, not a folder; choose another "
                               "output path (-o)")


# -- the same attack on the same weights, whatever the file ---------------------------------------
@pytest.mark.parametrize("attack_name, params", [("fgsm", {"eps": 0.1}),
                                                 ("deepfool", {"max_iter": 5})])
def test_attacks_on_a_foreign_file_equal_attacks_on_our_artifact(tmp_path, attack_name, params):
    from advbench.run.artifacts import load_model, save_model
    from advbench.attacks import make_attack

    model = small_cnn(softmax=False, sequential=False)
    save_model(tmp_path / "ours.h5", model, {"dataset": "x"})
    ours, _ = load_model(tmp_path / "ours.h5")
    theirs = adapt(foreign.load_foreign(save(model, tmp_path, "keras")), SHAPE, CLASSES).model
    x = probe(32)
    y = np.argmax(model(x), axis=1)
    attack = make_attack(attack_name, **params)
    a = attack(ours, x, y, seed=3)
    b = attack(theirs, x, y, seed=3)
    np.testing.assert_array_equal(a.x_adv, b.x_adv)


def test_open_foreign_records_what_makes_the_model(files):
    paths, _ = files
    path = paths["keras", True]
    model, meta = foreign.open_foreign(path, SHAPE, CLASSES)
    assert meta["model_kind"] == "keras" and meta["source_path"] == str(path.resolve())
    assert meta["source_hash"] == foreign.content_hash(path)
    assert meta["outputs"] == "softmax removed" and meta["zoo_name"] == "model.keras"
    assert meta["preprocessing"] == {"input_range": [0.0, 1.0], "mean": [0.0], "std": [1.0]}
    again = foreign.open_foreign(path, SHAPE, CLASSES)[1]["content_hash"]
    other = foreign.open_foreign(path, SHAPE, CLASSES,
                                 preprocessing=Preprocessing((0.0, 255.0)))[1]["content_hash"]
    assert meta["content_hash"] == again != other
    _, saved = foreign.open_foreign(paths["savedmodel", False], SHAPE, CLASSES)
    assert "savedmodel: a SavedModel: inference and gradients only (no training, no --act " \
        "brelu, no export, no attack twin)" in saved["notes"]


# -- sizes declared by a .keras file, checked before anything is inflated or built ------------
def zip_with_member(path, name, deflated, inflated_size, crc=0, others=()):
    """A zip whose member ``name`` is the raw deflate stream ``deflated`` declaring
    ``inflated_size`` bytes (plus stored ``others``: (name, bytes)); written by hand so the
    inflated bytes are never held."""
    import struct

    entries, blob = [], b""
    for member, data, method, size, checksum in (
            [(n, d, 0, len(d), zlib.crc32(d)) for n, d in others]
            + [(name, deflated, 8, inflated_size, crc)]):
        encoded = member.encode()
        offset = len(blob)
        blob += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0, checksum,
                            len(data), size, len(encoded), 0) + encoded + data
        entries.append(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 0,
                                   checksum, len(data), size, len(encoded), 0, 0, 0, 0, 0,
                                   offset) + encoded)
    directory = b"".join(entries)
    blob += directory + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries),
                                    len(directory), len(blob), 0)
    path.write_bytes(blob)
    return path


def raw_deflate_of_spaces(inflated: int) -> bytes:
    """A raw deflate stream of ``inflated`` spaces (valid JSON whitespace), built in 4 MiB
    segments that repeat after a full flush (never holding the inflated bytes)."""
    segment = 4 << 20
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    spaces = b" " * segment
    first = compressor.compress(spaces) + compressor.flush(zlib.Z_FULL_FLUSH)
    repeated = compressor.compress(spaces) + compressor.flush(zlib.Z_FULL_FLUSH)
    return first + repeated * (inflated // segment - 1) + compressor.flush()


def test_a_keras_file_whose_config_inflates_to_3_gib_is_refused_unread(tmp_path):
    bomb = raw_deflate_of_spaces(3 << 30)
    path = zip_with_member(tmp_path / "bomb.keras", "config.json", bomb, 3 << 30,
                           others=[("metadata.json", b"{}")])
    assert path.stat().st_size < 4 << 20  # about 3 MB on disk
    assert foreign.detect_kind(path) == "keras"
    before = reset_peak_rss()
    with pytest.raises(ArtifactError) as info:
        foreign.load_foreign(path)
    assert str(info.value) == (f"{path}: zip member config.json declares 3 GiB, more than the "
                               "64 MiB advbench allows; it is a compression bomb or corrupt: "
                               "refusing it")
    assert peak_rss() - before < 100 * 1024  # KiB


def test_the_pre_tensorflow_check_does_not_inflate_a_config_bomb(tmp_path):
    """precheck reads a .keras config before TensorFlow starts: bounded, as foreign.py."""
    from advbench.models import precheck

    path = zip_with_member(tmp_path / "bomb.keras", "config.json",
                           raw_deflate_of_spaces(3 << 30), 3 << 30,
                           others=[("metadata.json", b"{}")])
    before = reset_peak_rss()
    assert precheck.keras_config(path) is None  # the full reading gives the one-line error
    assert peak_rss() - before < 100 * 1024  # KiB


def test_a_keras_file_lying_about_its_config_size_is_refused(tmp_path):
    # The directory says 100 bytes; the stream inflates to 1 GiB: zipfile stops at 100 bytes.
    path = zip_with_member(tmp_path / "liar.keras", "config.json",
                           raw_deflate_of_spaces(1 << 30), 100)
    before = reset_peak_rss()
    with pytest.raises(ArtifactError) as info:
        foreign.load_foreign(path)
    assert str(info.value) == (f"{path}: cannot read its model configuration (BadZipFile); "
                               "save the model again")
    assert peak_rss() - before < 100 * 1024  # KiB


@pytest.mark.parametrize("kind", ["keras", "h5"])
def test_a_layer_of_2_700_000_units_is_refused_before_it_is_built(tmp_path, kind):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input(SHAPE), keras.layers.Flatten(),
                              keras.layers.Dense(27, name="big")])
    path = save(model, tmp_path, kind)
    if kind == "keras":
        with zipfile.ZipFile(path) as archive:
            members = {name: archive.read(name) for name in archive.namelist()}
        members["config.json"] = members["config.json"].replace(b'"units": 27,',
                                                                b'"units": 2700000,')
        with zipfile.ZipFile(path, "w") as archive:
            for name, data in members.items():
                archive.writestr(name, data)
    else:
        with h5py.File(path, "a") as f:
            f.attrs["model_config"] = f.attrs["model_config"].replace('"units": 27,',
                                                                      '"units": 2700000,')
    before = reset_peak_rss()
    with pytest.raises(ArtifactError) as info:
        foreign.load_foreign(path)
    stored = foreign.size_text(foreign.stored_weight_bytes(path, kind))
    assert str(info.value) == (f"{path}: its configuration declares 669 MiB of weights (layer "
                               f"'big': 669 MiB), more than the {stored} the file stores; "
                               "the file was edited or is corrupt")
    assert peak_rss() - before < 100 * 1024  # KiB


@pytest.mark.parametrize("config", [[1, 2, 3], "model", 7])
def test_a_keras_config_that_is_not_a_model(tmp_path, config):
    path = tmp_path / "odd.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", json.dumps(config))
        archive.writestr("metadata.json", "{}")
    with pytest.raises(ArtifactError) as info:
        foreign.load_foreign(path)
    assert str(info.value) == (f"{path}: its model configuration is a JSON "
                               f"{type(config).__name__}, not a Keras model; save the model "
                               "again")


@pytest.mark.parametrize("command", ["attack", "evaluate"])
def test_attack_and_evaluate_refuse_a_savedmodel_that_prints_to_a_file(tmp_path,
                                                                     fake_data_dir, command):
    from click.testing import CliRunner

    from advbench.cli import main

    marker = tmp_path / "bashrc"

    class Printer(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable(tf.zeros((784, 10)))

        @tf.function(input_signature=[tf.TensorSpec([None, 28, 28, 1], tf.float32)])
        def serve(self, x):
            tf.print("echo attacker text", output_stream=f"file://{marker}")
            return tf.reshape(x, (-1, 784)) @ self.w

    path = tmp_path / "printer"
    module = Printer()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    args = {"attack": ["--attack", "fgsm", "-o", str(tmp_path / "a.h5")], "evaluate": []}
    result = CliRunner().invoke(main, [command, str(path), *args[command], "--dataset", "mnist",
                                       "--data-dir", str(fake_data_dir), "--limit", "10", "-q"])
    assert result.exit_code == 1, result.output
    assert re.fullmatch("Error: " + refusal(path, "PrintV2", r"__inference_serve_\d+\)")[:-1]
                        + "\n", result.output)
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["keras", "h5"])
def test_stored_weights_declaring_gigabytes_are_refused_unread(tmp_path, kind):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input(SHAPE), keras.layers.Flatten(),
                              keras.layers.Dense(CLASSES, name="scores")])
    path = save(model, tmp_path, kind)

    def inflate(f):  # one more array, declared 8 GiB, never written (it takes no space)
        f.create_dataset("extra", shape=(2 ** 31,), dtype=np.float32, chunks=(1024,))

    if kind == "h5":
        with h5py.File(path, "a") as f:
            inflate(f)
    else:
        with zipfile.ZipFile(path) as archive:
            members = {name: archive.read(name) for name in archive.namelist()}
        weights = tmp_path / "weights.h5"
        weights.write_bytes(members["model.weights.h5"])
        with h5py.File(weights, "a") as f:
            inflate(f)
        members["model.weights.h5"] = weights.read_bytes()
        with zipfile.ZipFile(path, "w") as archive:
            for name, data in members.items():
                archive.writestr(name, data)
    stored = foreign.size_text(foreign.stored_weight_bytes(path, kind))
    before = reset_peak_rss()
    with pytest.raises(ArtifactError) as info:
        foreign.load_foreign(path)
    assert str(info.value) == (f"{path}: its weight arrays declare 8 GiB, more than the "
                               f"{stored} the file stores; the file was edited or is corrupt")
    assert peak_rss() - before < 100 * 1024  # KiB


def test_the_size_check_leaves_the_random_generators_as_they_were(files):
    """The check builds the model once more (deferred): that must not change the weights a
    seeded run draws next (Keras draws initializer seeds from the global generators)."""
    import random

    paths, _ = files
    path = paths["keras", False]
    config = foreign.read_keras_config(path, "keras")
    random.seed(3)
    np.random.seed(3)
    expected = (random.random(), np.random.random())
    random.seed(3)
    np.random.seed(3)
    foreign.check_declared_weights(path, "keras", config, {})
    assert (random.random(), np.random.random()) == expected


# -- a SavedModel's outputs and input range (issue 19) -----------------------------------------
@pytest.fixture(scope="module")
def two_output_savedmodels(tmp_path_factory):
    """The same two-output network exported with list outputs and with dict outputs."""
    root = tmp_path_factory.mktemp("two_sm")
    keras.utils.set_random_seed(2)
    inputs = keras.Input(SHAPE)
    flat = keras.layers.Flatten()(inputs)
    scores = keras.layers.Dense(CLASSES, name="scores")(flat)
    aux = keras.layers.Dense(1, name="aux")(flat)
    keras.Model(inputs, [aux, scores]).export(str(root / "listed"), verbose=False)
    keras.Model(inputs, {"aux": aux, "scores": scores}).export(str(root / "keyed"),
                                                               verbose=False)
    return root, keras.Model(inputs, scores)


@pytest.mark.parametrize("folder, choice, names", [
    ("listed", "1", "output_0, output_1"),
    # 20 s each on an idle core (a SavedModel load): one reading of each folder is slow.
    pytest.param("listed", "output_1", "output_0, output_1", marks=pytest.mark.slow),
    pytest.param("keyed", "scores", "aux, scores", marks=pytest.mark.slow),
    ("keyed", "1", "aux, scores"),  # the index of the sorted keys (the dict's order varied)
])
def test_savedmodel_model_output_picks_the_class_scores(two_output_savedmodels, folder,
                                                        choice, names):
    root, scores = two_output_savedmodels
    path = root / folder
    with pytest.raises(ArtifactError, match=re.escape(
            f"{folder} has 2 outputs ({names}); pick the class scores with --model-output "
            "NAME|INDEX")):
        foreign.open_foreign(path, SHAPE, CLASSES)
    model, meta = foreign.open_foreign(path, SHAPE, CLASSES, model_output=choice)
    x = probe()
    np.testing.assert_allclose(np.asarray(model(x)), np.asarray(scores(x)), atol=1e-5)
    assert meta["model_output"] == choice
    listed = ", ".join(f"{i}: {n}" for i, n in enumerate(names.split(", ")))
    with pytest.raises(ParameterError, match=re.escape(
            f"--model-output logits: {folder} has no such output; its outputs are {listed}")):
        foreign.open_foreign(path, SHAPE, CLASSES, model_output="logits")


def test_savedmodel_says_its_input_range_cannot_be_read(files):
    paths, _ = files
    _, meta = foreign.open_foreign(paths["savedmodel", False], SHAPE, CLASSES)
    assert ("savedmodel: a SavedModel is a graph without layers, so its input range cannot be "
            "read: advbench feeds [0, 1]; if it expects 0..255 or its own mean/std, pass "
            "--input-range (and --mean, --std)") in meta["notes"]
    assert meta["input_scale"]["source"] == "default"
    assert meta["input_scale"]["unread"] == "a SavedModel has no layers to read"
    _, given = foreign.open_foreign(paths["savedmodel", False], SHAPE, CLASSES,
                                    preprocessing=Preprocessing((0.0, 255.0)))
    assert not any("cannot be read" in note for note in given["notes"])
