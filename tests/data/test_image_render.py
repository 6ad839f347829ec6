"""Rendering grey-level images: a PNG grid of an exact size whose cells hold the right shades, and
ASCII shades with the expected lines."""

import matplotlib.image
import numpy as np
import pytest

from arlm.data.image_render import GAP_COLOR, PAD_PX, ascii_images, grid_size, save_image_grid
from arlm.data.images import digits
from arlm.errors import ConfigError, DataError


def _batch(count):
    images = digits("test").images[:count].copy()
    images[0] = 16  # all ink
    images[1] = 0  # all paper
    return images


def test_png_has_the_planned_size_and_the_right_shades(tmp_path):
    path = save_image_grid(tmp_path / "grid.png", _batch(25), columns=10, scale=4)
    png = matplotlib.image.imread(path)  # (H, W, 4) floats in 0..1
    # 3 rows, 10 columns of 8×8 with 1-pixel lines, ×4, plus a 4-pixel margin
    assert png.shape[:2] == (4 + (3 * 9 - 1) * 4 + 4, 4 + (10 * 9 - 1) * 4 + 4) == (112, 364)
    assert png.shape[:2] == grid_size(25, 8, 8, columns=10, scale=4)
    rgb = png[..., :3]
    assert rgb.std() > 0.1  # not a blank picture
    inside = PAD_PX + 2 * 4  # two image pixels into the first cell
    assert np.allclose(rgb[inside, inside], 0.0, atol=0.02)  # image 0: ink is black
    assert np.allclose(rgb[inside, inside + 9 * 4], 1.0, atol=0.02)  # image 1: paper is white
    assert np.allclose(rgb[inside, PAD_PX + 8 * 4 + 1], GAP_COLOR, atol=0.02)  # the line between them
    # an unused cell of the last row is filled like the lines
    assert np.allclose(rgb[inside + 2 * 9 * 4, inside + 9 * 9 * 4], GAP_COLOR, atol=0.02)  # row 2, column 9


def test_png_with_labels_and_title_is_larger_and_written_atomically(tmp_path):
    labels = ["raster", "hilbert"]
    path = save_image_grid(tmp_path / "sub" / "orders.png", _batch(8), columns=4, row_labels=labels,
                           title="pixel orders")
    png = matplotlib.image.imread(path)
    assert png.shape[:2] == grid_size(8, 8, 8, columns=4, row_labels=labels, title="pixel orders")
    assert png.shape[0] > grid_size(8, 8, 8, columns=4)[0] and png.shape[1] > grid_size(8, 8, 8, columns=4)[1]
    assert [p.name for p in path.parent.iterdir()] == ["orders.png"]  # no temporary file left
    assert path.stat().st_size < 20_000


def test_png_is_the_same_bytes_twice(tmp_path):
    a = save_image_grid(tmp_path / "a.png", _batch(6)).read_bytes()
    b = save_image_grid(tmp_path / "b.png", _batch(6)).read_bytes()
    assert a == b


def test_ascii_shades_by_hand():
    images = np.array([[[0, 8, 16]], [[16, 16, 0]]])  # two 1×3 images
    text = ascii_images(images, pixel_width=1, gap="|")
    assert text == " +@|@@"  # 0 -> ' ', 8 -> '+', 16 -> '@'; trailing spaces dropped
    assert ascii_images(images, labels=["a", "b"], pixel_width=2, gap=" ") == "a      b\n  ++@@ @@@@"


@pytest.mark.parametrize("count,columns,labels,lines", [
    (1, None, False, 8),
    (10, None, False, 8),
    (12, 5, False, 3 * 8 + 2),
    (12, 5, True, 3 * 9 + 2),
    (11, 10, True, 2 * 9 + 1),
])
def test_ascii_has_the_expected_number_of_lines(count, columns, labels, lines):
    images = digits("val").images[:count]
    names = [str(i) for i in range(count)] if labels else None
    text = ascii_images(images, columns=columns, labels=names)
    assert len(text.split("\n")) == lines
    assert max(len(line) for line in text.split("\n")) <= min(count, columns or 10) * 18


def test_ascii_of_no_images_is_empty():
    assert ascii_images(np.zeros((0, 8, 8), dtype=int)) == ""


@pytest.mark.parametrize("call,error,message", [
    (lambda p: save_image_grid(p, np.zeros((8, 8), dtype=int)), DataError, r"a batch \(N, H, W\)"),
    (lambda p: save_image_grid(p, np.full((2, 8, 8), 17)), DataError, "grey levels 0..16"),
    (lambda p: save_image_grid(p, np.zeros((0, 8, 8), dtype=int)), DataError, "no images to draw"),
    (lambda p: save_image_grid(p, np.zeros((6, 8, 8), dtype=int), columns=3, row_labels=["a"]), ConfigError,
     "the grid has 2 rows but 1 row labels"),
    (lambda p: save_image_grid(p, np.zeros((6, 8, 8), dtype=int), columns=0), ConfigError, "columns"),
    (lambda p: save_image_grid(p, np.zeros((6, 8, 8), dtype=int), scale=0), ConfigError, "scale"),
    (lambda p: ascii_images(np.zeros((2, 8, 8), dtype=int), labels=["a"]), ConfigError, "one label per"),
    (lambda p: ascii_images(np.full((2, 8, 8), 0.5)), DataError, "grey levels"),
])
def test_bad_input_is_one_clear_error(tmp_path, call, error, message):
    with pytest.raises(error, match=message):
        call(tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
