/**
 * devmapper/: device-mapper thin pools and thin devices for VM block storage (containerd's
 * devmapper snapshotter's pools, Kata's block rootfs). Sits below runtime-core; imports only host/.
 */
export { detectBlockRootfs, type BlockRootfs, type RootfsMount } from './block-rootfs.js';
export { parseThinId } from './device-ids.js';
export { containerdSnippet } from './containerd-config.js';
export { createPool, poolStatus, removePool, type PoolInfo, type PoolStatus } from './thin-pool.js';
export { activateThin, createSnapshot, createThin, deactivateThin, removeThin, type ThinInfo } from './thin-device.js';
export { formatSize, parseSize } from './sizes.js';
