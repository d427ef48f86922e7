"""On-disk datasets: tiny files in each official format, loaded through ``load_dataset``.

Nothing here downloads.  The CIFAR batches are written the way the real ones are: Python 2
pickles whose keys are byte strings (``b'data'`` under ``encoding='bytes'``, ``'data'`` under
the ``latin1`` decoding torchvision uses), with a uint8 ``N x 3072`` array.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from privacysplit.data import DATASETS, load_dataset

CIFAR10_NAMES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip


class _Py2Str(str):
    """A Python 2 ``str`` (bytes) in a pickle, as in the official CIFAR files."""


class _Py2Pickler(pickle._Pickler):  # the pure-Python pickler lets us add an opcode writer
    dispatch = pickle._Pickler.dispatch.copy()

    def _save_py2str(self, obj: _Py2Str) -> None:
        raw = obj.encode("latin1")
        self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)

    dispatch[_Py2Str] = _save_py2str


def _py2(obj):
    if isinstance(obj, dict):
        return {_Py2Str(k): _py2(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_py2(v) if isinstance(v, str) else v for v in obj]
    return obj


def _dump(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        _Py2Pickler(f, protocol=2).dump(_py2(obj))


def _images(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)


def _write_cifar10(root: Path, per_batch: int = 20) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    folder = root / "cifar-10-batches-py"
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = _images(rng, per_batch)
        labels = [i % 10 for i in range(per_batch)]
        _dump(folder / name, {"batch_label": name, "labels": labels, "data": data})
        written[name] = data
    _dump(folder / "batches.meta", {"label_names": CIFAR10_NAMES, "num_vis": 3072})
    return written


def _write_cifar100(root: Path, n_train: int = 1000, n_test: int = 100) -> None:
    rng = np.random.default_rng(1)
    folder = root / "cifar-100-python"
    for name, n in (("train", n_train), ("test", n_test)):
        fine = [i % 100 for i in range(n)]
        coarse = [f % 20 for f in fine]  # any deterministic superclass map will do
        _dump(
            folder / name,
            {
                "filenames": [],
                "fine_labels": fine,
                "coarse_labels": coarse,
                "data": _images(rng, n),
            },
        )
    _dump(
        folder / "meta",
        {
            "fine_label_names": [f"f{i}" for i in range(100)],
            "coarse_label_names": [f"c{i}" for i in range(20)],
        },
    )


def _jpeg(path: Path, color: tuple[int, int, int], size: int = 64, mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), color).convert(mode).save(path, quality=95)


# --------------------------------------------------------------------------- CIFAR-10


def test_cifar_test_files_look_like_the_real_python2_pickles(tmp_path):
    _write_cifar10(tmp_path)
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_1", "rb") as f:
        raw = pickle.load(f, encoding="bytes")
    assert set(raw) == {b"batch_label", b"labels", b"data"}
    assert raw[b"data"].dtype == np.uint8 and raw[b"data"].shape == (20, 3072)


def test_cifar10_reads_batches_with_official_test_split(tmp_path):
    written = _write_cifar10(tmp_path)
    d = load_dataset("cifar10", tmp_path)
    assert d.input_shape == (3, 32, 32) and d.train.x.dtype == torch.float32
    assert (len(d.train) + len(d.val), len(d.val), len(d.test)) == (100, 10, 20)
    assert float(d.train.x.min()) >= 0 and float(d.train.x.max()) <= 1
    assert (d.num_fine, d.num_coarse) == (10, 2)
    # Test split = the official test batch, in order, pixel-exact (CHW, / 255).
    expected = torch.from_numpy(written["test_batch"].reshape(-1, 3, 32, 32)).float() / 255
    assert torch.equal(d.test.x, expected)
    assert d.test.fine.tolist() == [i % 10 for i in range(20)]
    vehicles = torch.tensor([0, 1, 8, 9])
    assert torch.equal(d.test.coarse, torch.isin(d.test.fine, vehicles).long())
    assert torch.equal(d.train.coarse, torch.isin(d.train.fine, vehicles).long())
    assert torch.bincount(d.val.fine, minlength=10).tolist() == [1] * 10  # stratified
    assert len(d.mean) == 3 and len(d.std) == 3


def test_cifar10_missing_batch_names_the_file(tmp_path):
    _write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError) as err:
        load_dataset("cifar10", tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "cifar-10-batches-py" / "data_batch_3") in msg
    assert "https://www.cs.toronto.edu/~kriz/cifar.html" in msg and str(tmp_path) in msg


def test_cifar10_empty_root_names_the_first_batch(tmp_path):
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py.data_batch_1"):
        load_dataset("cifar10", tmp_path)


def test_cifar10_rejects_a_foreign_meta_file(tmp_path):
    _write_cifar10(tmp_path)
    _dump(tmp_path / "cifar-10-batches-py" / "batches.meta", {"label_names": list("abcdefghij")})
    with pytest.raises(ValueError, match="expected the 10 CIFAR-10 classes"):
        load_dataset("cifar10", tmp_path)


# --------------------------------------------------------------------------- CIFAR-100


def test_cifar100_fine_classes_and_superclasses(tmp_path):
    _write_cifar100(tmp_path)
    d = load_dataset("cifar100", tmp_path)
    assert (d.num_fine, d.num_coarse) == (100, 20)
    assert (len(d.train) + len(d.val), len(d.val), len(d.test)) == (1000, 100, 100)
    assert d.test.fine.tolist() == list(range(100))
    for split in (d.train, d.val, d.test):
        assert torch.equal(split.coarse, split.fine % 20)  # read from 'coarse_labels'
    assert d.input_shape == (3, 32, 32) and float(d.test.x.max()) <= 1


def test_cifar100_missing_meta_names_the_file(tmp_path):
    _write_cifar100(tmp_path)
    (tmp_path / "cifar-100-python" / "meta").unlink()
    with pytest.raises(FileNotFoundError, match=r"cifar-100-python.meta: download CIFAR-100"):
        load_dataset("cifar100", tmp_path)


# --------------------------------------------------------------------------- Tiny ImageNet


def _write_tinyimagenet(root: Path, wnids: list[str], per_class: int = 10) -> None:
    base = root / "tiny-imagenet-200"
    base.mkdir(parents=True)
    (base / "wnids.txt").write_text("\n".join(reversed(wnids)) + "\n")  # file order != sorted
    for i, w in enumerate(wnids):
        for j in range(per_class):
            _jpeg(base / "train" / w / "images" / f"{w}_{j}.JPEG", (20 * i, 200, 40))
    (base / "train" / wnids[0] / f"{wnids[0]}_boxes.txt").write_text("ignored\n")
    lines = []
    for k, w in enumerate(wnids * 2):
        name = f"val_{k}.JPEG"
        mode = "L" if k == 0 else "RGB"  # Tiny ImageNet has a few greyscale images
        _jpeg(base / "val" / "images" / name, (20 * wnids.index(w), 200, 40), mode=mode)
        lines.append(f"{name}\t{w}\t0\t0\t63\t63")
    (base / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")


def test_tinyimagenet_resizes_to_32_and_uses_val_as_test(tmp_path):
    wnids = [f"n0{i:07d}" for i in range(12)]
    _write_tinyimagenet(tmp_path, wnids)
    d = load_dataset("tinyimagenet", tmp_path)
    assert d.input_shape == (3, 32, 32)
    assert (len(d.train) + len(d.val), len(d.val), len(d.test)) == (120, 12, 24)
    assert (d.num_fine, d.num_coarse) == (12, 2)
    assert d.test.fine.tolist() == list(range(12)) * 2  # sorted wnid order
    assert torch.equal(d.train.coarse, d.train.fine // 10)
    assert float(d.train.x.min()) >= 0 and float(d.train.x.max()) <= 1
    # Flat-colour images survive JPEG + resize: class i has red channel ~ 20 * i / 255.
    red = d.train.x[:, 0].mean(dim=(1, 2))
    assert torch.allclose(red, d.train.fine.float() * 20 / 255, atol=0.03)
    grey = d.test.x[0]  # greyscale image -> three equal channels
    assert torch.allclose(grey[0], grey[1]) and torch.allclose(grey[1], grey[2])


def test_tinyimagenet_missing_annotations_names_the_file(tmp_path):
    _write_tinyimagenet(tmp_path, ["n01", "n02"], per_class=2)
    ann = tmp_path / "tiny-imagenet-200" / "val" / "val_annotations.txt"
    ann.unlink()
    with pytest.raises(FileNotFoundError, match="val_annotations.txt: download Tiny ImageNet"):
        load_dataset("tinyimagenet", tmp_path)


def test_tinyimagenet_missing_wnids_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"tiny-imagenet-200.wnids.txt"):
        load_dataset("tinyimagenet", tmp_path)


# --------------------------------------------------------------------------- Purchase100


def _write_purchase(path: Path, n: int = 1000) -> np.ndarray:
    rng = np.random.default_rng(2)
    labels = np.arange(n) % 100 + 1
    feats = rng.integers(0, 2, size=(n, 600))
    table = np.column_stack([labels, feats])
    np.savetxt(path, table, fmt="%d", delimiter=",")
    return table


def test_purchase100_reads_the_published_text_file(tmp_path):
    table = _write_purchase(tmp_path / "dataset_purchase")
    d = load_dataset("purchase100", tmp_path)
    assert d.input_shape == (600,) and not d.is_image and d.train.x.dtype == torch.float32
    assert (len(d.train), len(d.val), len(d.test)) == (800, 100, 100)
    assert (d.num_fine, d.num_coarse) == (100, 10)
    assert set(torch.unique(d.train.x).tolist()) == {0.0, 1.0}
    assert torch.equal(d.train.coarse, d.train.fine // 10)
    # Every row comes back with its label shifted to 0..99.
    rows = {tuple(r[1:]): int(r[0]) - 1 for r in table}
    for split in (d.train, d.val, d.test):
        for x, f in zip(split.x[:20], split.fine[:20], strict=True):
            assert rows[tuple(x.long().tolist())] == int(f)


def test_purchase100_missing_file_and_bad_labels(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"dataset_purchase: download dataset_purchase.tgz"):
        load_dataset("purchase100", tmp_path)
    np.savetxt(
        tmp_path / "dataset_purchase", np.zeros((3, 601), dtype=int), fmt="%d", delimiter=","
    )
    with pytest.raises(ValueError, match="labels must be in 1..100"):
        load_dataset("purchase100", tmp_path)


# --------------------------------------------------------------------------- ImageFolder


def test_imagefolder_reads_user_images(tmp_path):
    colors = {"cat": (250, 0, 0), "dog": (0, 250, 0), "emu": (0, 0, 250)}
    for c, rgb in colors.items():
        for j in range(10):
            _jpeg(tmp_path / "train" / c / f"{j}.jpg", rgb, size=48 + j)  # odd sizes
    for j, c in enumerate(["dog", "emu"]):  # test lacks 'cat': labels still follow train
        img = Image.new("RGBA", (20, 70), (*colors[c], 255))
        (tmp_path / "test" / c).mkdir(parents=True)
        img.save(tmp_path / "test" / c / f"{j}.png")
    d = load_dataset("imagefolder", tmp_path)
    assert d.input_shape == (3, 32, 32)
    assert (len(d.train), len(d.val), len(d.test)) == (27, 3, 2)
    assert (d.num_fine, d.num_coarse) == (3, 3)
    assert d.test.fine.tolist() == [1, 2]
    assert torch.equal(d.train.coarse, d.train.fine)
    assert d.test.x[0, 1].mean() > 0.95 and d.test.x[0, 0].max() < 0.05  # green dog


def test_imagefolder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="train: put your images"):
        load_dataset("imagefolder", tmp_path)
    _jpeg(tmp_path / "train" / "a" / "0.jpg", (0, 0, 0))
    _jpeg(tmp_path / "test" / "a" / "0.jpg", (0, 0, 0))
    with pytest.raises(ValueError, match=r"has 1 class folder\(s\) \(a\); a classifier needs at least 2"):
        load_dataset("imagefolder", tmp_path)
    _jpeg(tmp_path / "train" / "c" / "0.jpg", (9, 9, 9))
    _jpeg(tmp_path / "test" / "b" / "0.jpg", (0, 0, 0))
    with pytest.raises(ValueError, match=r"classes missing from .*train.*\['b'\]"):
        load_dataset("imagefolder", tmp_path)


def test_imagefolder_non_image_file_is_named_in_one_line(tmp_path):
    for c in ("a", "b"):
        for part in ("train", "test"):
            _jpeg(tmp_path / part / c / "0.jpg", (0, 0, 0))
    (tmp_path / "train" / "b" / "notes.jpg").write_text("not an image")
    (tmp_path / "train" / "b" / "README.txt").write_text("ignored: not an image extension")
    with pytest.raises(ValueError, match=r"notes\.jpg is not a readable image \(UnidentifiedImageError\)") as err:
        load_dataset("imagefolder", tmp_path)
    assert "\n" not in str(err.value)
    (tmp_path / "train" / "b" / "notes.jpg").unlink()
    assert load_dataset("imagefolder", tmp_path).num_classes("fine") == 2


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_cifar_pickle_that_names_a_callable_is_refused(tmp_path, monkeypatch):
    _write_cifar10(tmp_path)
    monkeypatch.chdir(tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    with open(batch, "wb") as f:
        pickle.dump({"data": _Evil(), "labels": []}, f, protocol=2)
    with pytest.raises(ValueError, match=r"data_batch_3 is not a CIFAR python batch .*refused to load \w+\.system"):
        load_dataset("cifar10", tmp_path)
    assert not (tmp_path / "pwned").exists()


def test_cifar_reads_modern_numpy_pickles(tmp_path):
    """Batches re-saved by Python 3 (protocols 2 to 5) still load through the safe unpickler."""
    written = _write_cifar10(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    for protocol, name in zip((2, 3, 4, 5, 5), [f"data_batch_{i}" for i in range(1, 6)], strict=True):
        labels = [i % 10 for i in range(20)]
        with open(folder / name, "wb") as f:
            pickle.dump({"data": written[name], "labels": labels}, f, protocol=protocol)
    d = load_dataset("cifar10", tmp_path)
    assert len(d.train) + len(d.val) == 100


# --------------------------------------------------------------------------- common


@pytest.mark.parametrize(
    "name", ["cifar10", "cifar100", "tinyimagenet", "purchase100", "imagefolder"]
)
def test_disk_datasets_need_a_root(name):
    assert name in DATASETS
    with pytest.raises(ValueError, match="pass data_root"):
        load_dataset(name)
