/**
 * The UDP side of an RTP source: parses `listen` and `allow_from`, binds an
 * IPv4 or IPv6 socket, and sets the receive buffer.
 */
import { createSocket, type Socket } from 'node:dgram';
import { lookup } from 'node:dns/promises';
import { BlockList, isIP } from 'node:net';

import { ConfigError, SourceError } from '../../errors.ts';
import type { Logger } from '../../logger.ts';

export interface ListenAddress {
  host: string;
  port: number;
  family: 4 | 6;
}

/** Splits `HOST:PORT` (IPv6 in brackets) and resolves a host name to an address. */
export async function resolveListenAddress(listen: string, keyPath: string): Promise<ListenAddress> {
  const colon = listen.lastIndexOf(':');
  const rawHost = listen.slice(0, colon);
  const port = Number(listen.slice(colon + 1));
  if (colon <= 0 || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new ConfigError(`${keyPath}: "${listen}" is not HOST:PORT; write it as 127.0.0.1:5004 or [::1]:5004`, {
      keyPath,
    });
  }
  const host = rawHost.startsWith('[') && rawHost.endsWith(']') ? rawHost.slice(1, -1) : rawHost;
  const family = isIP(host);
  if (family === 4 || family === 6) {
    return { host, port, family };
  }
  try {
    const resolved = await lookup(host);
    return { host: resolved.address, port, family: resolved.family === 6 ? 6 : 4 };
  } catch (error) {
    throw new ConfigError(`${keyPath}: host "${host}" of "${listen}" could not be resolved; use an IP address`, {
      keyPath,
      cause: error,
    });
  }
}

/**
 * Builds the allowlist of sender addresses: single addresses or CIDR
 * subnets. An IPv4 entry also matches its IPv4-mapped IPv6 form, which a
 * dual-stack IPv6 socket reports.
 */
export function buildAllowList(entries: readonly string[], keyPath: string): BlockList {
  const list = new BlockList();
  for (const entry of entries) {
    const slash = entry.indexOf('/');
    const address = slash === -1 ? entry : entry.slice(0, slash);
    const family = isIP(address);
    if (family === 0) {
      throw new ConfigError(`${keyPath}: "${entry}" is not an IP address or CIDR subnet such as 10.0.0.0/8`, {
        keyPath,
      });
    }
    const type = family === 6 ? 'ipv6' : 'ipv4';
    if (slash === -1) {
      list.addAddress(address, type);
      continue;
    }
    const prefix = Number(entry.slice(slash + 1));
    const maxPrefix = family === 6 ? 128 : 32;
    if (!Number.isInteger(prefix) || prefix < 0 || prefix > maxPrefix) {
      throw new ConfigError(`${keyPath}: "${entry}" has an invalid prefix length; use 0 to ${maxPrefix}`, { keyPath });
    }
    list.addSubnet(address, prefix, type);
  }
  return list;
}

/** True when `allowList` admits the sender; an undefined list admits everyone. */
export function isSenderAllowed(allowList: BlockList | undefined, address: string, family: string): boolean {
  if (allowList === undefined) {
    return true;
  }
  return allowList.check(address, family === 'IPv6' ? 'ipv6' : 'ipv4');
}

/** Binds a UDP socket on `address`; sets the receive buffer when one is requested and logs the size granted. */
export async function bindRtpSocket(
  address: ListenAddress,
  receiveBufferBytes: number | undefined,
  log: Logger,
): Promise<Socket> {
  const socket = createSocket({ type: address.family === 6 ? 'udp6' : 'udp4' });
  await new Promise<void>((resolve, reject) => {
    const onError = (error: Error): void => {
      reject(
        new SourceError(
          `rtp source cannot listen on ${formatAddress(address)}: ${error.message}; choose a free port or address`,
          { cause: error },
        ),
      );
    };
    socket.once('error', onError);
    socket.bind(address.port, address.host, () => {
      socket.off('error', onError);
      resolve();
    });
  });

  if (receiveBufferBytes !== undefined) {
    try {
      socket.setRecvBufferSize(receiveBufferBytes);
    } catch (error) {
      log.warn({ err: error, requestedBytes: receiveBufferBytes }, 'rtp socket receive buffer could not be set');
    }
  }
  const grantedBytes = socket.getRecvBufferSize();
  // Linux doubles the requested size for its bookkeeping and caps the
  // request at net.core.rmem_max, so the granted size is reported as is.
  if (receiveBufferBytes !== undefined && grantedBytes < receiveBufferBytes) {
    log.warn(
      { requestedBytes: receiveBufferBytes, grantedBytes },
      'rtp socket receive buffer is smaller than requested; raise net.core.rmem_max to allow it',
    );
  }
  const bound = socket.address();
  log.info(
    { address: bound.address, port: bound.port, receiveBufferBytes: grantedBytes },
    'rtp source listening',
  );
  return socket;
}

export function formatAddress(address: { host: string; port: number; family: 4 | 6 }): string {
  return address.family === 6 ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
}
