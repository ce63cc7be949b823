"""The nntui app: one keypress, one phase of a real PyTorch training loop.

The app owns a ``Session`` but never touches it on the event loop: every action goes through a
queue to one thread worker at a time, which posts back an immutable ``Snapshot`` to draw.
"""

from __future__ import annotations

import gc
import sys
import time
from collections import deque
from dataclasses import dataclass
from functools import partial

from textual import events, on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.timer import Timer
from textual.widgets import TabbedContent, TabPane
from textual.worker import Worker, WorkerState

from engine import DEFAULT_BUDGET_BYTES, GradGraph, Phase, PhaseRecord, Recipe, Session
from engine.explain import record_output_shape
from engine.gcpolicy import HeapReader
from engine.recipe import RecipeError
from engine.summary import shape_text
from engine.userprints import descriptors_captured

from .background import PLACEHOLDER, Background, costly_record
from .commands import RecipeCommands
from .fdcapture import ThreadWrites
from .jobs import Job, write_export
from .screens.help import HelpScreen
from .screens.main import MainScreen
from .screens.model import ModelScreen
from .stepper import ACTIVATION, Action, Request, Snapshot, failed, perform
from .widgets.accumulation import AccumulationPane
from .widgets.codepane import CodePane
from .widgets.diagnostics import DiagnosticsPane, tab_label
from .widgets.digitspane import DigitsPane
from .widgets.errorbar import ErrorBar
from .widgets.explainpane import ExplainPane
from .widgets.footer import LoopFooter
from .widgets.gradtree import GradFnPane
from .widgets.heatmap import TensorView
from .widgets.outputpane import OutputPane
from .widgets.paramtable import ParamsTable
from .widgets.phasebar import BarState, PhaseBar
from .widgets.views import Views

# Keys pressed while a phase runs wait here; beyond this many, a key is refused with a bell.
MAX_QUEUED = 8
# The view each phase brings forward: the graph after loss, the sums after backward.
VIEW_AFTER = {
    Phase.DEFINE: "tab-tensor",
    Phase.LOSS: "tab-graph",
    Phase.BACKWARD: "tab-accumulation",
    Phase.STEP: "tab-tensor",
}
DIGITS_VIEW_AFTER = {Phase.FORWARD: "tab-digits"}  # a digits forward: its predictions
VIEW_PANES = ("tab-tensor", "tab-graph", "tab-accumulation", "tab-diagnostics", "tab-digits")
# Footer widths (the keys x, e and m made it longer): roomy from here on, and the palette hint.
FOOTER_ROOMY_WIDTH = 140
FOOTER_PALETTE_WIDTH = 120
# Below this width the footer leaves these out (help lists them) so help and quit still show.
FOOTER_NARROW_WIDTH = 110
NARROW_HIDDEN_KEYS = frozenset({"flip", "activation(1)", "export"})
# The explanation pane is shown from this size on unless the user toggled it (x).
EXPLAIN_MIN_SIZE = (120, 40)
STEPPER_ACTIONS = {"next", "rewind", "accumulate", "reset", "flip", "next_view", "activation"}
_NOT_DRAWN = object()
# Seconds a phase (or job) runs before the phase bar says "running …" (see ``_pump``).
BUSY_LABEL_DELAY = 0.05
# Seconds after which the bar also counts the seconds and says how to leave: a model of yours
# can run for ever (a loop in ``__init__`` or ``forward``), and a thread cannot be stopped.
LONG_RUN = 3.0
# Full garbage collections, moved out of the key path (see ``_idle_gc``): run this long after
# the last frame when nothing is running or queued (a person's pause between keys is longer).
IDLE_GC_DELAY = 0.02
# Python collects generation 2 itself only after this many generation-1 collections (default
# 10): rarely, as a safety net for a session that is never idle; ``_idle_gc`` does the rest.
GEN2_THRESHOLD = 100
# Python collects generation 0 after this many new container objects (default 700). A key's
# frame makes ~10,000 (strips, segments, styles, records) that mostly live until a cache
# drops them: at 700, four to twenty young collections ran inside every frame, and on the
# busier ones a generation-1 collection too (2-5 ms in all). ``_idle_gc`` empties the young
# generations after each frame anyway, so a key starts from zero and its frame rarely
# reaches this.
GEN0_THRESHOLD = 50_000
# Objects frozen since start-up (``_idle_gc`` freezes what survives each collection) past
# which an idle collection first unfreezes and walks everything once, so a cycle frozen while
# alive and dropped later is freed after all: frozen objects are never collected otherwise.
REFREEZE_AFTER = 500_000
# ... or once the C heap has grown this much beyond the rewind history's own bytes since the
# last walk: a cycle holding tensors, frozen while alive (a model keeping one across an
# iteration) and dropped later, would otherwise pile up until 500,000 objects were frozen, a
# few hundred keys. The history's growth is left out: it is bounded by its budget and freed by
# reference count, and counting it would walk everything while a big model fills it.
REFREEZE_GROWTH = 256 * 2**20
# Reading the heap's figures walks glibc's free lists: 6 ms a read once a tutorial Net has
# filled its history (1,000 iterations), paid on the event loop after every key. Read at most
# this often; growth past the limit waits that much longer for its walk.
HEAP_CHECK_SECONDS = 1.0
BUSY_LABEL = {
    Action.NEXT: "running",
    Action.REWIND: "rewinding",
    Action.RESET: "resetting",
    Action.ACCUMULATE: "switching accumulate",
}


def current_graph(records: tuple[PhaseRecord, ...]) -> GradGraph | None:
    """The graph the current iteration's ``loss`` built (``None`` before it ran)."""
    for record in reversed(records):
        if record.graph is not None:
            return record.graph
        if record.phase in (Phase.FORWARD, Phase.DEFINE):
            return None
    return None


class NNTuiApp(App[None]):
    CSS_PATH = [
        "styles/app.tcss",
        "styles/heatmap.tcss",
        "styles/gradtree.tcss",
        "styles/accumulation.tcss",
        "styles/explain.tcss",
        "styles/diagnostics.tcss",
        "styles/digits.tcss",
    ]
    TITLE = "nntui"
    # Recipe switching (loss, optimizer, zero_grad, data, …), language, export: tui/commands.py.
    COMMANDS = App.COMMANDS | {RecipeCommands}
    EXPORT_PATH = "nntui_export.py"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (30, "-tall")]

    BINDINGS = [
        Binding(
            "space,n,right",
            "next",
            "Next",
            tooltip="Run the next phase of the training loop",
            id="next",
            priority=True,
        ),
        Binding(
            "left,p",
            "rewind",
            "Rewind",
            tooltip="Undo the last phase: params, grads, optimizer and RNG restored",
            id="rewind",
            priority=True,
        ),
        Binding(
            "a", "accumulate", "Accumulate", tooltip="Skip zero_grad: grads add up", id="accumulate"
        ),
        Binding(
            "g", "flip", "Data/grad", tooltip="Show the parameter's data or its grad", id="flip"
        ),
        Binding(
            "v",
            "next_view",
            "View",
            tooltip="Tensor, grad_fn tree, accumulation or diagnostics",
            id="view",
        ),
        Binding(
            "m",
            "activation(1)",
            "Activation",
            tooltip="Show the next module's activation (its forward output) as a heatmap",
            id="activation",
        ),
        Binding("M", "activation(-1)", "Activation", show=False, id="activation-back"),
        Binding("r", "reset", "Reset", tooltip="Back to before define", id="reset"),
        Binding("tab", "focus_next", "Pane", tooltip="Move to the next pane", id="pane"),
        Binding("shift+tab", "focus_previous", "Pane", show=False, id="pane-back"),
        Binding(
            "x",
            "explain",
            "Explain",
            tooltip="Show or hide what each phase does, why, what to look at",
            id="explain",
        ),
        Binding(
            "e",
            "export",
            "Export",
            tooltip="Write this recipe as a plain PyTorch script",
            id="export",
        ),
        Binding("question_mark", "help", "Help", tooltip="Phases and keys", id="help"),
        Binding("q", "quit", "Quit", tooltip="Leave nntui", id="quit"),
    ]

    @dataclass
    class Performed(Message):
        """Posted by the worker thread: one action done, here is the session after it."""

        snapshot: Snapshot

    @dataclass
    class JobDone(Message):
        """Posted by the worker thread: a ``Job`` ran; ``done`` gets its result or error."""

        job: Job
        result: object
        error: Exception | None

    def __init__(
        self,
        recipe: Recipe | None = None,
        *,
        accumulate: bool = False,
        history_bytes: int = DEFAULT_BUDGET_BYTES,
        lang: str = "en",
    ) -> None:
        super().__init__()
        self.lang = lang
        self._digits_tab = False
        # Textual owns the terminal: what the user's model prints is kept on each record and
        # shown in the output pane (a print in forward is how people debug a model).
        self.session = Session(
            recipe, accumulate=accumulate, history_bytes=history_bytes, capture_prints=True
        )
        self.selected: str | None = None
        self.which = "data"
        self.activation: str | None = None
        self.snapshot: Snapshot | None = None
        # The views follow the phase until the user picks one (v, a click, g, m); reset
        # (or the palette's "views: follow the phase") lets them follow again.
        self.follow_views = True
        # Tabs the app itself activated whose TabActivated message has not arrived yet (the
        # first tab activates itself on mount): any other activation came from the user.
        self._auto_views: deque[str] = deque(["tab-tensor"])
        # None until x is pressed: then the user's choice beats the terminal size.
        self._explain_choice: bool | None = None
        self._pending: deque[Request | Job] = deque()
        self._graph_drawn: GradGraph | None | object = _NOT_DRAWN
        # Tab panes behind the latest snapshot: drawn when their tab is shown (``_draw_view``).
        self._stale_views: set[str] = set()
        self._in_flight: Request | Job | None = None
        self._busy_timer: Timer | None = None
        self._in_flight_since = 0.0  # time.monotonic() when the work in flight started
        self._gc_timer: Timer | None = None
        # Objects frozen by idle collections since start-up's freeze (or the last refreeze);
        # None until start-up's freeze.
        self._gc_frozen: int | None = None
        # The heap's bytes beyond the history's at start-up's freeze or the last refreeze.
        self._gc_heap: int | None = None
        self._heap = HeapReader(HEAP_CHECK_SECONDS, lambda: self.session.history.nbytes())
        # A big model's statistics, read off the event loop (tui/background.py).
        self.background = Background(self)

    # ------------------------------------------------------------------ layout
    def get_default_screen(self) -> MainScreen:
        return MainScreen(id="_default")

    def compose(self) -> ComposeResult:
        yield PhaseBar(id="phasebar")
        with Horizontal(id="body"):
            with Vertical(id="left"):
                yield CodePane(id="code")
                yield OutputPane(id="output")
                yield ExplainPane(id="explain")
            with Vertical(id="right"):
                yield ParamsTable(id="params")
                with Views(id="views"):
                    with TabPane("tensor", id="tab-tensor"):
                        yield TensorView(id="tensor")
                    with TabPane("grad_fn", id="tab-graph"):
                        yield GradFnPane(id="graph")
                    with TabPane("accumulation", id="tab-accumulation"):
                        yield AccumulationPane(id="accumulation")
                    with TabPane("diagnostics", id="tab-diagnostics"):
                        yield DiagnosticsPane(id="diagnostics")
        yield ErrorBar(id="error")
        yield LoopFooter(NARROW_HIDDEN_KEYS)

    def on_mount(self) -> None:
        self.query_one("#code").border_title = "code"
        self.query_one("#output").border_title = "output"
        self.query_one("#explain").border_title = "explain"
        self.query_one("#params").border_title = "parameters"
        self.query_one("#params").focus()
        if descriptors_captured():
            # Inside Textual's own redirection, which puts back what was there before at exit.
            sys.stdout = ThreadWrites(sys.stdout, 1)  # type: ignore[assignment]
            sys.stderr = ThreadWrites(sys.stderr, 2)  # type: ignore[assignment]
        self.request(Request(Action.LOOK))
        self.call_after_refresh(self._warm_up)

    @work(thread=True, exit_on_error=False, group="warm-up")
    def _warm_up(self) -> None:
        """Import what the first ``define`` would, while the first screen is being read.

        PyTorch's first ``optim.SGD(...)`` imports ``torch._dynamo`` (over a second on a
        shared 2-core machine): without this, the first key press waited for it.

        Then ``gc.freeze()``: torch, Textual and dynamo leave millions of long-lived objects,
        and every full collection walked them all, a 200 ms pause every few key presses
        (tools/bench.py's latency p95). Frozen, they are skipped; new garbage is still freed.
        """
        import torch._dynamo  # noqa: F401

        gc.freeze()
        gc.set_threshold(GEN0_THRESHOLD, gc.get_threshold()[1], GEN2_THRESHOLD)
        self._gc_heap = self._heap.now()
        self._gc_frozen = 0

    def on_resize(self, event: events.Resize) -> None:
        # Below these widths the roomy footer drops its last keys (help, quit) off the edge.
        footer = self.query_one(LoopFooter)
        footer.compact = event.size.width < FOOTER_ROOMY_WIDTH
        footer.show_command_palette = event.size.width >= FOOTER_PALETTE_WIDTH
        footer.narrow = event.size.width < FOOTER_NARROW_WIDTH
        if self._explain_choice is None:
            width, height = EXPLAIN_MIN_SIZE
            roomy = event.size.width >= width and event.size.height >= height
            self.query_one(ExplainPane).set_class(roomy, "-shown")

    # ------------------------------------------------------------------ queue
    @property
    def busy(self) -> bool:
        return self._in_flight is not None or bool(self._pending)

    def request(self, request: Request | Job) -> bool:
        """Queue ``request`` (a key's action or a ``Job``); False when refused (queue full)."""
        last = self._pending[-1] if self._pending else None
        if (
            isinstance(request, Request)
            and request.action is Action.SELECT
            and isinstance(last, Request)
            and last.action is Action.SELECT
        ):
            self._pending[-1] = request  # scrolling through rows: only the last one matters
            return True
        if len(self._pending) >= MAX_QUEUED:
            self.bell()
            self.notify("Still working: key ignored", severity="warning", timeout=2)
            return False
        self._pending.append(request)
        self._pump()
        return True

    def _pump(self) -> None:
        if self._in_flight is not None or not self._pending:
            if self._in_flight is None and self._busy_timer is not None:
                self._busy_timer.stop()  # done before the label went up: it never will
                self._busy_timer = None
            self._show_bar()
            if self._in_flight is None:
                self.call_after_refresh(self._schedule_idle_gc)
            return
        self._in_flight = item = self._pending.popleft()
        self._in_flight_since = time.monotonic()
        # "running …" goes up only if the work is still running a moment later: a fast phase
        # (every phase of the tutorial Net) is painted once, with its result, instead of after
        # a "running" frame that cost as much as the phase and delayed the next frame.
        if self._busy_timer is not None:
            self._busy_timer.stop()
        self._busy_timer = self.set_timer(BUSY_LABEL_DELAY, self._show_busy, name="busy-label")
        if isinstance(item, Job):
            self._run_job(item)
        else:
            self._perform(item, self.selected, self.which, self.activation)

    def _schedule_idle_gc(self) -> None:
        if self._gc_timer is not None:
            self._gc_timer.stop()
        self._gc_timer = self.set_timer(IDLE_GC_DELAY, self._idle_gc, name="idle-gc")

    def _idle_gc(self) -> None:
        # After any frame still waiting to be painted (a new output block's second layout
        # pass): a collection blocks the loop ~40 ms, and a frame it delayed would be painted
        # just before the next key, whose own frame then waits a frame period for the
        # screen's update timer.
        self._gc_timer = None
        self.call_after_refresh(self._collect)

    def _collect(self) -> None:
        """A full garbage collection between keys, then ``gc.freeze()`` of what survived.

        Textual and the records leave ~150,000 objects per few keys (caches, strips,
        segments); Python's own full collections walked them all inside a key's frame, a
        30-100 ms pause every five or six keys (tools/bench.py's latency p95). Here the walk
        happens after the frame, when no work runs and no key waits, and the survivors are
        frozen right after it (so nothing garbage is frozen): the next collection walks only
        what is newer, a few milliseconds. Freed memory is unchanged for anything freed by
        reference count; a cycle frozen while alive and dropped later is freed by the full
        walk that ``REFREEZE_AFTER`` or ``REFREEZE_GROWTH`` triggers.
        """
        if (
            self._gc_timer is not None
            or self._gc_frozen is None
            or self.busy
            or self.message_queue_size
        ):
            return  # before start-up's freeze (it would walk millions), or a key is waiting
        heap, last, grown = self._heap.due(), self._gc_heap, False
        if heap is not None and last is not None:
            grown = heap - last > REFREEZE_GROWTH
            # Growth counts from the heap's low point (a smaller model now, a reset).
            self._gc_heap = min(heap, last)
        refreeze = self._gc_frozen > REFREEZE_AFTER or grown
        if refreeze:
            gc.unfreeze()
        gc.collect()
        if refreeze:
            self._gc_heap = self._heap.now()
        # Counted here, not with gc.get_freeze_count(): that walks the whole frozen list
        # (~350,000 objects after start-up), 35-70 ms of this idle pause, while the
        # collection itself takes 1-3 ms. After a full collection the survivors are all
        # that get_objects() lists (a few thousand), and all that freeze() moves.
        survivors = len(gc.get_objects())
        gc.freeze()
        self._gc_frozen = 0 if refreeze else self._gc_frozen + survivors

    @work(thread=True, exit_on_error=False, group="session")
    def _perform(
        self, request: Request, selected: str | None, which: str, activation: str | None
    ) -> None:
        try:
            snap = perform(self.session, request, selected, which, activation=activation)
        except Exception as exc:
            # perform may raise after the engine moved (run_next ran, drawing failed): post
            # the session as it is now, with the error, so the screen never shows a stale
            # state. If even that raises, on_worker_state_changed reports it.
            snap = failed(self.session, request, selected, which, activation, exc)
        self.post_message(self.Performed(snap))

    @work(thread=True, exit_on_error=False, group="session")
    def _run_job(self, job: Job) -> None:
        try:
            result, error = job.run(), None
        except Exception as exc:
            # Handed to ``job.done``, which knows what the failure means (a bad model spec is
            # the modal's one-line error, a failed export the error bar's).
            result, error = None, exc
        self.post_message(self.JobDone(job, result, error))

    @on(JobDone)
    def _job_done(self, message: JobDone) -> None:
        self._in_flight = None
        message.job.done(message.result, message.error)
        self._pump()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        # The one place a failed action lands (phase errors come back as records instead).
        if event.worker.group == "session" and event.state is WorkerState.ERROR:
            error = event.worker.error
            self.query_one(ErrorBar).show_text(f"✗ internal error: {type(error).__name__}: {error}")
            self._in_flight = None
            self._pump()

    @on(Background.Done)
    def _background_done(self, message: Background.Done) -> None:
        error = self.background.done(message)
        if error is not None:
            self.query_one(ErrorBar).show_text(f"✗ internal error: {type(error).__name__}: {error}")

    @property
    def placeholders(self) -> int:
        """Values on screen still waiting for the background thread (0: the screen is
        complete)."""
        return self.background.pending

    @on(Performed)
    def _performed(self, message: Performed) -> None:
        self._in_flight = None
        self.show(message.snapshot)
        self._pump()

    # ------------------------------------------------------------------ drawing
    def show(self, snap: Snapshot) -> None:
        self.background.new_snapshot()  # newest first: the panes ask again for what they show
        self.snapshot = snap
        self.selected = snap.selected
        self.which = snap.which
        self.activation = snap.activation
        self._show_bar()
        self.query_one(CodePane).show(
            snap.listing, snap.done, snap.next_phase, snap.zero_grad_skipped
        )
        self.query_one(OutputPane).sync(snap.records, snap.watch)
        self.query_one(ParamsTable).show(snap.last, snap.selected)
        self._show_recipe_panes(snap)
        error_bar = self.query_one(ErrorBar)
        if snap.error is not None:
            error_bar.show_error(snap.error, snap.done)
        elif snap.action in (Action.NEXT, Action.REWIND, Action.RESET):
            error_bar.clear()
        if snap.internal is not None:
            error_bar.show_text(f"✗ internal error: {snap.internal}")
        # The tab label is on screen whatever the tab: it counts the findings every phase.
        tabs = self.query_one(TabbedContent)
        self._label_diagnostics(snap.last)
        if snap.action is Action.RESET:
            self.follow_phase()
        if snap.action is Action.NEXT and isinstance(snap.result, PhaseRecord):
            view = self._view_after(snap.result.phase)
            if view is not None:
                self._activate_view(view)
        # Only the view on screen is drawn now; the others when their tab is shown (each
        # costs milliseconds, and reads statistics nobody would look at).
        self._stale_views = set(VIEW_PANES)
        self._draw_view(tabs.active)
        if "tab-accumulation" in self._stale_views:
            self.call_after_refresh(self._predraw_losses, snap)

    def _predraw_losses(self, snap: Snapshot) -> None:
        """After the frame: the hidden accumulation pane draws its loss plot ahead of the
        backward that shows it (``AccumulationPane.predraw_losses``)."""
        if self.snapshot is snap and "tab-accumulation" in self._stale_views:
            self.query_one(AccumulationPane).predraw_losses(snap.losses)

    def _label_diagnostics(self, record: PhaseRecord | None) -> None:
        tab = self.query_one(TabbedContent).get_tab("tab-diagnostics")

        def relabel(label: str) -> None:
            # The same words most phases: a new label lays the tab strip out and moves its
            # underline (milliseconds of the key's frame) for nothing.
            if tab.label.plain != label:
                tab.label = label

        if not costly_record(record):
            relabel(tab_label(record))
            return
        relabel(f"diagnostics ({PLACEHOLDER})")

        def ready(label: str) -> None:
            snap = self.snapshot
            if snap is not None and snap.last is record:
                relabel(label)

        self.background.submit(("tab-label", id(record)), partial(tab_label, record), ready)

    def _draw_view(self, view: str) -> None:
        """Bring the pane of tab ``view`` up to the latest snapshot, if it is behind."""
        snap = self.snapshot
        if snap is None or view not in self._stale_views:
            return
        self._stale_views.discard(view)
        if view == "tab-tensor":
            self._show_tensor(snap)
        elif view == "tab-graph":
            graph = current_graph(snap.records)
            if graph is not self._graph_drawn:
                # Rebuilding the tree folds what the user opened: only for a new graph.
                self._graph_drawn = graph
                self.query_one(GradFnPane).show_graph(graph)
        elif view == "tab-accumulation":
            self.query_one(AccumulationPane).update_from(
                snap.records, snap.selected, snap.losses, snap.backwards_before
            )
        elif view == "tab-diagnostics":
            self.query_one(DiagnosticsPane).show(snap.last)
        elif view == "tab-digits" and self.query(DigitsPane):
            self.query_one(DigitsPane).show(snap.digits)
        else:
            self._stale_views.add(view)  # the digits pane is not mounted yet

    def _view_after(self, phase: Phase) -> str | None:
        """The view ``phase`` brings forward, unless the user pinned one."""
        if not self.follow_views:
            return None
        view = (DIGITS_VIEW_AFTER if self._digits_tab else {}).get(phase) or VIEW_AFTER.get(phase)
        # Only the digits tab comes and goes (it is added a moment after the recipe switched):
        # asking the DOM for the others walked every widget in the views, every phase.
        if view == "tab-digits" and not self.query_one(TabbedContent).query(f"#{view}"):
            return None
        return view

    def _show_tensor(self, snap: Snapshot) -> None:
        if snap.which == ACTIVATION:
            title = f"{snap.activation} activation" if snap.activation else "activation"
            none_text = "no activation yet: run forward"
        else:
            title = f"{snap.selected}.{snap.which}" if snap.selected else "tensor"
            none_text = "grad is None" if snap.selected else "press space to run define"
        self.query_one(TensorView).show(
            title, snap.values, snap.summary, none_text=none_text, maps=snap.which == ACTIVATION
        )

    # ------------------------------------------------------------------ views follow the phase
    def _activate_view(self, view: str) -> None:
        """Bring ``view`` forward on the app's own account (not a user's choice)."""
        tabs = self.query_one(TabbedContent)
        if tabs.active != view:
            self._auto_views.append(view)
            tabs.active = view

    @on(TabbedContent.TabActivated, "#views")
    def _view_chosen(self, event: TabbedContent.TabActivated) -> None:
        if event.pane.id is not None:
            self._draw_view(event.pane.id)
        if event.pane.id in self._auto_views:
            # Ours. Messages can lag behind the next switch: drop everything up to this one.
            while self._auto_views.popleft() != event.pane.id:
                pass
            return
        self.pin_view()  # v, a click on a tab, or the arrow keys on the tab strip

    def pin_view(self) -> None:
        """The user chose what to look at: stop switching the views after each phase."""
        self.follow_views = False
        self.query_one("#views").border_subtitle = "pinned · r follows the phase again"

    def follow_phase(self) -> None:
        """Let the views follow the phase again (reset, or the command palette)."""
        self.follow_views = True
        self.query_one("#views").border_subtitle = ""

    def _show_busy(self) -> None:
        if self._in_flight is not None and self.query(PhaseBar):  # none: the app is closing
            self._show_bar()
            # Again each second while it runs: from LONG_RUN on the bar counts the seconds.
            self._busy_timer = self.set_timer(1.0, self._show_busy, name="busy-label")

    def _show_bar(self) -> None:
        snap = self.snapshot
        if snap is None:
            return
        waited = self._waited()
        running = self._in_flight.action if isinstance(self._in_flight, Request) else None
        busy = self._in_flight.label if isinstance(self._in_flight, Job) else ""
        if running is Action.NEXT:
            busy = f"running {snap.next_phase.value}"
        elif running in BUSY_LABEL:
            busy = BUSY_LABEL[running]
        self.query_one(PhaseBar).show(
            BarState(
                done=snap.done,
                next_phase=snap.next_phase,
                iteration=snap.iteration,
                next_iteration=snap.next_iteration,
                accumulate=snap.accumulate,
                zero_grad_skipped=snap.zero_grad_skipped,
                backwards=snap.backwards,
                lr=snap.lr,
                busy=busy,
                queued=len(self._pending),
                waited=int(waited) if busy and waited >= LONG_RUN else 0,
            )
        )

    def _waited(self) -> float:
        """Seconds the work in flight has been running (0 when none is)."""
        if self._in_flight is None:
            return 0.0
        return time.monotonic() - self._in_flight_since

    # ------------------------------------------------------------------ actions
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Behind the help screen the loop keys are off: nothing may run unseen.
        return action not in STEPPER_ACTIONS or self.screen is self.screen_stack[0]

    def action_next(self) -> None:
        self.request(Request(Action.NEXT))

    def action_rewind(self) -> None:
        self.request(Request(Action.REWIND))

    def action_accumulate(self) -> None:
        self.request(Request(Action.ACCUMULATE))

    def action_reset(self) -> None:
        self.request(Request(Action.RESET))

    def action_flip(self) -> None:
        self.pin_view()
        self.query_one(TabbedContent).active = "tab-tensor"
        self.request(Request(Action.FLIP))

    def action_activation(self, offset: int) -> None:
        """Show the activation ``offset`` modules on from the one on view (m / M)."""
        snap = self.snapshot
        if snap is not None and not snap.activations and not self.busy:
            self.notify("No activations yet: press space until forward has run", timeout=3)
            return
        self.pin_view()
        self.query_one(TabbedContent).active = "tab-tensor"
        self.request(Request(Action.ACTIVATION, offset=offset))

    @property
    def activation_choices(self) -> list[tuple[str, str]]:
        """``(module, "Conv2d [1, 6, 28, 28]")`` for every activation of the latest forward."""
        snap = self.snapshot
        if snap is None:
            return []
        forward = next((r for r in reversed(snap.records) if r.phase is Phase.FORWARD), None)
        acts = {a.name: a for a in forward.activations} if forward is not None else {}
        return [
            (name, f"{acts[name].kind} {shape_text(acts[name].shape)}" if name in acts else "")
            for name in snap.activations
        ]

    def show_activation(self, name: str) -> None:
        """Show module ``name``'s activation (from the command palette)."""
        self.pin_view()
        self.query_one(TabbedContent).active = "tab-tensor"
        self.request(Request(Action.ACTIVATION, name))

    def action_next_view(self) -> None:
        tabs = self.query_one(TabbedContent)
        views = [pane.id for pane in tabs.query(TabPane)]
        tabs.active = views[(views.index(tabs.active) + 1) % len(views)]

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def on_params_table_selected(self, message: ParamsTable.Selected) -> None:
        self.request(Request(Action.SELECT, message.name))

    # ------------------------------------------------------------------ recipes (issue 4)
    @property
    def current_recipe(self) -> Recipe:
        snap = self.snapshot
        return snap.recipe if snap is not None and snap.recipe is not None else Recipe()

    def switch_recipe(self, recipe: Recipe) -> None:
        """Reset the loop to ``recipe`` (from the command palette)."""
        try:
            recipe.validate()
        except RecipeError as exc:
            self.query_one(ErrorBar).show_text(f"✗ {exc}")
            return
        if self.request(Request(Action.RESET, recipe=recipe)):
            self.notify("Recipe switched: press space to run define", timeout=3)

    def ask_model(self) -> None:
        """The palette's "model: your own…": a modal asks for the spec and input shape."""
        if not isinstance(self.screen, ModelScreen):
            screen = ModelScreen(self.current_recipe, lambda: self.busy, self.request)
            self.push_screen(screen, self._model_chosen)

    def _model_chosen(self, recipe: Recipe | None) -> None:
        if recipe is not None:  # None: cancelled, nothing changes
            self.switch_recipe(recipe)

    def set_lang(self, lang: str) -> None:
        self.lang = lang
        self._explain_choice = True  # choosing a language asks to read it
        self.query_one(ExplainPane).add_class("-shown")
        if self.snapshot is not None:
            self._show_recipe_panes(self.snapshot)

    def action_explain(self) -> None:
        pane = self.query_one(ExplainPane)
        pane.toggle_class("-shown")
        self._explain_choice = pane.has_class("-shown")
        if self._explain_choice:
            pane.scroll_visible()  # narrow screens stack the panes: it may be below the fold

    def action_export(self) -> None:
        self.export_script()

    def export_script(self, path: str | None = None) -> None:
        """Write the current recipe, for as many iterations as ran (at least one)."""
        snap = self.snapshot
        if snap is None or self.busy:
            # Export what is on screen: with phases still queued, the iteration count and
            # recipe would be those of a state that is about to change.
            self.notify("Still working: try again when the phase is done", timeout=2)
            return
        target = path or self.EXPORT_PATH
        iterations = max(snap.iteration, 1)
        # resolve() may import and build a user model under fork_rng: on the worker, in turn
        # with the phases, never on the event loop nor beside a running phase.
        run = partial(write_export, self.current_recipe, snap.accumulate, iterations, target)
        self.request(Job("exporting", run, partial(self._exported, target, iterations)))

    def _exported(self, target: str, iterations: int, _: object, error: Exception | None) -> None:
        if isinstance(error, (OSError, ValueError)):  # ValueError: RecipeError too
            self.query_one(ErrorBar).show_text(f"✗ export: {error}")
        elif error is not None:
            self.query_one(ErrorBar).show_text(
                f"✗ internal error: export: {type(error).__name__}: {error}"
            )
        else:
            self.notify(f"Wrote {target}: python {target} prints {iterations} loss(es)", timeout=4)

    def _show_recipe_panes(self, snap: Snapshot) -> None:
        recipe = snap.recipe or Recipe()
        self.query_one(ExplainPane).show(
            snap.done,
            snap.next_phase,
            recipe,
            snap.accumulate,
            self.lang,
            record_output_shape(snap.last),
        )
        digits = recipe.data == "digits"
        if digits != self._digits_tab:
            # Only a digits recipe gets the tab, so other recipes' screens stay as they were.
            self._digits_tab = digits
            self.call_later(self._sync_digits_tab, digits)

    async def _sync_digits_tab(self, on: bool) -> None:
        tabs = self.query_one(TabbedContent)
        present = bool(tabs.query("#tab-digits"))
        if on and not present:
            await tabs.add_pane(TabPane("digits", DigitsPane(id="digits"), id="tab-digits"))
            self._stale_views.add("tab-digits")
            self._draw_view(tabs.active)
        elif not on and present:
            # Step off the digits tab first, so its removal is not taken for a user's choice.
            self._activate_view("tab-tensor")
            await tabs.remove_pane("tab-digits")
