# Runs in the GUI GIMP (tests/gimp/harness/run.sh -d DISPLAY). Decomposes, then waits while the
# host presses Ctrl+Z once in the image window, then saves what the image looks like afterwards.
import json
import os
import time

from gi.repository import Gimp, Gio

W = os.environ["WORKDIR"]


def tree(image):
    return [[layer.get_name(), layer.get_visible(), layer.is_group()]
            for layer in image.get_layers()]


image = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(f"{W}/input.png"))
display = Gimp.Display.new(image)
Gimp.displays_flush()
report = {"before": tree(image)}
proc = Gimp.get_pdb().lookup_procedure("plug-in-layerlift-decompose")
cfg = proc.create_config()
cfg.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
cfg.set_property("image", image)
cfg.set_core_object_array("drawables", [image.get_layers()[0]])
cfg.set_property("layers", 4)
cfg.set_property("backend", "classic")
cfg.set_property("use-selection", False)
res = proc.run(cfg)
report["ok"] = res.index(0) == Gimp.PDBStatusType.SUCCESS
report["message"] = "" if report["ok"] else str(res.index(1))
Gimp.displays_flush()
report["decomposed"] = tree(image)
open(f"{W}/ready", "w").close()
deadline = time.monotonic() + 90
while not os.path.exists(f"{W}/undone") and time.monotonic() < deadline:
    time.sleep(0.1)
# The key press is handled asynchronously: wait (bounded) until the image changes at all.
deadline = time.monotonic() + 15
while tree(image) == report["decomposed"] and time.monotonic() < deadline:
    time.sleep(0.1)
report["after"] = tree(image)
Gimp.file_save(Gimp.RunMode.NONINTERACTIVE, image, Gio.File.new_for_path(f"{W}/undone.png"),
               None)
with open(f"{W}/report-undo.json", "w") as handle:
    json.dump(report, handle)
display.delete()
