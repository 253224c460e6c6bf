"""Hostile artifacts: hand-edited copies of our own files give one-line ArtifactErrors naming
the file and field, checked before any array is read (issue 14, "untrusted input")."""

import json

import h5py
import keras
import numpy as np
import pytest

from advbench.core.errors import ArtifactError
from advbench.run.artifacts import (ATTACK_SCHEMA, load_model, read_arrays, read_attack_artifact,
                                    save_model, write_arrays)
from conftest import deflate_bomb, peak_rss, reset_peak_rss

N = 10


def write_attack_artifact(path, **attrs):
    """A small, valid attack artifact of N MNIST samples, as the runner writes it."""
    rng = np.random.default_rng(0)
    arrays = {
        "x_adv": rng.random((N, 28, 28, 1), dtype=np.float32), "y": np.arange(N) % 10,
        "indices": np.arange(N), "completed": np.ones(N, bool), "success": np.ones(N, bool),
        "pred_clean": np.arange(N) % 10, "pred_adv": (np.arange(N) + 1) % 10,
        "target": np.full(N, -1), "l0": np.ones(N, np.float32), "l2": np.ones(N, np.float32),
        "linf": np.ones(N, np.float32),
    }
    base = {"key": "k" * 64, "attack": "fgsm", "dataset": "mnist", "split": "test",
            "limit": N, "start": 0, "seed": 0, "batch_size": 4, "num_samples": N,
            "complete": True, "targeted": False, "wall_time_s": 1.0}
    write_arrays(path, ATTACK_SCHEMA, {**base, **attrs}, arrays)
    return path


@pytest.fixture
def attack_file(tmp_path):
    return write_attack_artifact(tmp_path / "attack.h5")


def replace(path, name, **kwargs):
    with h5py.File(path, "a") as f:
        del f[name]
        return f.create_dataset(name, **kwargs).name


def test_a_valid_attack_artifact_reads(attack_file):
    attrs, arrays = read_attack_artifact(attack_file)
    assert arrays["x_adv"].shape == (N, 28, 28, 1) and attrs["num_samples"] == N


def test_declared_shape_of_a_billion_images_is_refused_before_reading(attack_file):
    replace(attack_file, "x_adv", shape=(10 ** 9, 28, 28, 1), dtype=np.float32,
            chunks=(1, 28, 28, 1), compression="gzip")
    with pytest.raises(ArtifactError, match=r"attack.h5: x_adv declares shape "
                       r"\(1000000000, 28, 28, 1\) \(2.92e\+03 GiB\), more than the 4 GiB"):
        read_attack_artifact(attack_file)


def test_compression_bomb_is_refused_without_inflating_it(attack_file):
    with h5py.File(attack_file, "a") as f:
        del f["x_adv"]
        ds = f.create_dataset("x_adv", shape=(N, 28, 28, 1), dtype=np.float32,
                              chunks=(N, 28, 28, 1), compression="gzip")
        ds.id.write_direct_chunk((0, 0, 0, 0), deflate_bomb(2 << 30))  # inflates to 2 GiB
    before = reset_peak_rss()
    with pytest.raises(ArtifactError, match=r"attack.h5: x_adv has a chunk at \(0, 0, 0, 0\) "
                       r"that inflates past its declared 31360 bytes \(a compression bomb\?\)"):
        read_attack_artifact(attack_file)
    # In KiB: HDF5's own gzip filter would have grown it by gigabytes.
    assert peak_rss() - before < 200 * 1024


def test_x_adv_outside_the_unit_box_is_refused(tmp_path, attack_file):
    with h5py.File(attack_file, "a") as f:
        f["x_adv"][0, 0, 0, 0] = 2.5
    with pytest.raises(ArtifactError, match=r"attack.h5: x_adv holds values from [0-9.e-]+ to "
                       r"2.5, expected \[0, 1\]"):
        read_attack_artifact(attack_file)


def test_fewer_x_adv_rows_than_labels_is_refused(attack_file):
    replace(attack_file, "x_adv", data=np.zeros((N - 1, 28, 28, 1), np.float32))
    with pytest.raises(ArtifactError, match="attack.h5: x_adv has 9 rows but the artifact "
                       "holds 10 samples"):
        read_attack_artifact(attack_file)


@pytest.mark.parametrize("dtype", [np.float64, np.uint8])
def test_x_adv_of_another_dtype_is_refused(attack_file, dtype):
    replace(attack_file, "x_adv", data=np.zeros((N, 28, 28, 1), dtype))
    with pytest.raises(ArtifactError, match=f"attack.h5: x_adv is {np.dtype(dtype)}, expected "
                       "float32"):
        read_attack_artifact(attack_file)


def test_non_numeric_limit_is_refused(tmp_path):
    path = write_attack_artifact(tmp_path / "attack.h5", limit="all of them")
    with pytest.raises(ArtifactError, match="attack.h5: attribute limit is 'all of them', "
                       "expected an integer >= 1"):
        read_attack_artifact(path)


@pytest.mark.parametrize("name", ["x_adv", "completed"])
def test_partial_artifact_with_a_wrong_length_is_refused(tmp_path, name):
    path = write_attack_artifact(tmp_path / "partial.h5", complete=False)
    shape = (N + 3, 28, 28, 1) if name == "x_adv" else (N + 3,)
    replace(path, name, data=np.zeros(shape, np.float32 if name == "x_adv" else bool))
    with pytest.raises(ArtifactError, match=f"partial.h5: {name} has 13 rows but the artifact "
                       "holds 10 samples"):
        read_arrays(path, ATTACK_SCHEMA)  # what the runner reads on resume


def test_labels_of_another_data_set_are_refused(attack_file):
    with h5py.File(attack_file, "a") as f:
        f["y"][1] = 200
    with pytest.raises(ArtifactError, match=r"attack.h5: y holds values from 0 to 200, "
                       r"expected \[0, 9\]"):
        read_attack_artifact(attack_file)


def test_an_array_where_a_field_is_a_group_is_refused(attack_file):
    with h5py.File(attack_file, "a") as f:
        del f["y"]
        f.create_group("y")
    with pytest.raises(ArtifactError, match="attack.h5: y is a group, expected an array"):
        read_attack_artifact(attack_file)


def test_a_folder_is_not_called_corrupt(tmp_path):
    (tmp_path / "runs.h5").mkdir()
    with pytest.raises(ArtifactError, match=r"runs.h5 is a folder, not an artifact; give the "
                       r"\.h5 file inside"):
        read_attack_artifact(tmp_path / "runs.h5")


def test_a_text_file_is_not_called_corrupt(tmp_path):
    path = tmp_path / "notes.h5"
    path.write_text("hello\n")
    with pytest.raises(ArtifactError, match="notes.h5 is not an HDF5 file, so not an advbench "
                       "artifact; check the path$"):
        read_attack_artifact(path)


# -- model artifacts -----------------------------------------------------------------------
def write_small_model(path):
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(64)])
    save_model(path, model, {"dataset": "mnist"})
    return path


@pytest.fixture
def model_file(tmp_path):
    return write_small_model(tmp_path / "model.h5")


def test_a_valid_model_loads(model_file):
    model, _ = load_model(model_file)
    assert [tuple(w.shape) for w in model.weights] == [(64, 64), (64,)]


def test_model_config_not_json(model_file):
    with h5py.File(model_file, "a") as f:
        f.attrs["model_config"] = "{'class_name': 'Sequential'"
    with pytest.raises(ArtifactError, match="model.h5: model_config is not JSON"):
        load_model(model_file)


def test_weights_a_dataset_instead_of_a_group(model_file):
    with h5py.File(model_file, "a") as f:
        del f["weights"]
        f["weights"] = np.zeros(3, np.float32)
    with pytest.raises(ArtifactError, match="model.h5: weights is an array, expected a group"):
        load_model(model_file)


def test_a_weight_entry_that_is_a_group(model_file):
    with h5py.File(model_file, "a") as f:
        del f["weights/0000"]
        f["weights"].create_group("0000")
    with pytest.raises(ArtifactError, match="model.h5: weights/0000 is a group, expected a "
                       "weight array"):
        load_model(model_file)


def test_a_weight_declaring_2_to_the_40_elements(model_file):
    replace(model_file, "weights/0000", shape=(2 ** 20, 2 ** 20), dtype=np.float32,
            chunks=(256, 256))
    with pytest.raises(ArtifactError, match=r"model.h5: weights/0000 declares shape "
                       r"\(1048576, 1048576\)"):
        load_model(model_file)


def test_a_gzip_weight_that_inflates_to_gigabytes(model_file):
    with h5py.File(model_file, "a") as f:
        del f["weights/0000"]
        ds = f["weights"].create_dataset("0000", shape=(64, 64), dtype=np.float32,
                                         chunks=(64, 64),
                                         compression="gzip")
        ds.id.write_direct_chunk((0, 0), deflate_bomb(2 << 30))
    with pytest.raises(ArtifactError, match=r"model.h5: weights/0000 has a chunk at \(0, 0\) "
                       "that inflates past its declared 16384 bytes"):
        load_model(model_file)


def test_a_weight_of_another_shape_than_the_architecture(model_file):
    replace(model_file, "weights/0000", data=np.zeros((65, 64), np.float32))
    with pytest.raises(ArtifactError, match=r"model.h5: weights/0000 has shape \(65, 64\), but "
                       r"the architecture in model_config needs \(64, 64\)"):
        load_model(model_file)


def test_a_weight_of_integers_is_refused(model_file):
    replace(model_file, "weights/0001", data=np.zeros(64, np.int64))
    with pytest.raises(ArtifactError, match="model.h5: weights/0001 has dtype int64, expected "
                       "a float array"):
        load_model(model_file)


def test_an_attribute_declaring_a_huge_array_is_refused_unread(attack_file, tmp_path):
    hostile = tmp_path / "hostile.h5"
    with h5py.File(attack_file, "r") as good, h5py.File(hostile, "w", libver="latest") as f:
        for key, value in good.attrs.items():  # libver latest: attributes over 64 KiB
            f.attrs[key] = value
        for name in good:
            good.copy(name, f)
        f.attrs["seed"] = np.zeros(10 ** 6, np.int64)
    with pytest.raises(ArtifactError, match=r"hostile.h5: attribute seed declares shape "
                       r"\(1000000,\), more than the 4096 values advbench writes"):
        read_attack_artifact(hostile)


def _rewrite_config(path, config):
    """Store ``config`` as the artifact's model_config, with the content hash recomputed (as
    an attacker would: the hash is no signature)."""
    from advbench.run.artifacts import _model_hash

    text = json.dumps(config)
    with h5py.File(path, "a") as f:
        weights = [f["weights"][key][()] for key in sorted(f["weights"])]
        f.attrs["model_config"] = text
        f.attrs["content_hash"] = _model_hash(text, weights)


def test_a_config_that_is_not_a_model(model_file):
    _rewrite_config(model_file, [1, 2, 3])
    with pytest.raises(ArtifactError) as info:
        load_model(model_file)
    assert str(info.value) == (f"{model_file}: model_config is a JSON list, not a Keras model "
                               "configuration; the file was edited or is corrupt: train the "
                               "model again")


def test_a_config_of_a_layer_not_a_model(model_file):
    _rewrite_config(model_file, keras.saving.serialize_keras_object(keras.layers.Dense(3)))
    with pytest.raises(ArtifactError) as info:
        load_model(model_file)
    assert str(info.value) == (f"{model_file}: model_config describes a Dense, not a Keras "
                               "model; the file was edited or is corrupt: train the model "
                               "again")


def test_a_dense_of_2_700_000_units_is_refused_before_it_is_built(model_file):
    with h5py.File(model_file, "r") as f:
        config = json.loads(f.attrs["model_config"])
    dense = config["config"]["layers"][-1]["config"]
    assert dense["units"] == 64
    dense["units"] = 2_700_000
    _rewrite_config(model_file, config)
    before = reset_peak_rss()
    with pytest.raises(ArtifactError) as info:
        load_model(model_file)
    assert str(info.value) == (f"{model_file}: weights/0000 has shape (64, 64), but the "
                               "architecture in model_config needs (64, 2700000); train the "
                               "model again")
    # In KiB: building the layer would have allocated 691 MB for its kernel.
    assert peak_rss() - before < 100 * 1024
    # Nothing of the refused model is allocated later either (Keras' deferred variables).
    model, _ = load_model(write_small_model(model_file.with_name("other.h5")))
    assert peak_rss() - before < 100 * 1024


@pytest.mark.parametrize("own", [False, True])
def test_more_samples_than_the_split_holds_are_refused_before_reading(tmp_path, own):
    # 1.3M samples of the 10,000-image MNIST test split: each array under the 4 GiB cap.
    # The same of a user's own data set, bounded by its own split (issue 20).
    dataset, limit = "mnist", "10,000 images of the mnist test split"
    if own:
        rng = np.random.default_rng(0)
        np.savez(tmp_path / "digits.npz", x=rng.integers(0, 255, (30, 28, 28), dtype=np.uint8),
                 y=np.arange(30) % 10)
        dataset, limit = str(tmp_path / "digits.npz"), "30 images of the digits.npz test split"
    path = write_attack_artifact(tmp_path / "attack.h5", dataset=dataset)
    n = 1_300_000
    with h5py.File(path, "a") as f:
        f.attrs["num_samples"] = n
        for name in list(f):
            ds = f[name]
            shape, dtype = (n, *ds.shape[1:]), ds.dtype
            del f[name]
            f.create_dataset(name, shape=shape, dtype=dtype, chunks=(1, *shape[1:]),
                             compression="gzip")
    before = reset_peak_rss()
    with pytest.raises(ArtifactError) as info:
        read_attack_artifact(path)
    assert str(info.value) == (f"{path}: attribute num_samples is 1,300,000, more than the "
                               f"{limit}; the file was edited or is corrupt: run the stage "
                               "again")
    assert peak_rss() - before < 100 * 1024  # KiB


def test_attack_params_that_are_not_a_json_object_are_one_line(attack_file):
    """A truncated attack_params string surfaced as an AttributeError traceback in evaluate's
    table (found by the hostile-input session of issue 20)."""
    with h5py.File(attack_file, "a") as f:
        f.attrs["attack_params"] = '{"eps": 1e308'
    with pytest.raises(ArtifactError) as info:
        read_attack_artifact(attack_file)
    assert str(info.value) == (f"{attack_file}: attribute attack_params is not a JSON object; "
                               "the file was edited or is corrupt: run the stage that wrote it "
                               "again")


def test_a_header_eps_below_the_measured_perturbation_is_refused():
    """An edited eps (0.01 declared on an eps-0.3 run) would be printed beside the scores."""
    from advbench.score.evaluate import _check_declared_budget

    norms = {"l2": np.array([1.0, 2.0]), "linf": np.array([0.3, 0.1])}
    lie = {"attack_params": {"eps": 0.01}, "attack_norm": "linf"}
    with pytest.raises(ArtifactError) as info:
        _check_declared_budget("a.h5", lie, norms)
    assert str(info.value) == ("a.h5: a sample is perturbed by 0.3 in linf but the header "
                               "declares eps 0.01; the file was edited or is corrupt: run the "
                               "attack again")
    # The true eps, float32 rounding above it, L2, and minimal attacks (no budget) all pass.
    _check_declared_budget("a.h5", {**lie, "attack_params": {"eps": 0.3 - 1e-6}}, norms)
    _check_declared_budget("a.h5", {"attack_params": {"eps": 2.0}, "attack_norm": "l2"}, norms)
    _check_declared_budget("a.h5", {**lie, "attack_minimal": True}, norms)
