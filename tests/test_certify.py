"""Randomized smoothing (advbench.score.certify): the statistics against scipy's own distributions,
the sampler against a linear model's closed form, and the run's artifact, resume and shards."""

from __future__ import annotations

import re

import numpy as np
import pytest
from scipy.stats import beta, binom, norm

from advbench.core.errors import ArtifactError, ParameterError
from advbench.score import certify
from advbench.score.certify import (certified_radius, certify_counts, lower_confidence_bound,
                                    predict_counts)


# -- statistics -----------------------------------------------------------------------------
def _triples():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 200_000))
        yield int(rng.integers(0, n + 1)), n, float(10 ** rng.uniform(-6, -0.5))
    yield 0, 10, 0.001
    yield 10, 10, 0.001
    yield 100_000, 100_000, 0.001


def test_bound_is_the_exact_clopper_pearson_bound():
    """Independent of Beta's quantile: the one-sided bound p solves P(X >= nA | p) = alpha
    for X ~ Binomial(n, p) (binom.sf), and it agrees with the Beta quantile statsmodels'
    proportion_confint(method="beta") computes."""
    for n_a, n, alpha in _triples():
        p = float(lower_confidence_bound(n_a, n, alpha))
        if n_a == 0:
            assert p == 0.0
            continue
        assert binom.sf(n_a - 1, n, p) == pytest.approx(alpha, rel=1e-5)
        assert p == pytest.approx(beta.ppf(alpha, n_a, n - n_a + 1), rel=1e-12)


def test_bound_vectorised_and_monotone():
    n, alpha = 1000, 0.001
    bounds = lower_confidence_bound(np.arange(n + 1), n, alpha)
    assert bounds.shape == (n + 1,) and bounds[0] == 0.0 and bounds[-1] < 1.0
    assert np.all(np.diff(bounds) > 0)
    radii = certified_radius(bounds, 0.25)
    assert np.all(np.diff(radii) >= 0) and radii[-1] > 0


def test_abstain_exactly_below_one_half():
    assert certified_radius(np.array([0.4999999, 0.5, 0.75]), 0.5).tolist() == [
        0.0, 0.0, pytest.approx(0.5 * norm.ppf(0.75))]
    counts0 = np.array([[0, 10], [10, 0]])
    n, alpha = 1000, 0.001
    # The smallest nA whose bound reaches 0.5 certifies; one less abstains.
    bounds = lower_confidence_bound(np.arange(n + 1), n, alpha)
    first = int(np.argmax(bounds >= 0.5))
    counts = np.array([[n - first, first], [first - 1, n - first + 1]])
    pred, p_lower, radius = certify_counts(counts0, counts, n, alpha, 0.25)
    assert pred.tolist() == [1, -1] and p_lower[0] >= 0.5 > p_lower[1]
    assert radius[1] == 0.0 and radius[0] == pytest.approx(0.25 * norm.ppf(p_lower[0]))


def test_predict_is_the_two_sided_binomial_test():
    from scipy.stats import binomtest

    counts = np.array([[60, 40, 0], [0, 5, 95], [50, 50, 0], [0, 0, 0]])
    assert predict_counts(counts, 0.05).tolist() == [
        0 if binomtest(60, 100).pvalue <= 0.05 else -1, 2, -1, -1]
    assert predict_counts(np.array([[52, 48]]), 0.001).tolist() == [-1]


# -- sampling: the linear model's closed form -----------------------------------------------
SHAPE = (4, 4, 1)


def linear_model(w: np.ndarray, b: float):
    """Two classes, logit 1 minus logit 0 = w . x + b: P(f(x + e) = 1) = Phi(m / (sigma
    ||w||)) with m = w . x + b, so g's true radius is sigma * Phi^-1(pA) = |m| / ||w||."""
    import keras

    model = keras.Sequential([keras.Input(SHAPE), keras.layers.Flatten(), keras.layers.Dense(2)])
    model.layers[-1].set_weights([np.stack([np.zeros(w.size), w.ravel()], 1).astype(np.float32),
                                  np.array([0.0, b], np.float32)])
    return model


def test_linear_model_matches_the_closed_form():
    rng = np.random.default_rng(3)
    w = rng.normal(size=SHAPE).astype(np.float32)
    x = rng.uniform(0, 1, (6,) + SHAPE).astype(np.float32)
    b = -float(np.mean(x.reshape(6, -1) @ w.ravel()))
    model = linear_model(w, b)
    sigma, n, alpha = 0.5, 4000, 0.001
    margin = x.reshape(6, -1) @ w.ravel() + b
    p1 = norm.cdf(margin / (sigma * np.linalg.norm(w)))
    count = certify.noise_counter(model, 2)
    keys = certify.noise_keys(0, np.arange(6))
    group, chunk = certify.group_layout(n, 3000)
    counts = np.concatenate([count(x[i:i + group], keys[i:i + group], 1, n, chunk, sigma)
                             for i in range(0, 6, group)])
    assert counts.sum(axis=1).tolist() == [n] * 6
    # Each count within 4.5 binomial standard deviations of n * p.
    sd = np.sqrt(n * p1 * (1 - p1))
    assert np.all(np.abs(counts[:, 1] - n * p1) <= 4.5 * sd + 1)
    top = (margin > 0).astype(int)
    pred, p_lower, radius = certify_counts(np.eye(2, dtype=np.int64)[top] * 10, counts, n,
                                           alpha, sigma)
    # The certified radius lies in the band the Monte Carlo error allows around the truth.
    p_top = np.where(top == 1, p1, 1 - p1)
    band = [certified_radius(lower_confidence_bound(np.clip(np.round(n * p_top + s * 4.5 *
                                                                      sd), 0, n), n, alpha),
                             sigma) for s in (-1, 1)]
    assert np.all(band[0] - 1e-9 <= radius) and np.all(radius <= band[1] + 1e-9)
    truth = np.abs(margin) / np.linalg.norm(w)
    certified = pred >= 0
    assert certified.any() and np.all(radius[certified] <= truth[certified] + 0.05)


def test_noise_depends_on_the_image_key_not_the_group():
    rng = np.random.default_rng(1)
    w = rng.normal(size=SHAPE).astype(np.float32)
    model = linear_model(w, 0.0)
    x = rng.uniform(0, 1, (3,) + SHAPE).astype(np.float32) - 0.5
    count = certify.noise_counter(model, 2)
    keys = certify.noise_keys(7, np.array([10, 11, 12]))
    together = count(x, keys, 1, 50, 50, 1.0)
    alone = np.concatenate([count(x[i:i + 1], keys[i:i + 1], 1, 50, 50, 1.0) for i in range(3)])
    assert np.array_equal(together, alone)
    other_phase = count(x, keys, 0, 50, 50, 1.0)
    assert not np.array_equal(together, other_phase)
    # A partial last chunk counts exactly `draws` copies.
    assert count(x, keys, 1, 45, 20, 1.0).sum(axis=1).tolist() == [45] * 3


def test_colour_images_count_every_draw():
    """CIFAR-10's layout (H, W, 3): the noise has the image's shape, per image keyed."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(),
                              keras.layers.Dense(10)])
    x = np.random.default_rng(0).uniform(0, 1, (3, 8, 8, 3)).astype(np.float32)
    count = certify.noise_counter(model, 10)
    counts = count(x, certify.noise_keys(0, np.arange(3)), 1, 30, 7, 0.5)
    assert counts.shape == (3, 10) and counts.sum(axis=1).tolist() == [30] * 3
    assert len(np.unique(counts, axis=0)) > 1  # different images, different noise


def test_group_layout_bounds_each_forward_pass():
    assert certify.group_layout(100_000, 1000) == (1, 1000)
    assert certify.group_layout(200, 1000) == (5, 200)
    assert certify.group_layout(2000, 1000) == (1, 1000)
    for n, batch in ((7, 100), (100, 7), (1, 1)):
        images, chunk = certify.group_layout(n, batch)
        assert images * chunk <= max(batch, 1) and chunk <= n


# -- the run: artifact, reuse, resume, shards, sigma check, CLI -----------------------------
@pytest.fixture
def small_run(dense_mnist_model, fake_data_dir):
    path, model, meta = dense_mnist_model
    return certify.CertifyRun(model_path=str(path), dataset="mnist", limit=12, sigma=0.25,
                              n0=10, n=200, batch_size=500, data_dir=str(fake_data_dir))


def _gda(meta, sigma):
    return {**meta, "defense": "gda", "defense_params": {"sigma": sigma, "copies": 1}}


def test_certify_split_writes_the_artifact(small_run, dense_mnist_model, tmp_path):
    from advbench.run.artifacts import CERTIFICATION_SCHEMA, read_arrays

    _, model, meta = dense_mnist_model
    out = certify.certify_split(small_run, model, meta, tmp_path / "c.h5")
    attrs, arrays = read_arrays(out, CERTIFICATION_SCHEMA)
    assert attrs["complete"] and attrs["sigma"] == 0.25 and attrs["n"] == 200
    assert attrs["mode"] == "certify" and attrs["model_hash"] == meta["content_hash"]
    assert arrays["counts"].sum(axis=1).tolist() == [200] * 12
    assert arrays["counts0"].sum(axis=1).tolist() == [10] * 12
    pred, p_lower, radius = certify_counts(arrays["counts0"], arrays["counts"], 200, 0.001, 0.25)
    assert np.array_equal(arrays["pred"], pred) and np.array_equal(arrays["radius"], radius)
    assert np.array_equal(arrays["correct"], pred == arrays["y"])
    summary = certify.certification_summary(attrs, arrays)
    assert summary["certified_accuracy"]["0"] == pytest.approx(np.mean(pred == arrays["y"]))
    assert list(summary["certified_accuracy"]) == ["0", "0.25", "0.5", "0.75", "1"]
    # The same run again is reused; another run at that path is refused.
    before = out.stat().st_mtime_ns
    assert certify.certify_split(small_run, model, meta, out) == out
    assert out.stat().st_mtime_ns == before
    other = certify.CertifyRun(**{**small_run.__dict__, "n": 300})
    with pytest.raises(ArtifactError, match="holds a certification with other parameters"):
        certify.certify_split(other, model, meta, out)


def test_interrupted_run_resumes_to_the_same_artifact(small_run, dense_mnist_model, tmp_path,
                                                      monkeypatch):
    from advbench.run.artifacts import CERTIFICATION_SCHEMA, read_arrays

    _, model, meta = dense_mnist_model
    whole = certify.certify_split(small_run, model, meta, tmp_path / "whole.h5")
    real = certify.certify_counts
    calls = []

    def interrupt(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(certify, "certify_counts", interrupt)
    with pytest.raises(KeyboardInterrupt):
        certify.certify_split(small_run, model, meta, tmp_path / "r.h5")
    monkeypatch.setattr(certify, "certify_counts", real)
    attrs, arrays = read_arrays(tmp_path / "r.h5", CERTIFICATION_SCHEMA)
    assert not attrs["complete"] and 0 < arrays["completed"].sum() < 12
    with pytest.raises(ArtifactError, match="holds an interrupted run; pass --resume"):
        certify.certify_split(small_run, model, meta, tmp_path / "r.h5", resume=False)
    certify.certify_split(small_run, model, meta, tmp_path / "r.h5")
    _same(read_arrays(tmp_path / "r.h5", CERTIFICATION_SCHEMA)[1],
          read_arrays(whole, CERTIFICATION_SCHEMA)[1])


def _same(a, b):
    assert sorted(a) == sorted(b)
    for name in a:
        assert np.array_equal(a[name], b[name]), name


def test_shards_merge_into_the_one_process_artifact(small_run, dense_mnist_model, tmp_path):
    from advbench.run.artifacts import CERTIFICATION_SCHEMA, read_arrays
    from advbench.run.shards import Shard, merge_shards

    _, model, meta = dense_mnist_model
    whole = certify.certify_split(small_run, model, meta, tmp_path / "whole.h5")
    # 500 // 200 = 2 images per group: 6 groups, shards of 3 groups each.
    shards = [certify.certify_split(small_run, model, meta, tmp_path / "s.h5",
                                    shard=Shard(i, 2)) for i in range(2)]
    assert shards == [tmp_path / "s-shard0of2.h5", tmp_path / "s-shard1of2.h5"]
    merged, attrs = merge_shards(shards, tmp_path / "m.h5")
    assert attrs["complete"]
    _same(read_arrays(merged, CERTIFICATION_SCHEMA)[1], read_arrays(whole, CERTIFICATION_SCHEMA)[1])


def test_certify_with_ray_tasks_merges_into_the_one_process_artifact(
        small_run, dense_mnist_model, tmp_path, monkeypatch):
    """--engine ray's shards, each run by its task function (``certify_shard``, reopening
    the model from its source as a Ray worker does), merge bit for bit into the one-process
    artifact. Ray itself is replaced by a loop here (tests/test_ray.py runs it for real)."""
    from advbench.run import ray_engine
    from advbench.run.artifacts import CERTIFICATION_SCHEMA, read_arrays
    from advbench.run.loading import open_model

    _, model, meta = dense_mnist_model
    whole = certify.certify_split(small_run, model, meta, tmp_path / "whole.h5")
    ran = []

    def in_this_process(task, arguments, *, retries=3):
        ran.extend(args[3:5] for args in arguments)
        return [task(*args) for args in arguments]

    monkeypatch.setattr(ray_engine, "shards_with_ray", in_this_process)
    loaded = open_model(small_run.model_path)
    merged = certify.certify_with_ray(small_run, loaded, tmp_path / "ray.h5", workers=3)
    assert ran == [(0, 3), (1, 3), (2, 3)]
    assert sorted(p.name for p in tmp_path.glob("ray-shard*.h5")) == [
        f"ray-shard{i}of3.h5" for i in range(3)]
    attrs, arrays = read_arrays(merged, CERTIFICATION_SCHEMA)
    assert attrs["complete"] and len(attrs["shard_devices"]) == 3
    _same(arrays, read_arrays(whole, CERTIFICATION_SCHEMA)[1])
    # Done already: returned as it is, no task runs; another run's artifact is refused.
    assert certify.certify_with_ray(small_run, loaded, merged, workers=3) == merged
    assert len(ran) == 3
    other = certify.CertifyRun(**{**small_run.__dict__, "n": 300})
    with pytest.raises(ArtifactError, match="holds a certification with other parameters"):
        certify.certify_with_ray(other, loaded, merged, workers=3)
    with pytest.raises(ParameterError, match="^workers must be >= 1, got 0$"):
        certify.certify_with_ray(small_run, loaded, tmp_path / "none.h5", workers=0)


def test_sigma_must_match_the_gda_sigma(small_run, dense_mnist_model, tmp_path):
    _, model, meta = dense_mnist_model
    with pytest.raises(ParameterError) as info:
        certify.certify_split(small_run, model, _gda(meta, 0.5), tmp_path / "c.h5")
    assert str(info.value) == (f"model {small_run.model_path} was trained with GDA at sigma 0.5 "
                               "but --sigma is 0.25; certify at --sigma 0.5 or pass "
                               "--sigma-mismatch-ok")
    assert not (tmp_path / "c.h5").exists()
    out = certify.certify_split(small_run, model, _gda(meta, 0.5), tmp_path / "c.h5",
                                sigma_mismatch_ok=True)
    assert out.exists()
    assert certify.trained_sigma(_gda(meta, 0.25)) == 0.25 and certify.trained_sigma(meta) is None


@pytest.mark.parametrize("field, value, message", [
    ("sigma", 0.0, "sigma must be > 0.0, got 0.0"), ("n", 0, "n must be >= 1, got 0"),
    ("n0", 0, "n0 must be >= 1, got 0"), ("alpha", 1.0, "alpha must be < 1.0, got 1.0"),
    ("mode", "x", "mode must be one of certify, predict, got 'x'"),
])
def test_run_parameters_are_checked(small_run, field, value, message):
    run = certify.CertifyRun(**{**small_run.__dict__, field: value})
    with pytest.raises(ParameterError) as info:
        run.validate()
    assert str(info.value) == message


def test_predict_mode(small_run, dense_mnist_model, tmp_path):
    from advbench.run.artifacts import CERTIFICATION_SCHEMA, read_arrays

    _, model, meta = dense_mnist_model
    run = certify.CertifyRun(**{**small_run.__dict__, "mode": "predict"})
    attrs, arrays = read_arrays(certify.certify_split(run, model, meta, tmp_path / "p.h5"),
                                CERTIFICATION_SCHEMA)
    assert attrs["mode"] == "predict" and not arrays["counts0"].any()
    assert np.array_equal(arrays["pred"], predict_counts(arrays["counts"], 0.001))
    assert certify.certification_summary(attrs, arrays)["certified_accuracy"] == {}


def test_cli_certify(dense_mnist_model, fake_data_dir, tmp_path):
    import json

    from click.testing import CliRunner

    from advbench.cli import main

    path, _, _ = dense_mnist_model
    base = ["certify", str(path), "--data-dir", str(fake_data_dir), "--limit", "6", "--n0",
            "10", "--n", "100"]
    runner = CliRunner()
    result = runner.invoke(main, [*base, "--sigma", "0.25", "-o", str(tmp_path / "c.h5")])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{tmp_path / 'c.h5'}\n"
    assert (f"certify {path}: 6 mnist test images (start 0, limit 6), sigma 0.25, n0 10, n 100, "
            f"alpha 0.001, batch size 1000, seed 0 -> {tmp_path / 'c.h5'}") in result.stderr
    result = runner.invoke(main, [*base, "--sigma", "0.25", "-o", str(tmp_path / "c.h5"), "-q",
                                  "--json"])
    summary = json.loads(result.stdout)
    assert summary["samples"] == 6 and summary["sigma"] == 0.25 and summary["n"] == 100
    # Several groups (2 images per pass of 200): a time estimate from the first one.
    result = runner.invoke(main, [*base, "--sigma", "0.25", "--batch-size", "200", "-o",
                                  str(tmp_path / "g.h5")])
    assert result.exit_code == 0, result.output
    assert re.search(r"estimated time: \d+ s for 3 groups of 2 image\(s\) \([\d.]+ s for the "
                     r"first\)", result.stderr)
    result = runner.invoke(main, [*base, "--sigma", "-1"])
    assert result.exit_code == 2 and "Error: sigma must be > 0.0, got -1.0" in result.output
    result = runner.invoke(main, [*base])
    assert result.exit_code == 2 and "Missing option '--sigma'" in result.output
    # --engine ray's usage errors, as attack's.
    for flags, message in [(["--engine", "ray", "--shard", "0/2"], "--engine ray makes its own "
                            "shards: give --workers N, not --shard"),
                           (["--engine", "ray"], "--engine ray makes its own shards: give "
                            "--workers N, not --shard"),
                           (["--workers", "2"], "--workers is for --engine ray; a job array "
                            "gives --shard I/N")]:
        result = runner.invoke(main, [*base, "--sigma", "0.25", *flags])
        assert result.exit_code == 2 and result.output.endswith(f"\nError: {message}\n")


# -- evaluate: certified accuracy, the gate, the plot ---------------------------------------
def test_evaluate_reads_certifications(trained_tiny_cnn, fake_data_dir, tmp_path):
    import json

    from click.testing import CliRunner

    from advbench.run.artifacts import CERTIFICATION_SCHEMA, read_arrays
    from advbench.cli import main
    from advbench.run.shards import Shard

    path, model, meta = trained_tiny_cnn
    run = certify.CertifyRun(model_path=str(path), dataset="mnist", limit=10, sigma=0.25, n0=10,
                             n=200, batch_size=400, data_dir=str(fake_data_dir))
    out = certify.certify_split(run, model, meta, tmp_path / "c.h5")
    attrs, arrays = read_arrays(out, CERTIFICATION_SCHEMA)
    radius = np.where(arrays["correct"], arrays["radius"], 0.0)
    expected = {r: float(np.mean(arrays["correct"] & (radius >= r))) for r in (0.0, 0.1, 0.5)}
    assert expected[0.0] > 0  # the gate below is not vacuous
    base = ["evaluate", str(path), "--data-dir", str(fake_data_dir), "--limit", "10",
            "--no-sensitivity", "--no-distance", "-q"]
    runner = CliRunner()
    result = runner.invoke(main, [*base, str(out), "--radii", "0,0.1", "--json",
                                  "--fail-under", "certified_accuracy@0.5=0",
                                  "--plot", str(tmp_path / "c.png")])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    entry = summary["artifacts"][0]
    assert entry["kind"] == "certification" and entry["certified_on"]["hash"] == meta["content_hash"]
    assert entry["certified_accuracy"] == {"0": expected[0.0], "0.1": expected[0.1],
                                           "0.5": expected[0.5]}
    assert entry["average_certified_radius"] == pytest.approx(radius.mean())
    assert summary["metrics"]["certified_accuracy"] == expected[0.0]
    assert (tmp_path / "c.png").stat().st_size > 0
    result = runner.invoke(main, [*base, str(out), "--fail-over",
                                  f"certified_accuracy@0={expected[0.0] - 0.05:g}"])
    assert result.exit_code == 3, result.output
    assert f"certified_accuracy@0 {expected[0.0]:.4f} is over" in result.output
    # The shards of the run, given together, score as the whole run.
    shards = [certify.certify_split(run, model, meta, tmp_path / "s.h5", shard=Shard(i, 2))
              for i in range(2)]
    result = runner.invoke(main, [*base, *map(str, shards), "--json"])
    assert json.loads(result.stdout)["artifacts"][0]["certified_accuracy"]["0"] == expected[0.0]
    result = runner.invoke(main, [*base, "--fail-under", "certified_accuracy@0.5=0.4"])
    assert result.exit_code == 2
    assert ("certified_accuracy@0.5 is not available: it needs a certification artifact "
            "(advbench certify; CERTIFY, not --predict)") in result.output
    result = runner.invoke(main, [*base, str(out), "--fail-under", "certified_accuracy@x=0.4"])
    assert result.exit_code == 2
    assert ("threshold 'certified_accuracy@x=0.4': certified_accuracy@R takes an L2 radius R >= "
            "0 (e.g. certified_accuracy@0.5=0.4), got 'x'") in result.output
    result = runner.invoke(main, [*base, str(out), "--radii", "0,a"])
    assert result.exit_code == 2 and "'0,a' is not a comma-separated list" in result.output
    # n = 200 draws certify no radius above sigma x Phi^-1(alpha^(1/n)) (0.25 x 1.826 =
    # 0.456): evaluate says why r = 1 reads 0, in the table and in a gate that cannot pass.
    from scipy.stats import norm

    cap = certify.largest_certifiable_radius(0.25, 200, 0.001)
    assert cap == pytest.approx(0.25 * norm.ppf(0.001 ** (1 / 200)), rel=1e-9)
    assert entry["largest_certifiable_radius"] == cap
    result = runner.invoke(main, [*base[:-1], str(out), "--radii", "0,1",
                                  "--fail-under", "certified_accuracy@1=0.5"])
    assert result.exit_code == 3, result.output
    assert (f"note: n = 200 draws certify no L2 radius above {cap:.3f} (sigma 0.25, alpha "
            "0.001), so r = 1 read 0 whatever the model; certify with a larger --n to measure "
            "them") in result.output
    assert (f"certified_accuracy@1 0.0000 is under 0.5 (n = 200 draws certify no radius above "
            f"{cap:.3f}: this gate cannot pass at that n; certify with a larger --n)"
            ) in result.output


# -- train --defense gda-cohen: the base classifier certify is made for ----------------------
def test_gda_cohen_noises_every_row_unclipped():
    import tensorflow as tf

    from advbench.defenses import make_defense

    gda = make_defense("gda-cohen", "mnist", sigma=0.5)
    assert gda.copies == 0 and gda.params() == {"sigma": 0.5}
    assert make_defense("gda-cohen", "cifar10").sigma == 0.25
    x = tf.fill([64, 4, 4, 1], 0.5)
    out = gda.perturb_batch(x, tf.zeros([64], tf.int32), tf.constant([1, 2], tf.int32)).numpy()
    assert np.all(out != 0.5)  # every row noisy, though no row is marked as a copy
    assert out.min() < 0.0 and out.max() > 1.0  # never clipped
    assert np.std(out - 0.5) == pytest.approx(0.5, rel=0.1)


def test_train_gda_cohen_records_sigma_and_certify_checks_it(fake_data_dir, tmp_path):
    from click.testing import CliRunner

    from advbench.run.artifacts import read_model_metadata
    from advbench.cli import main

    runner = CliRunner()
    model = tmp_path / "m.h5"
    train = ["train", "--epochs", "1", "--limit", "40", "--data-dir", str(fake_data_dir),
             "--defense", "gda-cohen", "-o", str(model), "-q"]
    result = runner.invoke(main, [*train, "--gda-copies", "2"])
    assert result.exit_code == 2 and "--gda-copies does not apply to --defense gda-cohen" in \
        result.output
    result = runner.invoke(main, [*train, "--gda-sigma", "0.25"])
    assert result.exit_code == 0, result.output
    meta = read_model_metadata(model)
    assert meta["defense"] == "gda-cohen" and meta["defense_params"] == {"sigma": 0.25}
    base = ["certify", str(model), "--data-dir", str(fake_data_dir), "--limit", "4", "--n0",
            "5", "--n", "20", "-q", "-o", str(tmp_path / "c.h5")]
    result = runner.invoke(main, [*base, "--sigma", "0.5"])
    assert result.exit_code == 1
    assert result.output == (f"Error: model {model} was trained with GDA at sigma 0.25 but "
                             "--sigma is 0.5; certify at --sigma 0.25 or pass "
                             "--sigma-mismatch-ok\n")
    result = runner.invoke(main, [*base, "--sigma", "0.25"])
    assert result.exit_code == 0, result.output


def test_edited_certification_artifacts_are_refused(small_run, dense_mnist_model, tmp_path):
    from advbench.run.artifacts import CERTIFICATION_SCHEMA, read_arrays, write_arrays

    _, model, meta = dense_mnist_model
    out = certify.certify_split(small_run, model, meta, tmp_path / "c.h5")
    attrs, arrays = read_arrays(out, CERTIFICATION_SCHEMA)
    for name, value, message in [
            ("pa_lower", 1.5, r"pa_lower holds values from \S+ to 1.5, expected \[0, 1\]"),
            ("pred", 10, r"pred holds values from \S+ to 10, expected \[-1, 9\]"),
            ("radius", -0.5, r"radius holds values from -0.5 to \S+, expected >= 0"),
    ]:
        edited = {**arrays, name: arrays[name].copy()}
        edited[name][0] = value
        write_arrays(tmp_path / "e.h5", CERTIFICATION_SCHEMA, attrs, edited)
        with pytest.raises(ArtifactError, match=message):
            certify.read_certification(tmp_path / "e.h5")
    write_arrays(tmp_path / "i.h5", CERTIFICATION_SCHEMA, {**attrs, "complete": False}, arrays)
    with pytest.raises(ArtifactError, match="is an interrupted run .12 of 12 images done.; "
                                            "rerun its `advbench certify` command"):
        certify.read_certification(tmp_path / "i.h5")



def test_the_ray_engine_returns_a_complete_output_and_refuses_a_partial_one(tmp_path):
    """attack and certify under --engine ray share one rule on a claimed output."""
    from pathlib import Path

    from advbench.core.errors import ArtifactError
    from advbench.core.progress import Progress
    from advbench.run.ray_engine import complete_for_ray

    out = Path(tmp_path / "c.h5")
    assert complete_for_ray("complete", out, "an interrupted run", Progress(quiet=True))
    assert not complete_for_ray("new", out, "an interrupted run", Progress(quiet=True))
    with pytest.raises(ArtifactError) as info:
        complete_for_ray("partial", out, "an interrupted certification", Progress(quiet=True))
    assert str(info.value) == (f"{out} holds an interrupted certification; finish it without "
                               "--engine ray or pass --overwrite to start again")


def test_plot_legend_tells_two_certifications_of_one_model_apart():
    """`evaluate cifar-cnn-gda-cohen full.h5 merged.h5 --plot` (CIFAR-10 check, issue 23) drew
    two legend entries "cifar-cnn-gda-cohen (sigma 0.12, n 1000)": the artifact's name now
    follows a label that would repeat; a label read once stays as it was."""
    from advbench.score.report import certified_labels

    def entry(model, artifact, sigma=0.12, n=1000):
        return {"certified_on": {"name": model, "path": f"models/{model}.h5"}, "name": artifact,
                "sigma": sigma, "n": n}

    assert certified_labels([entry("cifar-cnn-gda-cohen", "full"),
                             entry("cifar-cnn-gda-cohen", "merged"),
                             entry("cifar-cnn-gda-cohen", "other", n=10_000),
                             entry(None, "x") | {"certified_on": {"name": None,
                                                                  "path": "m/my.keras"}}]) == [
        "cifar-cnn-gda-cohen (sigma 0.12, n 1000), full",
        "cifar-cnn-gda-cohen (sigma 0.12, n 1000), merged",
        "cifar-cnn-gda-cohen (sigma 0.12, n 10000)",
        "my (sigma 0.12, n 1000)"]
