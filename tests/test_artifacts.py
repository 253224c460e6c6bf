import json
import math
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest

from advbench.core.errors import ArtifactError
from advbench.models.zoo import build_model
from advbench.run.artifacts import (MODEL_SCHEMA, atomic_h5, jsonable, load_model, read_arrays,
                                    read_model_metadata, run_artifact_path, save_model,
                                    write_arrays)


@pytest.fixture
def saved_model(tmp_path):
    model = build_model("cnn", (28, 28, 1), activation="brelu", squeeze_bits=1)
    path = tmp_path / "model.h5"
    save_model(path, model, {"dataset": "mnist", "history": [{"epoch": 1, "loss": 0.5}]})
    return path, model


def test_model_round_trip_predicts_identically(saved_model):
    path, model = saved_model
    loaded, meta = load_model(path)
    x = np.random.default_rng(0).random((4, 28, 28, 1), dtype=np.float32)
    np.testing.assert_array_equal(model(x).numpy(), loaded(x).numpy())
    assert meta["schema"] == MODEL_SCHEMA and meta["dataset"] == "mnist"
    assert meta["history"] == [{"epoch": 1, "loss": 0.5}]
    assert len(meta["content_hash"]) == 64
    assert read_model_metadata(path)["content_hash"] == meta["content_hash"]


def test_atomic_write_leaves_nothing_on_error(tmp_path):
    path = tmp_path / "a.h5"
    with pytest.raises(RuntimeError):
        with atomic_h5(path) as f:
            f.attrs["x"] = 1
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_truncated_file_is_a_one_line_error(saved_model):
    path, _ = saved_model
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ArtifactError, match="truncated or corrupt"):
        load_model(path)


def test_missing_file(tmp_path):
    with pytest.raises(ArtifactError, match="does not exist"):
        load_model(tmp_path / "nope.h5")


def test_other_hdf5_is_not_ours(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(ArtifactError, match="not an advbench artifact"):
        load_model(path)


def test_wrong_kind_of_artifact(tmp_path):
    path = tmp_path / "attack.h5"
    write_arrays(path, "advbench.attack", {"attack": "fgsm"}, {"x": np.zeros(2)})
    with pytest.raises(ArtifactError, match="is a 'advbench.attack' artifact; expected"):
        load_model(path)


def test_tampered_weights_fail_the_hash_check(saved_model):
    path, _ = saved_model
    with h5py.File(path, "r+") as f:
        f["weights/0000"][0, 0, 0, 0] += 1.0
    with pytest.raises(ArtifactError, match="content-hash check"):
        load_model(path)


def test_lambda_layers_are_refused(tmp_path):
    inputs = keras.Input((4,))
    outputs = keras.layers.Lambda(lambda t: t * 2)(inputs)
    model = keras.Model(inputs, outputs)
    path = tmp_path / "lambda.h5"
    save_model(path, model, {})
    with pytest.raises(ArtifactError, match="contains layer 'Lambda'"):
        load_model(path)


def test_foreign_module_layers_are_refused(saved_model):
    path, _ = saved_model
    with h5py.File(path, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        config["config"]["layers"][1]["module"] = "evil.module"
        f.attrs["model_config"] = json.dumps(config)
    # The hash covers the config, so tampering fails the hash check first.
    with pytest.raises(ArtifactError, match="content-hash"):
        load_model(path)


def test_flat_arrays_round_trip(tmp_path):
    path = tmp_path / "flat.h5"
    write_arrays(path, "advbench.evaluation", {"params": {"eps": 0.1}, "n": 3},
                 {"x": np.ones((3, 2, 2, 1), np.float32), "extras/eps": np.arange(3.0)})
    attrs, arrays = read_arrays(path, "advbench.evaluation")
    assert attrs["params"] == {"eps": 0.1} and attrs["n"] == 3
    assert arrays["x"].shape == (3, 2, 2, 1) and arrays["extras/eps"].tolist() == [0, 1, 2]


def test_jsonable_turns_nan_into_null():
    assert jsonable({"a": math.nan, "b": np.float32(0.5), "c": np.arange(2)}) == \
        {"a": None, "b": 0.5, "c": [0, 1]}


def test_jsonable_keeps_nan_when_not_strict_and_joins_tuple_keys():
    out = jsonable({("cnn", "fgsm"): [np.float64(math.nan)], "p": Path("runs/a.h5")},
                   strict=False)
    assert list(out) == ["cnn, fgsm", "p"] and math.isnan(out["cnn, fgsm"][0])
    assert out["p"] == "runs/a.h5"


def test_one_default_path_for_attack_and_curve_artifacts():
    key = "0123456789abcdef"
    assert run_artifact_path("runs", "models/mnist-cnn.h5", "fgsm", key) == \
        Path("runs/mnist-cnn-fgsm-0123456789.h5")
    assert run_artifact_path("out", Path("m/x.h5"), "fgsm", key, curve=True) == \
        Path("out/x-fgsm-curve-0123456789.h5")

