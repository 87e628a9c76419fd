/* The tanh layers of the fused jet pass (pdesolve/nn/fused_mlp.py) as native loops, for float32 jets of order <= 2.
 *
 * Rows of a jet [R, N, C] (row-major, one block of N * C floats per row): 0 the value, 1 .. d the gradient along
 * every coordinate, then (order 2) k rows of second derivatives along the coordinates hs .. hs + k - 1.
 * Built at first use by pdesolve/nn/native_jets.py (cc -O3 -ffast-math and the CPU's vector flags: the loops over
 * C vectorize, expf through the C library's vector math). Each layer is one pass over its rows instead of a dozen
 * torch kernels. */
#include <math.h>

#define MAX_WIDTH 1024

/* tanh's jet: y rows from the pre-activation rows z (z's value row gets the bias b added in place). */
void jet_tanh_forward(int d, int hs, int k, int order, long n, int c, float *restrict z, const float *restrict b,
                      float *restrict y)
{
    const long m = n * c;
    float s[MAX_WIDTH], f2[MAX_WIDTH];
    for (long i = 0; i < n; i++) {
        float *z0 = z + i * c, *y0 = y + i * c;
        for (int j = 0; j < c; j++) {
            const float u = z0[j] + b[j];
            z0[j] = u;
            const float t = 1.0f - 2.0f / (expf(2.0f * u) + 1.0f);
            y0[j] = t;
            s[j] = 1.0f - t * t;      /* tanh' */
            f2[j] = -2.0f * t * s[j]; /* tanh'' */
        }
        for (int r = 1; r <= d; r++) {
            const float *zr = z0 + r * m;
            float *yr = y0 + r * m;
            for (int j = 0; j < c; j++)
                yr[j] = zr[j] * s[j];
        }
        if (order < 2)
            continue;
        for (int q = 0; q < k; q++) { /* f1 x2 + f2 x1^2 */
            const float *x1 = z0 + (1 + hs + q) * m, *x2 = z0 + (1 + d + q) * m;
            float *yq = y0 + (1 + d + q) * m;
            for (int j = 0; j < c; j++)
                yq[j] = x2[j] * s[j] + f2[j] * x1[j] * x1[j];
        }
    }
}

/* The gradient gz of the pre-activation rows z from the gradient g of the output rows and the value row t = tanh. */
void jet_tanh_backward(int d, int hs, int k, int order, long n, int c, const float *restrict z, const float *restrict t,
                       const float *restrict g, float *restrict gz)
{
    const long m = n * c;
    float s[MAX_WIDTH], f2[MAX_WIDTH], f3[MAX_WIDTH], value[MAX_WIDTH];
    for (long i = 0; i < n; i++) {
        const float *z0 = z + i * c, *t0 = t + i * c, *g0 = g + i * c;
        float *o0 = gz + i * c;
        for (int j = 0; j < c; j++) {
            const float tj = t0[j], sj = 1.0f - tj * tj;
            s[j] = sj;
            f2[j] = -2.0f * tj * sj;
            f3[j] = sj * (4.0f - 6.0f * sj); /* tanh''' */
            value[j] = g0[j] * sj;
        }
        for (int r = 1; r <= d; r++) { /* row r = f1 x_r: d/du = f2 x_r, d/dx_r = f1 */
            const float *zr = z0 + r * m, *gr = g0 + r * m;
            float *orow = o0 + r * m;
            for (int j = 0; j < c; j++) {
                value[j] += gr[j] * zr[j] * f2[j];
                orow[j] = gr[j] * s[j];
            }
        }
        if (order >= 2) {
            for (int q = 0; q < k; q++) { /* row = f1 x2 + f2 x1^2: d/du = f2 x2 + f3 x1^2, d/dx1 = 2 f2 x1, d/dx2 = f1 */
                const float *x1 = z0 + (1 + hs + q) * m, *x2 = z0 + (1 + d + q) * m, *gq = g0 + (1 + d + q) * m;
                float *o1 = o0 + (1 + hs + q) * m, *oq = o0 + (1 + d + q) * m;
                for (int j = 0; j < c; j++) {
                    value[j] += gq[j] * (x2[j] * f2[j] + f3[j] * x1[j] * x1[j]);
                    o1[j] += 2.0f * f2[j] * x1[j] * gq[j];
                    oq[j] = gq[j] * s[j];
                }
            }
        }
        for (int j = 0; j < c; j++)
            o0[j] = value[j];
    }
}
