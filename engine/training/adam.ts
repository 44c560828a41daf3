import * as tf from '../tf.js';
import { nativeAdam, type AdamUpdate } from '../native/kernels/adam.js';
import { registeredOneDnn } from '../native/kernels/register.js';
import type { WasmBackend } from '../native/kernels/heap.js';

/** What tfjs' AdamOptimizer keeps privately: moments per variable (in gradient order) and beta powers. */
interface AdamState {
  accBeta1: tf.Variable;
  accBeta2: tf.Variable;
  accumulatedFirstMoment: Array<{ originalName: string; variable: tf.Variable } | undefined>;
  accumulatedSecondMoment: Array<{ originalName: string; variable: tf.Variable } | undefined>;
  beta1: number;
  beta2: number;
  epsilon: number;
  learningRate: number;
}

type SavedState = Parameters<tf.Optimizer['setWeights']>[0];

/** Names of the beta powers in a saved state (no variable is called that: tfjs' names have a slash and a layer name). */
const BETA_POWERS = ['adam:accBeta1', 'adam:accBeta2'] as const;

/**
 * tfjs' Adam (same state and float32 results) that updates all variables in one native pass where the
 * backend has the kernel, and is tfjs' own elsewhere. Its saved state carries the beta powers too, so a
 * resumed run steps exactly as an uninterrupted one.
 */
export class FusedAdamOptimizer extends tf.AdamOptimizer {
  /** tfjs keeps Adam's state in private fields: read here, in one place. */
  private get internals(): AdamState {
    return this as unknown as AdamState;
  }

  override async getWeights(): Promise<SavedState> {
    const state = this.internals;
    return [
      ...(await super.getWeights()),
      { name: BETA_POWERS[0], tensor: state.accBeta1 },
      { name: BETA_POWERS[1], tensor: state.accBeta2 },
    ];
  }

  override async setWeights(weights: SavedState): Promise<void> {
    const powers = BETA_POWERS.map((name) => weights.find((weight) => weight.name === name));
    await super.setWeights(weights.filter((weight) => !(BETA_POWERS as readonly string[]).includes(weight.name)));
    // tfjs recomputes the powers as beta^(t+1), which differs in the last bits from the run's products.
    const state = this.internals;
    if (powers[0] && powers[1]) {
      state.accBeta1.assign(powers[0].tensor);
      state.accBeta2.assign(powers[1].tensor);
    }
  }

  override applyGradients(variableGradients: Parameters<tf.AdamOptimizer['applyGradients']>[0]): void {
    const addon = registeredOneDnn();
    if (!addon) {
      super.applyGradients(variableGradients);
      return;
    }
    const state = this.internals;
    const named: ReadonlyArray<readonly [string, tf.Tensor | undefined]> = Array.isArray(variableGradients)
      ? variableGradients.map(({ name, tensor }) => [name, tensor] as const)
      : Object.entries(variableGradients);
    const f32 = Math.fround;
    const [accBeta1, accBeta2] = [state.accBeta1.dataSync()[0], state.accBeta2.dataSync()[0]];
    const scalars = [
      state.beta1,
      1 - state.beta1,
      state.beta2,
      1 - state.beta2,
      1 - accBeta1,
      1 - accBeta2,
      state.epsilon,
      -state.learningRate,
    ].map(f32);
    const backend = tf.backend() as WasmBackend;
    const updates = named.flatMap(([name, gradient], i) => {
      const value = (tf.engine() as unknown as { registeredVariables: Record<string, tf.Variable> }).registeredVariables[name];
      const [m, v] = [state.accumulatedFirstMoment, state.accumulatedSecondMoment].map((list, k) => {
        list[i] ??= { originalName: `${name}/${k === 0 ? 'm' : 'v'}`, variable: tf.tidy(() => tf.zerosLike(value).variable(false)) };
        return list[i].variable;
      });
      return gradient ? [[value, gradient, m, v] as const satisfies AdamUpdate] : [];
    });
    // The update is written in place: data another tensor holds too (a variable made from a kept tensor, a restored moment) is
    // copied first, so that tensor keeps its values.
    for (const target of updates.flatMap(([value, , m, v]) => [value, m, v])) {
      if (backend.refCount(target.dataId) === 1) continue;
      const copy = tf.tensor(target.dataSync(), target.shape, 'float32');
      target.assign(copy);
      copy.dispose();
    }
    nativeAdam(addon, updates, scalars);
    tf.tidy(() => {
      state.accBeta1.assign(tf.mul(state.accBeta1, state.beta1));
      state.accBeta2.assign(tf.mul(state.accBeta2, state.beta2));
    });
    this.incrementIterations();
  }
}
