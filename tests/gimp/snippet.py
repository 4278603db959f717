# Runs inside real GIMP 3 (python-fu-eval) via tests/gimp/harness/run.sh. Raising makes GIMP
# exit 64.
# Env: WORKDIR (bind-mounted, shared with the host), IMAGE, CASE.
import json
import os

from gi.repository import Gimp, Gio

W = os.environ["WORKDIR"]
CASE = os.environ["CASE"]
PROC = "plug-in-layerlift-decompose"


def save(image, name):
    Gimp.file_save(Gimp.RunMode.NONINTERACTIVE, image, Gio.File.new_for_path(f"{W}/{name}"), None)


def decompose(image, layer, layers=4, use_selection=False):
    proc = Gimp.get_pdb().lookup_procedure(PROC)
    assert proc is not None, "the LayerLift plug-in is not registered"
    cfg = proc.create_config()
    cfg.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    cfg.set_property("image", image)
    cfg.set_core_object_array("drawables", [layer])
    cfg.set_property("layers", layers)
    cfg.set_property("backend", "classic")
    cfg.set_property("use-selection", use_selection)
    res = proc.run(cfg)
    status = res.index(0)
    message = "" if status == Gimp.PDBStatusType.SUCCESS else str(res.index(1))
    return status == Gimp.PDBStatusType.SUCCESS, message


image = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(os.environ["IMAGE"]))
source = image.get_layers()[0]
report = {"case": CASE}
if CASE == "decompose":
    ok, message = decompose(image, source)
    report.update(ok=ok, message=message)
    save(image, "out.xcf")
    save(image, "flat.png")
    selected = image.get_selected_layers()
    report["selected"] = [item.get_name() for item in selected]
    if ok:
        # Decompose one of the new layers again: it must be replaced inside the group.
        group = selected[0]
        children = group.get_children()
        # Text ("ORBIT": five glyphs) or a merged layer ("a + b") has parts to split again.
        splittable = [child for child in children
                      if "text" in child.get_name() or " + " in child.get_name()]
        target = splittable[0] if splittable else children[-1]
        report["recursive_target"] = target.get_name()
        ok2, message2 = decompose(image, target, layers=2)
        report.update(recursive_ok=ok2, recursive_message=message2)
        save(image, "recursive.xcf")
        save(image, "recursive.png")
elif CASE == "selection":
    Gimp.Image.select_rectangle(image, Gimp.ChannelOps.REPLACE, 40, 30, 200, 150)
    ok, message = decompose(image, source, use_selection=True)
    report.update(ok=ok, message=message)
    save(image, "selection.xcf")
else:  # error cases: the plug-in must fail with a clear message, never a traceback
    ok, message = decompose(image, source)
    report.update(ok=ok, message=message)
with open(f"{W}/report-{CASE}.json", "w") as handle:
    json.dump(report, handle)
image.delete()
