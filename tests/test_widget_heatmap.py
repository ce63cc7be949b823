"""TensorView: colours follow signs, NaN/Inf are marked, conv weights become kernel grids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from textual.app import App, ComposeResult

from engine import Session
from tui.widgets.heatmap import (
    GAP,
    INF,
    INF_RGB,
    NAN,
    NAN_RGB,
    ZERO,
    HeatmapCanvas,
    TensorView,
    layout_tensor,
)

STYLES = Path(__file__).resolve().parents[1] / "tui" / "styles" / "heatmap.tcss"
SIZE = (100, 30)


class ViewApp(App):
    CSS_PATH = STYLES

    def compose(self) -> ComposeResult:
        yield TensorView(id="view")


def pixel_rgb(canvas: HeatmapCanvas, row: int, col: int) -> tuple[int, int, int] | None:
    """The colour the terminal shows for pixel (row, col), read back from the rendered line."""
    strip = canvas.render_line(row // 2)
    x = 0
    for seg in strip:
        if x + len(seg.text) > col:
            char = seg.text[col - x]
            style = seg.style
            break
        x += len(seg.text)
    else:
        raise AssertionError(f"column {col} beyond the line")
    top = row % 2 == 0
    if char == "▀":
        color = style.color if top else style.bgcolor
    elif char == "▄":
        color = style.bgcolor if top else style.color
    else:
        color = style.bgcolor
    return None if color is None else color.triplet


def sign_of(rgb: tuple[int, int, int]) -> int:
    r, _, b = rgb
    return (r > b) - (r < b)


def tutorial_conv1_weight() -> torch.Tensor:
    """Plain PyTorch: the seeded construction order of DESIGN.md, first layer of Net."""
    torch.manual_seed(0)
    return torch.nn.Conv2d(1, 6, 5).weight.detach()


async def test_small_matrix_colours_follow_signs() -> None:
    values = np.array([[1.0, -2.0, 0.0], [-0.5, 3.0, -1.0]])
    async with ViewApp().run_test(size=SIZE) as pilot:
        view = pilot.app.query_one(TensorView)
        view.show("w", values, "tensor[2, 3]")
        await pilot.pause()
        canvas = view.canvas
        layout = canvas.heatmap
        assert layout is not None and layout.reduce == (1, 1)
        k = layout.upscale
        assert k > 1  # a 2×3 tensor is enlarged to be readable
        for (r, c), v in np.ndenumerate(values):
            rgb = pixel_rgb(canvas, r * k, c * k)
            assert rgb is not None
            assert sign_of(rgb) == int(np.sign(v)), (r, c, v, rgb)
        # Symmetric scale: the largest |x| (3.0) is the deepest red; −2 is a lighter blue.
        assert layout.scale == 3.0
        assert layout.codes[k, k] == 2 * ZERO  # 3.0 → top of the ramp
        assert 0 < layout.codes[0, k] < ZERO
        legend = str(view.query_one("#tensor-legend").render())
        assert "-3" in legend and "3" in legend


async def test_nan_and_inf_are_marked_and_counted() -> None:
    values = np.array([0.5, float("nan"), -0.25, float("inf"), float("nan")])
    async with ViewApp().run_test(size=SIZE) as pilot:
        view = pilot.app.query_one(TensorView)
        view.show("activation", values, "tensor[5]")
        await pilot.pause()
        layout = view.canvas.heatmap
        assert layout is not None
        assert (layout.nans, layout.infs) == (2, 1)
        k = layout.upscale
        assert pixel_rgb(view.canvas, 0, 1 * k) == NAN_RGB
        assert pixel_rgb(view.canvas, 0, 3 * k) == INF_RGB
        assert sign_of(pixel_rgb(view.canvas, 0, 0)) == 1
        assert sign_of(pixel_rgb(view.canvas, 0, 2 * k)) == -1
        # The scale ignores the non-finite values.
        assert layout.scale == 0.5
        summary = str(view.query_one("#tensor-summary").render())
        assert "NaN×2" in summary and "Inf×1" in summary


def test_downsampling_never_hides_a_nan() -> None:
    values = np.ones((120, 400))
    values[57, 311] = np.nan
    layout = layout_tensor(values, 40, 20)
    assert layout.codes.shape[1] <= 40 and layout.codes.shape[0] <= 20
    assert (layout.codes == NAN).sum() == 1
    assert layout.nans == 1 and INF not in layout.codes


def test_block_mean_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    values = rng.standard_normal((8, 12))
    layout = layout_tensor(values, 6, 4)  # forces 2×2 blocks
    assert layout.reduce == (2, 2) and layout.codes.shape == (4, 6)
    means = values.reshape(4, 2, 6, 2).mean(axis=(1, 3))
    assert np.array_equal(np.sign(layout.codes.astype(int) - ZERO), np.sign(means))


async def test_conv_weight_is_a_grid_of_kernels_matching_torch() -> None:
    session = Session()
    session.run_next()  # define
    weight = session.tensor("conv1.weight")
    assert weight is not None
    assert torch.equal(weight, tutorial_conv1_weight())
    async with ViewApp().run_test(size=SIZE) as pilot:
        view = pilot.app.query_one(TensorView)
        view.show("conv1.weight", weight.numpy(), "tensor[6, 1, 5, 5]")
        await pilot.pause()
        layout = view.canvas.heatmap
        assert layout is not None and layout.reduce == (1, 1)
        k = layout.upscale
        codes = layout.codes[::k, ::k]
        # 6 out × 1 in tiles of 5×5 with one gap row between kernels.
        assert codes.shape == (6 * 5 + 5, 5)
        w = weight.numpy()
        for o in range(6):
            tile = codes[o * 6 : o * 6 + 5, :]
            assert np.array_equal(np.sign(tile.astype(int) - ZERO), np.sign(w[o, 0]))
            if o < 5:
                assert (codes[o * 6 + 5] == GAP).all()
        # And the rendered pixels agree with the codes.
        assert sign_of(pixel_rgb(view.canvas, 0, 0)) == int(np.sign(w[0, 0, 0, 0]))


def _runs(mask: np.ndarray) -> int:
    """How many runs of True in a 1-D mask."""
    return int(np.count_nonzero(np.diff(np.concatenate([[0], mask.astype(int)])) == 1))


async def test_conv2_weight_has_out_by_in_tiles() -> None:
    session = Session()
    session.run_next()
    weight = session.tensor("conv2.weight")
    assert weight is not None
    async with ViewApp().run_test(size=SIZE) as pilot:
        view = pilot.app.query_one(TensorView)
        view.show("conv2.weight", weight.numpy(), "tensor[16, 6, 5, 5]")
        await pilot.pause()
        layout = view.canvas.heatmap
        assert layout is not None
        filled = layout.codes != GAP
        assert _runs(filled.any(axis=1)) == 16  # kernel rows = out channels
        assert _runs(filled.any(axis=0)) == 6  # kernel columns = in channels
        assert "16×6 kernels 5×5" in str(view.query_one("#tensor-legend").render())
        # Taller than the pane: the canvas scrolls instead of squashing the kernels.
        assert view.canvas.virtual_size.height == layout.height > view.canvas.size.height


async def test_large_matrix_fits_the_widget() -> None:
    values = np.random.default_rng(1).standard_normal((120, 400))
    async with ViewApp().run_test(size=SIZE) as pilot:
        view = pilot.app.query_one(TensorView)
        view.show("fc1.weight", values, "tensor[120, 400]")
        await pilot.pause()
        canvas = view.canvas
        layout = canvas.heatmap
        assert layout is not None
        region = canvas.scrollable_content_region
        assert layout.width <= region.width and layout.height <= region.height
        assert layout.reduce[0] > 1 and layout.reduce[1] > 1


async def test_none_shows_grad_is_none() -> None:
    async with ViewApp().run_test(size=SIZE) as pilot:
        view = pilot.app.query_one(TensorView)
        view.show("conv1.bias.grad", None, "grad=None")
        await pilot.pause()
        canvas = view.canvas
        assert canvas.heatmap is None
        lines = [canvas.render_line(y).text for y in range(canvas.size.height)]
        assert any("grad is None" in line for line in lines)
        assert str(view.query_one("#tensor-legend").render()) == ""
        # Showing a real tensor afterwards replaces the message.
        view.show("conv1.bias", np.array([1.0, -1.0]), "tensor[2]")
        await pilot.pause()
        lines = [canvas.render_line(y).text for y in range(canvas.size.height)]
        assert not any("grad is None" in line for line in lines)


async def test_resize_relayouts() -> None:
    values = np.random.default_rng(2).standard_normal((30, 300))
    async with ViewApp().run_test(size=SIZE) as pilot:
        view = pilot.app.query_one(TensorView)
        view.show("x", values, "")
        await pilot.pause()
        wide = view.canvas.heatmap
        await pilot.resize_terminal(50, 20)
        await pilot.pause()
        narrow = view.canvas.heatmap
        assert wide is not None and narrow is not None
        assert narrow.width < wide.width <= 100
        assert narrow.width <= view.canvas.scrollable_content_region.width


def test_a_wide_short_activation_is_laid_out_without_huge_padding() -> None:
    """(2, 3, 10^6) as one sample's maps: square blocks of 12,500 used to pad each 3-row map
    to 12,500 rows (a MemoryError asking for 186 GiB). Each drawn block is still the mean of
    the finite values under it, and a NaN anywhere still shows."""
    rng = np.random.default_rng(1)
    values = rng.standard_normal((2, 3, 1_000_000)).astype(np.float32)
    values[1, 2, 999_999] = np.nan
    layout = layout_tensor(values, 80, 40, maps=True)
    fy, fx = layout.reduce
    assert fy == 3 and "3×" in layout.note  # the block as drawn: a map's three rows
    assert layout.nans == 1 and (layout.codes == NAN).sum() == 1
    # Map 0, first block: every row (3 < fy) of the first fx columns.
    mean = values[0, :, :fx].astype(np.float64).mean()
    assert np.sign(int(layout.codes[0, 0]) - ZERO) == np.sign(mean)
    small = rng.standard_normal((1, 2, 3, 50))
    tall = layout_tensor(small, 40, 40, maps=True)  # blocks no taller than a map: unchanged
    assert tall.codes.shape[0] <= 40
