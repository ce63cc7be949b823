"""Issue 4's oracle: every recipe's loop written out in plain PyTorch, independent of ``engine``.

Its own copy of the tutorial Net, its own digits reader (gzip + csv, no numpy), its own
optimizers straight from ``torch.optim`` and the notes' manual loop. Tests compare the engine
against what this computes, never against the engine's own output.
"""

from __future__ import annotations

import csv
import gzip
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim
from torch.utils.data import DataLoader, TensorDataset

from tests.oracle import TutorialNet

DIGITS_CSV = Path(__file__).resolve().parent.parent / "engine" / "data" / "digits.csv.gz"


# The tutorial's Net, typed out once for all oracles (tests/oracle.py).
PlainNet = TutorialNet


def read_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """``(pixels N×8×8 int64, labels N)`` read with the standard library."""
    with gzip.open(DIGITS_CSV, "rt", newline="") as f:
        rows = [[int(v) for v in row] for row in csv.reader(f) if row]
    data = torch.tensor(rows, dtype=torch.int64)
    return data[:, :64].reshape(-1, 8, 8), data[:, 64]


def digits_images(pixels: torch.Tensor) -> torch.Tensor:
    """8×8 -> 1×32×32 by repeating every pixel into a 4×4 block, then /16 (exact either way)."""
    big = pixels.repeat_interleave(4, dim=1).repeat_interleave(4, dim=2)
    return (big.to(torch.float32) / 16).unsqueeze(1)


def plain_digits_loader(seed: int, batch_size: int) -> DataLoader:
    pixels, labels = read_digits()
    dataset = TensorDataset(digits_images(pixels), labels)
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=generator)


def endless(loader: DataLoader):
    while True:
        yield from loader


@dataclass
class PlainRun:
    """What the plain loop saw, per iteration (index 0 = iteration 1)."""

    net: nn.Module
    optimizer: object
    losses: list[float] = field(default_factory=list)
    grads_after_zero: list[torch.Tensor | None] = field(default_factory=list)  # conv1.bias
    params: list[dict[str, torch.Tensor]] = field(default_factory=list)  # after each step
    states: list[dict[str, dict[str, torch.Tensor]]] = field(default_factory=list)
    outputs: list[torch.Tensor] = field(default_factory=list)
    labels: list[torch.Tensor] = field(default_factory=list)
    weighted_vs_functional: list[bool] = field(default_factory=list)
    criterion: nn.Module | None = None


def plain_run(
    *,
    seed: int = 0,
    lr: float = 0.01,
    loss: str = "mse",
    class_weights: tuple[tuple[int, float], ...] = (),
    optimizer: str = "sgd",
    zero_grad: str = "none",
    data: str = "random",
    batch_size: int = 16,
    accumulate: bool = False,
    iterations: int = 3,
) -> PlainRun:
    """The notes' loop: manual_seed, net, data, criterion, optimizer; then the five phases."""
    torch.manual_seed(seed)
    net = PlainNet()
    if data == "digits":
        batches = endless(plain_digits_loader(seed, batch_size))
    else:
        input = torch.randn(1, 1, 32, 32)
        target = (
            torch.randint(0, 10, (1,)) if loss == "cross-entropy" else torch.randn(10).view(1, -1)
        )
    weight = None
    if loss == "mse":
        criterion: nn.Module = nn.MSELoss()
    else:
        if class_weights:
            weight = torch.ones(10)
            for k, w in class_weights:
                weight[k] = w
        criterion = nn.CrossEntropyLoss(weight=weight)
    opt: object
    if optimizer == "sgd":
        opt = optim.SGD(net.parameters(), lr=lr)
    elif optimizer == "momentum":
        opt = optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    elif optimizer == "adam":
        opt = optim.Adam(net.parameters(), lr=lr)
    elif optimizer == "rmsprop":
        opt = optim.RMSprop(net.parameters(), lr=lr)
    else:
        opt = None  # the notes' manual loop
    run = PlainRun(net, opt, criterion=criterion)
    set_to_none = zero_grad == "none"
    for _ in range(iterations):
        if data == "digits":
            input, label = next(batches)
            target = F.one_hot(label, 10).float() if loss == "mse" else label
            run.labels.append(label)
        output = net(input)
        run.outputs.append(output.detach().clone())
        value = criterion(output, target)
        run.losses.append(value.item())
        if loss == "cross-entropy":
            functional = F.cross_entropy(output, target, weight=weight)
            run.weighted_vs_functional.append(torch.equal(functional, value))
        if not accumulate:
            if opt is None:
                net.zero_grad(set_to_none=set_to_none)
            else:
                opt.zero_grad(set_to_none=set_to_none)
        g = net.conv1.bias.grad
        run.grads_after_zero.append(None if g is None else g.clone())
        value.backward()
        if opt is None:
            for f in net.parameters():
                f.data.sub_(f.grad.data * lr)
        else:
            opt.step()
        run.params.append({n: p.detach().clone() for n, p in net.named_parameters()})
        if opt is not None:
            run.states.append(
                {
                    n: {k: v.clone() for k, v in opt.state[p].items()}
                    for n, p in net.named_parameters()
                    if p in opt.state
                }
            )
    return run
