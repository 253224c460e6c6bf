import numpy as np
import pytest

from advbench.artifacts import ATTACK_SCHEMA, read_arrays
from advbench.attacks import make_attack
from advbench.errors import ArtifactError, ParameterError
from advbench.metrics import perturbation_norms
from advbench.runner import AttackRun, attack_split, choose_targets


@pytest.fixture
def run(trained_tiny_cnn, fake_data_dir):
    path, _, _ = trained_tiny_cnn
    return AttackRun(model_path=str(path), dataset="mnist", limit=40, batch_size=8,
                     data_dir=str(fake_data_dir), seed=5)


def test_artifact_contents(run, trained_tiny_cnn, tmp_path):
    _, model, meta = trained_tiny_cnn
    out = attack_split(run, make_attack("fgsm", eps=0.2), model, meta, tmp_path / "a.h5")
    attrs, arrays = read_arrays(out, ATTACK_SCHEMA)
    assert attrs["complete"] and attrs["attack"] == "fgsm"
    assert attrs["attack_params"] == {"eps": 0.2, "norm": "linf"}
    assert attrs["model_hash"] == meta["content_hash"] and attrs["num_samples"] == 40
    assert arrays["x_adv"].dtype == np.float32 and arrays["x_adv"].shape == (40, 28, 28, 1)
    assert arrays["completed"].all()
    assert np.all(arrays["linf"] <= 0.2 + 1e-6)
    np.testing.assert_array_equal(arrays["success"], arrays["pred_adv"] != arrays["y"])


def test_interrupted_run_resumes_to_the_same_artifact(run, trained_tiny_cnn, tmp_path):
    _, model, meta = trained_tiny_cnn
    attack = make_attack("fgsm", eps=0.3)
    whole = attack_split(run, attack, model, meta, tmp_path / "whole.h5")
    partial = tmp_path / "partial.h5"
    with pytest.raises(KeyboardInterrupt):
        attack_split(run, attack, model, meta, partial, _stop_after_batches=2)
    attrs, arrays = read_arrays(partial, ATTACK_SCHEMA)
    assert not attrs["complete"] and arrays["completed"].sum() == 16
    with pytest.raises(ArtifactError, match="interrupted run; pass --resume"):
        attack_split(run, attack, model, meta, partial, resume=False)
    attack_split(run, attack, model, meta, partial)
    _, resumed = read_arrays(partial, ATTACK_SCHEMA)
    _, expected = read_arrays(whole, ATTACK_SCHEMA)
    for name in expected:
        np.testing.assert_array_equal(resumed[name], expected[name], err_msg=name)


def test_other_parameters_do_not_overwrite(run, trained_tiny_cnn, tmp_path):
    _, model, meta = trained_tiny_cnn
    out = attack_split(run, make_attack("fgsm", eps=0.1), model, meta, tmp_path / "a.h5")
    with pytest.raises(ArtifactError, match="holds a run with other parameters"):
        attack_split(run, make_attack("fgsm", eps=0.2), model, meta, out)
    attack_split(run, make_attack("fgsm", eps=0.2), model, meta, out, overwrite=True)
    assert read_arrays(out, ATTACK_SCHEMA)[0]["attack_params"]["eps"] == 0.2


def test_model_and_data_shapes_must_match(run, tmp_path):
    from advbench.models import build_model

    cifar_model = build_model("cnn", (32, 32, 3))
    with pytest.raises(ArtifactError, match=r"takes inputs of shape \(32, 32, 3\)"):
        attack_split(run, make_attack("fgsm"), cifar_model, {"dataset": "cifar10"},
                     tmp_path / "a.h5")


def test_targeted_runs_record_targets(run, trained_tiny_cnn, tmp_path):
    _, model, meta = trained_tiny_cnn
    run.target_mode = "random"
    out = attack_split(run, make_attack("fgsm", eps=0.3), model, meta, tmp_path / "t.h5")
    _, arrays = read_arrays(out, ATTACK_SCHEMA)
    assert (arrays["target"] != arrays["y"]).all() and (arrays["target"] >= 0).all()
    np.testing.assert_array_equal(arrays["success"], arrays["pred_adv"] == arrays["target"])


def test_bad_run_parameters(run, trained_tiny_cnn, tmp_path):
    _, model, meta = trained_tiny_cnn
    run.batch_size = 0
    with pytest.raises(ParameterError, match="batch size must be >= 1"):
        attack_split(run, make_attack("fgsm"), model, meta, tmp_path / "a.h5")
    run.batch_size, run.start = 8, 10_000
    with pytest.raises(ParameterError, match="no samples left"):
        attack_split(run, make_attack("fgsm"), model, meta, tmp_path / "a.h5")


def test_norms_and_targets_helpers():
    x = np.zeros((2, 2, 2, 1), np.float32)
    x_adv = x.copy()
    x_adv[0, 0, 0, 0], x_adv[0, 1, 1, 0] = 0.3, -0.4
    norms = perturbation_norms(x, x_adv)
    np.testing.assert_allclose(norms["l0"], [2, 0])
    np.testing.assert_allclose(norms["l2"], [0.5, 0], rtol=1e-6)
    np.testing.assert_allclose(norms["linf"], [0.4, 0], rtol=1e-6)
    logits = np.array([[3.0, 1.0, 2.0], [0.0, 5.0, -1.0]])
    np.testing.assert_array_equal(choose_targets("least-likely", logits, np.array([0, 1]), 0),
                                  [1, 2])
    random_targets = choose_targets("random", np.zeros((100, 3)), np.zeros(100, int), 0)
    assert set(random_targets) == {1, 2}
