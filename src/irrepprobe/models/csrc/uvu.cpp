// Fused uvu convolution and aggregation for one group of paths (one input block, one output irrep),
// reading the per-edge weights and writing the aggregated messages in e3nn's own layouts:
//   out[n, ocol[q] + u*d3 + k] = sum_{e: dst_e = n} w[e, wcol[q] + u] * sum_i B[e, i, q*d3 + k] * x[src_e, i, u]
// x [atoms, d1, U] (channels innermost), B [edges, d1, Q*d3], w [edges, W], out [atoms, M].
// The channel loop is the vector dimension. The forward walks each destination's edges (by_dst, rowptr),
// the backward each source's (by_src, rowptr_src), so every row written has one writer: no atomics.
// B gets no gradient (the caller takes the PyTorch path when it needs one).
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <vector>

template <typename T, int UC>
static void fwd_impl(const T* __restrict x, const T* __restrict B, const T* __restrict w, const int64_t* wcol,
                     const int64_t* ocol, const int64_t* src, const int64_t* by_dst, const int64_t* rowptr,
                     T* __restrict out, int64_t N, int64_t D1, int64_t Q, int64_t d3, int64_t W, int64_t M,
                     int64_t Ud) {
  const int64_t U = UC > 0 ? UC : Ud;
  const int64_t C = Q * d3;
  at::parallel_for(0, N, 4, [&](int64_t n0, int64_t n1) {
    std::vector<T> buf((C + 1) * U);
    T* __restrict acc = buf.data();
    T* __restrict t = acc + C * U;
    for (int64_t n = n0; n < n1; ++n) {
      for (int64_t j = 0; j < C * U; ++j) acc[j] = 0;
      for (int64_t p = rowptr[n]; p < rowptr[n + 1]; ++p) {
        const int64_t e = by_dst[p];
        const T* xs = x + src[e] * D1 * U;
        const T* Be = B + e * D1 * C;
        for (int64_t q = 0; q < Q; ++q) {
          const T* wq = w + e * W + wcol[q];
          for (int64_t k = 0; k < d3; ++k) {
            const int64_t c = q * d3 + k;
#pragma omp simd
            for (int64_t u = 0; u < U; ++u) t[u] = 0;
            for (int64_t i = 0; i < D1; ++i) {
              const T b = Be[i * C + c];
              const T* xi = xs + i * U;
#pragma omp simd
              for (int64_t u = 0; u < U; ++u) t[u] += b * xi[u];
            }
            T* a = acc + c * U;
#pragma omp simd
            for (int64_t u = 0; u < U; ++u) a[u] += wq[u] * t[u];
          }
        }
      }
      T* row = out + n * M;
      for (int64_t q = 0; q < Q; ++q)
        for (int64_t k = 0; k < d3; ++k)
          for (int64_t u = 0; u < U; ++u) row[ocol[q] + u * d3 + k] = acc[(q * d3 + k) * U + u];
    }
  });
}

// G [atoms, Q*d3, U]: the output gradient of this group gathered channels-innermost by the caller
template <typename T, int UC>
static void bwd_impl(const T* __restrict G, const T* __restrict x, const T* __restrict B, const T* __restrict w,
                     const int64_t* wcol, const int64_t* dst, const int64_t* by_src, const int64_t* rowptr_src,
                     T* __restrict gx, T* __restrict gw, int64_t N, int64_t D1, int64_t Q, int64_t d3, int64_t W,
                     int64_t Ud) {
  const int64_t U = UC > 0 ? UC : Ud;
  const int64_t C = Q * d3;
  at::parallel_for(0, N, 4, [&](int64_t s0, int64_t s1) {
    std::vector<T> buf(3 * U);
    T* __restrict m0 = buf.data();
    T* __restrict gc = m0 + U;
    T* __restrict gwacc = gc + U;
    for (int64_t s = s0; s < s1; ++s) {
      const T* xs = x + s * D1 * U;
      T* gxs = gx + s * D1 * U;
      for (int64_t j = 0; j < D1 * U; ++j) gxs[j] = 0;
      for (int64_t p = rowptr_src[s]; p < rowptr_src[s + 1]; ++p) {
        const int64_t e = by_src[p];
        const T* Gn = G + dst[e] * C * U;
        const T* Be = B + e * D1 * C;
        for (int64_t q = 0; q < Q; ++q) {
          const T* wq = w + e * W + wcol[q];
#pragma omp simd
          for (int64_t u = 0; u < U; ++u) gwacc[u] = 0;
          for (int64_t k = 0; k < d3; ++k) {
            const int64_t c = q * d3 + k;
            const T* g = Gn + c * U;
#pragma omp simd
            for (int64_t u = 0; u < U; ++u) { m0[u] = 0; gc[u] = g[u] * wq[u]; }
            for (int64_t i = 0; i < D1; ++i) {
              const T b = Be[i * C + c];
              const T* xi = xs + i * U;
              T* gxi = gxs + i * U;
#pragma omp simd
              for (int64_t u = 0; u < U; ++u) { m0[u] += b * xi[u]; gxi[u] += b * gc[u]; }
            }
#pragma omp simd
            for (int64_t u = 0; u < U; ++u) gwacc[u] += g[u] * m0[u];
          }
          T* gwq = gw + e * W + wcol[q];
#pragma omp simd
          for (int64_t u = 0; u < U; ++u) gwq[u] = gwacc[u];
        }
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
    case 64: { constexpr int UU = 64; __VA_ARGS__; break; }   \
    default: { constexpr int UU = 0; __VA_ARGS__; break; }    \
  }

// writes this group's columns of out [atoms, M]
void uvu_fwd(torch::Tensor x, torch::Tensor B, torch::Tensor w, torch::Tensor wcol, torch::Tensor ocol,
             torch::Tensor src, torch::Tensor by_dst, torch::Tensor rowptr, torch::Tensor out, int64_t d3) {
  TORCH_CHECK(x.is_contiguous() && B.is_contiguous() && w.is_contiguous() && out.is_contiguous());
  const int64_t N = x.size(0), D1 = x.size(1), U = x.size(2), Q = wcol.size(0), W = w.size(1), M = out.size(1);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "uvu_fwd", [&] {
    DISPATCH_U(U, fwd_impl<scalar_t, UU>(x.data_ptr<scalar_t>(), B.data_ptr<scalar_t>(), w.data_ptr<scalar_t>(),
                                        wcol.data_ptr<int64_t>(), ocol.data_ptr<int64_t>(), src.data_ptr<int64_t>(),
                                        by_dst.data_ptr<int64_t>(), rowptr.data_ptr<int64_t>(),
                                        out.data_ptr<scalar_t>(), N, D1, Q, d3, W, M, U));
  });
}

// returns grad x [atoms, d1, U]; writes this group's columns of gw [edges, W]
torch::Tensor uvu_bwd(torch::Tensor G, torch::Tensor x, torch::Tensor B, torch::Tensor w, torch::Tensor wcol,
                      torch::Tensor dst, torch::Tensor by_src, torch::Tensor rowptr_src, torch::Tensor gw, int64_t d3) {
  TORCH_CHECK(G.is_contiguous() && x.is_contiguous() && B.is_contiguous() && w.is_contiguous() && gw.is_contiguous());
  const int64_t N = x.size(0), D1 = x.size(1), U = x.size(2), Q = wcol.size(0), W = w.size(1);
  auto gx = torch::empty_like(x);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "uvu_bwd", [&] {
    DISPATCH_U(U, bwd_impl<scalar_t, UU>(G.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), B.data_ptr<scalar_t>(),
                                        w.data_ptr<scalar_t>(), wcol.data_ptr<int64_t>(), dst.data_ptr<int64_t>(),
                                        by_src.data_ptr<int64_t>(), rowptr_src.data_ptr<int64_t>(),
                                        gx.data_ptr<scalar_t>(), gw.data_ptr<scalar_t>(), N, D1, Q, d3, W, U));
  });
  return gx;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("uvu_fwd", &uvu_fwd);
  m.def("uvu_bwd", &uvu_bwd);
}
