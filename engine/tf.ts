// tfjs as the service uses it: the ops (as functions: the chained x.slice(...) forms are the bundle's, not tfjs-core's),
// the layers API and the pure-JS backend (registered on import, as the '@tensorflow/tfjs' bundle does). Not that bundle
// itself: it also loads the graph-model converter, tf.data and the WebGL backend: ~0.3 s of every process's start (the
// API, each worker, each job's sandboxed trainer).
export * from '@tensorflow/tfjs-core';
export * from '@tensorflow/tfjs-layers';
import '@tensorflow/tfjs-backend-cpu';
