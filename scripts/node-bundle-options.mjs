// The esbuild options every one-file Node bundle of this project shares (the containerd shim,
// shim/build/bundle.mjs; the CLI and the supervisor, scripts/bundle-entries.mjs): CommonJS for
// Node 20, readable (not minified, names kept: stack traces and logs name real functions), and
// esbuild itself left out (loaded only to build a guest kit, from the checkout's node_modules).
export const NODE_BUNDLE_OPTIONS = Object.freeze({
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  minify: false,
  keepNames: true,
  legalComments: 'none',
  logLevel: 'warning',
  external: ['esbuild'],
});
