import type { FastifyRequest } from 'fastify';

/**
 * The server may work on this request for minutes once its body has arrived (unpacking, a preflight,
 * waiting for a busy thread): the connection's idle cut-off would close it under the client meanwhile.
 * Lifted only then: receiving stays bounded by the idle and request timeouts, the work by its thread's timeout.
 */
export function allowLongWork(request: FastifyRequest): void {
  // Injected requests (light-my-request) have a socket without timeouts.
  const lift = () => {
    const { socket } = request.raw;
    if (typeof socket?.setTimeout === 'function') socket.setTimeout(0);
  };
  if (request.raw.readableEnded || request.raw.complete) lift();
  else request.raw.once('end', lift);
}
