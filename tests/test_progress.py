"""Progress: plain lines in logs (no cut bars, no repeats), steps inside one batch, an ETA
after the first measured interval, and attacks that give the same bits with a bar or not."""

from __future__ import annotations

import io

import keras
import numpy as np
import pytest
from rich.console import Console

from advbench.attacks import make_attack
from advbench.core import progress as progress_module
from advbench.core.progress import Progress
from advbench.models.zoo import predict_labels


class Clock:
    """A stand-in for time.perf_counter that moves only when told."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(progress_module.time, "perf_counter", clock)
    return clock


def plain(interval: float = 0.0) -> tuple[Progress, io.StringIO]:
    out = io.StringIO()
    return Progress(console=Console(file=out, width=40), interval=interval), out


@pytest.fixture(scope="module")
def tiny_model():
    """Logits of 4x4 one-channel images, fixed weights: enough for every attack's loop."""
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(8, activation="relu"), keras.layers.Dense(3)])
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (6, 4, 4, 1)).astype(np.float32)
    y = np.asarray(model(x)).argmax(axis=1).astype(np.int64)  # all classified "correctly"
    return model, x, y


def test_not_a_terminal_gives_plain_uncut_lines_and_nothing_at_close(clock):
    bar, out = plain()
    assert bar.plain
    bar.start("pgd", 3, unit="batches")
    for i in range(3):
        clock.now += 2.0
        bar.advance(1, samples=50, status=f"success {i}0.0% on a status wider than forty columns")
    bar.close()
    lines = out.getvalue().splitlines()
    assert lines == [
        "pgd: 1/3 batches, success 00.0% on a status wider than forty columns, 25 "
        "samples/s, elapsed 0:00:02",
        "pgd: 2/3 batches, success 10.0% on a status wider than forty columns, 25 "
        "samples/s, elapsed 0:00:04, ETA 0:00:02",
        "pgd: 3/3 batches, success 20.0% on a status wider than forty columns, 25 "
        "samples/s, elapsed 0:00:06, ETA 0:00:00",
    ]
    assert "…" not in out.getvalue()


def test_plain_lines_come_every_interval(clock):
    bar, out = plain(interval=10.0)
    bar.start("clean pass", 100, unit="batches")
    for _ in range(100):
        clock.now += 1.0
        bar.advance(1)
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 10 and len(set(lines)) == 10
    assert lines[0].startswith("clean pass: 10/100 batches, elapsed 0:00:10")


def test_steps_inside_one_batch_advance_the_task_and_its_eta(clock):
    bar, out = plain()
    bar.start("cw-l2", 1, unit="batches")
    # Search step 2 of 3 of C&W at max_iter 100: steps count from 100 of 300.
    progress_module.iterations(300, base=100, label="Adam step", samples=8)
    clock.now += 5.0  # start-up and tracing: not part of the pace
    progress_module.step(1, 8)
    clock.now += 10.0
    progress_module.step(51, 3)
    bar.close()
    assert out.getvalue().splitlines() == [
        "cw-l2: 0/1 batches, Adam step 101/300, 8/8 samples running, elapsed 0:00:05",
        # 50 steps in 10 s, 149 left: 29.8 s.
        "cw-l2: 0/1 batches, Adam step 151/300, 3/8 samples running, elapsed 0:00:15, "
        "ETA 0:00:30",
    ]
    assert bar.fraction() == pytest.approx(151 / 300)


def test_steps_go_to_the_last_started_task_only_while_it_runs(clock):
    bar, out = plain()
    quiet = Progress(quiet=True)
    assert not progress_module.listening()
    bar.start("a", 1)
    quiet.start("b", 1)  # a quiet task never listens
    assert progress_module.listening()
    progress_module.iterations(10)
    progress_module.step(4)
    assert "iteration 4/10" in out.getvalue()
    bar.close()
    assert not progress_module.listening()
    progress_module.step(5)  # nobody listens: nothing happens
    assert "iteration 5/10" not in out.getvalue()


def test_interval_from_the_environment(monkeypatch):
    monkeypatch.setenv("ADVBENCH_PROGRESS_SECONDS", "7.5")
    assert Progress(console=Console(file=io.StringIO())).interval == 7.5


@pytest.mark.parametrize("text", ["soon", "-1", "inf", "nan"])
def test_a_bad_interval_is_one_line(text, monkeypatch, tmp_path):
    from click.testing import CliRunner
    from advbench.cli import main

    monkeypatch.setenv("ADVBENCH_PROGRESS_SECONDS", text)
    result = CliRunner().invoke(main, ["reproduce", "--plan", "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output == (f"Error: ADVBENCH_PROGRESS_SECONDS must be a number of seconds "
                             f">= 0, got {text!r}; unset it for the default (30)\n")


def test_a_terminal_gets_a_bar_not_lines(clock):
    out = io.StringIO()
    bar = Progress(console=Console(file=out, force_terminal=True, width=120), interval=0)
    assert not bar.plain
    bar.start("pgd", 2, unit="batches")
    bar.advance(1, samples=10)
    bar.close()
    assert "━" in out.getvalue() and "pgd: 1/2 batches" not in out.getvalue()


def test_a_clean_pass_shows_its_batches(tiny_model):
    model, x, _ = tiny_model
    bar, out = plain()
    predict_labels(model, x, batch_size=4, progress=bar)
    lines = out.getvalue().splitlines()
    assert [line.split(",")[0] for line in lines] == ["clean pass: 1/2 batches",
                                                      "clean pass: 2/2 batches"]


@pytest.mark.parametrize("name, params, label, total", [
    ("pgd", dict(eps=0.2, steps=5), "step", 5),
    ("pgd", dict(eps=0.2, steps=5, early_stop=True), "step", 5),
    ("cw-l2", dict(max_iter=10, binary_search_steps=2, abort_early=False), "Adam step", 20),
    ("square", dict(eps=0.2, n_queries=30, n_restarts=2), "query", 60),
    ("apgd-ce", dict(eps=0.2, n_iter=10), "apgd-ce iteration", 10),
    ("deepfool", dict(max_iter=10), "step", 10),
    # 4x4 images, theta 0.5: 16 * (2 + 1) // 2 + 1 iterations at most (jsma.iteration_budget).
    ("jsma", dict(theta=0.5), "iteration", 25),
    # eps_step 0.05 up to 1: 19 grid points (fgsm_min.eps_grid).
    ("fgsm-min", dict(), "grid point", 19),
    ("fgsm-min", dict(search="authors"), "grid point", 19),
])
def test_attack_loops_report_their_steps_and_keep_their_bits(name, params, label, total,
                                                             tiny_model, monkeypatch):
    """Inside one batch (one compiled loop) the task advances step by step; the x_adv are
    bit-identical to a run without a listening bar (the graph without the callback)."""
    from advbench.attacks import fgsm_min
    # One grid point per pass for 6 samples (else the exact search takes all 19 in one).
    monkeypatch.setattr(fgsm_min, "MIN_IMAGES_PER_PASS", 6)
    model, x, y = tiny_model
    attack = make_attack(name, **params)
    silent = attack(model, x, y, seed=4).x_adv
    bar, out = plain()
    bar.start(name, 1, unit="batches")
    shown = attack(model, x, y, seed=4).x_adv
    bar.close()
    np.testing.assert_array_equal(shown, silent)
    steps = [int(line.split(f"{label} ")[1].split("/")[0])
             for line in out.getvalue().splitlines() if f", {label} " in line]
    assert all(line.startswith(f"{name}: 0/1 batches, {label} ")
               for line in out.getvalue().splitlines())
    assert steps and steps == sorted(steps) and len(set(steps)) > 1
    assert all(f"/{total}, " in line for line in out.getvalue().splitlines())
    if name not in ("square", "apgd-ce", "deepfool", "jsma", "fgsm-min"):
        # the others stop once all are fooled
        assert steps[-1] == total


def test_attack_in_a_log_prints_plain_lines_within_the_batches(trained_tiny_cnn, fake_data_dir,
                                                              tmp_path, monkeypatch):
    from click.testing import CliRunner
    from advbench.cli import main

    monkeypatch.setenv("ADVBENCH_PROGRESS_SECONDS", "0")
    path, _, _ = trained_tiny_cnn
    result = CliRunner().invoke(main, [
        "attack", str(path), "--attack", "pgd", "--eps", "0.1", "--steps", "3", "--limit", "16",
        "--batch-size", "8", "--data-dir", str(fake_data_dir), "-o", str(tmp_path / "a.h5")])
    assert result.exit_code == 0, result.stderr
    # The progress lines (not the run's parameter line, "pgd: norm=...").
    lines = [line for line in result.stderr.splitlines()
             if line.startswith("pgd: ") and not line.startswith("pgd: norm=")]
    assert "…" not in result.stderr and "━" not in result.stderr
    assert len(lines) == len(set(lines))
    # Every step of both batches, then each batch's end (no line before the first step:
    # the ETA's pace starts there, after tracing).
    starts = [
        "pgd: 0/2 batches, step 1/3, 8/8 samples running, elapsed ",
        "pgd: 0/2 batches, step 2/3, 8/8 samples running, elapsed ",
        "pgd: 0/2 batches, step 3/3, 8/8 samples running, elapsed ",
        "pgd: 1/2 batches, 8/16 samples done, robust acc ",
        "pgd: 1/2 batches, step 1/3, 8/8 samples running, 8/16 samples done, robust acc ",
        "pgd: 1/2 batches, step 2/3, 8/8 samples running, 8/16 samples done, robust acc ",
        "pgd: 1/2 batches, step 3/3, 8/8 samples running, 8/16 samples done, robust acc ",
        "pgd: 2/2 batches, 16/16 samples done, robust acc ",
    ]
    assert len(lines) == len(starts), lines
    for line, start in zip(lines, starts):
        assert line.startswith(start), (line, start)
    assert ", ETA " in lines[-1]


def test_training_in_a_log_prints_each_epoch_once(fake_data_dir, tmp_path):
    from click.testing import CliRunner
    from advbench.cli import main

    result = CliRunner().invoke(main, [
        "train", "--epochs", "2", "--limit", "40", "--data-dir", str(fake_data_dir),
        "-o", str(tmp_path / "m.h5")])
    assert result.exit_code == 0, result.stderr
    for epoch in (1, 2):
        assert len([line for line in result.stderr.splitlines()
                    if line.startswith(f"epoch {epoch}")]) == 1, result.stderr
    assert "…" not in result.stderr and "━" not in result.stderr


def test_a_long_loop_reports_a_bounded_number_of_times(monkeypatch):
    import tensorflow as tf

    from advbench.core.ops import REPORTS, report_step

    seen = []
    monkeypatch.setattr(progress_module, "step", lambda done, running=-1: seen.append(done))
    bar, _ = plain(interval=1e9)
    bar.start("loop", 1)

    @tf.function
    def loop():
        return tf.while_loop(lambda i: i < 1000, lambda i: report_step(i + 1, 7, budget=1000),
                             (tf.constant(0),))

    assert int(loop()[0]) == 1000
    bar.close()
    assert seen == list(range(50, 1001, 50)) and len(seen) == REPORTS
    seen.clear()
    # Traced while listening, it still calls back (progress.step then finds no listener).
    assert int(loop()[0]) == 1000
    assert seen == list(range(50, 1001, 50))


def test_evaluate_in_a_log_shows_its_passes(trained_tiny_cnn, fake_data_dir, tmp_path,
                                            monkeypatch):
    """The clean pass and the loss sensitivity over the test set (211 s of silence on 10,000
    CIFAR-10 images before) print their batches."""
    from click.testing import CliRunner
    from advbench.cli import main

    monkeypatch.setenv("ADVBENCH_PROGRESS_SECONDS", "0")
    path, _, _ = trained_tiny_cnn
    result = CliRunner().invoke(main, [
        "evaluate", str(path), "--limit", "40", "--batch-size", "16", "--data-dir",
        str(fake_data_dir), "--no-distance", "-o", str(tmp_path / "e.h5")])
    assert result.exit_code == 0, result.stderr
    passes = [line.split(",")[0] for line in result.stderr.splitlines()
              if line.startswith(("clean pass: ", "loss sensitivity: "))]
    assert passes == ["clean pass: 1/3 batches", "clean pass: 2/3 batches",
                      "clean pass: 3/3 batches", "loss sensitivity: 1/3 batches",
                      "loss sensitivity: 2/3 batches", "loss sensitivity: 3/3 batches"]


def test_fab_t_progress_names_its_run_and_the_samples_still_to_fool(
        trained_tiny_cnn, fake_data_dir, tmp_path, monkeypatch):
    """Trial 3: "fab-t step 95/100, 0/99 samples running" while all 99 ran (a minimal run walks
    every sample to its last step). The line now names the target and restart under way and
    counts the samples that run has not fooled yet."""
    import re

    from click.testing import CliRunner
    from advbench.cli import main

    monkeypatch.setenv("ADVBENCH_PROGRESS_SECONDS", "0")
    path, _, _ = trained_tiny_cnn
    result = CliRunner().invoke(main, [
        "attack", str(path), "--attack", "fab-t", "--n-iter", "2", "--n-target-classes", "2",
        "--limit", "8", "--batch-size", "8", "--data-dir", str(fake_data_dir),
        "-o", str(tmp_path / "a.h5")])
    assert result.exit_code == 0, result.stderr
    steps = [re.sub(r" samples still to fool.*", "", line.split(", ", 1)[1])
             for line in result.stderr.splitlines()
             if line.startswith("fab-t: 0/1 batches, fab-t target")]
    pattern = r"fab-t target ([12])/2, restart 1/1, step ([12])/2, \d/(\d)"
    assert steps and all(re.fullmatch(pattern, s) for s in steps), steps
    assert [re.fullmatch(pattern, s).group(1, 2) for s in steps] == [
        ("1", "1"), ("1", "2"), ("2", "1"), ("2", "2")]
    assert "samples running" not in result.stderr
