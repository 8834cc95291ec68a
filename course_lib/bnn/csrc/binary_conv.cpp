// Bit-packed binary convolution for x86 and other CPUs (the course's chapter 5).
//
// Signs are packed channels-last: bit c % 8 of byte c / 8 of a pixel is 1 when the
// activation (minus its threshold) or the weight is negative (the IEEE sign bit), i.e. when
// the value it stands for is -1. A k x k patch is its k rows one after the other ("im2col" on
// bits), each row the k pixels' bytes, contiguous in the packed input, padded with zero bytes
// to whole 64-bit words: a row is read with plain word loads, the last one masked. For +-1
// vectors a and w of K entries, a . w = K - 2 * popcount(a xor w): the float reference's dot.
//
// Zero padding: the float reference pads the +-1 tensor with zeros, which contribute nothing,
// while a bit is either +1 or -1. We pad with +1 (zero bits) and subtract what those taps
// added: for output channel o, sum over the padded taps t of S[o][t] = sum_c w[o][c][t].
//
// The popcount GEMM is chosen at run time from what the CPU has (see Isa): AVX-512 VPOPCNTDQ
// (8 words per instruction, 4 pixels x 32 output channels per register block), AVX2 (a
// nibble-table popcount, 2 pixels x 16 channels), the POPCNT instruction, or portable C++.
// All give the same integers; the epilogue (scale, bias, residual, activation) is plain
// float arithmetic (multiply, then add: -ffp-contract=off, no FMA), so that the pure PyTorch
// path of course_lib.bnn.kernel gives bit-identical floats.

#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define COURSE_X86 1
#else
#define COURSE_X86 0
#endif

namespace {

enum Act : int64_t { kIdentity = 0, kHardtanh = 1, kPrelu = 2 };

constexpr int64_t kSlack = 8;

// The instruction sets the kernel can use, slowest first. `kPortable` is plain C++ (the
// compiler's popcount, a software routine on a baseline x86-64 build); `kPopcnt` the POPCNT
// instruction (x86 since 2008); `kAvx2` a 256-bit popcount by nibble lookup (Mula et al.);
// `kAvx512` VPOPCNTDQ. All give the same integers. Tests can cap the level (force_isa).
enum Isa : int { kPortable = 0, kPopcnt = 1, kAvx2 = 2, kAvx512 = 3 };
const char* const kIsaNames[] = {"portable", "popcnt", "avx2", "avx512-vpopcntdq"};

int g_isa_cap = kAvx512;

inline int popcount64(uint64_t v) {
#if defined(__GNUC__) || defined(__clang__)
  return __builtin_popcountll(v);
#else
  int n = 0;
  for (; v; v &= v - 1) ++n;
  return n;
#endif
}

int cpu_isa() {
#if COURSE_X86 && defined(__GNUC__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vpopcntdq"))
    return kAvx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt")) return kAvx2;
  if (__builtin_cpu_supports("popcnt")) return kPopcnt;
#endif
  return kPortable;
}

// The level this call runs at: what the CPU has, capped by force_isa.
int isa() {
  static const int has = cpu_isa();
  return has < g_isa_cap ? has : g_isa_cap;
}

// --- threads ----------------------------------------------------------------------------------
// The kernels split their work with at::parallel_for, unless the calling thread asked for one
// thread (PackedBody::forward with threads = 1): then they run inline, without the pool.
thread_local bool t_serial = false;

struct SerialGuard {
  bool previous;
  explicit SerialGuard(bool serial) : previous(t_serial) { t_serial = serial; }
  ~SerialGuard() { t_serial = previous; }
};

template <class F>
void parallel_range(int64_t begin, int64_t end, int64_t grain, const F& f) {
  if (t_serial) {
    if (begin < end) f(begin, end);
    return;
  }
  at::parallel_for(begin, end, grain, f);
}

// --- packing -----------------------------------------------------------------------------

// One pixel: c floats (minus thresholds) -> ceil(c / 8) bytes of sign bits.
inline void pack_pixel_portable(const float* x, const float* thr, int64_t c, uint8_t* out) {
  const int64_t bytes = (c + 7) / 8;
  std::memset(out, 0, bytes);
  for (int64_t i = 0; i < c; ++i) {
    const float v = x[i] - thr[i];
    if (std::signbit(v)) out[i >> 3] |= static_cast<uint8_t>(1u << (i & 7));
  }
}

#if COURSE_X86
// The sign bits of 16 floats: as int32, a float is negative exactly when its sign bit is set.
__attribute__((target("avx512f"))) inline __mmask16 negative_lanes(__m512 v) {
  return _mm512_cmplt_epi32_mask(_mm512_castps_si512(v), _mm512_setzero_si512());
}

__attribute__((target("avx512f,avx512bw")))
inline void pack_pixel_avx512(const float* x, const float* thr, int64_t c, uint8_t* out) {
  int64_t i = 0;
  for (; i + 16 <= c; i += 16) {
    const __m512 v = _mm512_sub_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(thr + i));
    const uint16_t bits = static_cast<uint16_t>(negative_lanes(v));
    std::memcpy(out + i / 8, &bits, 2);
  }
  if (i < c) {
    const __mmask16 m = static_cast<__mmask16>((1u << (c - i)) - 1);
    const __m512 v = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, thr + i));
    const uint16_t bits = static_cast<uint16_t>(negative_lanes(v) & m);
    const int64_t rest = (c - i + 7) / 8;
    std::memcpy(out + i / 8, &bits, rest);
  }
}

// 8 floats' sign bits per byte: movemask reads exactly the IEEE sign bits.
__attribute__((target("avx2")))
inline void pack_pixel_avx2(const float* x, const float* thr, int64_t c, uint8_t* out) {
  int64_t i = 0;
  for (; i + 8 <= c; i += 8)
    out[i / 8] = static_cast<uint8_t>(
        _mm256_movemask_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(thr + i))));
  if (i < c) {
    uint8_t bits = 0;
    for (int64_t j = i; j < c; ++j)
      if (std::signbit(x[j] - thr[j])) bits |= static_cast<uint8_t>(1u << (j - i));
    out[i / 8] = bits;
  }
}
#endif

// One row of `w` pixels, `c` channels each, into `bytes` bytes per pixel. One call per row:
// the per-pixel routine inlines into it (same instruction set), no call per pixel.
using PackRow = void (*)(const float*, const float*, int64_t, int64_t, int64_t, uint8_t*);

void pack_row_portable(const float* x, const float* thr, int64_t c, int64_t w, int64_t bytes,
                       uint8_t* out) {
  for (int64_t i = 0; i < w; ++i) pack_pixel_portable(x + i * c, thr, c, out + i * bytes);
}

#if COURSE_X86
__attribute__((target("avx2")))
void pack_row_avx2(const float* x, const float* thr, int64_t c, int64_t w, int64_t bytes,
                   uint8_t* out) {
  for (int64_t i = 0; i < w; ++i) pack_pixel_avx2(x + i * c, thr, c, out + i * bytes);
}

__attribute__((target("avx512f,avx512bw")))
void pack_row_avx512(const float* x, const float* thr, int64_t c, int64_t w, int64_t bytes,
                     uint8_t* out) {
  for (int64_t i = 0; i < w; ++i) pack_pixel_avx512(x + i * c, thr, c, out + i * bytes);
}
#endif

PackRow pack_row() {
#if COURSE_X86
  if (isa() >= kAvx512) return pack_row_avx512;
  if (isa() >= kAvx2) return pack_row_avx2;
#endif
  return pack_row_portable;
}

// x: (N, H, W, C) float32 -> (N, H + 2p, W + 2p, ceil(C / 8)) uint8, pad pixels all zero bits.
torch::Tensor pack_activations(torch::Tensor x, torch::Tensor threshold, int64_t pad) {
  TORCH_CHECK(x.dim() == 4 && x.scalar_type() == torch::kFloat32,
              "pack_activations: expected a float32 (N, H, W, C) tensor");
  x = x.contiguous();
  threshold = threshold.contiguous();
  const int64_t n = x.size(0), h = x.size(1), w = x.size(2), c = x.size(3);
  TORCH_CHECK(threshold.numel() == c, "pack_activations: threshold has ", threshold.numel(),
              " entries, the input ", c, " channels");
  const int64_t bytes = (c + 7) / 8, hp = h + 2 * pad, wp = w + 2 * pad;
  // 8 spare bytes after the end: the patch gather may read a word that starts in the last row.
  auto storage = torch::zeros({n * hp * wp * bytes + kSlack}, torch::kUInt8);
  auto out = storage.narrow(0, 0, n * hp * wp * bytes).view({n, hp, wp, bytes});
  const float* xp = x.data_ptr<float>();
  const float* tp = threshold.data_ptr<float>();
  uint8_t* op = out.data_ptr<uint8_t>();
  const PackRow pack = pack_row();
  parallel_range(0, n * h, 16, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / h, y = row % h;
      pack(xp + (b * h + y) * w * c, tp, c, w, bytes, op + ((b * hp + y + pad) * wp + pad) * bytes);
    }
  });
  return out;
}

// --- the popcount GEMM ---------------------------------------------------------------------
// patch: (P, kw) words; weights: (kw, o_pad) words, K-major; acc: (P, o_pad) int32 popcounts.

void popcount_gemm_portable(const uint64_t* patch, const uint64_t* wt, int64_t p_count,
                            int64_t k_words, int64_t o_pad, int32_t* acc) {
  for (int64_t p = 0; p < p_count; ++p) {
    int32_t* row = acc + p * o_pad;
    std::memset(row, 0, o_pad * sizeof(int32_t));
    for (int64_t k = 0; k < k_words; ++k) {
      const uint64_t a = patch[p * k_words + k];
      const uint64_t* wk = wt + k * o_pad;
      for (int64_t o = 0; o < o_pad; ++o) row[o] += popcount64(a ^ wk[o]);
    }
  }
}

#if COURSE_X86
// POPCNT, one instruction per word: PB pixels x 4 output channels in registers.
template <int PB>
__attribute__((target("popcnt")))
void gemm_rows_popcnt(const uint64_t* patch, const uint64_t* wt, int64_t k_words, int64_t o_pad,
                      int32_t* acc) {
  for (int64_t o0 = 0; o0 < o_pad; o0 += 4) {
    uint64_t sum[PB][4] = {};
    for (int64_t k = 0; k < k_words; ++k) {
      const uint64_t* w = wt + k * o_pad + o0;
      const uint64_t w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3];
      for (int i = 0; i < PB; ++i) {
        const uint64_t a = patch[i * k_words + k];
        sum[i][0] += _mm_popcnt_u64(a ^ w0);
        sum[i][1] += _mm_popcnt_u64(a ^ w1);
        sum[i][2] += _mm_popcnt_u64(a ^ w2);
        sum[i][3] += _mm_popcnt_u64(a ^ w3);
      }
    }
    for (int i = 0; i < PB; ++i)
      for (int j = 0; j < 4; ++j) acc[i * o_pad + o0 + j] = static_cast<int32_t>(sum[i][j]);
  }
}

__attribute__((target("popcnt")))
void popcount_gemm_popcnt(const uint64_t* patch, const uint64_t* wt, int64_t p_count,
                          int64_t k_words, int64_t o_pad, int32_t* acc) {
  int64_t p = 0;
  for (; p + 4 <= p_count; p += 4)
    gemm_rows_popcnt<4>(patch + p * k_words, wt, k_words, o_pad, acc + p * o_pad);
  for (; p < p_count; ++p)
    gemm_rows_popcnt<1>(patch + p * k_words, wt, k_words, o_pad, acc + p * o_pad);
}

// AVX2 has no popcount instruction: each byte's count comes from two 16-entry table lookups
// (one per nibble, vpshufb), added as bytes for up to 31 words (at most 8 * 31 = 248 per
// byte), then summed into 64-bit lanes (vpsadbw). PB pixels x 4 * NV output channels (NV even).
template <int PB, int NV>
__attribute__((target("avx2")))
inline void gemm_block_avx2(const uint64_t* patch, const uint64_t* wt, int64_t k_words,
                            int64_t o_pad, int64_t o0, int32_t* acc) {
  const __m256i table = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                         0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
  const __m256i nibble = _mm256_set1_epi8(0x0f);
  __m256i total[PB][NV];
  for (int i = 0; i < PB; ++i)
    for (int j = 0; j < NV; ++j) total[i][j] = _mm256_setzero_si256();
  for (int64_t k0 = 0; k0 < k_words; k0 += 31) {
    const int64_t k1 = k0 + 31 < k_words ? k0 + 31 : k_words;
    __m256i bytes[PB][NV];
    for (int i = 0; i < PB; ++i)
      for (int j = 0; j < NV; ++j) bytes[i][j] = _mm256_setzero_si256();
    for (int64_t k = k0; k < k1; ++k) {
      __m256i w[NV];
      for (int j = 0; j < NV; ++j)
        w[j] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wt + k * o_pad + o0 + 4 * j));
      for (int i = 0; i < PB; ++i) {
        const __m256i a = _mm256_set1_epi64x(static_cast<long long>(patch[i * k_words + k]));
        for (int j = 0; j < NV; ++j) {
          const __m256i x = _mm256_xor_si256(a, w[j]);
          const __m256i lo = _mm256_shuffle_epi8(table, _mm256_and_si256(x, nibble));
          const __m256i hi =
              _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(x, 4), nibble));
          bytes[i][j] = _mm256_add_epi8(bytes[i][j], _mm256_add_epi8(lo, hi));
        }
      }
    }
    for (int i = 0; i < PB; ++i)
      for (int j = 0; j < NV; ++j)
        total[i][j] =
            _mm256_add_epi64(total[i][j], _mm256_sad_epu8(bytes[i][j], _mm256_setzero_si256()));
  }
  // two vectors of four 64-bit counts -> eight int32 counts: the low halves, in order
  for (int i = 0; i < PB; ++i)
    for (int j = 0; j + 1 < NV; j += 2) {
      const __m256 halves = _mm256_shuffle_ps(_mm256_castsi256_ps(total[i][j]),
                                              _mm256_castsi256_ps(total[i][j + 1]),
                                              _MM_SHUFFLE(2, 0, 2, 0));
      const __m256i counts = _mm256_permute4x64_epi64(_mm256_castps_si256(halves),
                                                      _MM_SHUFFLE(3, 1, 2, 0));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + i * o_pad + o0 + 4 * j), counts);
    }
}

template <int PB>
__attribute__((target("avx2")))
void gemm_rows_avx2(const uint64_t* patch, const uint64_t* wt, int64_t k_words, int64_t o_pad,
                    int32_t* acc) {
  int64_t o0 = 0;
  for (; o0 + 16 <= o_pad; o0 += 16) gemm_block_avx2<PB, 4>(patch, wt, k_words, o_pad, o0, acc);
  for (; o0 < o_pad; o0 += 8) gemm_block_avx2<PB, 2>(patch, wt, k_words, o_pad, o0, acc);
}

__attribute__((target("avx2")))
void popcount_gemm_avx2(const uint64_t* patch, const uint64_t* wt, int64_t p_count,
                        int64_t k_words, int64_t o_pad, int32_t* acc) {
  int64_t p = 0;
  for (; p + 2 <= p_count; p += 2)
    gemm_rows_avx2<2>(patch + p * k_words, wt, k_words, o_pad, acc + p * o_pad);
  for (; p < p_count; ++p) gemm_rows_avx2<1>(patch + p * k_words, wt, k_words, o_pad, acc + p * o_pad);
}

template <int PB, int NV>
__attribute__((target("avx512f,avx512bw,avx512vpopcntdq")))
inline void gemm_block(const uint64_t* patch, const uint64_t* wt, int64_t k_words, int64_t o_pad,
                       int64_t o0, int32_t* acc) {
  __m512i sum[PB][NV];
  for (int i = 0; i < PB; ++i)
    for (int j = 0; j < NV; ++j) sum[i][j] = _mm512_setzero_si512();
  for (int64_t k = 0; k < k_words; ++k) {
    __m512i w[NV];
    for (int j = 0; j < NV; ++j) w[j] = _mm512_loadu_si512(wt + k * o_pad + o0 + 8 * j);
    for (int i = 0; i < PB; ++i) {
      const __m512i a = _mm512_set1_epi64(static_cast<long long>(patch[i * k_words + k]));
      for (int j = 0; j < NV; ++j)
        sum[i][j] = _mm512_add_epi64(sum[i][j], _mm512_popcnt_epi64(_mm512_xor_si512(a, w[j])));
    }
  }
  for (int i = 0; i < PB; ++i)
    for (int j = 0; j < NV; ++j)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + i * o_pad + o0 + 8 * j),
                          _mm512_cvtepi64_epi32(sum[i][j]));
}

template <int PB>
__attribute__((target("avx512f,avx512bw,avx512vpopcntdq")))
void gemm_rows(const uint64_t* patch, const uint64_t* wt, int64_t k_words, int64_t o_pad,
               int32_t* acc) {
  int64_t o0 = 0;
  for (; o0 + 32 <= o_pad; o0 += 32) gemm_block<PB, 4>(patch, wt, k_words, o_pad, o0, acc);
  for (; o0 + 16 <= o_pad; o0 += 16) gemm_block<PB, 2>(patch, wt, k_words, o_pad, o0, acc);
  for (; o0 < o_pad; o0 += 8) gemm_block<PB, 1>(patch, wt, k_words, o_pad, o0, acc);
}

__attribute__((target("avx512f,avx512bw,avx512vpopcntdq")))
void popcount_gemm_avx512(const uint64_t* patch, const uint64_t* wt, int64_t p_count,
                          int64_t k_words, int64_t o_pad, int32_t* acc) {
  int64_t p = 0;
  for (; p + 4 <= p_count; p += 4)
    gemm_rows<4>(patch + p * k_words, wt, k_words, o_pad, acc + p * o_pad);
  for (; p < p_count; ++p) gemm_rows<1>(patch + p * k_words, wt, k_words, o_pad, acc + p * o_pad);
}
#endif

void popcount_gemm(const uint64_t* patch, const uint64_t* wt, int64_t p_count, int64_t k_words,
                   int64_t o_pad, int32_t* acc) {
#if COURSE_X86
  switch (isa()) {
    case kAvx512: return popcount_gemm_avx512(patch, wt, p_count, k_words, o_pad, acc);
    case kAvx2: return popcount_gemm_avx2(patch, wt, p_count, k_words, o_pad, acc);
    case kPopcnt: return popcount_gemm_popcnt(patch, wt, p_count, k_words, o_pad, acc);
    default: break;
  }
#endif
  popcount_gemm_portable(patch, wt, p_count, k_words, o_pad, acc);
}

// --- one binary conv -----------------------------------------------------------------------

inline int64_t row_words(int64_t row_bytes) { return (row_bytes + 7) / 8; }

struct ConvShape {
  int64_t n, h, w, c, o, kh, kw, stride, pad, oh, ow, tap_bytes, k_words, o_pad;
};

ConvShape shape_of(const torch::Tensor& packed, const torch::Tensor& wt, const torch::Tensor& taps,
                   int64_t h, int64_t w, int64_t c, int64_t stride, int64_t pad) {
  ConvShape s{};
  s.n = packed.size(0);
  s.h = h;
  s.w = w;
  s.c = c;
  s.kh = taps.size(0);
  s.kw = taps.size(1);
  s.o_pad = wt.size(1);
  s.o = taps.size(2);
  s.stride = stride;
  s.pad = pad;
  s.oh = (h + 2 * pad - s.kh) / stride + 1;
  s.ow = (w + 2 * pad - s.kw) / stride + 1;
  s.tap_bytes = packed.size(3);
  s.k_words = wt.size(0);
  TORCH_CHECK(s.k_words == s.kh * row_words(s.kw * s.tap_bytes),
              "packed weights do not match the patch's row layout (see kernel_weights)");
  TORCH_CHECK(packed.size(1) == h + 2 * pad && packed.size(2) == w + 2 * pad,
              "packed activations do not match the input size and padding");
  return s;
}

// One patch: `rows` runs of `row_bytes` bytes, `stride` bytes apart, each into whole 64-bit
// words (the bytes past the run are zeroed). With `slack`, the source has 8 spare bytes after
// its end and each word is one unaligned load (the last masked); otherwise bytes are copied.
inline void gather_patch(uint64_t* dst, const uint8_t* src, int64_t rows, int64_t row_bytes,
                         int64_t stride, bool slack) {
  const int64_t words = row_words(row_bytes), tail = row_bytes - 8 * (words - 1);
  const uint64_t mask = tail == 8 ? ~uint64_t{0} : (uint64_t{1} << (8 * tail)) - 1;
  for (int64_t r = 0; r < rows; ++r, dst += words) {
    const uint8_t* p = src + r * stride;
    if (!slack) {
      dst[words - 1] = 0;
      std::memcpy(dst, p, row_bytes);
      continue;
    }
    for (int64_t j = 0; j + 1 < words; ++j) std::memcpy(dst + j, p + 8 * j, 8);
    uint64_t last;
    std::memcpy(&last, p + 8 * (words - 1), 8);
    dst[words - 1] = last & mask;
  }
}

// The zero-padding corrections of one conv shape: one vector per distinct (rows, columns)
// padding pattern (pattern 0 is "none"), and each output pixel's pattern. The same for every
// call with the same input size: the one-call body computes it once per layer and size.
struct Padding {
  int64_t h = -1, w = -1;
  std::vector<int32_t> corr;        // (patterns, o)
  std::vector<int32_t> pattern_at;  // (oh * ow)
};

Padding padding_of(const torch::Tensor& taps, const ConvShape& s) {
  const int32_t* tp = taps.data_ptr<int32_t>();
  // Which taps of an output row / column fall on the padding (bit i: kernel row / column i).
  std::vector<int64_t> row_mask(s.oh, 0), col_mask(s.ow, 0);
  for (int64_t y = 0; y < s.oh; ++y)
    for (int64_t i = 0; i < s.kh; ++i) {
      const int64_t r = y * s.stride + i - s.pad;
      if (r < 0 || r >= s.h) row_mask[y] |= 1ll << i;
    }
  for (int64_t x = 0; x < s.ow; ++x)
    for (int64_t j = 0; j < s.kw; ++j) {
      const int64_t c = x * s.stride + j - s.pad;
      if (c < 0 || c >= s.w) col_mask[x] |= 1ll << j;
    }
  Padding out;
  out.h = s.h;
  out.w = s.w;
  out.corr.assign(s.o, 0);
  out.pattern_at.resize(s.oh * s.ow);
  std::vector<std::pair<int64_t, int64_t>> patterns{{0, 0}};
  for (int64_t y = 0; y < s.oh; ++y)
    for (int64_t x = 0; x < s.ow; ++x) {
      const std::pair<int64_t, int64_t> key{row_mask[y], col_mask[x]};
      size_t q = 0;
      while (q < patterns.size() && patterns[q] != key) ++q;
      if (q == patterns.size()) {
        patterns.push_back(key);
        out.corr.resize(patterns.size() * s.o, 0);
        int32_t* v = out.corr.data() + q * s.o;
        for (int64_t i = 0; i < s.kh; ++i)
          for (int64_t j = 0; j < s.kw; ++j)
            if (((key.first >> i) & 1) || ((key.second >> j) & 1)) {
              const int32_t* t = tp + (i * s.kw + j) * s.o;
              for (int64_t o = 0; o < s.o; ++o) v[o] += t[o];
            }
      }
      out.pattern_at[y * s.ow + x] = static_cast<int32_t>(q);
    }
  return out;
}

// The popcounts of one conv, a block of output pixels at a time (batch-major, then rows, then
// columns): emit(p0, count, acc, corr) for pixels p0 .. p0 + count - 1, where for pixel
// p0 + q, dot[o] = K - 2 * acc[q * o_pad + o] - corr[q][o] is the integer dot product.
// taps: (kh, kw, o) int32, S[i][j][o] = sum_c w[o][c][i][j] (+-1 weights).
template <class Emit>
void binary_dot(const torch::Tensor& packed, const torch::Tensor& wt, const Padding& padding,
                const ConvShape& s, Emit&& emit) {
  const uint8_t* in = packed.data_ptr<uint8_t>();
  const uint64_t* wp = reinterpret_cast<const uint64_t*>(wt.data_ptr<int64_t>());
  const int64_t wpix = s.w + 2 * s.pad, hp = s.h + 2 * s.pad;
  const int64_t row_bytes = s.kw * s.tap_bytes;
  const int64_t plane = s.oh * s.ow, pixels = s.n * plane;
  const std::vector<int32_t>& corr = padding.corr;
  const std::vector<int32_t>& pattern_at = padding.pattern_at;
  constexpr int64_t block = 16;  // output pixels per task: the patch buffer stays in L1
  const int64_t spare = packed.storage().nbytes() - (packed.storage_offset() + packed.numel());
  const bool fast_gather = spare >= kSlack;
  parallel_range(0, (pixels + block - 1) / block, 1, [&](int64_t begin, int64_t end) {
    std::vector<uint64_t> patch(block * s.k_words, 0);
    std::vector<int32_t> acc(block * s.o_pad);
    const int32_t* corr_of[block];
    for (int64_t blk = begin; blk < end; ++blk) {
      const int64_t p0 = blk * block, count = std::min(block, pixels - p0);
      int64_t b = p0 / plane, oy = (p0 % plane) / s.ow, ox = p0 % s.ow;
      for (int64_t q = 0; q < count; ++q) {
        const uint8_t* src = in + ((b * hp + oy * s.stride) * wpix + ox * s.stride) * s.tap_bytes;
        gather_patch(patch.data() + q * s.k_words, src, s.kh, row_bytes, wpix * s.tap_bytes,
                     fast_gather);
        corr_of[q] = corr.data() + pattern_at[oy * s.ow + ox] * s.o;
        if (++ox == s.ow) {
          ox = 0;
          if (++oy == s.oh) {
            oy = 0;
            ++b;
          }
        }
      }
      popcount_gemm(patch.data(), wp, count, s.k_words, s.o_pad, acc.data());
      emit(p0, count, acc.data(), corr_of);
    }
  });
}

// --- the epilogue: act(dot * scale + bias [+ residual]) --------------------------------------
// Every operation rounds once, in this order, in both versions (and in the PyTorch path).

struct Epilogue {
  int32_t k_bits;
  const float* scale;
  const float* bias;
  const float* slope;
  int64_t act;
  int64_t o;
};

inline float epilogue_one(const Epilogue& e, int32_t dot, int64_t o, float residual, bool has_res) {
  float y = static_cast<float>(dot) * e.scale[o];
  y = y + e.bias[o];
  if (has_res) y = y + residual;
  if (e.act == kHardtanh) {
    y = y < -1.0f ? -1.0f : (y > 1.0f ? 1.0f : y);
  } else if (e.act == kPrelu) {
    y = y > 0.0f ? y : e.slope[o] * y;
  }
  return y;
}

void epilogue_portable(const Epilogue& e, const int32_t* acc, const int32_t* corr,
                       const float* res, float* dst) {
  for (int64_t o = 0; o < e.o; ++o)
    dst[o] = epilogue_one(e, e.k_bits - 2 * acc[o] - corr[o], o, res ? res[o] : 0.0f, res != nullptr);
}

#if COURSE_X86
__attribute__((target("avx512f")))
inline void epilogue_avx512(const Epilogue& e, const int32_t* acc, const int32_t* corr, const float* res,
                     float* dst) {
  const __m512i k = _mm512_set1_epi32(e.k_bits);
  const __m512 lo = _mm512_set1_ps(-1.0f), hi = _mm512_set1_ps(1.0f), zero = _mm512_setzero_ps();
  int64_t o = 0;
  for (; o + 16 <= e.o; o += 16) {
    const __m512i a = _mm512_loadu_si512(acc + o), c = _mm512_loadu_si512(corr + o);
    const __m512i dot = _mm512_sub_epi32(_mm512_sub_epi32(k, _mm512_slli_epi32(a, 1)), c);
    __m512 y = _mm512_mul_ps(_mm512_cvtepi32_ps(dot), _mm512_loadu_ps(e.scale + o));
    y = _mm512_add_ps(y, _mm512_loadu_ps(e.bias + o));
    if (res) y = _mm512_add_ps(y, _mm512_loadu_ps(res + o));
    if (e.act == kHardtanh) {
      // y < -1 ? -1 : (y > 1 ? 1 : y), keeping -0.0 as the scalar code does
      y = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(y, hi, _CMP_GT_OQ), y, hi);
      y = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(y, lo, _CMP_LT_OQ), y, lo);
    } else if (e.act == kPrelu) {
      const __m512 scaled = _mm512_mul_ps(y, _mm512_loadu_ps(e.slope + o));
      y = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(y, zero, _CMP_GT_OQ), scaled, y);
    }
    _mm512_storeu_ps(dst + o, y);
  }
  for (; o < e.o; ++o)
    dst[o] = epilogue_one(e, e.k_bits - 2 * acc[o] - corr[o], o, res ? res[o] : 0.0f, res != nullptr);
}
// The same operations, 8 channels at a time (no FMA: mul, then add, as above).
__attribute__((target("avx2")))
inline void epilogue_avx2(const Epilogue& e, const int32_t* acc, const int32_t* corr, const float* res,
                   float* dst) {
  const __m256i k = _mm256_set1_epi32(e.k_bits);
  const __m256 lo = _mm256_set1_ps(-1.0f), hi = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
  int64_t o = 0;
  for (; o + 8 <= e.o; o += 8) {
    const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc + o));
    const __m256i c = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(corr + o));
    const __m256i dot = _mm256_sub_epi32(_mm256_sub_epi32(k, _mm256_slli_epi32(a, 1)), c);
    __m256 y = _mm256_mul_ps(_mm256_cvtepi32_ps(dot), _mm256_loadu_ps(e.scale + o));
    y = _mm256_add_ps(y, _mm256_loadu_ps(e.bias + o));
    if (res) y = _mm256_add_ps(y, _mm256_loadu_ps(res + o));
    if (e.act == kHardtanh) {
      y = _mm256_blendv_ps(y, hi, _mm256_cmp_ps(y, hi, _CMP_GT_OQ));
      y = _mm256_blendv_ps(y, lo, _mm256_cmp_ps(y, lo, _CMP_LT_OQ));
    } else if (e.act == kPrelu) {
      const __m256 scaled = _mm256_mul_ps(y, _mm256_loadu_ps(e.slope + o));
      y = _mm256_blendv_ps(scaled, y, _mm256_cmp_ps(y, zero, _CMP_GT_OQ));
    }
    _mm256_storeu_ps(dst + o, y);
  }
  for (; o < e.o; ++o)
    dst[o] = epilogue_one(e, e.k_bits - 2 * acc[o] - corr[o], o, res ? res[o] : 0.0f, res != nullptr);
}
#endif

// A block of `count` pixels: one call per block, the per-pixel epilogue inlined into it.
// acc: count rows of o_pad counts; res and dst: count rows of e.o floats (res may be null).
using EpilogueBlock = void (*)(const Epilogue&, const int32_t*, int64_t, const int32_t* const*,
                               int64_t, const float*, float*);

void epilogue_block_portable(const Epilogue& e, const int32_t* acc, int64_t o_pad,
                             const int32_t* const* corr, int64_t count, const float* res,
                             float* dst) {
  for (int64_t q = 0; q < count; ++q)
    epilogue_portable(e, acc + q * o_pad, corr[q], res ? res + q * e.o : nullptr, dst + q * e.o);
}

#if COURSE_X86
__attribute__((target("avx2")))
void epilogue_block_avx2(const Epilogue& e, const int32_t* acc, int64_t o_pad,
                         const int32_t* const* corr, int64_t count, const float* res, float* dst) {
  for (int64_t q = 0; q < count; ++q)
    epilogue_avx2(e, acc + q * o_pad, corr[q], res ? res + q * e.o : nullptr, dst + q * e.o);
}

__attribute__((target("avx512f")))
void epilogue_block_avx512(const Epilogue& e, const int32_t* acc, int64_t o_pad,
                           const int32_t* const* corr, int64_t count, const float* res,
                           float* dst) {
  for (int64_t q = 0; q < count; ++q)
    epilogue_avx512(e, acc + q * o_pad, corr[q], res ? res + q * e.o : nullptr, dst + q * e.o);
}
#endif

void check_layer(const torch::Tensor& wt, const torch::Tensor& taps) {
  TORCH_CHECK(wt.dim() == 2 && wt.scalar_type() == torch::kInt64 && wt.is_contiguous(),
              "weights: expected a contiguous int64 (k_words, o_pad) tensor (see pack_weights)");
  TORCH_CHECK(wt.size(1) % 8 == 0, "weights: output channels must be padded to a multiple of 8");
  TORCH_CHECK(taps.dim() == 3 && taps.scalar_type() == torch::kInt32 && taps.is_contiguous(),
              "corrections: expected a contiguous int32 (kh, kw, o) tensor");
}

// The integer dot products (N, OH, OW, O) int32 of sign(x - threshold) and the packed weights.
torch::Tensor conv_dot(torch::Tensor packed, int64_t h, int64_t w, int64_t c, torch::Tensor wt,
                       torch::Tensor taps, int64_t stride, int64_t pad) {
  check_layer(wt, taps);
  packed = packed.contiguous();
  const ConvShape s = shape_of(packed, wt, taps, h, w, c, stride, pad);
  auto out = torch::empty({s.n, s.oh, s.ow, s.o}, torch::kInt32);
  int32_t* op = out.data_ptr<int32_t>();
  const int32_t k_bits = static_cast<int32_t>(s.kh * s.kw * s.c);
  binary_dot(packed, wt, padding_of(taps, s), s,
             [&](int64_t p0, int64_t count, const int32_t* acc, const int32_t* const* corr) {
               for (int64_t q = 0; q < count; ++q)
                 for (int64_t o = 0; o < s.o; ++o)
                   op[(p0 + q) * s.o + o] = k_bits - 2 * acc[q * s.o_pad + o] - corr[q][o];
             });
  return out;
}

// The fused layer: act(dot * scale + bias [+ residual]), NHWC float32 in and out.
torch::Tensor conv_fused_cached(torch::Tensor x, torch::Tensor threshold, torch::Tensor wt,
                                torch::Tensor taps, torch::Tensor scale, torch::Tensor bias,
                                c10::optional<torch::Tensor> residual, int64_t act,
                                torch::Tensor slope, int64_t stride, int64_t pad, Padding* cache) {
  check_layer(wt, taps);
  const int64_t h = x.size(1), w = x.size(2), c = x.size(3);
  const torch::Tensor packed = pack_activations(x, threshold, pad);
  const ConvShape s = shape_of(packed, wt, taps, h, w, c, stride, pad);
  scale = scale.contiguous();
  bias = bias.contiguous();
  slope = slope.contiguous();
  TORCH_CHECK(scale.numel() == s.o && bias.numel() == s.o, "scale and bias need one value per output channel");
  TORCH_CHECK(act != kPrelu || slope.numel() == s.o, "prelu needs one slope per output channel");
  torch::Tensor res;
  const float* rp = nullptr;
  if (residual.has_value()) {
    res = residual->contiguous();
    TORCH_CHECK(res.scalar_type() == torch::kFloat32 && res.numel() == s.n * s.oh * s.ow * s.o,
                "residual: expected float32 (N, OH, OW, O)");
    rp = res.data_ptr<float>();
  }
  auto out = torch::empty({s.n, s.oh, s.ow, s.o}, torch::kFloat32);
  float* op = out.data_ptr<float>();
  const float* sp = scale.data_ptr<float>();
  const float* bp = bias.data_ptr<float>();
  const float* lp = act == kPrelu ? slope.data_ptr<float>() : nullptr;
  const Epilogue e{static_cast<int32_t>(s.kh * s.kw * s.c), sp, bp, lp, act, s.o};
  EpilogueBlock epilogue = epilogue_block_portable;
#if COURSE_X86
  if (isa() >= kAvx512) epilogue = epilogue_block_avx512;
  else if (isa() >= kAvx2) epilogue = epilogue_block_avx2;
#endif
  const Padding computed = cache != nullptr && cache->h == h && cache->w == w
                               ? Padding{}
                               : padding_of(taps, s);
  if (cache != nullptr && !(cache->h == h && cache->w == w)) *cache = computed;
  const Padding& padding = cache != nullptr ? *cache : computed;
  binary_dot(packed, wt, padding, s,
             [&](int64_t p0, int64_t count, const int32_t* acc, const int32_t* const* corr) {
               epilogue(e, acc, s.o_pad, corr, count, rp ? rp + p0 * s.o : nullptr, op + p0 * s.o);
             });
  return out;
}

torch::Tensor conv_fused(torch::Tensor x, torch::Tensor threshold, torch::Tensor wt,
                         torch::Tensor taps, torch::Tensor scale, torch::Tensor bias,
                         c10::optional<torch::Tensor> residual, int64_t act, torch::Tensor slope,
                         int64_t stride, int64_t pad) {
  return conv_fused_cached(x, threshold, wt, taps, scale, bias, residual, act, slope, stride, pad,
                           nullptr);
}

// (O, kh, kw, tap_bytes) uint8 sign bits -> (k_words, o_pad) int64, K-major, each kernel row
// (kw * tap_bytes bytes) zero padded to whole words, as gather_patch lays out a patch.
torch::Tensor kernel_weights(torch::Tensor bits) {
  TORCH_CHECK(bits.dim() == 4 && bits.scalar_type() == torch::kUInt8,
              "kernel_weights: expected uint8 (O, kh, kw, tap_bytes) sign bits");
  bits = bits.contiguous();
  const int64_t o = bits.size(0), kh = bits.size(1), row_bytes = bits.size(2) * bits.size(3);
  const int64_t words = row_words(row_bytes), k_words = kh * words, o_pad = (o + 7) / 8 * 8;
  auto out = torch::zeros({k_words, o_pad}, torch::kInt64);
  uint64_t* op = reinterpret_cast<uint64_t*>(out.data_ptr<int64_t>());
  const uint8_t* bp = bits.data_ptr<uint8_t>();
  std::vector<uint8_t> row(words * 8);
  for (int64_t oc = 0; oc < o; ++oc)
    for (int64_t i = 0; i < kh; ++i) {
      std::fill(row.begin(), row.end(), 0);
      std::memcpy(row.data(), bp + (oc * kh + i) * row_bytes, row_bytes);
      for (int64_t j = 0; j < words; ++j)
        std::memcpy(op + (i * words + j) * o_pad + oc, row.data() + 8 * j, 8);
    }
  return out;
}

// --- the inner loop alone ------------------------------------------------------------------------
// Seconds for `reps` popcount GEMMs of `pixels` patches of `k_words` words against `o_pad`
// output channels, on fixed pseudo-random words already in cache: no packing, gathering or
// epilogue. pixels * k_words * o_pad * reps XOR + popcount word operations; the benchmark
// divides to get the machine's rate for this kernel, the limit the full conv is compared to.
double gemm_seconds(int64_t pixels, int64_t k_words, int64_t o_pad, int64_t reps) {
  TORCH_CHECK(pixels > 0 && k_words > 0 && o_pad > 0 && o_pad % 8 == 0 && reps > 0,
              "gemm_seconds: positive sizes, o_pad a multiple of 8");
  std::vector<uint64_t> patch(pixels * k_words), wt(k_words * o_pad);
  uint64_t state = 0x9E3779B97F4A7C15ull;
  auto next = [&state]() {  // xorshift64
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
  };
  for (auto& v : patch) v = next();
  for (auto& v : wt) v = next();
  std::vector<int32_t> acc(pixels * o_pad);
  popcount_gemm(patch.data(), wt.data(), pixels, k_words, o_pad, acc.data());  // warm up
  const auto start = std::chrono::steady_clock::now();
  for (int64_t r = 0; r < reps; ++r)
    popcount_gemm(patch.data(), wt.data(), pixels, k_words, o_pad, acc.data());
  const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
  volatile int32_t sink = acc[0];  // keep the result alive
  (void)sink;
  return elapsed.count();
}

// --- layouts -------------------------------------------------------------------------------------
// NCHW <-> NHWC float32 copies (PyTorch's permute + contiguous takes a general strided path,
// several times slower at these sizes). Pure data movement: the values are unchanged.

torch::Tensor to_nhwc(torch::Tensor x) {
  TORCH_CHECK(x.dim() == 4 && x.scalar_type() == torch::kFloat32, "to_nhwc: expected float32 NCHW");
  x = x.contiguous();
  const int64_t n = x.size(0), c = x.size(1), hw = x.size(2) * x.size(3);
  auto out = torch::empty({n, x.size(2), x.size(3), c}, torch::kFloat32);
  const float* src = x.data_ptr<float>();
  float* dst = out.data_ptr<float>();
  for (int64_t b = 0; b < n; ++b, src += c * hw, dst += c * hw)
    for (int64_t ch = 0; ch < c; ++ch)
      for (int64_t p = 0; p < hw; ++p) dst[p * c + ch] = src[ch * hw + p];
  return out;
}

torch::Tensor to_nchw(torch::Tensor x) {
  TORCH_CHECK(x.dim() == 4 && x.scalar_type() == torch::kFloat32, "to_nchw: expected float32 NHWC");
  x = x.contiguous();
  const int64_t n = x.size(0), hw = x.size(1) * x.size(2), c = x.size(3);
  auto out = torch::empty({n, c, x.size(1), x.size(2)}, torch::kFloat32);
  const float* src = x.data_ptr<float>();
  float* dst = out.data_ptr<float>();
  for (int64_t b = 0; b < n; ++b, src += c * hw, dst += c * hw)
    for (int64_t p = 0; p < hw; ++p)
      for (int64_t ch = 0; ch < c; ++ch) dst[ch * hw + p] = src[p * c + ch];
  return out;
}

// --- the whole binary body in one call ---------------------------------------------------------
// A binary ResNet from the stem's output to the head's input: blocks of two packed convs,
// each act(BN(alpha * dot) + residual), the first with the block's shortcut as residual, the
// second with the first's output. Built once from the packed tensors (weights in the inner
// loop's layout); forward() never returns to Python between layers. The shortcut's float
// ops (a 1x1 conv + BatchNorm) call the same ATen operations as the Python engine, in the
// same order, so they give the same floats; DA-BNN's amplitude tail is native
// (amplitude_tail): the same floats as the Python engine's but for rare rounding cases (below).

struct BodyLayer {
  // the padding corrections for the last input size seen (a body serves one call at a time)
  std::shared_ptr<Padding> padding = std::make_shared<Padding>();
  torch::Tensor threshold, words, taps, scale, bias, slope;
  int64_t act, stride, pad;
  bool amplitude;
  torch::Tensor amp_channel, amp_spatial, bn_scale, bn_shift;
};

enum Shortcut : int64_t {
  kIdentityShortcut = 0,
  kPadShortcut = 1,
  kConvShortcut = 2,
  kAvgPoolShortcut = 3
};

struct BodyBlock {
  int64_t shortcut, stride, out_channels;
  torch::Tensor weight, mean, var, bn_weight, bn_bias;
  double eps;
};

// DA-BNN's tail, natively: act(BN(A(m)) + residual) on NHWC maps, A from the two kernels of
// eq. 11-12 (dabnn.apply_amplitude): channel factors sigmoid(k_c * mean over pixels), then
// pixel factors sigmoid(k_s * [mean; max] over channels) of the rescaled map. Plain loops,
// one pass per step; the one ATen call is the pixel factors' sigmoid. The factors are
// computed as the model computes them in eval mode: in double, rounded once to float (see
// dabnn.py). A sum of float32 values within about 2^20 of each other is exact in double, so
// the means are the same in any order; the two small convolutions and the sigmoids may
// differ from ATen's in the last few bits of a double, which the rounding to float removes
// except, rarely, for a value that close to a float32 rounding boundary.
double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

// One output pixel (y, x) of the k x k conv of the two zero-padded maps, in double.
__attribute__((always_inline)) inline double spatial_conv_pixel(const double* padded,
                                                                const float* ws, int64_t k,
                                                                int64_t pw, int64_t plane,
                                                                int64_t y, int64_t x) {
  double acc = 0.0;
  for (int64_t map = 0; map < 2; ++map)
    for (int64_t dy = 0; dy < k; ++dy)
      for (int64_t dx = 0; dx < k; ++dx)
        acc += ws[(map * k + dy) * k + dx] * padded[map * plane + (y + dy) * pw + x + dx];
  return acc;
}

// The k x k conv of the two zero-padded maps (mean, max) in double, pixel by pixel (the
// portable path; the FMA copy below computes 8 pixels of a row at a time).
void spatial_conv_rows(const double* padded, const float* ws, int64_t h, int64_t w, int64_t k,
                       double* out) {
  const int64_t pw = w + k - 1, plane = (h + k - 1) * pw;
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x)
      out[y * w + x] = spatial_conv_pixel(padded, ws, k, pw, plane, y, x);
}

#if COURSE_X86
// The same conv with fused multiply-adds, 8 outputs of a row in two registers. FMA rounds
// once where the loop above rounds twice, and the order differs: the doubles differ in their
// last bits, which the rounding of the factors to float removes.
__attribute__((target("avx2,fma"))) void spatial_conv_avx2(const double* padded, const float* ws,
                                                           int64_t h, int64_t w, int64_t k,
                                                           double* out) {
  const int64_t pw = w + k - 1, plane = (h + k - 1) * pw;
  for (int64_t y = 0; y < h; ++y) {
    int64_t x0 = 0;
    for (; x0 + 8 <= w; x0 += 8) {
      __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
      for (int64_t map = 0; map < 2; ++map)
        for (int64_t dy = 0; dy < k; ++dy) {
          const double* src = padded + map * plane + (y + dy) * pw + x0;
          const float* wrow = ws + (map * k + dy) * k;
          for (int64_t dx = 0; dx < k; ++dx) {
            const __m256d wt = _mm256_set1_pd(wrow[dx]);
            lo = _mm256_fmadd_pd(wt, _mm256_loadu_pd(src + dx), lo);
            hi = _mm256_fmadd_pd(wt, _mm256_loadu_pd(src + dx + 4), hi);
          }
        }
      _mm256_storeu_pd(out + y * w + x0, lo);
      _mm256_storeu_pd(out + y * w + x0 + 4, hi);
    }
    for (; x0 < w; ++x0)  // the rest of a row narrower than 8
      out[y * w + x0] = spatial_conv_pixel(padded, ws, k, pw, plane, y, x0);
  }
}

bool has_fma() {
#if defined(__GNUC__)
  static const bool fma = (__builtin_cpu_init(), __builtin_cpu_supports("fma"));
  return fma;
#else
  return false;
#endif
}
#endif

// sigmoid of the spatial conv, rounded to float: the sigmoid is ATen's own (at::sigmoid_ on
// one sample's map; the model applies it to the whole batch, and elements left over by its
// vector loop take ATen's scalar path, which may differ in a double's last bit). On a map of
// more than 32,768 pixels ATen would split it over its thread pool, even with threads = 1.
void spatial_factors(const double* padded, const float* ws, int64_t h, int64_t w, int64_t k,
                     torch::Tensor& pre, float* out) {
  double* pp = pre.data_ptr<double>();
#if COURSE_X86
  if (isa() >= kAvx2 && has_fma())
    spatial_conv_avx2(padded, ws, h, w, k, pp);
  else
#endif
    spatial_conv_rows(padded, ws, h, w, k, pp);
  at::sigmoid_(pre);
  for (int64_t p = 0; p < h * w; ++p) out[p] = static_cast<float>(pp[p]);
}

// One sample's tail (NHWC maps of hw pixels x c channels). always_inline, so that the AVX2
// copy below vectorizes each pass across channels (8 floats, 4 doubles).
struct TailArgs {
  const float *m, *res, *wc, *ws, *scale, *shift, *slope;
  float* out;
  int64_t h, w, c, kc, k, act;
  double* sum;      // c
  float* a;         // c: the channel factors
  double* padded;   // 2 zero-padded maps (mean, max)
  float* spatial;   // hw: the pixel factors
  torch::Tensor* pre;
};

// The sum (in double) and the maximum over c channels of v * a at one pixel.
__attribute__((always_inline)) inline void mean_max_pixel(const float* v, const float* a,
                                                          int64_t c, double& total, float& top) {
  double lanes[8] = {};  // independent partial sums and maxima
  float tops[8];
  std::fill(tops, tops + 8, -INFINITY);
  int64_t ch = 0;
  for (; ch + 8 <= c; ch += 8)
    for (int l = 0; l < 8; ++l) {
      const float scaled = v[ch + l] * a[ch + l];
      lanes[l] += scaled;
      tops[l] = scaled > tops[l] ? scaled : tops[l];
    }
  for (; ch < c; ++ch) {
    const float scaled = v[ch] * a[ch];
    lanes[0] += scaled;
    tops[0] = scaled > tops[0] ? scaled : tops[0];
  }
  total = 0.0;
  top = -INFINITY;
  for (int l = 0; l < 8; ++l) {
    total += lanes[l];
    top = tops[l] > top ? tops[l] : top;
  }
}

#if COURSE_X86
// The same, 8 channels per step: products in float, the sum in two double registers.
__attribute__((target("avx2"))) inline void mean_max_pixel_avx2(const float* v, const float* a,
                                                                int64_t c, double& total,
                                                                float& top) {
  __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
  __m256 tops = _mm256_set1_ps(-INFINITY);
  int64_t ch = 0;
  for (; ch + 8 <= c; ch += 8) {
    const __m256 x = _mm256_mul_ps(_mm256_loadu_ps(v + ch), _mm256_loadu_ps(a + ch));
    tops = _mm256_max_ps(x, tops);
    lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(x)));
    hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1)));
  }
  double lanes[4];
  float maxima[8];
  _mm256_storeu_pd(lanes, _mm256_add_pd(lo, hi));
  _mm256_storeu_ps(maxima, tops);
  total = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
  top = maxima[0];
  for (int l = 1; l < 8; ++l) top = maxima[l] > top ? maxima[l] : top;
  for (; ch < c; ++ch) {
    const float scaled = v[ch] * a[ch];
    total += scaled;
    top = scaled > top ? scaled : top;
  }
}
#endif

template <bool kAvx2>
__attribute__((always_inline)) inline void tail_sample(const TailArgs& t) {
  const int64_t h = t.h, w = t.w, c = t.c, k = t.k, hw = h * w, pw = w + k - 1;
  const float* mb = t.m;
  std::fill(t.sum, t.sum + c, 0.0);
  for (int64_t p = 0; p < hw; ++p)
    for (int64_t ch = 0; ch < c; ++ch) t.sum[ch] += mb[p * c + ch];
  for (int64_t ch = 0; ch < c; ++ch) {  // 1-D conv across channels, zero padded
    double acc = 0.0;
    for (int64_t j = 0; j < t.kc; ++j) {
      const int64_t src = ch + j - t.kc / 2;
      if (src >= 0 && src < c) acc += static_cast<double>(t.wc[j]) * (t.sum[src] / static_cast<double>(hw));
    }
    t.a[ch] = static_cast<float>(sigmoid(acc));
  }
  double* mean_map = t.padded;
  double* max_map = t.padded + (h + k - 1) * pw;
  for (int64_t y = 0; y < h; ++y)  // mean and max over channels of the rescaled map
    for (int64_t x = 0; x < w; ++x) {
      const float* v = mb + (y * w + x) * c;
      double total;
      float top;
#if COURSE_X86
      if constexpr (kAvx2) {
        mean_max_pixel_avx2(v, t.a, c, total, top);
      } else
#endif
      {
        mean_max_pixel(v, t.a, c, total, top);
      }
      const int64_t at = (y + k / 2) * pw + x + k / 2;
      mean_map[at] = total / static_cast<double>(c);
      max_map[at] = top;
    }
  spatial_factors(t.padded, t.ws, h, w, k, *t.pre, t.spatial);
  for (int64_t p = 0; p < hw; ++p) {  // the factors, BatchNorm, residual, activation
    const float* v = mb + p * c;
    const float* r = t.res + p * c;
    float* o = t.out + p * c;
    const float f = t.spatial[p];
    if (t.act == kHardtanh) {
      for (int64_t ch = 0; ch < c; ++ch) {
        const float y = ((v[ch] * t.a[ch]) * f) * t.scale[ch] + t.shift[ch] + r[ch];
        o[ch] = y < -1.0f ? -1.0f : (y > 1.0f ? 1.0f : y);
      }
    } else if (t.act == kPrelu) {
      for (int64_t ch = 0; ch < c; ++ch) {
        const float y = ((v[ch] * t.a[ch]) * f) * t.scale[ch] + t.shift[ch] + r[ch];
        o[ch] = y > 0.0f ? y : t.slope[ch] * y;
      }
    } else {
      for (int64_t ch = 0; ch < c; ++ch)
        o[ch] = ((v[ch] * t.a[ch]) * f) * t.scale[ch] + t.shift[ch] + r[ch];
    }
  }
}

#if COURSE_X86
__attribute__((target("avx2"))) void tail_sample_avx2(const TailArgs& t) { tail_sample<true>(t); }
#endif

torch::Tensor amplitude_tail(const torch::Tensor& m, const BodyLayer& l, const torch::Tensor& res) {
  const int64_t n = m.size(0), h = m.size(1), w = m.size(2), c = m.size(3), hw = h * w;
  const int64_t k = l.amp_spatial.size(-1), pw = w + k - 1;
  // eval-mode BatchNorm as x * scale + shift, the numbers the model uses (resnet.affine_of)
  TORCH_CHECK(l.bn_scale.numel() == c && l.bn_shift.numel() == c,
              "amplitude: the BatchNorm needs one scale and one shift per channel");
  auto out = torch::empty_like(m);
  std::vector<double> sum(c), padded(2 * (h + k - 1) * pw, 0.0);
  std::vector<float> a(c), spatial(hw);
  torch::Tensor pre = torch::empty({hw}, torch::kFloat64);  // the spatial conv, then sigmoid
  TailArgs t{nullptr, nullptr, l.amp_channel.data_ptr<float>(), l.amp_spatial.data_ptr<float>(),
             l.bn_scale.data_ptr<float>(), l.bn_shift.data_ptr<float>(),
             l.act == kPrelu ? l.slope.data_ptr<float>() : nullptr, nullptr, h, w, c,
             l.amp_channel.numel(), k, l.act, sum.data(), a.data(), padded.data(),
             spatial.data(), &pre};
  for (int64_t b = 0; b < n; ++b) {
    t.m = m.data_ptr<float>() + b * hw * c;
    t.res = res.data_ptr<float>() + b * hw * c;
    t.out = out.data_ptr<float>() + b * hw * c;
#if COURSE_X86
    if (isa() >= kAvx2) {
      tail_sample_avx2(t);
      continue;
    }
#endif
    tail_sample<false>(t);
  }
  return out;
}

class PackedBody {
 public:
  void add_layer(torch::Tensor threshold, torch::Tensor words, torch::Tensor taps,
                 torch::Tensor scale, torch::Tensor bias, int64_t act, torch::Tensor slope,
                 int64_t stride, int64_t pad) {
    check_layer(words, taps);
    layers_.push_back(BodyLayer{std::make_shared<Padding>(), threshold.contiguous(), words, taps,
                                scale.contiguous(), bias.contiguous(), slope.contiguous(), act,
                                stride, pad, false, {}, {}, {}, {}});
  }

  // DA-BNN: the last layer added computes alpha * dot only; the amplitude, its BatchNorm
  // (x * scale + shift, resnet.affine_of), the residual and the activation follow
  // (engine.AmplitudeTail's operations).
  void set_amplitude(torch::Tensor channel, torch::Tensor spatial, torch::Tensor scale,
                     torch::Tensor shift) {
    TORCH_CHECK(!layers_.empty(), "set_amplitude: add the layer first");
    BodyLayer& l = layers_.back();
    l.amplitude = true;
    const auto f32 = [](const torch::Tensor& t) { return t.to(torch::kFloat32).contiguous(); };
    l.amp_channel = f32(channel);
    l.amp_spatial = f32(spatial);
    l.bn_scale = f32(scale);
    l.bn_shift = f32(shift);
  }

  void add_block(int64_t shortcut, int64_t stride, int64_t out_channels, torch::Tensor weight,
                 torch::Tensor mean, torch::Tensor var, torch::Tensor bn_weight,
                 torch::Tensor bn_bias, double eps) {
    TORCH_CHECK(shortcut >= kIdentityShortcut && shortcut <= kAvgPoolShortcut,
                "add_block: unknown shortcut kind ", shortcut);
    blocks_.push_back(BodyBlock{shortcut, stride, out_channels, weight, mean, var, bn_weight,
                                bn_bias, eps});
  }

  // NHWC float32 in and out. threads == 1: the binary kernels run on the calling thread
  // alone; more: they split their pixels over PyTorch's intra-op pool (torch.set_num_threads
  // sets its size; changing it per call would cost milliseconds). The float ops (shortcut
  // convs) always run on that pool.
  torch::Tensor forward(torch::Tensor h, int64_t threads) {
    TORCH_CHECK(layers_.size() == 2 * blocks_.size(), "the body has ", layers_.size(),
                " layers for ", blocks_.size(), " blocks; expected two per block");
    TORCH_CHECK(h.dim() == 4 && h.scalar_type() == torch::kFloat32,
                "forward: expected float32 (N, H, W, C) features");
    TORCH_CHECK(threads >= 1, "forward: threads must be at least 1");
    const SerialGuard serial(threads == 1);
    h = h.contiguous();
    for (size_t b = 0; b < blocks_.size(); ++b) {
      const torch::Tensor h1 = run(layers_[2 * b], h, shortcut(blocks_[b], h));
      h = run(layers_[2 * b + 1], h1, h1);
    }
    return h;
  }

  // The full-precision ends, so that a whole forward pass is one call (forward_images).
  void set_stem(torch::Tensor weight, torch::Tensor mean, torch::Tensor var, torch::Tensor bn_weight,
                torch::Tensor bn_bias, double eps, int64_t act, torch::Tensor slope) {
    stem_ = {weight, mean, var, bn_weight, bn_bias, slope};
    stem_eps_ = eps;
    stem_act_ = act;
  }

  void set_head(torch::Tensor weight, torch::Tensor bias) { head_ = {weight, bias}; }

  // NCHW images -> logits: the stem (conv, BatchNorm, activation), the binary body and the
  // head (global average pooling, linear) with the same ATen operations as the Python
  // engine's stem() and head(), in the same order.
  torch::Tensor forward_images(torch::Tensor x, int64_t threads) {
    TORCH_CHECK(stem_.size() == 6 && head_.size() == 2, "forward_images: set_stem and set_head first");
    torch::Tensor y = at::conv2d(x.to(torch::kFloat32), stem_[0], {}, {1}, {1});
    y = at::batch_norm(y, stem_[3], stem_[4], stem_[1], stem_[2], false, 0.0, stem_eps_, true);
    if (stem_act_ == kHardtanh) y = at::hardtanh(y);
    if (stem_act_ == kPrelu) y = at::prelu(y, stem_[5]);
    const torch::Tensor h = forward(to_nhwc(y), threads);
    const torch::Tensor pooled = at::adaptive_avg_pool2d(to_nchw(h), {1, 1}).flatten(1);
    return at::linear(pooled, head_[0], head_[1]);
  }

  int64_t layers() const { return static_cast<int64_t>(layers_.size()); }

 private:
  static torch::Tensor shortcut(const BodyBlock& b, const torch::Tensor& h) {
    if (b.shortcut == kIdentityShortcut) return h;
    if (b.shortcut == kPadShortcut) {
      const torch::Tensor y = h.slice(1, 0, h.size(1), b.stride).slice(2, 0, h.size(2), b.stride);
      return at::constant_pad_nd(y, {0, b.out_channels - h.size(3)}, 0).contiguous();
    }
    if (b.shortcut == kAvgPoolShortcut) {  // on the NCHW layout, as the model pools
      torch::Tensor y = to_nchw(h);
      if (b.stride > 1) y = at::avg_pool2d(y, {b.stride, b.stride});
      const int64_t copies = b.out_channels / h.size(3);
      return to_nhwc(copies > 1 ? at::cat(std::vector<torch::Tensor>(copies, y), 1) : y);
    }
    torch::Tensor y = at::conv2d(h.permute({0, 3, 1, 2}), b.weight, {}, {b.stride});
    y = at::batch_norm(y, b.bn_weight, b.bn_bias, b.mean, b.var, false, 0.0, b.eps, true);
    return y.permute({0, 2, 3, 1}).contiguous();
  }

  static torch::Tensor run(const BodyLayer& l, const torch::Tensor& x, const torch::Tensor& res) {
    if (!l.amplitude)
      return conv_fused_cached(x, l.threshold, l.words, l.taps, l.scale, l.bias, res, l.act,
                               l.slope, l.stride, l.pad, l.padding.get());
    const torch::Tensor m = conv_fused_cached(x, l.threshold, l.words, l.taps, l.scale, l.bias,
                                              c10::nullopt, kIdentity, l.slope, l.stride, l.pad,
                                              l.padding.get());
    return amplitude_tail(m, l, res.contiguous());
  }

  std::vector<BodyLayer> layers_;
  std::vector<BodyBlock> blocks_;
  std::vector<torch::Tensor> stem_, head_;
  double stem_eps_ = 0.0;
  int64_t stem_act_ = kIdentity;
};

std::string kernel_path() { return kIsaNames[isa()]; }

// Cap the instruction set (for tests): "portable", "popcnt", "avx2" or "avx512-vpopcntdq".
void force_isa(const std::string& name) {
  for (int i = kPortable; i <= kAvx512; ++i)
    if (name == kIsaNames[i]) {
      g_isa_cap = i;
      return;
    }
  TORCH_CHECK(false, "force_isa: unknown instruction set '", name, "'");
}

void force_portable(bool force) { g_isa_cap = force ? kPortable : kAvx512; }

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("pack_activations", &pack_activations, "NHWC float -> padded NHWC sign bits (uint8)");
  m.def("kernel_weights", &kernel_weights, "sign bits (O, kh, kw, B) -> K-major 64-bit words");
  m.def("conv_dot", &conv_dot, "integer dot products of a packed binary conv");
  m.def("conv_fused", &conv_fused, "packed binary conv + scale + bias + residual + activation");
  m.def("gemm_seconds", &gemm_seconds, "seconds for reps popcount GEMMs alone (benchmark)");
  m.def("to_nhwc", &to_nhwc, "NCHW float32 -> NHWC (a plain copy)");
  m.def("to_nchw", &to_nchw, "NHWC float32 -> NCHW (a plain copy)");
  m.def("kernel_path", &kernel_path, "which popcount implementation runs on this CPU");
  m.def("force_portable", &force_portable, "use the portable popcount even where a faster one runs");
  pybind11::class_<PackedBody>(m, "PackedBody")
      .def(pybind11::init<>())
      .def("add_layer", &PackedBody::add_layer)
      .def("set_amplitude", &PackedBody::set_amplitude)
      .def("add_block", &PackedBody::add_block)
      .def("forward", &PackedBody::forward, pybind11::arg("features"), pybind11::arg("threads") = 1)
      .def("set_stem", &PackedBody::set_stem)
      .def("set_head", &PackedBody::set_head)
      .def("forward_images", &PackedBody::forward_images, pybind11::arg("images"),
           pybind11::arg("threads") = 1)
      .def("layers", &PackedBody::layers);
  m.def("force_isa", &force_isa, "cap the instruction set the kernel uses (tests)");
}
