// `npm ci` runs this (the package's install script): builds the oneDNN kernels addon (binding.gyp)
// where libdnnl-dev and a C++ toolchain are installed. Without them the install still succeeds and the
// worker runs the wasm backend's own kernels, saying so in one log line.
import { spawnSync } from 'node:child_process';

if (process.env.RETRAIN_NATIVE_KERNELS === '0') {
  console.log('retrain: RETRAIN_NATIVE_KERNELS=0, not building the oneDNN kernels addon');
  process.exit(0);
}
// npm puts its own node-gyp on PATH for install scripts; Node's headers come from npm's nodedir setting.
const build = spawnSync('node-gyp', ['rebuild'], { stdio: ['ignore', 'inherit', 'pipe'], encoding: 'utf8' });
if (build.status === 0) {
  console.log('retrain: built the oneDNN kernels addon');
} else {
  const reason =
    build.error?.message ?? (build.stderr.split('\n').find((line) => /error|not found|No such file/i.test(line)) || `exit ${build.status}`);
  console.log(`retrain: the oneDNN kernels addon was not built (${reason.trim()}); install libdnnl-dev, g++ and make, then npm rebuild`);
}
