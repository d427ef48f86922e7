"""Real datasets read from their official on-disk formats under a user-given ``root``.

Nothing here downloads: the files are large, the machines that run searches are often
offline, and a silent download in the middle of a run hides where the data came from.  A
missing file raises :class:`FileNotFoundError` naming the exact path that was expected and
where to get the archive; a ``root`` of ``None`` raises :class:`ValueError` (pass
``data_root``).

Every loader returns float32 tensors in ``[0, 1]`` (images ``N x C x 32 x 32``, because the
whole network pool takes 32x32 inputs; tabular ``N x F``).  Label conventions (``fine`` is the
private attribute for property inference, ``coarse`` the task; see :mod:`.base`):

========== ============================== ===================================== ================
name       fine                           coarse                                val / test
========== ============================== ===================================== ================
cifar10    10 classes                     animal (0) vs vehicle (1)             5,000 / official
cifar100   100 classes                    the 20 official superclasses          5,000 / official
tinyimg.   200 wnids, sorted              fine // 10 (20 arbitrary groups)      10% / official val
purchase   label - 1 (100 classes)        fine // 10                            10% / 10%
imagefold. class folder, sorted           = fine (there is no second label)     10% / ``test/``
========== ============================== ===================================== ================

Validation splits are carved from the training data by :func:`.base.make_dataset`
(stratified by ``fine``, seed 0); sizes are capped at 10% so that small or partial copies of
a dataset still leave a training split.

Dataset files are trusted input only as far as their *contents* go: CIFAR's pickles are read
by :class:`SafeUnpickler`, which builds nothing but dicts, lists, strings, numbers and numpy
arrays, so a crafted file under ``data_root`` cannot run code; a file that is not a readable
image, or a folder layout with a single class, fails with one line naming it.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from privacysplit.data.base import Dataset, make_dataset

#: side of the square images every network in the pool takes.
IMAGE_SIZE = 32

CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"
TINYIMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
PURCHASE_URL = "https://github.com/privacytrustlab/datasets (dataset_purchase.tgz)"

#: CIFAR-10 classes that are vehicles (coarse label 1); the other six are animals (0).
CIFAR10_VEHICLES = frozenset({"airplane", "automobile", "ship", "truck"})
CIFAR10_ANIMALS = frozenset({"bird", "cat", "deer", "dog", "frog", "horse"})


def _require_root(root: Path | None, name: str) -> Path:
    if root is None:
        raise ValueError(
            f"dataset {name!r} is read from disk: pass data_root (the directory that holds its "
            "files); only 'mnist' and 'digits' work without one"
        )
    return Path(root)


def _require_file(path: Path, what: str, root: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(f"expected {path}: {what} and unpack it into {root}")


def _to_float_images(data: np.ndarray) -> torch.Tensor:
    """uint8 ``N x C x H x W`` -> float32 in [0, 1], vectorised (no per-image work)."""
    x = torch.from_numpy(np.ascontiguousarray(data)).to(torch.float32)
    return x.div_(255.0)


def _val_size(n: int, wanted: int | None = None) -> int:
    """The validation size: ``wanted`` (or 10%), but never more than 10% of ``n``."""
    tenth = n // 10
    return tenth if wanted is None else min(wanted, tenth)


# --------------------------------------------------------------------------- CIFAR

#: the only globals a CIFAR pickle may name: numpy's array reconstruction (numpy 1 and 2
#: module names) and ``_codecs.encode``, which protocol-2 pickles use for bytes
_SAFE_GLOBALS = frozenset({
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),
})


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that refuses every global but numpy arrays and dtypes.

    ``pickle.load`` on a file someone else wrote runs whatever callable the file names
    (``os.system`` included).  CIFAR batches only ever need plain containers and numpy
    arrays, so anything else is refused with :class:`pickle.UnpicklingError`.
    """

    def find_class(self, module: str, name: str):
        if (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused to load {module}.{name}: not an array or a plain value")


def _load_pickle(path: Path) -> dict:
    """A CIFAR pickle (Python 2 strings read as latin-1) through :class:`SafeUnpickler`."""
    try:
        with open(path, "rb") as f:
            entry = SafeUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as err:
        raise ValueError(f"{path} is not a CIFAR python batch ({type(err).__name__}: {err})") from err
    if not isinstance(entry, dict):
        raise ValueError(f"{path} is not a CIFAR python batch (it holds a {type(entry).__name__}, not a dict)")
    return entry


def _cifar_files(kind: str) -> tuple[str, list[str]]:
    from torchvision.datasets import CIFAR10, CIFAR100

    base = CIFAR10 if kind == "cifar10" else CIFAR100
    names = [n for n, _ in base.train_list + base.test_list] + [base.meta["filename"]]
    return base.base_folder, names


def _check_cifar(root: Path, kind: str) -> None:
    folder, names = _cifar_files(kind)
    label = "CIFAR-10" if kind == "cifar10" else "CIFAR-100"
    for name in names:
        _require_file(
            root / folder / name, f"download {label} (python version) from {CIFAR_URL}", root
        )


def _read_cifar(root: Path, kind: str, train: bool) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """Class names, images and fine labels of the train or test batches (safe unpickling).

    The same files and layout torchvision's CIFAR readers use, without their
    ``pickle.load``.
    """
    from torchvision.datasets import CIFAR10, CIFAR100

    base = CIFAR10 if kind == "cifar10" else CIFAR100
    folder = root / base.base_folder
    data, labels = [], []
    for name, _ in base.train_list if train else base.test_list:
        path = folder / name
        entry = _load_pickle(path)
        key = "labels" if "labels" in entry else "fine_labels"
        if "data" not in entry or key not in entry:
            raise ValueError(f"{path} has no 'data' and 'labels'/'fine_labels' entries; is it a CIFAR python batch?")
        data.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.extend(int(v) for v in entry[key])
    meta_path = folder / base.meta["filename"]
    meta = _load_pickle(meta_path)
    if base.meta["key"] not in meta:
        raise ValueError(f"{meta_path} has no {base.meta['key']!r} entry; is it the {kind} meta file?")
    classes = [str(c) for c in meta[base.meta["key"]]]
    x = _to_float_images(np.concatenate(data))
    fine = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    return classes, x, fine


def load_cifar10(root: Path | None) -> Dataset:
    """CIFAR-10 from ``<root>/cifar-10-batches-py`` (the python pickle batches)."""
    root = _require_root(root, "cifar10")
    _check_cifar(root, "cifar10")
    classes, x, fine = _read_cifar(root, "cifar10", train=True)
    _, tx, tfine = _read_cifar(root, "cifar10", train=False)
    unknown = set(classes) - CIFAR10_VEHICLES - CIFAR10_ANIMALS
    if unknown or len(classes) != 10:
        raise ValueError(
            f"batches.meta lists {classes}; expected the 10 CIFAR-10 classes "
            f"{sorted(CIFAR10_ANIMALS | CIFAR10_VEHICLES)}"
        )
    # Map by name (not position) so the grouping follows the meta file.
    is_vehicle = torch.tensor([c in CIFAR10_VEHICLES for c in classes], dtype=torch.int64)
    return make_dataset(
        "cifar10",
        x,
        fine,
        is_vehicle[fine],
        num_fine=10,
        num_coarse=2,
        n_val=_val_size(len(x), 5000),
        n_test=0,
        test=(tx, tfine, is_vehicle[tfine]),
        description="CIFAR-10; fine = class, coarse = animal (0) vs vehicle (1); "
        "test = official test batch",
    )


def _cifar100_coarse(root: Path, train: bool) -> torch.Tensor:
    """The 20 superclass labels, which torchvision's CIFAR100 does not expose."""
    path = root / "cifar-100-python" / ("train" if train else "test")
    entry = _load_pickle(path)
    if "coarse_labels" not in entry:
        raise ValueError(
            f"{path} has no 'coarse_labels' entry; is it the CIFAR-100 python version?"
        )
    return torch.as_tensor(np.asarray(entry["coarse_labels"], dtype=np.int64))


def load_cifar100(root: Path | None) -> Dataset:
    """CIFAR-100 from ``<root>/cifar-100-python``.

    fine = the 100 classes (the private attribute), coarse = the 20 official superclasses
    (the task): the paper's property-inference setup.
    """
    root = _require_root(root, "cifar100")
    _check_cifar(root, "cifar100")
    _, x, fine = _read_cifar(root, "cifar100", train=True)
    _, tx, tfine = _read_cifar(root, "cifar100", train=False)
    coarse, tcoarse = _cifar100_coarse(root, True), _cifar100_coarse(root, False)
    if len(coarse) != len(fine) or len(tcoarse) != len(tfine):
        raise ValueError("CIFAR-100 coarse_labels and fine_labels differ in length")
    return make_dataset(
        "cifar100",
        x,
        fine,
        coarse,
        num_fine=100,
        num_coarse=20,
        n_val=_val_size(len(x), 5000),
        n_test=0,
        test=(tx, tfine, tcoarse),
        description="CIFAR-100; fine = 100 classes (private attribute), coarse = 20 "
        "superclasses (task); test = official test set",
    )


# --------------------------------------------------------------------------- image files


def _read_image(path: str | Path, size: int = IMAGE_SIZE) -> np.ndarray:
    """One image file -> uint8 ``3 x size x size`` (RGB; grey and RGBA are converted)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.draft("RGB", (size, size))  # JPEG: decode at reduced scale, much faster
            img = img.convert("RGB")
            if img.size != (size, size):
                img = img.resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        # PIL.UnidentifiedImageError is an OSError; truncated files raise OSError too
        raise ValueError(f"{path} is not a readable image ({type(err).__name__}); remove or replace it") from err


def _read_images(paths: Sequence[str | Path], size: int = IMAGE_SIZE) -> torch.Tensor:
    """Decode many files into one float tensor; PIL releases the GIL while decoding."""
    out = np.empty((len(paths), 3, size, size), dtype=np.uint8)
    workers = min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for i, arr in enumerate(pool.map(lambda p: _read_image(p, size), paths, chunksize=64)):
            out[i] = arr
    return _to_float_images(out)


def load_tinyimagenet(root: Path | None) -> Dataset:
    """Tiny ImageNet from ``<root>/tiny-imagenet-200`` (the standard zip layout).

    Images are 64x64 and resized to 32x32 (the pool's input).  fine = the 200 wnids in sorted
    order (as ``ImageFolder`` would number them); coarse = fine // 10, twenty groups of ten
    neighbouring wnids: an arbitrary, non-semantic grouping kept only so the dataset has a
    second label.  The official ``val`` set (labels from ``val_annotations.txt``) is the test
    split, because the official test set has no labels; validation is 10% of train (50 images
    per class for the full set).
    """
    root = _require_root(root, "tinyimagenet")
    base = root / "tiny-imagenet-200"
    what = f"download Tiny ImageNet from {TINYIMAGENET_URL}"
    wnids_file = base / "wnids.txt"
    _require_file(wnids_file, what, root)
    wnids = sorted({w.strip() for w in wnids_file.read_text().split() if w.strip()})
    index = {w: i for i, w in enumerate(wnids)}

    paths: list[Path] = []
    labels: list[int] = []
    for wnid in wnids:
        folder = base / "train" / wnid / "images"
        _require_file(folder, what, root)
        files = sorted(folder.glob("*.JPEG"))
        if not files:
            raise FileNotFoundError(f"expected *.JPEG images in {folder}: {what}")
        paths += files
        labels += [index[wnid]] * len(files)

    ann = base / "val" / "val_annotations.txt"
    _require_file(ann, what, root)
    vpaths: list[Path] = []
    vlabels: list[int] = []
    for line in ann.read_text().splitlines():
        parts = line.split("\t")
        if len(parts) < 2:
            continue
        name, wnid = parts[0].strip(), parts[1].strip()
        if wnid not in index:
            raise ValueError(f"{ann} labels {name} as {wnid!r}, which is not in {wnids_file}")
        image = base / "val" / "images" / name
        _require_file(image, what, root)
        vpaths.append(image)
        vlabels.append(index[wnid])

    x = _read_images(paths)
    fine = torch.tensor(labels, dtype=torch.int64)
    tx = _read_images(vpaths)
    tfine = torch.tensor(vlabels, dtype=torch.int64)
    return make_dataset(
        "tinyimagenet",
        x,
        fine,
        fine // 10,
        num_fine=len(wnids),
        num_coarse=(len(wnids) + 9) // 10,
        n_val=_val_size(len(x)),
        n_test=0,
        test=(tx, tfine, tfine // 10),
        description="Tiny ImageNet resized 64->32; fine = wnid (sorted), coarse = fine // 10 "
        "(arbitrary groups of 10); test = official val",
    )


def _imagefolder_samples(folder: Path) -> tuple[list[str], list[tuple[str, int]]]:
    from torchvision.datasets import ImageFolder

    ds = ImageFolder(str(folder))  # finds classes and valid image files; decodes nothing
    return list(ds.classes), list(ds.samples)


def load_imagefolder(root: Path | None) -> Dataset:
    """The user's own images: ``<root>/train/<class>/*`` and ``<root>/test/<class>/*``.

    Classes are numbered in sorted folder order (torchvision's ``ImageFolder``), images are
    converted to RGB and resized to 32x32 without cropping (crop beforehand if the aspect
    ratio matters).  fine = coarse = the class: the folders carry only one label, so property
    inference on this dataset has no private attribute beyond the task.  Validation is 10% of
    ``train``; ``test/`` is the test split and may omit classes but not add new ones.
    """
    root = _require_root(root, "imagefolder")
    what = "put your images in <class>/ sub-folders (torchvision's ImageFolder layout)"
    for part in ("train", "test"):
        _require_file(root / part, what, root)
    classes, samples = _imagefolder_samples(root / "train")
    tclasses, tsamples = _imagefolder_samples(root / "test")
    if len(classes) < 2:
        raise ValueError(
            f"{root / 'train'} has {len(classes)} class folder(s) ({', '.join(classes) or 'none'}); "
            "a classifier needs at least 2 (one sub-folder per class)"
        )
    extra = sorted(set(tclasses) - set(classes))
    if extra:
        raise ValueError(f"{root / 'test'} has classes missing from {root / 'train'}: {extra}")
    # Renumber test labels by the train class names, in case test/ lacks some classes.
    remap = {i: classes.index(c) for i, c in enumerate(tclasses)}
    x = _read_images([p for p, _ in samples])
    fine = torch.tensor([c for _, c in samples], dtype=torch.int64)
    tx = _read_images([p for p, _ in tsamples])
    tfine = torch.tensor([remap[c] for _, c in tsamples], dtype=torch.int64)
    return make_dataset(
        "imagefolder",
        x,
        fine,
        fine.clone(),
        num_fine=len(classes),
        num_coarse=len(classes),
        n_val=_val_size(len(x)),
        n_test=0,
        test=(tx, tfine, tfine.clone()),
        description=f"user images from {root} resized to 32x32; fine = coarse = class "
        f"({', '.join(classes)})",
    )


# --------------------------------------------------------------------------- Purchase100


def load_purchase100(root: Path | None) -> Dataset:
    """Purchase100 from ``<root>/dataset_purchase`` (Shokri et al.'s published text file).

    Each line is ``label,f1,...,f600`` with label in 1..100 and binary features.  fine =
    label - 1; coarse = fine // 10 (ten groups of ten clusters, an arbitrary grouping since the
    classes are k-means clusters of shopping profiles).  No official split: 10% validation and
    10% test, stratified, seed 0.
    """
    root = _require_root(root, "purchase100")
    path = root / "dataset_purchase"
    _require_file(path, f"download dataset_purchase.tgz from {PURCHASE_URL}", root)
    # numpy's C parser; uint8 keeps the 197k x 601 table at ~120 MB while parsing.
    table = np.loadtxt(path, delimiter=",", dtype=np.uint8, ndmin=2)
    if table.shape[1] != 601:
        raise ValueError(
            f"{path}: expected 601 columns (label + 600 features), got {table.shape[1]}"
        )
    labels, feats = table[:, 0], table[:, 1:]
    if labels.min() < 1 or labels.max() > 100:
        raise ValueError(f"{path}: labels must be in 1..100, got {labels.min()}..{labels.max()}")
    if feats.max() > 1:
        raise ValueError(f"{path}: features must be binary (0/1)")
    x = torch.from_numpy(feats.astype(np.float32))
    fine = torch.from_numpy(labels.astype(np.int64) - 1)
    return make_dataset(
        "purchase100",
        x,
        fine,
        fine // 10,
        num_fine=100,
        num_coarse=10,
        n_val=_val_size(len(x)),
        n_test=_val_size(len(x)),
        description="Purchase100 (600 binary features); fine = label - 1, coarse = fine // 10",
    )
