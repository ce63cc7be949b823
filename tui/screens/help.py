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
| `m` / `M` | show the next / previous module's activation (after `forward`) |
| `v` | next view: tensor · grad_fn · accumulation · diagnostics |
| `r` | reset to before `define` (the views follow the phase again) |
| `x` | show or hide the explanation of the phase (shown from 120×40; `--lang ko`: Korean) |
| `e` | write this recipe as a plain PyTorch script, `nntui_export.py` |
| `ctrl+p` | command palette: loss, optimizer, data, lr, language, activations |
| `tab` / `shift+tab` | move between panes (↑/↓ in the table selects a parameter) |
| `?` | this help |
| `q` | quit |

**The views follow the phase**: *grad_fn* after `loss`, *accumulation* after `backward`,
*tensor* after `step` (and *digits* after a digits `forward`), until you choose one yourself
(`v`, a click on a tab, `g` or `m`). From then on they stay where you put them ("pinned" under
the views) until `r` resets, or *views: follow the phase* in the command palette.

**Activations** (`m`): after `forward`, each module's output (`conv1`, `layer1.0.conv1`, …,
and the whole model's `output`) as a heatmap with its summary line; `m` moves to the next
module, `M` back, `g` returns to the parameters. The palette (`ctrl+p`, "activation") lists
them all by name.

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
