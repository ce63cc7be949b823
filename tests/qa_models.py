"""User model files that misbehave (exit, interrupt, fail on a later call), as source text:
the QA tests write it into a temporary file and load it with ``--model file.py:NAME``."""

MODELS = '''
import sys
import torch.nn as nn
import weakref


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


# Calls per model, counted outside it: a rewind puts a model's own attributes back before it
# recomputes a forward (engine.attrs), so a count kept on the model would never reach 2.
CALLS = weakref.WeakKeyDictionary()


class FailsOnSecondCall(nn.Module):
    """Works once, then raises: a rewind that recomputes the forward meets the failure."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        CALLS[self] = CALLS.get(self, 0) + 1
        if CALLS[self] == 2:
            raise RuntimeError("second call")
        return self.fc(x)


class ExitsInInit(nn.Module):
    def __init__(self):
        sys.exit(0)


class InterruptsInInit(nn.Module):
    def __init__(self):
        raise KeyboardInterrupt
'''
