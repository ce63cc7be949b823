"""The tutorial's loop in plain PyTorch, written independently of ``engine``: the tests' oracle."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim


class TutorialNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(400, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), (2, 2))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


def snapshot(net: nn.Module) -> dict[str, dict[str, object]]:
    """What ``trace --json`` promises per parameter, computed directly."""
    out = {}
    for name, p in net.named_parameters():
        out[name] = {
            "shape": list(p.shape),
            "norm": p.norm().item(),
            "sum": p.sum().item(),
            "grad_norm": None if p.grad is None else p.grad.norm().item(),
            "grad_sum": None if p.grad is None else p.grad.sum().item(),
        }
    return out


def tutorial_loop(seed: int, lr: float, iterations: int, accumulate: bool = False):
    """Yield ``(iteration, phase, loss, snapshot, net)`` after every phase, as the tutorial runs."""
    torch.manual_seed(seed)
    net = TutorialNet()
    input = torch.randn(1, 1, 32, 32)
    target = torch.randn(10).view(1, -1)
    criterion = nn.MSELoss()
    optimizer = optim.SGD(net.parameters(), lr=lr)
    yield 0, "define", None, snapshot(net), net
    for it in range(1, iterations + 1):
        output = net(input)
        yield it, "forward", None, snapshot(net), net
        loss = criterion(output, target)
        yield it, "loss", loss.item(), snapshot(net), net
        if not accumulate:
            optimizer.zero_grad()
        yield it, "zero_grad", loss.item(), snapshot(net), net
        loss.backward()
        yield it, "backward", loss.item(), snapshot(net), net
        optimizer.step()
        yield it, "step", loss.item(), snapshot(net), net


def seeded_setup(
    factory: Any,
    input_shape: tuple[int, ...] = (2, 4),
    target_shape: tuple[int, ...] = (2, 3),
    lr: float = 0.01,
) -> tuple[nn.Module, torch.Tensor, torch.Tensor, optim.SGD]:
    """A model of the user's as nntui builds it, in the documented seeded order:
    ``manual_seed(0)``, the model, the input, the target; and plain SGD on it."""
    torch.manual_seed(0)
    net = factory()
    input = torch.randn(input_shape)
    target = torch.randn(target_shape)
    return net, input, target, optim.SGD(net.parameters(), lr=lr)


def plain_losses(
    factory: Any, input_shape: tuple[int, ...], target_shape: tuple[int, ...], iterations: int
) -> list[float]:
    """The tutorial's loop in plain PyTorch, in the documented seeded order."""
    net, input, target, optimizer = seeded_setup(factory, input_shape, target_shape)
    criterion = nn.MSELoss()
    losses = []
    for _ in range(iterations):
        optimizer.zero_grad()
        loss = criterion(net(input), target)
        losses.append(loss.item())
        loss.backward()
        optimizer.step()
    return losses
