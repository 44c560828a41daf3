// The per-thread context's parts (filter cache, buffer pool) and the argument readers every kernel uses.
#include "context.h"
#include <cstdlib>

namespace retrain {

dnnl::memory* WeightCache::find(const std::string& key) {
  auto hit = index_.find(key);
  if (hit == index_.end()) return nullptr;
  order_.splice(order_.begin(), order_, hit->second);
  return &hit->second->memory;
}

bool WeightCache::seenBefore(const std::string& key) {
  if (seen_.count(key)) return true;
  seen_.insert(key);
  seenOrder_.push_back(key);
  if (seenOrder_.size() > 4096) {
    seen_.erase(seenOrder_.front());
    seenOrder_.pop_front();
  }
  return false;
}

void WeightCache::erase(std::list<Entry>::iterator entry) {
  used_ -= entry->bytes;
  index_.erase(entry->key);
  if (!entry->slot.empty()) slots_.erase(entry->slot);
  order_.erase(entry);
}

dnnl::memory* WeightCache::insert(const std::string& key, dnnl::memory memory, size_t bytes, const std::string& slot) {
  if (auto previous = slots_.find(slot); !slot.empty() && previous != slots_.end()) {
    if (auto held = index_.find(previous->second); held != index_.end()) erase(held->second);
  }
  while (!order_.empty() && used_ + bytes > budget_) erase(std::prev(order_.end()));
  order_.push_front({key, std::move(memory), bytes, slot});
  index_[key] = order_.begin();
  if (!slot.empty()) slots_[slot] = key;
  used_ += bytes;
  return &order_.front().memory;
}

/** 64-byte aligned, as oneDNN's own allocations are; aligned_alloc wants a multiple of the alignment. */
static void* AllocateAligned(size_t bytes) {
  void* data = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
  if (!data) throw std::bad_alloc();
  return data;
}

void* NarrowedFilters::For(int64_t scaleId, int64_t filterId, size_t bytes, const std::function<void(void*)>& fill) {
  auto hit = layers_.find(scaleId);
  if (hit != layers_.end() && hit->second.bytes != bytes) {
    used_ -= hit->second.bytes;
    std::free(hit->second.data);
    layers_.erase(hit);
    hit = layers_.end();
  }
  if (hit == layers_.end()) {
    if (used_ + bytes > budget_) clear();
    hit = layers_.emplace(scaleId, Entry{0, bytes, AllocateAligned(bytes)}).first;
    used_ += bytes;
  }
  Entry& layer = hit->second;
  if (layer.filterId != filterId) {
    layer.filterId = 0;  // says nothing until the copy is whole: a fill that throws leaves no stale claim
    fill(layer.data);
    layer.filterId = filterId;
  }
  return layer.data;
}

void NarrowedFilters::clear() {
  for (auto& [layer, entry] : layers_) std::free(entry.data);
  layers_.clear();
  used_ = 0;
}

BufferPool::~BufferPool() {
  for (auto& [bytes, data] : free_) std::free(data);
}

void* BufferPool::take(size_t bytes) {
  auto hit = free_.find(bytes);
  if (hit != free_.end()) {
    void* data = hit->second;
    free_.erase(hit);
    kept_ -= bytes;
    return data;
  }
  return AllocateAligned(bytes);
}

void BufferPool::give(void* data, size_t bytes) {
  if (kept_ + bytes > budget_) {
    std::free(data);
    return;
  }
  free_.emplace(bytes, data);
  kept_ += bytes;
}

Borrowed::~Borrowed() {
  for (auto& [data, bytes] : items_) pool_.give(data, bytes);
}

dnnl::memory Borrowed::Memory(const dnnl::memory::desc& desc, const dnnl::engine& engine) {
  size_t bytes = desc.get_size();
  if (bytes == 0) return dnnl::memory(desc, engine, nullptr);
  void* data = pool_.take(bytes);
  items_.emplace_back(data, bytes);
  return dnnl::memory(desc, engine, data);
}

const sigset_t& AsynchronousSignals() {
  static const sigset_t signals = [] {
    sigset_t set;
    sigfillset(&set);
    for (int fault : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP}) sigdelset(&set, fault);
    return set;
  }();
  return signals;
}

Context& ContextOf(const Napi::Env& env) {
  auto* context = env.GetInstanceData<Context>();
  if (!context) {
    context = new Context();
    env.SetInstanceData(context);
    // The OpenMP threads that run oneDNN's kernels for this thread hold them for good.
#pragma omp parallel
    if (omp_get_thread_num() != 0) pthread_sigmask(SIG_BLOCK, &AsynchronousSignals(), nullptr);
  }
  return *context;
}

float* FloatData(const Napi::Value& value, size_t elements, const char* what) {
  if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
    throw std::invalid_argument(std::string(what) + " must be a Float32Array");
  }
  auto array = value.As<Napi::Float32Array>();
  if (array.ElementLength() < elements) {
    throw std::invalid_argument(std::string(what) + " holds " + std::to_string(array.ElementLength()) + " values, the shape needs " +
                                std::to_string(elements));
  }
  return array.Data();
}

const int32_t* IntData(const Napi::Value& value, size_t count, const char* what) {
  if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array ||
      value.As<Napi::Int32Array>().ElementLength() != count) {
    throw std::invalid_argument(std::string(what) + " must be an Int32Array of " + std::to_string(count) + " values");
  }
  auto array = value.As<Napi::Int32Array>();
  for (size_t i = 0; i < count; i++) {
    if (array[i] < 0) throw std::invalid_argument(std::string(what) + " has a negative value");
  }
  return array.Data();
}

}  // namespace retrain
