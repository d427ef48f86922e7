"""A user's data: tensors, Dataset pairs, torchvision datasets from a local root, .pt files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import TensorDataset
from torchvision.datasets import FakeData, ImageFolder

from privacysplit.data import Dataset
from privacysplit.data.tensors import (
    UserDataset,
    from_datasets,
    from_tensors,
    from_torchvision,
    load_tensor_file,
    resolve_dataset,
    task_view,
)


def _tensors(n=100, nt=20, shape=(1, 28, 28), k=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, *shape, generator=g), torch.arange(n) % k,
            torch.rand(nt, *shape, generator=g), torch.arange(nt) % k)


def test_from_tensors_keeps_shapes_and_carves_validation_from_train():
    x, y, tx, ty = _tensors(n=120)
    ds = from_tensors(x, y, tx, ty)
    assert isinstance(ds, Dataset) and ds.input_shape == (1, 28, 28)
    # 10% stratified by label: 3 of each class's 30
    assert len(ds.val) == 12 and len(ds.train) == 108 and len(ds.test) == 20
    assert torch.equal(torch.bincount(ds.val.fine), torch.tensor([3, 3, 3, 3]))
    assert torch.equal(ds.test.x, tx) and torch.equal(ds.test.fine, ty)
    assert ds.num_fine == ds.num_coarse == 4 and not ds.has_private
    assert ds.mean == (0.0,) and ds.std == (1.0,)  # the network sees the tensors as they are
    assert torch.equal(ds.normalize(tx), tx)
    # every training and validation image is one of the user's, once
    together = torch.cat([ds.train.x, ds.val.x]).flatten(1)
    assert sorted(map(tuple, together[:, :3].tolist())) == sorted(map(tuple, x.flatten(1)[:, :3].tolist()))


def test_grey_uint8_images_and_normalisation_options():
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (50, 64, 64), generator=g, dtype=torch.uint8)
    ds = from_tensors(x, torch.arange(50) % 2, x[:10], torch.arange(10) % 2, mean=0.5, std=0.25)
    assert ds.input_shape == (1, 64, 64) and float(ds.train.x.max()) <= 1.0
    assert ds.mean == (0.5,) and ds.std == (0.25,)
    rgb = from_tensors(*_tensors(shape=(3, 64, 64)), normalize="stats")
    assert len(rgb.mean) == 3 and all(abs(m - 0.5) < 0.01 for m in rgb.mean)


@pytest.mark.parametrize("bad, message", [
    (dict(x_train=torch.rand(10, 1, 8, 8) * 3), r"values in \[0, 3|pass images scaled to \[0, 1\]"),
    (dict(y_train=torch.arange(9)), "has 9 labels for 10 inputs"),
    (dict(y_train=torch.rand(10)), "integer class labels"),
    (dict(y_train=-torch.ones(10)), "negative labels"),
    (dict(x_test=torch.rand(4, 1, 9, 9)), r"shape \(1, 8, 8\) but x_test \(1, 9, 9\)"),
])
def test_bad_tensors_are_one_clear_error(bad, message):
    args = dict(x_train=torch.rand(10, 1, 8, 8), y_train=torch.arange(10) % 2,
                x_test=torch.rand(4, 1, 8, 8), y_test=torch.arange(4) % 2)
    args.update(bad)
    with pytest.raises(ValueError, match=message):
        from_tensors(args["x_train"], args["y_train"], args["x_test"], args["y_test"])


def test_private_attribute_is_the_second_label():
    x, y, tx, ty = _tensors(k=2)
    p, tp = torch.arange(100) % 5, torch.arange(20) % 5
    ds = from_tensors(x, y, tx, ty, private=(p, tp))
    assert ds.has_private and ds.num_fine == 5 and ds.num_coarse == 2
    assert torch.equal(ds.test.fine, tp) and torch.equal(ds.test.coarse, ty)
    assert resolve_dataset(ds, privacy="property") is ds
    inv = resolve_dataset(ds, privacy="ssim")  # inversion attacks train the task on fine
    assert torch.equal(inv.test.fine, ty) and inv.num_fine == 2
    assert inv.fingerprint() != ds.fingerprint()
    assert task_view(from_tensors(x, y, tx, ty)) is not None
    with pytest.raises(ValueError, match="needs a private attribute"):
        resolve_dataset(from_tensors(x, y, tx, ty), privacy="property")


def test_dataset_pairs_with_a_third_item_and_pil_images():
    x, y, tx, ty = _tensors(n=40, nt=8)
    ds = from_datasets(TensorDataset(x, y, y % 3), TensorDataset(tx, ty, ty % 3))
    assert ds.has_private and ds.num_fine == 3 and ds.input_shape == (1, 28, 28)
    test = FakeData(10, (3, 64, 64), 5, random_offset=100)
    fake = from_datasets(FakeData(30, (3, 64, 64), 5, random_offset=0), test)
    assert isinstance(fake, UserDataset) and fake.input_shape == (3, 64, 64)
    image, label = test[3]  # a PIL image: H x W x C bytes become C x H x W in [0, 1]
    expected = torch.from_numpy(np.asarray(image).transpose(2, 0, 1).copy()).float() / 255
    assert torch.equal(fake.test.x[3], expected) and int(fake.test.fine[3]) == int(label)


def test_imagefolder_from_a_local_root_keeps_its_size(tmp_path):
    rng = np.random.default_rng(0)
    for part, n in (("train", 6), ("test", 2)):
        for cls in ("cat", "dog"):
            folder = tmp_path / part / cls
            folder.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8), "L").save(folder / f"{i}.png")
    ds = from_datasets(ImageFolder(str(tmp_path / "train")), ImageFolder(str(tmp_path / "test")))
    # ImageFolder opens images as RGB
    assert ds.input_shape == (3, 28, 28) and len(ds.test) == 4 and ds.num_fine == 2
    (tmp_path / "train" / "cat" / "big.png").parent.mkdir(exist_ok=True)
    Image.fromarray(np.zeros((30, 30), np.uint8), "L").save(tmp_path / "train" / "cat" / "big.png")
    with pytest.raises(ValueError, match="different shapes.*transform"):
        from_datasets(ImageFolder(str(tmp_path / "train")), ImageFolder(str(tmp_path / "test")))


def test_tensor_file_and_the_forms_resolve_dataset_accepts(tmp_path):
    x, y, tx, ty = _tensors(n=30, nt=6)
    path = tmp_path / "mine.pt"
    torch.save({"x_train": x, "y_train": y, "x_test": tx, "y_test": ty}, path)
    ds = load_tensor_file(path)
    assert ds.name == "mine" and len(ds.test) == 6
    assert resolve_dataset(str(path)).fingerprint() == ds.fingerprint()
    assert resolve_dataset((x, y, tx, ty)).fingerprint() == from_tensors(x, y, tx, ty).fingerprint()
    torch.save({"x": x}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="must hold a dict with x_train"):
        load_tensor_file(tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="cannot use int as dataset.*4-tuple of tensors"):
        resolve_dataset(3)


def test_torchvision_datasets_are_never_downloaded(tmp_path):
    with pytest.raises(FileNotFoundError, match="MNIST not found under"):
        from_torchvision("MNIST", tmp_path)
    with pytest.raises(ValueError, match="unknown torchvision dataset 'Nope'"):
        from_torchvision("Nope", tmp_path)
    with pytest.raises(ValueError, match="pass data_root"):
        resolve_dataset("torchvision:MNIST")
