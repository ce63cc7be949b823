"""User model files that misbehave (exit, interrupt, fail on a later call), as source text:
the QA tests write it into a temporary file and load it with ``--model file.py:NAME``."""

MODELS = '''
import sys
import torch.nn as nn


class Exits(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        sys.exit(4)


class Interrupts(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        raise KeyboardInterrupt


class FailsOnSecondCall(nn.Module):
    """Works once, then raises: a rewind that recomputes the forward meets the failure."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        if self.calls == 2:
            raise RuntimeError("second call")
        return self.fc(x)


class ExitsInInit(nn.Module):
    def __init__(self):
        sys.exit(0)


class InterruptsInInit(nn.Module):
    def __init__(self):
        raise KeyboardInterrupt
'''
