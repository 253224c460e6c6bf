"""Writing outputs: the one atomic writer under a full disk and in read-only places, the
early writability check, the output lock, and Ctrl-C at start-up (issue 14)."""

import builtins
import os

import numpy as np
import pytest

from advbench.core import files
from advbench.core.errors import OutputError
from advbench.run.artifacts import EVALUATION_SCHEMA, read_arrays, write_arrays
from advbench.score.report import write_text

ENOSPC = "No space left on device; free space on that disk or choose another output path (-o)"


def test_disk_full_leaves_the_previous_file_and_no_temporary(tmp_path, fill_disk):
    path = tmp_path / "eval.csv"
    path.write_text("previous\n")
    fill_disk()
    with pytest.raises(OutputError) as error:
        write_text(path, "new,rows\n")
    assert str(error.value) == f"cannot write report {path}: {ENOSPC}"
    assert path.read_text() == "previous\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval.csv"]


def test_disk_full_leaves_nothing_at_a_new_path(tmp_path, fill_disk):
    fill_disk()
    with pytest.raises(OutputError, match="cannot write report .*/new.csv: No space left"):
        write_text(tmp_path / "new.csv", "a\n")
    assert list(tmp_path.iterdir()) == []


def test_disk_full_while_writing_hdf5_keeps_the_previous_artifact(tmp_path, fill_disk):
    path = tmp_path / "eval.h5"
    write_arrays(path, EVALUATION_SCHEMA, {"kind": "evaluate"}, {"pred": np.arange(3)})
    fill_disk()
    with pytest.raises(OutputError) as error:
        write_arrays(path, EVALUATION_SCHEMA, {"kind": "evaluate"}, {"pred": np.arange(5)})
    assert str(error.value) == f"cannot write artifact {path}: {ENOSPC}"
    assert read_arrays(path, EVALUATION_SCHEMA)[1]["pred"].tolist() == [0, 1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval.h5"]


def test_a_parent_that_is_a_file(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OutputError) as error:
        files.check_writable(tmp_path / "afile" / "sub" / "out.h5", "artifact")
    assert str(error.value) == (f"cannot write artifact {tmp_path}/afile/sub/out.h5: "
                                f"{tmp_path}/afile is a file, not a folder; choose another "
                                "output path (-o)")


def test_an_output_that_is_a_folder(tmp_path):
    with pytest.raises(OutputError, match=r"cannot write plot \S+: it is a folder; give a file "
                       "path$"):
        files.check_writable(tmp_path, "plot")


def test_a_read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("running as root: permissions do not bind (see the parent-is-a-file "
                        "tests)")
        with pytest.raises(OutputError, match=r"cannot write CSV \S+/ro/x.csv: Permission "
                           "denied; the folder is read-only for you: choose another output "
                           r"path \(--csv\)$"):
            files.check_writable(folder / "x.csv", "CSV")
    finally:
        folder.chmod(0o700)


def test_a_second_writer_of_the_same_output_is_refused(tmp_path):
    path = tmp_path / "attack.h5"
    with files.output_lock(path, "attack artifact"):
        with pytest.raises(OutputError) as error:
            with files.output_lock(path, "attack artifact", wait_s=0.05):
                pass
    assert str(error.value).startswith(f"{path} is being written by process {os.getpid()} (")
    assert str(error.value).endswith("); wait for it to finish or choose another output path "
                                     "(-o)")
    with files.output_lock(path, "attack artifact", wait_s=0.05):  # released: free again
        pass


def test_ctrl_c_while_the_cli_loads_is_one_line(monkeypatch, capsys):
    import advbench.__main__ as entry

    real_import = builtins.__import__

    def interrupted(name, *args, **kwargs):
        if name == "advbench.cli":
            raise KeyboardInterrupt
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", interrupted)
    with pytest.raises(SystemExit) as exit_info:
        entry.run()
    assert exit_info.value.code == 130
    assert capsys.readouterr().err == "interrupted while starting; nothing was done\n"


FILE_SIZE_LIMIT = """
import resource, signal, sys
import numpy as np
from advbench.run.artifacts import EVALUATION_SCHEMA, write_arrays
from advbench.core.errors import AdvbenchError
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
try:
    write_arrays(sys.argv[1], EVALUATION_SCHEMA, {"kind": "evaluate"},
                 {"pred": np.random.default_rng(0).random(1 << 19)})  # 4 MiB
except AdvbenchError as e:
    print(e)
    sys.exit(1)
"""


def test_hdf5_that_does_not_fit_fails_cleanly_in_hdf5_itself(tmp_path):
    """A real failed write inside the HDF5 library (a file-size limit standing in for a full
    disk, which tests cannot mount): one line, exit 1, no crash in HDF5's close, the previous
    artifact intact and no temporary file left."""
    import subprocess
    import sys

    path = tmp_path / "eval.h5"
    write_arrays(path, EVALUATION_SCHEMA, {"kind": "evaluate"}, {"pred": np.arange(3)})
    proc = subprocess.run([sys.executable, "-c", FILE_SIZE_LIMIT, str(path)],
                          capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == (f"cannot write artifact {path}: File too large; free space on that "
                           "disk or choose another output path (-o)\n")
    assert read_arrays(path, EVALUATION_SCHEMA)[1]["pred"].tolist() == [0, 1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval.h5"]


def test_written_files_get_the_usual_permissions(tmp_path):
    mask = os.umask(0o022)
    try:
        write_text(tmp_path / "a.csv", "x\n")
    finally:
        os.umask(mask)
    assert (tmp_path / "a.csv").stat().st_mode & 0o777 == 0o644


HOLD_LOCK = """
import pathlib, sys, time
from advbench.core.files import output_lock
with output_lock(sys.argv[1], "attack artifact"):
    pathlib.Path(sys.argv[2]).write_text("held")
    while not pathlib.Path(sys.argv[3]).exists():
        time.sleep(0.01)
"""


def test_a_second_process_writing_the_same_output_is_refused(tmp_path):
    import subprocess
    import sys
    import time

    path, held, done = tmp_path / "run.h5", tmp_path / "held", tmp_path / "done"
    other = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(path), str(held), str(done)])
    try:
        while not held.exists():
            assert other.poll() is None, "the lock holder died"
            time.sleep(0.01)
        with pytest.raises(OutputError, match=f"run.h5 is being written by process {other.pid} "
                           r"\(.*\); wait for it to finish or choose another output path"):
            with files.output_lock(path, "attack artifact", wait_s=0.05):
                pass
    finally:
        done.write_text("")
        assert other.wait(timeout=60) == 0
    with files.output_lock(path, "attack artifact", wait_s=0.05):  # released with the process
        pass


def test_a_folder_under_a_file(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OutputError) as error:
        files.ensure_folder(tmp_path / "afile" / "mnist", "data folder")
    assert str(error.value) == (f"cannot write data folder {tmp_path}/afile/mnist: "
                                f"{tmp_path}/afile is a file, not a folder; choose another "
                                "output path (-o)")
    assert files.ensure_folder(tmp_path / "new" / "mnist").is_dir()


def test_two_hdf5_files_built_in_memory_at_once(tmp_path):
    # HDF5 refuses a second open file under one name: each in-memory file has its own.
    from advbench.run.artifacts import atomic_h5

    with atomic_h5(tmp_path / "a.h5") as a, atomic_h5(tmp_path / "b.h5") as b:
        a["x"], b["x"] = np.arange(2), np.arange(3)
    with atomic_h5(tmp_path / "a.h5") as again:  # the same path once more
        again["x"] = np.arange(4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.h5", "b.h5"]
    import h5py
    with h5py.File(tmp_path / "a.h5") as f, h5py.File(tmp_path / "b.h5") as g:
        assert f["x"][()].tolist() == [0, 1, 2, 3] and g["x"][()].tolist() == [0, 1, 2]
