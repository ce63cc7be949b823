"""The shortcuts of ``walk_grad_fn`` (saved values reused across walks, nodes built from
columns) give what reading every value afresh gives."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from engine.graph import walk_grad_fn
from engine.modulemap import ModuleCall, assign_modules


class FakeBackward0:
    """A node with one saved value, standing for autograd's C++ nodes."""

    next_functions: tuple[Any, ...] = ()

    def __init__(self, value: Any) -> None:
        self._saved_value = value


@pytest.mark.parametrize(
    "values",
    [
        [1, True, 1.0, 1, True],
        [(1,), (True,), (1.0,), (1,)],
        [0.0, -0.0, 0.0, float("nan"), float("nan")],
        ["a", "a", None, None, ()],
        [torch.zeros(2, 3), torch.zeros(3, 2), torch.zeros(2, 3)],
        [[1, 2], [1, 2]],  # unhashable: read afresh every time
    ],
)
def test_equal_values_of_another_type_keep_their_own_text(values: list[Any]) -> None:
    for value in values:
        (saved,) = walk_grad_fn(FakeBackward0(value)).nodes[0].saved
        want = f"tensor{list(value.shape)}" if isinstance(value, torch.Tensor) else repr(value)
        assert (saved.name, saved.text) == ("_saved_value", want)


def test_a_long_text_is_cut_whether_or_not_it_was_seen_before() -> None:
    for _ in range(2):
        (saved,) = walk_grad_fn(FakeBackward0("x" * 100)).nodes[0].saved
        assert saved.value == repr("x" * 100)[:57] + "..."


def test_a_walk_after_backward_says_the_values_were_freed() -> None:
    w = torch.randn(3, requires_grad=True)
    y = (w * w).sum()
    before = walk_grad_fn(y.grad_fn, {id(w): "w"})
    y.backward()
    after = walk_grad_fn(y.grad_fn, {id(w): "w"})
    assert [n.name for n in after.nodes] == [n.name for n in before.nodes]
    mul = after.nodes[1]
    assert mul.name == "MulBackward0" and all(s.text.startswith("<freed") for s in mul.saved)
    assert [s.text for s in before.nodes[1].saved] == ["tensor[3]", "tensor[3]"]


def test_assign_modules_skips_empty_slots_inputs_and_foreign_nodes() -> None:
    # 0 -> 1 -> 2 (leaf); 1 also has an empty slot; the call's input is node 2's grad_fn.
    a, b, c, foreign = object(), object(), object(), object()
    index = {id(a): 0, id(b): 1, id(c): 2}
    children = [(1,), (None, 2), ()]
    call = ModuleCall("m", "M", (c, foreign), (b, foreign))
    assert assign_modules([call], index, children, [False, False, False]) == [None, "m", None]
    inner = ModuleCall("m.inner", "N", (), (b, b))
    got = assign_modules([inner, call], index, children, [False, False, True])
    assert got == [None, "m.inner", "m.inner"]


def test_custom_function_setting_a_saved_attribute_on_some_calls_only() -> None:
    # The ``_saved_*`` names are listed once per node type: a ctx that sets one only when its
    # input is positive must not break the walk of a graph where another call did not.
    import torch

    from engine.graph import walk_grad_fn

    class Scale(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, k):  # type: ignore[no-untyped-def]
            if k > 0:
                ctx._saved_k = k
            return x * abs(k)

        @staticmethod
        def backward(ctx, grad):  # type: ignore[no-untyped-def]
            return grad * abs(getattr(ctx, "_saved_k", -1)), None

    x = torch.randn(3, requires_grad=True)
    first = Scale.apply(x, 2.0).sum()
    assert [s.name for s in walk_grad_fn(first.grad_fn).nodes[1].saved] == ["_saved_k"]
    second = Scale.apply(x, -2.0).sum()
    nodes = walk_grad_fn(second.grad_fn).nodes
    assert nodes[1].name == "ScaleBackward" and nodes[1].saved == ()
