"""tf.distribute strategies for training (``advbench train --strategy``): the devices of one
host (``MirroredStrategy``) or several hosts (``MultiWorkerMirroredStrategy``, configured by
``TF_CONFIG`` or TensorFlow's SLURM / Kubernetes cluster resolvers).

The training loop stays ours (``advbench.run.train``): the model and optimizer are built in the
strategy's scope and every step goes through ``strategy.run``.
"""

from __future__ import annotations

import json
import os
import re
from typing import Mapping

import tensorflow as tf

from advbench.core.errors import ParameterError
from advbench.run import STRATEGIES


def parse_devices(text: str | None) -> list[str]:
    """``"cpu:0,cpu:1"`` or ``"gpu:0,gpu:1"`` as TensorFlow device names
    (``["/cpu:0", "/cpu:1"]``); [] for None or ""."""
    if not text:
        return []
    names = [part.strip().lower() for part in text.split(",")]
    for name in names:
        if not re.fullmatch(r"(cpu|gpu):\d+", name):
            raise ParameterError(f"--devices takes a list such as cpu:0,cpu:1 or gpu:0,gpu:1, "
                                 f"got {name!r} in {text!r}")
    if len(set(names)) != len(names):
        raise ParameterError(f"--devices lists a device twice: {text!r}")
    return [f"/{name}" for name in names]


def _ensure_logical_cpus(devices: list[str]) -> None:
    """Split the host CPU into as many logical devices as ``devices`` names (cpu:0, cpu:1...),
    which TensorFlow allows only before its runtime starts: the way to test or benchmark
    a mirrored run without GPUs."""
    wanted = 1 + max((int(d.split(":")[1]) for d in devices if d.startswith("/cpu")), default=0)
    cpus = tf.config.list_physical_devices("CPU")
    current = tf.config.get_logical_device_configuration(cpus[0])
    if wanted <= max(1, len(current or [])):
        return
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(wanted)])
    except RuntimeError:
        raise ParameterError(f"cpu:{wanted - 1} does not exist and TensorFlow has started, so "
                             "no logical CPU devices can be added; run the training in a fresh "
                             "process (advbench train ...)") from None


def make_strategy(name: str, devices: list[str] | None = None) -> tf.distribute.Strategy:
    """The tf.distribute strategy of ``--strategy name --devices ...``.

    none: one device (the default strategy, or a ``OneDeviceStrategy`` on the one device
    given); mirrored: ``MirroredStrategy`` over ``devices`` (default: all GPUs, else the CPU);
    multi-worker: ``MultiWorkerMirroredStrategy`` over the hosts of ``TF_CONFIG`` (or of the
    SLURM / Kubernetes resolvers TensorFlow picks), each with its local devices.

    Raises ParameterError for an unknown name, several devices with ``none``, devices with
    ``multi-worker``, and a device this host does not have.
    """
    devices = list(devices or [])
    if name not in STRATEGIES:
        raise ParameterError(f"strategy must be one of {', '.join(STRATEGIES)}, got {name!r}")
    if name == "multi-worker":
        if devices:
            raise ParameterError("--strategy multi-worker uses each worker's local devices; "
                                 "drop --devices (set CUDA_VISIBLE_DEVICES per worker instead)")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "none" and len(devices) > 1:
        raise ParameterError(f"--strategy none trains on one device, got {len(devices)}; use "
                             "--strategy mirrored for several")
    _ensure_logical_cpus(devices)
    available = {d.name.lower().replace("/device:", "/")
                 for d in tf.config.list_logical_devices()}
    for device in devices:
        if device not in available:
            found = ", ".join(sorted(a.lstrip("/") for a in available))
            raise ParameterError(f"device {device.lstrip('/')} is not on this host (found: "
                                 f"{found})")
    if name == "none":
        return tf.distribute.OneDeviceStrategy(devices[0]) if devices else \
            tf.distribute.get_strategy()
    return tf.distribute.MirroredStrategy(devices=devices or None)


def is_chief(environ: Mapping[str, str] | None = None) -> bool:
    """True in the process that writes artifacts and checkpoints: any process without a
    ``TF_CONFIG`` cluster, its ``chief`` task, or worker 0 of a cluster without a chief."""
    environ = os.environ if environ is None else environ
    try:
        config = json.loads(environ.get("TF_CONFIG") or "{}")
    except json.JSONDecodeError:
        raise ParameterError("TF_CONFIG is not valid JSON; see docs/scale.md for its form") \
            from None
    task = config.get("task") or {}
    if not config.get("cluster") or not task:
        return True
    if task.get("type") == "chief":
        return True
    return task.get("type") == "worker" and int(task.get("index", 0)) == 0 and \
        "chief" not in config["cluster"]


def describe(strategy: tf.distribute.Strategy, name: str) -> dict:
    """What the model artifact records: strategy name, replica count, device names and, for
    multi-worker, the worker count (from ``TF_CONFIG`` where set)."""
    try:
        devices = list(strategy.extended.worker_devices)
    except RuntimeError:  # the default strategy has no device list: TF places ops itself
        devices = []
    out = {"strategy": name, "replicas": int(strategy.num_replicas_in_sync),
           "devices": devices or [_default_device()]}
    if name == "multi-worker":
        cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
        out["workers"] = sum(len(v) for v in cluster.values()) or None
    return out


def _default_device() -> str:
    gpus = tf.config.list_logical_devices("GPU")
    return gpus[0].name if gpus else "/device:CPU:0"
