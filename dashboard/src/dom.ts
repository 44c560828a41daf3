type Child = Node | string | number | null | undefined | false;
type Attributes = Record<string, string | number | boolean | null | undefined | EventListener>;

/** An element with attributes (`on*` become listeners, `false`/null are left out) and children, text never parsed as HTML. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attributes: Attributes = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (typeof value === 'function') element.addEventListener(name.slice(2).toLowerCase(), value);
    else if (value === true) element.setAttribute(name, '');
    else if (value !== false && value !== null && value !== undefined) element.setAttribute(name, String(value));
  }
  element.append(
    ...children
      .filter((c): c is Node | string | number => c !== null && c !== undefined && c !== false)
      .map((c) => (typeof c === 'number' ? String(c) : c)),
  );
  return element;
}

export function replaceChildren(parent: Element, ...children: Child[]): void {
  parent.replaceChildren(
    ...children
      .filter((c): c is Node | string | number => c !== null && c !== undefined && c !== false)
      .map((c) => (typeof c === 'number' ? String(c) : c)),
  );
}

export const percent = (value: number | null | undefined, digits = 1) =>
  typeof value === 'number' ? `${(100 * value).toFixed(digits)}%` : '–';

export const badge = (state: string) => h('span', { class: `badge ${state}`, 'data-state': state }, state);

/** Work a page started (timers, streams), stopped when the page is left. */
export type Cleanup = () => void;

const SVG = 'http://www.w3.org/2000/svg';

/** An SVG element with attributes and children (the parallel-coordinates view draws with these). */
export function svg(tag: string, attributes: Record<string, string | number> = {}, ...children: Array<Node | string>): SVGElement {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, String(value));
  element.append(...children);
  return element;
}

/** Runs `load` now and again `ms` after each run ends (a slow answer never piles up requests); the cleanup stops it. */
export function every(ms: number, load: () => Promise<unknown>): Cleanup {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let stopped = false;
  const run = () =>
    void load()
      .catch(() => undefined)
      .finally(() => {
        if (!stopped) timer = setTimeout(run, ms);
      });
  run();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

/** A parameter or metric as a person reads it: numbers to `digits` significant digits, anything else as JSON. */
export const formatValue = (value: unknown, digits = 4) =>
  typeof value === 'number' ? Number(value.toPrecision(digits)).toString() : JSON.stringify(value);

export const when = (iso: string | null) => (iso ? new Date(iso).toLocaleString() : '–');

/** A duration in the units a person reads: 42 s, 3 min 05 s, 1 h 02 min. */
export function duration(fromIso: string | null, toIso: string | null): string {
  if (!fromIso || !toIso) return '–';
  const seconds = Math.max(0, Math.round((Date.parse(toIso) - Date.parse(fromIso)) / 1000));
  if (seconds < 60) return `${seconds} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${String(seconds % 60).padStart(2, '0')} s`;
  return `${Math.floor(seconds / 3600)} h ${String(Math.floor(seconds / 60) % 60).padStart(2, '0')} min`;
}

/** The API's job states and modes (schemas/job-status.ts, schemas/model.ts), kept here so the page bundles no zod. */
export const JOB_STATES = ['queued', 'running', 'stalled', 'completed', 'stopped_early', 'failed', 'cancelled'] as const;
export const FINISHED = new Set<string>(['completed', 'stopped_early', 'failed', 'cancelled']);
export const MODES = ['pretrained', 'feature_extraction', 'fine_tuning'] as const;
