"""The captured grad_fn graph has torch's own structure, names and paths."""

from __future__ import annotations

import torch
import torch.nn as nn

from engine import Phase, Session, walk_grad_fn
from engine.jsonl import record_to_json


def _loss_record():
    s = Session()
    for _ in range(3):
        rec = s.run_next()
    assert rec.phase is Phase.LOSS
    return s, rec


def test_tutorial_graph_top_matches_torch() -> None:
    s, rec = _loss_record()
    g = rec.graph
    root = g.root
    assert root.name == "MseLossBackward0"
    assert root.children[1] is None  # the target's slot
    addmm = g.nodes[root.children[0]]
    assert addmm.name == "AddmmBackward0"
    kids = [g.nodes[c] for c in addmm.children]
    assert [k.name for k in kids] == ["AccumulateGrad", "ReluBackward0", "TBackward0"]
    assert kids[0].param == "fc3.bias"
    t = kids[2]
    assert g.nodes[t.children[0]].label == "AccumulateGrad (fc3.weight)"
    # Same walk done directly on torch's objects.
    fn = s.loss.grad_fn
    assert type(fn).__name__ == root.name
    assert type(fn.next_functions[0][0].next_functions[2][0]).__name__ == t.name
    assert g.path(t.id) == "loss.grad_fn.next_functions[0][0].next_functions[2][0]"


def test_ten_accumulate_grad_leaves_one_per_parameter() -> None:
    s, rec = _loss_record()
    leaves = rec.graph.accumulate_nodes()
    assert len(leaves) == 10
    assert sorted(n.param for n in leaves) == sorted(n for n, _ in s.setup.net.named_parameters())
    for leaf in leaves:
        # Following the recorded path on the live graph reaches that parameter's AccumulateGrad.
        fn = s.loss.grad_fn
        for slot in rec.graph.slots(leaf.id):
            fn = fn.next_functions[slot][0]
        assert fn.variable is s.param(leaf.param)


def test_every_node_matches_the_live_graph() -> None:
    s, rec = _loss_record()
    g = rec.graph
    for node in g.nodes:
        fn = s.loss.grad_fn
        for slot in g.slots(node.id):
            fn = fn.next_functions[slot][0]
        assert type(fn).__name__ == node.name
        assert len(fn.next_functions) == len(node.children)
        for (nxt, _), child in zip(fn.next_functions, node.children):
            assert (nxt is None) == (child is None)
        names = {v.name for v in node.saved}
        for attr in names:
            assert hasattr(fn, attr)


def test_saved_tensors_have_shapes() -> None:
    _, rec = _loss_record()
    relu = next(n for n in rec.graph.nodes if n.name == "ReluBackward0")
    saved = {v.name: v for v in relu.saved}
    assert saved["_saved_result"].shape == (1, 84)


def test_json_tree_keeps_none_slots() -> None:
    _, rec = _loss_record()
    tree = record_to_json(rec)["grad_fn"]
    assert tree["name"] == "MseLossBackward0" and tree["param"] is None
    assert tree["children"][1] is None
    assert tree["children"][0]["name"] == "AddmmBackward0"
    assert tree["children"][0]["children"][0] == {
        "name": "AccumulateGrad",
        "param": "fc3.bias",
        "id": tree["children"][0]["children"][0]["id"],
        "children": [],
    }


def test_shared_nodes_are_one_node() -> None:
    w = nn.Parameter(torch.randn(3))
    x = w * 2
    y = (x + x.exp()).sum()  # x feeds two branches: a diamond
    g = walk_grad_fn(y.grad_fn, {id(w): "w"})
    names = [n.name for n in g.nodes]
    assert names.count("MulBackward0") == 1
    assert names.count("AccumulateGrad") == 1
    tree = g.to_tree()
    text = str(tree)
    assert "'ref'" in text  # the second visit is a reference, not a copy


def test_residual_graph_does_not_blow_up() -> None:
    x = nn.Parameter(torch.randn(4))
    h = x
    for _ in range(60):  # 2**60 paths, 60 diamonds
        h = h + h.sin()
    g = walk_grad_fn(h.sum().grad_fn)
    assert len(g) < 400
    tree = g.to_tree()
    assert tree["name"] == "SumBackward0"


def test_ten_thousand_nodes_walk() -> None:
    m = nn.Sequential(*[nn.Linear(4, 4) for _ in range(2500)])
    y = m(torch.randn(1, 4)).sum()
    g = walk_grad_fn(y.grad_fn)  # its speed is tools/bench.py's business, not a test's
    assert len(g) >= 10_000
    assert len(g.accumulate_nodes()) == 5000
    deepest = g.nodes[-1]
    assert len(g.slots(deepest.id)) > 2500  # paths are parent links, walked on demand
