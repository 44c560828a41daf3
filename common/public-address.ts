import { lookup } from 'node:dns/promises';
import net from 'node:net';

/** Addresses a webhook may not reach unless private ones are allowed: loopback, private, link-local, shared, multicast, reserved. */
const NOT_PUBLIC = new net.BlockList();
for (const [address, prefix] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
] as const)
  NOT_PUBLIC.addSubnet(address, prefix, 'ipv4');
for (const [address, prefix] of [
  ['::', 128],
  ['::1', 128],
  ['fc00::', 7],
  ['fe80::', 10],
  ['ff00::', 8],
  ['64:ff9b::', 96],
] as const)
  NOT_PUBLIC.addSubnet(address, prefix, 'ipv6');

export function isPublicAddress(address: string): boolean {
  const family = net.isIPv6(address) ? 'ipv6' : 'ipv4';
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return isPublicAddress(mapped[1]);
  return !NOT_PUBLIC.check(address, family);
}

export class ForbiddenAddressError extends Error {}

/**
 * The address to connect to for `hostname`: every address it resolves to must be public unless
 * `allowPrivate`, and the caller connects to the one returned (a second lookup could answer otherwise).
 */
export async function checkedAddress(hostname: string, allowPrivate: boolean): Promise<{ address: string; family: number }> {
  const bare = hostname.replace(/^\[(.*)\]$/, '$1');
  const addresses = net.isIP(bare) ? [{ address: bare, family: net.isIP(bare) }] : await lookup(bare, { all: true });
  if (addresses.length === 0) throw new ForbiddenAddressError(`${hostname} resolves to no address`);
  const forbidden = addresses.find(({ address }) => !isPublicAddress(address));
  if (forbidden && !allowPrivate)
    throw new ForbiddenAddressError(`${hostname} resolves to ${forbidden.address}, a loopback, private or link-local address`);
  return addresses[0];
}
