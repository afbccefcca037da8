// The arguments of an install script (cni/build/install.mjs, shim/build/install.mjs): --help (or
// -h) prints the usage and exits 0; every other argument must be one of the script's options, a
// valued one followed by its value, else the usage goes to stderr with exit 2, before anything is
// installed (a --help that installed, as both scripts did once, put files into /opt/cni/bin or
// /usr/local/bin).
export function installArgs(name, usage, { valued = [], flags = [] }, argv = process.argv.slice(2)) {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(usage);
    process.exit(0);
  }
  const values = {};
  const set = new Set();
  for (let k = 0; k < argv.length; k++) {
    const a = argv[k];
    if (valued.includes(a)) {
      const v = argv[k + 1];
      if (v === undefined || v.startsWith('--')) refuse(name, usage, `${a} wants a value`);
      values[a] = v;
      k++;
    } else if (flags.includes(a)) {
      set.add(a);
    } else {
      refuse(name, usage, `unknown argument ${JSON.stringify(a)}`);
    }
  }
  return { values, flags: set };
}

function refuse(name, usage, why) {
  process.stderr.write(`${name}: ${why}\n${usage}`);
  process.exit(2);
}
