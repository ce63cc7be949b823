"""GradFnPane collapsed by module for big graphs; small graphs exactly as before."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
from textual.widgets.tree import TreeNode

from engine.graph import GradGraph, walk_grad_fn
from engine.models import BasicBlock
from engine.modulemap import record_calls
from tests.test_modulemap import _fn_at, _oracle_forward
from tests.test_widget_gradtree import SIZE, PaneApp, all_nodes, loss_graph
from tui.widgets.gradtree import GROUP_ABOVE, Entry, GradFnPane, entered_module

BLOCKS = 24


class DeepResNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.layer1 = nn.Sequential(*[BasicBlock(8, 8) for _ in range(BLOCKS)])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.layer1(self.stem(x))), 1))


def deep_graph() -> tuple[GradGraph, dict[str, int]]:
    """The engine's graph of DeepResNet, and nodes per module by the test's own oracle."""
    torch.manual_seed(0)
    net = DeepResNet()
    calls: list[Any] = []
    with record_calls(net, calls):
        output, tagger = _oracle_forward(net, torch.randn(2, 3, 8, 8))
    loss = nn.MSELoss()(output, torch.randn(2, 10))
    names = {id(p): n for n, p in net.named_parameters()}
    graph = walk_grad_fn(loss.grad_fn, names, calls=calls)
    counts: dict[str, int] = {}
    for node in graph.nodes:
        owner = tagger.owner.get(id(_fn_at(graph, loss.grad_fn, node.id)))
        while owner:  # a node counts for its module and every module around it
            counts[owner] = counts.get(owner, 0) + 1
            owner = owner.rpartition(".")[0]
    return graph, counts


def text(node: TreeNode[Entry]) -> str:
    return str(node.label)


def test_entered_module() -> None:
    assert entered_module(None, "layer1.0.relu2") == "layer1"
    assert entered_module("layer1.1.conv1", "layer1.0.relu2") == "layer1.0"
    assert entered_module("layer1.0.relu2", "layer1.0") is None  # back out to the block
    assert entered_module("layer1.0", "layer1.0.bn2") == "layer1.0.bn2"
    assert entered_module("fc", None) is None


async def test_tutorial_net_tree_is_unchanged_by_modules() -> None:
    _, graph = loss_graph()
    assert len(graph) < GROUP_ABOVE and any(n.module for n in graph.nodes)
    bare = GradGraph(tuple(n._replace(module=None) for n in graph.nodes))
    shown: list[list[str]] = []
    details: list[str] = []
    for g in (graph, bare):
        app = PaneApp()
        async with app.run_test(size=SIZE) as pilot:
            pane = app.query_one(GradFnPane)
            pane.show_graph(g)
            pane.expand_all()
            await pilot.pause()
            assert not pane.grouped
            nodes = all_nodes(pane.tree.root)
            shown.append([text(n) for n in nodes])
            assert all(n.data is None or n.data.group is None for n in nodes)
            acc = next(n for n in nodes if "fc3.bias" in text(n))
            pane.tree.move_cursor(acc)
            await pilot.pause()
            details.append(str(pane.details.render()))
    assert shown[0] == shown[1]
    assert details[0] == details[1] and "module" not in details[0]


async def test_deep_resnet_is_collapsed_by_module() -> None:
    graph, counts = deep_graph()
    assert len(graph) > GROUP_ABOVE
    app = PaneApp()
    async with app.run_test(size=SIZE) as pilot:
        pane = app.query_one(GradFnPane)
        pane.show_graph(graph)
        await pilot.pause()
        assert pane.grouped
        root = pane.tree.root
        assert text(root) == "MseLossBackward0"
        fc = root.children[0]
        assert text(fc) == f"fc (Linear) · {counts['fc']} nodes" == "fc (Linear) · 4 nodes"
        assert not fc.is_expanded and not fc.children  # built only when opened
        fc.expand()
        await pilot.pause()
        # Opened: the Addmm node and its levels, down to the next groups.
        assert [text(c) for c in fc.children] == ["AddmmBackward0"]
        labels = [text(n) for n in all_nodes(fc)]
        layer1 = f"layer1 (Sequential) · {counts['layer1']} nodes"
        assert layer1 in labels and counts["layer1"] == BLOCKS * 13
        group = next(n for n in all_nodes(fc) if text(n) == layer1)
        assert not group.is_expanded and not group.children
        pane.tree.move_cursor(group)
        await pilot.pause()
        assert f"{counts['layer1']} nodes of this graph were made by layer1" in str(
            pane.details.render()
        )
        group.expand()
        await pilot.pause()
        inside = [text(n) for n in all_nodes(group)]
        last = BLOCKS - 1
        # The last block's output relu is one node (no group), then the block's own add,
        # and the block before it is a group of its own.
        assert inside[1:3] == ["ReluBackward0", "AddBackward0"]
        assert f"layer1.{last - 1} (BasicBlock) · {counts[f'layer1.{last - 1}']} nodes" in inside
        assert f"layer1.{last}.bn2 (BatchNorm2d) · 3 nodes" in inside
        # Deep inside (beyond MAX_DEPTH graph levels): reveal opens groups on the way.
        target = next(n.id for n in graph.nodes if n.param == "layer1.0.conv1.weight")
        shown = pane.reveal(target)
        await pilot.pause()
        assert shown is not None and shown.data is not None and shown.data.node_id == target
        assert "layer1.0.conv1 (Conv2d)" in str(pane.details.render())
