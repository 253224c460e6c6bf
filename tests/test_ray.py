"""--engine ray: one Ray task per shard, retried when its worker dies, merged bit-identical to
one process (skipped without Ray, an optional extra)."""

import os

import numpy as np
import pytest

from advbench.artifacts import ATTACK_SCHEMA, read_arrays
from advbench.attacks import make_attack
from advbench.errors import ArtifactError
from advbench.runner import AttackRun, attack_split

ray = pytest.importorskip("ray")

from advbench.ray_engine import attack_shard, attack_with_ray  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_shards_with_a_crashed_task_equal_one_process(local_ray, trained_tiny_cnn,
                                                          fake_data_dir, tmp_path):
    path, model, meta = trained_tiny_cnn
    run = AttackRun(model_path=str(path), dataset="mnist", limit=40, batch_size=8,
                    data_dir=str(fake_data_dir), seed=3)
    attack = make_attack("pgd", eps=0.2, steps=3)
    marker = tmp_path / "crashed"

    def crash_once(run, name, params, output, index, count):
        # The first attempt of shard 1 kills its worker process: Ray must retry the task.
        if index == 1 and not marker.exists():
            marker.touch()
            os._exit(1)
        return attack_shard(run, name, params, output, index, count)

    merged = attack_with_ray(run, attack, tmp_path / "ray.h5", workers=2, shard_task=crash_once)
    assert marker.exists()
    whole = attack_split(run, attack, model, meta, tmp_path / "whole.h5")
    one, two = read_arrays(whole, ATTACK_SCHEMA)[1], read_arrays(merged, ATTACK_SCHEMA)[1]
    assert sorted(one) == sorted(two)
    for name in one:
        np.testing.assert_array_equal(one[name], two[name], err_msg=name)
    # Done already: returned as it is; another run's artifact is not replaced.
    assert attack_with_ray(run, attack, merged, workers=2) == merged
    with pytest.raises(ArtifactError, match="ray.h5 exists and holds another or an unfinished "
                                            "run; pass --overwrite"):
        attack_with_ray(run, make_attack("pgd", eps=0.1, steps=3), merged, workers=2)
