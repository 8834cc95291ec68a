// Bit-packed binary convolution for x86 and other CPUs (the course's chapter 5).
//
// Signs are packed channels-last: bit c % 8 of byte c / 8 of a pixel is 1 when the
// activation (minus its threshold) or the weight is negative (the IEEE sign bit), i.e. when
// the value it stands for is -1. A k x k patch is the k*k pixels' bytes one after the other
// ("im2col" on bits), padded with zero bytes to whole 64-bit words. For +-1 vectors a and w of
// K entries, a . w = K - 2 * popcount(a xor w): the dot product of the float reference.
//
// Zero padding: the float reference pads the +-1 tensor with zeros, which contribute nothing,
// while a bit is either +1 or -1. We pad with +1 (zero bits) and subtract what those taps
// added: for output channel o, sum over the padded taps t of S[o][t] = sum_c w[o][c][t].
//
// The popcount GEMM has two implementations chosen at run time: AVX-512 VPOPCNTDQ (8 words
// per instruction, 4 pixels x 32 output channels per register block) and a portable one
// (a scalar popcount). Both give the same integers; the epilogue (scale, bias, residual,
// activation) is plain float arithmetic compiled with -ffp-contract=off, so that the pure
// PyTorch path of course_lib.bnn.kernel gives bit-identical floats.

#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <cstdint>
#include <cstring>
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

bool g_force_portable = false;
constexpr int64_t kSlack = 8;

inline int popcount64(uint64_t v) {
#if defined(__GNUC__) || defined(__clang__)
  return __builtin_popcountll(v);
#else
  int n = 0;
  for (; v; v &= v - 1) ++n;
  return n;
#endif
}

bool cpu_has_vpopcntdq() {
#if COURSE_X86 && defined(__GNUC__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vpopcntdq");
#else
  return false;
#endif
}

bool use_avx512() {
  static const bool has = cpu_has_vpopcntdq();
  return has && !g_force_portable;
}

// --- packing -----------------------------------------------------------------------------

// One pixel: c floats (minus thresholds) -> ceil(c / 8) bytes of sign bits.
void pack_pixel_portable(const float* x, const float* thr, int64_t c, uint8_t* out) {
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
void pack_pixel_avx512(const float* x, const float* thr, int64_t c, uint8_t* out) {
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
#endif

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
  const bool avx = use_avx512();
  at::parallel_for(0, n * h, 1, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / h, y = row % h;
      for (int64_t xx = 0; xx < w; ++xx) {
        const float* src = xp + ((b * h + y) * w + xx) * c;
        uint8_t* dst = op + ((b * hp + y + pad) * wp + xx + pad) * bytes;
#if COURSE_X86
        if (avx) {
          pack_pixel_avx512(src, tp, c, dst);
          continue;
        }
#endif
        pack_pixel_portable(src, tp, c, dst);
      }
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
  if (use_avx512()) return popcount_gemm_avx512(patch, wt, p_count, k_words, o_pad, acc);
#endif
  popcount_gemm_portable(patch, wt, p_count, k_words, o_pad, acc);
}

// --- one binary conv -----------------------------------------------------------------------

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
  TORCH_CHECK(s.k_words * 8 >= s.kh * s.kw * s.tap_bytes, "packed weights too short for the patch");
  TORCH_CHECK(packed.size(1) == h + 2 * pad && packed.size(2) == w + 2 * pad,
              "packed activations do not match the input size and padding");
  return s;
}

// Copies n bytes; a plain loop for short rows, where a call to memcpy costs more.
inline void copy_bytes(uint8_t* dst, const uint8_t* src, int64_t n) {
  if (n >= 32) {
    std::memcpy(dst, src, n);
    return;
  }
  for (int64_t i = 0; i < n; ++i) dst[i] = src[i];
}

// One patch: `rows` runs of `row_bytes` bytes, `stride` bytes apart, concatenated into
// `k_words` 64-bit words (zero padded). Assembled in a register with 8-byte loads and one
// store per word: byte stores followed by word loads would stall the GEMM. Reads up to 7
// bytes past a run, so the source needs kSlack spare bytes after its end.
inline void gather_patch(uint64_t* dst, const uint8_t* src, int64_t rows, int64_t row_bytes,
                         int64_t stride, int64_t k_words) {
  uint64_t cur = 0;
  int64_t bits = 0, w = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* p = src + r * stride;
    for (int64_t left = row_bytes; left > 0;) {
      const int64_t take = left < 8 ? left : 8;
      uint64_t v;
      std::memcpy(&v, p, 8);
      if (take < 8) v &= (uint64_t{1} << (8 * take)) - 1;
      cur |= v << bits;
      bits += 8 * take;
      if (bits >= 64) {
        dst[w++] = cur;
        bits -= 64;
        cur = bits ? v >> (8 * take - bits) : 0;
      }
      p += take;
      left -= take;
    }
  }
  if (bits) dst[w++] = cur;
  while (w < k_words) dst[w++] = 0;
}

// The popcounts of one conv: emit(p, acc, corr) for every output pixel p (batch-major, then
// rows, then columns), where dot[o] = K - 2 * acc[o] - corr[o] is the integer dot product.
// taps: (kh, kw, o) int32, S[i][j][o] = sum_c w[o][c][i][j] (+-1 weights).
template <class Emit>
void binary_dot(const torch::Tensor& packed, const torch::Tensor& wt, const torch::Tensor& taps,
                const ConvShape& s, Emit&& emit) {
  const uint8_t* in = packed.data_ptr<uint8_t>();
  const uint64_t* wp = reinterpret_cast<const uint64_t*>(wt.data_ptr<int64_t>());
  const int32_t* tp = taps.data_ptr<int32_t>();
  const int64_t wpix = s.w + 2 * s.pad, hp = s.h + 2 * s.pad;
  const int64_t row_bytes = s.kw * s.tap_bytes;
  const int64_t plane = s.oh * s.ow, pixels = s.n * plane;
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
  // One correction vector per distinct (rows, columns) padding pattern; pattern 0 is "none".
  std::vector<std::pair<int64_t, int64_t>> patterns{{0, 0}};
  std::vector<int32_t> corr(s.o, 0);
  std::vector<int32_t> pattern_at(plane);
  for (int64_t y = 0; y < s.oh; ++y)
    for (int64_t x = 0; x < s.ow; ++x) {
      const std::pair<int64_t, int64_t> key{row_mask[y], col_mask[x]};
      size_t q = 0;
      while (q < patterns.size() && patterns[q] != key) ++q;
      if (q == patterns.size()) {
        patterns.push_back(key);
        corr.resize(patterns.size() * s.o, 0);
        int32_t* v = corr.data() + q * s.o;
        for (int64_t i = 0; i < s.kh; ++i)
          for (int64_t j = 0; j < s.kw; ++j)
            if (((key.first >> i) & 1) || ((key.second >> j) & 1)) {
              const int32_t* t = tp + (i * s.kw + j) * s.o;
              for (int64_t o = 0; o < s.o; ++o) v[o] += t[o];
            }
      }
      pattern_at[y * s.ow + x] = static_cast<int32_t>(q);
    }
  constexpr int64_t block = 16;  // output pixels per task: the patch buffer stays in L1
  const int64_t spare = packed.storage().nbytes() - (packed.storage_offset() + packed.numel());
  const bool fast_gather = spare >= kSlack;
  at::parallel_for(0, (pixels + block - 1) / block, 1, [&](int64_t begin, int64_t end) {
    std::vector<uint64_t> patch(block * s.k_words, 0);
    std::vector<int32_t> acc(block * s.o_pad);
    int32_t pattern[block];
    for (int64_t blk = begin; blk < end; ++blk) {
      const int64_t p0 = blk * block, count = std::min(block, pixels - p0);
      int64_t b = p0 / plane, oy = (p0 % plane) / s.ow, ox = p0 % s.ow;
      for (int64_t q = 0; q < count; ++q) {
        const uint8_t* src = in + ((b * hp + oy * s.stride) * wpix + ox * s.stride) * s.tap_bytes;
        if (fast_gather) {
          gather_patch(patch.data() + q * s.k_words, src, s.kh, row_bytes, wpix * s.tap_bytes,
                       s.k_words);
        } else {
          uint8_t* dst = reinterpret_cast<uint8_t*>(patch.data() + q * s.k_words);
          for (int64_t i = 0; i < s.kh; ++i)
            copy_bytes(dst + i * row_bytes, src + i * wpix * s.tap_bytes, row_bytes);
        }
        pattern[q] = pattern_at[oy * s.ow + ox];
        if (++ox == s.ow) {
          ox = 0;
          if (++oy == s.oh) {
            oy = 0;
            ++b;
          }
        }
      }
      popcount_gemm(patch.data(), wp, count, s.k_words, s.o_pad, acc.data());
      for (int64_t q = 0; q < count; ++q) {
        const int64_t p = p0 + q;
        emit(p, acc.data() + q * s.o_pad, corr.data() + pattern[q] * s.o);
      }
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
void epilogue_avx512(const Epilogue& e, const int32_t* acc, const int32_t* corr, const float* res,
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
  binary_dot(packed, wt, taps, s, [&](int64_t p, const int32_t* acc, const int32_t* corr) {
    for (int64_t o = 0; o < s.o; ++o) op[p * s.o + o] = k_bits - 2 * acc[o] - corr[o];
  });
  return out;
}

// The fused layer: act(dot * scale + bias [+ residual]), NHWC float32 in and out.
torch::Tensor conv_fused(torch::Tensor x, torch::Tensor threshold, torch::Tensor wt,
                         torch::Tensor taps, torch::Tensor scale, torch::Tensor bias,
                         c10::optional<torch::Tensor> residual, int64_t act, torch::Tensor slope,
                         int64_t stride, int64_t pad) {
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
#if COURSE_X86
  if (use_avx512()) {
    binary_dot(packed, wt, taps, s, [&](int64_t p, const int32_t* acc, const int32_t* corr) {
      epilogue_avx512(e, acc, corr, rp ? rp + p * s.o : nullptr, op + p * s.o);
    });
    return out;
  }
#endif
  binary_dot(packed, wt, taps, s, [&](int64_t p, const int32_t* acc, const int32_t* corr) {
    epilogue_portable(e, acc, corr, rp ? rp + p * s.o : nullptr, op + p * s.o);
  });
  return out;
}

// (O, kh, kw, tap_bytes) uint8 sign bits -> (k_words, o_pad) int64, K-major, zero padded.
torch::Tensor kernel_weights(torch::Tensor bits) {
  TORCH_CHECK(bits.dim() == 4 && bits.scalar_type() == torch::kUInt8,
              "kernel_weights: expected uint8 (O, kh, kw, tap_bytes) sign bits");
  bits = bits.contiguous();
  const int64_t o = bits.size(0), patch_bytes = bits.size(1) * bits.size(2) * bits.size(3);
  const int64_t k_words = (patch_bytes + 7) / 8, o_pad = (o + 7) / 8 * 8;
  auto out = torch::zeros({k_words, o_pad}, torch::kInt64);
  uint64_t* op = reinterpret_cast<uint64_t*>(out.data_ptr<int64_t>());
  const uint8_t* bp = bits.data_ptr<uint8_t>();
  std::vector<uint8_t> row(k_words * 8);
  for (int64_t oc = 0; oc < o; ++oc) {
    std::fill(row.begin(), row.end(), 0);
    std::memcpy(row.data(), bp + oc * patch_bytes, patch_bytes);
    for (int64_t k = 0; k < k_words; ++k) std::memcpy(op + k * o_pad + oc, row.data() + 8 * k, 8);
  }
  return out;
}

std::string kernel_path() { return use_avx512() ? "avx512-vpopcntdq" : "portable"; }

void force_portable(bool force) { g_force_portable = force; }

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("pack_activations", &pack_activations, "NHWC float -> padded NHWC sign bits (uint8)");
  m.def("kernel_weights", &kernel_weights, "sign bits (O, kh, kw, B) -> K-major 64-bit words");
  m.def("conv_dot", &conv_dot, "integer dot products of a packed binary conv");
  m.def("conv_fused", &conv_fused, "packed binary conv + scale + bias + residual + activation");
  m.def("kernel_path", &kernel_path, "which popcount implementation runs on this CPU");
  m.def("force_portable", &force_portable, "use the portable popcount even where AVX-512 runs");
}
