"""User model files for the QA pass on odd-but-legal models (tests/test_qa_edge_inputs.py), as
source text: the tests write it into a temporary file and load it with ``--model file.py:NAME``.
"""

MODELS = '''
import sys

import torch
import torch.nn as nn


class Chatty(nn.Module):
    """Prints on stdout when built and in every forward, as a debugging user does."""

    def __init__(self):
        super().__init__()
        print("building Chatty")
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        print("forward", tuple(x.shape))
        print("to stderr", file=sys.stderr)
        return self.fc(x)


class ComplexWeights(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, 3, dtype=torch.cfloat))

    def forward(self, x):
        return (x.to(torch.cfloat) @ self.w).abs()


class SparseEmbedding(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 3, sparse=True)

    def forward(self, x):
        return self.emb((x.abs() * 3).long().clamp(0, 9)).sum(1)


class OnMeta(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3, device="meta")

    def forward(self, x):
        return self.fc(x)


class ScalarOut(nn.Module):
    """Returns its own loss-like scalar: the inferred MSE target has shape ()."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(x).pow(2).mean()


class NoDeepcopy(nn.Module):
    """Its __deepcopy__ raises something else than TypeError/RuntimeError."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def __deepcopy__(self, memo):
        raise ValueError("this model cannot be copied")

    def forward(self, x):
        return self.fc(x)


class NoGradForward(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        with torch.no_grad():
            return self.fc(x)


class IntegerOutput(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return (self.fc(x) * 10).long()


class MarkupNames(nn.Module):
    """nn.ModuleDict keys may be any string without a dot: these read as Rich markup."""

    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleDict({"[/]": nn.Linear(4, 3), "[link=x]": nn.Linear(3, 3)})
        with torch.no_grad():
            self.layers["[/]"].bias.fill_(-100.0)  # dead ReLU: diagnostics name these layers

    def forward(self, x):
        return self.layers["[link=x]"](torch.relu(self.layers["[/]"](x)))


class LongChain(nn.Module):
    """700 operations in a row: a grad_fn graph deeper than Python's recursion limit."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        y = self.fc(x)
        for _ in range(700):
            y = y * 1.0001
        return y


class FunctionalSparse(nn.Module):
    """A sparse gradient without an nn.Embedding(sparse=True) to refuse at define."""

    def __init__(self):
        super().__init__()
        self.table = nn.Parameter(torch.randn(10, 3))

    def forward(self, x):
        index = (x.abs() * 3).long().clamp(0, 9)
        return torch.nn.functional.embedding(index, self.table, sparse=True).sum(1)
'''

# Not UTF-8 and no coding line: Python's import accepts the byte in a comment, a plain read
# of the text as UTF-8 does not. With a BOM: ``ast.parse`` of the text read as UTF-8 fails.
LATIN1 = (
    b"import torch.nn as nn\n"
    b"# caf\xe9\n"
    b"\n\nclass Net(nn.Linear):\n"
    b"    def __init__(self):\n"
    b"        super().__init__(4, 3)\n"
)
BOM = b"\xef\xbb\xbf" + LATIN1.replace(b"# caf\xe9\n", b"")
LATIN1_DECLARED = b"# -*- coding: latin-1 -*-\n" + LATIN1
