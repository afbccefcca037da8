import { CNI_CODES, CniError } from './errors.js';

/**
 * Tap names from the `tapName` template: {index} is the number CNI_IFNAME ends with (eth0 -> 0,
 * net2 -> 2; 0 when it ends with no digit), {ifname} is CNI_IFNAME. The default, tap{index}_kata,
 * is Kata's own name for the tap of endpoint <index>.
 */
export function endpointIndex(ifname: string): number {
  const m = /([0-9]+)$/.exec(ifname);
  return m ? Math.min(Number(m[1]), 65535) : 0;
}

export function expandTapName(template: string, ifname: string): string {
  const name = template.replace(/\{index\}/g, String(endpointIndex(ifname))).replace(/\{ifname\}/g, ifname);
  const bytes = Buffer.byteLength(name, 'utf8');
  if (bytes > 15) {
    throw new CniError(
      CNI_CODES.INVALID_CONFIG,
      `field "tapName": template "${template}" gives "${name}" for CNI_IFNAME ${ifname}, ${bytes} bytes; Linux interface names have at most 15 (shorten the template)`,
    );
  }
  if (name === ifname) {
    throw new CniError(
      CNI_CODES.INVALID_CONFIG,
      `field "tapName": template "${template}" gives "${name}", the name of CNI_IFNAME itself; the tap needs a name of its own`,
    );
  }
  if (name === '.' || name === '..')
    throw new CniError(CNI_CODES.INVALID_CONFIG, `field "tapName": template "${template}" gives "${name}", not a valid interface name`);
  return name;
}
