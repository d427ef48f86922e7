"""A few reconstructions of every evaluated plan, small enough to cache and log.

An attack already reconstructs the held-out inputs; keeping the first few beside the
originals lets a search show, while it runs, what the attacker recovers from the current
best plan (TensorBoard image ``reconstruction/best``) without retraining anything.  They
travel in the metrics as one string (``reconstruction``): ``"N,C,H,W:"`` followed by the
zlib-compressed, base64-encoded uint8 pixels of the originals and then the
reconstructions, so they survive JSON, the SQLite cache and worker processes (about 3 KB
for four MNIST digits).
"""

from __future__ import annotations

import base64
import zlib

import numpy as np
import torch

#: inputs reconstructed and kept per evaluation
N_SAMPLES = 4


def encode_samples(original: torch.Tensor, reconstruction: torch.Tensor) -> str:
    """Pack ``original`` and ``reconstruction`` (same shape, N x C x H x W in ``[0, 1]``)."""
    if original.shape != reconstruction.shape or original.dim() != 4:
        raise ValueError(f"need two N x C x H x W batches of one shape, got {tuple(original.shape)} and "
                         f"{tuple(reconstruction.shape)}")
    both = torch.stack([original, reconstruction]).detach().float().clamp(0, 1).mul(255).round()
    pixels = both.to(torch.uint8).cpu().numpy()
    shape = ",".join(map(str, original.shape))
    return f"{shape}:" + base64.b64encode(zlib.compress(pixels.tobytes(), 9)).decode("ascii")


def decode_samples(text: str) -> np.ndarray:
    """The ``2 x N x C x H x W`` uint8 array packed by :func:`encode_samples`.

    Raises:
        ValueError: when ``text`` is not such a string.
    """
    try:
        shape_text, payload = text.split(":", 1)
        shape = tuple(int(s) for s in shape_text.split(","))
        pixels = np.frombuffer(zlib.decompress(base64.b64decode(payload)), dtype=np.uint8)
        return pixels.reshape((2, *shape))
    except (ValueError, zlib.error) as err:
        raise ValueError(f"not a reconstruction sample string ({err})") from err


def sample_grid(text: str) -> np.ndarray:
    """One C x H x W uint8 image: originals on the top row, reconstructions below
    (what ``SummaryWriter.add_image`` takes)."""
    both = decode_samples(text)
    rows = [np.concatenate(list(batch), axis=2) for batch in both]  # N images side by side
    return np.concatenate(rows, axis=1)


def save_png(text: str, path) -> str:
    """Write :func:`sample_grid` of ``text`` as a PNG (pixels doubled) and return its path.

    Why: the packed string is how samples travel through the cache and worker processes,
    but nobody can read base64 in JSON or a terminal; an image file can be opened.
    """
    from pathlib import Path

    from PIL import Image

    grid = sample_grid(text)
    image = grid[0] if grid.shape[0] == 1 else grid.transpose(1, 2, 0)
    from privacysplit._fsutil import atomic_write

    path = Path(path)
    picture = Image.fromarray(image).resize((image.shape[1] * 2, image.shape[0] * 2), Image.Resampling.NEAREST)
    atomic_write(path, lambda f: picture.save(f, format="PNG"))  # unique temporary name: writers may race
    return str(path)


def load_png(path) -> np.ndarray:
    """A PNG written by :func:`save_png` as a C x H x W uint8 array (at its saved size)."""
    from PIL import Image

    image = np.asarray(Image.open(path))
    return image[None] if image.ndim == 2 else image.transpose(2, 0, 1)[:3]
