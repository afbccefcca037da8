export * from './config.js';
export * from './flavor.js';
export * from './virtiofsd-args.js';
export * from './readiness.js';
export * from './virtiofsd.js';
export * from './shared-dir.js';
export * from './plugin.js';
export * from './extra-args.js';
