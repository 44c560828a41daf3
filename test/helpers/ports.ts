import net from 'node:net';

/** A loopback port nothing listens on now: for a server the test starts, or to find a dependency unreachable. */
export function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}
