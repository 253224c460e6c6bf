"""A real full disk (a small tmpfs, not a simulated ENOSPC) cannot crash a run: every HDF5
writer (attack, a mid-run checkpoint, evaluate, train, curves, audit) and the plot writer
end with one line and exit 1, and the file that was there before survives.

HDF5's C library, writing on a full disk itself, died with a segmentation fault inside its
flush and close; advbench now builds HDF5 files in memory and writes their bytes with the
one atomic writer (``artifacts.atomic_h5``). Mounting needs root; the tests skip otherwise.
"""

import contextlib
import errno
import os
import subprocess
import uuid

import numpy as np
import pytest
from click.testing import CliRunner

from advbench.attacks import make_attack
from advbench.cli import main
from advbench.core.errors import OutputError
from advbench.core.progress import Progress
from advbench.run.artifacts import ATTACK_SCHEMA, EVALUATION_SCHEMA, read_arrays, write_arrays
from advbench.run.runner import AttackRun, attack_split

ENOSPC_FIX = "No space left on device; free space on that disk or choose another output path (-o)"


@pytest.fixture
def disk(tmp_path):
    """A 2 MiB tmpfs at tmp_path/disk (unmounted afterwards); skips unless root can mount."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def fill(folder, leave: int = 0) -> None:
    """Fill the file system of ``folder`` to the last byte, then free ``leave`` bytes (a
    multiple of the 4 KiB page): a file larger than that meets ENOSPC midway."""
    filler = folder / f"filler-{uuid.uuid4().hex}"
    with open(filler, "wb", buffering=0) as f:
        with contextlib.suppress(OSError):
            while True:
                f.write(bytes(4096))
        with contextlib.suppress(OSError):
            while True:
                f.write(b"\0")
    probe = folder / "probe"
    with pytest.raises(OSError) as info:
        with open(probe, "wb", buffering=0) as f:
            f.write(b"\0")
    assert info.value.errno == errno.ENOSPC
    probe.unlink()
    if leave:
        os.truncate(filler, os.path.getsize(filler) - leave)


def leftovers(folder, name):
    """Files at or beside ``name`` other than its lock: temporary files left behind."""
    return [p.name for p in folder.iterdir() if p.name.startswith((name, f".{name}."))
            and not p.name.endswith(("lock", "lock-owner"))]


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(result):
    assert result.exit_code == 1, result.output
    assert result.stdout == "" and len(result.stderr.strip().splitlines()) == 1, result.output
    return result.stderr


@pytest.fixture
def cli_env(trained_tiny_cnn, fake_data_dir, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ADVBENCH_DATA", str(fake_data_dir))
    return trained_tiny_cnn[0]


@pytest.mark.parametrize("command, what", [
    (["attack", "{model}", "--attack", "fgsm", "--limit", 10, "-q"], "artifact"),
    (["attack", "{model}", "--attack", "fgsm", "--eps", "0.1,0.2", "--limit", 10, "-q"],
     "artifact"),
    (["evaluate", "{model}", "--limit", 10, "-q", "--no-distance"], "artifact"),
    (["audit", "{model}", "--eps", "0.3", "--checks", "1", "--limit", 10, "--batch-size", 10,
      "-q"], "artifact"),
    (["train", "--model", "mlp", "--epochs", "1", "--limit", 100, "-q"], "artifact"),
])
def test_hdf5_writers_on_a_real_full_disk_end_with_one_line(cli_env, disk, command, what):
    out = disk / "out.h5"
    fill(disk)
    result = invoke(*[str(part).format(model=cli_env) for part in command], "-o", out)
    assert one_line_error(result) == f"Error: cannot write {what} {out}: {ENOSPC_FIX}\n"
    assert leftovers(disk, "out.h5") == []


def test_an_attack_meeting_a_full_disk_midway_ends_with_one_line(cli_env, disk):
    # 16 KiB free: HDF5 itself, writing there, crashed (exit 139) inside its flush or close.
    out = disk / "out.h5"
    fill(disk, leave=16384)
    result = invoke("attack", cli_env, "--attack", "fgsm", "--limit", 30, "-q", "-o", out)
    assert one_line_error(result) == f"Error: cannot write artifact {out}: {ENOSPC_FIX}\n"
    assert leftovers(disk, "out.h5") == []


def test_an_evaluation_on_a_real_full_disk_keeps_the_previous_file(cli_env, disk):
    out = disk / "eval.h5"
    write_arrays(out, EVALUATION_SCHEMA, {"kind": "evaluate", "summary": "{}"},
                 {"previous": np.arange(3)})
    before = out.read_bytes()
    fill(disk)
    # --overwrite: the file holds another evaluation, which evaluate refuses otherwise.
    result = invoke("evaluate", cli_env, "--limit", 10, "-q", "--no-distance", "-o", out,
                    "--overwrite")
    assert one_line_error(result) == f"Error: cannot write artifact {out}: {ENOSPC_FIX}\n"
    assert out.read_bytes() == before and leftovers(disk, "eval.h5") == ["eval.h5"]


def test_a_plot_on_a_real_full_disk_ends_with_one_line(cli_env, disk):
    out = disk / "curve.png"
    fill(disk)
    result = invoke("attack", cli_env, "--attack", "fgsm", "--eps", "0.1,0.2", "--limit", 10,
                    "-q", "-o", "curve.h5", "--plot", out)
    assert one_line_error(result) == (f"Error: cannot write plot {out}: "
                                      f"{ENOSPC_FIX.replace('(-o)', '(--plot)')}\n")
    assert leftovers(disk, "curve.png") == []


def test_a_training_checkpoint_on_a_real_full_disk_ends_with_one_line(cli_env, disk):
    fill(disk)
    result = invoke("train", "--model", "mlp", "--epochs", "1", "--limit", 100, "-q",
                    "--checkpoint-dir", disk / "ckpt", "-o", "model.h5")
    checkpoint = disk / "ckpt" / "checkpoint.h5"
    assert one_line_error(result) == f"Error: cannot write artifact {checkpoint}: {ENOSPC_FIX}\n"
    assert not os.path.exists("model.h5")


class FillAfter(Progress):
    """A progress display that fills ``folder`` after ``batches`` batches (a disk that runs
    full in the middle of a run)."""

    def __init__(self, folder, batches):
        super().__init__(quiet=True)
        self.folder, self.left = folder, batches

    def advance(self, steps=1, **kwargs):
        super().advance(steps, **kwargs)
        if steps:
            self.left -= 1
            if self.left == 0:
                fill(self.folder)


def test_a_mid_run_checkpoint_on_a_real_full_disk_keeps_the_previous_one(trained_tiny_cnn,
                                                                         fake_data_dir, disk):
    path, model, meta = trained_tiny_cnn
    run = AttackRun(model_path=str(path), dataset="mnist", limit=30, batch_size=10,
                    data_dir=str(fake_data_dir))
    out = disk / "run.h5"
    # A checkpoint after every batch: the first is written, the disk fills, the second fails.
    with pytest.raises(OutputError) as info:
        attack_split(run, make_attack("fgsm", eps=0.1), model, meta, out, checkpoint_seconds=-1,
                     progress=FillAfter(disk, 2))
    assert str(info.value) == f"cannot write artifact {out}: {ENOSPC_FIX}"
    attrs, arrays = read_arrays(out, ATTACK_SCHEMA)
    assert not attrs["complete"] and arrays["completed"].tolist() == [True] * 10 + [False] * 20
    assert leftovers(disk, "run.h5") == ["run.h5"]


ROFS_FIX = ("Read-only file system; the folder is read-only for you: choose another output "
            "path (-o)")


def test_export_and_merge_on_a_real_full_or_read_only_disk(cli_env, disk):
    shards = []
    for i in range(2):
        result = invoke("attack", cli_env, "--attack", "fgsm", "--limit", 20, "--batch-size",
                        10, "-q", "--shard", f"{i}/2", "-o", "run.h5")
        assert result.exit_code == 0, result.output
        shards.append(result.stdout.strip())
    fill(disk)
    result = invoke("export", cli_env, "-o", disk / "m.keras", "-q")
    assert one_line_error(result) == (f"Error: cannot write model file {disk / 'm.keras'}: "
                                      f"{ENOSPC_FIX}\n")
    result = invoke("merge", *shards, "-o", disk / "m.h5")
    assert one_line_error(result) == f"Error: cannot write artifact {disk / 'm.h5'}: {ENOSPC_FIX}\n"
    assert leftovers(disk, "m.keras") == [] and leftovers(disk, "m.h5") == []
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    result = invoke("export", cli_env, "-o", disk / "m.keras", "-q")
    assert one_line_error(result) == f"Error: cannot write model file {disk / 'm.keras'}: {ROFS_FIX}\n"
    result = invoke("merge", *shards, "-o", disk / "m.h5")
    assert one_line_error(result) == (f"Error: cannot write attack artifact {disk / 'm.h5'}: "
                                      f"{ROFS_FIX}\n")


def test_certify_and_transfer_to_a_read_only_disk_end_with_one_line(cli_env, disk):
    """-o of certify and transfer, and transfer's --csv, on a read-only file system: one line
    naming the option, exit 1, and the file that was there survives."""
    (disk / "previous.csv").write_text("previous")
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    certify = ["certify", cli_env, "--sigma", "0.25", "--n0", "4", "--n", "8", "--limit", 4,
               "--sigma-mismatch-ok", "-q"]
    transfer = ["transfer", "--source", cli_env, "--target", cli_env, "--attack", "fgsm",
                "--limit", 4, "--runs-dir", "runs", "-q"]
    for command, flag, what, name in [(certify, "-o", "artifact", "c.h5"),
                                      (certify, "-o", "artifact", "previous.csv"),
                                      (transfer, "-o", "artifact", "t.h5"),
                                      (transfer, "--csv", "CSV", "t.csv"),
                                      (transfer, "--csv", "CSV", "previous.csv")]:
        result = invoke(*command, flag, disk / name)
        assert one_line_error(result) == (
            f"Error: cannot write {what} {disk / name}: {ROFS_FIX.replace('(-o)', f'({flag})')}\n")
    assert (disk / "previous.csv").read_text() == "previous"
    assert sorted(p.name for p in disk.iterdir()) == ["previous.csv"]
