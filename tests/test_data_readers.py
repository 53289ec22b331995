"""The data set readers, each on tiny files written in its real on-disk format (no network access)."""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import struct
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from dalkit.data import AugmentSpec, load_dataset
from dalkit.data.download import Remote, ensure_present
from dalkit.data.mnist import FILES as IDX_FILES
from dalkit.errors import DalkitError

RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("tests must not access the network")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def random_bytes(*shape: int) -> np.ndarray:
    return RNG.integers(0, 256, size=shape, dtype=np.uint8)


# --- CIFAR ----------------------------------------------------------------------------------------


def write_pickle(path: Path, content: dict, protocol: int = 2) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(content, protocol=protocol))


def cifar_batch(n: int, num_classes: int, label_key: bytes) -> dict:
    """A batch exactly like the official Python 2 pickles: bytes keys, uint8 (N, 3072) data, list labels."""
    return {
        b"batch_label": b"training batch 1 of 5",
        label_key: [int(v) for v in RNG.integers(0, num_classes, n)],
        b"data": random_bytes(n, 3072),
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }


def make_cifar10(root: Path, sizes: tuple[int, ...] = (2, 3, 1, 2, 2), test_size: int = 3) -> tuple[list, dict]:
    folder = root / "cifar-10-batches-py"
    batches = [cifar_batch(n, 10, b"labels") for n in sizes]
    for i, batch in enumerate(batches, start=1):
        write_pickle(folder / f"data_batch_{i}", batch)
    test = cifar_batch(test_size, 10, b"labels")
    write_pickle(folder / "test_batch", test)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    write_pickle(folder / "batches.meta", {b"num_cases_per_batch": 10000, b"label_names": names, b"num_vis": 3072})
    return batches, test


def test_cifar10_reads_official_pickles(tmp_path):
    batches, test = make_cifar10(tmp_path)
    data = load_dataset("cifar10", tmp_path)
    assert (len(data.train), len(data.test)) == (10, 3)
    assert data.train.images.shape == (10, 3, 32, 32) and data.train.images.dtype == torch.uint8
    expected = np.concatenate([b[b"data"] for b in batches]).reshape(-1, 3, 32, 32)
    assert np.array_equal(data.train.images.numpy(), expected)
    # R, G and B planes of 1024 bytes each, row by row.
    assert data.train.images[0, 1, 0, 2] == batches[0][b"data"][0, 1024 + 2]
    assert data.train.images[0, 2, 1, 0] == batches[0][b"data"][0, 2048 + 32]
    assert data.train.labels.tolist() == sum((b[b"labels"] for b in batches), [])
    assert np.array_equal(data.test.images.numpy(), test[b"data"].reshape(-1, 3, 32, 32))
    assert data.test.labels.tolist() == test[b"labels"]
    assert data.train.classes[:3] == ["airplane", "automobile", "bird"] and data.num_classes == 10
    assert data.augment == AugmentSpec(crop_padding=4, flip=True)


def test_cifar100_reads_fine_labels_from_rebuilt_copy(tmp_path):
    """A copy rebuilt with str keys, a recent pickle protocol and no `filenames` loads the same way."""
    folder = tmp_path / "cifar-100-python"
    splits = {}
    for name, n in (("train", 4), ("test", 2)):
        splits[name] = {
            "data": random_bytes(n, 3072),
            "fine_labels": [int(v) for v in RNG.integers(0, 100, n)],
            "coarse_labels": [int(v) for v in RNG.integers(0, 20, n)],
        }
        write_pickle(folder / name, splits[name], protocol=pickle.HIGHEST_PROTOCOL)
    fine = [f"class{i}".encode() for i in range(100)]
    write_pickle(folder / "meta", {b"fine_label_names": fine, b"coarse_label_names": [b"c"] * 20})
    data = load_dataset("cifar100", tmp_path)
    assert (len(data.train), len(data.test), data.num_classes) == (4, 2, 100)
    assert np.array_equal(data.train.images.numpy(), splits["train"]["data"].reshape(-1, 3, 32, 32))
    assert data.train.labels.tolist() == splits["train"]["fine_labels"]
    assert data.test.labels.tolist() == splits["test"]["fine_labels"]
    assert data.train.classes[7] == "class7"


def python2_pickle(data: np.ndarray, labels: list[int]) -> bytes:
    """{'data': data, 'labels': labels} as Python 2's cPickle (protocol 2) writes it: str keys, ndarray state."""
    n = len(data)
    return (
        b"\x80\x02}(U\x04datacnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85U\x01b\x87R"
        + b"(K\x01J"
        + struct.pack("<i", n)
        + b"M\x00\x0c\x86cnumpy\ndtype\nU\x02u1K\x00K\x01\x87R(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
        + b"\x89T"
        + struct.pack("<i", data.size)
        + data.tobytes()
        + b"tbU\x06labels]("
        + b"".join(b"K" + bytes([label]) for label in labels)
        + b"eu."
    )


def test_cifar10_reads_python2_pickles(tmp_path):
    batches, _ = make_cifar10(tmp_path)
    data = random_bytes(3, 3072)
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(python2_pickle(data, [4, 0, 9]))
    loaded = load_dataset("cifar10", tmp_path)
    assert np.array_equal(loaded.test.images.numpy(), data.reshape(3, 3, 32, 32))
    assert loaded.test.labels.tolist() == [4, 0, 9]


def test_cifar_truncated_pickle_names_the_file(tmp_path):
    make_cifar10(tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:500])
    with pytest.raises(DalkitError, match="data_batch_3.*--download"):
        load_dataset("cifar10", tmp_path)


def test_cifar_pickle_cannot_run_code(tmp_path):
    make_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(
        b"cos\nsystem\n(S'echo hacked'\ntR."  # a protocol-0 pickle calling os.system
    )
    with pytest.raises(DalkitError, match=r"test_batch.*os\.system"):
        load_dataset("cifar10", tmp_path)


def test_cifar_label_out_of_range_names_the_file(tmp_path):
    make_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    write_pickle(path, {b"data": random_bytes(2, 3072), b"labels": [0, 10]})
    with pytest.raises(DalkitError, match="test_batch"):
        load_dataset("cifar10", tmp_path)


# --- SVHN -----------------------------------------------------------------------------------------


def write_svhn(path: Path, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = random_bytes(32, 32, 3, n)
    y = np.array([[10], [1], [9], [10], [5]][:n], dtype=np.uint8)
    scipy.io.savemat(path, {"X": x, "y": y})
    return x, y


def test_svhn_reads_mat_files_and_maps_10_to_0(tmp_path):
    x_train, _ = write_svhn(tmp_path / "train_32x32.mat", 5)
    x_test, _ = write_svhn(tmp_path / "test_32x32.mat", 2)
    data = load_dataset("svhn", tmp_path)
    assert (len(data.train), len(data.test)) == (5, 2)
    assert data.train.images.shape == (5, 3, 32, 32)
    for n in range(5):
        assert np.array_equal(data.train.images[n].numpy(), x_train[:, :, :, n].transpose(2, 0, 1))
    assert data.train.images[3, 2, 4, 7] == x_train[4, 7, 2, 3]  # X is (height, width, channel, image)
    assert np.array_equal(data.test.images.numpy(), x_test.transpose(3, 2, 0, 1))
    assert data.train.labels.tolist() == [0, 1, 9, 0, 5]
    assert data.test.labels.tolist() == [0, 1]
    assert data.train.classes == [str(d) for d in range(10)]
    assert data.augment == AugmentSpec(crop_padding=4, flip=False)


def test_svhn_truncated_mat_names_the_file(tmp_path):
    write_svhn(tmp_path / "train_32x32.mat", 5)
    write_svhn(tmp_path / "test_32x32.mat", 2)
    path = tmp_path / "test_32x32.mat"
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(DalkitError, match="test_32x32.mat.*--download"):
        load_dataset("svhn", tmp_path)


# --- MNIST and Fashion-MNIST ----------------------------------------------------------------------


def idx_bytes(array: np.ndarray) -> bytes:
    magic = 2048 + array.ndim  # 0x08: unsigned bytes, then the number of dimensions
    return struct.pack(f">i{array.ndim}i", magic, *array.shape) + array.astype(np.uint8).tobytes()


def write_idx_set(folder: Path, n_train: int = 6, n_test: int = 3, gz: bool = False) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        IDX_FILES[0]: random_bytes(n_train, 28, 28),
        IDX_FILES[1]: RNG.integers(0, 10, n_train).astype(np.uint8),
        IDX_FILES[2]: random_bytes(n_test, 28, 28),
        IDX_FILES[3]: RNG.integers(0, 10, n_test).astype(np.uint8),
    }
    for name, array in arrays.items():
        content = idx_bytes(array)
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(content))
        else:
            (folder / name).write_bytes(content)
    return arrays


def test_mnist_reads_idx_files(tmp_path):
    arrays = write_idx_set(tmp_path / "MNIST" / "raw")
    data = load_dataset("mnist", tmp_path)
    assert (len(data.train), len(data.test)) == (6, 3)
    assert data.train.images.shape == (6, 1, 28, 28) and data.train.images.dtype == torch.uint8
    assert np.array_equal(data.train.images[:, 0].numpy(), arrays[IDX_FILES[0]])
    assert np.array_equal(data.test.images[:, 0].numpy(), arrays[IDX_FILES[2]])
    assert data.train.labels.tolist() == arrays[IDX_FILES[1]].tolist()
    assert data.test.labels.tolist() == arrays[IDX_FILES[3]].tolist()
    assert data.train.classes == [str(d) for d in range(10)]
    assert data.augment == AugmentSpec(crop_padding=2, flip=False)


def test_fashion_mnist_reads_gzipped_idx_files(tmp_path):
    arrays = write_idx_set(tmp_path / "FashionMNIST" / "raw", gz=True)
    data = load_dataset("fashionmnist", tmp_path)
    assert np.array_equal(data.train.images[:, 0].numpy(), arrays[IDX_FILES[0]])
    assert data.test.labels.tolist() == arrays[IDX_FILES[3]].tolist()
    assert data.train.classes[0] == "T-shirt/top" and data.train.classes[9] == "Ankle boot"
    assert data.augment == AugmentSpec(crop_padding=2, flip=True)


@pytest.mark.parametrize(
    "damage, match",
    [
        (lambda raw: raw[:-5], "bytes where"),
        (lambda raw: raw[:6], "too short"),
        (lambda raw: struct.pack(">i", 2049) + raw[4:], "magic number 2049"),
    ],
)
def test_damaged_idx_file_names_the_file(tmp_path, damage, match):
    folder = tmp_path / "MNIST" / "raw"
    write_idx_set(folder)
    path = folder / IDX_FILES[2]
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(DalkitError, match=f"t10k-images-idx3-ubyte.*{match}.*--download"):
        load_dataset("mnist", tmp_path)


def test_truncated_gzip_idx_names_the_file(tmp_path):
    folder = tmp_path / "MNIST" / "raw"
    write_idx_set(folder, gz=True)
    path = folder / f"{IDX_FILES[0]}.gz"
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(DalkitError, match="train-images-idx3-ubyte.gz"):
        load_dataset("mnist", tmp_path)


# --- Image folders --------------------------------------------------------------------------------


def save_image(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def uniform(height: int, width: int, colour: tuple[int, int, int]) -> np.ndarray:
    return np.broadcast_to(np.array(colour, dtype=np.uint8), (height, width, 3)).copy()


def test_folder_with_train_and_test(tmp_path):
    exact = random_bytes(16, 16, 3)
    save_image(tmp_path / "train" / "cat" / "a.png", exact)
    save_image(tmp_path / "train" / "cat" / "b.JPG", uniform(40, 20, (200, 30, 90)))
    save_image(tmp_path / "train" / "dog" / "nested" / "c.bmp", uniform(7, 9, (10, 20, 30)))
    save_image(tmp_path / "test" / "dog" / "d.png", uniform(16, 16, (1, 2, 3)))
    (tmp_path / "train" / "dog" / "notes.txt").write_text("not an image")
    (tmp_path / "train" / "dog" / "._c.png").write_bytes(b"macOS resource fork")
    (tmp_path / "test" / "cat").mkdir()  # an empty test class folder is fine
    data = load_dataset("folder", tmp_path, image_size=16)
    assert data.train.classes == ["cat", "dog"] and data.test.classes == ["cat", "dog"]
    assert (len(data.train), len(data.test)) == (3, 1)
    assert data.train.images.shape == (3, 3, 16, 16)
    assert data.train.labels.tolist() == [0, 0, 1] and data.test.labels.tolist() == [1]
    assert np.array_equal(data.train.images[0].numpy(), exact.transpose(2, 0, 1))  # already 16x16: untouched
    assert (data.train.images[1].float() - torch.tensor([200.0, 30, 90])[:, None, None]).abs().max() <= 4  # JPEG
    assert torch.equal(
        data.train.images[2], torch.tensor([10, 20, 30], dtype=torch.uint8)[:, None, None].expand(3, 16, 16)
    )
    assert torch.equal(data.test.images[0, :, 5, 5], torch.tensor([1, 2, 3], dtype=torch.uint8))
    assert data.augment == AugmentSpec(crop_padding=2, flip=True)


def test_folder_test_classes_must_be_train_classes(tmp_path):
    save_image(tmp_path / "train" / "cat" / "a.png", uniform(8, 8, (1, 1, 1)))
    save_image(tmp_path / "test" / "bird" / "b.png", uniform(8, 8, (1, 1, 1)))
    with pytest.raises(DalkitError, match="bird"):
        load_dataset("folder", tmp_path)


def test_folder_without_split_holds_out_a_fixed_stratified_test_set(tmp_path):
    for label, name in enumerate(["a", "b"]):
        for i in range(5):
            save_image(tmp_path / name / f"{i}.png", uniform(10, 12, (label * 100, i * 10, 0)))
    first = load_dataset("folder", tmp_path, image_size=8)
    again = load_dataset("folder", tmp_path, image_size=8)
    assert (len(first.train), len(first.test)) == (8, 2)
    assert first.test.labels.tolist() == [0, 1] and first.train.class_counts().tolist() == [4, 4]
    assert torch.equal(first.test.images, again.test.images) and torch.equal(first.train.images, again.train.images)
    grey = load_dataset("folder", tmp_path, image_size=8, channels=1, test_fraction=0.4)
    assert grey.train.images.shape == (6, 1, 8, 8) and len(grey.test) == 4


def test_folder_corrupt_image_names_the_file(tmp_path):
    save_image(tmp_path / "cat" / "good.png", uniform(8, 8, (1, 2, 3)))
    good = (tmp_path / "cat" / "good.png").read_bytes()
    (tmp_path / "cat" / "broken.png").write_bytes(good[: len(good) // 2])
    with pytest.raises(DalkitError, match=r"broken\.png.*remove or replace"):
        load_dataset("folder", tmp_path)


@pytest.mark.parametrize("layout", ["missing", "empty", "empty-class"])
def test_folder_without_images_is_an_error(tmp_path, layout):
    root = tmp_path / "images"
    if layout != "missing":
        root.mkdir()
    if layout == "empty-class":
        (root / "cat").mkdir()
    with pytest.raises(DalkitError, match=str(root)):
        load_dataset("folder", root, download=True)


def test_unknown_options_are_errors(tmp_path):
    with pytest.raises(DalkitError, match="image_sise"):
        load_dataset("folder", tmp_path, image_sise=8)
    with pytest.raises(DalkitError, match="takes no options"):
        load_dataset("mnist", tmp_path, image_size=8)


# --- Missing data and --download ------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, where",
    [
        ("cifar10", "cifar-10-batches-py"),
        ("cifar100", "cifar-100-python"),
        ("svhn", "train_32x32.mat"),
        ("mnist", "MNIST"),
        ("fashionmnist", "FashionMNIST"),
    ],
)
def test_missing_data_set_names_the_path_and_the_flag(tmp_path, name, where):
    with pytest.raises(DalkitError, match="--download") as error:
        load_dataset(name, tmp_path)
    assert str(tmp_path / where) in str(error.value)


def test_unreachable_download_is_an_error(tmp_path, monkeypatch):
    def unreachable(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(urllib.request, "urlopen", unreachable)
    with pytest.raises(DalkitError, match=r"could not download MNIST from https://\S+ \(Name or service") as error:
        load_dataset("mnist", tmp_path, download=True)
    assert str(tmp_path / "MNIST") in str(error.value)
    assert not list(tmp_path.rglob("*.part"))


class FakeResponse(io.BytesIO):
    def __init__(self, content: bytes) -> None:
        super().__init__(content)
        self.headers = {"Content-Length": str(len(content))}


def tar_gz(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def test_download_fetches_checks_and_unpacks_an_archive(tmp_path, monkeypatch):
    archive = tar_gz({"set/a.bin": b"alpha", "set/b.bin": b"beta"})
    requested = []

    def serve(request, timeout=None):
        requested.append(request.full_url)
        return FakeResponse(archive)

    monkeypatch.setattr(urllib.request, "urlopen", serve)
    remote = Remote("https://example.org/set.tar.gz", hashlib.md5(archive).hexdigest(), "set.tar.gz")
    paths = ensure_present("Set", tmp_path, ["set/a.bin", "set/b.bin"], True, [remote])
    assert requested == ["https://example.org/set.tar.gz"]
    assert [p.read_bytes() for p in paths] == [b"alpha", b"beta"]
    assert not list(tmp_path.glob(".dalkit-*")) and not list(tmp_path.rglob("*.part"))
    assert ensure_present("Set", tmp_path, ["set/a.bin"], False) == [tmp_path / "set" / "a.bin"]


def test_download_with_wrong_checksum_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", lambda request, timeout=None: FakeResponse(b"tampered"))
    remote = Remote("https://example.org/x.gz", "0" * 32, "x.gz")
    with pytest.raises(DalkitError, match="MD5"):
        ensure_present("X", tmp_path, ["x"], True, [remote])
    assert not list(tmp_path.iterdir())


def test_unsafe_archive_is_refused(tmp_path, monkeypatch):
    archive = tar_gz({"../escape.txt": b"out"})
    monkeypatch.setattr(urllib.request, "urlopen", lambda request, timeout=None: FakeResponse(archive))
    remote = Remote("https://example.org/bad.tar.gz", None, "bad.tar.gz")
    with pytest.raises(DalkitError, match="could not be unpacked"):
        ensure_present("Bad", tmp_path / "root", ["escape.txt"], True, [remote])
    assert not (tmp_path / "escape.txt").exists()
