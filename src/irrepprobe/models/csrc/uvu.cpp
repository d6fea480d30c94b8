// Fused uvu convolution and aggregation for one group of paths (one input block, one output irrep),
// reading the per-edge weights in e3nn's layout and writing the aggregated messages channels innermost:
//   out[n, oc[c] + u] = sum_{e: dst_e = n} w[e, wc[c] + u] * sum_i B[e, i, c] * x[src_e, i, u]
// for the output columns c = q*d3 + k of the group's paths q, with wc[c] = wcol[q] and
// oc[c] = ocol[q] + k*ostride. x [atoms, d1, U] (channels innermost), B [edges, d1, C = Q*d3],
// w [edges, W], out [atoms, M].
// Per edge this is a small matrix product, T [C, U] = B_e^T [C, d1] @ x_src [d1, U], then a weighted
// accumulation. The channel loop is the vector dimension, and several output columns (or input rows, in
// the backward) are computed at once so that independent accumulators hide the multiply-add latency.
// Both walk each destination's edges (by_dst, rowptr): the forward writes that destination's row alone;
// the backward reads its output gradient row once for all its edges and accumulates the input gradient
// of the sources in a buffer per thread (node features are small), summed by the caller: no atomics.
// B gets no gradient (the caller takes the PyTorch path when it needs one).
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

// calls f(c0, CB) over [0, C) in blocks of CB = MAX, then smaller powers of 2 (MAX is 1, 2, 4 or 8)
template <int MAX = 8, typename F>
static inline void blocks(int64_t C, F&& f) {
  int64_t c0 = 0;
  if constexpr (MAX >= 8) for (; c0 + 8 <= C; c0 += 8) f(c0, std::integral_constant<int, 8>());
  if constexpr (MAX >= 4) for (; c0 + 4 <= C; c0 += 4) f(c0, std::integral_constant<int, 4>());
  if constexpr (MAX >= 2) for (; c0 + 2 <= C; c0 += 2) f(c0, std::integral_constant<int, 2>());
  for (; c0 < C; ++c0) f(c0, std::integral_constant<int, 1>());
}

template <typename T, int UC>
static void fwd_impl(const T* __restrict x, const T* __restrict B, const T* __restrict w, const int64_t* wc,
                     const int64_t* oc, const int64_t* src, const int64_t* by_dst, const int64_t* rowptr,
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
      for (int64_t c = 0; c < C; ++c)
#pragma omp simd
        for (int64_t u = 0; u < U; ++u) row[oc[c] + u] = acc[c * U + u];
    }
  });
}

// G [atoms, M]: the output gradient, read at this group's columns oc[c] + u. Per edge and path q, with
// H_q[i, u] = sum_k B[i, q*d3 + k] G[dst, q*d3 + k, u] (the gradient reaching w_q * x before the weights):
//   gx[src, i, u] += w[e, wcol[q] + u] H_q[i, u],   gw[e, wcol[q] + u] = sum_i x[src, i, u] H_q[i, u]
// which costs one product of the forward's size, not two (no recomputed B^T x). Several rows i at once.
template <typename T, int UC>
static void bwd_impl(const T* __restrict G, const T* __restrict x, const T* __restrict B, const T* __restrict w,
                     const int64_t* oc, const int64_t* wcol, const int64_t* src, const int64_t* by_dst,
                     const int64_t* rowptr, T* __restrict gxt, T* __restrict gw, int64_t N, int64_t D1,
                     int64_t Q, int64_t d3, int64_t W, int64_t M, int64_t Ud) {
  const int64_t U = UC > 0 ? UC : Ud;
  const int64_t C = Q * d3;
  at::parallel_for(0, N, 4, [&](int64_t n0, int64_t n1) {
    std::vector<T> buf(3 * 8 * U);  // for a runtime channel count: H, gx rows, the gw sums
    T* __restrict gx = gxt + at::get_thread_num() * N * D1 * U;  // this thread's input gradient
    for (int64_t n = n0; n < n1; ++n) {
      const T* Gn = G + n * M;
      for (int64_t p = rowptr[n]; p < rowptr[n + 1]; ++p) {
        const int64_t e = by_dst[p];
        const T* xs = x + src[e] * D1 * U;
        T* gxs = gx + src[e] * D1 * U;
        const T* Be = B + e * D1 * C;
        const T* we = w + e * W;
        T* gwe = gw + e * W;
        for (int64_t q = 0; q < Q; ++q)
#pragma omp simd
          for (int64_t u = 0; u < U; ++u) gwe[wcol[q] + u] = 0;
        blocks(D1, [&](int64_t i0, auto ibt) {
          constexpr int IB = decltype(ibt)::value;
          T Ar[UC > 0 ? IB * UC : 1];
          T* __restrict A = UC > 0 ? Ar : buf.data() + 8 * U;
          for (int ib = 0; ib < IB; ++ib)
#pragma omp simd
            for (int64_t u = 0; u < U; ++u) A[ib * U + u] = gxs[(i0 + ib) * U + u];
          // IB rows times QB paths: at least 8 independent accumulators where the group has them
          blocks<8 / IB>(Q, [&](int64_t q0, auto qbt) {
            constexpr int QB = decltype(qbt)::value;
            T Hr[UC > 0 ? QB * IB * UC : 1], Sr[UC > 0 ? QB * UC : 1];
            T* __restrict H = UC > 0 ? Hr : buf.data();  // [QB, IB, U]
            T* __restrict S = UC > 0 ? Sr : buf.data() + 16 * U;  // [QB, U]
            for (int j = 0; j < QB * IB; ++j)
#pragma omp simd
              for (int64_t u = 0; u < U; ++u) H[j * U + u] = 0;
            for (int64_t k = 0; k < d3; ++k) {
#pragma GCC unroll 8
              for (int qb = 0; qb < QB; ++qb) {
                const int64_t c = (q0 + qb) * d3 + k;
                const T* g = Gn + oc[c];
#pragma GCC unroll 8
                for (int ib = 0; ib < IB; ++ib) {
                  const T b = Be[(i0 + ib) * C + c];
#pragma omp simd
                  for (int64_t u = 0; u < U; ++u) H[(qb * IB + ib) * U + u] += b * g[u];
                }
              }
            }
            for (int qb = 0; qb < QB; ++qb)
#pragma omp simd
              for (int64_t u = 0; u < U; ++u) S[qb * U + u] = 0;
#pragma GCC unroll 8
            for (int ib = 0; ib < IB; ++ib) {
              const T* xi = xs + (i0 + ib) * U;
#pragma GCC unroll 8
              for (int qb = 0; qb < QB; ++qb) {
                const T* wq = we + wcol[q0 + qb];
                const T* h = H + (qb * IB + ib) * U;
#pragma omp simd
                for (int64_t u = 0; u < U; ++u) { A[ib * U + u] += wq[u] * h[u]; S[qb * U + u] += xi[u] * h[u]; }
              }
            }
            for (int qb = 0; qb < QB; ++qb) {
              T* gwq = gwe + wcol[q0 + qb];
#pragma omp simd
              for (int64_t u = 0; u < U; ++u) gwq[u] += S[qb * U + u];
            }
          });
          for (int ib = 0; ib < IB; ++ib)
#pragma omp simd
            for (int64_t u = 0; u < U; ++u) gxs[(i0 + ib) * U + u] = A[ib * U + u];
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

// per column c = q*d3 + k: where its weights start (wcol[q]) and its output starts (ocol[q] + k*ostride)
static std::vector<int64_t> columns(const torch::Tensor& start, int64_t d3, int64_t stride) {
  std::vector<int64_t> out(start.size(0) * d3);
  for (int64_t c = 0; c < (int64_t)out.size(); ++c) out[c] = start.data_ptr<int64_t>()[c / d3] + (c % d3) * stride;
  return out;
}

// writes this group's columns of out [atoms, M]
void uvu_fwd(torch::Tensor x, torch::Tensor B, torch::Tensor w, torch::Tensor wcol, torch::Tensor ocol,
             torch::Tensor src, torch::Tensor by_dst, torch::Tensor rowptr, torch::Tensor out, int64_t d3,
             int64_t ostride) {
  TORCH_CHECK(x.is_contiguous() && B.is_contiguous() && w.is_contiguous() && out.is_contiguous());
  const int64_t N = x.size(0), D1 = x.size(1), U = x.size(2), Q = wcol.size(0), W = w.size(1), M = out.size(1);
  const auto wc = columns(wcol, d3, 0), oc = columns(ocol, d3, ostride);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "uvu_fwd", [&] {
    DISPATCH_U(U, fwd_impl<scalar_t, UU>(x.data_ptr<scalar_t>(), B.data_ptr<scalar_t>(), w.data_ptr<scalar_t>(),
                                        wc.data(), oc.data(), src.data_ptr<int64_t>(),
                                        by_dst.data_ptr<int64_t>(), rowptr.data_ptr<int64_t>(),
                                        out.data_ptr<scalar_t>(), N, D1, Q, d3, W, M, U));
  });
}

// adds grad x to gxt [threads, atoms, d1, U] (a buffer per thread, summed by the caller once per input
// block); writes this group's columns of gw [edges, W]
void uvu_bwd(torch::Tensor G, torch::Tensor x, torch::Tensor B, torch::Tensor w, torch::Tensor wcol, torch::Tensor ocol,
             torch::Tensor src, torch::Tensor by_dst, torch::Tensor rowptr, torch::Tensor gw, torch::Tensor gxt,
             int64_t d3, int64_t ostride) {
  TORCH_CHECK(G.is_contiguous() && x.is_contiguous() && B.is_contiguous() && w.is_contiguous() && gw.is_contiguous()
              && gxt.is_contiguous() && gxt.size(0) >= at::get_num_threads());
  const int64_t N = x.size(0), D1 = x.size(1), U = x.size(2), Q = wcol.size(0), W = w.size(1), M = G.size(1);
  const auto oc = columns(ocol, d3, ostride);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "uvu_bwd", [&] {
    DISPATCH_U(U, bwd_impl<scalar_t, UU>(G.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), B.data_ptr<scalar_t>(),
                                        w.data_ptr<scalar_t>(), oc.data(), wcol.data_ptr<int64_t>(),
                                        src.data_ptr<int64_t>(), by_dst.data_ptr<int64_t>(),
                                        rowptr.data_ptr<int64_t>(), gxt.data_ptr<scalar_t>(),
                                        gw.data_ptr<scalar_t>(), N, D1, Q, d3, W, M, U));
  });
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("uvu_fwd", &uvu_fwd);
  m.def("uvu_bwd", &uvu_bwd);
}
