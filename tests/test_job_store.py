"""The job store's result format: exact round trips, atomic saves, restarts, damaged files."""

from __future__ import annotations

import io
import json
import os
import zlib

import numpy as np
import pytest
from layerlift.inference.errors import CorruptImage, InputError
from layerlift.inference.formats import layerfile, resultdir
from layerlift.inference.formats.pngdir import write_png_dir
from layerlift.inference.job_store import RECORD_FILE, RESULT_DIR, STACK_DIR, JobStore
from layerlift.inference.jobs import JobRunner, ResultUnavailable
from layerlift.inference.layers import Layer, LayerStack

JOB = "0123456789abcdef"


@pytest.fixture
def small_bands(monkeypatch):
    """Bands of a few rows, so that small test layers have many, of both codecs."""
    monkeypatch.setattr(layerfile, "BAND_BYTES", 4096)
    monkeypatch.setattr(layerfile, "PROBE_BYTES", 512)


def _noise(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(1, 256, (height, width, 4), np.uint8)


def _stack() -> LayerStack:
    """Flat, noisy, half-and-half, empty, 1 x 1 and offset layers, with meta of all kinds."""
    flat = np.zeros((60, 90, 4), np.uint8)
    flat[5:50, 3:80] = (200, 30, 40, 255)
    mixed = _noise(64, 70, 1)
    mixed[:32] = (10, 20, 30, 128)  # flat top half (deflated bands), noisy bottom (raw)
    dot = np.array([[[1, 2, 3, 4]]], np.uint8)
    layers = [
        Layer("background", flat, meta={"role": "background", "colour": [200, 30, 40]}),
        Layer("texture: ÉTÉ 50%", _noise(40, 33, 2), x=-5, y=7, visible=False),
        Layer("mixed", mixed, x=10, y=3, meta={"score": 0.25, "bad": float("nan")}),
        Layer("nothing", np.zeros((20, 20, 4), np.uint8), x=4, y=4),
        Layer("dot", dot, x=89, y=59),
    ]
    return LayerStack(90, 60, layers, {"backend": "test", "psnr": 41.5, "skip": object()})


def _assert_same(back: LayerStack, stack: LayerStack) -> None:
    """`back` is `stack` trimmed, with meta as JSON keeps it."""
    from layerlift.inference.formats.manifest import json_safe

    trimmed = stack.trimmed()
    assert (back.width, back.height) == (trimmed.width, trimmed.height)
    assert back.meta == json_safe(trimmed.meta)
    assert len(back.layers) == len(trimmed.layers)
    for got, want in zip(back.layers, trimmed.layers, strict=True):
        assert (got.name, got.x, got.y, got.visible) == (want.name, want.x, want.y, want.visible)
        assert got.meta == json_safe(want.meta)
        assert got.pixels.dtype == np.uint8 and got.pixels.shape == want.pixels.shape
        np.testing.assert_array_equal(got.pixels, want.pixels)


@pytest.mark.parametrize("bands", ["default", "small"])
def test_round_trip_is_exact(tmp_path, request, bands):
    if bands == "small":
        request.getfixturevalue("small_bands")
    stack = _stack()
    store = JobStore(tmp_path)
    store.save({"id": JOB}, stack)
    back = store.read_result(JOB)
    _assert_same(back, stack)
    assert back.layers[3].pixels.shape == (0, 0, 4)
    assert back.layers[4].pixels.shape == (1, 1, 4)
    manifest = json.loads((tmp_path / JOB / RESULT_DIR / resultdir.MANIFEST).read_text())
    assert [entry["file"] for entry in manifest["layers"]] == [
        "000.layer", "001.layer", "002.layer", None, "004.layer"]


def test_both_codecs_are_used_where_they_pay(small_bands):
    mixed = _noise(64, 70)
    mixed[:32] = (10, 20, 30, 128)
    handle = io.BytesIO()
    layerfile.write_layer(mixed, handle)
    handle.seek(0)
    _w, _h, _rows, entries = layerfile.read_header(handle, "test", 10**6)
    codecs = [codec for codec, _crc, _size in entries]
    assert codecs[0] == layerfile.ZLIB and codecs[-1] == layerfile.RAW
    handle.seek(0)
    np.testing.assert_array_equal(layerfile.read_layer(handle, "test", 10**6), mixed)


def test_flat_layers_take_little_room(tmp_path):
    canvas = np.zeros((512, 512, 4), np.uint8)
    canvas[...] = (240, 230, 200, 255)
    written = resultdir.write_result_dir(LayerStack(512, 512, [Layer("bg", canvas)]),
                                         tmp_path / "r")
    assert written < canvas.nbytes / 50


def test_results_survive_a_restart(tmp_path):
    stack = _stack()
    JobStore(tmp_path).save({"id": JOB, "state": "done", "finished": 1.0}, stack)
    again = JobStore(tmp_path)
    assert [record["id"] for record in again.load_records()] == [JOB]
    _assert_same(again.read_result(JOB), stack)


def test_a_crash_mid_write_leaves_nothing_under_the_id(tmp_path, monkeypatch):
    store = JobStore(tmp_path)
    calls = []

    def failing(pixels, handle):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(pixels, handle)

    real = layerfile.write_layer
    monkeypatch.setattr(resultdir, "write_layer", failing)
    with pytest.raises(OSError, match="No space"):
        store.save({"id": JOB}, _stack())
    assert list(tmp_path.iterdir()) == []

    monkeypatch.setattr(resultdir, "write_layer", real)
    first = LayerStack(4, 4, [Layer("first", _noise(4, 4))])
    store.save({"id": JOB}, first)
    monkeypatch.setattr(resultdir, "write_layer", failing)
    calls.clear()
    with pytest.raises(OSError):
        store.save({"id": JOB}, _stack())
    # The earlier result under that id is untouched, and no temporary is left.
    assert sorted(p.name for p in tmp_path.iterdir()) == [JOB]
    _assert_same(store.read_result(JOB), first)


def test_a_killed_write_is_cleaned_up_at_start(tmp_path):
    # What a process killed during `save` leaves: a temporary folder, half written.
    half = tmp_path / f".tmp-{JOB}-1a2b3c4d"
    half.mkdir()
    resultdir.write_result_dir(_stack(), half / RESULT_DIR)
    (half / RESULT_DIR / resultdir.MANIFEST).unlink()
    store = JobStore(tmp_path)
    assert list(tmp_path.iterdir()) == []
    assert store.load_records() == []


def test_old_png_results_are_still_read(tmp_path):
    stack = _stack()
    folder = tmp_path / JOB
    folder.mkdir()
    write_png_dir(stack.trimmed(), folder / STACK_DIR)
    (folder / RECORD_FILE).write_text(json.dumps({"id": JOB, "state": "done"}))
    _assert_same(JobStore(tmp_path).read_result(JOB), stack)


def _saved(tmp_path) -> tuple[JobStore, object]:
    store = JobStore(tmp_path)
    store.save({"id": JOB}, _stack())
    return store, tmp_path / JOB / RESULT_DIR


def _flip(path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "001.layer").write_bytes((d / "001.layer").read_bytes()[:-100]),
         "cut short"),
        (lambda d: (d / "001.layer").write_bytes((d / "001.layer").read_bytes()[:20]),
         "cut short"),
        (lambda d: _flip(d / "001.layer", -10), "checksum"),  # a raw (noisy) band
        (lambda d: _flip(d / "000.layer", -10), "checksum"),  # a deflated (flat) band
        (lambda d: _flip(d / "000.layer", 12), "damaged header"),
        (lambda d: _flip(d / "000.layer", 0), "not a LayerLift layer file"),
        (lambda d: (d / "002.layer").unlink(), "missing"),
        (lambda d: (d / "004.layer").write_bytes((d / "004.layer").read_bytes() + b"x"),
         "after its last band"),
        (lambda d: (d / "004.layer").write_bytes((d / "001.layer").read_bytes()),
         "manifest says"),
        (lambda d: (d / resultdir.MANIFEST).write_text("{not json"), "damaged"),
        (lambda d: (d / resultdir.MANIFEST).write_bytes(b"\xff\xfe"), "damaged"),
        (lambda d: (d / resultdir.MANIFEST).write_text("[]"), "does not describe"),
    ],
)
def test_damaged_files_give_a_clear_error(tmp_path, damage, message):
    store, folder = _saved(tmp_path)
    damage(folder)
    with pytest.raises(CorruptImage, match=message):
        store.read_result(JOB)


def _edit_manifest(folder, change) -> None:
    path = folder / resultdir.MANIFEST
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m["layers"][1].update(file="../../job.json"), "not this layer's file"),
        (lambda m: m["layers"][1].update(file="/etc/passwd"), "not this layer's file"),
        (lambda m: m["layers"][1].update(width="wide"), "whole number"),
        (lambda m: m["layers"][1].update(name=3), "must be text"),
        (lambda m: m.update(version=99), "newer LayerLift"),
        (lambda m: m.update(width=0), "empty canvas"),
    ],
)
def test_a_damaged_manifest_never_reads_outside_the_folder(tmp_path, change, message):
    store, folder = _saved(tmp_path)
    _edit_manifest(folder, change)
    with pytest.raises(CorruptImage, match=message):
        store.read_result(JOB)


def test_a_huge_declared_size_is_refused_before_allocating(tmp_path):
    handle = io.BytesIO()
    layerfile.write_layer(_noise(2, 2), handle)
    with pytest.raises(CorruptImage, match="more than a result has"):
        handle.seek(0)
        layerfile.read_layer(handle, "test", max_pixels=3)


def test_a_missing_result_is_an_input_error(tmp_path):
    store = JobStore(tmp_path)
    store.save({"id": JOB})
    with pytest.raises(InputError, match="not written"):
        store.read_result(JOB)


def test_the_runner_reports_a_damaged_result_as_unavailable(tmp_path):
    from layerlift.inference.backends.base import DecomposeRequest

    from tests.bridge_fixtures import picture, split_provider

    first = JobRunner(provider=split_provider(), store=JobStore(tmp_path)).start()
    job = first.submit(picture(), DecomposeRequest(layers=2), "split")
    assert first.wait(job.id, 20.0).state == "done"
    first.stop()
    (tmp_path / job.id / RESULT_DIR / "001.layer").write_bytes(b"garbage")
    second = JobRunner(provider=split_provider(), store=JobStore(tmp_path))
    with pytest.raises(ResultUnavailable, match="cut short"):
        second.read_result(job.id)


def test_layer_files_are_flushed_and_private_names_only(tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd)))
    resultdir.write_result_dir(_stack(), tmp_path / "r")
    # Four layer files and the manifest are flushed (the folder too, where it can be).
    assert len(synced) >= 5
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == [
        "000.layer", "001.layer", "002.layer", "004.layer", resultdir.MANIFEST]


def test_a_band_length_beyond_its_pixels_is_refused_before_reading(tmp_path):
    """Even with a matching checksum (a header made on purpose), no huge read is attempted."""
    handle = io.BytesIO()
    layerfile.write_layer(_noise(2, 2), handle)
    data = bytearray(handle.getvalue())
    header, entry = layerfile._HEADER, layerfile._ENTRY
    _codec, crc, _stored = entry.unpack_from(data, header.size)
    entry.pack_into(data, header.size, layerfile.ZLIB, crc, 2**40)
    fields = header.unpack_from(data)
    table = bytes(data[header.size : header.size + entry.size])
    checksum = zlib.crc32(table, zlib.crc32(header.pack(*fields[:-1], 0)[:-4]))
    header.pack_into(data, 0, *fields[:-1], checksum)
    with pytest.raises(CorruptImage, match="damaged header \\(band 0\\)"):
        layerfile.read_layer(io.BytesIO(bytes(data)), "test", 10**6)


@pytest.mark.parametrize("size", [1, 7, 8, 13, 64])
def test_the_band_checksum_sees_every_changed_byte(size):
    data = bytearray(_noise(1, 16).tobytes()[:size])
    before = layerfile.checksum(bytes(data))
    assert before == layerfile.checksum(memoryview(data))
    for index in range(size):
        for delta in (1, 128):
            changed = bytearray(data)
            changed[index] = (changed[index] + delta) % 256
            assert layerfile.checksum(bytes(changed)) != before
    assert layerfile.checksum(b"") == 0


def test_a_result_of_empty_layers_only_round_trips(tmp_path):
    stack = LayerStack(3, 2, [Layer("gone", np.zeros((2, 3, 4), np.uint8), x=1, y=1)])
    store = JobStore(tmp_path)
    store.save({"id": JOB}, stack)
    assert [p.name for p in (tmp_path / JOB / RESULT_DIR).iterdir()] == [resultdir.MANIFEST]
    back = store.read_result(JOB)
    assert (back.width, back.height) == (3, 2)
    assert [(layer.name, layer.x, layer.y, layer.pixels.shape) for layer in back.layers] == [
        ("gone", 1, 1, (0, 0, 4))]
