// Adam's update of every variable in one pass over their values, gradients and moments (tfjs spends a dozen
// passes and as many allocations on each variable), with tfjs' own float32 arithmetic in its order, so results
// are the same to the bit.
#include "context.h"
#include <atomic>
#include <cstring>
#include <vector>

namespace retrain {

/**
 * Adam over [begin, end), in place: each element is read before it is written, so the cache lines that are read
 * are the ones written (new outputs would first be read from memory to be written: ~30% more traffic). Its own
 * function so the compiler knows the four arrays do not overlap and vectorises it.
 */
WIDE_VECTORS static void AdamRange(float* __restrict value, const float* __restrict gradient, float* __restrict m, float* __restrict v,
                                     const float* s, size_t begin, size_t end) {
  const float beta1 = s[0], oneMinusBeta1 = s[1], beta2 = s[2], oneMinusBeta2 = s[3];
  const float correction1 = s[4], correction2 = s[5], epsilon = s[6], step = s[7];
  for (size_t i = begin; i < end; i++) {
    const float g = gradient[i];
    const float firstMoment = m[i] * beta1 + g * oneMinusBeta1;
    const float secondMoment = v[i] * beta2 + (g * g) * oneMinusBeta2;
    m[i] = firstMoment;
    v[i] = secondMoment;
    value[i] = ((firstMoment / correction1) / (std::sqrt(secondMoment / correction2) + epsilon)) * step + value[i];
  }
}

/** Contiguous [begin, end) element ranges of one array. */
using Spans = std::vector<std::pair<size_t, size_t>>;

/** Runs `body(piece, begin, end)` over every element of every piece's spans on every core, in one parallel region. */
template <typename Body>
static void ParallelSpans(const std::vector<const Spans*>& pieces, Body body) {
  size_t total = 0;
  for (const Spans* spans : pieces)
    for (auto [begin, end] : *spans) total += end - begin;
  ParallelRanges(total, [&](size_t from, size_t to) {
    size_t skipped = 0;
    for (size_t piece = 0; piece < pieces.size() && skipped < to; piece++) {
      for (auto [begin, end] : *pieces[piece]) {
        size_t length = end - begin;
        if (from < skipped + length && to > skipped)
          body(piece, begin + std::max(from, skipped) - skipped, begin + std::min(to, skipped + length) - skipped);
        skipped += length;
      }
    }
  });
}

/**
 * The kept taps' elements of an HWIO filter and the rest, from [kh, kw, channels (in x out), top, rows, left, columns]:
 * every row of taps holds kw x channels floats, of which the kept columns are one contiguous run.
 */
static std::pair<Spans, Spans> TapSpans(const int32_t* live, size_t n) {
  const size_t kh = size_t(live[0]), kw = size_t(live[1]), channels = size_t(live[2]);
  const size_t top = size_t(live[3]), rows = size_t(live[4]), left = size_t(live[5]), columns = size_t(live[6]);
  if (kh * kw * channels != n || top + rows > kh || left + columns > kw) throw std::invalid_argument("live taps do not fit the value");
  Spans kept, dead;
  auto add = [](Spans& spans, size_t begin, size_t end) {
    if (begin == end) return;
    if (!spans.empty() && spans.back().second == begin) spans.back().second = end;
    else spans.emplace_back(begin, end);
  };
  for (size_t row = 0; row < kh; row++) {
    size_t start = row * kw * channels;
    if (row < top || row >= top + rows) {
      add(dead, start, start + kw * channels);
      continue;
    }
    add(dead, start, start + left * channels);
    add(kept, start + left * channels, start + (left + columns) * channels);
    add(dead, start + (left + columns) * channels, start + kw * channels);
  }
  return {kept, dead};
}

/** Whether m and v are +0 everywhere in `spans` (any other bits, -0 too, count as set). */
static bool AllZero(const float* m, const float* v, const Spans& spans) {
  std::atomic<bool> set{false};
  ParallelSpans({&spans}, [&](size_t, size_t begin, size_t end) {
    uint32_t bits = 0;
    for (size_t i = begin; i < end; i++) {
      uint32_t a, b;
      std::memcpy(&a, m + i, 4);
      std::memcpy(&b, v + i, 4);
      bits |= a | b;
    }
    if (bits) set = true;
  });
  return !set;
}

/** One variable's arrays and the elements its update touches. */
struct AdamVariable {
  float* value;
  const float* gradient;
  float* m;
  float* v;
  Spans spans;
};

/** The Float32Array at `index` of the JS array `list`, of `n` elements (n = 0: any length, which it returns). */
static float* FloatAt(const Napi::Array& list, uint32_t index, size_t& n, const char* name) {
  Napi::Value item = list.Get(index);
  if (n == 0) {
    if (!item.IsTypedArray()) throw std::invalid_argument(std::string(name) + " must hold Float32Arrays");
    n = item.As<Napi::TypedArray>().ElementLength();
  }
  return FloatData(item, n, name);
}

/**
 * adam(values, gradients, ms, vs, scalars, lives) updates every variable's value, m and v in place, all in one parallel
 * pass; the first four are arrays of Float32Arrays, one per variable; scalars is a Float32Array of [beta1, 1 - beta1,
 * beta2, 1 - beta2, 1 - beta1^t, 1 - beta2^t, epsilon, -learningRate]. A variable's `lives` entry, Int32Array [kh, kw,
 * channels, top, rows, left, columns, check] or null, says its gradient is 0 outside those taps of an HWIO filter: where m
 * and v are 0 there too (known, or checked when `check` is 1), Adam leaves those elements as they are, which is what its
 * arithmetic would do to them, and updates only the kept taps. Returns a Uint8Array: 1 for each variable where it did.
 */
Napi::Value Adam(const Napi::CallbackInfo& info) {
  Napi::Value keptOnly = info.Env().Null();
  Guarded(info, "Adam", [&] {
    if (info.Length() != 6) throw std::invalid_argument("expects 6 arguments");
    for (int i : {0, 1, 2, 3, 5})
      if (!info[i].IsArray()) throw std::invalid_argument("values, gradients, ms, vs and lives must be arrays");
    Napi::Array values = info[0].As<Napi::Array>(), gradients = info[1].As<Napi::Array>(), ms = info[2].As<Napi::Array>(),
                vs = info[3].As<Napi::Array>(), lives = info[5].As<Napi::Array>();
    const uint32_t count = values.Length();
    if (gradients.Length() != count || ms.Length() != count || vs.Length() != count || lives.Length() != count)
      throw std::invalid_argument("values, gradients, ms, vs and lives must be as long");
    const float* scalars = FloatData(info[4], 8, "scalars");
    Napi::Uint8Array kept = Napi::Uint8Array::New(info.Env(), count);
    std::vector<AdamVariable> variables(count);
    for (uint32_t i = 0; i < count; i++) {
      size_t n = 0;
      AdamVariable& variable = variables[i];
      variable.value = FloatAt(values, i, n, "value");
      variable.gradient = FloatAt(gradients, i, n, "gradient");
      variable.m = FloatAt(ms, i, n, "m");
      variable.v = FloatAt(vs, i, n, "v");
      const float* arrays[] = {variable.value, variable.gradient, variable.m, variable.v};
      for (int a = 0; a < 4; a++)
        for (int b = a + 1; b < 4; b++)
          if (arrays[a] < arrays[b] + n && arrays[b] < arrays[a] + n) throw std::invalid_argument("value, gradient, m and v overlap");
      variable.spans = {{0, n}};
      Napi::Value live = lives.Get(i);
      if (live.IsNull()) continue;
      const int32_t* taps = IntData(live, 8, "live");
      auto [keptTaps, deadTaps] = TapSpans(taps, n);
      if (taps[7] != 0 && !AllZero(variable.m, variable.v, deadTaps)) continue;
      variable.spans = std::move(keptTaps);
      kept[i] = 1;
    }
    std::vector<const Spans*> pieces;
    for (const AdamVariable& variable : variables) pieces.push_back(&variable.spans);
    ParallelSpans(pieces, [&](size_t piece, size_t begin, size_t end) {
      const AdamVariable& variable = variables[piece];
      AdamRange(variable.value, variable.gradient, variable.m, variable.v, scalars, begin, end);
    });
    keptOnly = kept;
  });
  return keptOnly;
}

}  // namespace retrain
