"""Writing outputs: the one atomic writer under a full disk and in read-only places, the
early writability check, the output lock, and Ctrl-C at start-up (issue 14)."""

import builtins
import errno
import os

import numpy as np
import pytest

from advbench import files
from advbench.artifacts import EVALUATION_SCHEMA, read_arrays, write_arrays
from advbench.errors import OutputError
from advbench.report import write_text

ENOSPC = "No space left on device; free space on that disk or choose another output path (-o)"


@pytest.fixture
def disk_full(monkeypatch):
    """The writer's low-level flush reports a full disk, as fsync does on delayed allocation."""
    def full(_):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(files, "_fsync", full)


def test_disk_full_leaves_the_previous_file_and_no_temporary(tmp_path, disk_full):
    path = tmp_path / "eval.csv"
    path.write_text("previous\n")
    with pytest.raises(OutputError) as error:
        write_text(path, "new,rows\n")
    assert str(error.value) == f"cannot write report {path}: {ENOSPC}"
    assert path.read_text() == "previous\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval.csv"]


def test_disk_full_leaves_nothing_at_a_new_path(tmp_path, disk_full):
    with pytest.raises(OutputError, match="cannot write report .*/new.csv: No space left"):
        write_text(tmp_path / "new.csv", "a\n")
    assert list(tmp_path.iterdir()) == []


def test_disk_full_while_writing_hdf5_keeps_the_previous_artifact(tmp_path, monkeypatch):
    path = tmp_path / "eval.h5"
    write_arrays(path, EVALUATION_SCHEMA, {"kind": "evaluate"}, {"pred": np.arange(3)})
    monkeypatch.setattr(files, "_fsync", lambda _: (_ for _ in ()).throw(
        OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))))
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
                           r"path \(-o\)$"):
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
