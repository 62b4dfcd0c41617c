/* Float -> K-quant converters (Q2_K .. Q6_K) and the scale searches every quantizer
 * shares.
 *
 * Each 256-element super-block is split into sub-blocks (16 or 32 elements). For every
 * sub-block a weighted least-squares search picks a float scale (and, for the types
 * with a min, an offset): candidate inverse scales around the max-based one are tried,
 * each rounding gives integer levels, the best scale (and min) for those levels is
 * solved in closed form, and the best candidate is refined by alternating re-rounding
 * and refitting. The sub-block scales are then themselves quantized (4, 6 or 8 bits)
 * against a half-precision super-block scale, and each sub-block's integer scale / min
 * is re-chosen among its neighbours by the error the stored values actually give.
 *
 * Error weights (no importance matrix): Q2_K/Q4_K/Q5_K use rms(sub-block) + |x|,
 * which spends the levels a little more on the large weights (llama.cpp's heuristic for
 * real models); Q3_K/Q6_K and the legacy types use plain squared error. */

/* The error sums below may be added in any order (they only rank candidates): let the
 * compiler vectorize them. */
#if defined(__clang__)
#pragma clang fp reassociate(on)
#elif defined(__GNUC__)
#pragma GCC optimize("associative-math", "no-signed-zeros", "no-trapping-math")
#endif

#include <float.h>
#include <math.h>
#include <string.h>

#include "quantize.h"

/* Search effort: candidate scales per sub-block (Q2_K, Q4_K, Q5_K) and least-squares refits
 * of the super-block scales. More buys little (< 0.5% RMSE) at twice the time. */
#define NSTEP4 10
#define NSTEP5 8
#define K_REFIT 1
#define NSTEP2 8
/* asymmetric searches: the block's range mapped onto nmax + [ALO, AHI] levels */
#define ALO -1.0f
#define AHI 1.0f
/* Q6_K / Q3_K sub-block searches: candidates map the max-abs element to
 * -(nmax + off), off in [LO, HI] (tuned on Gaussian weights: using fewer levels than
 * the max would need lets the opposite extreme fit too). */
#define NC6 7
#define LO6 -3.0f
#define HI6 0.0f
#define NC3 7
#define LO3 -1.0f
#define HI3 2.0f

/* ------------------------------------------------------------ the searches */

static inline float clampf(float v, float lo, float hi) {
    v = v < lo ? lo : v;
    return v > hi ? hi : v;
}

/* For levels l = round(clamp((x - o) * s, lo, hi)): sl = sum w l, sl2 = sum w l^2,
 * slx = sum w l x. */
static inline void level_sums(int n, const float *x, const float *w, float s, float o, float lo,
                              float hi, float *sl, float *sl2, float *slx) {
    float a = 0.0f, b = 0.0f, c = 0.0f;
    for (int i = 0; i < n; i++) {
        const float l = (float)quant_nearest_int(clampf((x[i] - o) * s, lo, hi));
        const float wl = w[i] * l;
        a += wl;
        b += wl * l;
        c += wl * x[i];
    }
    *sl = a;
    *sl2 = b;
    *slx = c;
}

float quant_search_sym(int n, int nmax, const float *x, const float *w, int8_t *q, int ncand,
                       float lo_off, float hi_off) {
    float ones[256];
    if (!w) {
        for (int i = 0; i < n; i++)
            ones[i] = 1.0f;
        w = ones;
    }
    float amax = 0.0f, vmax = 0.0f;
    for (int i = 0; i < n; i++) {
        const float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            vmax = x[i];
        }
    }
    if (!(amax > 1e-30f) || !(amax < FLT_MAX)) {
        memset(q, 0, (size_t)n);
        return 0.0f;
    }
    const float lo = (float)-nmax, hi = (float)(nmax - 1);
    /* Candidates: the max-abs element mapped to -(nmax + off) (it lands on the level
     * with more room; off > 0 clips it), off spread evenly over [lo_off, hi_off].
     * Metric: sxq^2 / sqq, the error reduction of the least-squares scale sxq / sqq. */
    float best = -1.0f, best_d = 0.0f;
    for (int k = 0; k < ncand; k++) {
        const float off =
            ncand > 1 ? lo_off + (hi_off - lo_off) * (float)k / (float)(ncand - 1) : lo_off;
        const float iscale = -((float)nmax + off) / vmax;
        float sl, sqq, sxq;
        level_sums(n, x, w, iscale, 0.0f, lo, hi, &sl, &sqq, &sxq);
        if (sqq > 0.0f && sxq * sxq > best * sqq) {
            best = sxq * sxq / sqq;
            best_d = sxq / sqq;
        }
    }
    if (best_d == 0.0f) {
        memset(q, 0, (size_t)n);
        return 0.0f;
    }
    /* Refine: levels for d, then the best d for those levels, while it improves. */
    float d = best_d;
    for (int it = 0; it < 4; it++) {
        float sl, sqq, sxq;
        level_sums(n, x, w, 1.0f / d, 0.0f, lo, hi, &sl, &sqq, &sxq);
        if (!(sqq > 0.0f) || !(sxq * sxq > best * sqq * 1.000001f)) break;
        best = sxq * sxq / sqq;
        d = sxq / sqq;
    }
    const float id = 1.0f / d;
    for (int i = 0; i < n; i++)
        q[i] = (int8_t)quant_nearest_int(clampf(id * x[i], lo, hi));
    return d;
}

/* Least-squares fit of xs ~ a * l + b (weights w) from the sums, with b capped at bmax
 * (a alone refitted then). Returns the weighted squared error, FLT_MAX when the fit is
 * degenerate or a <= 0; a, b out. Uses err = sum w xs^2 - a slx - b swx, which holds
 * at the least-squares solution. */
static inline float fit_ab(float sw, float swx, float swx2, float sl, float sl2, float slx,
                           float bmax, float *a, float *b) {
    const float det = sw * sl2 - sl * sl;
    if (!(det > 0.0f)) {
        /* every level equal (a constant block): any offset fits, take b = 0 */
        if (!(sl2 > 0.0f)) return FLT_MAX;
        *b = 0.0f;
        *a = slx / sl2;
        return *a > 0.0f ? swx2 - *a * slx : FLT_MAX;
    }
    const float an = sw * slx - sl * swx, bn = sl2 * swx - sl * slx;
    if (bn <= bmax * det) {
        const float id = 1.0f / det;
        *a = an * id;
        *b = bn * id;
        return *a > 0.0f ? swx2 - *a * slx - *b * swx : FLT_MAX;
    }
    const float r = slx - bmax * sl; /* sum w l (xs - bmax) */
    *b = bmax;
    *a = r / sl2;
    return *a > 0.0f ? swx2 - 2.0f * bmax * swx + bmax * bmax * sw - *a * r : FLT_MAX;
}

float quant_search_asym(int n, int nmax, const float *x, const float *w, uint8_t *lv, float *m,
                        bool m_nonpos, int nstep) {
    float ones[256], xs[256];
    if (!w) {
        for (int i = 0; i < n; i++)
            ones[i] = 1.0f;
        w = ones;
    }
    float mn = x[0], mx = x[0];
    for (int i = 1; i < n; i++) {
        mn = x[i] < mn ? x[i] : mn;
        mx = x[i] > mx ? x[i] : mx;
    }
    if (m_nonpos && mn > 0.0f) mn = 0.0f;
    if (!(mx - mn > 1e-30f) || !(mx - mn < FLT_MAX)) {
        memset(lv, 0, (size_t)n);
        *m = (mx == mn && isfinite(mn)) ? mn : 0.0f;
        if (m_nonpos && *m > 0.0f) *m = 0.0f;
        return 0.0f;
    }
    /* Work on xs = x - mn >= 0 (small magnitudes keep the closed-form errors exact
     * enough); the offset b of xs is capped so that m = b + mn stays <= 0. */
    const float bmax = m_nonpos ? -mn : FLT_MAX / 4.0f;
    float sw = 0.0f, swx = 0.0f, swx2 = 0.0f;
    for (int i = 0; i < n; i++) {
        const float v = x[i] - mn;
        xs[i] = v;
        sw += w[i];
        swx += w[i] * v;
        swx2 += w[i] * v * v;
    }
    const float hi = (float)nmax;
    float best = FLT_MAX, best_a = 0.0f, best_b = 0.0f;
    for (int k = 0; k <= nstep; k++) {
        const float iscale =
            ((float)nmax + ALO + (AHI - ALO) * (float)k / (float)(nstep ? nstep : 1)) /
            (mx - mn);
        float sl, sl2, slx, a = 0.0f, b = 0.0f;
        level_sums(n, xs, w, iscale, 0.0f, 0.0f, hi, &sl, &sl2, &slx);
        const float err = fit_ab(sw, swx, swx2, sl, sl2, slx, bmax, &a, &b);
        if (err < best) {
            best = err;
            best_a = a;
            best_b = b;
        }
    }
    if (!(best_a > 0.0f)) {
        memset(lv, 0, (size_t)n);
        const float mean = sw > 0.0f ? mn + swx / sw : mn;
        *m = m_nonpos && mean > 0.0f ? 0.0f : mean;
        return 0.0f;
    }
    /* Refine: levels for (a, b), then the best (a, b) for those levels, while it improves. */
    float a = best_a, b = best_b;
    for (int it = 0; it < 4; it++) {
        float sl, sl2, slx, a2 = 0.0f, b2 = 0.0f;
        level_sums(n, xs, w, 1.0f / a, b, 0.0f, hi, &sl, &sl2, &slx);
        const float err = fit_ab(sw, swx, swx2, sl, sl2, slx, bmax, &a2, &b2);
        if (!(err < best * (1.0f - 1e-6f))) break;
        best = err;
        a = a2;
        b = b2;
    }
    const float ia = 1.0f / a;
    for (int i = 0; i < n; i++)
        lv[i] = (uint8_t)quant_nearest_int(clampf((xs[i] - b) * ia, 0.0f, hi));
    *m = b + mn;
    if (m_nonpos && *m > 0.0f) *m = 0.0f;
    return a;
}

/* ------------------------------------------------------------- helpers */

static inline float h2f(chord_half h) {
    return chord_half_to_float(h);
}

/* The half nearest to v, moved one step away from zero when that rounded its magnitude
 * down: super-block scales never shrink, so the largest sub-block scale still fits in
 * its integer range (this matters for tiny, subnormal half scales). */
static chord_half half_not_below(float v) {
    chord_half h = chord_float_to_half(v);
    if (isfinite(v) && fabsf(h2f(h)) < fabsf(v) && (h & 0x7fff) < 0x7bff) h++;
    return h;
}

/* Levels and weighted error of x ~ dl * l - ml, l in [0, nmax]. */
static inline float requant_asym(int n, int nmax, const float *x, const float *w, float dl,
                                 float ml, uint8_t *lv) {
    float acc = 0.0f;
    const float id = dl != 0.0f ? 1.0f / dl : 0.0f;
    for (int i = 0; i < n; i++) {
        const int l = quant_nearest_int(clampf((x[i] + ml) * id, 0.0f, (float)nmax));
        lv[i] = (uint8_t)l;
        const float e = dl * (float)l - ml - x[i];
        acc += w[i] * e * e;
    }
    return acc;
}

/* Levels and weighted error of x ~ dl * q, q in [-nmax, nmax-1]. */
static inline float requant_sym(int n, int nmax, const float *x, const float *w, float dl,
                                int8_t *q) {
    float acc = 0.0f;
    const float id = dl != 0.0f ? 1.0f / dl : 0.0f;
    for (int i = 0; i < n; i++) {
        const int l = quant_nearest_int(clampf(x[i] * id, (float)-nmax, (float)(nmax - 1)));
        q[i] = (int8_t)l;
        const float e = dl * (float)l - x[i];
        acc += w[i] * e * e;
    }
    return acc;
}

/* Integer scales / mins of every sub-block for the super-scales d, dmin: each is
 * re-picked among the neighbours of round(scale / d) by the error it gives. Fills
 * sc, mn, lv; returns the block's weighted squared error. */
static float k_asym_pick(int nsub, int sub, int nmax, int qmax, const float *x, const float *w,
                         const float *scales, const float *mins, float d, float dmin,
                         uint8_t *sc, uint8_t *mn, uint8_t *lv) {
    uint8_t tmp[32];
    float total = 0.0f;
    for (int j = 0; j < nsub; j++) {
        const float *xj = x + sub * j, *wj = w + sub * j;
        int s0 = d > 0.0f ? quant_nearest_int(clampf(scales[j] / d, 0.0f, (float)qmax)) : 0;
        int m0 = dmin > 0.0f ? quant_nearest_int(clampf(mins[j] / dmin, 0.0f, (float)qmax)) : 0;
        /* (s0, m0), then s0 -+ 1, then the min's neighbours for the best scale */
        float best =
            requant_asym(sub, nmax, xj, wj, d * (float)s0, dmin * (float)m0, lv + sub * j);
        int bs = s0, bm = m0;
        for (int pass = 0; pass < 2; pass++) {
            const int cs = bs, cm = bm;
            for (int delta = -1; delta <= 1; delta += 2) {
                const int s = pass == 0 ? cs + delta : cs, mm = pass == 0 ? cm : cm + delta;
                if (s < 0 || s > qmax || mm < 0 || mm > qmax) continue;
                if ((pass == 0 && d == 0.0f) || (pass == 1 && dmin == 0.0f)) continue;
                const float e =
                    requant_asym(sub, nmax, xj, wj, d * (float)s, dmin * (float)mm, tmp);
                if (e < best) {
                    best = e;
                    bs = s;
                    bm = mm;
                    memcpy(lv + sub * j, tmp, (size_t)sub);
                }
            }
        }
        sc[j] = (uint8_t)bs;
        mn[j] = (uint8_t)bm;
        total += best;
    }
    return total;
}

/* For sub-blocks with a scale and a min (Q2_K, Q4_K, Q5_K): quantizes the sub-block
 * scales / mins to `bits` against half super-scales d / dmin (first max-based, then
 * refitted by least squares to the chosen integers, kept while the error drops).
 * Fills sc, mn, lv and the two halves. */
static void k_asym_block(int nsub, int sub, int nmax, int bits, const float *x, const float *w,
                         const float *scales, const float *mins, uint8_t *sc, uint8_t *mn,
                         uint8_t *lv, chord_half *d_out, chord_half *dmin_out) {
    const int qmax = (1 << bits) - 1;
    float max_scale = 0.0f, max_min = 0.0f;
    for (int j = 0; j < nsub; j++) {
        max_scale = scales[j] > max_scale ? scales[j] : max_scale;
        max_min = mins[j] > max_min ? mins[j] : max_min;
    }
    chord_half dh = half_not_below(max_scale / (float)qmax);
    chord_half mh = half_not_below(max_min / (float)qmax);
    float best =
        k_asym_pick(nsub, sub, nmax, qmax, x, w, scales, mins, h2f(dh), h2f(mh), sc, mn, lv);
    uint8_t sc2[16], mn2[16], lv2[QK_K];
    for (int it = 0; it < K_REFIT; it++) {
        /* x ~ d * (sc l) - dmin * mn: least squares in (d, dmin) */
        double A = 0, B = 0, C = 0, X1 = 0, X2 = 0;
        for (int j = 0; j < nsub; j++) {
            float a = 0, b = 0, c = 0, x1 = 0, x2 = 0;
            for (int i = sub * j; i < sub * j + sub; i++) {
                const float u = (float)lv[i], wu = w[i] * u;
                a += wu * u;
                b += wu;
                c += w[i];
                x1 += wu * x[i];
                x2 += w[i] * x[i];
            }
            const double s = sc[j], m = mn[j];
            A += s * s * a;
            B += s * m * b;
            C += m * m * c;
            X1 += s * x1;
            X2 += m * x2;
        }
        const double det = A * C - B * B;
        double d, dmin;
        if (det > 1e-30 * A * C && C > 0) {
            d = (X1 * C - B * X2) / det;
            dmin = (B * X1 - A * X2) / det;
        } else {
            d = A > 0 ? X1 / A : 0;
            dmin = 0;
        }
        if (!(d > 0) || dmin < 0) break;
        const chord_half dh2 = chord_float_to_half((float)d),
                         mh2 = chord_float_to_half((float)dmin);
        const float e = k_asym_pick(nsub, sub, nmax, qmax, x, w, scales, mins, h2f(dh2),
                                    h2f(mh2), sc2, mn2, lv2);
        if (!(e < best)) break;
        best = e;
        dh = dh2;
        mh = mh2;
        memcpy(sc, sc2, (size_t)nsub);
        memcpy(mn, mn2, (size_t)nsub);
        memcpy(lv, lv2, (size_t)(nsub * sub));
    }
    *d_out = dh;
    *dmin_out = mh;
}

static void weights_rms_abs(const float *x, float *w, int n) {
    float s2 = 0.0f;
    for (int i = 0; i < n; i++)
        s2 += x[i] * x[i];
    const float av = sqrtf(s2 / (float)n);
    for (int i = 0; i < n; i++)
        w[i] = av + fabsf(x[i]);
}

/* ------------------------------------------------------------------ Q2_K */

void quantize_row_q2_K(const float *x, void *y, int64_t n) {
    block_q2_K *b = y;
    const int64_t nb = n / QK_K;
    float w[QK_K], scales[16], mins[16];
    uint8_t lv[QK_K], sc[16], mn[16];
    for (int64_t i = 0; i < nb; i++, x += QK_K) {
        for (int j = 0; j < 16; j++) {
            weights_rms_abs(x + 16 * j, w + 16 * j, 16);
            float m;
            scales[j] =
                quant_search_asym(16, 3, x + 16 * j, w + 16 * j, lv + 16 * j, &m, true, NSTEP2);
            mins[j] = -m;
        }
        k_asym_block(16, 16, 3, 4, x, w, scales, mins, sc, mn, lv, &b[i].d, &b[i].dmin);
        for (int j = 0; j < 16; j++)
            b[i].scales[j] = (uint8_t)(sc[j] | mn[j] << 4);
        memset(b[i].qs, 0, sizeof b[i].qs);
        for (int h = 0; h < 2; h++)
            for (int g = 0; g < 4; g++)
                for (int l = 0; l < 32; l++)
                    b[i].qs[32 * h + l] |= (uint8_t)(lv[128 * h + 32 * g + l] << (2 * g));
    }
}

/* ------------------------------------------------------------------ Q3_K */

void quantize_row_q3_K(const float *x, void *y, int64_t n) {
    block_q3_K *b = y;
    const int64_t nb = n / QK_K;
    int8_t q[QK_K], tmp[16];
    float scales[16];
    float w[QK_K];
    for (int i = 0; i < QK_K; i++)
        w[i] = 1.0f;
    for (int64_t i = 0; i < nb; i++, x += QK_K) {
        float amax = 0.0f, smax = 0.0f;
        for (int j = 0; j < 16; j++) {
            scales[j] = quant_search_sym(16, 4, x + 16 * j, w, q + 16 * j, NC3, LO3, HI3);
            if (fabsf(scales[j]) > amax) {
                amax = fabsf(scales[j]);
                smax = scales[j];
            }
        }
        const chord_half dh = half_not_below(amax > 0.0f ? smax / -32.0f : 0.0f);
        const float d = h2f(dh);
        b[i].d = dh;
        int sc[16];
        for (int j = 0; j < 16; j++) {
            const float *xj = x + 16 * j;
            const int s0 =
                d != 0.0f ? quant_nearest_int(clampf(scales[j] / d, -32.0f, 31.0f)) : 0;
            float best = FLT_MAX;
            int bs = s0;
            for (int ds = -1; ds <= 1; ds++) {
                const int s = s0 + ds;
                if (s < -32 || s > 31 || (ds && d == 0.0f)) continue;
                const float e = requant_sym(16, 4, xj, w, d * (float)s, tmp);
                if (e < best) {
                    best = e;
                    bs = s;
                    memcpy(q + 16 * j, tmp, 16);
                }
            }
            sc[j] = bs;
        }
        memset(b[i].scales, 0, sizeof b[i].scales);
        for (int s = 0; s < 16; s++) {
            const int u = sc[s] + 32;
            b[i].scales[s % 8] |= (uint8_t)((u & 0x0F) << (4 * (s / 8)));
            b[i].scales[8 + s % 4] |= (uint8_t)((u >> 4) << (2 * (s / 4)));
        }
        memset(b[i].qs, 0, sizeof b[i].qs);
        memset(b[i].hmask, 0, sizeof b[i].hmask);
        for (int h = 0; h < 2; h++)
            for (int g = 0; g < 4; g++)
                for (int l = 0; l < 32; l++) {
                    const int u = q[128 * h + 32 * g + l] + 4; /* 0..7 */
                    b[i].qs[32 * h + l] |= (uint8_t)((u & 3) << (2 * g));
                    if (u & 4) b[i].hmask[l] |= (uint8_t)(1u << (4 * h + g));
                }
    }
}

/* ----------------------------------------------------------- Q4_K / Q5_K */

static void pack_k4_scales(uint8_t out[K_SCALE_SIZE], const uint8_t sc[8],
                           const uint8_t mn[8]) {
    memset(out, 0, K_SCALE_SIZE);
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            out[j] |= sc[j] & 63;
            out[j + 4] |= mn[j] & 63;
        } else {
            out[j + 4] = (uint8_t)((sc[j] & 0x0F) | (mn[j] & 0x0F) << 4);
            out[j - 4] |= (uint8_t)((sc[j] >> 4) << 6);
            out[j] |= (uint8_t)((mn[j] >> 4) << 6);
        }
    }
}

static void k45_block(const float *x, int nmax, int nstep, uint8_t *lv, uint8_t scales_out[12],
                      chord_half *d, chord_half *dmin) {
    float w[QK_K], scales[8], mins[8];
    uint8_t sc[8], mn[8];
    for (int j = 0; j < 8; j++) {
        weights_rms_abs(x + 32 * j, w + 32 * j, 32);
        float m;
        scales[j] =
            quant_search_asym(32, nmax, x + 32 * j, w + 32 * j, lv + 32 * j, &m, true, nstep);
        mins[j] = -m;
    }
    k_asym_block(8, 32, nmax, 6, x, w, scales, mins, sc, mn, lv, d, dmin);
    pack_k4_scales(scales_out, sc, mn);
}

void quantize_row_q4_K(const float *x, void *y, int64_t n) {
    block_q4_K *b = y;
    const int64_t nb = n / QK_K;
    uint8_t lv[QK_K];
    for (int64_t i = 0; i < nb; i++, x += QK_K) {
        k45_block(x, 15, NSTEP4, lv, b[i].scales, &b[i].d, &b[i].dmin);
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++)
                b[i].qs[32 * c + l] = (uint8_t)(lv[64 * c + l] | lv[64 * c + 32 + l] << 4);
    }
}

void quantize_row_q5_K(const float *x, void *y, int64_t n) {
    block_q5_K *b = y;
    const int64_t nb = n / QK_K;
    uint8_t lv[QK_K];
    for (int64_t i = 0; i < nb; i++, x += QK_K) {
        k45_block(x, 31, NSTEP5, lv, b[i].scales, &b[i].d, &b[i].dmin);
        memset(b[i].qh, 0, sizeof b[i].qh);
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) {
                const int lo = lv[64 * c + l], hi = lv[64 * c + 32 + l];
                b[i].qs[32 * c + l] = (uint8_t)((lo & 15) | (hi & 15) << 4);
                if (lo & 16) b[i].qh[l] |= (uint8_t)(1u << (2 * c));
                if (hi & 16) b[i].qh[l] |= (uint8_t)(1u << (2 * c + 1));
            }
    }
}

/* ------------------------------------------------------------------ Q6_K */

void quantize_row_q6_K(const float *x, void *y, int64_t n) {
    block_q6_K *b = y;
    const int64_t nb = n / QK_K;
    int8_t q[QK_K], tmp[16];
    float scales[16], ones[16];
    for (int i = 0; i < 16; i++)
        ones[i] = 1.0f;
    for (int64_t i = 0; i < nb; i++, x += QK_K) {
        float amax = 0.0f, smax = 0.0f;
        for (int j = 0; j < 16; j++) {
            scales[j] = quant_search_sym(16, 32, x + 16 * j, ones, q + 16 * j, NC6, LO6, HI6);
            if (fabsf(scales[j]) > amax) {
                amax = fabsf(scales[j]);
                smax = scales[j];
            }
        }
        const chord_half dh = half_not_below(amax > 0.0f ? smax / -128.0f : 0.0f);
        const float d = h2f(dh);
        b[i].d = dh;
        for (int j = 0; j < 16; j++) {
            const float *xj = x + 16 * j;
            const int s0 =
                d != 0.0f ? quant_nearest_int(clampf(scales[j] / d, -128.0f, 127.0f)) : 0;
            float best = FLT_MAX;
            int bs = s0;
            for (int ds = -1; ds <= 1; ds++) {
                const int s = s0 + ds;
                if (s < -128 || s > 127 || (ds && d == 0.0f)) continue;
                const float e = requant_sym(16, 32, xj, ones, d * (float)s, tmp);
                if (e < best) {
                    best = e;
                    bs = s;
                    memcpy(q + 16 * j, tmp, 16);
                }
            }
            b[i].scales[j] = (int8_t)bs;
        }
        for (int h = 0; h < 2; h++) {
            uint8_t *ql = b[i].ql + 64 * h, *qh = b[i].qh + 32 * h;
            const int8_t *qq = q + 128 * h;
            for (int l = 0; l < 32; l++) {
                const int u0 = qq[l] + 32, u1 = qq[l + 32] + 32;
                const int u2 = qq[l + 64] + 32, u3 = qq[l + 96] + 32;
                ql[l] = (uint8_t)((u0 & 15) | (u2 & 15) << 4);
                ql[l + 32] = (uint8_t)((u1 & 15) | (u3 & 15) << 4);
                qh[l] = (uint8_t)((u0 >> 4) | (u1 >> 4) << 2 | (u2 >> 4) << 4 | (u3 >> 4) << 6);
            }
        }
    }
}

/* ---------------------------------------------------------------- dispatch */

bool chord_quantize_supported(chord_type t) {
    switch (t) {
    case CHORD_TYPE_F32:
    case CHORD_TYPE_F16:
    case CHORD_TYPE_BF16:
    case CHORD_TYPE_Q4_0:
    case CHORD_TYPE_Q4_1:
    case CHORD_TYPE_Q5_0:
    case CHORD_TYPE_Q5_1:
    case CHORD_TYPE_Q8_0:
    case CHORD_TYPE_Q2_K:
    case CHORD_TYPE_Q3_K:
    case CHORD_TYPE_Q4_K:
    case CHORD_TYPE_Q5_K:
    case CHORD_TYPE_Q6_K: return true;
    default: return false;
    }
}

bool chord_quantize_row(chord_type t, const float *x, void *y, int64_t n) {
    const chord_type_traits *tr = chord_type_get((uint32_t)t);
    if (!tr || !chord_quantize_supported(t) || n < 0 || n % tr->block_size) return false;
    switch (t) {
    case CHORD_TYPE_F32: quant_row_f32_ref(x, y, n); break;
    case CHORD_TYPE_F16: quant_row_f16_ref(x, y, n); break;
    case CHORD_TYPE_BF16: quant_row_bf16_ref(x, y, n); break;
    case CHORD_TYPE_Q4_0: quantize_row_q4_0(x, y, n); break;
    case CHORD_TYPE_Q4_1: quantize_row_q4_1(x, y, n); break;
    case CHORD_TYPE_Q5_0: quantize_row_q5_0(x, y, n); break;
    case CHORD_TYPE_Q5_1: quantize_row_q5_1(x, y, n); break;
    case CHORD_TYPE_Q8_0: quantize_row_q8_0(x, y, n); break;
    case CHORD_TYPE_Q2_K: quantize_row_q2_K(x, y, n); break;
    case CHORD_TYPE_Q3_K: quantize_row_q3_K(x, y, n); break;
    case CHORD_TYPE_Q4_K: quantize_row_q4_K(x, y, n); break;
    case CHORD_TYPE_Q5_K: quantize_row_q5_K(x, y, n); break;
    case CHORD_TYPE_Q6_K: quantize_row_q6_K(x, y, n); break;
    default: return false;
    }
    return true;
}
