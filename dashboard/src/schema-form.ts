import { h } from './dom.js';

/** The parts of JSON Schema the job spec uses (as /openapi.json states it). */
export interface JsonSchema {
  type?: string;
  properties?: Record<string, JsonSchema>;
  required?: string[];
  enum?: Array<string | number>;
  const?: unknown;
  default?: unknown;
  description?: string;
  minimum?: number;
  maximum?: number;
  multipleOf?: number;
  oneOf?: JsonSchema[];
  anyOf?: JsonSchema[];
  items?: JsonSchema;
}

/** One input of the form: its element, its value (undefined: leave the field out of the spec), and its path. */
export interface Field {
  element: HTMLElement;
  read(): unknown;
}

/** Fields the page makes itself, by path (a picker of uploads by name where the schema says only "a UUID"). */
export type CustomFields = Record<string, (path: string, label: string, schema: JsonSchema) => Field>;

/** A row of the form for a custom field: its label, its input, help and the slot for the API's error. */
export function fieldRow(path: string, label: string, input: HTMLElement, schema: JsonSchema, help?: HTMLElement): HTMLElement {
  const element = row(path, label, input, schema);
  if (help) element.insertBefore(help, element.lastChild);
  return element;
}

const constOf = (schema: JsonSchema, key: string): string | undefined => {
  const property = schema.properties?.[key];
  const value = property?.const ?? (property?.enum?.length === 1 ? property.enum[0] : undefined);
  return typeof value === 'string' ? value : undefined;
};

/** The property that tells a union's object variants apart (`mode`, `type`), if they have one. */
export function discriminator(variants: JsonSchema[]): string | undefined {
  const keys = Object.keys(variants[0]?.properties ?? {});
  return keys.find((key) => variants.every((v) => constOf(v, key) !== undefined));
}

function row(path: string, label: string, input: HTMLElement, schema: JsonSchema): HTMLElement {
  return h(
    'div',
    { class: 'field', 'data-field': path },
    h('label', { for: `field-${path}` }, label),
    input,
    schema.description ? h('div', { class: 'help' }, schema.description) : null,
    h('div', { class: 'error', 'data-error-for': path }),
  );
}

function enumField(path: string, label: string, schema: JsonSchema, optional: boolean): Field {
  const select = h('select', { id: `field-${path}`, name: path });
  if (optional && schema.default === undefined) select.append(h('option', { value: '' }, '(not set)'));
  for (const value of schema.enum ?? [])
    select.append(h('option', { value: String(value), selected: value === schema.default }, String(value)));
  return { element: row(path, label, select, schema), read: () => (select.value === '' ? undefined : select.value) };
}

function numberField(path: string, label: string, schema: JsonSchema): Field {
  const step = schema.type === 'integer' ? (schema.multipleOf ?? 1) : 'any';
  const input = h('input', { id: `field-${path}`, name: path, type: 'number', step, min: schema.minimum, max: schema.maximum });
  if (typeof schema.default === 'number') input.value = String(schema.default);
  return { element: row(path, label, input, schema), read: () => (input.value === '' ? undefined : Number(input.value)) };
}

function booleanField(path: string, label: string, schema: JsonSchema): Field {
  const input = h('input', { id: `field-${path}`, name: path, type: 'checkbox', checked: schema.default === true });
  return { element: row(path, label, input, schema), read: () => input.checked };
}

/** Anything else (strings, lists, a union of a word and a list): text, read as JSON when it parses as JSON. */
function textField(path: string, label: string, schema: JsonSchema): Field {
  const input = h('input', { id: `field-${path}`, name: path, type: 'text' });
  if (schema.default !== undefined) input.value = typeof schema.default === 'string' ? schema.default : JSON.stringify(schema.default);
  const read = () => {
    const text = input.value.trim();
    if (text === '') return undefined;
    if (schema.type === 'string') return text;
    try {
      return JSON.parse(text) as unknown;
    } catch {
      return text;
    }
  };
  return { element: row(path, label, input, schema), read };
}

function objectField(path: string, label: string, schema: JsonSchema, optional: boolean, custom: CustomFields): Field {
  const children = Object.entries(schema.properties ?? {}).map(([key, child]) =>
    fieldFor(path ? `${path}.${key}` : key, key, child, !(schema.required ?? []).includes(key), custom),
  );
  const fieldset = h('fieldset', { 'data-field': path }, h('legend', {}, label), ...children.map((c) => c.element));
  const read = () => {
    const entries = children.map((c, i) => [Object.keys(schema.properties ?? {})[i], c.read()] as const).filter(([, v]) => v !== undefined);
    return entries.length === 0 && optional ? undefined : Object.fromEntries(entries);
  };
  // Optional groups start folded: most jobs leave them at their defaults.
  if (!optional) return { element: fieldset, read };
  const details = h('details', {}, h('summary', {}, `${label} (optional)`), fieldset);
  return { element: details, read: () => (details.open ? read() : undefined) };
}

/** A union of objects told apart by one property: a choice of variant, then that variant's fields. */
export function unionField(
  path: string,
  label: string,
  variants: JsonSchema[],
  key: string,
  optional: boolean,
  { exclude = [], custom = {}, initial }: { exclude?: string[]; custom?: CustomFields; initial?: string } = {},
): Field {
  const names = variants.map((v) => constOf(v, key) ?? '');
  const select = h('select', { id: `field-${path ? `${path}.` : ''}${key}`, name: `${path ? `${path}.` : ''}${key}` });
  if (optional) select.append(h('option', { value: '' }, '(none)'));
  for (const name of names) select.append(h('option', { value: name, selected: name === initial }, name));
  const body = h('div');
  let current: Field | null = null;
  const show = () => {
    const variant = variants[names.indexOf(select.value)];
    const properties = Object.fromEntries(Object.entries(variant?.properties ?? {}).filter(([k]) => k !== key && !exclude.includes(k)));
    current = variant ? objectField(path, label, { ...variant, properties }, false, custom) : null;
    body.replaceChildren(...(current ? [current.element] : []));
  };
  select.addEventListener('change', show);
  show();
  const element = h(
    'div',
    { 'data-union': path || key },
    row(path ? `${path}.${key}` : key, path ? `${label} ${key}` : key, select, {}),
    body,
  );
  const read = () => {
    if (!current || select.value === '') return undefined;
    return { [key]: select.value, ...(current.read() as object) };
  };
  return { element, read };
}

export function fieldFor(path: string, label: string, schema: JsonSchema, optional: boolean, custom: CustomFields = {}): Field {
  const own = custom[path];
  if (own) return own(path, label, schema);
  const variants = schema.oneOf ?? schema.anyOf;
  const key = variants && variants.every((v) => v.type === 'object') ? discriminator(variants) : undefined;
  if (variants && key) return unionField(path, label, variants, key, optional, { custom });
  if (schema.enum) return enumField(path, label, schema, optional);
  if (schema.type === 'integer' || schema.type === 'number') return numberField(path, label, schema);
  if (schema.type === 'boolean') return booleanField(path, label, schema);
  if (schema.type === 'object' && schema.properties)
    return objectField(path, label, schema, optional && schema.default === undefined, custom);
  return textField(path, label, schema);
}

/** Shows a problem's per-field errors next to their fields; returns those that have no field here. */
export function showFieldErrors(form: HTMLElement, errors: Array<{ path: string; message: string }>): string[] {
  for (const slot of form.querySelectorAll('[data-error-for]')) slot.textContent = '';
  const unplaced: string[] = [];
  for (const { path, message } of errors) {
    const slot = form.querySelector(`[data-error-for="${CSS.escape(path)}"]`);
    if (slot) slot.textContent = message;
    else unplaced.push(`${path}: ${message}`);
  }
  return unplaced;
}
