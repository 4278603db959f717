"use strict";
/**
 * The backends' options, rendered from the server's `welcome`: the panel knows no option by
 * name. Each backend lists its option specs in `capabilities.backends[].options` (name, type,
 * label, help, default, choices, minimum, maximum, max_length: docs/protocol.md, "Backend
 * options"), so an option added to a backend appears here without a panel release.
 *
 * A control left at "default" sends nothing: the server's settings decide. The checks below
 * are read from the spec only to say what is wrong before the picture is uploaded; the server
 * checks every value again with the same spec.
 */

const { toArray } = require("./collection");

/** Each named entry of `key` ("options", "presets") of `backend` (`auto`: every backend's, once each). */
function declared(capabilities, backend, key) {
  const backends = (capabilities && capabilities.backends) || [];
  const chosen = backend === "auto" ? backends : backends.filter((b) => b.name === backend);
  const found = [];
  const seen = new Set();
  for (const entry of chosen) {
    for (const item of entry[key] || []) {
      if (!item || typeof item.name !== "string" || seen.has(item.name)) continue;
      seen.add(item.name);
      found.push(item);
    }
  }
  return found;
}

/** The option specs a decompose with `backend` may set. */
function optionSpecs(capabilities, backend) {
  return declared(capabilities, backend, "options");
}

/** The presets (named sets of option values: "Fast", "Best") `backend` offers. */
function optionPresets(capabilities, backend) {
  return declared(capabilities, backend, "presets").filter((preset) => preset.options && typeof preset.options === "object");
}

const controlId = (spec) => `option-${spec.name}`;

function shown(value) {
  if (value === true) return "on";
  if (value === false) return "off";
  return String(value);
}

function menuItem(document, value, label, selected) {
  const item = document.createElement("sp-menu-item");
  item.setAttribute("value", value);
  item.textContent = label;
  if (selected) item.setAttribute("selected", "");
  return item;
}

/** One control for `spec`: a menu for choices and on/off, else a text field. */
function createControl(document, spec) {
  const hasDefault = spec.default !== null && spec.default !== undefined && String(spec.default).trim() !== "";
  const defaultLabel = hasDefault ? `Default (${shown(spec.default)})` : "Default";
  let control;
  if (spec.type === "bool" || Array.isArray(spec.choices)) {
    control = document.createElement("sp-picker");
    control.setAttribute("size", "s");
    control.setAttribute("label", spec.label || spec.name);
    const menu = document.createElement("sp-menu");
    menu.setAttribute("slot", "options");
    menu.appendChild(menuItem(document, "", defaultLabel, true));
    const values = spec.type === "bool" ? [true, false] : spec.choices;
    for (const value of values) menu.appendChild(menuItem(document, String(value), shown(value), false));
    control.appendChild(menu);
  } else {
    control = document.createElement("sp-textfield");
    if (spec.type === "int" || spec.type === "float") control.setAttribute("type", "number");
    control.setAttribute("placeholder", hasDefault ? `default: ${shown(spec.default)}` : (spec.help || "default"));
    control.setAttribute("quiet", "");
    control.value = "";
  }
  control.setAttribute("id", controlId(spec));
  control.title = spec.help || "";
  return control;
}

/** The quality picker's items: "Backend default", then one per preset, the choice kept if still offered. */
function renderPresets(document, picker, presets) {
  const menu = picker && picker.querySelector("sp-menu");
  if (!menu) return;
  const chosen = controlText(picker);
  menu.textContent = "";
  const names = presets.map((preset) => preset.name);
  menu.appendChild(menuItem(document, "default", "Backend default", !names.includes(chosen)));
  for (const preset of presets) menu.appendChild(menuItem(document, preset.name, preset.label || preset.name, preset.name === chosen));
}

/** The values of the chosen preset that `specs` declare (a preset may name another backend's). */
function presetOptions(presets, name, specs) {
  const preset = presets.find((entry) => entry.name === name);
  const names = new Set(specs.map((spec) => spec.name));
  return Object.fromEntries(Object.entries((preset && preset.options) || {}).filter(([key]) => names.has(key)));
}

/** Replace what `container` holds with one labelled control per spec. */
function renderOptions(document, container, specs) {
  if (!container) return;
  container.textContent = "";
  for (const spec of specs) {
    const field = document.createElement("div");
    field.setAttribute("class", "field");
    const label = document.createElement("sp-detail");
    label.textContent = String(spec.label || spec.name).toUpperCase();
    field.appendChild(label);
    field.appendChild(createControl(document, spec));
    container.appendChild(field);
  }
}

function badRequest(message) {
  return Object.assign(new Error(message), { code: "bad_request" });
}

/** A control's text: a picker's selected item's value attribute, a text field's value. */
function controlText(control) {
  if (!control) return "";
  if (String(control.tagName).toLowerCase() === "sp-picker") {
    const items = toArray(control.querySelectorAll("sp-menu-item"));
    const index = control.selectedIndex;
    if (Number.isInteger(index) && index >= 0 && index < items.length) return items[index].getAttribute("value") || "";
    const marked = items.find((item) => item.hasAttribute("selected"));
    return marked ? marked.getAttribute("value") || "" : "";
  }
  return control.value === undefined || control.value === null ? "" : String(control.value).trim();
}

/** The value `text` means for `spec` (undefined: left at default); throws bad_request. */
function parseValue(spec, text) {
  if (text === "") return undefined;
  if (spec.type === "bool") return text === "true";
  let value = text;
  if (spec.type === "int" || spec.type === "float") {
    value = Number(text);
    if (!Number.isFinite(value)) throw badRequest(`${spec.label || spec.name} must be a number`);
    if (spec.type === "int" && !Number.isInteger(value)) throw badRequest(`${spec.label || spec.name} must be a whole number`);
    const low = spec.minimum ?? -Infinity;
    const high = spec.maximum ?? Infinity;
    if (value < low || value > high) throw badRequest(`${spec.label || spec.name} must be from ${low} to ${high}`);
  } else if (spec.max_length && value.length > spec.max_length) {
    throw badRequest(`${spec.label || spec.name} may be at most ${spec.max_length} characters`);
  }
  if (Array.isArray(spec.choices)) {
    const match = spec.choices.find((choice) => String(choice) === String(value));
    if (match === undefined) throw badRequest(`${spec.label || spec.name} must be one of ${spec.choices.join(", ")}`);
    return match;
  }
  return value;
}

/** The options the user set in the rendered controls: {name: value}, defaults left out. */
function readOptions(get, specs) {
  const options = {};
  for (const spec of specs) {
    const value = parseValue(spec, controlText(get(controlId(spec))));
    if (value !== undefined) options[spec.name] = value;
  }
  return options;
}

module.exports = { optionSpecs, optionPresets, renderOptions, renderPresets, presetOptions, readOptions, parseValue, controlId };
