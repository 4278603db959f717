#!/usr/bin/env python3
"""LayerLift for GIMP 3: Layer > Decompose into Layers…

Sends the active layer (or the selection's part of it) to the LayerLift app running on this
computer and inserts the result as one layer group above it, in one undo step. The work
happens in the app; this plug-in only moves pixels, shows progress and places layers.
GIMP's cancel button ends the plug-in process: the request asks the server to cancel the job
when this connection drops, so nothing keeps running for a user who gave up.
"""

from __future__ import annotations

import sys
import time

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
import ll_bridge  # noqa: E402
import ll_options  # noqa: E402
import ll_plan  # noqa: E402
from gi.repository import Gegl, Gimp, GLib, GObject  # noqa: E402

PROC_NAME = "plug-in-layerlift-decompose"
PIXEL_FORMAT = "R'G'B'A u8"
# The arguments GIMP's own dialog shows; the backend menu is ours, from the app's welcome.
DIALOG_ARGUMENTS = ["layers", "seed", "options", "use-selection"]


def _error(procedure, message: str, status=Gimp.PDBStatusType.EXECUTION_ERROR):
    return procedure.new_return_values(status, GLib.Error.new_literal(
        Gimp.PlugIn.error_quark(), message, 0))


def _read_region(drawable, region: tuple[int, int, int, int]) -> bytes:
    _, dx, dy = drawable.get_offsets()
    x, y, w, h = region
    buffer = drawable.get_buffer()
    data = buffer.get(Gegl.Rectangle.new(x - dx, y - dy, w, h), 1.0, PIXEL_FORMAT,
                      Gegl.AbyssPolicy.NONE)
    return bytes(data)


def _selection_bounds(image) -> tuple[int, int, int, int] | None:
    _, non_empty, x1, y1, x2, y2 = Gimp.Selection.bounds(image)
    return (x1, y1, x2, y2) if non_empty else None


def _is_layerlift_group(item) -> bool:
    return item is not None and item.is_group() and item.get_parasite(
        ll_plan.GROUP_PARASITE) is not None


def _perceptual(layer) -> None:
    """Composite in sRGB-encoded values, as Photoshop and LayerLift's own maths do.

    GIMP's default for new layers is linear light; soft edges would then flatten a few levels
    darker or lighter than the original picture, and the stack would no longer be exact.
    """
    layer.set_blend_space(Gimp.LayerColorSpace.RGB_PERCEPTUAL)
    layer.set_composite_space(Gimp.LayerColorSpace.RGB_PERCEPTUAL)


def _new_layer(image, placed: ll_plan.PlacedLayer):
    layer = Gimp.Layer.new(image, placed.name, placed.width, placed.height,
                           Gimp.ImageType.RGBA_IMAGE, 100.0, Gimp.LayerMode.NORMAL)
    _perceptual(layer)
    return layer


def _fill(layer, placed: ll_plan.PlacedLayer) -> None:
    buffer = layer.get_buffer()
    buffer.set(Gegl.Rectangle.new(0, 0, placed.width, placed.height), PIXEL_FORMAT,
               placed.pixels)
    buffer.flush()
    layer.set_offsets(placed.x, placed.y)
    layer.set_visible(placed.visible)
    layer.update(0, 0, placed.width, placed.height)


def _insert(image, source, plan: ll_plan.InsertPlan):
    """Carry out the plan inside one undo group; return the new group (or the parent)."""
    parent = source.get_parent()
    position = image.get_item_position(source)
    image.undo_group_start()
    try:
        if plan.group_name is not None:
            target = Gimp.GroupLayer.new(image, plan.group_name)
            _perceptual(target)
            image.insert_layer(target, parent, position)
            target.attach_parasite(Gimp.Parasite.new(ll_plan.GROUP_PARASITE,
                                                     Gimp.PARASITE_PERSISTENT, b"1"))
            insert_parent, insert_position = target, 0
        else:
            target = parent
            insert_parent, insert_position = parent, position
        for placed in plan.layers:  # bottom first, each inserted on top of the previous
            layer = _new_layer(image, placed)
            image.insert_layer(layer, insert_parent, insert_position)
            _fill(layer, placed)
        if plan.remove_source:
            image.remove_layer(source)
        elif plan.hide_source:
            source.set_visible(False)
        image.set_selected_layers([target])
    finally:
        image.undo_group_end()
    return target


class _BackendOptionFields:
    """The backend menu and one field per option the app's backends declare, added under
    GIMP's own dialog.

    Both come from the server's `welcome` (ll_options), so a new backend or option needs no
    plug-in release. If the app cannot be reached the dialog has neither: the backend stays
    the procedure's `backend` argument (`auto` unless a script set it).
    """

    def __init__(self, dialog, backend: str) -> None:
        self.capabilities: dict = {}
        self.widgets: list[tuple[dict, object]] = []
        self.backend_menu = None
        try:
            with ll_bridge.BridgeSession(connect_timeout=3.0) as session:
                self.capabilities = session.capabilities
        except Exception as exc:  # best effort: the decompose itself reports a dead app
            print(f"LayerLift: no backend options in the dialog: {exc}", file=sys.stderr)
            return
        gi.require_version("Gtk", "3.0")
        from gi.repository import Gtk

        grid = Gtk.Grid(row_spacing=4, column_spacing=8, margin=8)
        self.backend_menu = Gtk.ComboBoxText()
        choices = ll_options.backend_choices(self.capabilities)
        for name, label in choices:
            self.backend_menu.append(name, label)
        known = [name for name, _ in choices]
        self.backend_menu.set_active_id(backend if backend in known else ll_options.AUTO[0])
        grid.attach(Gtk.Label(label="Backend:", xalign=0.0), 0, 0, 1, 1)
        grid.attach(self.backend_menu, 1, 0, 1, 1)
        row = 1
        seen: set[str] = set()
        for backend in self.capabilities.get("backends") or []:
            for spec in ll_options.option_specs(self.capabilities, backend.get("name")):
                if spec["name"] in seen:
                    continue
                seen.add(spec["name"])
                label = Gtk.Label(label=f"{spec.get('label') or spec['name']} "
                                        f"({backend.get('name')}):", xalign=0.0)
                widget = self._widget(Gtk, spec)
                widget.set_tooltip_text(spec.get("help") or "")
                grid.attach(label, 0, row, 1, 1)
                grid.attach(widget, 1, row, 1, 1)
                self.widgets.append((spec, widget))
                row += 1
        dialog.get_content_area().pack_start(grid, False, False, 0)
        grid.show_all()

    @staticmethod
    def _widget(Gtk, spec: dict):
        default = ll_options.shown(spec.get("default")).strip()
        choices = ll_options.choices_of(spec)
        if choices is not None:
            combo = Gtk.ComboBoxText()
            combo.append("", f"default ({default})" if default else "default")
            for choice in choices:
                combo.append(ll_options.shown(choice), ll_options.shown(choice))
            combo.set_active_id("")
            return combo
        entry = Gtk.Entry()
        entry.set_placeholder_text(f"default: {default}" if default else spec.get("help") or "")
        if spec.get("max_length"):
            entry.set_max_length(int(spec["max_length"]))
        return entry

    def backend(self, fallback: str) -> str:
        """The backend chosen in the menu (`fallback` where there is no menu)."""
        chosen = self.backend_menu.get_active_id() if self.backend_menu is not None else None
        return chosen or fallback

    def values(self) -> dict:
        """The options the user filled in; ValueError names a field that does not fit."""
        texts = {}
        for spec, widget in self.widgets:
            texts[spec["name"]] = (widget.get_active_id() or "") if hasattr(
                widget, "get_active_id") else widget.get_text()
        return ll_options.collect([spec for spec, _ in self.widgets], texts)


class LayerLift(Gimp.PlugIn):
    def do_query_procedures(self):
        return [PROC_NAME]

    def do_set_i18n(self, name):
        return False

    def do_create_procedure(self, name):
        procedure = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, self.run, None)
        procedure.set_image_types("RGB*")
        procedure.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.DRAWABLE)
        procedure.set_menu_label("Decompose into Layers…")
        procedure.add_menu_path("<Image>/Layer/")
        procedure.set_documentation(
            "Decompose the active layer into editable layers with LayerLift",
            "Sends the active layer (or the selected part of it) to the LayerLift app on this "
            "computer and inserts the result as a layer group above it, in one undo step. "
            "Run on a layer inside a LayerLift group to decompose it again in place.",
            name)
        procedure.set_attribution("LayerLift", "LayerLift", "2026")
        flags = GObject.ParamFlags.READWRITE
        procedure.add_int_argument("layers", "_Layers", "How many layers to make", 1, 10, 4,
                                   flags)
        # Text, not a choice: a choice's values are fixed at registration, and the app may
        # have backends this plug-in has never heard of (the dialog's menu lists them).
        procedure.add_string_argument("backend", "_Backend", "Which decomposer to use: auto, "
                                      "or a backend the LayerLift app has (classic, qwen, ...)",
                                      "auto", flags)
        procedure.add_int_argument("seed", "S_eed", "Random seed", 0, 2**31 - 1, 0, flags)
        # The backends' own options (steps, caption, ...) are declared by the app, not here:
        # the dialog shows them from its welcome; scripts pass them as one JSON object.
        procedure.add_string_argument("options", "_Options", 'Backend options as JSON, e.g. '
                                      '{"steps": 20, "caption": "a red logo"} (empty: the '
                                      "app's settings)", "", flags)
        procedure.add_boolean_argument("use-selection", "Use _selection bounds",
                                       "Send only the selected part of the layer", True, flags)
        return procedure

    def run(self, procedure, run_mode, image, drawables, config, data):
        if len(drawables) != 1 or not isinstance(drawables[0], Gimp.Layer):
            return _error(procedure, "Select exactly one layer to decompose.")
        source = drawables[0]
        if source.is_group():
            return _error(procedure, "Select a pixel layer, not a layer group, to decompose.")
        if run_mode == Gimp.RunMode.INTERACTIVE:
            gi.require_version("GimpUi", "3.0")
            from gi.repository import GimpUi

            GimpUi.init("layerlift")
            dialog = GimpUi.ProcedureDialog.new(procedure, config, "Decompose into Layers")
            dialog.fill(DIALOG_ARGUMENTS)
            fields = _BackendOptionFields(dialog, config.get_property("backend"))
            accepted = dialog.run()
            try:
                if accepted:
                    config.set_property("backend", fields.backend(config.get_property("backend")))
                chosen = fields.values() if accepted else {}
            except ValueError as exc:
                return _error(procedure, f"LayerLift: {exc}")
            finally:
                dialog.destroy()
            if not accepted:
                return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
        else:
            fields, chosen = None, {}
        try:
            options = {**ll_options.parse_argument(config.get_property("options")), **chosen}
            if fields is not None and fields.capabilities:
                # Send only what the chosen backend (for auto: any backend) declares.
                declared = {spec["name"] for spec in ll_options.option_specs(
                    fields.capabilities, config.get_property("backend"))}
                options = {name: value for name, value in options.items() if name in declared}
            return self._decompose(procedure, image, source, config, options)
        except ll_bridge.BridgeError as exc:
            return _error(procedure, f"LayerLift: {exc.message}")
        except ValueError as exc:
            return _error(procedure, f"LayerLift: {exc}")
        finally:
            Gimp.progress_end()

    def _decompose(self, procedure, image, source, config, options):
        _, x, y = source.get_offsets()
        rect = (x, y, source.get_width(), source.get_height())
        selection = _selection_bounds(image) if config.get_property("use-selection") else None
        region = ll_plan.region_for(rect, selection)
        pixels = _read_region(source, region)
        Gimp.progress_init("LayerLift: connecting…")

        def show(fraction: float, text: str) -> None:
            Gimp.progress_set_text(f"LayerLift: {text}")
            Gimp.progress_update(max(0.0, min(1.0, fraction)))

        started = time.monotonic()
        with ll_bridge.BridgeSession() as session:
            result = session.decompose(
                pixels, region[2], region[3], layers=config.get_property("layers"),
                backend=config.get_property("backend"), seed=config.get_property("seed"),
                options=options, progress=show)
        recursive = _is_layerlift_group(source.get_parent())
        plan = ll_plan.plan_insert(result.layers, (region[0], region[1]), source.get_name(),
                                   recursive)
        Gimp.progress_set_text("LayerLift: inserting layers")
        _insert(image, source, plan)
        Gimp.displays_flush()
        print(f"LayerLift: inserted {len(plan.layers)} layers in "
              f"{time.monotonic() - started:.1f} s", file=sys.stderr)
        return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())


Gimp.main(LayerLift.__gtype__, sys.argv)
