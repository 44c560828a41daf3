import type { FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { renderSummaryText, summaryAtDepth } from '../../../../common/summary-table.js';
import { SummaryDepth, type ModelSummary } from '../../../../schemas/model.js';

export const SummaryQuery = z.strictObject({
  depth: SummaryDepth.describe("Rows down to this depth of the module tree, as torchinfo's depth"),
});

/** Wants the plain-text table only when the client asks for text and not for JSON first. */
function wantsText(request: FastifyRequest): boolean {
  const accept = request.headers.accept ?? '';
  return accept.includes('text/plain') && !/^application\/(json|\*)/.test(accept);
}

/** A summary at the asked depth: JSON, or torchinfo's table for `Accept: text/plain`. */
export function sendSummary(request: FastifyRequest, reply: FastifyReply, summary: ModelSummary, depth: number) {
  const atDepth = summaryAtDepth(summary, depth);
  if (wantsText(request)) return reply.type('text/plain; charset=utf-8').send(renderSummaryText(atDepth));
  return reply.send(atDepth);
}
