"use strict";
const test = require("node:test");
const assert = require("node:assert/strict");
const pixels = require("../src/pixels");
const { createFakePhotoshop, constants } = require("./fakes/photoshop");

function solid(width, height, rgba) {
  const data = new Uint8Array(width * height * 4);
  for (let i = 0; i < data.length; i += 4) data.set(rgba, i);
  return data;
}

test("padding puts trimmed RGBA pixels back at their place in the requested bounds", () => {
  const data = Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]); // 2x1 RGBA at (1, 1)
  const out = pixels.padToBounds(data, 4, { left: 1, top: 1, right: 3, bottom: 2 }, { left: 0, top: 0, width: 3, height: 2 });
  assert.deepEqual([...out], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
});

test("padding gives RGB (background) pixels alpha 255 and crops what lies outside", () => {
  const data = Uint8Array.from([10, 20, 30, 40, 50, 60]); // 2x1 RGB at (0, 0)
  const out = pixels.padToBounds(data, 3, { left: 0, top: 0, width: 2, height: 1 }, { left: 1, top: 0, width: 2, height: 1 });
  assert.deepEqual([...out], [40, 50, 60, 255, 0, 0, 0, 0]);
  assert.throws(() => pixels.padToBounds(data, 2, { left: 0, top: 0, width: 3, height: 1 }, { left: 0, top: 0, width: 1, height: 1 }),
    (e) => e.code === "unsupported_color_mode");
});

test("CMYK, Lab and 32-bit documents are refused with what to do; 16-bit RGB is converted", () => {
  const rgb8 = { mode: "RGBColorMode", bitsPerChannel: "bitDepth8" };
  assert.equal(pixels.documentSupport(rgb8, constants).ok, true);
  assert.equal(pixels.documentSupport({ ...rgb8, bitsPerChannel: "bitDepth16" }, constants).ok, true);
  const cmyk = pixels.documentSupport({ ...rgb8, mode: "CMYKColorMode" }, constants);
  assert.equal(cmyk.ok, false);
  assert.equal(cmyk.code, "unsupported_color_mode");
  assert.match(cmyk.reason, /CMYK.*Image > Mode > RGB Color/);
  assert.equal(pixels.documentSupport({ ...rgb8, mode: "labColorMode" }, constants).ok, false);
  const hdr = pixels.documentSupport({ ...rgb8, bitsPerChannel: "bitDepth32" }, constants);
  assert.equal(hdr.code, "unsupported_bit_depth");
});

test("image data that is not 8-bit sRGB RGB(A) is refused rather than sent", () => {
  const ok = { componentSize: 8, colorSpace: "RGB", components: 4, colorProfile: pixels.SRGB };
  pixels.checkImageData(ok);
  assert.throws(() => pixels.checkImageData({ ...ok, componentSize: 16 }), (e) => e.code === "unsupported_bit_depth");
  assert.throws(() => pixels.checkImageData({ ...ok, colorSpace: "Lab" }), (e) => e.code === "unsupported_color_mode");
  assert.throws(() => pixels.checkImageData({ ...ok, colorProfile: "Adobe RGB (1998)" }), (e) => e.code === "unsupported_color_mode");
});

test("reading a trimmed layer asks for 8-bit sRGB and pads to the requested bounds", async () => {
  const { photoshop, fake } = createFakePhotoshop();
  const doc = photoshop.app.createFakeDocument({ width: 10, height: 8, bitsPerChannel: constants.BitsPerChannelType.SIXTEEN });
  const layer = doc.addPixelLayer("L", { left: 2, top: 3, width: 4, height: 2, data: solid(4, 2, [9, 8, 7, 200]) });
  const got = await pixels.readLayerPixels(photoshop.imaging, { documentID: doc.id, layerID: layer.id, bounds: { left: 0, top: 0, right: 10, bottom: 8 } });
  const call = fake.calls.find((c) => c.name === "imaging.getPixels").args;
  assert.equal(call.componentSize, 8);
  assert.equal(call.colorSpace, "RGB");
  assert.equal(call.colorProfile, pixels.SRGB);
  assert.equal(got.width, 10);
  assert.equal(got.height, 8);
  const at = (x, y) => [...got.pixels.subarray((y * 10 + x) * 4, (y * 10 + x) * 4 + 4)];
  assert.deepEqual(at(2, 3), [9, 8, 7, 200]);
  assert.deepEqual(at(5, 4), [9, 8, 7, 200]);
  assert.deepEqual(at(1, 3), [0, 0, 0, 0]);
  assert.deepEqual(at(6, 4), [0, 0, 0, 0]);
  assert.equal(fake.lastImageData.disposed, true);
});

test("a region where the layer has no pixels is empty_region, whether getPixels throws or returns nothing", async () => {
  for (const emptyRegion of ["throw", "undefined"]) {
    const { photoshop, fake } = createFakePhotoshop({ emptyRegion });
    const doc = photoshop.app.createFakeDocument({ width: 10, height: 8 });
    const layer = doc.addPixelLayer("L", { left: 0, top: 0, width: 2, height: 2, data: solid(2, 2, [1, 1, 1, 255]) });
    const read = pixels.readLayerPixels(photoshop.imaging, {
      documentID: doc.id, layerID: layer.id, bounds: { left: 5, top: 5, width: 2, height: 2 }, layerBounds: layer.boundsNoEffects,
    });
    await assert.rejects(read, (e) => e.code === "empty_region" && e.message === pixels.EMPTY_REGION, emptyRegion);
    assert.equal(fake.calls.filter((c) => c.name === "imaging.getPixels").length, 1, "Photoshop was asked");
  }
  assert.match(pixels.EMPTY_REGION, /fully transparent.*Select a part of the layer that has visible pixels/);
});

test("a getPixels failure where the layer has pixels is read_failed with Photoshop's words", async () => {
  const { photoshop } = createFakePhotoshop();
  const doc = photoshop.app.createFakeDocument({ width: 10, height: 8 });
  const layer = doc.addPixelLayer("L", { left: 0, top: 0, width: 2, height: 2, data: solid(2, 2, [1, 1, 1, 255]) });
  photoshop.imaging.getPixels = async () => {
    throw new Error("out of scratch space");
  };
  await assert.rejects(pixels.readLayerPixels(photoshop.imaging, {
    documentID: doc.id, layerID: layer.id, bounds: { left: 0, top: 0, width: 4, height: 4 }, layerBounds: layer.boundsNoEffects,
  }), (e) => e.code === "read_failed" && /out of scratch space/.test(e.message));
});

test("an empty rectangle is refused before Photoshop is asked", async () => {
  const { photoshop, fake } = createFakePhotoshop();
  const doc = photoshop.app.createFakeDocument({ width: 10, height: 8 });
  const layer = doc.addPixelLayer("L", { left: 0, top: 0, width: 2, height: 2, data: solid(2, 2, [1, 1, 1, 255]) });
  await assert.rejects(pixels.readLayerPixels(photoshop.imaging, { documentID: doc.id, layerID: layer.id, bounds: { left: 0, top: 0, width: 0, height: 3 } }),
    (e) => e.code === "empty_region");
  assert.equal(fake.calls.length, 0);
});

test("bounds are clipped to the canvas", () => {
  assert.deepEqual(pixels.clipToCanvas({ left: -5, top: 2, right: 30, bottom: 9 }, 20, 8),
    { left: 0, top: 2, right: 20, bottom: 8, width: 20, height: 6 });
  assert.equal(pixels.clipToCanvas({ left: 30, top: 0, right: 40, bottom: 5 }, 20, 8).width, 0);
});
