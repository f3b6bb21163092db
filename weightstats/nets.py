"""Small reference classifiers on scikit-learn's digits, and the loop that trains them.

These are the models whose weights the project's own examples analyse (the bundled
``data/digits_mlp.safetensors``) and that the CLT experiments train under different
initialisations and optimisers. Everything runs on the CPU in seconds.

Run ``python -m weightstats.nets OUT.safetensors`` to train the bundled MLP checkpoint.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from .datasets import DigitsData, load_digits

__all__ = [
    "INIT_SCHEMES",
    "DigitsMLP",
    "DigitsCNN",
    "TrainingHistory",
    "init_weights",
    "train_classifier",
]

#: Weight initialisations: PyTorch's default, and two with the same standard deviation but
#: another shape, so an experiment changes only the shape of the initial distribution.
INIT_SCHEMES = ("kaiming-uniform", "normal", "heavy-tailed")


class DigitsMLP(nn.Module):
    """A fully connected classifier for 8x8 digits: 64 -> hidden... -> 10, ReLU between."""

    def __init__(self, hidden: Sequence[int] = (64, 32)) -> None:
        super().__init__()
        widths = [64, *hidden]
        layers: list[nn.Module] = []
        for n_in, n_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(n_in, n_out), nn.ReLU()]
        layers.append(nn.Linear(widths[-1], 10))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.reshape(x.shape[0], -1))


class DigitsCNN(nn.Module):
    """A small convolutional classifier for 8x8 digits: two 3x3 convolutions, then a linear head."""

    def __init__(self, channels: Sequence[int] = (8, 16)) -> None:
        super().__init__()
        c1, c2 = channels
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(c1, c2, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Linear(c2 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x.reshape(-1, 1, 8, 8))
        return self.head(h.flatten(1))


def _default_std(weight: torch.Tensor) -> float:
    """Standard deviation of PyTorch's default init U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    fan_in = weight[0].numel()
    return 1.0 / math.sqrt(fan_in) / math.sqrt(3.0)


@torch.no_grad()
def init_weights(model: nn.Module, scheme: str, *, generator: torch.Generator) -> nn.Module:
    """Re-initialise every weight matrix / kernel (``dim >= 2``) of `model` in place.

    Parameters
    ----------
    model : torch.nn.Module
    scheme : {'kaiming-uniform', 'normal', 'heavy-tailed'}
        ``'kaiming-uniform'`` is PyTorch's default for Linear and Conv layers,
        U(-1/sqrt(fan_in), 1/sqrt(fan_in)). ``'normal'`` draws N(0, s^2) and ``'heavy-tailed'``
        draws a Student-t with 3 degrees of freedom rescaled to standard deviation s, where s is
        the default's standard deviation 1/sqrt(3 fan_in): only the shape differs.
        Biases keep PyTorch's default uniform init, drawn from `generator` too.
    generator : torch.Generator
        The only source of randomness; torch's global generator is not touched.

    Returns
    -------
    torch.nn.Module
        `model`, for chaining.
    """
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"`scheme` must be one of {INIT_SCHEMES}; got {scheme!r}.")
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if not isinstance(weight, torch.Tensor) or weight.dim() < 2:
            continue
        std = _default_std(weight)
        shape, dtype = weight.shape, weight.dtype
        if scheme == "kaiming-uniform":
            bound = std * math.sqrt(3.0)
            new = (torch.rand(shape, generator=generator, dtype=dtype) * 2 - 1) * bound
        elif scheme == "normal":
            new = torch.randn(shape, generator=generator, dtype=dtype) * std
        else:  # Student-t(3) = Z / sqrt(chi2_3 / 3), variance 3
            z = torch.randn(shape, generator=generator, dtype=dtype)
            chi2 = torch.randn((3, *shape), generator=generator, dtype=dtype).pow(2).sum(0)
            new = z / torch.sqrt(chi2 / 3.0) / math.sqrt(3.0) * std
        weight.copy_(new)
        bias = getattr(module, "bias", None)
        if isinstance(bias, torch.Tensor):
            bound = 1.0 / math.sqrt(weight[0].numel())
            bias.copy_((torch.rand(bias.shape, generator=generator, dtype=dtype) * 2 - 1) * bound)
    return model


@dataclass
class TrainingHistory:
    """Per-epoch training loss and test accuracy of :func:`train_classifier`."""

    train_loss: list[float] = field(default_factory=list)
    test_accuracy: list[float] = field(default_factory=list)
    steps: int = 0

    def __repr__(self) -> str:
        acc = self.test_accuracy[-1] if self.test_accuracy else float("nan")
        return f"TrainingHistory(epochs={len(self.train_loss)}, steps={self.steps}, test_accuracy={acc:.3f})"


def train_classifier(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: DigitsData,
    *,
    epochs: int = 20,
    batch_size: int = 64,
    seed: int = 0,
) -> TrainingHistory:
    """Train `model` with cross-entropy; the batch order is drawn from its own seeded generator.

    Recorders attach to `optimizer` (its step hooks), so this loop needs nothing extra for them.
    The same model, optimizer state, data and seed always give bitwise the same weights on the CPU.
    """
    order_gen = torch.Generator().manual_seed(seed)
    history = TrainingHistory()
    loss_fn = nn.CrossEntropyLoss()
    n = data.x_train.shape[0]
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(n, generator=order_gen)
        total = 0.0
        for start in range(0, n, batch_size):
            idx = perm[start : start + batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(data.x_train[idx]), data.y_train[idx])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
            history.steps += 1
        history.train_loss.append(total / n)
        model.eval()
        with torch.no_grad():
            pred = model(data.x_test).argmax(dim=1)
        history.test_accuracy.append(float((pred == data.y_test).float().mean()))
    return history


def _main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m weightstats.nets",
        description="Train the bundled digits MLP and save its weights as safetensors.",
    )
    parser.add_argument("out", type=Path, help="output .safetensors file (must not exist)")
    parser.add_argument("--hidden", type=int, nargs="+", default=[256, 256])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.out.exists():
        parser.error(f"{args.out} exists; remove it first")
    from safetensors.torch import save_file

    torch.manual_seed(args.seed)  # the layers' default init comes from the global generator
    model = DigitsMLP(hidden=args.hidden)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    history = train_classifier(model, optimizer, load_digits(seed=args.seed), epochs=args.epochs,
                               seed=args.seed)
    metadata = {
        "model": f"DigitsMLP(hidden={tuple(args.hidden)})",
        "command": "python -m weightstats.nets " + " ".join(sys.argv[1:] if argv is None else argv),
        "optimizer": f"Adam(lr={args.lr})",
        "epochs": str(args.epochs),
        "seed": str(args.seed),
        "test_accuracy": f"{history.test_accuracy[-1]:.4f}",
    }
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(args.out), metadata)
    print(f"wrote {args.out}: {history}")


if __name__ == "__main__":
    _main()
