"""Bit-identical regression fixtures of the gradient-attack engine (issue 21, point 5).

``tests/fixtures/engine.npz`` holds arrays computed by advbench at commit 2fc119b (before the
engine and the in-memory driver were merged; changed since only as ``CHANGED`` says), on a model of fixed random weights and 12
synthetic 28x28 digits: x_adv of fgsm, rand-fgsm and pgd (L-inf and L2, untargeted and
targeted), FGSM / R+FGSM curve predictions, the audit's robust masks and crafted samples, and
the training set adversarials crafted for static adversarial training (fgsm-at, vat). The test
computes them again and compares them bit for bit (``np.array_equal``).

Regenerate (only when a change of numbers is deliberate, in its own commit saying why):
``PYTHONPATH=$PWD python tests/test_engine_fixtures.py``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

FIXTURE = Path(__file__).parent / "fixtures" / "engine.npz"
SAMPLES = 12


def fixed_model():
    """A small conv net of fixed weights (no training, so the same wherever TensorFlow
    computes float32 the same way): a ReLU convolution whose first channel passes the image
    through, and a dense layer that scores each class's block of the synthetic digits
    (``conftest.synthetic_digits``) plus small random weights, so that most samples are
    classified correctly and attacks have something to move."""
    import keras

    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(3, 3, padding="same", activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(10),
    ])
    rng = np.random.default_rng(21)
    kernel = rng.normal(0.0, 0.3, (3, 3, 1, 3)).astype(np.float32)
    kernel[:, :, 0, 0] = 0.0
    kernel[1, 1, 0, 0] = 1.0
    blocks = np.zeros((28, 28, 3, 10), np.float32)
    for c in range(10):
        row, col = 2 + (c // 5) * 12, 1 + (c % 5) * 5
        blocks[row:row + 6, col:col + 5, 0, c] = 0.3
    dense = blocks.reshape(-1, 10) + rng.normal(0.0, 0.02, (28 * 28 * 3, 10)).astype(np.float32)
    model.set_weights([kernel, np.zeros(3, np.float32), dense, np.zeros(10, np.float32)])
    return model


def digits() -> tuple[np.ndarray, np.ndarray]:
    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import synthetic_digits

    images, labels = synthetic_digits(SAMPLES, seed=7)
    # Two wrong labels: the model misclassifies them, so the audit attacks only some rows.
    labels[[1, 6]] = (labels[[1, 6]] + 1) % 10
    return (images[..., None] / 255.0).astype(np.float32), labels.astype(np.int64)


def _recording(attack, x: np.ndarray, crafted: dict[str, np.ndarray], label: str):
    """``attack`` that also writes each batch's x_adv at its rows of ``x`` into
    ``crafted[label]`` (rows found by their pixels: the audit passes rows, not indices)."""
    rows_of = {x[i].tobytes(): i for i in range(len(x))}

    class Recording(type(attack)):  # type: ignore[misc, valid-type]
        def __call__(self, model, xb, yb, **kwargs):
            out = attack(model, xb, yb, **kwargs)
            store = crafted.setdefault(label, np.full_like(x, np.nan))
            for image, adv in zip(np.asarray(xb, np.float32), out.x_adv):
                store[rows_of[image.tobytes()]] = adv
            return out

    recording = Recording.__new__(Recording)
    recording.__dict__.update(attack.__dict__)
    return recording


def compute() -> dict[str, np.ndarray]:
    """Every fixture array, by name."""
    import tensorflow as tf

    from advbench.score import audit
    from advbench.run import curves, train
    from advbench.attacks.fgsm import FGSM
    from advbench.attacks.pgd import PGD
    from advbench.attacks.rand_fgsm import RandomFGSM
    from advbench.attacks.vat import VirtualAdversarial

    tf.config.experimental.enable_op_determinism()
    model = fixed_model()
    x, y = digits()
    target = (y + 3) % 10
    out: dict[str, np.ndarray] = {"x": x, "y": y,
                                  "logits": model(x, training=False).numpy()}
    attacks = {
        "fgsm-linf": FGSM(eps=0.1), "fgsm-l2": FGSM(eps=1.5, norm="l2"),
        "rand-fgsm": RandomFGSM(eps=0.1, alpha=0.05),
        "pgd-linf": PGD(eps=0.1, step_size=0.02, steps=6),
        "pgd-l2": PGD(eps=1.5, step_size=0.3, steps=6, norm="l2"),
        "pgd-linf-fixed-start": PGD(eps=0.1, step_size=0.02, steps=6, random_start=False),
        "pgd-linf-early": PGD(eps=0.1, step_size=0.02, steps=6, early_stop=True),
    }
    for name, attack in attacks.items():
        out[f"attack/{name}"] = attack(model, x, y, seed=3).x_adv
        if attack.supports_targets:
            out[f"attack/{name}/targeted"] = attack(model, x, y, target=target, seed=3).x_adv
    eps = [0.0, 0.02, 0.05, 0.1, 0.3]
    for name, kwargs in {"fgsm-linf": {}, "fgsm-l2": {"norm": "l2"},
                         "rand-fgsm": {"attack": "rand-fgsm", "alpha": 0.05, "seed": 4}}.items():
        swept = curves.sweep(model, [model], x, y, [e * (10 if name == "fgsm-l2" else 1)
                                                    for e in eps], batch_size=5, **kwargs)
        out[f"curve/{name}"] = swept["pred_adv"]

    crafted: dict[str, np.ndarray] = {}
    make_attack = audit.make_attack

    def recording_make_attack(name, **params):
        return _recording(make_attack(name, **params), x, crafted,
                          f"{name}@{params.get('eps')}/{params.get('n_restarts', 1)}")

    audit.make_attack = recording_make_attack
    try:
        settings = audit.AuditSettings(pgd_steps=4, n_iter=4, curve_points=2)
        result = audit.audit(model, x, y, eps=0.1, checks=("iterative-vs-single-step",
                                                            "accuracy-vs-eps"),
                             settings=settings, batch_size=5, seed=6)
    finally:
        audit.make_attack = make_attack
    for label, mask in result.per_sample.items():
        if label.startswith("robust/"):
            out[f"audit/{label}"] = mask
    for label, array in crafted.items():
        out[f"audit/crafted/{label}"] = array

    out["train/fgsm-at"] = train.craft_training_adversarials(FGSM(eps=0.3), model, x, y, 8,
                                                             batch_size=5)
    out["train/vat"] = train.craft_training_adversarials(VirtualAdversarial(eps=2.1), model, x,
                                                         y, 8, batch_size=5)
    return out


#: Fixtures whose numbers changed on purpose since 2fc119b, and why.
CHANGED: dict[str, str] = {
    "audit/crafted/*": "the audit attacks through the runner's driver (runner.attack_arrays): "
    "batch I of all samples with seed batch_seed(seed, I * batch_size), as `advbench attack`; "
    "at 2fc119b it attacked only the correctly classified rows, in batches of those rows, "
    "seeded by batch_seed(seed, first row), so a randomized attack's images differed from "
    "an attack run's with the same seed (two rows here are misclassified). The robust masks "
    "did not change on these samples.",
    "attack/*-linf*, attack/rand-fgsm, audit/crafted/*, train/fgsm-at": "every eps attack "
    "holds its budget exactly in float64 (norms.Norm.hold, applied by Attack.__call__): "
    "pixels that float32 rounding of x + eps put up to one ulp outside the L-inf ball now lie "
    "on its float32 inside; 59,823 of 122,304 pixels of 13 arrays moved, by at most 5.96e-8 "
    "(2^-24); no prediction, curve or robust mask changed.",
    "logits, attack/fgsm-l2*, attack/pgd-l2*, train/vat": "advbench turns TensorFlow's oneDNN "
    "kernels on (2026-12-07; this CPU's TensorFlow had them off): the fixed model's logits "
    "moved by at most 3.8e-6 and the L2 attacks' points by at most 9.6e-7 (100 of 120 logits, "
    "2,552 to 5,870 of 9,408 pixels per array); VAT's crafted points by up to 0.70 in 8,876 "
    "of 9,408 pixels, because its direction is the power iteration's finite difference at "
    "xi = 1e-6, at the edge of what float32 resolves in these logits; the L-inf "
    "attacks, the curves and the audit's masks and crafted samples did not change.",
}


@pytest.fixture(scope="module")
def computed():
    return compute()


def test_fixture_is_small():
    assert FIXTURE.stat().st_size < 1 << 20


def test_every_fixture_is_computed(computed):
    with np.load(FIXTURE) as stored:
        assert sorted(stored.files) == sorted(computed)


@pytest.mark.skipif(os.environ.get("TF_ENABLE_ONEDNN_OPTS") == "0",
                    reason="the fixtures were computed with oneDNN's kernels, advbench's default; "
                    "Eigen's (TF_ENABLE_ONEDNN_OPTS=0) round differently")
def test_fixtures_bit_identical(computed):
    with np.load(FIXTURE) as stored:
        differ = [name for name in stored.files
                  if not np.array_equal(stored[name], computed[name], equal_nan=True)]
    assert differ == []


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    __import__("advbench")  # TensorFlow's settings as in every advbench run (oneDNN's kernels)
    FIXTURE.parent.mkdir(exist_ok=True)
    np.savez_compressed(FIXTURE, **compute())
    print(FIXTURE, FIXTURE.stat().st_size, "bytes")


# -- the engine's contracts, on the same model and digits --------------------------------------

@pytest.fixture(scope="module")
def model_and_digits():
    return fixed_model(), *digits()


def test_eps_at_call_time_equals_the_attack_built_at_each_eps(model_and_digits):
    from advbench.attacks.fgsm import FGSM
    from advbench.attacks.pgd import PGD

    model, x, y = model_and_digits
    for attack, build in ((FGSM(), lambda e: FGSM(eps=e)),
                          (PGD(step_size=0.02, steps=3), lambda e: PGD(eps=e, step_size=0.02,
                                                                       steps=3))):
        outs = attack(model, x, y, eps=[0.05, 0.1], seed=2)
        for out, e in zip(outs, (0.05, 0.1)):
            assert np.array_equal(out.x_adv, build(e)(model, x, y, seed=2).x_adv)
    assert np.array_equal(FGSM()(model, x, y, eps=0.2).x_adv, FGSM(eps=0.2)(model, x, y).x_adv)


def test_eps_at_call_time_is_checked(model_and_digits):
    from advbench.attacks.fgsm import FGSM
    from advbench.attacks.rand_fgsm import RandomFGSM
    from advbench.core.errors import ParameterError

    model, x, y = model_and_digits
    with pytest.raises(ParameterError, match="eps must be >= 0"):
        FGSM()(model, x, y, eps=[0.1, -0.1])
    with pytest.raises(ParameterError, match=r"alpha \(0.05\) must be <= eps \(0.01\)"):
        RandomFGSM(eps=0.1, alpha=0.05)(model, x, y, eps=0.01)


def test_line_gives_the_images_of_a_run_at_each_eps(model_and_digits):
    from advbench.attacks.fgsm import FGSM
    from advbench.attacks.rand_fgsm import RandomFGSM

    model, x, y = model_and_digits
    grid = [0.05, 0.1, 0.3]
    for attack in (FGSM(), FGSM(norm="l2"), RandomFGSM(eps=0.05, alpha=0.05)):
        for base, unit, steps, which in attack.line(model, x, y, grid, seed=4):
            for t, j in zip(steps, which):
                image = attack.ball.hold(x, np.clip(base.numpy() + np.float32(t) * unit.numpy(),
                                                    0.0, 1.0), grid[j]).numpy()
                assert np.array_equal(image, attack(model, x, y, eps=grid[j], seed=4).x_adv)


def test_base_checks_targets_once(model_and_digits):
    from advbench.attacks.fgsm import FGSM
    from advbench.core.errors import ParameterError

    model, x, y = model_and_digits
    with pytest.raises(ParameterError, match=r"target must have shape \(12,\), one class per "
                                             r"image, got \(11,\)"):
        FGSM()(model, x, y, target=y[:11])
    with pytest.raises(ParameterError, match="target classes must be >= 0 and < 10"):
        FGSM()(model, x, y, target=np.full(12, 10))


def test_attack_arrays_uses_the_run_seed_rule(model_and_digits):
    from advbench.attacks.pgd import PGD
    from advbench.data import batch_seed
    from advbench.run.runner import attack_arrays

    model, x, y = model_and_digits
    attack = PGD(eps=0.1, step_size=0.02, steps=3)
    expected = np.concatenate([attack(model, x[s:s + 5], y[s:s + 5], seed=batch_seed(9, s)).x_adv
                               for s in range(0, len(x), 5)])
    assert np.array_equal(attack_arrays(attack, model, x, y, seed=9, batch_size=5), expected)
    todo = np.arange(len(x)) % 3 == 0
    masked = attack_arrays(attack, model, x, y, seed=9, batch_size=5, todo=todo)
    assert np.array_equal(masked[~todo], x[~todo])
