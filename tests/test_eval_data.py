"""Real-data loading: ImageFolder, .npz, Fashion-MNIST (when Debian's dataset-fashion-mnist is installed)."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from synthsight.eval.data import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_DIR,
    FASHION_MNIST_ENV,
    DatasetError,
    LabeledImages,
    align_classes,
    load_dataset,
    resize_images,
    stratified_subset,
)

FMNIST = Path(os.environ.get(FASHION_MNIST_ENV) or FASHION_MNIST_DIR)
needs_fmnist = pytest.mark.skipif(
    not (FMNIST / "t10k-images-idx3-ubyte.gz").is_file(),
    reason="Fashion-MNIST not installed (sudo apt-get install dataset-fashion-mnist)",
)


def _save(path: Path, array: np.ndarray, mode: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """cat: 2 RGB images of different sizes; dog: one grey PNG, one RGBA PNG, one JPEG."""
    root = tmp_path / "imgs"
    rng = np.random.default_rng(0)
    _save(root / "cat" / "a.png", rng.integers(0, 256, (20, 30, 3), dtype=np.uint8))
    _save(root / "cat" / "b.png", np.full((8, 8, 3), 200, np.uint8))
    _save(root / "dog" / "a_grey.png", rng.integers(0, 256, (16, 16), dtype=np.uint8))
    _save(root / "dog" / "b_rgba.png", rng.integers(0, 256, (10, 12, 4), dtype=np.uint8))
    _save(root / "dog" / "c.jpg", rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))
    (root / "README.txt").write_text("files at the top level are not classes")
    (root / "dog" / ".DS_Store").write_bytes(b"\x00hidden files are ignored")
    return root


def test_image_folder_shapes_labels_and_grey(folder: Path) -> None:
    data = load_dataset(str(folder), size=16)
    assert isinstance(data, LabeledImages)
    assert data.images.shape == (5, 3, 16, 16) and data.images.dtype == torch.uint8
    assert data.classes == ["cat", "dog"]
    assert data.labels.tolist() == [0, 0, 1, 1, 1] and data.labels.dtype == torch.int64
    assert data.n_skipped == 0 and data.source == str(folder)
    grey = data.images[2]
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[0], grey[2])
    assert (data.images[1] == 200).all()  # a constant image stays constant through the resize


def test_image_folder_corrupt_file_names_path_or_is_skipped(folder: Path) -> None:
    bad = folder / "dog" / "broken.png"
    bad.write_bytes(b"this is not a PNG")
    with pytest.raises(DatasetError, match="broken.png") as info:
        load_dataset(str(folder), size=16)
    assert "skip_bad=True" in str(info.value)
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        data = load_dataset(str(folder), size=16, skip_bad=True)
    assert data.n_skipped == 1 and len(data) == 5


def test_image_folder_limit_is_stratified(folder: Path) -> None:
    data = load_dataset(str(folder), size=8, limit=2, seed=3)
    assert sorted(data.labels.tolist()) == [0, 1]


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda d: None, DatasetError, "is empty"),
        (lambda d: (d / "x.png").write_bytes(b""), DatasetError, "no class sub-directories"),
        (lambda d: (d / "cat").mkdir(), DatasetError, "holds no images"),
        (lambda d: [(d / s).mkdir() for s in ("train", "test")], DatasetError, "split directories"),
    ],
)
def test_image_folder_layout_errors(tmp_path: Path, make, error, message) -> None:
    root = tmp_path / "root"
    root.mkdir()
    make(root)
    with pytest.raises(error, match=message):
        load_dataset(str(root))


def test_missing_path_and_unknown_name(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such file or directory"):
        load_dataset(str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="unknown dataset 'fashion_mnist'; did you mean 'fashion-mnist'"):
        load_dataset("fashion_mnist")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DatasetError, match="not an .npz"):
        load_dataset(str(tmp_path / "notes.txt"))
    with pytest.raises(ValueError, match="size must be"):
        load_dataset(str(tmp_path), size=0)


def _npz(tmp_path: Path, name: str = "d.npz", **arrays: np.ndarray) -> str:
    path = tmp_path / name
    np.savez(path, **arrays)
    return str(path)


@pytest.mark.parametrize(
    "images",
    [
        np.full((6, 28, 28), 128, np.uint8),  # N,H,W grey
        np.full((6, 28, 28, 3), 128, np.uint8),  # N,H,W,C
        np.full((6, 4, 20, 20), 128, np.uint8),  # N,C,H,W with alpha
        np.full((6, 3, 20, 20), 128 / 255, np.float32),  # float in [0, 1]
    ],
)
def test_npz_layouts(tmp_path: Path, images: np.ndarray) -> None:
    data = load_dataset(_npz(tmp_path, images=images, labels=np.array([0, 1, 2, 0, 1, 2])), size=16)
    assert data.images.shape == (6, 3, 16, 16) and data.images.dtype == torch.uint8
    assert (data.images == 128).all()
    assert data.classes == ["0", "1", "2"] and data.labels.tolist() == [0, 1, 2, 0, 1, 2]


def test_npz_string_labels_class_names_and_limit(tmp_path: Path) -> None:
    images = np.zeros((8, 5, 5), np.uint8)
    labels = np.array(["b", "a", "b", "a", "b", "a", "b", "a"])
    data = load_dataset(_npz(tmp_path, images=images, labels=labels), size=5, limit=4, seed=1)
    assert data.classes == ["a", "b"] and sorted(data.labels.tolist()) == [0, 0, 1, 1]
    named = load_dataset(_npz(tmp_path, "n.npz", images=images, labels=np.zeros(8, int), classes=np.array(["x"])))
    assert named.classes == ["x"]


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"images": np.zeros((3, 4, 4), np.uint8)}, r"lacks the array\(s\) \['labels'\]"),
        ({"images": np.zeros((3, 4, 4), np.uint8), "labels": np.zeros(2, int)}, "3 entries but labels has 2"),
        ({"images": np.full((2, 4, 4), 7.0), "labels": np.zeros(2, int)}, r"must lie in \[0, 1\]"),
        ({"images": np.zeros((2, 4, 4), np.uint8), "labels": np.array([0, -1])}, "labels must be >= 0"),
        ({"images": np.zeros((2, 4), np.uint8), "labels": np.zeros(2, int)}, "images must have shape"),
        ({"images": np.zeros((2, 4, 4), np.uint8), "labels": np.array([0.5, 1])}, "integer class indices"),
    ],
)
def test_npz_errors(tmp_path: Path, arrays: dict, message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        load_dataset(_npz(tmp_path, **arrays))


def test_npz_not_an_archive(tmp_path: Path) -> None:
    (tmp_path / "junk.npz").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="cannot read"):
        load_dataset(str(tmp_path / "junk.npz"))
    np.save(tmp_path / "single.npy", np.zeros(3))
    os.replace(tmp_path / "single.npy", tmp_path / "single.npz")
    with pytest.raises(DatasetError, match="single .npy array"):
        load_dataset(str(tmp_path / "single.npz"))


def test_stratified_subset_is_proportional_and_seeded() -> None:
    labels = torch.tensor([0] * 60 + [1] * 30 + [2] * 10)
    idx = stratified_subset(labels, 10, seed=0)
    assert torch.bincount(labels[idx]).tolist() == [6, 3, 1]
    assert torch.equal(idx, stratified_subset(labels, 10, seed=0))
    assert not torch.equal(idx, stratified_subset(labels, 10, seed=1))
    assert torch.equal(stratified_subset(labels, 500), torch.arange(100))


def test_resize_images_replicates_grey() -> None:
    x = torch.arange(16, dtype=torch.uint8).view(1, 1, 4, 4).repeat(3, 1, 1, 1)
    out = resize_images(x, 8, batch_size=2)
    assert out.shape == (3, 3, 8, 8) and torch.equal(out[:, 0], out[:, 2])
    assert torch.equal(resize_images(x, 4)[:, 1:2], x)  # same size: untouched


def test_fashion_mnist_missing_files_say_how_to_install(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(FASHION_MNIST_ENV, str(tmp_path))
    with pytest.raises(FileNotFoundError) as info:
        load_dataset("fashion-mnist")
    assert "sudo apt-get install dataset-fashion-mnist" in str(info.value)
    assert FASHION_MNIST_ENV in str(info.value)


def test_fashion_mnist_unknown_split_and_corrupt_file(tmp_path: Path, monkeypatch) -> None:
    with pytest.raises(DatasetError, match="unknown split 'val'"):
        load_dataset("fashion-mnist:val")
    monkeypatch.setenv(FASHION_MNIST_ENV, str(tmp_path))
    with gzip.open(tmp_path / "t10k-images-idx3-ubyte.gz", "wb") as f:
        f.write(b"\x00\x00\x08\x03" + b"\x00" * 20)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"")
    with pytest.raises(DatasetError, match="not a valid IDX file"):
        load_dataset("fashion-mnist", "test")


@needs_fmnist
def test_fashion_mnist_train_and_test() -> None:
    train = load_dataset("fashion-mnist", "train", size=28)
    assert train.images.shape == (60000, 3, 28, 28)
    assert torch.bincount(train.labels).tolist() == [6000] * 10
    assert train.classes == list(FASHION_MNIST_CLASSES) and train.classes[0] == "T-shirt/top"
    test = load_dataset("fashion-mnist:test", "train", size=32)  # the suffix wins over the split argument
    assert test.images.shape == (10000, 3, 32, 32) and test.source.startswith("fashion-mnist:test")
    assert int(test.labels.min()) == 0 and int(test.labels.max()) == 9
    assert torch.equal(test.images[:, 0], test.images[:, 2])
    small = load_dataset("fashion-mnist", "test", size=16, limit=50, seed=0)
    assert torch.bincount(small.labels).tolist() == [5] * 10


@needs_fmnist
def test_fashion_mnist_directory_override(tmp_path: Path, monkeypatch) -> None:
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (tmp_path / name).symlink_to(FMNIST / name)
    monkeypatch.setenv(FASHION_MNIST_ENV, str(tmp_path))
    assert len(load_dataset("fashion-mnist", "test", size=8, limit=20)) == 20
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte.gz not found"):
        load_dataset("fashion-mnist", "train")


def test_image_folder_ignores_files_that_are_not_images(folder: Path) -> None:
    (folder / "cat" / "manifest.json").write_text('{"format": "synthsight-dataset/1"}')
    (folder / "dog" / "notes.txt").write_text("taken on a Tuesday")
    data = load_dataset(str(folder), size=16)
    assert len(data) == 5 and data.n_skipped == 0


def test_a_generated_labelled_data_set_reads_back_as_an_image_folder(tmp_path: Path) -> None:
    import json

    from synthsight.cli import main

    out = tmp_path / "contours"
    assert main(["generate", "--family", "contours/rcdb:num_classes=3", "--n", "12", "--size", "16", "--out",
                 str(out), "--layout", "classes", "--workers", "1"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    labels = [e["label"] for e in manifest["images"]]
    assert manifest["layout"] == "classes" and set(labels) <= {0, 1, 2}
    assert all(e["file"].startswith(f"class_{e['label']:05d}/") for e in manifest["images"])
    data = load_dataset(str(out), size=16)  # manifest.json at the top is ignored, the class folders are read
    assert len(data) == 12
    assert sorted(data.labels.tolist()) == sorted(data.classes.index(f"class_{y:05d}") for y in labels)
    flat = tmp_path / "flat"
    assert main(["generate", "--family", "contours/rcdb:num_classes=3", "--n", "4", "--size", "16", "--out",
                 str(flat), "--workers", "1"]) == 0
    assert [e["label"] for e in json.loads((flat / "manifest.json").read_text())["images"]] == labels[:4]
    assert main(["generate", "--family", "dead_leaves", "--n", "2", "--size", "16", "--out", str(tmp_path / "x"),
                 "--layout", "classes"]) == 2  # no categories: a clear error


def test_npz_labels_are_their_sorted_distinct_values(tmp_path: Path) -> None:
    images = np.zeros((6, 4, 4), np.uint8)
    # one stray value (10**6 here; 10**9 got the process OOM-killed before) is one more class, not a million
    stray = load_dataset(_npz(tmp_path, images=images, labels=np.array([0, 0, 1, 1, 0, 10**6])), size=4)
    assert stray.classes == ["0", "1", "1000000"] and stray.labels.tolist() == [0, 0, 1, 1, 0, 2]
    one_based = load_dataset(_npz(tmp_path, "b.npz", images=images, labels=np.array([3, 1, 2, 3, 1, 2])), size=4)
    assert one_based.classes == ["1", "2", "3"] and one_based.labels.tolist() == [2, 0, 1, 2, 0, 1]
    assert len(stray.classes) <= len(stray)  # never more classes than images


def test_a_test_split_lacking_classes_keeps_the_training_indices(tmp_path: Path) -> None:
    images = np.zeros((6, 4, 4), np.uint8)
    train = load_dataset(_npz(tmp_path, "tr.npz", images=images, labels=np.array([0, 1, 2, 0, 1, 2])), size=4)
    test = load_dataset(_npz(tmp_path, "te.npz", images=images, labels=np.array([0, 2, 2, 0, 2, 0])), size=4)
    assert test.classes == ["0", "2"] and test.labels.tolist() == [0, 1, 1, 0, 1, 0]
    aligned = align_classes(train, test)
    assert aligned.classes == ["0", "1", "2"] and aligned.labels.tolist() == [0, 2, 2, 0, 2, 0]
    other = LabeledImages(test.images, test.labels, ["x", "y"], "other")
    assert align_classes(train, other) is other  # other names: left as they are (eval warns)


def test_image_folder_decodes_one_file_per_item_and_only_when_read(folder: Path, monkeypatch) -> None:
    from synthsight.eval import image_folder
    from synthsight.eval.image_folder import ImageFolder

    opened: list[Path] = []
    decode = image_folder.decode_image
    monkeypatch.setattr(image_folder, "decode_image", lambda path, size: opened.append(path) or decode(path, size))
    (folder / "dog" / "zz_broken.png").write_bytes(b"not a png")  # sorted last: read last
    data = ImageFolder(folder, size=16)
    assert len(data) == 6 and data.classes == ["cat", "dog"] and opened == []  # listed, nothing decoded
    image, label = data[3]
    assert opened == [data.files[3]] and image.shape == (3, 16, 16) and image.dtype == torch.uint8 and label == 1
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        eager = load_dataset(str(folder), size=16, skip_bad=True)  # the same pixels as evaluation reads
    assert torch.equal(torch.stack([data[i][0] for i in range(5)]), eager.images)
    with pytest.raises(DatasetError, match=r"zz_broken\.png.*remove or replace the file"):
        data[5]
