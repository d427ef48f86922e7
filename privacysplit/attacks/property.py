"""Property inference (P2): a small classifier predicting a private attribute from features.

The classifier sees the released features standardised per channel.  Spatial maps go
through one 3x3 convolution (after average pooling large maps to at most 16x16, which keeps
the cost flat across partition points: a 64x32x32 VGG map would otherwise cost more than
the encoder) and a 2x2 max-pool; then a two-layer MLP.  Its accuracy on held-out inputs is
P2, reported beside the chance level (always guessing the most frequent value).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from privacysplit.attacks.decoders import FeatureStandardizer
from privacysplit.attacks.fitting import fit
from privacysplit.attacks.metrics import chance_level


class PropertyClassifier(nn.Module):
    """Standardiser + small conv/MLP classifier over features of any shape."""

    def __init__(self, feats: torch.Tensor, num_classes: int, width: int = 32, hidden: int = 128) -> None:
        super().__init__()
        self.standardizer = FeatureStandardizer(feats)
        shape = tuple(feats.shape[1:])
        layers: list[nn.Module] = []
        if len(shape) == 3 and min(shape[1:]) > 1:
            c, h, w = shape
            if max(h, w) > 16:
                layers.append(nn.AdaptiveAvgPool2d(16))
                h = w = 16
            layers += [nn.Conv2d(c, width, 3, 1, 1), nn.BatchNorm2d(width), nn.ReLU()]
            if min(h, w) >= 4:
                layers.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
            flat = width * h * w
        else:
            flat = int(torch.tensor(shape).prod())
        layers += [nn.Flatten(), nn.Linear(flat, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
                   nn.Linear(hidden, num_classes)]
        self.net = nn.Sequential(*layers)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.net(self.standardizer(feats))


def property_loss(classifier: nn.Module, feats: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The attacker's cross-entropy on the private attribute."""
    return F.cross_entropy(classifier(feats), labels)


@dataclass
class PropertyResult:
    """Accuracy of the attribute classifier on held-out inputs, and the chance level."""

    accuracy: float
    chance: float
    classifier: PropertyClassifier | None
    seconds: float
    diverged: bool = False


def train_property(
    classifier: nn.Module, feats: torch.Tensor, labels: torch.Tensor, *, epochs: int, batch_size: int,
    lr: float, generator: torch.Generator,
) -> float:
    """Fit the attribute classifier; the last epoch's mean loss (NaN if diverged)."""
    classifier.train()
    loss = fit(classifier.parameters(), lambda idx: property_loss(classifier, feats[idx], labels[idx]),
               len(feats), epochs=epochs, batch_size=batch_size, lr=lr, generator=generator)
    classifier.eval()
    return loss


@torch.no_grad()
def predict(classifier: nn.Module, feats: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    classifier.eval()
    return torch.cat([classifier(feats[i : i + batch_size]).argmax(1) for i in range(0, len(feats), batch_size)])


def infer_property(
    feats_train: torch.Tensor,
    y_train: torch.Tensor,
    feats_val: torch.Tensor,
    y_val: torch.Tensor,
    num_classes: int,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
) -> PropertyResult:
    """Train a fresh attribute classifier on the auxiliary features and measure it."""
    t0 = time.perf_counter()
    torch.manual_seed(seed + 15485863)
    classifier = PropertyClassifier(feats_train, num_classes).to(feats_train.device)
    gen = torch.Generator().manual_seed(seed + 32452843)
    loss = train_property(classifier, feats_train, y_train, epochs=epochs, batch_size=batch_size,
                          lr=lr, generator=gen)
    chance = chance_level(y_val)
    if loss != loss:
        return PropertyResult(1.0, chance, None, time.perf_counter() - t0, diverged=True)
    acc = float((predict(classifier, feats_val) == y_val).float().mean()) if len(y_val) else 0.0
    return PropertyResult(acc, chance, classifier, time.perf_counter() - t0)
