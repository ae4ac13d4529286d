// A form generated from a JSON Schema (the subset plugin configs use: objects, strings,
// enums, numbers, booleans, arrays of scalars, nullable fields, local $refs); anything else
// is edited as JSON. Each control carries its JSON path ($.a.b), as the API's errors name it.

function resolve(schema, root) {
  let s = schema;
  for (let i = 0; i < 32 && s && typeof s.$ref === "string" && s.$ref.startsWith("#/"); i++) {
    s = s.$ref.slice(2).split("/").reduce((node, part) => (node ? node[part.replace(/~1/g, "/").replace(/~0/g, "~")] : undefined), root);
  }
  if (!s) return { schema: {}, nullable: false };
  const options = s.anyOf || s.oneOf;
  if (Array.isArray(options)) {
    const real = options.filter((o) => o.type !== "null");
    if (real.length === 1) return { schema: resolve(real[0], root).schema, nullable: real.length < options.length };
  }
  return { schema: s, nullable: Array.isArray(s.type) && s.type.includes("null") };
}

function typeOf(schema) {
  return Array.isArray(schema.type) ? schema.type.find((t) => t !== "null") : schema.type;
}

function scalarArray(schema, root) {
  if (typeOf(schema) !== "array" || !schema.items) return false;
  const item = typeOf(resolve(schema.items, root).schema);
  return ["string", "number", "integer"].includes(item);
}

let counter = 0;

function control(name, path, schema, nullable, value, root) {
  const t = typeOf(schema);
  const id = `f${++counter}`;
  const wrap = document.createElement("div");
  wrap.className = "field";
  const label = document.createElement("label");
  label.htmlFor = id;
  label.textContent = name;
  let input;
  let read;
  if (t === "object" && schema.properties) {
    const set = document.createElement("fieldset");
    const legend = document.createElement("legend");
    legend.textContent = name;
    set.append(legend);
    set.dataset.path = path;
    const children = Object.entries(schema.properties).map(([key, sub]) => {
      const r = resolve(sub, root);
      const child = control(key, `${path}.${key}`, r.schema, r.nullable, value ? value[key] : undefined, root);
      set.append(child.element);
      return [key, child];
    });
    return {
      element: set,
      read: () => {
        const out = {};
        for (const [key, child] of children) {
          const v = child.read();
          if (v !== undefined) out[key] = v;
        }
        return out;
      },
    };
  }
  if (t === "boolean") {
    input = document.createElement("input");
    input.type = "checkbox";
    input.checked = value === undefined ? Boolean(schema.default) : Boolean(value);
    read = () => input.checked;
    wrap.classList.add("check");
  } else if (t === "string" && Array.isArray(schema.enum)) {
    input = document.createElement("select");
    for (const option of nullable ? ["", ...schema.enum] : schema.enum) {
      input.append(new Option(option === "" ? "(none)" : option, option));
    }
    input.value = value ?? schema.default ?? "";
    read = () => (input.value === "" && nullable ? null : input.value);
  } else if (t === "string") {
    input = document.createElement("input");
    input.type = "text";
    input.value = value ?? "";
    read = () => (input.value === "" && nullable ? null : input.value);
  } else if (t === "integer" || t === "number") {
    input = document.createElement("input");
    input.type = "number";
    input.step = t === "integer" ? "1" : "any";
    input.value = value === undefined || value === null ? "" : String(value);
    read = () => (input.value.trim() === "" ? (nullable ? null : undefined) : Number(input.value));
  } else if (scalarArray(schema, root)) {
    const numeric = typeOf(resolve(schema.items, root).schema) !== "string";
    input = document.createElement("textarea");
    input.rows = 3;
    input.value = (value ?? []).join("\n");
    read = () => input.value.split("\n").map((v) => v.trim()).filter(Boolean).map((v) => (numeric ? Number(v) : v));
    label.textContent = `${name} (one per line)`;
  } else {
    input = document.createElement("textarea");
    input.rows = 4;
    input.value = value === undefined ? "" : JSON.stringify(value, null, 2);
    read = () => {
      if (input.value.trim() === "") return undefined;
      try {
        return JSON.parse(input.value);
      } catch {
        throw Object.assign(new Error(`${path} is not valid JSON`), { path });
      }
    };
    label.textContent = `${name} (JSON)`;
  }
  input.id = id;
  input.name = path;
  input.dataset.path = path;
  wrap.dataset.path = path;
  if (schema.description) input.title = schema.description;
  wrap.append(label, input);
  return { element: wrap, read };
}

/** The editor: `element`, `read()` the config, `showError(path, message)`, `clearErrors()`. */
export function schemaForm(schema, config) {
  const r = resolve(schema, schema);
  const root = control("config", "$", r.schema, false, config, schema);
  const element = root.element;
  if (element.tagName === "FIELDSET") element.querySelector("legend").remove();
  return {
    element,
    read: root.read,
    clearErrors() {
      for (const e of element.querySelectorAll(".field-error")) e.remove();
      for (const e of element.querySelectorAll("[aria-invalid]")) e.removeAttribute("aria-invalid");
    },
    /** Put the message beside the control of `path`, or of its nearest parent. */
    showError(path, message) {
      let at = path;
      let target = null;
      while (at && !target) {
        target = element.querySelector(`[data-path="${CSS.escape(at)}"]`);
        at = at.replace(/(\.[^.[\]]+|\[\d+\])$/, "") === at ? "" : at.replace(/(\.[^.[\]]+|\[\d+\])$/, "");
      }
      const note = document.createElement("p");
      note.className = "field-error";
      note.setAttribute("role", "alert");
      note.id = `e${++counter}`;
      note.textContent = message;
      const host = target || element;
      const input = host.matches("input, select, textarea") ? host : host.querySelector(":scope > input, :scope > select, :scope > textarea");
      if (input) {
        input.setAttribute("aria-invalid", "true");
        input.setAttribute("aria-describedby", note.id);
      }
      (input ? input.parentElement : host).append(note);
      return note;
    },
  };
}

/** "config does not match its schema at $.a.b: message" -> ["$.a.b", "message"]. */
export function errorPath(message) {
  const m = /at (\$[^\s:]*): (.*)$/s.exec(message);
  return m ? [m[1], m[2]] : ["$", message];
}
