"""Hostile data files: labels out of range, IDX headers whose dimensions overflow, gzip
bombs, and the shared array check every source goes through (issue 14)."""

import gzip
import zlib

import numpy as np
import pytest

from advbench import data
from advbench.core.errors import DataError
from conftest import deflate_bomb, peak_rss, reset_peak_rss, write_fake_mnist, write_idx


@pytest.fixture(autouse=True)
def _no_cache():
    data._CACHE.clear()
    yield
    data._CACHE.clear()


def test_labels_out_of_range_in_mnist_idx(tmp_path):
    write_fake_mnist(tmp_path, n_train=20, n_test=10)
    labels = np.arange(20, dtype=np.uint8) % 10
    labels[3] = 200
    write_idx(tmp_path / "train-labels-idx1-ubyte", labels, 0x00000801)
    with pytest.raises(DataError, match=r"labels in \S+/train-labels-idx1-ubyte.gz include 200, "
                       r"outside 0..9; the file is corrupt or of another data set$"):
        data.load("mnist", "train", data_dir=tmp_path)


def test_idx_header_dimensions_that_overflow(tmp_path):
    write_fake_mnist(tmp_path, n_train=20, n_test=10)
    header = (0x00000803).to_bytes(4, "big") + (2 ** 32 - 1).to_bytes(4, "big") * 3
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(header + bytes(100)))
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.gz declares dimensions "
                       r"\(4294967295, 4294967295, 4294967295\) \(\d+ bytes\), more than the data "
                       r"set holds \(7840000 bytes\)"):
        data.load("mnist", "test", data_dir=tmp_path)


def test_gzip_bomb_is_read_no_further_than_its_header_declares(tmp_path):
    write_fake_mnist(tmp_path, n_train=20, n_test=10)
    header = (0x00000803).to_bytes(4, "big") + b"".join(
        d.to_bytes(4, "big") for d in (10, 28, 28))
    # A second gzip member after the header inflates to 2 GiB of zeros.
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(
        gzip.compress(header) + deflate_bomb(2 << 30, gzip_format=True))
    before = reset_peak_rss()
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.gz holds more data than its "
                       r"header declares \(\(10, 28, 28\), 7840 bytes\); it is corrupt"):
        data.load("mnist", "test", data_dir=tmp_path)
    assert peak_rss() - before < 200 * 1024  # KiB


def test_cifar_labels_out_of_range(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        records = np.zeros((3, data.CIFAR_RECORD), np.uint8)
        records[:, 0] = [1, 12, 3]
        records.tofile(folder / name)
    with pytest.raises(DataError, match=r"labels in \S+/test_batch.bin include 12, outside 0..9"):
        data.load("cifar10", "test", data_dir=tmp_path)


def test_cifar_file_larger_than_a_batch_is_refused_before_reading(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        (folder / name).write_bytes(b"")
    with open(folder / "test_batch.bin", "wb") as f:  # sparse: no disk used
        f.truncate(data.CIFAR_RECORD * 20001)
    with pytest.raises(DataError, match=r"test_batch.bin is truncated or corrupt \(61463073 bytes "
                       r"is not a multiple of 3073 up to 10000 records\)"):
        data.load("cifar10", "test", data_dir=tmp_path)


GOOD_X = np.zeros((3, 28, 28, 1), np.uint8)
GOOD_Y = np.array([0, 1, 9])


@pytest.mark.parametrize("x, y, message", [
    (GOOD_X.astype(np.int32), GOOD_Y, r"images in src are int32 of shape \(3, 28, 28, 1\); "
     r"expected uint8 or float \(N, H, W, C\)"),
    (GOOD_X[..., 0], GOOD_Y, r"images in src are uint8 of shape \(3, 28, 28\)"),
    (np.zeros((3, 32, 32, 3), np.uint8), GOOD_Y, r"images in src have shape \(32, 32, 3\), "
     r"expected \(28, 28, 1\)"),
    (GOOD_X, GOOD_Y[:, None], r"labels in src are int64 of shape \(3, 1\); expected integers "
     r"of shape \(N,\)"),
    (GOOD_X, GOOD_Y.astype(np.float32), r"labels in src are float32 of shape \(3,\)"),
    (GOOD_X, GOOD_Y[:2], "src has 3 images but 2 labels"),
    (GOOD_X, np.array([0, -1, 2]), "labels in src include -1, outside 0..9"),
    (GOOD_X, np.array([0, 10, 2]), "labels in src include 10, outside 0..9"),
])
def test_check_split_arrays(x, y, message):
    with pytest.raises(DataError, match=message):
        data.check_split_arrays(x, y, where="src", num_classes=10, image_shape=(28, 28, 1))


def test_check_split_arrays_accepts_a_good_split():
    data.check_split_arrays(GOOD_X, GOOD_Y.astype(np.uint8), where="src", num_classes=10,
                            image_shape=(28, 28, 1))


# -- a user's .npz and image folders: sizes from headers, before anything is allocated -------
def npz_with_header(path, shape, payload=b"", dtype="|u1", others=None):
    """An .npz whose x.npy declares ``shape`` in its header but holds ``payload`` only."""
    import io
    import zipfile

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": dtype, "fortran_order": False,
                                                  "shape": shape})
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x.npy", header.getvalue() + payload)
        for name, array in (others or {"y": np.arange(4) % 2}).items():
            buffer = io.BytesIO()
            np.save(buffer, array)
            archive.writestr(f"{name}.npy", buffer.getvalue())
    return path


def test_npz_header_of_a_billion_images_is_one_line(tmp_path):
    from advbench.data import userdata

    path = npz_with_header(tmp_path / "huge.npz", (10 ** 9, 28, 28))
    before = reset_peak_rss()
    with pytest.raises(DataError) as info:
        userdata.open_data(path)
    assert str(info.value) == (f"{path}: array x (shape (1000000000, 28, 28), uint8) declares "
                               "730 GiB, more than the 4 GiB advbench allows; the file is "
                               "edited or corrupt, or save a smaller data set")
    assert peak_rss() - before < 100 * 1024  # KiB


def test_npz_images_are_bounded_as_the_float32_pixels_stages_make(tmp_path):
    import io
    import zipfile

    from advbench.data import userdata

    # 1.1 GiB of uint8 zeros (under the budget; 1 MB deflated) is 4.38 GiB once float32:
    # refused before it is inflated.
    path = tmp_path / "big.npz"
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False,
                                                  "shape": (1_500_000, 28, 28)})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        with archive.open("x.npy", "w", force_zip64=True) as member:
            member.write(header.getvalue())
            chunk = bytes(2 ** 24)
            for _ in range(1_500_000 * 784 // len(chunk)):
                member.write(chunk)
            member.write(bytes(1_500_000 * 784 % len(chunk)))
        buffer = io.BytesIO()
        np.save(buffer, np.arange(4) % 2)
        archive.writestr("y.npy", buffer.getvalue())
    with pytest.raises(DataError) as info:
        userdata.open_data(path)
    assert str(info.value) == (f"{path}: array x (shape (1500000, 28, 28)) as float32 pixels "
                               "takes 4.38 GiB, more than the 4 GiB advbench allows; save a "
                               "smaller data set (fewer images)")


def test_npz_header_declaring_more_than_its_member_holds(tmp_path):
    from advbench.data import userdata

    # 2 GiB declared (under the budget), 100 bytes stored: refused before np.load allocates.
    path = npz_with_header(tmp_path / "short.npz", (2 ** 31 // 784, 28, 28), bytes(100))
    before = reset_peak_rss()
    with pytest.raises(DataError) as info:
        userdata.open_data(path)
    assert str(info.value) == (f"{path}: array x declares shape (2739137, 28, 28) (2147483408 "
                               "bytes) but holds 100; it is truncated or edited: save it again "
                               "with np.savez")
    assert peak_rss() - before < 100 * 1024  # KiB


def test_a_label_of_a_billion_is_refused_before_class_names_are_made(tmp_path):
    from advbench.data import userdata

    path = tmp_path / "label.npz"
    np.savez(path, x=np.zeros((4, 6, 6), np.uint8), y=np.array([0, 1, 10 ** 9, 1]))
    before = reset_peak_rss()
    with pytest.raises(DataError) as info:
        userdata.open_data(path)
    assert str(info.value) == (f"{path}: the largest test label is 1,000,000,000, more than the "
                               "99,999 a label may be (at most 100,000 classes); labels must be "
                               "0..K-1")
    assert peak_rss() - before < 100 * 1024  # KiB


def png_of_zeros(path, width, height):
    """An RGB PNG of ``width`` x ``height`` black pixels, encoded row by row (never held)."""
    import struct

    def chunk(tag, body):
        return (struct.pack(">I", len(body)) + tag + body
                + struct.pack(">I", zlib.crc32(tag + body)))

    compressor = zlib.compressobj(9)
    row = bytes(1 + 3 * width)
    pixels = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n"
                     + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", pixels) + chunk(b"IEND", b""))
    return path


def small_folder(root, per_class=3):
    from PIL import Image

    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", (10, 8)).save(root / name / f"{i}.png")
    return root


def test_a_later_9000x9000_image_is_refused_before_any_decoding(tmp_path):
    from advbench.data import userdata

    root = small_folder(tmp_path / "pets")
    big = png_of_zeros(root / "dog" / "z.png", 9000, 9000)
    decoded = []
    original = userdata._decode
    before = reset_peak_rss()
    try:
        userdata._decode = lambda path: decoded.append(path) or original(path)
        with pytest.raises(DataError) as info:
            userdata.open_data(root)
    finally:
        userdata._decode = original
    assert str(info.value) == (f"{big} is 9000x9000 but {root / 'cat' / '0.png'} is 10x8; "
                               "resize all images to one size")
    assert decoded == []
    # In KiB: decoding the image would take 243 MB.
    assert peak_rss() - before < 100 * 1024


def test_images_of_one_size_over_the_budget_are_refused_before_decoding(tmp_path):
    from advbench.data import userdata

    root = tmp_path / "huge"
    one = png_of_zeros(tmp_path / "one.png", 9000, 9000).read_bytes()
    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)
        for i in range(10):
            (root / name / f"{i}.png").write_bytes(one)
    before = reset_peak_rss()
    with pytest.raises(DataError) as info:
        userdata.open_data(root)
    assert str(info.value) == (f"{root}: 20 images of 9000x9000 RGB (as float32 pixels) take "
                               "18.1 GiB, more than the 4 GiB advbench allows; use fewer or "
                               "smaller images")
    assert peak_rss() - before < 100 * 1024  # KiB


def test_class_count_is_checked_on_the_whole_data_set_not_the_sample(tmp_path):
    from click.testing import CliRunner

    from advbench.run.artifacts import save_model
    from advbench.cli import main
    from advbench.models.zoo import build_model
    from conftest import synthetic_digits

    x, y = synthetic_digits(200, 2)
    y = y.astype(np.int64)
    y[:3] = [10, 12, 14]  # 15 classes; three images of the five new ones
    path = tmp_path / "fifteen.npz"
    np.savez(path, x=x, y=y)
    _, drawn, _ = data.load(str(path), "test", limit=10, seed=0)
    assert drawn.max() < 10  # the sample --limit 10 draws holds only the model's classes
    model = tmp_path / "ten.h5"
    save_model(model, build_model("mlp", (28, 28, 1), 10), {"dataset": "mnist"})
    for command, fix in (
            (["attack", model, "--attack", "fgsm", "--eps", "0.1", "-o", tmp_path / "a.h5"],
             "use the data it was trained on (mnist)"),
            (["evaluate", model], "use data of 10 classes")):  # evaluate reads it as the data's
        result = CliRunner().invoke(main, [str(a) for a in command]
                                    + ["--data", str(path), "--limit", "10", "-q"])
        assert result.exit_code == 1, result.output
        assert result.output == (f"Error: model {model} gives 10 class scores but fifteen.npz "
                                 f"has 15 classes (its labels, every split); {fix}\n")
