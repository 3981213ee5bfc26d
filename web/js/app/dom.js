// Small DOM helpers. Text always goes in as text (textContent), never as HTML.

import { hueOf, initials } from "./format.js";

/**
 * Creates an element.
 * @param {string} tag
 * @param {{class?: string, text?: string, attrs?: Record<string, string>, data?: Record<string, string>}} [props]
 * @param {(Node | string | null | undefined | false)[]} [children] strings become text nodes
 * @returns {HTMLElement}
 */
export function h(tag, props = {}, children = []) {
  const el = document.createElement(tag);
  if (props.class) el.className = props.class;
  if (props.text != null) el.textContent = props.text;
  for (const [name, value] of Object.entries(props.attrs ?? {})) el.setAttribute(name, value);
  for (const [name, value] of Object.entries(props.data ?? {})) el.dataset[name] = value;
  for (const child of children) {
    if (child == null || child === false) continue;
    el.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return el;
}

/** @param {string} id @returns {HTMLElement} */
export function byId(id) {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} missing from index.html`);
  return el;
}

/**
 * A round avatar with the name's initials on a colour of its own.
 * @param {string} name
 * @param {{online?: boolean | null, size?: "s" | "m"}} [options] `online` null: no dot
 */
export function avatar(name, { online = null, size = "m" } = {}) {
  const el = h("span", { class: `avatar avatar-${size}`, attrs: { "aria-hidden": "true" }, text: initials(name) });
  el.style.setProperty("--hue", String(hueOf(name)));
  if (online != null) el.append(h("span", { class: online ? "dot online" : "dot" }));
  return el;
}

/**
 * Makes `container`'s children exactly `items`, in order, reusing the element already made for
 * a key: nothing is rebuilt that did not change, so focus and scroll positions hold.
 * @template T
 * @param {HTMLElement} container
 * @param {Map<string, HTMLElement>} nodes key → element, kept by the caller between calls
 * @param {T[]} items
 * @param {(item: T) => string} keyOf
 * @param {(item: T) => HTMLElement} create
 * @param {(el: HTMLElement, item: T) => void} update
 */
export function reconcile(container, nodes, items, keyOf, create, update) {
  const wanted = new Set();
  let cursor = container.firstChild;
  for (const item of items) {
    const key = keyOf(item);
    wanted.add(key);
    let el = nodes.get(key);
    if (!el) {
      el = create(item);
      el.dataset.key = key;
      nodes.set(key, el);
    }
    update(el, item);
    if (el === cursor) cursor = cursor.nextSibling;
    else container.insertBefore(el, cursor);
  }
  while (cursor) {
    const next = cursor.nextSibling;
    cursor.remove();
    cursor = next;
  }
  for (const key of [...nodes.keys()]) if (!wanted.has(key)) nodes.delete(key);
}

/** An inline SVG icon from the sprite-free set below. @param {keyof ICONS} name */
export function icon(name) {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("class", `icon icon-${name}`);
  for (const d of ICONS[name]) {
    const path = document.createElementNS("http://www.w3.org/2000/svg", "path");
    path.setAttribute("d", d);
    svg.append(path);
  }
  return svg;
}

const ICONS = {
  file: ["M14 3H7a2 2 0 0 0-2 2v14a2 2 0 0 0 2 2h10a2 2 0 0 0 2-2V8z", "M14 3v5h5"],
  download: ["M12 4v11", "M7 10l5 5 5-5", "M5 20h14"],
  check: ["M5 12.5l4.5 4.5L19 7.5"],
  checks: ["M2.5 12.5L7 17l9.5-9.5", "M11 16l1 1 9.5-9.5"],
  clock: ["M12 21a9 9 0 1 0 0-18 9 9 0 0 0 0 18z", "M12 7v5l3 2"],
  alert: ["M12 21a9 9 0 1 0 0-18 9 9 0 0 0 0 18z", "M12 7.5v5.5", "M12 16.5v.5"],
};
