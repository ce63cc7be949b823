"""Timing of the heavy cases of the tensor, grad_fn and accumulation widgets (not a test).

    .venv/bin/python benchmarks/bench_widgets.py

Budgets (issue 3): a 10,000-node grad_fn graph builds and first-renders in ≤100 ms and a node
expands in ≤100 ms; a 120×400 heatmap renders in well under 50 ms.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from textual.app import App, ComposeResult
from textual.containers import Horizontal

from engine.graph import walk_grad_fn
from tui.widgets.gradtree import GradFnPane
from tui.widgets.heatmap import TensorView

STYLES = Path(__file__).resolve().parents[1] / "tui" / "styles"


class Bench(App):
    CSS_PATH = [STYLES / "gradtree.tcss", STYLES / "heatmap.tcss"]

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield GradFnPane()
            yield TensorView()


def big_graph():
    # 2,500 Linear layers: AddmmBackward0 + TBackward0 + 2 AccumulateGrad each = 10,000 nodes.
    torch.manual_seed(0)
    net = nn.Sequential(*[nn.Linear(8, 8) for _ in range(2500)])
    loss = net(torch.randn(1, 8)).sum()
    names = {id(p): n for n, p in net.named_parameters()}
    t = time.perf_counter()
    graph = walk_grad_fn(loss.grad_fn, names)
    return graph, time.perf_counter() - t


def render_visible(widget) -> None:
    for y in range(widget.size.height):
        widget.render_line(y)


async def main() -> None:
    graph, walk = big_graph()
    print(f"walk_grad_fn (engine, for reference): {len(graph)} nodes in {walk * 1e3:.1f} ms")
    async with Bench().run_test(size=(140, 40)) as pilot:
        pane = pilot.app.query_one(GradFnPane)
        view = pilot.app.query_one(TensorView)
        for run in range(3):
            t = time.perf_counter()
            pane.show_graph(graph)
            render_visible(pane.tree)  # builds the tree lines and renders the screenful
            build = time.perf_counter() - t
            await pilot.pause()
            closed = next(
                n
                for n in pane.tree._tree_lines_cached or ()
                if n.node.allow_expand and not n.node.is_expanded
            ).node
            t = time.perf_counter()
            closed.expand()
            pane._populate(closed)  # what the NodeExpanded handler does
            render_visible(pane.tree)
            expand = time.perf_counter() - t
            await pilot.pause()
            print(
                f"run {run}: 10k-node graph show_graph + first render {build * 1e3:.1f} ms; "
                f"expand one node {expand * 1e3:.2f} ms"
            )
        t = time.perf_counter()
        pane.expand_all()
        render_visible(pane.tree)
        print(
            f"expand_all (to MAX_DEPTH levels, {len(pane.tree._tree_lines)} lines): "
            f"{(time.perf_counter() - t) * 1e3:.1f} ms"
        )
        deepest = graph.accumulate_nodes()[-1]
        t = time.perf_counter()
        pane.reveal(deepest.id)  # 2,500 levels down: re-roots, then opens ≤ MAX_DEPTH levels
        render_visible(pane.tree)
        print(
            f"reveal the deepest node ({deepest.label}): {(time.perf_counter() - t) * 1e3:.1f} ms"
        )
        await pilot.pause()

        values = np.random.default_rng(0).standard_normal((120, 400))
        for run in range(3):
            t = time.perf_counter()
            view.show("fc1.weight", values, "tensor[120, 400]")
            render_visible(view.canvas)
            print(
                f"run {run}: 120×400 heatmap show + render {(time.perf_counter() - t) * 1e3:.2f} ms"
            )
            await pilot.pause()


if __name__ == "__main__":
    asyncio.run(main())
