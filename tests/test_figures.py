"""query_points_figure: query points on the image, each point's attention map beside it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import convattn
from convattn.readout.grid import Grid

POINTS = [(3, 4), (20, 17), (31, 0)]
IMAGE = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def seed():
    torch.manual_seed(0)
    model = convattn.create_model("seed").eval()
    info = convattn.CheckpointInfo(arch="seed", model_config={}, classes=list("abcdefghij"),
                                   mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    return model, info


def _markers(ax):
    return [(line.get_ydata()[0], line.get_xdata()[0]) for line in ax.lines]


def test_the_figure_has_the_image_one_panel_per_point_and_a_colour_bar(seed):
    model, info = seed
    fig = convattn.query_points_figure(model, IMAGE, POINTS, info=info)
    image_ax, *panels, bar = fig.axes
    assert len(panels) == len(POINTS)
    assert _markers(image_ax) == POINTS
    assert [t.get_text() for t in image_ax.texts] == ["1", "2", "3"]
    assert np.array_equal(image_ax.images[0].get_array(), IMAGE)
    name, matrix = next(iter(convattn.attention_maps(model, info.prepare(IMAGE)).items()))
    side = int(matrix.shape[1] ** 0.5)
    grid = Grid(side, side)
    top = max(matrix[0, grid.index_of(p)].max().item() for p in POINTS)
    for ax, point in zip(panels, POINTS):
        assert _markers(ax) == [point]
        shown = ax.images[0]
        by_hand = convattn.query_row(model, info.prepare(IMAGE), name, grid.index_of(point))
        assert np.allclose(np.asarray(shown.get_array()), by_hand[0].reshape(side, side),
                           atol=1e-6)
        assert shown.get_extent() == [-0.5, 31.5, 31.5, -0.5]  # stretched over the image
        assert shown.get_clim() == pytest.approx((0.0, top))  # one scale for all panels
    assert bar.get_ylabel() == "attention"


def test_the_shipped_seed_checkpoint(tmp_path):
    model, info = convattn.load_checkpoint(convattn.shipped_checkpoint("seed"))
    model.eval()
    fig = convattn.query_points_figure(model, convattn.load_sample().images[0], [(17, 20)],
                                       info=info)
    assert len(fig.axes) == 3
    fig.savefig(tmp_path / "figure.png")
    assert (tmp_path / "figure.png").stat().st_size > 1000


def test_the_default_info_and_refusals(seed):
    model, _ = seed
    fig = convattn.query_points_figure(model, IMAGE, [(0, 0)])  # CIFAR-10 normalisation
    assert len(fig.axes) == 3
    with pytest.raises(ValueError, match="outside the 32x32 image"):
        convattn.query_points_figure(model, IMAGE, [(32, 0)])
    with pytest.raises(ValueError, match="no attention module 'nope'"):
        convattn.query_points_figure(model, IMAGE, [(0, 0)], module="nope")
    with pytest.raises(ValueError, match="at least one query point"):
        convattn.query_points_figure(model, IMAGE, [])
    with pytest.raises(ValueError, match="no attention module whose maps"):
        convattn.query_points_figure(convattn.create_model("seed-noattn").eval(), IMAGE,
                                     [(0, 0)])


@pytest.mark.parametrize("kind", ["biggan-pooled", "sdpa", "mha-4-heads"])
def test_a_foreign_network_on_a_wide_image_with_pooled_keys(kind):
    """Panels on the key grid (coarser for pooled keys), stretched over a 12x20 image; each
    is the mean of the heads' rows of the cell holding its point."""
    from test_foreign import make

    model = make(kind)
    info = convattn.CheckpointInfo(arch="card:x", model_config={}, classes=list("ab"),
                                   mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
                                   image_size=(12, 20))
    image = np.random.default_rng(1).integers(0, 256, (12, 20, 3), dtype=np.uint8)
    points = [(0, 0), (11, 19), (5, 13)]
    fig = convattn.query_points_figure(model, image, points, info=info)
    (name, a), = convattn.attention_maps(model, info.prepare(image)).items()  # (1, Nq, Nk)
    keys = (6, 10) if kind == "biggan-pooled" else (12, 20)
    assert a.shape[-1] == keys[0] * keys[1]
    panels = fig.axes[1:1 + len(points)]
    for ax, (r, c) in zip(panels, points):
        shown = np.asarray(ax.images[0].get_array())
        assert shown.shape == keys
        np.testing.assert_allclose(shown.ravel(), a[0, r * 20 + c].numpy(), atol=1e-6)
        assert ax.images[0].get_extent() == [-0.5, 19.5, 11.5, -0.5]
    assert _markers(fig.axes[0]) == points
    with pytest.raises(ValueError, match="outside the 12x20 image"):
        convattn.query_points_figure(model, image, [(12, 0)], info=info)


def test_the_download_bytes_are_png_svg_and_pdf_and_the_panels_are_the_rows():
    from test_foreign import make

    from appkit import downloads
    from convattn.readout import analysis
    from convattn.readout.figures import FORMATS, figure_bytes, points_figure

    model = make("nonlocal-embedded-subsampled")
    pixels = np.random.default_rng(2).integers(0, 256, (16, 24, 3), dtype=np.uint8)
    view = analysis.analyse(model, pixels, (0.5,) * 3, (0.25,) * 3).modules["block"]
    assert view.key_grid == (8, 12)
    points = [(3, 4), (15, 23)]
    rows = [analysis.query_view(view, p).row for p in points]
    fig = points_figure(pixels, rows, points, "block")
    for ax, row in zip(fig.axes[1:3], rows):
        assert np.array_equal(np.asarray(ax.images[0].get_array()), row)
    magic = {"png": b"\x89PNG\r\n\x1a\n", "pdf": b"%PDF"}
    for fmt in FORMATS:
        data = downloads.query_points(pixels, view, points, fmt)
        if fmt == "svg":
            assert b"<svg" in data[:1000]
        else:
            assert data.startswith(magic[fmt])
    with pytest.raises(ValueError, match="not 'gif'"):
        figure_bytes(fig, "gif")
    with pytest.raises(ValueError, match="2 points but 1 rows"):
        points_figure(pixels, rows[:1], points, "block")


def test_the_figure_of_the_example_sagan_network_shows_its_own_rows():
    """A foreign network (examples/sagan_cifar, opened from its card): each panel is the
    row its Self_Attn block computed for the cell holding the point."""
    import convattn

    card = Path(__file__).resolve().parents[1] / "examples" / "sagan_cifar" / "card.toml"
    model, info = convattn.open_model(card)
    image = convattn.load_sample().images[3]
    points = [(4, 4), (30, 17)]
    fig = convattn.query_points_figure(model, image, points, info=info)
    (rows,) = convattn.attention_maps(model, info.prepare(image)).values()  # (1, 64, 64)
    panels = [ax.images[0].get_array() for ax in fig.axes[1:1 + len(points)]]
    for (r, c), panel in zip(points, panels):
        cell = (r * 8 // 32) * 8 + c * 8 // 32
        assert np.allclose(np.asarray(panel), rows[0, cell].view(8, 8).numpy(), atol=1e-6)
