"""nntui's benchmark: every figure is a ratio against a floor measured side by side, in one run.

    .venv/bin/python tools/bench.py [--quick] [--json out.json] [--history-mb N] [--only SECTION]

Machines here are shared and noisy, so engine and floor repetitions are interleaved (the order
alternates each repetition) and medians are reported; the overhead section times blocks of
back-to-back iterations per side, as a training loop runs. Sections:

- ``overhead``: ``Session.run_next`` per phase and per iteration against the same loop written
  in plain PyTorch (same model, batch, criterion, optimizer), for the tutorial Net, a 20-layer
  MLP of width 1024 at batch 64 (≈21 M parameters) and a small ResNet-style conv net.
- ``history``: bytes the rewind history gains per iteration and the budget that bounds it; a
  ≈21 M-parameter model is stepped for many iterations and the history never exceeds the budget.
- ``graph``: walking a grad_fn graph of more than 10,000 nodes (and, when the gradient tree
  widget exists, its first render and expanding a node) against a bare traversal.
- ``startup``: ``nntui --help`` against ``python -c pass``; process start to the first frame of
  the app against ``python -c "import torch, textual.app"``.
- ``latency``: key press to refreshed screen in the app (Textual pilot), per phase.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import gc
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere: the repo's packages first
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

# The app's own settings (tui/__init__.py: Textual's frame rate) take effect before anything
# here imports Textual, as they do when nntui runs.
import tui  # noqa: E402, F401
from engine.gcpolicy import FreezeSurvivors  # noqa: E402
from engine.history import DEFAULT_BUDGET_BYTES  # noqa: E402
from engine.phases import LOOP, Phase  # noqa: E402
from engine.recipe import MODELS, Recipe, build  # noqa: E402
from engine.records import PhaseError  # noqa: E402
from engine.session import Session  # noqa: E402

MiB = 2**20


# ----------------------------------------------------------------------------- bench models
class BenchMLP(nn.Module):
    """20 layers ``Linear(1024, 1024)`` with ReLU between: 20.99 M parameters."""

    def __init__(self, depth: int = 20, width: int = 1024) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(depth):
            layers.append(nn.Linear(width, width))
            if i < depth - 1:
                layers.append(nn.ReLU())
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class Block(nn.Module):
    """A ResNet basic block: conv-bn-relu-conv-bn plus the (projected) input."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.skip: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.skip = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + self.skip(x))


class BenchResNet(nn.Module):
    """A small ResNet for 3×32×32 images: stem, three stages of two blocks (16/32/64), fc."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16))
        self.relu = nn.ReLU()
        stages: list[nn.Module] = []
        cin = 16
        for cout, stride in ((16, 1), (32, 2), (64, 2)):
            stages += [Block(cin, cout, stride), Block(cout, cout, 1)]
            cin = cout
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.relu(self.stem(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


class DeepNarrow(nn.Module):
    """``depth`` × (Linear(8, 8), ReLU): five grad_fn nodes per layer, for the graph section."""

    def __init__(self, depth: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            *[m for _ in range(depth) for m in (nn.Linear(8, 8), nn.ReLU())]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


# Bench-only entries in the engine's model registry: (factory, input shape, outputs).
BENCH_MODELS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...], int]] = {
    "bench-mlp": (BenchMLP, (64, 1024), 1024),
    "bench-resnet": (BenchResNet, (16, 3, 32, 32), 10),
}


def register_models() -> None:
    for name, entry in BENCH_MODELS.items():
        MODELS.setdefault(name, entry)


@dataclass(frozen=True)
class Case:
    label: str
    recipe: Recipe
    goal: float  # per-iteration ratio the issue asks for


CASES = (
    Case("tutorial Net", Recipe(), 1.5),
    Case("MLP 20x1024 b64", Recipe(model="bench-mlp"), 1.1),
    Case("ResNet-style b16", Recipe(model="bench-resnet", loss="cross-entropy"), 1.1),
)


# ----------------------------------------------------------------------------- helpers
def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def pct(xs: list[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank: p95 of 20 samples is the 19th smallest."""
    if not xs:
        return float("nan")
    s = sorted(xs)
    # The ceil(q·n)-th smallest. (The earlier ``round(q·n + 0.5)`` rounded 19.5 up to 20:
    # p95 of 20 samples was the slowest.)
    k = max(0, min(len(s) - 1, math.ceil(q * len(s) - 1e-9) - 1))
    return s[k]


def rss_mib() -> float:
    """Resident memory of this process now (Linux /proc), in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def param_count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@contextmanager
def no_gc() -> Iterator[None]:
    """Collect before a timed region and keep the collector out of it; both sides get this."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


# ----------------------------------------------------------------------------- overhead
@dataclass
class Samples:
    engine: dict[str, list[float]] = field(default_factory=dict)
    floor: dict[str, list[float]] = field(default_factory=dict)
    # The engine when every lazily computed value of each record is read at once (what
    # ``nntui trace --json`` pays; the app reads only what it shows).
    resolved: dict[str, list[float]] = field(default_factory=dict)

    def add(self, side: str, key: str, seconds: float) -> None:
        getattr(self, side).setdefault(key, []).append(seconds)


# Between iterations, as ``nntui trace`` does (engine.gcpolicy): one for the process.
KEEP_COLLECTOR_OFF = FreezeSurvivors()


def engine_iteration(session: Session, samples: Samples, resolve: bool = False) -> None:
    side = "resolved" if resolve else "engine"
    total = 0.0
    for _ in LOOP:
        t0 = time.perf_counter()
        result = session.run_next()
        if resolve and not isinstance(result, PhaseError):
            result.resolve()
        dt = time.perf_counter() - t0
        if isinstance(result, PhaseError):
            raise RuntimeError(result.line())
        samples.add(side, result.phase.value, dt)
        total += dt
    t0 = time.perf_counter()
    KEEP_COLLECTOR_OFF()
    total += time.perf_counter() - t0
    samples.add(side, "iteration", total)


class PlainLoop:
    """The tutorial's loop with nothing else: the floor the engine is compared against."""

    def __init__(self, recipe: Recipe) -> None:
        setup = build(recipe)  # the engine's build is plain construction in the seeded order
        self.net, self.criterion, self.optimizer = setup.net, setup.criterion, setup.optimizer
        self.data = setup.data
        self.accumulate = False
        self.iteration = 0

    def iteration_timed(self, samples: Samples) -> None:
        self.iteration += 1
        input, target = self.data.batch(self.iteration)
        t0 = time.perf_counter()
        output = self.net(input)
        t1 = time.perf_counter()
        loss = self.criterion(output, target)
        loss.item()  # the engine reads the loss value; so does every tutorial print(loss)
        t2 = time.perf_counter()
        self.optimizer.zero_grad()
        t3 = time.perf_counter()
        loss.backward()
        t4 = time.perf_counter()
        self.optimizer.step()
        t5 = time.perf_counter()
        for key, dt in zip(
            ("forward", "loss", "zero_grad", "backward", "step"),
            (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4),
        ):
            samples.add("floor", key, dt)
        samples.add("floor", "iteration", t5 - t0)


def block_length(floor_iterations: list[float], seconds: float = 0.05) -> int:
    """Iterations per timed block: about ``seconds`` of the plain loop, 3 to 25 of them."""
    per = median(floor_iterations[-8:])
    return max(3, min(25, round(seconds / per)))


def bench_overhead(case: Case, reps: int, warmup: int) -> dict[str, Any]:
    sessions = [Session(case.recipe), Session(case.recipe)]  # lazy, and read in full
    for session in sessions:
        first = session.run_next()  # define
        if isinstance(first, PhaseError):
            raise RuntimeError(first.line())
    plain = PlainLoop(case.recipe)
    samples = Samples()
    scratch = Samples()

    def run(side: int, into: Samples) -> None:
        if side == 2:
            plain.iteration_timed(into)
        else:
            engine_iteration(sessions[side], into, resolve=side == 1)

    # Warm up into the steady state: until the history is full (it has dropped a checkpoint)
    # and then ``warmup`` more iterations. While the history fills, every tensor it keeps is
    # memory the process has never touched, faulted in page by page (the ResNet-style net:
    # ~6,000 page faults per forward for its first 16 iterations), and glibc settles its
    # allocation thresholds only a few iterations after the first drop (the MLP); a tutorial
    # Net fills the default 512 MiB in about 800 iterations, which the cap stops short of.
    filled = 0
    while filled < warmup:
        for side in range(3):
            run(side, scratch)
        if all(s.history.dropped for s in sessions) or len(scratch.floor["iteration"]) >= 1000:
            filled += 1
    warmup_iterations = len(scratch.floor["iteration"])
    # Timed in blocks: each side runs ``block`` iterations in a row, as a training loop does,
    # with the garbage collector on, as a program runs (the engine's sides keep it off what
    # they keep, as ``nntui trace`` does: engine.gcpolicy). The first iteration of each
    # side's run is not counted: it pays for the cache the other side left cold. Collecting
    # before every single iteration and timing it with the collector off, as this bench once
    # did, made each iteration start with cold caches, which more than doubled the tutorial
    # Net's floor (0.9 -> 2.1 ms), and left out the collector's 0.7-1.0 ms per iteration of
    # the engine's (without the freezing): both flattered the ratio.
    block = block_length(scratch.floor["iteration"])
    for rep in range(reps):
        # Rotate who goes first so drift on a shared machine hits every side alike.
        for k in range(3):
            side = (rep + k) % 3
            run(side, scratch)
            for _ in range(block):
                run(side, samples)
    phases: dict[str, dict[str, float]] = {}
    for key in [p.value for p in LOOP] + ["iteration"]:
        e, f = median(samples.engine[key]), median(samples.floor[key])
        r = median(samples.resolved[key])
        phases[key] = {
            "engine_ms": e * 1e3,
            "floor_ms": f * 1e3,
            "ratio": e / f,
            "resolved_ms": r * 1e3,
            "resolved_ratio": r / f,
        }
    return {
        "model": case.label,
        "params": param_count(plain.net),
        "reps": reps,
        "block": block,
        "warmup_iterations": warmup_iterations,
        "history_full": all(s.history.dropped for s in sessions),
        "goal": case.goal,
        "phases": phases,
        "ratio": phases["iteration"]["ratio"],
        "resolved_ratio": phases["iteration"]["resolved_ratio"],
        "meets_goal": phases["iteration"]["ratio"] <= case.goal,
    }


# ----------------------------------------------------------------------------- history
def bench_history(iterations: int, budget_bytes: int) -> dict[str, Any]:
    """Step a ≈21 M-parameter model far past its budget; history bytes must never exceed it."""
    gc.collect()
    rss0 = rss_mib()
    session = Session(Recipe(model="bench-mlp"), history_bytes=budget_bytes)
    session.run_next()
    params = sum(p.numel() * p.element_size() for p in session.params)
    after_define = session.history.nbytes()
    by_iteration: list[int] = []
    peak = 0
    rss_peak = rss_mib()
    for _ in range(iterations):
        for _ in LOOP:
            result = session.run_next()
            if isinstance(result, PhaseError):
                raise RuntimeError(result.line())
            nbytes = session.history.nbytes()
            peak = max(peak, nbytes)
            if nbytes > budget_bytes:
                raise AssertionError(f"history {nbytes} B over its budget {budget_bytes} B")
        by_iteration.append(session.history.nbytes())
        rss_peak = max(rss_peak, rss_mib())
    # Growth per iteration while nothing has been dropped yet: what one iteration costs.
    growth = by_iteration[0] - after_define
    return {
        "params": param_count(session.setup.net) if session.setup else 0,
        "param_bytes": params,
        "budget_bytes": budget_bytes,
        "iterations": iterations,
        "bytes_per_iteration": growth,
        "per_iteration_over_params": growth / params,
        "peak_bytes": peak,
        "peak_over_budget": peak / budget_bytes,
        "checkpoints_dropped": session.history.dropped,
        "checkpoints_kept": len(session.history),
        "rewindable_phases": len(session.history) - 1,
        "rss_start_mib": rss0,
        "rss_peak_mib": rss_peak,
        "rss_growth_over_budget": (rss_peak - rss0) * MiB / budget_bytes,
    }


# ----------------------------------------------------------------------------- graph
def bare_walk(root: Any) -> int:
    """The floor: visit every node reachable through ``next_functions`` once, keep nothing."""
    seen = {id(root)}
    stack = [root]
    while stack:
        fn = stack.pop()
        for nxt, _ in fn.next_functions:
            if nxt is not None and id(nxt) not in seen:
                seen.add(id(nxt))
                stack.append(nxt)
    return len(seen)


def bench_graph(reps: int, depth: int = 2000) -> dict[str, Any]:
    from engine.graph import walk_grad_fn

    torch.manual_seed(0)
    net = DeepNarrow(depth)
    loss = net(torch.randn(4, 8)).pow(2).mean()
    names = {id(p): n for n, p in net.named_parameters()}
    nodes = bare_walk(loss.grad_fn)
    walk: list[float] = []
    floor: list[float] = []
    graph = None
    for rep in range(reps):
        for side in (0, 1) if rep % 2 == 0 else (1, 0):
            with no_gc():
                t0 = time.perf_counter()
                if side == 0:
                    graph = walk_grad_fn(loss.grad_fn, names)
                else:
                    bare_walk(loss.grad_fn)
                (walk if side == 0 else floor).append(time.perf_counter() - t0)
    assert graph is not None and len(graph) == nodes, (len(graph or ()), nodes)
    out: dict[str, Any] = {
        "nodes": nodes,
        "walk_ms": median(walk) * 1e3,
        "bare_walk_ms": median(floor) * 1e3,
        "walk_ratio": median(walk) / median(floor),
    }
    out.update(bench_gradtree(graph, reps))
    return out


def bench_gradtree(graph: Any, reps: int) -> dict[str, Any]:
    """First render and one expansion of the gradient tree widget, if it exists yet."""
    try:
        from tui.widgets import gradtree  # noqa: F401
    except ImportError:
        return {"tree": "tui/widgets/gradtree.py not there yet"}
    import asyncio

    return asyncio.run(_gradtree_async(graph, reps))


class FrameSpy:
    """Times the frames an app paints: wraps ``App._display``, where every screen update ends.

    Headless (pilot) apps skip turning the update into terminal bytes; the spy does that part
    too, so a frame costs what it would cost on a real terminal. ``probe`` is evaluated at each
    frame, so a waiter can ask for the first frame that *shows* a state, not merely one after it.
    """

    def __init__(self, app: Any, probe: Callable[[], Any]) -> None:
        from textual._compositor import CompositorUpdate

        self.frames: list[tuple[float, Any]] = []
        # The event loop's own CPU time at each frame (``time.thread_time``: the spy runs on
        # the loop's thread), to tell the app's work from waiting on a busy machine.
        self.cpu: list[float] = []
        self.probe = probe
        # Set at each frame: a waiter sleeps until one comes instead of polling the event loop
        # it times (polling every 0.5 ms added its own wake-ups to every frame's CPU time).
        self.painted: Any = None
        display = app._display

        def spy(screen: Any, renderable: Any) -> None:
            display(screen, renderable)
            if renderable is None:
                return
            if isinstance(renderable, CompositorUpdate):
                renderable.render_segments(app.console)
            self.frames.append((time.perf_counter(), self.probe()))
            self.cpu.append(time.thread_time())
            if self.painted is not None:
                self.painted.set()

        app._display = spy

    async def first(self, since: float, want: Any, timeout: float = 120.0) -> float:
        """Time of the first frame after ``since`` whose probe equals ``want`` (or, for a
        callable ``want``, whose probe it returns true for)."""
        return (await self.first_frame(since, want, timeout))[0]

    async def first_frame(
        self, since: float, want: Any, timeout: float = 120.0
    ) -> tuple[float, float]:
        """``first``, and the event loop's CPU time at that frame."""
        import asyncio

        match = want if callable(want) else (lambda seen: seen == want)
        deadline = time.perf_counter() + timeout
        if self.painted is None:
            self.painted = asyncio.Event()
        # Frames arrive in time order: start at the first one after ``since`` and look at each
        # frame once (this runs on the app's own event loop).
        i = bisect.bisect_left(self.frames, since, key=lambda frame: frame[0])
        while True:
            self.painted.clear()
            frames = self.frames
            while i < len(frames):
                t, seen = frames[i]
                if match(seen):
                    return t, self.cpu[i]
                i += 1
            left = deadline - time.perf_counter()
            if left <= 0:
                raise TimeoutError(f"no frame showed {want!r}")
            try:
                await asyncio.wait_for(self.painted.wait(), timeout=left)
            except asyncio.TimeoutError:
                continue  # one more look at the frames, then the deadline check raises


async def _gradtree_async(graph: Any, reps: int) -> dict[str, Any]:
    """First render of a >10,000-node graph, expanding frontier nodes, revealing the deepest."""
    import asyncio

    from textual.app import App, ComposeResult

    from tui.widgets.gradtree import GradFnPane

    class PaneApp(App[None]):
        CSS_PATH = str(ROOT / "tui" / "styles" / "gradtree.tcss")

        def compose(self) -> ComposeResult:
            yield GradFnPane(id="pane")

    app = PaneApp()
    marks: dict[str, int] = {"state": 0}
    async with app.run_test(size=(120, 40)) as pilot:
        pane = app.query_one(GradFnPane)
        spy = FrameSpy(app, lambda: marks["state"])
        await pilot.pause()

        async def timed(action: Callable[[], Any]) -> float:
            await asyncio.sleep(0.02)
            marks["state"] += 1  # frames from here on show the action's result
            t0 = time.perf_counter()
            action()
            return await spy.first(t0, marks["state"]) - t0

        floor = [await timed(pane.tree.refresh) for _ in range(reps)]
        first = [await timed(lambda: pane.show_graph(graph)) for _ in range(max(3, reps // 3))]
        expand: list[float] = []
        for _ in range(reps):
            # A closed node that can open, the deepest one shown: the next a user would open.
            closed = None
            stack = [pane.tree.root]
            while stack:
                node = stack.pop()
                if node.allow_expand and not node.is_expanded:
                    closed = node
                    break
                stack.extend(node.children)
            if closed is None:
                break
            expand.append(await timed(closed.expand))
        deepest = len(graph) - 1
        reveal = [await timed(lambda: pane.reveal(deepest)) for _ in range(3)]
        for _ in range(3):
            reveal.append(await timed(lambda: pane.reveal(1)))
    return {
        "tree_refresh_floor_ms": median(floor) * 1e3,
        "tree_first_render_ms": median(first) * 1e3,
        "tree_first_render_ratio": median(first) / median(floor),
        "tree_expand_p50_ms": median(expand) * 1e3,
        "tree_expand_p95_ms": pct(expand, 0.95) * 1e3,
        "tree_expand_samples": len(expand),
        "tree_reveal_p95_ms": pct(reveal, 0.95) * 1e3,  # jump to a node (not in the goal)
        "tree_meets_goal": max(median(first), pct(expand, 0.95)) <= 0.1,
    }


# ----------------------------------------------------------------------------- latency
def send_key(app: Any, key: str) -> None:
    """Deliver a key as the terminal driver does (``pilot.press`` would wait for the phase)."""
    from textual import events

    chars = {"space": " ", "question_mark": "?", "escape": "\x1b"}
    event = events.Key(key, chars.get(key, key if len(key) == 1 else None))
    event.set_sender(app)
    app._driver.send_message(event)


async def _latency_async(recipe: Recipe, iterations: int) -> dict[str, Any]:
    import asyncio

    from textual.widgets import TabbedContent

    from tui.app import NNTuiApp
    from tui.pilot import settle
    from tui.widgets.heatmap import HeatmapCanvas
    from tui.widgets.phasebar import PhaseBar

    app = NNTuiApp(recipe)  # with the animation level a user's app has (tui/__init__.py)
    compute: dict[str, list[float]] = {}
    latency: dict[str, list[float]] = {}
    # Press to the first frame with no placeholder left (tui/background.py: a big model's
    # statistics arrive after the phase's first frame).
    complete: dict[str, list[float]] = {}
    # The event loop's CPU time from the key to that frame: the app's own work (handling the
    # key and the result, layout, drawing) plus this coroutine's polling, without the time
    # spent waiting for the worker or for a core on a shared machine.
    loop_cpu: dict[str, list[float]] = {}
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        session = app.session
        run_next = session.run_next

        def timed_run_next() -> Any:  # the engine's share of each key press
            t0 = time.perf_counter()
            result = run_next()
            compute.setdefault(result.phase.value, []).append(time.perf_counter() - t0)
            return result

        session.run_next = timed_run_next  # type: ignore[method-assign]
        bar = app.query_one(PhaseBar)
        canvas = app.query_one(HeatmapCanvas)
        views = app.query_one(TabbedContent)

        def missing() -> int:
            """Values still to come on screen: the background thread's, and a tensor view
            shown with values but no picture yet (step once drew it a frame late)."""
            blank = (
                views.active == "tab-tensor"
                and canvas._values is not None
                and canvas.heatmap is None
                and canvas.pending is None
            )
            return app.placeholders + blank

        spy = FrameSpy(
            app, lambda: (bar.state.done, bar.state.iteration, bar.state.busy, missing())
        )
        for _ in range(iterations * len(LOOP) + 1):
            phase, iteration = session.next_phase, session.next_iteration
            await asyncio.sleep(0.05)  # a person's pause between keys; lets the machine settle
            t0, c0 = time.perf_counter(), time.thread_time()
            send_key(app, "space")
            want = (phase, iteration, "")
            shown, c1 = await spy.first_frame(t0, lambda seen, want=want: seen[:3] == want)
            latency.setdefault(phase.value, []).append(shown - t0)
            loop_cpu.setdefault(phase.value, []).append(c1 - c0)
            whole = await spy.first(t0, (*want, 0))
            complete.setdefault(phase.value, []).append(whole - t0)
        await settle(pilot)
    out: dict[str, Any] = {}
    for key, xs in latency.items():
        c = median(compute[key])
        out[key] = {
            "p50_ms": median(xs) * 1e3,
            "p95_ms": pct(xs, 0.95) * 1e3,
            "complete_p50_ms": median(complete[key]) * 1e3,
            "complete_p95_ms": pct(complete[key], 0.95) * 1e3,
            "compute_ms": c * 1e3,
            "p95_over_compute_ms": (pct(xs, 0.95) - c) * 1e3,
            # Each key against its own phase's engine time (the goal's "the phase's compute
            # + 50 ms"): the line above also counts the engine's own spread as the app's.
            "p95_key_over_compute_ms": pct([x - e for x, e in zip(xs, compute[key])], 0.95) * 1e3,
            "loop_cpu_p50_ms": median(loop_cpu[key]) * 1e3,
            "loop_cpu_p95_ms": pct(loop_cpu[key], 0.95) * 1e3,
            "samples": len(xs),
        }
    return out


def bench_latency(quick: bool) -> dict[str, Any]:
    import asyncio

    # Enough keys per phase that p95 is not simply the slowest one: of 40 samples it is the
    # third slowest (of 15, as before, it was the maximum); of the MLP's 20, the second
    # slowest (of 10, as before, the slowest: one key slowed by another job on the machine
    # decided the figure).
    cases = [("tutorial Net", Recipe(), 3 if quick else 40, 0.050, False)]
    cases.append(("MLP 20x1024 b64", Recipe(model="bench-mlp"), 1 if quick else 20, 0.050, True))
    out: dict[str, Any] = {}
    for label, recipe, iterations, goal, over_compute in cases:
        phases = asyncio.run(_latency_async(recipe, iterations))
        loop = [v for k, v in phases.items() if k != "define"]
        worst = max(v["p95_key_over_compute_ms"] if over_compute else v["p95_ms"] for v in loop)
        out[label] = {
            "phases": phases,
            "goal": f"p95 of key - its compute <= {goal * 1e3:.0f} ms"
            if over_compute
            else f"p95 <= {goal * 1e3:.0f} ms",
            "worst_ms": worst,
            "meets_goal": worst <= goal * 1e3,
        }
    return out


# ----------------------------------------------------------------------------- first frame
def first_frame_once(timeout: float = 120.0) -> float:
    """Seconds from starting ``nntui`` on a 120x40 pseudo-terminal to its first full frame."""
    import fcntl
    import pty
    import select
    import struct
    import termios

    nntui = str(Path(sys.executable).with_name("nntui"))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env["TERM"] = "xterm-256color"
    t0 = time.perf_counter()
    pid, fd = pty.fork()
    if pid == 0:  # the child: size its terminal, then become nntui
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        os.chdir(ROOT)
        os.execve(nntui, [nntui], env)
    seen = b""
    shown = None
    reaped = False
    try:
        while shown is None:
            if time.perf_counter() - t0 > timeout:
                raise TimeoutError("nntui drew no first frame")
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                seen += os.read(fd, 65536)
                # The phase bar (top) and the footer (bottom) both drawn: a whole frame.
                if "▶ define".encode() in seen and b"Quit" in seen:
                    shown = time.perf_counter() - t0
        os.write(fd, b"q")
        deadline = time.perf_counter() + 30
        while time.perf_counter() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                reaped = True
                if os.waitstatus_to_exitcode(status) != 0:
                    raise RuntimeError(f"nntui exited with {os.waitstatus_to_exitcode(status)}")
                break
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready:
                # Drain what it draws on the way out; EIO once the child closed its side.
                with contextlib.suppress(OSError):
                    os.read(fd, 65536)
        else:
            raise TimeoutError("nntui did not quit on q")
    finally:
        os.close(fd)
        if not reaped:  # an error above: stop the one process this function started
            os.kill(pid, 9)
            os.waitpid(pid, 0)
    assert shown is not None
    return shown


def bench_first_frame(reps: int) -> dict[str, Any]:
    frame: list[float] = []
    floor: list[float] = []
    for rep in range(reps):
        for side in (0, 1) if rep % 2 == 0 else (1, 0):
            if side == 0:
                frame.append(first_frame_once())
            else:
                floor.append(run_wall([sys.executable, "-c", "import torch, textual.app"]))
    over = median(frame) - median(floor)
    return {
        "first_frame_ms": median(frame) * 1e3,
        "import_floor_ms": median(floor) * 1e3,
        "first_frame_ratio": median(frame) / median(floor),
        "first_frame_over_floor_ms": over * 1e3,
        "first_frame_meets_goal": over <= 0.5,
    }


# ----------------------------------------------------------------------------- startup
def run_wall(argv: list[str], env: dict[str, str] | None = None) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - t0


def bench_help(reps: int) -> dict[str, Any]:
    nntui = str(Path(sys.executable).with_name("nntui"))
    help_t: list[float] = []
    floor: list[float] = []
    for rep in range(reps):
        for side in (0, 1) if rep % 2 == 0 else (1, 0):
            if side == 0:
                help_t.append(run_wall([nntui, "--help"]))
            else:
                floor.append(run_wall([sys.executable, "-c", "pass"]))
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys\nfrom tui.cli import main\ntry:\n    main(['--help'])\n"
            "except SystemExit:\n    pass\nprint('torch' in sys.modules, file=sys.stderr)",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    torch_imported = probe.stderr.strip().splitlines()[-1] == "True"
    return {
        "help_ms": median(help_t) * 1e3,
        "python_pass_ms": median(floor) * 1e3,
        "help_ratio": median(help_t) / median(floor),
        "help_imports_torch": torch_imported,
        "meets_goal": median(help_t) <= 0.3 and not torch_imported,
    }


# ----------------------------------------------------------------------------- report
def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "load_avg": os.getloadavg(),
        "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for k, row in enumerate(rows):
        lines.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))
            )
        )
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def report(results: dict[str, Any]) -> str:
    out: list[str] = []
    m = results["machine"]
    out.append(
        f"nntui bench — {m['cpus']} CPUs, torch {m['torch']} ({m['torch_threads']} threads), "
        f"load {m['load_avg'][0]:.1f}; medians of interleaved repetitions"
    )
    if "overhead" in results:
        rows = [
            [
                "engine / plain PyTorch",
                "params",
                *[p.value for p in LOOP],
                "iteration",
                "goal",
                "all read",
            ]
        ]
        for r in results["overhead"]:
            ph = r["phases"]
            rows.append(
                [
                    r["model"],
                    f"{r['params'] / 1e6:.2f}M",
                    *[f"{ph[p.value]['ratio']:.2f}x" for p in LOOP],
                    f"{r['ratio']:.2f}x ({ph['iteration']['engine_ms']:.1f}/{ph['iteration']['floor_ms']:.1f} ms)",
                    f"<={r['goal']}x {'ok' if r['meets_goal'] else 'MISSED'}",
                    f"{r['resolved_ratio']:.2f}x",
                ]
            )
        out += [
            "",
            table(rows),
            "all read: the same, reading every value of every record as it comes (what "
            "`nntui trace --json` pays; the app reads what it shows)",
            "steady state: each side warmed up until the history was full, then 8 more "
            "iterations ("
            + ", ".join(
                f"{r['model']}: {r['warmup_iterations']}"
                + ("" if r["history_full"] else " (not full)")
                for r in results["overhead"]
            )
            + "); then timed in blocks of back-to-back iterations per side, the garbage "
            "collector on (block: "
            + ", ".join(f"{r['model']}: {r['block']}" for r in results["overhead"])
            + ")",
        ]
    if "history" in results:
        h = results["history"]
        out += [
            "",
            f"history: {h['bytes_per_iteration'] / MiB:.0f} MiB per iteration "
            f"({h['per_iteration_over_params']:.2f}x the {h['param_bytes'] / MiB:.0f} MiB of "
            f"parameters); budget {h['budget_bytes'] / MiB:.0f} MiB; after {h['iterations']} "
            f"iterations peak {h['peak_bytes'] / MiB:.0f} MiB = {h['peak_over_budget']:.2f}x "
            f"budget, {h['checkpoints_dropped']} checkpoints dropped, "
            f"{h['rewindable_phases']} phases rewindable; RSS {h['rss_start_mib']:.0f} -> "
            f"{h['rss_peak_mib']:.0f} MiB",
        ]
    if "graph" in results:
        g = results["graph"]
        line = (
            f"grad_fn graph: {g['nodes']} nodes, walk {g['walk_ms']:.1f} ms = "
            f"{g['walk_ratio']:.1f}x a bare traversal ({g['bare_walk_ms']:.1f} ms)"
        )
        if "tree_first_render_ms" in g:
            line += (
                f"; tree first render {g['tree_first_render_ms']:.0f} ms, expand "
                f"p95 {g['tree_expand_p95_ms']:.0f} ms ({g['tree_expand_samples']} nodes; goal "
                f"<=100 ms {'ok' if g['tree_meets_goal'] else 'MISSED'}), reveal the deepest "
                f"node p95 {g['tree_reveal_p95_ms']:.0f} ms"
            )
        else:
            line += f"; tree: {g.get('tree')}"
        out += ["", line]
    if "startup" in results:
        s = results["startup"]
        out += [
            "",
            f"nntui --help: {s['help_ms']:.0f} ms = {s['help_ratio']:.2f}x `python -c pass` "
            f"({s['python_pass_ms']:.0f} ms); imports torch: {s['help_imports_torch']} "
            f"(goal <=300 ms, no torch: {'ok' if s['meets_goal'] else 'MISSED'})",
        ]
        if "first_frame_ms" in s:
            out.append(
                f"first frame: {s['first_frame_ms']:.0f} ms vs `import torch, textual.app` "
                f"{s['import_floor_ms']:.0f} ms: floor + {s['first_frame_over_floor_ms']:.0f} ms "
                f"(goal <= +500 ms {'ok' if s['first_frame_meets_goal'] else 'MISSED'})"
            )
    if "latency" in results:
        rows = [["key -> screen (ms)", "", *[p.value for p in (Phase.DEFINE, *LOOP)], "goal"]]
        for label, r in results["latency"].items():
            ph = r["phases"]
            keys = [p.value for p in (Phase.DEFINE, *LOOP)]
            for i, (stat, name) in enumerate(
                (
                    ("p50_ms", "p50"),
                    ("p95_ms", "p95"),
                    ("complete_p50_ms", "complete p50"),
                    ("complete_p95_ms", "complete p95"),
                    ("compute_ms", "engine"),
                    ("p95_key_over_compute_ms", "p95 key - engine"),
                    ("loop_cpu_p50_ms", "loop CPU p50"),
                    ("loop_cpu_p95_ms", "loop CPU p95"),
                )
            ):
                rows.append(
                    [
                        label if i == 0 else "",
                        name,
                        *[f"{ph[k][stat]:.0f}" if k in ph else "-" for k in keys],
                        (f"{r['goal']} {'ok' if r['meets_goal'] else 'MISSED'}" if i == 0 else ""),
                    ]
                )
        out += [
            "",
            table(rows),
            "loop CPU: the event loop's CPU time from the key to the frame that shows the phase "
            "(the app's own work; the rest of the latency is waiting for the worker or a core)",
        ]
    return "\n".join(out)


SECTIONS = ("overhead", "history", "graph", "startup", "latency")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument(
        "--history-mb",
        type=int,
        default=DEFAULT_BUDGET_BYTES // MiB,
        help="history budget for the history section (default: the app's, 512)",
    )
    ap.add_argument("--only", action="append", choices=SECTIONS, help="run only these sections")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (default 1: on a shared machine OpenMP threads spinning "
        "against other processes swing timings a hundredfold; 0 keeps torch's default)",
    )
    args = ap.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    sections = args.only or list(SECTIONS)
    register_models()
    reps = 5 if args.quick else 15
    results: dict[str, Any] = {"quick": args.quick}
    if "overhead" in sections:
        results["overhead"] = [
            bench_overhead(case, reps=reps, warmup=1 if args.quick else 8) for case in CASES
        ]
    if "history" in sections:
        results["history"] = bench_history(4 if args.quick else 12, args.history_mb * MiB)
    if "graph" in sections:
        results["graph"] = bench_graph(reps)
    if "startup" in sections:
        results["startup"] = bench_help(reps)
        results["startup"].update(bench_first_frame(3 if args.quick else 7))
    if "latency" in sections:
        results["latency"] = bench_latency(args.quick)
    results["machine"] = machine()
    text = report(results)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
