"""Layered output formats: PSD, OpenRaster and the PNG folder, written and read back.

Every writer is checked by reading its file back, with our reader and, for PSD and ORA,
with an independent one (psd-tools' own parser and compositor, zipfile + ElementTree),
so a bug shared by our writer and our reader cannot hide.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import numpy as np
import pytest
from layerlift.inference.errors import (
    BadRequest,
    CorruptImage,
    InputError,
    LayerLiftError,
    UnsupportedFormat,
)
from layerlift.inference.formats import ora as ora_module
from layerlift.inference.formats import output_kind, read_image, read_stack, write_stack
from layerlift.inference.formats.pngdir import read_png_dir, slug, write_png_dir
from layerlift.inference.layers import Layer, LayerStack
from PIL import Image

W, H = 40, 30
KINDS = ["stack.psd", "stack.psb", "stack.ora", "stack_dir/"]


def _soft_blob(h: int, w: int, rgb: tuple[int, int, int], seed: int) -> np.ndarray:
    """An object with an opaque core, soft edges and noisy colour, like a real layer."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    dist = np.hypot((yy - h / 2) / (h / 2), (xx - w / 2) / (w / 2))
    alpha = np.clip((1.0 - dist) * 3.0, 0, 1)
    pixels = np.zeros((h, w, 4), np.uint8)
    noise = rng.integers(-20, 21, (h, w, 3))
    pixels[..., :3] = np.clip(np.array(rgb) + noise, 0, 255)
    pixels[..., 3] = np.rint(alpha * 255)
    return pixels


def _layers(opaque_background: bool) -> list[Layer]:
    layers = []
    if opaque_background:
        gradient = np.zeros((H, W, 4), np.uint8)
        gradient[..., 0] = np.linspace(0, 255, W, dtype=np.uint8)[None, :]
        gradient[..., 1] = np.linspace(40, 200, H, dtype=np.uint8)[:, None]
        gradient[..., 2] = 90
        gradient[..., 3] = 255
        layers.append(Layer("background", gradient, meta={"role": "background"}))
    layers += [
        Layer("text: ÉTÉ 50%", _soft_blob(12, 18, (220, 30, 40), 1), 5, 7),
        Layer("日本語 🎨 hidden", _soft_blob(9, 9, (20, 40, 230), 2), 25, 2, visible=False),
        Layer("empty", np.zeros((0, 0, 4), np.uint8), 7, 9),
        # Runs off the right edge of the canvas, as a moved layer may.
        Layer("edge", _soft_blob(10, 12, (250, 250, 10), 3), 33, 18),
    ]
    return layers


@pytest.fixture
def stack() -> LayerStack:
    meta = {
        "backend": "classic",
        "seed": 7,
        "scores": [0.5, 1.25],
        "numpy_int": np.int64(3),
        "array": np.zeros(3),
        "nan": float("nan"),
        "source": Path("in.png"),
    }
    return LayerStack(W, H, _layers(True), meta)


@pytest.fixture
def clear_stack() -> LayerStack:
    """No background: the composite itself is partly transparent."""
    return LayerStack(W, H, _layers(False), {})


def _target(tmp_path: Path, kind: str) -> Path | str:
    # A folder target is spelled with its trailing '/': that is what makes it a folder.
    return f"{tmp_path / kind.rstrip('/')}/" if kind.endswith("/") else tmp_path / kind


def _premultiplied(pixels: np.ndarray) -> np.ndarray:
    values = pixels.astype(np.float64)
    return np.concatenate([values[..., :3] * values[..., 3:4] / 255.0, values[..., 3:4]], -1)


def assert_same_stack(expected: LayerStack, actual: LayerStack) -> None:
    want = expected.trimmed()
    assert (actual.width, actual.height) == (want.width, want.height)
    assert [layer.name for layer in actual.layers] == [layer.name for layer in want.layers]
    for a, b in zip(want.layers, actual.layers, strict=True):
        assert (b.x, b.y, b.width, b.height) == (a.x, a.y, a.width, a.height), a.name
        assert b.visible == a.visible, a.name
        np.testing.assert_array_equal(b.pixels, a.pixels, err_msg=a.name)
    np.testing.assert_array_equal(actual.composite(), expected.composite())


@pytest.mark.parametrize("kind", KINDS)
def test_round_trip_keeps_names_offsets_pixels_and_visibility(tmp_path, stack, kind):
    target = _target(tmp_path, kind)
    files = write_stack(stack, target)
    assert files and all(path.exists() for path in files)
    assert_same_stack(stack, read_stack(target))


@pytest.mark.parametrize("kind", KINDS)
def test_round_trip_of_a_stack_with_transparent_composite(tmp_path, clear_stack, kind):
    target = _target(tmp_path, kind)
    write_stack(clear_stack, target)
    assert_same_stack(clear_stack, read_stack(target))


@pytest.mark.parametrize("kind", ["stack.psd", "stack.ora"])
def test_flattened_file_reads_as_the_stack_composite(tmp_path, stack, clear_stack, kind):
    for source in (stack, clear_stack):
        target = tmp_path / kind
        write_stack(source, target)
        loaded = read_image(target)
        expected = source.composite()
        assert loaded.pixels.shape == expected.shape
        np.testing.assert_array_equal(loaded.pixels[..., 3], expected[..., 3])
        # PSD stores transparent colour matted over white, so faint pixels lose precision.
        diff = np.abs(_premultiplied(loaded.pixels) - _premultiplied(expected))
        assert diff.max() <= 1.0


# --- PSD, checked with psd-tools' own parser and compositor ----------------------------


def _psd(path: Path):
    from psd_tools import PSDImage

    return PSDImage.open(path)


def test_psd_structure_matches_what_photoshop_and_gimp_expect(tmp_path, stack):
    from psd_tools.constants import ChannelID, ColorMode, Tag

    path = tmp_path / "out.psd"
    write_stack(stack, path, group_name="LayerLift ☆ run 1")
    psd = _psd(path)
    assert (psd.width, psd.height, psd.depth) == (W, H, 8)
    assert psd.color_mode == ColorMode.RGB
    assert psd.channels == 3  # opaque composite: no merged alpha channel
    top = list(psd)
    assert len(top) == 1 and top[0].is_group()
    assert top[0].name == "LayerLift ☆ run 1"

    trimmed = stack.trimmed().layers
    psd_layers = list(top[0])
    assert [layer.name for layer in psd_layers] == [layer.name for layer in trimmed]
    for ours, theirs in zip(trimmed, psd_layers, strict=True):
        assert theirs.kind == "pixel"
        assert theirs.visible == ours.visible
        assert theirs.bbox == ours.bounds
        ids = [info.id for info in theirs._record.channel_info]
        assert ChannelID.TRANSPARENCY_MASK in ids, "alpha must be real transparency"
        assert ChannelID.USER_LAYER_MASK not in ids, "alpha must not be a layer mask"
        if ours.width:
            np.testing.assert_array_equal(np.asarray(theirs.topil()), ours.pixels)

    # In the file, records run bottom to top: the group's end marker, its layers, the group.
    records = psd._record.layer_and_mask_information.layer_info.layer_records
    names = [block.tagged_blocks.get_data(Tag.UNICODE_LAYER_NAME, block.name) for block in records]
    assert names == ["</Layer group>", *[layer.name for layer in trimmed], "LayerLift ☆ run 1"]


@pytest.mark.parametrize("transparent", [False, True])
def test_psd_composites_match_the_stack(tmp_path, stack, clear_stack, transparent):
    source = clear_stack if transparent else stack
    path = tmp_path / "out.psd"
    write_stack(source, path)
    psd = _psd(path)
    expected = source.composite()
    assert psd.has_preview()
    if transparent:
        # Fourth channel plus a negative layer count: the merged image's transparency.
        assert psd.channels == 4
        assert psd._record.layer_and_mask_information.layer_info.layer_count < 0
    stored = np.asarray(psd.composite().convert("RGBA"))
    rendered = np.asarray(psd.composite(ignore_preview=True).convert("RGBA"))
    for image in (stored, rendered):
        assert np.abs(image[..., 3].astype(int) - expected[..., 3]).max() <= 1
        assert np.abs(_premultiplied(image) - _premultiplied(expected)).max() <= 3.0


def _psd_tools_document(stack: LayerStack, group_name: str):
    """The document psd-tools itself builds for `stack` (what LayerLift wrote before it had
    its own encoder): the reference our bytes are held to."""
    from psd_tools import PSDImage
    from psd_tools.constants import Compression

    composite = stack.composite()
    transparent = bool((composite[..., 3] < 255).any())
    document = PSDImage.new("RGBA" if transparent else "RGB", (stack.width, stack.height))
    group = document.create_group(name="group")
    group.name = group_name
    for layer in stack.trimmed().layers:
        if layer.width and layer.height:
            made = group.create_pixel_layer_from_array(layer.pixels, name="x", top=layer.y,
                                                       left=layer.x)
        else:
            made = group.create_pixel_layer(Image.new("RGB", (0, 0)), name="x", top=layer.y,
                                            left=layer.x)
        made.name = layer.name[:255]
        made.visible = layer.visible
    record = document._record
    planes = [composite[..., c].astype(np.uint32) for c in range(3)]
    if transparent:
        info = record.layer_and_mask_information.layer_info
        info.layer_count = -abs(info.layer_count)
        alpha = composite[..., 3].astype(np.uint32)
        planes = [(p * alpha + 255 * (255 - alpha) + 127) // 255 for p in planes] + [alpha]
    record.image_data.compression = Compression.RLE
    record.image_data.set_data([p.astype(np.uint8).tobytes() for p in planes], record.header)
    buffer = io.BytesIO()
    record.write(buffer)
    return buffer.getvalue()


def _after_resources(data: bytes) -> bytes:
    """A PSD's bytes from the layer section on (the resources name the writing program)."""
    length = int.from_bytes(data[30:34], "big")
    return data[:26] + data[34 + length :]


@pytest.mark.parametrize("transparent", [False, True])
def test_psd_bytes_are_what_psd_tools_writes(tmp_path, stack, clear_stack, transparent,
                                             monkeypatch):
    """Our document structure is psd-tools' byte for byte: same records, blocks, padding.

    RLE is forced for every channel and done by psd-tools' PackBits encoder, which picks its
    packets a little differently from ours (both decode alike: see the PackBits test).
    """
    from layerlift.inference.formats import psd_write
    from psd_tools.compression import encode_rle

    source = clear_stack if transparent else stack
    source = LayerStack(source.width, source.height, [
        *source.layers,
        Layer("背景 " + "x" * 300, np.full((3, 4, 4), 9, np.uint8), 2, 3, visible=False),
        Layer("empty", np.zeros((0, 0, 4), np.uint8), 5, 5),
    ])
    monkeypatch.setattr(psd_write, "RLE_MIN_REPEATS", -1.0)
    monkeypatch.setattr(psd_write, "rle", lambda plane: encode_rle(
        np.ascontiguousarray(plane).tobytes(), plane.shape[1], plane.shape[0], 8, 1))
    write_stack(source, tmp_path / "ours.psd", group_name="Grp ☆")
    ours = (tmp_path / "ours.psd").read_bytes()
    assert _after_resources(ours) == _after_resources(_psd_tools_document(source, "Grp ☆"))


def test_packbits_decodes_to_the_channel():
    """Our vectorised PackBits, read back by psd-tools' decoder, for runs of every length."""
    from layerlift.inference.formats.psd_write import rle
    from psd_tools.compression import decompress
    from psd_tools.constants import Compression

    rng = np.random.default_rng(2)
    runs = np.repeat(rng.integers(0, 256, 400, dtype=np.uint8), rng.integers(1, 300, 400))
    cases = [
        rng.integers(0, 256, (9, 301), dtype=np.uint8),
        rng.integers(0, 3, (12, 257), dtype=np.uint8),
        runs[: 50 * 777].reshape(50, 777),
        np.zeros((3, 129), np.uint8),
        np.array([[7], [8]], np.uint8),
        np.array([[1, 1, 2, 3, 3, 3]], np.uint8),
    ]
    for plane in cases:
        height, width = plane.shape
        data = rle(plane)
        counts = np.frombuffer(data[: 2 * height], ">u2")
        assert counts.sum() == len(data) - 2 * height
        assert decompress(data, Compression.RLE, width, height, 8, 1) == plane.tobytes()
    flat = np.zeros((64, 4096), np.uint8)
    flat[:, 1000:3000] = 255
    # Per row: its byte count, then two bytes per run of up to 128 (8 + 16 + 9 runs).
    assert len(rle(flat)) == 64 * (2 + 2 * (8 + 16 + 9))


def test_psd_with_raw_and_rle_channels_reads_back(tmp_path):
    """Noisy channels are stored raw, flat ones RLE, in one layer: both read back exactly."""
    from layerlift.inference.formats import psd_write
    from psd_tools import PSDImage

    rng = np.random.default_rng(8)
    pixels = rng.integers(0, 256, (64, 80, 4), dtype=np.uint8)
    pixels[..., 3] = 255
    pixels[20:40, :, 1] = 7
    assert not psd_write.worth_rle(pixels[..., 0]) and psd_write.worth_rle(pixels[..., 3])
    flat = np.zeros((64, 80, 4), np.uint8)
    flat[10:30, 20:60] = (250, 0, 0, 255)
    layers = [Layer("noise", pixels), Layer("flat", flat)]
    path = tmp_path / "mixed.psd"
    write_stack(LayerStack(80, 64, layers), path)
    psd = PSDImage.open(path)
    data = psd._record.layer_and_mask_information.layer_info.channel_image_data
    kinds = {int(channel.compression) for record in data for channel in record}
    assert kinds == {psd_write.RAW, psd_write.RLE}
    back = read_stack(path)
    np.testing.assert_array_equal(back.layers[0].pixels, pixels)
    np.testing.assert_array_equal(back.layers[1].pixels, flat[10:30, 20:60])
    stored = np.asarray(psd.composite().convert("RGBA"))
    np.testing.assert_array_equal(stored, LayerStack(80, 64, layers).composite())


def test_psd_keeps_long_and_non_latin_names(tmp_path):
    long_name = "ÉTÉ " * 100
    layers = [
        Layer("背景", np.full((4, 4, 4), 255, np.uint8)),
        Layer(long_name, np.full((2, 2, 4), 128, np.uint8), 1, 1),
    ]
    path = tmp_path / "names.psd"
    write_stack(LayerStack(4, 4, layers), path)
    back = read_stack(path)
    assert back.layers[0].name == "背景"
    assert back.layers[1].name == long_name[:255]


def test_psd_from_another_app_with_opacity_and_a_hidden_group(tmp_path):
    from psd_tools import PSDImage

    document = PSDImage.new("RGB", (8, 6))
    red = np.zeros((2, 3, 4), np.uint8)
    red[...] = (255, 0, 0, 200)
    document.create_pixel_layer_from_array(red, name="faded", top=1, left=2, opacity=128)
    group = document.create_group(name="off")
    group.create_pixel_layer_from_array(red, name="inside", top=0, left=0)
    group.visible = False
    document.save(tmp_path / "other.psd")
    back = read_stack(tmp_path / "other.psd")
    assert [layer.name for layer in back.layers] == ["faded", "inside"]
    faded, inside = back.layers
    assert (faded.x, faded.y, faded.visible) == (2, 1, True)
    assert faded.pixels[0, 0, 3] == 100  # 200 * 128 / 255: the look, not the stored alpha
    assert inside.visible is False and "group_name" not in back.meta


def test_psd_refuses_canvas_beyond_the_format_limit(tmp_path):
    huge = LayerStack(30001, 2, [])
    with pytest.raises(BadRequest, match="30000"):
        write_stack(huge, tmp_path / "huge.psd")
    assert not (tmp_path / "huge.psd").exists()


# --- OpenRaster, checked with zipfile and ElementTree -----------------------------------


def test_ora_layout_follows_the_openraster_spec(tmp_path, stack):
    path = tmp_path / "out.ora"
    write_stack(stack, path, group_name="LayerLift ☆")
    raw = path.read_bytes()
    # `mimetype` first and stored, so its text sits at a fixed offset for file sniffers.
    assert raw[30:38] == b"mimetype" and raw[38:54] == b"image/openraster"
    with zipfile.ZipFile(path) as archive:
        first = archive.infolist()[0]
        assert first.filename == "mimetype" and first.compress_type == zipfile.ZIP_STORED
        assert archive.read("mimetype") == b"image/openraster"
        names = set(archive.namelist())
        assert {"stack.xml", "mergedimage.png", "Thumbnails/thumbnail.png"} <= names
        root = ET.fromstring(archive.read("stack.xml"))
        merged = Image.open(io.BytesIO(archive.read("mergedimage.png")))
        np.testing.assert_array_equal(np.asarray(merged), stack.composite())
        assert root.tag == "image" and (root.get("w"), root.get("h")) == (str(W), str(H))
        (group,) = list(root.find("stack"))
        assert group.tag == "stack" and group.get("name") == "LayerLift ☆"
        elements = list(group)
        trimmed = stack.trimmed().layers
        # Top layer first, as the spec requires.
        assert [e.get("name") for e in elements] == [layer.name for layer in reversed(trimmed)]
        for element, layer in zip(elements, reversed(trimmed), strict=True):
            assert (int(element.get("x")), int(element.get("y"))) == (layer.x, layer.y)
            assert element.get("visibility") == ("visible" if layer.visible else "hidden")
            png = Image.open(io.BytesIO(archive.read(element.get("src"))))
            if layer.width:
                assert png.size == (layer.width, layer.height)
                np.testing.assert_array_equal(np.asarray(png), layer.pixels)
            else:
                assert png.size == (1, 1) and np.asarray(png)[..., 3].max() == 0


def test_ora_survives_names_that_xml_cannot_hold(tmp_path):
    layers = [Layer("tab\tand\x01control", np.full((2, 2, 4), 255, np.uint8))]
    write_stack(LayerStack(2, 2, layers), tmp_path / "odd.ora", group_name="g\x02")
    back = read_stack(tmp_path / "odd.ora")
    assert back.layers[0].name == "tab\tand\ufffdcontrol"
    assert back.meta["group_name"] == "g\ufffd"


def test_ora_thumbnail_fits_256_pixels(tmp_path):
    wide = LayerStack(600, 150, [Layer("bg", np.full((150, 600, 4), 200, np.uint8))])
    path = tmp_path / "wide.ora"
    write_stack(wide, path)
    with zipfile.ZipFile(path) as archive:
        thumb = Image.open(io.BytesIO(archive.read("Thumbnails/thumbnail.png")))
    assert max(thumb.size) == 256 and thumb.size == (256, 64)


def test_ora_from_another_app_with_nested_stacks_and_full_canvas_layers(tmp_path):
    """Layers GIMP/Krita write untrimmed come back trimmed, hidden groups hide children."""
    canvas = np.zeros((10, 10, 4), np.uint8)
    canvas[2:4, 3:6] = (1, 2, 3, 255)
    png = io.BytesIO()
    Image.fromarray(canvas, "RGBA").save(png, format="PNG")
    xml = (
        '<image w="10" h="10"><stack>'
        '<stack name="hidden group" visibility="hidden">'
        '<layer src="data/a.png" name="inner" x="0" y="0"/></stack>'
        '<layer src="data/a.png" name="half" x="1" y="1" opacity="0.5"/>'
        "</stack></image>"
    )
    path = tmp_path / "other.ora"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("mimetype", "image/openraster")
        archive.writestr("stack.xml", xml)
        archive.writestr("data/a.png", png.getvalue())
    back = read_stack(path)
    assert [layer.name for layer in back.layers] == ["half", "inner"]
    half, inner = back.layers
    assert (inner.x, inner.y, inner.width, inner.height, inner.visible) == (3, 2, 3, 2, False)
    assert (half.x, half.y, half.visible) == (4, 3, True)
    assert half.pixels[0, 0, 3] == 128


# --- PNG folder ---------------------------------------------------------------------------


def test_png_dir_files_and_manifest(tmp_path, stack):
    folder = tmp_path / "result"
    files = write_png_dir(stack, folder)
    assert [path.name for path in files] == [
        "00_background.png",
        "01_text-ete-50.png",
        "02_hidden.png",
        "04_edge.png",
        "stack.json",
    ]
    manifest = json.loads((folder / "stack.json").read_text("utf-8"))
    assert (manifest["width"], manifest["height"]) == (W, H)
    entries = manifest["layers"]
    assert [entry["name"] for entry in entries] == [layer.name for layer in stack.layers]
    empty = entries[3]
    assert empty["file"] is None and (empty["x"], empty["y"]) == (7, 9)
    assert (empty["width"], empty["height"]) == (0, 0)
    assert entries[2]["visible"] is False
    assert entries[0]["meta"] == {"role": "background"}
    # Only the JSON-safe parts of the stack's meta, converted where a faithful form exists.
    assert manifest["meta"] == {
        "backend": "classic",
        "seed": 7,
        "scores": [0.5, 1.25],
        "numpy_int": 3,
        "source": "in.png",
    }
    for entry in entries[:3]:
        with Image.open(folder / entry["file"]) as png:
            assert png.size == (entry["width"], entry["height"])
    back = read_png_dir(folder)
    assert back.meta == manifest["meta"]
    assert back.layers[0].meta == {"role": "background"}


def test_png_dir_rewrite_removes_stale_layer_files(tmp_path, stack):
    folder = tmp_path / "result"
    write_stack(stack, f"{folder}/")
    (folder / "notes.txt").write_text("mine")
    smaller = LayerStack(W, H, stack.layers[:1], {})
    write_stack(smaller, folder)  # an existing folder needs no trailing '/'
    assert sorted(os.listdir(folder)) == [
        ".layerlift-folder.json", "00_background.png", "notes.txt", "stack.json"
    ]
    assert (folder / "notes.txt").read_text() == "mine"
    assert_same_stack(smaller, read_stack(folder))
    assert_same_stack(smaller, read_stack(folder / "stack.json"))


def test_png_dir_names_are_index_prefixed_slugs():
    assert slug("text: ÉTÉ 50%") == "text-ete-50"
    assert slug("日本語") == "layer"
    assert slug("A" * 80) == "a" * 40


def test_png_dir_manifest_cannot_reach_outside_its_folder(tmp_path, stack):
    folder = tmp_path / "result"
    write_stack(stack, f"{folder}/")
    manifest = json.loads((folder / "stack.json").read_text("utf-8"))
    manifest["layers"][0]["file"] = "../outside.png"
    (folder / "stack.json").write_text(json.dumps(manifest), "utf-8")
    with pytest.raises(CorruptImage, match="plain file name"):
        read_stack(folder)


def test_png_dir_detects_a_size_mismatch_and_a_missing_manifest(tmp_path, stack):
    folder = tmp_path / "result"
    write_stack(stack, f"{folder}/")
    Image.new("RGBA", (3, 3)).save(folder / "01_text-ete-50.png")
    with pytest.raises(CorruptImage, match="manifest says"):
        read_stack(folder)
    (folder / "stack.json").unlink()
    with pytest.raises(InputError, match=r"no stack\.json"):
        read_stack(folder)


# --- dispatch -----------------------------------------------------------------------------


def test_output_kind_follows_the_path(tmp_path):
    (tmp_path / "results.v2").mkdir()
    assert output_kind(tmp_path / "a.psd") == "psd"
    assert output_kind(tmp_path / "A.PSD") == "psd"
    assert output_kind(tmp_path / "a.psb") == "psb"
    assert output_kind(tmp_path / "a.ora") == "ora"
    assert output_kind(str(tmp_path / "out") + "/") == "dir"
    assert output_kind(tmp_path / "results.v2") == "dir"  # an existing folder
    with pytest.raises(BadRequest, match=r"OUT\.psd, OUT\.psb or OUT\.ora") as caught:
        output_kind(tmp_path / "a.xcf")
    assert caught.value.code == "bad_request"


@pytest.mark.parametrize(
    ("name", "needle"),
    [
        ("out", "does not end in '/'"),  # a new name without suffix is not guessed a folder
        (".psd", "no name before its suffix"),  # never a hidden folder '.psd/'
        (".ORA", "no name before its suffix"),
        ("", "empty"),
        ("  ", "empty"),
    ],
)
def test_output_kind_refuses_what_is_not_explicit(tmp_path, monkeypatch, name, needle):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(BadRequest, match=needle) as caught:
        output_kind(name)
    assert "OUT.psd" in caught.value.message or "picture." in caught.value.message \
        or "empty" in caught.value.message
    assert os.listdir(tmp_path) == []


def test_an_existing_folder_named_like_a_file_is_refused(tmp_path):
    (tmp_path / "out.psd").mkdir()
    with pytest.raises(BadRequest, match=r"existing folder, not a \.psd file"):
        output_kind(tmp_path / "out.psd")
    assert output_kind(f"{tmp_path / 'out.psd'}/") == "dir"  # said explicitly


def test_a_device_is_not_an_output():
    with pytest.raises(BadRequest, match="character device"):
        output_kind("/dev/null")


def test_write_stack_creates_missing_parent_folders(tmp_path, stack):
    target = tmp_path / "deep" / "er" / "out.psd"
    assert write_stack(stack, target) == [target]
    assert_same_stack(stack, read_stack(target))


def test_read_stack_errors_are_coded(tmp_path):
    with pytest.raises(InputError, match="no such"):
        read_stack(tmp_path / "missing.psd")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(UnsupportedFormat):
        read_stack(tmp_path / "notes.txt")
    (tmp_path / "bad.psd").write_bytes(os.urandom(100))
    with pytest.raises(CorruptImage):
        read_stack(tmp_path / "bad.psd")
    (tmp_path / "cut.psd").write_bytes(b"8BPS\x00\x01" + bytes(40))
    with pytest.raises(CorruptImage):
        read_stack(tmp_path / "cut.psd")
    (tmp_path / "bad.ora").write_bytes(b"PK\x03\x04" + os.urandom(60))
    with pytest.raises(CorruptImage):
        read_stack(tmp_path / "bad.ora")
    with zipfile.ZipFile(tmp_path / "plain.ora", "w") as archive:
        archive.writestr("readme.txt", "not openraster")
    with pytest.raises(CorruptImage, match="mimetype"):
        read_stack(tmp_path / "plain.ora")


def test_deeply_nested_ora_is_refused(tmp_path):
    xml = '<image w="2" h="2"><stack>' + "<stack>" * 100 + "</stack>" * 100 + "</stack></image>"
    with zipfile.ZipFile(tmp_path / "deep.ora", "w") as archive:
        archive.writestr("mimetype", "image/openraster")
        archive.writestr("stack.xml", xml)
    with pytest.raises(CorruptImage, match="deep"):
        read_stack(tmp_path / "deep.ora")


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("name", ["damaged.psd", "damaged.ora"])
def test_damaged_layer_files_only_raise_coded_errors(tmp_path, stack, name):
    """Cut and bit-flipped PSD/ORA files: a coded error or a stack, never a raw exception."""
    good = tmp_path / f"good{Path(name).suffix}"
    write_stack(stack, good)
    data = good.read_bytes()
    rng = np.random.default_rng(5)
    variants = [data[:cut] for cut in (10, 30, 200, len(data) // 2, len(data) - 5)]
    for _ in range(8):
        flipped = bytearray(data)
        for index in rng.integers(40, len(data), 6):
            flipped[index] ^= 0x5A
        variants.append(bytes(flipped))
    path = tmp_path / name
    for variant in variants:
        path.write_bytes(variant)
        try:
            back = read_stack(path)
        except LayerLiftError as error:
            assert error.code in ("corrupt_image", "image_too_large", "unsupported_format")
        else:
            assert back.width == W and back.height == H


# --- atomic writes --------------------------------------------------------------------


def _no_temp_files(folder: Path) -> bool:
    return not [name for name in os.listdir(folder) if name.endswith(".tmp")]


def test_psd_write_failure_leaves_the_old_file(tmp_path, stack, monkeypatch):
    from layerlift.inference.formats import psd_write

    target = tmp_path / "out.psd"
    target.write_bytes(b"previous result")

    def crash(stack, composite, group_name, handle):
        handle.write(b"8BPS half a file")
        raise OSError("disk full")

    monkeypatch.setattr(psd_write, "write_document", crash)
    with pytest.raises(OSError, match="disk full"):
        write_stack(stack, target)
    assert target.read_bytes() == b"previous result"
    assert _no_temp_files(tmp_path)


def test_ora_write_failure_leaves_the_old_file(tmp_path, stack, monkeypatch):
    target = tmp_path / "out.ora"
    write_stack(stack, target)
    before = target.read_bytes()
    real = ora_module._png_bytes
    calls = []

    def flaky(pixels):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("encoder crashed")
        return real(pixels)

    monkeypatch.setattr(ora_module, "_png_bytes", flaky)
    with pytest.raises(RuntimeError, match="encoder crashed"):
        write_stack(LayerStack(W, H, stack.layers[:4]), target)
    assert target.read_bytes() == before
    assert _no_temp_files(tmp_path)


def test_png_dir_write_failure_leaves_the_old_result(tmp_path, stack, monkeypatch):
    folder = tmp_path / "result"
    write_stack(stack, f"{folder}/")
    before = {name: (folder / name).read_bytes() for name in os.listdir(folder)}
    from layerlift.inference.formats import fastpng

    real_write = fastpng.write_png
    calls = []

    def flaky(pixels, handle):
        calls.append(1)
        if len(calls) == 2:
            handle.write(b"\x89PNG half")
            raise OSError("disk full")
        return real_write(pixels, handle)

    monkeypatch.setattr(fastpng, "write_png", flaky)
    changed = LayerStack(W, H, [Layer("new", np.full((5, 5, 4), 9, np.uint8)), *stack.layers])
    with pytest.raises(OSError, match="disk full"):
        write_stack(changed, folder)
    monkeypatch.undo()
    after = {name: (folder / name).read_bytes() for name in os.listdir(folder)}
    assert after == before
    assert_same_stack(stack, read_stack(folder))


# --- a real GIMP 3 opens what we write ---------------------------------------------------


GIMP_SNIPPET = """
from gi.repository import Gimp, Gio
for name in NAMES:
    image = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(FOLDER + name))
    print("LL", name, len(image.get_channels()))
    def walk(items, depth):
        for item in items:
            ok, x, y = item.get_offsets()
            print("LL", depth, repr(item.get_name()), x, y, item.get_width(), item.get_height(),
                  item.get_visible())
            if item.is_group():
                walk(item.get_children(), depth + 1)
    walk(image.get_layers(), 0)
"""


@pytest.mark.gimp
def test_gimp_loads_our_psd_and_ora(request, clear_stack, gimp3):
    # The chroot bind-mounts the folder at the same path; keep it short and outside pytest's.
    folder = Path(tempfile.mkdtemp(prefix="layerlift-gimp-"))
    request.addfinalizer(lambda: shutil.rmtree(folder, ignore_errors=True))
    names = ["s.psd", "s.ora"]
    for name in names:
        write_stack(clear_stack, folder / name, group_name="LayerLift ☆")
    snippet = f"NAMES = {names!r}\nFOLDER = {str(folder) + '/'!r}\n" + GIMP_SNIPPET
    run = subprocess.run(
        [str(gimp3.run), "-B", str(folder), "-t", "120", "-"],
        input=snippet,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    lines = [line[3:] for line in run.stdout.splitlines() if line.startswith("LL ")]
    trimmed = clear_stack.trimmed().layers
    for name in names:
        start = lines.index(f"{name} 0")  # loads with no stray channels
        group = lines[start + 1]
        assert group.startswith("0 'LayerLift ☆'")
        for line, layer in zip(lines[start + 2 :], reversed(trimmed), strict=False):
            depth, rest = line.split(" ", 1)
            assert depth == "1" and rest.startswith(repr(layer.name))
            x, y, w, h, visible = rest[len(repr(layer.name)) + 1 :].split()
            if layer.width:  # GIMP turns empty layers into 1x1 or full-canvas ones
                assert (int(x), int(y)) == (layer.x, layer.y)
                assert (int(w), int(h)) == (layer.width, layer.height)
            assert visible == str(layer.visible)


@pytest.mark.parametrize("kind", [0, 1, 2])
@pytest.mark.parametrize("level", [0, 1])
def test_fast_png_reads_back_exactly_with_every_filter(kind, level, monkeypatch):
    from layerlift.inference.formats import fastpng

    rng = np.random.default_rng(kind)
    pixels = rng.integers(0, 256, (fastpng.BLOCK_ROWS + 37, 29, 4), dtype=np.uint8)
    pixels[40:90, 5:20] = (10, 20, 30, 0)
    monkeypatch.setattr(fastpng, "choose", lambda _: (kind, level))
    back = np.asarray(Image.open(io.BytesIO(fastpng.encode_png(pixels))))
    assert back.shape == pixels.shape and Image.open(
        io.BytesIO(fastpng.encode_png(pixels))).mode == "RGBA"
    np.testing.assert_array_equal(back, pixels)


def test_fast_png_stores_noise_and_deflates_flat_pictures():
    from layerlift.inference.formats import fastpng

    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (300, 200, 4), dtype=np.uint8)
    assert fastpng.choose(noise)[1] == 0
    flat = np.zeros((300, 200, 4), np.uint8)
    flat[50:250, 30:170] = (200, 30, 30, 255)
    assert fastpng.choose(flat)[1] == 1
    assert len(fastpng.encode_png(flat)) < flat.nbytes // 50
    assert len(fastpng.encode_png(noise)) < noise.nbytes * 1.01


def test_fast_png_deflated_in_bands_is_one_valid_stream(monkeypatch):
    """Bands deflated on several threads join into one zlib stream with the right Adler-32."""
    import zlib

    from layerlift.inference import compose
    from layerlift.inference.formats import fastpng

    monkeypatch.setattr(compose, "WORKERS", 3)
    monkeypatch.setattr(fastpng, "BLOCK_ROWS", 16)
    yy, xx = np.mgrid[0:131, 0:57]
    pixels = np.stack([xx * 4, yy, (xx + yy) % 7, np.full_like(xx, 255)], -1).astype(np.uint8)
    assert fastpng.choose(pixels)[1] == 1
    data = fastpng.encode_png(pixels)
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data))), pixels)
    # zlib itself checks the joined stream and its Adler-32 (Pillow does not).
    idat, offset = b"", 8
    while offset < len(data):
        length = int.from_bytes(data[offset : offset + 4], "big")
        if data[offset + 4 : offset + 8] == b"IDAT":
            idat += data[offset + 8 : offset + 8 + length]
        offset += 12 + length
    assert len(zlib.decompress(idat)) == 131 * (1 + 57 * 4)
