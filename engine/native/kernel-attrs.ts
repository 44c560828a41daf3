import type * as tf from '../tf.js';

/** tfjs types every kernel's attributes as one loose map: each kernel knows the shape of its own. */
export const attrsOf = <T>(attrs: tf.NamedAttrMap | undefined): T => (attrs ?? {}) as unknown as T;

/** Attributes of a kernel call, as tfjs' runKernel takes them. */
export const attrMap = (attrs: object): tf.NamedAttrMap => attrs as unknown as tf.NamedAttrMap;
