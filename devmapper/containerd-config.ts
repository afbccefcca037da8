/**
 * What containerd needs to use a pool: the `[plugins."io.containerd.snapshotter.v1.devmapper"]`
 * section (containerd 1.6+ config version 2; plugins/snapshots/devmapper/config.go), with the keys
 * Kata's Firecracker guide writes by hand.
 */
/** The containerd 1.6+ configuration that makes its devmapper snapshotter use the pool. */
export function containerdSnippet(pool: string, rootPath: string, baseImageSize: string): string {
  const q = (s: string): string => JSON.stringify(s);
  return [
    '[plugins."io.containerd.snapshotter.v1.devmapper"]',
    `  pool_name = ${q(pool)}`,
    `  root_path = ${q(rootPath)}`,
    `  base_image_size = ${q(baseImageSize)}`,
    '  discard_blocks = true',
    '',
  ].join('\n');
}
