"""Records are lazy (engine.lazy): read late they still hold plain PyTorch's numbers, read too
late (after the history dropped their tensors) they say so, and the current one is always whole."""

from __future__ import annotations

import pytest
import torch

from engine import Phase, PhaseRecord, Recipe, Session
from engine.jsonl import record_to_json
from engine.records import NOT_KEPT_TEXT
from tests.oracle import tutorial_loop


@pytest.mark.parametrize("accumulate", [False, True])
def test_records_read_late_match_plain_pytorch(accumulate: bool) -> None:
    # Every phase first, every number afterwards: the tensors the records read must not have
    # moved in between (the parameters were stepped three times since the first records).
    session = Session(Recipe(seed=3, lr=0.1), accumulate=accumulate)
    expected = [(loss, snap) for _, _, loss, snap, _ in tutorial_loop(3, 0.1, 3, accumulate)]
    records = [session.run_next() for _ in expected]
    for record, (loss, snap) in zip(records, expected):
        assert isinstance(record, PhaseRecord)
        data = record_to_json(record)
        assert data["loss"] == loss
        assert data["params"] == snap


def test_a_phase_computes_no_statistics() -> None:
    session = Session(Recipe(seed=0))
    records = [session.run_next() for _ in range(6)]
    backward = records[4]
    assert backward.phase is Phase.BACKWARD
    grads = [p.grad for p in backward.params]
    # Not computed yet: each still reads its tensor.
    assert all(g is not None and g.source is not None for g in grads)
    grad = session.param("fc3.weight").grad
    assert grads[-2].norm == grad.norm().item()  # computed on first read, the torch value
    assert grads[-2].source is None or grads[-2].source is grad


def test_tiny_history_keeps_the_current_record_whole() -> None:
    # Budget of one byte: only the current checkpoint is ever kept, so each record's earlier
    # checkpoint is dropped by the very push that ends its phase.
    session = Session(Recipe(seed=5, lr=0.05), history_bytes=1)
    for it, phase, loss, snap, net in tutorial_loop(5, 0.05, 2):
        record = session.run_next()
        assert isinstance(record, PhaseRecord)
        assert (record.iteration, record.phase.value) == (it, phase)
        assert record_to_json(record)["params"] == snap
        assert record.loss == loss
        assert record.printed != NOT_KEPT_TEXT
        # Every statistic it shows, those read from the checkpoint before it included (step's
        # parameters before), was computed before that checkpoint went.
        assert all(s.available for s in record.summaries()), phase
        if phase == "step":
            assert f"# after step\n{net.conv1.bias!r}" in record.printed
            assert all(c.matches_sgd for c in record.step_changes)
            delta = record.step_changes[1].delta
            assert delta.available and delta.norm > 0
    assert len(session.history) == 1


def test_values_read_too_late_say_they_were_not_kept() -> None:
    # About two iterations of the tutorial Net: the first one's checkpoints go within three.
    session = Session(Recipe(seed=1), history_bytes=600_000)
    first = [session.run_next() for _ in range(6)]  # define .. step, nothing read
    for _ in range(3):
        session.run_iteration()
    assert session.history.dropped > 6
    backward = first[4]
    grad = backward.param("conv1.bias").grad
    assert grad is not None and not grad.available
    assert "not kept" in grad.line()
    assert backward.printed == NOT_KEPT_TEXT
    # What was read in time stays: the newest records are whole.
    assert session.last_record is not None and session.last_record.resolve()
    latest = session.last_record.param("conv1.bias")
    assert latest is not None and latest.data.available
    # Nothing waits on a tensor the history let go of (it may be written in place now).
    assert all(session.history.holds_id(k) for k in session.releases.waiting_on())


def test_reading_from_another_thread_while_phases_run() -> None:
    # The app reads summaries on the UI thread while the worker runs the next phase.
    import threading

    session = Session(Recipe(seed=2), history_bytes=200_000)
    session.run_next()
    seen: list[float] = []
    errors: list[BaseException] = []

    def read(records: list[PhaseRecord]) -> None:
        try:
            for r in records:
                for p in r.params:
                    seen.append(p.data.norm)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    for _ in range(5):
        records = list(session.records)
        t = threading.Thread(target=read, args=(records,))
        t.start()
        session.run_iteration()
        t.join()
    assert not errors and seen
    assert all(torch.isfinite(torch.tensor(x)) or x != x for x in seen)


@pytest.mark.parametrize("where", ["user file", "shipped"])
def test_activations_are_what_each_module_returned_despite_inplace_ops(
    where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A user's model has every output copied. A shipped one's outputs are kept uncopied once a
    # first forward (copying all) showed which ones an in-place op writes to later in the
    # forward; those are copied from then on. The values must be plain PyTorch's either way.
    from pathlib import Path

    from engine.bitwise import bit_equal
    from engine.recipe import MODELS
    from tests.user_models import InPlaceNet

    if where == "shipped":
        monkeypatch.setitem(MODELS, "inplace-net", (InPlaceNet, (4, 6), 3))
        model = "inplace-net"
    else:
        model = f"{Path(__file__).parent / 'user_models.py'}:InPlaceNet"
    s = Session(Recipe(model=model, input_shape=(4, 6), lr=0.1))
    s.run_next()  # define
    plain = InPlaceNet()
    plain.load_state_dict(s.setup.net.state_dict())
    optimizer = torch.optim.SGD(plain.parameters(), lr=0.1)
    returned: dict[str, torch.Tensor] = {}
    for name, module in plain.named_modules():
        module.register_forward_hook(
            lambda m, a, out, name=name: returned.__setitem__(name or "output", out.clone())
        )
    for iteration in (1, 2, 3):
        input, target = s.setup.data.batch(iteration)
        rng = torch.get_rng_state()
        record = s.run_next()  # forward
        assert isinstance(record, PhaseRecord) and record.phase is Phase.FORWARD
        torch.set_rng_state(rng)
        output = plain(input)
        assert set(returned) == {a.name for a in record.activations}
        for act in record.activations:
            assert bit_equal(s.tensor(act.name, "activation"), returned[act.name]), act.name
            assert act.summary.norm == returned[act.name].norm().item()
        assert bit_equal(s.output.detach(), output.detach())
        # BatchNorm's statistics moved once, not once per run of the forward.
        assert bit_equal(s.setup.net.bn.running_mean, plain.bn.running_mean)
        assert int(s.setup.net.bn.num_batches_tracked) == iteration
        for _ in range(4):  # loss, zero_grad, backward, step
            assert isinstance(s.run_next(), PhaseRecord)
        if where == "shipped":
            assert s._copy_only() == {"bn"}  # learned: `out += skip` writes to bn's output
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(output, target).backward()
        optimizer.step()
        for (name, p), q in zip(s.setup.net.named_parameters(), plain.parameters()):
            assert bit_equal(p, q), name


def test_nonfinite_checks_agree_with_isfinite() -> None:
    from engine.summary import all_finite, first_nonfinite

    big = torch.full((4,), 3e38)  # finite, but its sum and norm overflow to inf
    cases = {
        "big": big,
        "ok": torch.randn(5),
        "half": torch.randn(3, dtype=torch.float16),
        "nan": torch.tensor([1.0, float("nan")]),
        "inf": torch.tensor([float("-inf"), 2.0]),
        "empty": torch.zeros(0),
    }
    for name, t in cases.items():
        assert all_finite(t) == bool(torch.isfinite(t).all()), name
    assert first_nonfinite([(n, cases[n]) for n in ("big", "ok", "half", "empty")]) is None
    assert first_nonfinite([(n, cases[n]) for n in ("big", "inf", "nan")]) == "inf"
    assert first_nonfinite([(n, cases[n]) for n in ("half", "nan", "ok")]) == "nan"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sgd_facts_equal_the_elementwise_comparison(seed: int) -> None:
    # The comparison looks only where the two rules differ; the oracle compares everything.
    from engine.checks import sgd_facts

    g = torch.Generator().manual_seed(seed)
    before = [torch.randn(300, 7, generator=g), torch.randn(5, generator=g) * 1e30]
    grads = [torch.randn(300, 7, generator=g) * 3, torch.randn(5, generator=g) * 1e30]
    before[1][0], grads[1][1], before[1][2] = float("inf"), float("nan"), float("-inf")
    lr = 0.037
    after = [b.add(x, alpha=-lr) for b, x in zip(before, grads)]
    facts = sgd_facts("sgd", before, grads, after, lr)
    sgd = [b.add(x, alpha=-lr) for b, x in zip(before, grads)]
    manual = [b.sub(x * lr) for b, x in zip(before, grads)]
    equal = sum(int((s == m).sum()) for s, m in zip(sgd, manual))
    total = sum(b.numel() for b in before)
    assert f"bit-equal in {equal} of {total} elements" in facts.lines[1]
    eps = torch.finfo(torch.float32).eps
    close = all(
        bool((((s - m).abs() <= eps * ((x * lr).abs() + s.abs() + m.abs())) | (s == m)).all())
        for s, m, x in zip(sgd, manual, grads)
    )
    assert facts.checks == (("optim.SGD and the manual loop agree to float rounding", close),)
    assert facts.matches == (True, True)  # NaN included: the same bits
    assert sgd_facts("manual", before, grads, manual, lr).matches == (True, True)


def test_records_print_output_and_loss_as_plain_pytorch_without_holding_graphs() -> None:
    session = Session(Recipe(seed=4, loss="cross-entropy"))
    records = [session.run_next() for _ in range(3)]  # define, forward, loss
    session.rewind(1)  # back to forward: the graph is built again
    session.run_next()  # loss again
    for cp in (session.history.back(0), session.history.back(1)):
        assert cp.live and all(t.grad_fn is None for t in cp.live)  # no graph kept alive
    torch.manual_seed(4)
    from tests.oracle import TutorialNet

    net = TutorialNet()
    input = torch.randn(1, 1, 32, 32)
    output = net(input)
    assert records[1].printed == f"print(output)\n{output!r}"
    target = session.setup.data.batch(1)[1]
    loss = torch.nn.CrossEntropyLoss()(output, target)
    assert session.last_record.printed.startswith(f"print(loss)\n{loss!r}\n")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_repr_from_a_detached_copy_equals_the_tensor_repr(dtype: torch.dtype) -> None:
    from engine.printing import grad_fn_name, tensor_repr

    torch.manual_seed(0)
    for shape in [(), (6,), (12,), (1, 10), (4, 3), (64, 10), (2, 3, 4), (1000,), (0,)]:
        for scale in (1.0, 1e-5, 1e6):
            x = (torch.randn(shape) * scale).to(dtype).requires_grad_()
            for y in (x * 2, (x * 2).sum(), torch.relu(x), x.reshape(-1)):
                assert tensor_repr(y.detach(), grad_fn_name(y)) == repr(y)


def test_releasing_many_waits_for_the_one_being_computed_and_drops_the_rest() -> None:
    import threading

    from engine.lazy import Deferred, release_many
    from engine.summary import summarize

    started, go = threading.Event(), threading.Event()

    def slow() -> float:
        started.set()
        assert go.wait(10)
        return 1.5

    computing = Deferred(slow, -1.0)
    pending = Deferred(lambda: 2.5, -1.0)
    summary = summarize(torch.arange(4.0))
    got: list[float] = []
    reader = threading.Thread(target=lambda: got.append(computing.get()))
    reader.start()
    assert started.wait(10)
    releaser = threading.Thread(target=release_many, args=([pending, computing, summary],))
    releaser.start()
    releaser.join(0.2)
    assert releaser.is_alive()  # it waits for ``computing``, holding nothing it needs
    go.set()
    reader.join(10)
    releaser.join(10)
    assert not releaser.is_alive() and got == [1.5]
    assert computing.kept and computing.get() == 1.5  # computed before the release: kept
    assert not pending.kept and pending.get() == -1.0  # never computed: not kept
    assert not summary.available


def test_a_value_that_fails_to_compute_on_release_does_not_keep_the_others() -> None:
    """The record being committed computes its values before their tensors go; one raising
    must not leave the rest unreleased, reading tensors that may be written from then on."""
    from engine.lazy import Deferred, Releases

    def boom() -> float:
        raise RuntimeError("boom")

    t = torch.ones(3)
    failing, other = Deferred(boom, -1.0), Deferred(lambda: float(t.sum()), -1.0)
    releases = Releases()
    releases.stage(failing, (t,))
    releases.stage(other, (t,))
    releases.commit(lambda _: True, [], [])
    with pytest.raises(RuntimeError, match="boom"):
        releases.release([t], keep={id(failing)})
    assert not other.kept and other.get() == -1.0
    assert not failing.kept
    assert releases.waiting_on() == []
