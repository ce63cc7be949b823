"""The help screen (``?``): what each phase does and which key does what."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

HELP = """\
# nntui — one phase per keypress

Each key press runs one phase of a real PyTorch training loop and shows what it did.

| phase | the code | what changes |
|---|---|---|
| `define` | `net = Net()`, `criterion`, `optimizer` | parameters are created (runs once) |
| `forward` | `output = net(input)` | activations; builds the autograd graph |
| `loss` | `loss = criterion(output, target)` | a scalar with `grad_fn=<MseLossBackward0>` |
| `zero_grad` | `optimizer.zero_grad()` | every `.grad` becomes `None` (or 0) |
| `backward` | `loss.backward()` | `.grad` of every parameter: **adds** into what is there |
| `step` | `optimizer.step()` | `p ← p − lr·p.grad` |

After `step` the loop starts again at `forward` (the next iteration).

**Accumulate mode** (`a`) skips `zero_grad`: the next `backward` adds its gradient to the
one already in `.grad`, so the grad after the second backward is the sum of both. The
*accumulation* view plots the grad norm over backward calls.

## Keys

| key | does |
|---|---|
| `space` `n` `→` | run the next phase |
| `←` `p` | rewind one phase (restores params, grads, optimizer and RNG) |
| `a` | toggle accumulate (skip `zero_grad`) |
| `g` | show the selected parameter's data or its grad |
| `v` | next view: tensor · grad_fn · accumulation · diagnostics |
| `r` | reset to before `define` |
| `tab` / `shift+tab` | move between panes (↑/↓ in the table selects a parameter) |
| `?` | this help |
| `q` | quit |

A phase runs off the screen's thread; keys pressed meanwhile wait their turn. If a phase
fails, the error shows at the bottom and the loop stays where it was.

*Press `escape`, `?` or `q` to close.*
"""


class HelpScreen(ModalScreen[None]):
    CSS_PATH = "../styles/help.tcss"
    BINDINGS = [
        Binding("escape,question_mark,q", "dismiss", "Close", tooltip="Back to the loop"),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-body"):
            yield Markdown(HELP, id="help-text")
