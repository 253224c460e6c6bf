"""Training on tf.distribute strategies and resuming from epoch checkpoints."""

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from advbench.core.errors import ArtifactError, ParameterError
from advbench.core.progress import Progress
from advbench.defenses import make_defense
from advbench.run.artifacts import load_model
from advbench.run.distribute import is_chief, make_strategy, parse_devices
from advbench.run.train import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
# Two replicas sum their halves' gradients where one device sums the whole batch: the
# weights agree to float rounding (measured: <= 2.3e-7 after 14 steps, none and gda), on
# Eigen's kernels. On oneDNN's one step's gradients agree as closely (2.3e-6 of the largest,
# no sign differs), but with GDA the weights differ by 1.4e-3 after the first step (36
# images) and 1.5e-2 after an epoch of 200 (none: 1.8e-7); likely (not isolated) Adam's first
# steps, which move a weight by about the learning rate whatever its gradient's size, on
# near-zero entries whose sign the rounding decides. The test holds the replicas' arithmetic
# on Eigen, where that rounding is equal.
TOLERANCE = 1e-5


class InterruptAt(Progress):
    """Progress that presses Ctrl-C when the task named ``name`` starts."""

    def __init__(self, name: str):
        super().__init__(quiet=True)
        self.name = name

    def start(self, description: str, total: int, **kwargs) -> None:
        if description == self.name:
            raise KeyboardInterrupt
        super().start(description, total, **kwargs)


def _max_difference(a, b) -> float:
    return max(float(np.max(np.abs(u - v))) for u, v in zip(a, b))


def test_mirrored_on_two_cpu_devices_matches_one_device(fake_data_dir):
    # Logical CPU devices exist only if set before TensorFlow starts: a fresh process.
    code = textwrap.dedent(f"""
        import json, numpy as np
        from advbench.defenses import make_defense
        from advbench.run.train import TrainConfig, train
        weights, metas = {{}}, {{}}
        for strategy, devices in [("mirrored", ("/cpu:0", "/cpu:1")), ("none", ())]:
            config = TrainConfig(epochs=2, limit=200, batch_size=32,
                                 data_dir={str(fake_data_dir)!r}, strategy=strategy,
                                 devices=devices)
            model, metas[strategy] = train(config, make_defense("gda", "mnist"))
            weights[strategy] = model.get_weights()
        diff = max(float(np.max(np.abs(a - b))) for a, b in zip(weights["none"],
                                                               weights["mirrored"]))
        print(json.dumps({{"diff": diff, "meta": {{k: [m["strategy"], m["replicas"],
                                                     m["devices"]] for k, m in metas.items()}}}}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT),
                              "TF_ENABLE_ONEDNN_OPTS": "0"}, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert 0 <= result["diff"] < TOLERANCE
    assert result["meta"]["mirrored"][:2] == ["mirrored", 2]
    assert [d.rsplit("/", 1)[-1] for d in result["meta"]["mirrored"][2]] == ["device:CPU:0",
                                                                             "device:CPU:1"]
    assert result["meta"]["none"] == ["none", 1, ["/device:CPU:0"]]


@pytest.mark.parametrize("defense, params, interrupt", [
    ("gda", {}, "epoch 2/3"),
    # Static augmentation: interrupted in the second phase, resumed from its checkpoint.
    ("fgsm-at", {}, "augmented: epoch 2/3"),
])
def test_interrupted_training_resumes_to_the_same_weights(defense, params, interrupt,
                                                          fake_data_dir, tmp_path):
    config = TrainConfig(epochs=3, patience=1, limit=64, batch_size=32,
                         data_dir=str(fake_data_dir))
    whole, whole_meta = train(config, make_defense(defense, "mnist", **params))
    config.checkpoint_dir = str(tmp_path / "ckpt")
    with pytest.raises(KeyboardInterrupt):
        train(config, make_defense(defense, "mnist", **params), progress=InterruptAt(interrupt))
    assert (tmp_path / "ckpt" / "checkpoint.h5").exists()
    resumed, resumed_meta = train(config, make_defense(defense, "mnist", **params))
    assert _max_difference(whole.get_weights(), resumed.get_weights()) == 0.0
    strip = ("seconds",)
    assert [{k: v for k, v in e.items() if k not in strip} for e in resumed_meta["history"]] == \
        [{k: v for k, v in e.items() if k not in strip} for e in whole_meta["history"]]
    assert resumed_meta["samples_processed"] == whole_meta["samples_processed"]
    # A finished checkpoint: rerunning trains nothing and gives the same weights again.
    again, _ = train(config, make_defense(defense, "mnist", **params))
    assert _max_difference(whole.get_weights(), again.get_weights()) == 0.0


def test_checkpoint_of_another_run_is_refused(fake_data_dir, tmp_path):
    config = TrainConfig(epochs=1, limit=20, batch_size=32, data_dir=str(fake_data_dir),
                         checkpoint_dir=str(tmp_path))
    train(config, make_defense("none", "mnist"))
    config.seed = 1
    with pytest.raises(ArtifactError, match=r"checkpoint.h5 is the checkpoint of another "
                                            r"training run \(other data, model, defense or "
                                            r"settings\); give another --checkpoint-dir"):
        train(config, make_defense("none", "mnist"))


def test_own_architectures_train_on_one_device_only(fake_data_dir, tiny_model):
    config = TrainConfig(epochs=1, limit=20, data_dir=str(fake_data_dir), strategy="mirrored")
    with pytest.raises(ParameterError, match=r"^--strategy mirrored and multi-worker train the "
                                             r"zoo's architectures; train your own model with "
                                             r"--strategy none$"):
        train(config, make_defense("none", "mnist"), model=tiny_model, source={})


@pytest.mark.parametrize("text, message", [
    ("cpu0", "--devices takes a list such as cpu:0,cpu:1 or gpu:0,gpu:1, got 'cpu0' in 'cpu0'"),
    ("cpu:0,cpu:0", "--devices lists a device twice: 'cpu:0,cpu:0'"),
])
def test_parse_devices_errors(text, message):
    with pytest.raises(ParameterError) as info:
        parse_devices(text)
    assert str(info.value) == message


def test_parse_devices():
    assert parse_devices("CPU:0, gpu:1") == ["/cpu:0", "/gpu:1"]
    assert parse_devices(None) == [] and parse_devices("") == []


@pytest.mark.parametrize("name, devices, message", [
    ("ring", [], "strategy must be one of none, mirrored, multi-worker, got 'ring'"),
    ("none", ["/cpu:0", "/gpu:0"], "--strategy none trains on one device, got 2; use "
                                   "--strategy mirrored for several"),
    ("multi-worker", ["/cpu:0"], "--strategy multi-worker uses each worker's local devices; "
                                 "drop --devices (set CUDA_VISIBLE_DEVICES per worker instead)"),
    ("mirrored", ["/gpu:7"], "device gpu:7 is not on this host (found: "),
])
def test_make_strategy_errors(name, devices, message):
    with pytest.raises(ParameterError) as info:
        make_strategy(name, devices)
    assert str(info.value).startswith(message)


@pytest.mark.parametrize("tf_config, chief", [
    (None, True),
    ({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 0}}, True),
    ({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}, False),
    ({"cluster": {"chief": ["c:1"], "worker": ["a:1"]}, "task": {"type": "worker", "index": 0}},
     False),
    ({"cluster": {"chief": ["c:1"], "worker": ["a:1"]}, "task": {"type": "chief", "index": 0}},
     True),
])
def test_is_chief(tf_config, chief):
    environ = {} if tf_config is None else {"TF_CONFIG": json.dumps(tf_config)}
    assert is_chief(environ) is chief


def test_is_chief_refuses_bad_tf_config():
    with pytest.raises(ParameterError, match="TF_CONFIG is not valid JSON; see docs/scale.md"):
        is_chief({"TF_CONFIG": "{"})


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_two_localhost_workers_match_one_device(fake_data_dir, tmp_path):
    workers = [f"localhost:{port}" for port in _free_ports(2)]
    command = [sys.executable, "-m", "advbench", "train", "--strategy", "multi-worker",
               "--epochs", "2", "--limit", "200", "--batch-size", "32", "--data-dir",
               str(fake_data_dir), "-o", str(tmp_path / "mw.h5"), "--checkpoint-dir",
               str(tmp_path / "ckpt"), "-q"]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, env={
                                      **os.environ, "PYTHONPATH": str(ROOT),
                                      "TF_CONFIG": json.dumps({"cluster": {"worker": workers},
                                                               "task": {"type": "worker",
                                                                        "index": i}})})
                 for i in range(2)]
    outputs = [p.communicate(timeout=600) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], [err[-2000:] for _, err in outputs]
    assert [out for out, _ in outputs] == [f"{tmp_path / 'mw.h5'}\n", ""]
    model, meta = load_model(tmp_path / "mw.h5")
    assert (meta["strategy"], meta["replicas"], meta["workers"]) == ("multi-worker", 2, 2)
    config = TrainConfig(epochs=2, limit=200, batch_size=32, data_dir=str(fake_data_dir))
    alone, _ = train(config, make_defense("none", "mnist"))
    assert _max_difference(model.get_weights(), alone.get_weights()) < TOLERANCE
