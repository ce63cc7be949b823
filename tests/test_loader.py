"""``engine.loader``: parsing ``--model``, importing user code, the invisible dry forward, and
the source that export embeds."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from engine import Recipe, RecipeError, Session
from engine.loader import (
    ModelSpec,
    check_model,
    infer_output_shape,
    load,
    model_code,
    parse_spec,
)
from engine.recipe import MODELS
from tests import user_models

USER = str(Path(__file__).parent / "user_models.py")
SHIPPED = {k: v[0] for k, v in MODELS.items()}


@pytest.mark.parametrize(
    "text,expected",
    [
        ("models/net.py:Net", ModelSpec("models/net.py:Net", Path("models/net.py"), None, "Net")),
        ("net.py:Zoo.small", ModelSpec("net.py:Zoo.small", Path("net.py"), None, "Zoo.small")),
        (
            r"C:\work\net.py:Net",
            ModelSpec(r"C:\work\net.py:Net", Path(r"C:\work\net.py"), None, "Net"),
        ),
        ("pkg.models:build", ModelSpec("pkg.models:build", None, "pkg.models", "build")),
        ("./here:Net", ModelSpec("./here:Net", Path("./here"), None, "Net")),
    ],
)
def test_parse_spec(text: str, expected: ModelSpec) -> None:
    assert parse_spec(text, SHIPPED) == expected


def test_class_function_and_dotted_name(tmp_path: Path) -> None:
    path = tmp_path / "zoo.py"
    path.write_text(
        "import torch.nn as nn\n\n"
        "class Zoo:\n"
        "    @staticmethod\n"
        "    def small():\n"
        "        return nn.Linear(2, 2)\n"
    )
    assert isinstance(load(f"{path}:Zoo.small"), nn.Linear)
    # A file is imported under a private name: its classes are not the package's.
    from_file = load(f"{USER}:Healthy")
    assert type(from_file).__name__ == "Healthy" and type(from_file) is not user_models.Healthy
    assert type(from_file).__module__.startswith("_nntui_model_")
    assert isinstance(load(f"{USER}:make_healthy"), nn.Module)
    assert isinstance(load("tests.user_models:Healthy"), user_models.Healthy)


def test_sibling_modules_import_and_main_blocks_do_not_run(tmp_path: Path) -> None:
    (tmp_path / "sizes.py").write_text("WIDTH = 7\n")
    (tmp_path / "net.py").write_text(
        "import torch.nn as nn\n"
        "from sizes import WIDTH\n\n"
        "class Net(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.fc = nn.Linear(WIDTH, 2)\n\n"
        "if __name__ == '__main__':\n"
        "    raise SystemExit('the main block ran')\n"
    )
    assert load(f"{tmp_path / 'net.py'}:Net").fc.in_features == 7


def test_reset_picks_up_an_edited_file(tmp_path: Path) -> None:
    path = tmp_path / "grow.py"
    path.write_text("import torch.nn as nn\n\ndef make():\n    return nn.Linear(6, 3)\n")
    s = Session(Recipe(model=f"{path}:make", input_shape=(2, 6)))
    s.run_next()
    assert [tuple(p.shape) for p in s.params] == [(3, 6), (3,)]
    path.write_text("import torch.nn as nn\n\ndef make():\n    return nn.Linear(6, 5)\n")
    s.reset()
    s.run_next()
    assert [tuple(p.shape) for p in s.params] == [(5, 6), (5,)]


def test_check_model_leaves_the_rng_alone() -> None:
    torch.manual_seed(123)
    before = torch.get_rng_state()
    check_model(f"{USER}:Healthy")
    assert torch.equal(torch.get_rng_state(), before)
    with pytest.raises(RecipeError):
        check_model(f"{USER}:raises")
    assert torch.equal(torch.get_rng_state(), before)


class Counting(nn.Module):
    """BatchNorm, dropout and a forward that counts its calls: three things a careless dry
    forward would change."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 4)
        self.bn = nn.BatchNorm1d(4)
        self.drop = nn.Dropout(0.5)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.drop(self.bn(self.fc(x)))


class Uncopyable(Counting):
    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()  # deepcopy refuses locks


@pytest.mark.parametrize("cls", [Counting, Uncopyable])
def test_dry_forward_leaves_no_trace(cls: type[Counting]) -> None:
    torch.manual_seed(0)
    net = cls()
    x = torch.randn(5, 6)
    rng = torch.get_rng_state()
    buffers = {n: b.clone() for n, b in net.named_buffers()}
    params = {n: p.detach().clone() for n, p in net.named_parameters()}
    assert infer_output_shape(net, x, "test") == (5, 4)
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(b, buffers[n]) for n, b in net.named_buffers())
    assert all(torch.equal(p, params[n]) for n, p in net.named_parameters())
    assert all(p.grad is None for p in net.parameters())
    if cls is Counting:
        assert net.calls == 0  # it ran on a copy
    # Plain PyTorch: what the same net gives without any dry forward before it.
    torch.manual_seed(0)
    plain = cls()
    torch.randn(5, 6)
    torch.set_rng_state(rng)
    ours = net(x)
    torch.set_rng_state(rng)
    assert torch.equal(ours, plain(x))


def test_output_that_is_not_a_tensor(tmp_path: Path) -> None:
    path = tmp_path / "pair.py"
    path.write_text(
        "import torch.nn as nn\n\n"
        "class Pair(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.fc = nn.Linear(2, 2)\n"
        "    def forward(self, x):\n"
        "        return self.fc(x), x\n"
    )
    s = Session(Recipe(model=f"{path}:Pair", input_shape=(1, 2)))
    error = s.run_next()
    assert error.message == f"{path}:Pair returns tuple, not a tensor"


def test_model_code_of_a_file(tmp_path: Path) -> None:
    path = tmp_path / "net.py"
    path.write_text(
        '"""My model."""\n'
        "from __future__ import annotations\n\n"
        "import torch.nn as nn\n\n"
        "class Net(nn.Module):\n"
        "    def __init__(self) -> None:\n"
        "        super().__init__()\n"
        "        self.fc = nn.Linear(3, 2)\n\n"
        "if '__main__' == __name__:\n"
        "    print('training for real')\n"
    )
    code = model_code(f"{path}:Net", SHIPPED)
    assert code.future == ("from __future__ import annotations",)
    assert "__future__" not in code.source and "__main__" not in code.source
    assert code.call == "Net()"
    scope: dict[str, object] = {}
    exec(compile("\n".join([*code.future, code.source]), "exported", "exec"), scope)
    net = eval(code.call, scope)
    assert [tuple(p.shape) for p in net.parameters()] == [(2, 3), (2,)]


def test_model_code_of_shipped_models_is_self_contained() -> None:
    for name in MODELS:
        code = model_code(name, SHIPPED)
        scope: dict[str, object] = {}
        exec(
            "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n" + code.source,
            scope,
        )
        torch.manual_seed(0)
        embedded = eval(code.call, scope)
        torch.manual_seed(0)
        shipped = MODELS[name][0]()
        assert [
            (n, torch.equal(p, q))
            for (n, p), (_, q) in zip(embedded.named_parameters(), shipped.named_parameters())
        ] == [(n, True) for n, _ in shipped.named_parameters()]


def test_model_code_of_a_module_is_an_import() -> None:
    code = model_code("tests.user_models:make_healthy", SHIPPED)
    assert (code.future, code.source, code.call) == (
        (),
        "from tests.user_models import make_healthy\n",
        "make_healthy()",
    )
