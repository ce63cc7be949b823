"""GradFnPane: torch's node names, parameters on AccumulateGrad, None slots, laziness, details."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
from textual.app import App, ComposeResult
from textual.widgets.tree import TreeNode

from engine import Phase, Session
from engine.graph import walk_grad_fn
from tests.oracle import TutorialNet
from tui.widgets.gradtree import MAX_DEPTH, Entry, GradFnPane

STYLES = Path(__file__).resolve().parents[1] / "tui" / "styles" / "gradtree.tcss"
SIZE = (100, 30)


class PaneApp(App):
    CSS_PATH = STYLES

    def __init__(self) -> None:
        super().__init__()
        self.selected: list[int] = []

    def compose(self) -> ComposeResult:
        yield GradFnPane()

    def on_grad_fn_pane_node_selected(self, message: GradFnPane.NodeSelected) -> None:
        self.selected.append(message.node_id)


def loss_graph():
    session = Session()
    for _ in range(3):
        session.run_next()
    record = session.records[-1]
    assert record.phase is Phase.LOSS and record.graph is not None
    return session, record.graph


def plain_torch_loss() -> tuple[nn.Module, torch.Tensor]:
    """The tutorial in plain PyTorch, in DESIGN.md's seeded construction order."""

    torch.manual_seed(0)
    net = TutorialNet()
    input = torch.randn(1, 1, 32, 32)
    target = torch.randn(10).view(1, -1)
    return net, nn.MSELoss()(net(input), target)


def plain_torch_param_names() -> list[str]:
    """Walk loss.grad_fn in plain PyTorch: which parameters feed the loss."""
    net, loss = plain_torch_loss()
    by_id = {id(p): n for n, p in net.named_parameters()}
    found, stack, seen = [], [loss.grad_fn], set()
    while stack:
        fn = stack.pop()
        if fn is None or id(fn) in seen:
            continue
        seen.add(id(fn))
        if type(fn).__name__ == "AccumulateGrad":
            found.append(by_id[id(fn.variable)])
        stack.extend(f for f, _ in fn.next_functions)
    return sorted(found)


def all_nodes(node: TreeNode[Entry]) -> list[TreeNode[Entry]]:
    out = [node]
    for child in node.children:
        out.extend(all_nodes(child))
    return out


def labels(node: TreeNode[Entry]) -> list[str]:
    return [str(n.label) for n in all_nodes(node)]


async def test_root_and_none_slot() -> None:
    _, graph = loss_graph()
    async with PaneApp().run_test(size=SIZE) as pilot:
        pane = pilot.app.query_one(GradFnPane)
        pane.show_graph(graph)
        await pilot.pause()
        root = pane.tree.root
        assert str(root.label) == "MseLossBackward0"
        assert [str(c.label) for c in root.children] == [
            "AddmmBackward0",
            "None (no grad: target)",
        ]
        assert root.children[1].data == Entry(None, 0, 1)
        # The first levels are open by default.
        assert root.is_expanded and root.children[0].is_expanded


async def test_accumulate_grad_leaves_name_every_parameter() -> None:
    session, graph = loss_graph()
    async with PaneApp().run_test(size=SIZE) as pilot:
        pane = pilot.app.query_one(GradFnPane)
        pane.show_graph(graph)
        await pilot.pause()
        pane.expand_all()
        await pilot.pause()
        leaves = [text for text in labels(pane.tree.root) if text.startswith("AccumulateGrad")]
        assert len(leaves) == 10
        names = sorted(text.removeprefix("AccumulateGrad (").removesuffix(")") for text in leaves)
        assert names == sorted(session.names) == plain_torch_param_names()
        # conv1's input needs no grad: ConvolutionBackward0 shows its None input slot too.
        assert "None (no grad: input)" in labels(pane.tree.root)
        # Every graph node appears exactly once as a tree node (this graph is a tree).
        ids = [n.data.node_id for n in all_nodes(pane.tree.root) if n.data.node_id is not None]
        assert sorted(ids) == list(range(len(graph)))


async def test_children_are_built_only_on_expand() -> None:
    _, graph = loss_graph()
    async with PaneApp().run_test(size=SIZE) as pilot:
        pane = pilot.app.query_one(GradFnPane)
        pane.show_graph(graph)
        await pilot.pause()
        built = all_nodes(pane.tree.root)
        assert len(built) < len(graph)
        closed = [n for n in built if n.allow_expand and not n.is_expanded]
        assert closed, "the default view leaves deeper nodes closed"
        for node in closed:
            assert len(node.children) == 0  # nothing built below a closed node
        target = closed[0]
        node_id = target.data.node_id
        pane.tree.move_cursor(target)
        await pilot.press("space")  # Tree's toggle key
        await pilot.pause()
        assert target.is_expanded
        assert len(target.children) == len(graph.nodes[node_id].children)
        # Only that one level was added.
        assert all(len(c.children) == 0 for c in target.children)


async def test_selection_shows_path_saved_tensors_and_posts_message() -> None:
    _, graph = loss_graph()
    conv1 = next(
        n for n in graph.nodes if n.name == "ConvolutionBackward0" and n.children[0] is None
    )
    bias = next(n for n in graph.nodes if n.param == "conv1.bias")
    async with PaneApp().run_test(size=SIZE) as pilot:
        pane = pilot.app.query_one(GradFnPane)
        pane.show_graph(graph)
        await pilot.pause()
        node = pane.reveal(conv1.id)
        assert node is not None and node.data.node_id == conv1.id
        await pilot.pause()
        text = str(pane.details.render())
        assert graph.path(conv1.id) in text
        assert "_saved_weight  [6, 1, 5, 5]" in text
        assert "_saved_input  [1, 1, 32, 32]" in text
        # Select the conv1.bias leaf with the keyboard: the app hears about it.
        leaf = pane.reveal(bias.id)
        pane.tree.focus()
        await pilot.pause()  # the cursor moves once the tree has laid out the new lines
        assert pane.tree.cursor_node is leaf
        await pilot.press("enter")
        await pilot.pause()
        assert pilot.app.selected == [bias.id]
        text = str(pane.details.render())
        assert "param  conv1.bias" in text
        # The path really leads there: follow it on a plain PyTorch loss.
        net, loss = plain_torch_loss()
        fn = eval(graph.path(bias.id), {"loss": loss})
        assert type(fn).__name__ == "AccumulateGrad" and fn.variable is net.conv1.bias


async def test_shared_node_is_expanded_once_and_referenced_after() -> None:
    w = nn.Parameter(torch.tensor([0.5, -1.0]))
    a = w.exp()
    loss = (a + a.sin()).sum()  # ExpBackward0 feeds both AddBackward0 slots' branches
    graph = walk_grad_fn(loss.grad_fn, {id(w): "w"})
    exp = next(n for n in graph.nodes if n.name == "ExpBackward0")
    async with PaneApp().run_test(size=SIZE) as pilot:
        pane = pilot.app.query_one(GradFnPane)
        pane.show_graph(graph)
        await pilot.pause()
        pane.expand_all()
        await pilot.pause()
        nodes = [n for n in all_nodes(pane.tree.root) if n.data.node_id == exp.id]
        assert len(nodes) == 2
        owner = [n for n in nodes if not n.data.ref]
        refs = [n for n in nodes if n.data.ref]
        assert len(owner) == 1 and len(refs) == 1
        assert [str(c.label) for c in owner[0].children] == ["AccumulateGrad (w)"]
        assert len(refs[0].children) == 0 and not refs[0].allow_expand
        assert str(refs[0].label).startswith("↪ ExpBackward0")
        assert labels(pane.tree.root).count("AccumulateGrad (w)") == 1


async def test_no_graph_yet() -> None:
    async with PaneApp().run_test(size=SIZE) as pilot:
        pane = pilot.app.query_one(GradFnPane)
        pane.show_graph(None)
        await pilot.pause()
        assert "no graph yet" in str(pane.tree.root.label)
        assert len(pane.tree.root.children) == 0
        assert pane.reveal(0) is None


async def test_deep_chain_continues_in_a_rerooted_tree() -> None:
    # 150 sin() calls: a chain far deeper than MAX_DEPTH (Textual's Tree lays out recursively).
    w = nn.Parameter(torch.tensor([0.3]))
    x = w
    for _ in range(150):
        x = x.sin()
    graph = walk_grad_fn(x.sum().grad_fn, {id(w): "w"})
    leaf = next(n for n in graph.nodes if n.param == "w")
    assert len(graph.slots(leaf.id)) > MAX_DEPTH
    async with PaneApp().run_test(size=SIZE) as pilot:
        pane = pilot.app.query_one(GradFnPane)
        pane.show_graph(graph)
        await pilot.pause()
        pane.expand_all()
        await pilot.pause()
        built = all_nodes(pane.tree.root)
        jumps = [n for n in built if n.data.jump]
        assert len(jumps) == 1
        assert "more level(s)" in str(jumps[0].label)
        assert all(n.data.node_id != leaf.id for n in built)
        # Revealing the parameter's leaf re-roots the tree at an ancestor and gets there.
        node = pane.reveal(leaf.id)
        await pilot.pause()
        assert node is not None and node.data.node_id == leaf.id
        assert pane.shown_root != 0
        assert str(node.label) == "AccumulateGrad (w)"
        assert graph.path(leaf.id) in str(pane.details.render())
        # The first child of a re-rooted tree leads back to loss.grad_fn.
        back = pane.tree.root.children[0]
        assert back.data.jump and back.data.node_id == 0
        pane.tree.select_node(back)
        await pilot.pause()
        assert pane.shown_root == 0
        assert str(pane.tree.root.label) == "SumBackward0"
