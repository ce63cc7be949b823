"""What the whole run keeps after old records are let go: the loss of every iteration and the
running digits accuracy.

A phase record holds tens of Python objects (a ResNet's hundreds): kept for every phase, a long
``nntui trace`` grew by about 60 KB an iteration on the tutorial Net until memory ran out, and
the app's panes re-read the whole log on every key. So the session keeps only the records the
rewind history can still reach plus a fixed tail (``Session.records``), and this log keeps, for
every record ever made, the few numbers the loss plot and the accuracy figures need: 32 bytes
an iteration (56 on digits), in flat arrays. Entries are tagged with their record's position in the full log,
so a rewind truncates both alike.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left


class RunLog:
    """Loss per loss record, cumulative digits hits per forward record, and where each
    backward record was, for a whole run."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self._losses: tuple[tuple[int, float], ...] | None = ()  # None: to be made again
        self._loss_at = array("q")  # position of the loss record in the full log
        self._loss_iteration = array("q")
        self._loss = array("d")
        self._forward_at = array("q")
        # Cumulative over the run: the counts up to and including each forward, so the
        # accuracy over the whole run or its last k batches is one subtraction.
        self._seen = array("q")
        self._correct = array("q")
        self._backward_at = array("q")

    def add_loss(self, at: int, iteration: int, loss: float) -> None:
        self._losses = None
        self._loss_at.append(at)
        self._loss_iteration.append(iteration)
        self._loss.append(loss)

    def add_forward(self, at: int, labels: tuple[int, ...], predictions: tuple[int, ...]) -> None:
        seen = self._seen[-1] if self._seen else 0
        correct = self._correct[-1] if self._correct else 0
        self._forward_at.append(at)
        self._seen.append(seen + len(labels))
        self._correct.append(correct + sum(p == t for p, t in zip(predictions, labels)))

    def add_backward(self, at: int) -> None:
        self._backward_at.append(at)

    def backwards_before(self, at: int) -> int:
        """How many backward records precede position ``at`` (numbers the accumulation plot's
        backward calls from the first one of the run, not of the records kept)."""
        return bisect_left(self._backward_at, at)

    def truncate(self, records: int) -> None:
        """Forget what records at positions ``records`` and later said (a rewind deleted them)."""
        for at, columns in (
            (self._loss_at, (self._loss_at, self._loss_iteration, self._loss)),
            (self._forward_at, (self._forward_at, self._seen, self._correct)),
            (self._backward_at, (self._backward_at,)),
        ):
            keep = len(at)
            while keep and at[keep - 1] >= records:
                keep -= 1
            if keep < len(at):
                for column in columns:
                    del column[keep:]
                self._losses = None

    def losses(self) -> tuple[tuple[int, float], ...]:
        """``(iteration, loss)`` for every iteration whose loss ran, oldest first; a later loss
        of the same iteration (rerun after a rewind) wins. Made once per change: the app
        asks on every key."""
        if self._losses is None:
            by_iteration = dict(zip(self._loss_iteration, self._loss))
            self._losses = tuple(sorted(by_iteration.items()))
        return self._losses

    @property
    def forwards(self) -> int:
        """How many forwards reported digits labels."""
        return len(self._forward_at)

    def hits(self, last: int | None = None) -> tuple[int, int]:
        """``(images, correct)`` over every forward, or over the ``last`` ones."""
        n = len(self._seen)
        if n == 0:
            return 0, 0
        k = n if last is None else min(last, n)
        start = n - k - 1
        seen0 = self._seen[start] if start >= 0 else 0
        correct0 = self._correct[start] if start >= 0 else 0
        return self._seen[-1] - seen0, self._correct[-1] - correct0
