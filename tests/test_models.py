import numpy as np
import pytest
import tensorflow as tf

from advbench.core.errors import ArtifactError, ParameterError
from advbench.models.layers import FeatureSqueezing
from advbench.models.zoo import ARCHITECTURES, build_model, resolve_model, zoo_name

# Layer output shapes and parameter counts, pinned from reference.md's architectures.
EXPECTED = {
    ("cnn", (28, 28, 1)): (710218, {"conv1": (14, 14, 64), "conv2": (5, 5, 128),
                                    "conv3": (1, 1, 128), "logits": (10,)}),
    ("resnet", (28, 28, 1)): (353994, {"conv1": (14, 14, 64), "conv2": (5, 5, 128),
                                       "block_conv1": (5, 5, 64), "block_conv2": (5, 5, 64),
                                       "block_conv3": (5, 5, 128), "pool": (1, 1, 128),
                                       "logits": (10,)}),
    ("cifar-cnn", (32, 32, 3)): (1592902, {"conv1": (32, 32, 32), "pool1": (16, 16, 32),
                                           "conv2": (14, 14, 64), "pool2": (7, 7, 64),
                                           "dense1": (500,), "logits": (10,)}),
    ("mlp", (2, 1, 1)): (5002, {"dense1": (64,), "dense2": (64,), "logits": (10,)}),
    ("cnn", (32, 32, 3)): (None, {"conv1": (16, 16, 64), "conv2": (6, 6, 128),
                                  "conv3": (2, 2, 128)}),
}


@pytest.mark.parametrize("arch, shape", list(EXPECTED))
def test_architecture_shapes_and_parameter_counts(arch, shape):
    params, layers = EXPECTED[(arch, shape)]
    model = build_model(arch, shape)
    if params is not None:
        assert model.count_params() == params
    for name, out in layers.items():
        assert tuple(model.get_layer(name).output.shape[1:]) == out


def test_registry_covers_the_documented_architectures():
    assert sorted(ARCHITECTURES) == ["cifar-cnn", "cnn", "mlp", "resnet"]


@pytest.mark.parametrize("arch", ["cnn", "resnet", "mlp"])
def test_brelu_bounds_every_activation(arch):
    model = build_model(arch, (28, 28, 1), activation="brelu", brelu_t=0.5)
    acts = [layer for layer in model.layers if layer.name.startswith("act")]
    assert acts and all(float(layer.max_value) == 0.5 for layer in acts)
    relu = build_model(arch, (28, 28, 1))
    assert all(layer.max_value is None for layer in relu.layers if layer.name.startswith("act"))


def test_feature_squeezing_forward_rounds_and_gradient_is_identity():
    layer = FeatureSqueezing(bit_depth=1)
    x = tf.constant([[0.2, 0.6, 0.49, 0.51]])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
        loss = tf.reduce_sum(y * tf.constant([[1.0, 2.0, 3.0, 4.0]]))
    np.testing.assert_allclose(y.numpy(), [[0, 1, 0, 1]])
    np.testing.assert_allclose(tape.gradient(loss, x).numpy(), [[1, 2, 3, 4]])
    np.testing.assert_allclose(FeatureSqueezing(bit_depth=3)(tf.constant([0.3])).numpy(),
                               [2 / 7], rtol=1e-6)


@pytest.mark.parametrize("kwargs, message", [
    ({"architecture": "vgg"}, "unknown architecture 'vgg'"),
    ({"activation": "tanh"}, "unknown activation 'tanh'"),
    ({"brelu_t": 0.0}, "brelu t must be > 0"),
])
def test_bad_model_options(kwargs, message):
    args = {"architecture": "cnn", **kwargs}
    with pytest.raises(ParameterError, match=message):
        build_model(args.pop("architecture"), (28, 28, 1), **args)


def test_zoo_names_resolve_in_the_models_dir(tmp_path):
    for stem in ("mnist-cnn-relu-none", "mnist-cnn-brelu-gda", "cifar10-cifar-cnn-relu-none"):
        (tmp_path / f"{stem}.h5").write_bytes(b"")
    assert zoo_name("cnn", "brelu", "gda") == "cnn-brelu-gda"
    assert resolve_model("cnn", "mnist", tmp_path) == tmp_path / "mnist-cnn-relu-none.h5"
    assert resolve_model("cnn-brelu-gda", None, tmp_path).name == "mnist-cnn-brelu-gda.h5"
    assert resolve_model("cifar-cnn", "cifar10", tmp_path).name == "cifar10-cifar-cnn-relu-none.h5"
    with pytest.raises(ArtifactError, match=r"no model 'resnet' .*available: cifar-cnn \(cifar10\)"):
        resolve_model("resnet", None, tmp_path)
    with pytest.raises(ArtifactError, match="does not exist"):
        resolve_model(str(tmp_path / "missing.h5"))
