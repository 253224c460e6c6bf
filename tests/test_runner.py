import io

import h5py
import numpy as np
import pytest
import tensorflow as tf
from rich.console import Console

from advbench.attacks import ATTACKS, make_attack
from advbench.attacks.targets import TARGET_MODES, choose_targets
from advbench.core.errors import ArtifactError, ParameterError
from advbench.core.progress import Progress
from advbench.run.artifacts import ATTACK_SCHEMA, read_arrays
from advbench.run.metrics import perturbation_norms
from advbench.run.runner import AttackRun, attack_split


SEED = tf.constant([0, 0], tf.int64)


class InterruptAfter(Progress):
    """Progress that presses Ctrl-C once ``batches`` batches are done."""

    def __init__(self, batches: int):
        super().__init__(quiet=True)
        self.batches = batches

    def advance(self, steps: int = 1, *, samples: int = 0, status: str = "") -> None:
        if samples:  # a batch finished (the first call only counts resumed batches)
            self.batches -= 1
            if self.batches == 0:
                raise KeyboardInterrupt


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
    # Both forms of success (issue 14): against the clean prediction (as ART) and the label.
    assert attrs["success_against"] == "prediction"
    np.testing.assert_array_equal(arrays["success"], arrays["pred_adv"] != arrays["pred_clean"])
    np.testing.assert_array_equal(arrays["success_label"], arrays["pred_adv"] != arrays["y"])


def test_interrupted_run_resumes_to_the_same_artifact(run, trained_tiny_cnn, tmp_path):
    _, model, meta = trained_tiny_cnn
    attack = make_attack("fgsm", eps=0.3)
    whole = attack_split(run, attack, model, meta, tmp_path / "whole.h5")
    partial = tmp_path / "partial.h5"
    with pytest.raises(KeyboardInterrupt):
        attack_split(run, attack, model, meta, partial, progress=InterruptAfter(2))
    attrs, arrays = read_arrays(partial, ATTACK_SCHEMA)
    assert not attrs["complete"] and arrays["completed"].sum() == 16
    with pytest.raises(ArtifactError, match="interrupted run; pass --resume"):
        attack_split(run, attack, model, meta, partial, resume=False)
    console = Console(file=io.StringIO(), width=200)
    attack_split(run, attack, model, meta, partial, progress=Progress(console=console))
    assert f"resuming: 16 of 40 samples done in {partial}\n" in console.file.getvalue()
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
    from advbench.models.zoo import build_model

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
    x[0] = 0.5
    x_adv = x.copy()
    x_adv[0, 0, 0, 0], x_adv[0, 1, 1, 0] = 0.8, 0.1
    norms = perturbation_norms(x, x_adv)
    np.testing.assert_allclose(norms["l0"], [2, 0])
    np.testing.assert_allclose(norms["l2"], [0.5, 0], rtol=1e-6)
    np.testing.assert_allclose(norms["linf"], [0.4, 0], rtol=1e-6)


def test_least_likely_target_is_never_the_true_label():
    # Sample 0's true label 1 has the smallest logit: the target is the next smallest, 2.
    logits = np.array([[3.0, 1.0, 2.0], [0.0, 5.0, -1.0]], np.float32)
    targets = choose_targets(logits, np.array([1, 1]), "least-likely", SEED).numpy()
    np.testing.assert_array_equal(targets, [2, 2])


def test_random_targets_are_uniform_over_the_other_classes():
    labels = np.arange(3000) % 3
    targets = choose_targets(np.zeros((3000, 3), np.float32), labels, "random", SEED).numpy()
    assert (targets != labels).all()
    for label in range(3):
        counts = np.bincount(targets[labels == label], minlength=3)
        others = np.delete(counts, label)
        assert abs(others[0] - others[1]) < 0.15 * others.sum()


def test_unknown_target_mode():
    with pytest.raises(ParameterError, match="target mode must be one of random, least-likely, "
                                             "got 'worst'"):
        choose_targets(np.zeros((1, 3), np.float32), np.zeros(1, int), "worst", SEED)


@pytest.mark.parametrize("mode", TARGET_MODES)
@pytest.mark.parametrize("name", sorted(n for n in ATTACKS if ATTACKS[n].supports_targets))
def test_every_targeted_attack_gets_targets_other_than_the_true_label(name, mode, run,
                                                                     trained_tiny_cnn, tmp_path):
    _, model, meta = trained_tiny_cnn
    run.target_mode, run.limit = mode, 16
    params = {"pgd": {"steps": 2}, "cw-l2": {"max_iter": 2, "binary_search_steps": 1},
              "jsma": {"gamma": 0.05}}.get(name, {})
    out = attack_split(run, make_attack(name, **params), model, meta, tmp_path / "t.h5")
    _, arrays = read_arrays(out, ATTACK_SCHEMA)
    assert (arrays["target"] != arrays["y"]).all()
    if "extras/target" in arrays:  # attacks that pick targets themselves agree with the runner
        np.testing.assert_array_equal(arrays["extras/target"], arrays["target"])


@pytest.mark.parametrize("mode", TARGET_MODES)
def test_jsma_chooses_its_own_targets_with_the_same_chooser(mode, trained_tiny_cnn, run):
    _, model, _ = trained_tiny_cnn
    x, y, _ = run.load()
    out = make_attack("jsma", target_mode=mode, gamma=0.05)(model, x[:16], y[:16], seed=3)
    assert (out.extras["target"] != y[:16]).all()
    logits = model(x[:16], training=False)
    expected = choose_targets(logits, y[:16], mode, tf.constant([3, 0], tf.int64)).numpy()
    np.testing.assert_array_equal(out.extras["target"], expected)


@pytest.mark.parametrize("name", ["x_adv", "completed"])
def test_resuming_a_partial_artifact_of_the_wrong_length_is_refused(run, trained_tiny_cnn,
                                                                      tmp_path, name):
    _, model, meta = trained_tiny_cnn
    attack = make_attack("fgsm", eps=0.3)
    partial = tmp_path / "partial.h5"
    with pytest.raises(KeyboardInterrupt):
        attack_split(run, attack, model, meta, partial, progress=InterruptAfter(1))
    with h5py.File(partial, "a") as f:
        value = f[name][()]
        del f[name]
        f[name] = value[:-3]
    with pytest.raises(ArtifactError, match=f"partial.h5: {name} has 37 rows but the artifact "
                       "holds 40 samples"):
        attack_split(run, attack, model, meta, partial)
