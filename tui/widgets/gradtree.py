"""GradFnPane: the autograd graph behind ``loss`` as a lazily built ``Tree``.

The tree follows ``loss.grad_fn.next_functions`` the way a learner would in a REPL. Nodes are
created only when their parent is expanded, so a graph of tens of thousands of nodes costs
nothing until someone opens it. The graph is a DAG: a node is expanded once, under the parent
that first reached it breadth first (the one :meth:`GradGraph.path` names); every other
occurrence is a leaf that refers to it.

Textual's ``Tree`` lays itself out recursively and keeps each line's full path, so a chain
thousands of levels deep (a long ``nn.Sequential``) cannot be opened in one tree. Below
``MAX_DEPTH`` levels a "continue" leaf re-roots the tree at that node instead; a leaf at the
top of a re-rooted tree leads back to ``loss.grad_fn``.

A graph of more than ``GROUP_ABOVE`` nodes is shown collapsed by module: where a node's
module (``GradNode.module``, the innermost module whose forward made it) leaves the module of
the node above, a collapsed group line ``layer1.0 (BasicBlock) · 23 nodes`` stands in for it;
opening the group shows the node and the levels below it up to the next group. The group is
the outermost module entered at that edge (from the top of a ``Sequential`` of blocks, each
block is a group). Smaller graphs are shown node by node, exactly as before.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Static, Tree
from textual.widgets.tree import TreeNode

from engine.graph import GradGraph, GradNode

# What each ``next_functions`` slot of some common nodes stands for, so a ``None`` slot can
# say what needed no gradient (the argument order of the forward op in ATen).
SLOT_NAMES: dict[str, tuple[str, ...]] = {
    "MseLossBackward0": ("input", "target"),
    "SmoothL1LossBackward0": ("input", "target"),
    "HuberLossBackward0": ("input", "target"),
    "BinaryCrossEntropyBackward0": ("input", "target", "weight"),
    "BinaryCrossEntropyWithLogitsBackward0": ("input", "target", "weight", "pos_weight"),
    "ConvolutionBackward0": ("input", "weight", "bias"),
    "AddmmBackward0": ("bias", "input", "weight"),
    "MmBackward0": ("input", "mat2"),
    "NativeBatchNormBackward0": ("input", "weight", "bias"),
}
NONE_FALLBACK = "target / input"
MAX_DEPTH = 64  # graph levels below the shown root; far inside Python's recursion limit
GROUP_ABOVE = 300  # nodes: a bigger graph is shown collapsed by module


class GradTree(Tree["Entry"]):
    """Textual's Tree, not redrawn on a Resize to the size it already has.

    Tree forgets every drawn line and lays the screen out again on each Resize. A pane shown
    again (loss brings the grad_fn tab forward) gets a Resize though its size did not change:
    a second layout and a second drawing of the whole tree, right after the frame that showed
    it. What a line draws depends on the size only through its width, which is in the line
    cache's key; the content's own changes invalidate the tree where they happen.
    """

    _resized_to: object = None

    def _on_resize(self, event: events.Resize) -> None:
        if event.size == self._resized_to:
            event.prevent_default()  # Tree._on_resize
            return
        self._resized_to = event.size


@dataclass(frozen=True)
class Entry:
    """What one tree line stands for."""

    node_id: int | None  # None: a ``(None, 0)`` slot of ``next_functions``
    parent: int | None  # the graph node whose slot this is (None for the root)
    slot: int
    ref: bool = False  # a later occurrence of a shared node (expanded elsewhere)
    jump: bool = False  # selecting it re-roots the tree at ``node_id`` (0: back to the top)
    group: str | None = None  # a module group line; opening it shows node ``node_id``


def slot_name(parent: GradNode, slot: int) -> str:
    names = SLOT_NAMES.get(parent.name, ())
    return names[slot] if slot < len(names) else NONE_FALLBACK


def node_label(node: GradNode) -> Text:
    if node.param is not None:
        text = Text(node.name, style="green")
        text.append(f" ({node.param})", style="bold green")
        return text
    return Text(node.name)


def none_label(parent: GradNode, slot: int) -> Text:
    return Text(f"None (no grad: {slot_name(parent, slot)})", style="dim italic")


def ref_label(graph: GradGraph, node: GradNode) -> Text:
    owner = graph.nodes[node.parent].name if node.parent is not None else "loss"
    text = Text("↪ ", style="dim")
    text.append_text(node_label(node))
    text.append(f"  [shared: expanded under {owner}]", style="dim")
    return text


def entered_module(parent: str | None, child: str | None) -> str | None:
    """The outermost module ``child`` is in and ``parent`` is not; None if none is entered.

    ``layer2.1.conv1`` → ``layer2.0.relu2`` enters ``layer2.0``; ``layer1.0.relu2`` →
    ``layer1.0`` (back out to the block's own add) enters nothing.
    """
    if child is None:
        return None
    theirs = parent.split(".") if parent else []
    mine = child.split(".")
    common = 0
    while common < min(len(theirs), len(mine)) and theirs[common] == mine[common]:
        common += 1
    return ".".join(mine[: common + 1]) if len(mine) > common else None


def group_label(graph: GradGraph, module: str, size: int) -> Text:
    text = Text(module, style="bold cyan")
    text.append(f" ({graph.module_type(module) or 'module'})", style="cyan")
    text.append(f" · {size} nodes", style="dim")
    return text


def depth_below(graph: GradGraph, node_id: int) -> int:
    """Levels of the (breadth-first) tree below a node; iterative, graphs can be deep."""
    deepest = 0
    stack = [(node_id, 0)]
    while stack:
        nid, d = stack.pop()
        deepest = max(deepest, d)
        for child in graph.nodes[nid].children:
            if child is not None and graph.nodes[child].parent == nid:
                stack.append((child, d + 1))
    return deepest


def details_text(graph: GradGraph, entry: Entry, sizes: dict[str, int] | None = None) -> Text:
    """Path from ``loss.grad_fn``, saved tensors, and the parameter of an AccumulateGrad.

    ``sizes`` (nodes per module) is given when the graph is shown by module groups; then a
    node's module is named too.
    """
    out = Text()
    if entry.group is not None:
        assert entry.node_id is not None
        size = (sizes or {}).get(entry.group, 0)
        out.append_text(group_label(graph, entry.group, size))
        out.append(
            f"\n{size} nodes of this graph were made by {entry.group}'s forward (its "
            "submodules' included). Open the group to see them; it starts at "
            f"{graph.nodes[entry.node_id].label}."
        )
        out.append(f"\npath   {graph.path(entry.node_id)}", style="dim")
        return out
    if entry.jump:
        assert entry.node_id is not None
        if entry.node_id == 0:
            out.append("Enter: show the whole graph again, from loss.grad_fn.")
        else:
            out.append(f"Enter: continue the tree from {graph.nodes[entry.node_id].label}")
            out.append(f"\npath   {graph.path(entry.node_id)}", style="dim")
        return out
    if entry.node_id is None:
        assert entry.parent is not None
        parent = graph.nodes[entry.parent]
        out.append("None", style="bold")
        out.append(f"  slot {entry.slot} of {parent.name}\n")
        out.append("path   ", style="dim")
        out.append(f"{graph.path(parent.id)}.next_functions[{entry.slot}]  == (None, 0)\n")
        out.append(
            f"The {slot_name(parent, entry.slot)} does not require grad, so autograd keeps no "
            "function for it and backward stops here."
        )
        return out
    node = graph.nodes[entry.node_id]
    out.append_text(node_label(node))
    out.append(f"  node {node.id + 1} of {len(graph)}", style="dim")
    if entry.ref:
        out.append("  (shared: reached again here)", style="dim")
    out.append("\npath   ", style="dim")
    out.append(graph.path(node.id))
    if sizes is not None and node.module is not None:
        out.append("\nmodule ", style="dim")
        out.append(f"{node.module} ({graph.module_type(node.module) or 'module'})")
    if node.param is not None:
        out.append("\nparam  ", style="dim")
        out.append(node.param, style="bold")
        out.append("  (.variable: backward adds into its .grad here)", style="dim")
    out.append("\nsaved  ", style="dim")
    if not node.saved:
        out.append("nothing", style="dim")
    for i, saved in enumerate(node.saved):
        if i:
            out.append("\n       ")
        out.append(saved.name)
        if saved.shape is not None:
            out.append(f"  [{', '.join(str(s) for s in saved.shape)}]", style="cyan")
        else:
            out.append(f" = {saved.text}")
    n_none = sum(1 for c in node.children if c is None)
    out.append("\nnext   ", style="dim")
    out.append(f"{len(node.children)} slot(s)")
    if n_none:
        out.append(f", {n_none} None")
    return out


class GradFnPane(Vertical):
    """The ``grad_fn`` tree with a details area for the highlighted node."""

    @dataclass
    class NodeSelected(Message):
        """A graph node was selected (enter or click); ``node_id`` indexes ``graph.nodes``."""

        node_id: int

    def __init__(
        self,
        *,
        expand_depth: int = 4,
        expand_budget: int = 64,
        group_above: int = GROUP_ABOVE,
        id: str | None = None,
        classes: str | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(id=id, classes=classes, name=name)
        self.expand_depth = expand_depth  # levels opened by default below the root
        self.expand_budget = expand_budget  # … but never more nodes than this
        self.group_above = group_above  # more nodes than this: collapsed by module
        self.graph: GradGraph | None = None
        self._built: set[int] = set()  # tree-node ids whose children exist
        self._opened: set[int] = set()  # group tree-node ids whose first levels were opened
        self.grouped = False  # this graph is shown by module groups
        self._sizes: dict[str, int] = {}  # nodes per module (groups' counts)

    def compose(self) -> ComposeResult:
        tree: Tree[Entry] = GradTree("grad_fn", id="gradfn-tree", classes="gradfn-tree")
        tree.show_root = True
        yield tree
        with VerticalScroll(id="gradfn-details-scroll", classes="gradfn-details-scroll"):
            yield Static("", id="gradfn-details", classes="gradfn-details", markup=False)

    @property
    def tree(self) -> Tree[Entry]:
        return self.query_one("#gradfn-tree", Tree)

    @property
    def details(self) -> Static:
        return self.query_one("#gradfn-details", Static)

    # ------------------------------------------------------------------ public
    def show_graph(self, graph: GradGraph | None) -> None:
        """Show a new graph (``None``: no loss yet); only the first levels are built."""
        self.graph = graph
        self._built.clear()
        self.grouped = (
            graph is not None
            and len(graph) > self.group_above
            and any(n.module is not None for n in graph.nodes)
        )
        self._sizes = graph.module_sizes() if graph is not None and self.grouped else {}
        tree = self.tree
        if graph is None or graph.root is None:
            message = (
                "no graph yet: run forward and loss"
                if graph is None
                else "loss has no grad_fn (nothing requires grad)"
            )
            tree.reset(Text(message, style="dim italic"))
            tree.root.allow_expand = False
            self.details.update(
                Text("The autograd graph appears after the loss phase.", style="dim")
            )
            return
        self._reroot(0)

    def expand_all(self) -> None:
        """Build and open every node under the shown root (each shared node once), down to
        ``MAX_DEPTH`` levels. Linear in the number of nodes opened."""
        tree = self.tree
        queue: deque[TreeNode[Entry]] = deque([tree.root])
        while queue:
            node = queue.popleft()
            if self._populate(node):
                node.expand()
                queue.extend(node.children)

    @property
    def shown_root(self) -> int | None:
        """The graph node at the top of the tree (0 unless re-rooted below ``MAX_DEPTH``)."""
        entry = self.tree.root.data
        return None if entry is None else entry.node_id

    def reveal(self, node_id: int) -> TreeNode[Entry] | None:
        """Open the path from the root to ``node_id``, move the cursor there, show details.

        A node deeper than ``MAX_DEPTH`` is shown in a tree re-rooted at an ancestor.
        """
        graph = self.graph
        if graph is None or not 0 <= node_id < len(graph):
            return None
        chain = [node_id]  # node, parent, …, root
        while graph.nodes[chain[-1]].parent is not None:
            chain.append(graph.nodes[chain[-1]].parent)
        chain.reverse()
        depth = len(chain) - 1
        # Any shown root at most MAX_DEPTH levels above the node will do; else jump to one.
        if self.shown_root not in chain[max(0, depth - MAX_DEPTH) :]:
            self._reroot(chain[depth // MAX_DEPTH * MAX_DEPTH])
        start = chain.index(self.shown_root)
        node = self.tree.root
        for child_id in chain[start + 1 :]:
            self._populate(node)
            node.expand()
            slot = graph.nodes[child_id].slot
            node = next(
                c
                for c in node.children
                if c.data is not None
                and c.data.slot == slot
                and c.data.node_id == child_id
                and not c.data.ref
                and not c.data.jump
            )
            if node.data is not None and node.data.group is not None:
                self._populate(node)  # a module group stands in for the node: open it
                node.expand()
                node = node.children[0]
        self._show_details(node)
        # Line numbers of freshly added nodes are known only after the tree re-lays out.
        self.tree.call_after_refresh(self.tree.move_cursor, node)
        return node

    # ------------------------------------------------------------------ building
    def _reroot(self, node_id: int) -> None:
        """Show the tree from ``node_id`` (0: from ``loss.grad_fn``) and open its first levels."""
        graph = self.graph
        assert graph is not None
        self._built.clear()
        self._opened.clear()
        tree = self.tree
        node = graph.nodes[node_id]
        label = node_label(node)
        if node_id:
            label = Text("⋯ ", style="dim") + label
        tree.reset(label, Entry(node_id, node.parent, node.slot))
        tree.root.allow_expand = bool(node.children)
        if node_id:
            tree.root.add_leaf(
                Text("↑ back to loss.grad_fn", style="dim italic"), Entry(0, None, 0, jump=True)
            )
            tree.root.expand()
        self._open_levels(tree.root)
        tree.call_after_refresh(tree.move_cursor, tree.root)
        self._show_details(tree.root)

    def _open_levels(self, root: TreeNode[Entry]) -> None:
        """Expand breadth first to ``expand_depth`` levels, within ``expand_budget`` nodes."""
        budget = self.expand_budget
        level: list[TreeNode[Entry]] = [root]
        for _ in range(self.expand_depth):
            nxt: list[TreeNode[Entry]] = []
            for node in level:
                if budget <= 0:
                    return
                if node is not root and node.data is not None and node.data.group is not None:
                    continue  # groups stay closed until opened
                if self._populate(node):
                    node.expand()
                    budget -= len(node.children)
                    nxt.extend(node.children)
            level = nxt

    def _populate(self, tree_node: TreeNode[Entry]) -> bool:
        """Add the children of ``tree_node`` once. False for leaves, refs and None slots."""
        entry = tree_node.data
        graph = self.graph
        if graph is None or entry is None or entry.node_id is None or entry.ref or entry.jump:
            return False
        if tree_node.id in self._built:
            return True
        node = graph.nodes[entry.node_id]
        if entry.group is not None:
            self._built.add(tree_node.id)
            tree_node.add(
                node_label(node),
                Entry(node.id, entry.parent, entry.slot),
                allow_expand=bool(node.children),
            )
            return True
        if not node.children:
            return False
        self._built.add(tree_node.id)
        if _depth(tree_node) >= MAX_DEPTH:
            below = depth_below(graph, node.id)
            tree_node.add_leaf(
                Text(f"⋯ {below} more level(s): enter to continue from here", style="dim italic"),
                Entry(node.id, node.parent, node.slot, jump=True),
            )
            return True
        for slot, child_id in enumerate(node.children):
            if child_id is None:
                tree_node.add_leaf(none_label(node, slot), Entry(None, node.id, slot))
                continue
            child = graph.nodes[child_id]
            # Expanded only under the parent and slot that reached it first (its path).
            owner = child.parent == node.id and child.slot == slot
            group = entered_module(node.module, child.module) if self.grouped else None
            if owner and group is not None and self._sizes.get(group, 0) > 1:
                # A one-node module (a ReLU) would only add a line: shown as its node.
                tree_node.add(
                    group_label(graph, group, self._sizes[group]),
                    Entry(child_id, node.id, slot, group=group),
                    allow_expand=True,
                )
            elif owner:
                tree_node.add(
                    node_label(child),
                    Entry(child_id, node.id, slot),
                    allow_expand=bool(child.children),
                )
            else:
                tree_node.add_leaf(ref_label(graph, child), Entry(child_id, node.id, slot, True))
        return True

    # ------------------------------------------------------------------ events
    def on_tree_node_expanded(self, event: Tree.NodeExpanded[Entry]) -> None:
        event.stop()
        entry = event.node.data
        if entry is not None and entry.group is not None and event.node.id not in self._opened:
            # Once only: expanding posts NodeExpanded again, which must not loop.
            self._opened.add(event.node.id)
            self._open_levels(event.node)
            return
        self._populate(event.node)

    def on_tree_node_highlighted(self, event: Tree.NodeHighlighted[Entry]) -> None:
        event.stop()
        self._show_details(event.node)

    def on_tree_node_selected(self, event: Tree.NodeSelected[Entry]) -> None:
        event.stop()
        entry = event.node.data
        if entry is not None and entry.jump and entry.node_id is not None:
            self._reroot(entry.node_id)
            return
        self._show_details(event.node)
        if entry is not None and entry.node_id is not None:
            self.post_message(self.NodeSelected(entry.node_id))

    def _show_details(self, tree_node: TreeNode[Entry]) -> None:
        entry = tree_node.data
        if self.graph is None or entry is None:
            return
        self.details.update(details_text(self.graph, entry, self._sizes if self.grouped else None))


def _depth(tree_node: TreeNode[Entry]) -> int:
    """Graph levels above ``tree_node``: group lines are not levels of the graph."""
    depth = 0
    while tree_node.parent is not None:
        tree_node = tree_node.parent
        if tree_node.data is None or tree_node.data.group is None:
            depth += 1
    return depth
