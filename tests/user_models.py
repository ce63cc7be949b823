"""Tiny models as a user would write them, for ``--model tests/user_models.py:NAME``.

Each exists to trigger one diagnostic or one failure; ``Healthy`` triggers none. Input: a batch
of 6 features (``--input-shape 4,6``) unless a docstring says otherwise.
"""

from __future__ import annotations

import contextlib
import weakref

import torch
import torch.nn as nn
import torch.nn.functional as F


class Healthy(nn.Module):
    """Nested modules (``body.0``) and an ``nn.ReLU``: nothing to report."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def make_healthy() -> nn.Module:
    """The same model from a zero-argument function."""
    return Healthy()


class Unused(nn.Module):
    """``spare`` is never called in forward: its grads stay None."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 3)
        self.spare = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


class Frozen(nn.Module):
    """A frozen first layer, as when fine-tuning."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Linear(6, 8)
        self.head = nn.Linear(8, 3)
        for p in self.features.parameters():
            p.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.features(x)))


class Tied(nn.Module):
    """An autoencoder whose decoder reuses the encoder's weight tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Linear(6, 6)
        self.decoder = nn.Linear(6, 6)
        self.decoder.weight = self.encoder.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(torch.tanh(self.encoder(x)))


class Log(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(x)


class NaNMiddle(nn.Module):
    """``bad`` takes the log of negative numbers. ``act`` is one ReLU module used twice, the
    second time after the NaN appeared: the first module to go bad is ``bad``, not ``act``."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 8)
        self.act = nn.ReLU()
        self.bad = Log()
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.fc1(x))
        h = self.bad(h - 10.0)
        return self.fc2(self.act(h))


class NaNGrad(nn.Module):
    """A finite forward whose backward is 0·∞ = NaN for ``s``: d sqrt(s)/ds at s = 0."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 3)
        self.s = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) + torch.sqrt(self.s) * 0.0


class Tiny(nn.Module):
    """Scales its output by ``scale``: a small one shrinks every gradient, a big one blows
    them up."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 3)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) * self.scale


def vanishing() -> nn.Module:
    return Tiny(1e-8)


def exploding() -> nn.Module:
    return Tiny(1e4)


class DeadReLU(nn.Module):
    """A bias of -100 before the ReLU: every unit is 0 for every sample."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 8)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(8, 3)
        with torch.no_grad():
            self.fc1.bias.fill_(-100.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.relu(self.fc1(x)))


class FunctionalReLU(nn.Module):
    """Dead the same way, but through ``F.relu``: no module to hook, so no ``dead_relu``."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 8)
        self.fc2 = nn.Linear(8, 3)
        with torch.no_grad():
            self.fc1.bias.fill_(-100.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(x)))


class WrongSize(nn.Module):
    """The tutorial's mistake: ``fc1`` expects 400 features, the input has 256."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(400, 120)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc1(torch.flatten(x, 1))


class Boom(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise ValueError("boom in user code")


class RaisesInBlock(nn.Module):
    """User code that raises inside a nested module: the error names ``block (Boom)``."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 6)
        self.block = Boom()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(self.fc(x))


class _FailingBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:
        raise ValueError("custom backward refuses")


class BadBackward(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _FailingBackward.apply(self.fc(x))


class NoParams(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class NotAModule:
    """A class, but not an nn.Module."""


def returns_int() -> int:
    return 3


def raises() -> nn.Module:
    raise RuntimeError("factory failed on purpose")


INSTANCE = Healthy()


class BatchNormNet(nn.Module):
    """BatchNorm buffers and dropout's RNG: a dry forward must leave both as they were."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 8, bias=False)  # BatchNorm subtracts the mean: no bias
        self.bn = nn.BatchNorm1d(8)
        self.relu = nn.ReLU()
        self.drop = nn.Dropout(0.25)
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.drop(self.relu(self.bn(self.fc1(x)))))


class _FlakyBackward(torch.autograd.Function):
    failures_left = 1  # the first backward through it raises, later ones work

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:
        if _FlakyBackward.failures_left:
            _FlakyBackward.failures_left -= 1
            raise ValueError("flaky backward")
        return grad


class FlakyBackward(nn.Module):
    """BatchNorm, then a backward that fails once: retrying must work and match PyTorch."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 4)
        self.bn = nn.BatchNorm1d(4)
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(_FlakyBackward.apply(self.bn(self.fc(x))))


class BiasBeforeBatchNorm(nn.Module):
    """A bias right before BatchNorm does nothing: BatchNorm subtracts the batch mean, so the
    bias's gradient is zero up to rounding and it shows as ``vanishing``."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 8)
        self.bn = nn.BatchNorm1d(8)
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.tanh(self.bn(self.fc1(x))))


USER_CONSTANT = "not a model"


class InPlaceNet(nn.Module):
    """In-place ops on module outputs, as torchvision's ResNet block has them: ``out += skip``
    on BatchNorm's output, then ``ReLU(inplace=True)``; and dropout (RNG): an activation must
    still show what its module returned."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 8)
        self.bn = nn.BatchNorm1d(8)
        self.relu = nn.ReLU(inplace=True)
        self.skip = nn.Linear(6, 8)
        self.drop = nn.Dropout(0.25)
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn(self.fc1(x))
        out += self.skip(x)
        return self.fc2(self.drop(self.relu(out)))


class ReadsItsBuffer(nn.Module):
    """A forward that updates a buffer and then reads it: a rewind that recomputes the forward
    must start from the buffer the forward found, or it doubles the update."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.register_buffer("scale", torch.ones(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.scale.mul_(1.5)
        return self.fc(x) * self.scale


class WritesToDescriptors(nn.Module):
    """Writes below Python, as C code does: straight to descriptors 1 and 2, and through C's
    buffered stdout (``printf``), after a Python print."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import ctypes
        import os

        print("python print")
        os.write(1, b"raw to fd 1\n")
        os.write(2, b"raw to fd 2\n")
        ctypes.CDLL(None).printf(b"printf %d\n", 7)
        return self.fc(x)


class PrintsFromAThread(nn.Module):
    """Its forward prints from a thread of its own, which it waits for."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import threading

        worker = threading.Thread(target=lambda: print("from a thread"))
        worker.start()
        worker.join()
        return self.fc(x)


class WritesToDescriptorsThenFails(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import os

        os.write(1, b"raw before failing\n")
        return self.fc(x.view(-1))


class KeepsGradNorm(nn.Module):
    """A backward hook of its own that keeps the output gradient's norm in an attribute: user
    code that rebinds an attribute outside forward."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.gnorm: float | None = None
        self.register_full_backward_pre_hook(self._keep_norm)

    @staticmethod
    def _keep_norm(module: nn.Module, grad_out: tuple[torch.Tensor]) -> None:
        module.gnorm = grad_out[0].norm().item()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


class KeepsPythonState(nn.Module):
    """State in plain attributes, as models keep it: a call count that scales the output, the
    last input kept as a tensor (first set by the first call) and read by the next, and an
    attribute that only the second call sets."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls > 1:
            x = x + self.last
        if self.calls == 2:
            self.second = True
        self.last = x.detach() * 0.5
        return self.fc(x) * self.calls


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise ValueError("str of exc boom")


class RaisesUnprintable(nn.Module):
    """A forward raising an exception whose message itself raises when read."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_grad_enabled():
            return self.fc(x)  # the loader's dry forward runs under no_grad: let it pass
        raise _Unprintable()


class _NoisyGrad(torch.autograd.Function):
    """Identity forward; its backward draws from the global RNG (as a custom op may)."""

    @staticmethod
    def forward(ctx: object, x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx: object, grad: torch.Tensor) -> torch.Tensor:
        return grad + 0.01 * torch.randn_like(grad)


class DrawsRandomNumbers(nn.Module):
    """Dropout in forward and random numbers in backward: every phase of user code moves the
    global RNG, so each checkpoint must hold the state that phase left."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.drop = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _NoisyGrad.apply(self.drop(self.fc(x)))


class AddsModuleInForward(nn.Module):
    """Creates a submodule on its first forward (a lazy-init habit): not undone by a rewind."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not hasattr(self, "extra"):
            self.extra = nn.Linear(3, 3)
        return self.extra(self.fc(x))


class AddsParameterInForward(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.fc.scale = nn.Parameter(torch.ones(3))
        return self.fc(x) * self.fc.scale


class AddsBufferInForward(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.register_buffer("seen", torch.zeros(()))
        return self.fc(x)


class TemporaryModuleAndBuffer(nn.Module):
    """Legal in forward: a module made and used but not attached, and an existing buffer
    given a new tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls = self.calls + 1
        return nn.Identity()(self.fc(x)) * 2


class _LoudGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx: object, x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx: object, grad: torch.Tensor) -> torch.Tensor:
        print(f"backward sees {tuple(grad.shape)}")
        return grad


class Chatty(nn.Module):
    """Prints as people debug: in __init__, in forward (stdout and stderr), in a backward."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)
        print("built Chatty")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        print("x:", tuple(x.shape))
        import sys

        print("\x1b[31mwarned\x1b[0m", file=sys.stderr)
        return _LoudGrad.apply(self.fc(x))


class ChattyThenFails(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        print("before the bad line, x is", tuple(x.shape))
        return self.fc(x.view(-1))


# Calls per model, counted outside it: a rewind puts a model's own attributes back before it
# recomputes a forward (engine.attrs), so a count kept on the model would stay at 1.
FORWARD_CALLS: weakref.WeakKeyDictionary[nn.Module, int] = weakref.WeakKeyDictionary()


class BackwardInForward(nn.Module):
    """Calls backward inside forward from its second call on (the first builds cleanly)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        calls = FORWARD_CALLS[self] = FORWARD_CALLS.get(self, 0) + 1
        y = self.fc(x)
        if calls > 1 and torch.is_grad_enabled():
            y.sum().backward(retain_graph=True)
        return y


class AlwaysBackwardInForward(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(x)
        y.sum().backward(retain_graph=True)  # fails under no_grad: the dry forward retries
        return y


class WritesGradInForward(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.fc.bias.grad = torch.ones(3)
        return self.fc(x)


class ShrinksInForward(nn.Module):
    """Scales its weight in place in every forward (not idempotent: doing it twice shows)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            self.fc.weight.mul_(0.5)
        return self.fc(x)


class GradPenaltyOnParams(nn.Module):
    """A gradient penalty with respect to its own weight (``torch.autograd.grad`` writes no
    ``.grad``): legal, and exact."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(x)
        (g,) = torch.autograd.grad(y.pow(2).sum(), self.fc.weight, create_graph=True)
        return y + 0.01 * g.pow(2).sum()


class CatchesBackwardRefusal(nn.Module):
    """Calls backward in forward and swallows whatever it raises."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(x)
        with contextlib.suppress(RuntimeError):
            y.sum().backward(retain_graph=True)
        return y


class CatchesStructureRefusal(nn.Module):
    """Attaches a submodule in forward and swallows whatever it raises."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with contextlib.suppress(RuntimeError):
            self.extra = nn.Linear(3, 3)
        return self.fc(x)


class HalvesGradInForward(nn.Module):
    """Halves its weight's gradient in place in forward, once there is one."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fc.weight.grad is not None:
            self.fc.weight.grad.mul_(0.5)
        return self.fc(x)


class KeepsItsStream(nn.Module):
    """Keeps ``sys.stdout`` as it was at ``__init__`` (as ``logging.basicConfig()`` at import
    keeps ``sys.stderr``) and writes to it in forward; also writes bytes to stdout's buffer."""

    def __init__(self) -> None:
        super().__init__()
        import sys

        self.fc = nn.Linear(4, 3)
        self.out = sys.stdout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import sys

        self.out.write("through the kept stream\n")
        sys.stdout.buffer.write(b"as bytes\n")
        return self.fc(x)


class ClampsThroughData(nn.Module):
    """WGAN's weight clipping the old way, ``p.data.clamp_(-c, c)`` in forward: no version
    counter sees it."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.fc.weight.data.clamp_(-0.3, 0.3)
        return self.fc(x)
