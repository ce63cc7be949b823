"""The ``nntui`` command. Imports torch and Textual lazily so ``nntui --help`` stays instant."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any, NoReturn

import click

LOSSES = ("mse", "cross-entropy")
OPTIMIZERS = ("sgd", "manual", "momentum", "adam", "rmsprop")


def _class_weight(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple:
    out = []
    given: dict[int, str] = {}  # class -> the text that gave it
    for text in values:
        k, sep, w = text.partition("=")
        try:
            if not sep:
                raise ValueError
            pair = (int(k), float(w))
        except ValueError:
            raise click.BadParameter(f"{text!r} is not CLASS=WEIGHT (e.g. 7=5.0)") from None
        # The weight tensor takes one value per class: a second one used to replace the first
        # without a word.
        if pair[0] in given:
            raise click.BadParameter(
                f"class {pair[0]} is given twice ({given[pair[0]]} and {text}): "
                "give each class once"
            )
        given[pair[0]] = text
        out.append(pair)
    return tuple(out)


def _shape(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple | None:
    """``8,3,32,32`` -> ``(8, 3, 32, 32)``; anything else is a one-line usage error."""
    if value is None:
        return None
    from engine.recipe import RecipeError, parse_shape  # imports torch: not for --help

    try:
        return parse_shape(value)
    except RecipeError as exc:
        raise click.BadParameter(str(exc)) from None


def recipe_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The options that choose what is trained; shared by the app, ``trace`` and ``export``."""
    options = [
        click.option("--seed", type=int, default=0, show_default=True, help="torch.manual_seed."),
        click.option("--lr", type=float, default=0.01, show_default=True, help="Learning rate."),
        click.option("--accumulate", is_flag=True, help="Skip zero_grad: gradients accumulate."),
        click.option(
            "--model",
            default="lenet",
            show_default=True,
            metavar="NAME|FILE.py:NAME|MODULE:NAME",
            help="lenet, mlp, resnet, or your own nn.Module class / zero-argument function.",
        ),
        click.option(
            "--input-shape",
            "input_shape",
            callback=_shape,
            metavar="N,C,H,W",
            help="Shape of the seeded random input (needed for your own model).",
        ),
        click.option(
            "--num-classes",
            "num_classes",
            type=click.IntRange(min=1),
            help="Class-index targets 0..C-1 (implies --loss cross-entropy unless given).",
        ),
        click.option(
            "--target-shape",
            "target_shape",
            callback=_shape,
            metavar="N,...",
            help="Shape of the seeded random MSE target (default: the output's shape).",
        ),
        click.option(
            "--loss",
            type=click.Choice(LOSSES),
            default=None,
            help="Default: mse, or cross-entropy with --num-classes.",
        ),
        click.option(
            "--class-weight",
            "class_weights",
            multiple=True,
            callback=_class_weight,
            metavar="K=W",
            help="Cross-entropy weight of class K (repeatable, once per class).",
        ),
        click.option(
            "--optimizer", type=click.Choice(OPTIMIZERS), default="sgd", show_default=True
        ),
        click.option(
            "--zero-grad",
            "zero_grad",
            type=click.Choice(("none", "zeros")),
            default="none",
            show_default=True,
            help="none: grads become None (set_to_none=True); zeros: filled with 0.",
        ),
        click.option(
            "--data",
            type=click.Choice(("random", "digits")),
            default="random",
            show_default=True,
            help="random: the tutorial's fixed batch; digits: real 8×8 handwritten digits.",
        ),
        click.option(
            "--batch-size",
            "batch_size",
            type=click.IntRange(min=1),
            default=16,
            show_default=True,
            help="Digits per batch (--data digits).",
        ),
        click.option(
            "--lang",
            type=click.Choice(("en", "ko")),
            default="en",
            show_default=True,
            help="Language of the phase explanations.",
        ),
        click.option(
            "--history-mb",
            type=click.IntRange(min=1),
            default=512,
            show_default=True,
            help="Memory budget for rewind history.",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _check_data_options(kw: dict[str, Any]) -> None:
    """Options the chosen data ignores are an error, not silently dropped: digits batches are
    ``N×1×32×32`` images with class labels, and the random batch has no ``--batch-size``."""
    if kw["data"] == "digits":
        for option in ("input_shape", "target_shape"):
            if kw[option] is not None:
                raise click.UsageError(
                    f"--{option.replace('_', '-')} does not apply to --data digits: its "
                    "batches are N×1×32×32 images and their labels (N: --batch-size)"
                )
        return
    if _given("batch_size"):
        raise click.UsageError(
            "--batch-size applies to --data digits; the random batch's size is the first "
            "size of --input-shape"
        )


def _set_in(ctx: click.Context, name: str) -> bool:
    """Whether option ``name`` was given on this command's part of the line (not a default)."""
    return ctx.get_parameter_source(name) not in (None, click.core.ParameterSource.DEFAULT)


def _given(name: str) -> bool:
    """Whether option ``name`` was given, after the command or before it (``nntui --seed 5
    trace``), rather than left at its default."""
    ctx = click.get_current_context(silent=True)
    while ctx is not None:
        if _set_in(ctx, name):
            return True
        ctx = ctx.parent
    return False


def _with_group_options(kw: dict[str, Any]) -> dict[str, Any]:
    """``kw`` with the recipe options given before the command (``nntui --seed 5 trace``),
    which click hands to the group, not to the command: they used to be dropped silently."""
    ctx = click.get_current_context()
    parent = ctx.parent
    if parent is None:
        return kw
    out = dict(kw)
    for name, value in parent.params.items():
        if not _set_in(parent, name):
            continue
        mine = _set_in(ctx, name)
        if mine and kw[name] != value:
            option = next(p.opts[0] for p in ctx.command.params if p.name == name)
            raise click.UsageError(
                f"{option} is given both before and after {ctx.info_name} with different "
                "values: give it once"
            )
        out[name] = value
    return out


def make_recipe(**kw: Any) -> Any:
    """The recipe of the options; a user model is imported and built once here, so a bad
    ``--model`` is a one-line error (exit 2) before anything runs."""
    from engine.recipe import MODELS, Recipe

    _check_data_options(kw)
    loss = kw["loss"] or ("cross-entropy" if kw["num_classes"] is not None else "mse")
    recipe = Recipe(
        seed=kw["seed"],
        lr=kw["lr"],
        loss=loss,
        class_weights=kw["class_weights"],
        optimizer=kw["optimizer"],
        zero_grad=kw["zero_grad"],
        data=kw["data"],
        batch_size=kw["batch_size"],
        model=kw["model"],
        input_shape=kw["input_shape"],
        num_classes=kw["num_classes"],
        target_shape=kw["target_shape"],
    ).validate()
    if recipe.model not in MODELS:
        from engine.loader import check_model

        check_model(recipe.model)
    return recipe


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@recipe_options
@click.pass_context
def cli(ctx: click.Context, **kw: Any) -> None:
    """Step a real PyTorch training loop one phase per keypress.

    With no command, opens the app. Keys: space/n/→ next phase, ←/p rewind,
    a accumulate, r reset, ? help, q quit.
    """
    if ctx.invoked_subcommand is not None:
        return
    recipe = make_recipe(**kw)
    # Textual reads keys from stdin, draws on stderr and takes its size from stdout. Without a
    # terminal on stdin or stderr it drew escape codes into a file and waited for keys that
    # never come (`nntui < /dev/null` hung until killed); with stdout in a file it took the
    # 80×24 fallback size, the terminal then reported its real one, and the app spun at 100%
    # CPU on a blank screen.
    streams = {"stdin": sys.stdin, "stdout": sys.stdout, "stderr": sys.stderr}
    missing = [name for name, stream in streams.items() if not stream.isatty()]
    if missing:
        names = " and ".join([", ".join(missing[:-1]), missing[-1]] if missing[:-1] else missing)
        raise click.UsageError(
            f"the app needs a terminal ({names} {'is' if len(missing) == 1 else 'are'} not "
            "one); for a run without one, use nntui trace"
        )
    import asyncio

    from .app import NNTuiApp
    from .fdcapture import FdCapture

    # Before the app exists: Textual finds the terminal through sys.__stderr__ and
    # sys.__stdout__, which the capture points at copies of the terminal, while bytes your
    # code writes to descriptors 1 and 2 go to the phase's output instead of over the screen.
    with FdCapture():
        app = NNTuiApp(
            recipe,
            accumulate=kw["accumulate"],
            history_bytes=kw["history_mb"] * 2**20,
            lang=kw["lang"],
        )
        # Our own loop, not asyncio.run's: at the end asyncio.run waits for the worker thread,
        # and a phase stuck in user code (a forward that never returns) would hang quitting.
        loop = asyncio.new_event_loop()
        try:
            app.run(loop=loop)
        finally:
            loop.close()  # shuts the worker pool down without waiting for it
    code = app.return_code or 0
    if app.busy:
        # The phase is still running, and Python joins worker threads at exit: leave now.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


@cli.command()
@recipe_options
@click.option("--iterations", type=click.IntRange(min=0), default=1, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per phase, per line.")
def trace(iterations: int, as_json: bool, **kw: Any) -> None:
    """Run define and N iterations headless, printing every phase."""
    kw = _with_group_options(kw)
    # The user's file runs here once (import, build): with --json its prints go to stderr,
    # as they do in the phases, so stdout holds nothing but the JSON lines.
    with contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext():
        recipe = make_recipe(**kw)
    from .trace import run_trace

    sys.exit(
        run_trace(
            recipe,
            iterations=iterations,
            accumulate=kw["accumulate"],
            history_bytes=kw["history_mb"] * 2**20,
            as_json=as_json,
            lang=kw["lang"],
        )
    )


@cli.command()
@recipe_options
@click.option("--iterations", type=click.IntRange(min=0), default=10, show_default=True)
@click.option(
    "-o",
    "--output",
    "output",
    type=click.Path(dir_okay=False, writable=True, allow_dash=True),
    required=True,
    help="The .py file to write; - for stdout.",
)
def export(iterations: int, output: str, **kw: Any) -> None:
    """Write the recipe as a plain PyTorch script that prints each iteration's loss."""
    if not output.strip():
        raise click.UsageError("-o/--output is empty: give the .py file to write")
    kw = _with_group_options(kw)
    to_stdout = output == "-"
    # With -o -, stdout is the script and nothing else (``nntui export -o - > f.py``, ``| python``):
    # what the user's file prints while it is imported, built and run to infer the target goes
    # to stderr, as trace --json does.
    with contextlib.redirect_stdout(sys.stderr) if to_stdout else contextlib.nullcontext():
        recipe = make_recipe(**kw)
        from engine.export import export_script

        script = export_script(recipe, accumulate=kw["accumulate"], iterations=iterations)
    if to_stdout:
        # A full disk or a closed terminal: main reports the OSError; a closed pipe is quiet.
        sys.stdout.write(script)
        sys.stdout.flush()
        return
    from .jobs import write_whole

    try:
        write_whole(output, script)
    except OSError as exc:
        raise click.ClickException(f"cannot write {output}: {exc.strerror or exc}") from None
    click.echo(f"wrote {output}: {iterations} iteration(s); run it with python {output}")


# Set when a real ctrl-c (SIGINT) arrives. The user's code may be running when it does (a model
# file importing, a factory building): the loader reports whatever that code raises, its own
# ``raise KeyboardInterrupt`` included, as one line and exit 2, so only the signal itself tells
# a ctrl-c apart from a model that failed.
_CTRL_C = threading.Event()


def _on_ctrl_c(signum: int, frame: Any) -> None:
    _CTRL_C.set()
    signal.default_int_handler(signum, frame)  # raises KeyboardInterrupt, as Python's own


def main(argv: list[str] | None = None) -> None:
    """Entry point: usage and recipe errors become one line on stderr and exit code 2; a
    ctrl-c exits 130, whatever the code it interrupted made of it."""
    _CTRL_C.clear()
    previous = None
    # Only a handler Python installed is replaced: a SIGINT ignored by the parent (SIG_IGN)
    # stays ignored, and signal handlers can only be set from the main thread.
    if (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    ):
        previous = signal.signal(signal.SIGINT, _on_ctrl_c)
    try:
        _main(argv)
    except SystemExit as exc:
        if _CTRL_C.is_set() and exc.code not in (0, None):
            # trace's define phase reports an interrupted import as its error and exits 1.
            raise SystemExit(130) from None
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _main(argv: list[str] | None) -> None:
    from_engine: tuple[type[BaseException], ...] = ()
    if sys.stdout is None:
        # Started with stdout closed (``nntui trace >&-``): nowhere to print is like /dev/null.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
    try:
        rv = cli.main(args=argv, prog_name="nntui", standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as exc:
        _usage_error(exc.format_message())
    except OSError as exc:
        # Writing the output failed (stdout on a full disk, a terminal gone): click already
        # turns a closed pipe (``| head``) into a quiet exit 1; anything else says why.
        what = f"{exc.filename}" if exc.filename else "cannot write the output"
        click.echo(f"nntui: error: {what}: {exc.strerror or exc}", err=True)
        sys.exit(1)
    except Exception as exc:
        from engine.recipe import RecipeError

        from_engine = (RecipeError,)
        if isinstance(exc, from_engine):
            _usage_error(str(exc))
        raise
    sys.exit(rv if isinstance(rv, int) else 0)


def _usage_error(message: str) -> NoReturn:
    """One line and exit 2; after a ctrl-c (the model's import interrupted, say) exit 130
    without a line blaming the model."""
    if _CTRL_C.is_set():
        sys.exit(130)
    click.echo(f"nntui: error: {message}", err=True)
    sys.exit(2)


if __name__ == "__main__":
    main()
