// Fused uvu convolution and aggregation for one group of paths (one input block, one output irrep),
// reading the per-edge weights and writing the aggregated messages in e3nn's own layouts:
//   out[n, ocol[q] + u*d3 + k] = sum_{e: dst_e = n} w[e, wcol[q] + u] * sum_i B[e, i, q*d3 + k] * x[src_e, i, u]
// x [atoms, d1, U] (channels innermost), B [edges, d1, C = Q*d3], w [edges, W], out [atoms, M].
// Per edge this is a small matrix product, T [C, U] = B_e^T [C, d1] @ x_src [d1, U], then a weighted
// accumulation. The channel loop is the vector dimension, and several output columns (or input rows, in
// the backward) are computed at once so that independent accumulators hide the multiply-add latency.
// The forward walks each destination's edges (by_dst, rowptr), the backward each source's (by_src,
// rowptr_src), so every row written has one writer: no atomics. B gets no gradient (the caller takes the
// PyTorch path when it needs one).
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <vector>

// t[cb, u] = sum_i Be[i, c0 + cb] * xs[i, u] for cb < CB
template <typename T, int UC, int CB>
static inline void cols(const T* __restrict xs, const T* __restrict Be, int64_t D1, int64_t C, int64_t c0,
                        int64_t Ud, T* __restrict t) {
  const int64_t U = UC > 0 ? UC : Ud;
  T r[CB * (UC > 0 ? UC : 1)];
  T* __restrict acc = UC > 0 ? r : t;
  for (int cb = 0; cb < CB; ++cb)
#pragma omp simd
    for (int64_t u = 0; u < U; ++u) acc[cb * U + u] = 0;
  for (int64_t i = 0; i < D1; ++i) {
    const T* xi = xs + i * U;
    const T* bi = Be + i * C + c0;
#pragma GCC unroll 16
    for (int cb = 0; cb < CB; ++cb) {
      const T b = bi[cb];
#pragma omp simd
      for (int64_t u = 0; u < U; ++u) acc[cb * U + u] += b * xi[u];
    }
  }
  if (UC > 0)
    for (int cb = 0; cb < CB; ++cb)
#pragma omp simd
      for (int64_t u = 0; u < U; ++u) t[cb * U + u] = acc[cb * U + u];
}

// calls f(c0, CB) over [0, C) in blocks of 8, then 4, 2, 1
template <typename F>
static inline void blocks(int64_t C, F&& f) {
  int64_t c0 = 0;
  for (; c0 + 8 <= C; c0 += 8) f(c0, std::integral_constant<int, 8>());
  if (c0 + 4 <= C) { f(c0, std::integral_constant<int, 4>()); c0 += 4; }
  if (c0 + 2 <= C) { f(c0, std::integral_constant<int, 2>()); c0 += 2; }
  if (c0 < C) f(c0, std::integral_constant<int, 1>());
}

template <typename T, int UC>
static void fwd_impl(const T* __restrict x, const T* __restrict B, const T* __restrict w, const int64_t* wc,
                     const int64_t* ocol, const int64_t* src, const int64_t* by_dst, const int64_t* rowptr,
                     T* __restrict out, int64_t N, int64_t D1, int64_t Q, int64_t d3, int64_t W, int64_t M,
                     int64_t Ud) {
  const int64_t U = UC > 0 ? UC : Ud;
  const int64_t C = Q * d3;
  at::parallel_for(0, N, 4, [&](int64_t n0, int64_t n1) {
    std::vector<T> buf((C + 8) * U);
    T* __restrict acc = buf.data();
    T* __restrict t = acc + C * U;
    for (int64_t n = n0; n < n1; ++n) {
      for (int64_t j = 0; j < C * U; ++j) acc[j] = 0;
      for (int64_t p = rowptr[n]; p < rowptr[n + 1]; ++p) {
        const int64_t e = by_dst[p];
        const T* xs = x + src[e] * D1 * U;
        const T* Be = B + e * D1 * C;
        const T* we = w + e * W;
        blocks(C, [&](int64_t c0, auto cbt) {
          constexpr int CB = decltype(cbt)::value;
          cols<T, UC, CB>(xs, Be, D1, C, c0, U, t);
          for (int cb = 0; cb < CB; ++cb) {
            const T* wq = we + wc[c0 + cb];
            T* a = acc + (c0 + cb) * U;
#pragma omp simd
            for (int64_t u = 0; u < U; ++u) a[u] += wq[u] * t[cb * U + u];
          }
        });
      }
      T* row = out + n * M;
      for (int64_t q = 0; q < Q; ++q)
        for (int64_t k = 0; k < d3; ++k)
          for (int64_t u = 0; u < U; ++u) row[ocol[q] + u * d3 + k] = acc[(q * d3 + k) * U + u];
    }
  });
}

// G [atoms, C, U]: the output gradient of this group gathered channels-innermost by the caller
template <typename T, int UC>
static void bwd_impl(const T* __restrict G, const T* __restrict x, const T* __restrict B, const T* __restrict w,
                     const int64_t* wc, const int64_t* wcol, const int64_t* dst, const int64_t* by_src,
                     const int64_t* rowptr_src, T* __restrict gx, T* __restrict gw, int64_t N, int64_t D1,
                     int64_t Q, int64_t d3, int64_t W, int64_t Ud) {
  const int64_t U = UC > 0 ? UC : Ud;
  const int64_t C = Q * d3;
  at::parallel_for(0, N, 4, [&](int64_t s0, int64_t s1) {
    std::vector<T> buf((C + 8 + 8) * U);
    T* __restrict gc = buf.data();   // [C, U]: G[dst] * w, this edge's message gradient
    T* __restrict t = gc + C * U;     // [8, U]
    T* __restrict r = t + 8 * U;      // [8, U]
    for (int64_t s = s0; s < s1; ++s) {
      const T* xs = x + s * D1 * U;
      T* gxs = gx + s * D1 * U;
      for (int64_t j = 0; j < D1 * U; ++j) gxs[j] = 0;
      for (int64_t p = rowptr_src[s]; p < rowptr_src[s + 1]; ++p) {
        const int64_t e = by_src[p];
        const T* Gn = G + dst[e] * C * U;
        const T* Be = B + e * D1 * C;
        const T* we = w + e * W;
        T* gwe = gw + e * W;
        for (int64_t q = 0; q < Q; ++q)
#pragma omp simd
          for (int64_t u = 0; u < U; ++u) gwe[wcol[q] + u] = 0;
        // weight gradient: sum_k G * (B^T x), the forward's product recomputed
        blocks(C, [&](int64_t c0, auto cbt) {
          constexpr int CB = decltype(cbt)::value;
          cols<T, UC, CB>(xs, Be, D1, C, c0, U, t);
          for (int cb = 0; cb < CB; ++cb) {
            const int64_t c = c0 + cb;
            const T* g = Gn + c * U;
            const T* wq = we + wc[c];
            T* gwq = gwe + wc[c];
            T* gcc = gc + c * U;
#pragma omp simd
            for (int64_t u = 0; u < U; ++u) { gwq[u] += g[u] * t[cb * U + u]; gcc[u] = g[u] * wq[u]; }
          }
        });
        // input gradient: gx[i, u] += sum_c B[i, c] gc[c, u], several rows i at once
        blocks(D1, [&](int64_t i0, auto ibt) {
          constexpr int IB = decltype(ibt)::value;
          T rr[IB * (UC > 0 ? UC : 1)];
          T* __restrict a = UC > 0 ? rr : r;
          for (int ib = 0; ib < IB; ++ib)
#pragma omp simd
            for (int64_t u = 0; u < U; ++u) a[ib * U + u] = gxs[(i0 + ib) * U + u];
          for (int64_t c = 0; c < C; ++c) {
            const T* g = gc + c * U;
#pragma GCC unroll 16
            for (int ib = 0; ib < IB; ++ib) {
              const T b = Be[(i0 + ib) * C + c];
#pragma omp simd
              for (int64_t u = 0; u < U; ++u) a[ib * U + u] += b * g[u];
            }
          }
          for (int ib = 0; ib < IB; ++ib)
#pragma omp simd
            for (int64_t u = 0; u < U; ++u) gxs[(i0 + ib) * U + u] = a[ib * U + u];
        });
      }
    }
  });
}

// compile-time channel counts for the common multiplicities, a runtime loop for any other
#define DISPATCH_U(U_, ...)                                  \
  switch (U_) {                                              \
    case 4: { constexpr int UU = 4; __VA_ARGS__; break; }     \
    case 8: { constexpr int UU = 8; __VA_ARGS__; break; }     \
    case 16: { constexpr int UU = 16; __VA_ARGS__; break; }   \
    case 32: { constexpr int UU = 32; __VA_ARGS__; break; }   \
    default: { constexpr int UU = 0; __VA_ARGS__; break; }    \
  }

// the weight column of each output column c = q*d3 + k
static std::vector<int64_t> weight_columns(const torch::Tensor& wcol, int64_t d3) {
  std::vector<int64_t> wc(wcol.size(0) * d3);
  for (int64_t c = 0; c < (int64_t)wc.size(); ++c) wc[c] = wcol.data_ptr<int64_t>()[c / d3];
  return wc;
}

// writes this group's columns of out [atoms, M]
void uvu_fwd(torch::Tensor x, torch::Tensor B, torch::Tensor w, torch::Tensor wcol, torch::Tensor ocol,
             torch::Tensor src, torch::Tensor by_dst, torch::Tensor rowptr, torch::Tensor out, int64_t d3) {
  TORCH_CHECK(x.is_contiguous() && B.is_contiguous() && w.is_contiguous() && out.is_contiguous());
  const int64_t N = x.size(0), D1 = x.size(1), U = x.size(2), Q = wcol.size(0), W = w.size(1), M = out.size(1);
  const auto wc = weight_columns(wcol, d3);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "uvu_fwd", [&] {
    DISPATCH_U(U, fwd_impl<scalar_t, UU>(x.data_ptr<scalar_t>(), B.data_ptr<scalar_t>(), w.data_ptr<scalar_t>(),
                                        wc.data(), ocol.data_ptr<int64_t>(), src.data_ptr<int64_t>(),
                                        by_dst.data_ptr<int64_t>(), rowptr.data_ptr<int64_t>(),
                                        out.data_ptr<scalar_t>(), N, D1, Q, d3, W, M, U));
  });
}

// returns grad x [atoms, d1, U]; writes this group's columns of gw [edges, W]
torch::Tensor uvu_bwd(torch::Tensor G, torch::Tensor x, torch::Tensor B, torch::Tensor w, torch::Tensor wcol,
                      torch::Tensor dst, torch::Tensor by_src, torch::Tensor rowptr_src, torch::Tensor gw, int64_t d3) {
  TORCH_CHECK(G.is_contiguous() && x.is_contiguous() && B.is_contiguous() && w.is_contiguous() && gw.is_contiguous());
  const int64_t N = x.size(0), D1 = x.size(1), U = x.size(2), Q = wcol.size(0), W = w.size(1);
  const auto wc = weight_columns(wcol, d3);
  auto gx = torch::empty_like(x);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "uvu_bwd", [&] {
    DISPATCH_U(U, bwd_impl<scalar_t, UU>(G.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), B.data_ptr<scalar_t>(),
                                        w.data_ptr<scalar_t>(), wc.data(), wcol.data_ptr<int64_t>(),
                                        dst.data_ptr<int64_t>(), by_src.data_ptr<int64_t>(),
                                        rowptr_src.data_ptr<int64_t>(), gx.data_ptr<scalar_t>(),
                                        gw.data_ptr<scalar_t>(), N, D1, Q, d3, W, U));
  });
  return gx;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("uvu_fwd", &uvu_fwd);
  m.def("uvu_bwd", &uvu_bwd);
}
