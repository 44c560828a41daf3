/** One Server-Sent Event as this service sends them: an id, a name and JSON data. */
export interface SseMessage {
  id: string | null;
  event: string;
  data: unknown;
}

/**
 * Parses a text/event-stream body into events (comments, such as heartbeats, are skipped). Runs in Node
 * and in browsers: only TextDecoder and async iteration.
 */
export async function* sseMessages(body: AsyncIterable<Uint8Array>): AsyncGenerator<SseMessage> {
  const decoder = new TextDecoder();
  let buffer = '';
  for await (const chunk of body) {
    buffer += decoder.decode(chunk, { stream: true });
    let end: number;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const fields = new Map<string, string>();
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        fields.set(line.slice(0, colon), line.slice(colon + 1).replace(/^ /, ''));
      }
      const event = fields.get('event');
      if (event) yield { id: fields.get('id') ?? null, event, data: JSON.parse(fields.get('data') ?? 'null') };
    }
  }
}
