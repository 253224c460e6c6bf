"""Foreign model files (.keras, legacy .h5, SavedModel): detection, safe loading, adapting to
advbench's convention ([0, 1] in, logits out), BRELU conversion and export."""

from __future__ import annotations

import os
import re
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from advbench.errors import ArtifactError, ParameterError
from advbench.models import adapt as adapt_mod
from advbench.models import foreign
from advbench.models.adapt import Preprocessing, adapt, convert_relu, reinitialize
from advbench.models.export import custom_layers, export_keras
from advbench.models.gradients import SubpixelGradientConv2D, attack_model

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
    from advbench.artifacts import ATTACK_SCHEMA, save_model, write_arrays

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


def test_savedmodel_that_writes_files_is_refused(tmp_path):
    marker = tmp_path / "marker"

    class Writer(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable(tf.ones((64, CLASSES)))

        @tf.function(input_signature=[tf.TensorSpec([None, *SHAPE], tf.float32)])
        def serve(self, x):
            tf.io.write_file(str(marker), "graph code ran")
            return tf.reshape(x, (-1, 64)) @ self.w

    path = tmp_path / "writer"
    tf.saved_model.save(Writer(), str(path))
    with pytest.raises(ArtifactError, match=re.escape(
            f"{path}: the SavedModel runs op WriteFile (in ")):
        foreign.load_foreign(path)
    assert not marker.exists()


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
    from advbench.models import build_model

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
    from advbench import files
    from advbench.errors import OutputError

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
    from advbench.artifacts import load_model, save_model
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
