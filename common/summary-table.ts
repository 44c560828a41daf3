import type { ModelSummary, SummaryRow } from '../schemas/model.js';

const thousands = (n: number) => n.toLocaleString('en-US');

function readableMultAdds(n: number): string {
  if (n >= 1e12) return `(T): ${(n / 1e12).toFixed(2)}`;
  if (n >= 1e9) return `(G): ${(n / 1e9).toFixed(2)}`;
  return `(M): ${(n / 1e6).toFixed(2)}`;
}

function paramCell(row: SummaryRow): string {
  if (!row.showsParams) return '--';
  return row.trainableParams > 0 ? thousands(row.params) : `(${thousands(row.params)})`;
}

function layerCell(row: SummaryRow): string {
  if (row.depth === 0) return `${row.type} (${row.varName})`;
  const branch = row.depth === 1 ? '├─' : `${'│    '.repeat(row.depth - 1)}└─`;
  return `${branch}${row.type} (${row.varName}): ${row.depthIndex}`;
}

/** The summary laid out like torchinfo's table; frozen parameter counts are in parentheses. */
export function renderSummaryText(summary: ModelSummary): string {
  const firstWidth = Math.max(40, ...summary.rows.map((r) => layerCell(r).length + 2));
  const colWidth = 25;
  const rule = '='.repeat(firstWidth + 2 * colWidth);
  const line = (a: string, b: string, c: string) => `${a.padEnd(firstWidth)}${b.padEnd(colWidth)}${c}`.trimEnd();
  const t = summary.totals;
  return [
    rule,
    line('Layer (type (var_name):depth-idx)', 'Output Shape', 'Param #'),
    rule,
    ...summary.rows.map((r) => line(layerCell(r), `[${r.outputShape.join(', ')}]`, paramCell(r))),
    rule,
    `Total params: ${thousands(t.totalParams)}`,
    `Trainable params: ${thousands(t.trainableParams)}`,
    `Non-trainable params: ${thousands(t.nonTrainableParams)}`,
    `Total mult-adds ${readableMultAdds(t.multAdds)}`,
    rule,
    `Input size (MB): ${t.inputSizeMB.toFixed(2)}`,
    `Forward/backward pass size (MB): ${t.forwardBackwardPassSizeMB.toFixed(2)}`,
    `Params size (MB): ${t.paramsSizeMB.toFixed(2)}`,
    `Estimated Total Size (MB): ${t.estimatedTotalSizeMB.toFixed(2)}`,
    rule,
    '',
  ].join('\n');
}

/**
 * The same summary at a shallower depth, derived from a deeper one: the rows to `depth`, where a row
 * at the new bottom shows its total and an expanded one shows "--", as torchinfo does.
 */
export function summaryAtDepth(summary: ModelSummary, depth: number): ModelSummary {
  if (!Number.isInteger(depth) || depth < 0 || depth > summary.depth) {
    throw new RangeError(`depth must be an integer from 0 to ${summary.depth}`);
  }
  const rows = summary.rows.flatMap((row, i) => {
    if (row.depth > depth) return [];
    const expanded = (summary.rows[i + 1]?.depth ?? -1) > row.depth && row.depth < depth;
    return [{ ...row, showsParams: row.params > 0 && !expanded }];
  });
  return { ...summary, depth, rows };
}
