/** CIDR ranges (IPv4 and IPv6) for `trustedProxies`. */

/** An IP address as a bigint plus its family width, or undefined when it is not one. */
function parseIp(ip: string): { v: bigint; bits: 32 | 128 } | undefined {
  if (ip.startsWith("::ffff:") && ip.includes(".")) ip = ip.slice(7); // IPv4-mapped
  const p4 = ip.split(".");
  if (p4.length === 4) {
    let v = 0n;
    for (const p of p4) {
      if (!/^\d{1,3}$/.test(p) || Number(p) > 255) return undefined;
      v = (v << 8n) | BigInt(Number(p));
    }
    return { v, bits: 32 };
  }
  if (!ip.includes(":") || !/^[0-9a-fA-F:]+$/.test(ip)) return undefined;
  const halves = ip.split("::");
  if (halves.length > 2) return undefined;
  const head = halves[0] ? halves[0].split(":") : [];
  const tail = halves.length === 2 && halves[1] ? halves[1].split(":") : [];
  const missing = 8 - head.length - tail.length;
  if ((halves.length === 1 && missing !== 0) || missing < 0) return undefined;
  const groups = [...head, ...Array(halves.length === 2 ? missing : 0).fill("0"), ...tail];
  let v = 0n;
  for (const g of groups) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined;
    v = (v << 16n) | BigInt(parseInt(g, 16));
  }
  return { v, bits: 128 };
}

export interface Cidr {
  base: bigint;
  bits: 32 | 128;
  prefix: number;
}

/** Parses `10.0.0.0/8`, `::1/128` or a bare address; throws a user-facing Error. */
export function parseCidr(s: string): Cidr {
  const [addr, pre] = s.split("/");
  const ip = parseIp(addr);
  if (!ip) throw new Error(`"${s}" is not an IP address or CIDR range`);
  const prefix = pre === undefined ? ip.bits : Number(pre);
  if (
    !Number.isInteger(prefix) || prefix < 0 || prefix > ip.bits ||
    (pre !== undefined && !/^\d+$/.test(pre))
  ) {
    throw new Error(`"${s}" has a bad prefix length`);
  }
  const shift = BigInt(ip.bits - prefix);
  return { base: (ip.v >> shift) << shift, bits: ip.bits, prefix };
}

/** A matcher over CIDR ranges; an empty list matches nothing. */
export function cidrMatcher(ranges: string[]): (ip: string) => boolean {
  if (ranges.length === 0) return () => false;
  const cidrs = ranges.map(parseCidr);
  const cache = new Map<string, boolean>();
  return (ip) => {
    let hit = cache.get(ip);
    if (hit !== undefined) return hit;
    const a = parseIp(ip);
    hit = a !== undefined && cidrs.some((c) => {
      if (c.bits !== a.bits) return false;
      const shift = BigInt(c.bits - c.prefix);
      return (a.v >> shift) << shift === c.base;
    });
    if (cache.size < 10_000) cache.set(ip, hit);
    return hit;
  };
}
