"""``nntui export``: the current recipe as a runnable, plain PyTorch script.

The script is built from the same per-phase code the records and the code pane show
(``engine.codegen``), plus the model class's own source and, for digits, a small loader with
the shipped ``digits.csv.gz`` embedded (base64, ~77 KB) so the script runs anywhere. It imports nothing of
nntui and prints one loss per iteration (``print(float)`` is ``repr``: every digit needed to
read the same float back), so its output can be compared exactly with ``nntui trace --json``.
"""

from __future__ import annotations

import base64
import textwrap

from .codegen import import_lines, model_source, phase_code
from .digits import DIGITS_PATH
from .phases import LOOP, Phase
from .recipe import MODELS, Recipe, resolve

# Written into digits scripts. The transform is engine.digits' (see its docstring): /16, then
# nearest 8×8 -> 32×32, so both give bit-identical inputs.
DIGITS_LOADER = '''
# The 8×8 UCI optical-digits set (Alpaydin & Kaynak, CC BY 4.0), as shipped with nntui:
# digits.csv.gz (64 pixels 0..16 then the label, one image a line), base64-encoded.
DIGITS_CSV_GZ = """
{blob}
"""


class Digits(Dataset):
    """1,797 handwritten digits: 8×8 pixels 0..16 scaled to 0..1, each pixel a 4×4 block."""

    def __init__(self):
        text = gzip.decompress(base64.b64decode(DIGITS_CSV_GZ)).decode()
        raw = np.loadtxt(io.StringIO(text), delimiter=",", dtype=np.int64, ndmin=2)
        pixels = torch.from_numpy(raw[:, :64].copy()).view(-1, 1, 8, 8)
        self.images = F.interpolate(pixels.float() / 16, size=(32, 32), mode="nearest")
        self.labels = torch.from_numpy(raw[:, 64].copy())

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return self.images[index], self.labels[index]


def every_batch(loader):
    """Epoch after epoch: each pass reshuffles with the loader's generator."""
    while True:
        yield from loader
'''


def export_script(
    recipe: Recipe,
    accumulate: bool = False,
    iterations: int = 10,
) -> str:
    """A plain PyTorch script that runs ``iterations`` iterations and prints each loss."""
    # A user model's target shape may come from its output: fill it in so the code says it.
    recipe = resolve(recipe.validate())
    if iterations < 0:
        raise ValueError(f"iterations must be 0 or more, got {iterations}")
    mode = "accumulate (zero_grad skipped)" if accumulate else "zero_grad every iteration"
    weights = ", ".join(f"{k}={w}" for k, w in recipe.class_weights) or "none"
    lines = [
        '"""Exported by nntui: the training loop of one recipe, in plain PyTorch.',
        "",
        f"seed={recipe.seed} lr={recipe.lr!r} loss={recipe.loss} class weights: {weights}",
        f"optimizer={recipe.optimizer} zero_grad={recipe.zero_grad} data={recipe.data}"
        + (f" batch_size={recipe.batch_size}" if recipe.data == "digits" else ""),
        f"{mode}; {iterations} iteration(s). Prints one loss per iteration.",
        '"""',
        "",
    ]
    from .loader import model_code

    # A user file's ``from __future__`` lines must come first (only the docstring may precede).
    future = model_code(recipe.model, {k: v[0] for k, v in MODELS.items()}).future
    lines += [*future, *([""] if future else [])]
    if recipe.data == "digits":
        lines += ["import base64", "import gzip", "import io", "", "import numpy as np"]
    lines += import_lines(recipe, functional=True)
    lines += ["", "", model_source(recipe).rstrip()]
    if recipe.data == "digits":
        blob = "\n".join(textwrap.wrap(base64.b64encode(DIGITS_PATH.read_bytes()).decode(), 100))
        lines += ["", DIGITS_LOADER.replace("{blob}", blob).rstrip()]
    lines += ["", "", phase_code(recipe, Phase.DEFINE, accumulate), ""]
    lines.append(f"iterations = {iterations}")
    lines.append("for iteration in range(1, iterations + 1):")
    for phase in LOOP:
        lines += ["    " + line for line in phase_code(recipe, phase, accumulate).splitlines()]
        if phase is Phase.LOSS:
            # Printed right away, as nntui records it: after loss, before the step changes it.
            lines.append("    print(loss.item())")
    return "\n".join(lines) + "\n"
