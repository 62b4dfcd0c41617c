/* Token sampling: repetition penalty -> top-k -> top-p -> min-p -> temperature -> draw.
 *
 * The order is llama.cpp's default chain. Filters work on (logit, id) candidates held in
 * per-sampler buffers, so after the first call (or a call with a larger vocabulary) nothing
 * is allocated.
 *
 * Non-finite logits
 * - NaN and -inf are impossible: never picked.
 * - +inf is treated as the largest finite float (FLT_MAX): such tokens take all of the
 *   probability mass, shared equally when there are several.
 * - If no logit is usable (all NaN / -inf), sampling returns token 0, which is always a
 *   valid id because n_vocab >= 1. n_vocab <= 0 or logits == NULL returns -1 (a caller bug).
 * - If the buffers cannot be allocated, sampling falls back to greedy argmax.
 *
 * Cost per call: O(n_vocab) for the penalty, top-k (radix selection on the float bits, no
 * sort of the vocabulary; two passes over the vocabulary in all), min-p and the draw;
 * only the kept candidates are sorted. With
 * top-k off and top-p on, the nucleus is found by selecting growing top sets (256, 2048, ...),
 * so a full sort happens only when the nucleus is most of the vocabulary.
 *
 * Randomness: xoshiro256** seeded through splitmix64 from the seed; identical on every
 * platform. chord_sampler_reset forgets the accepted tokens and restarts the generator
 * from the seed, so a reset sampler repeats its sequence.
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error.h"
#include "sample.h"

typedef struct cand {
    float logit;
    int32_t id;
} cand;

struct chord_sampler {
    chord_sampler_params p;
    uint64_t seed;
    uint64_t rng[4];
    /* ring buffer of the last repeat_last_n accepted tokens */
    int32_t *hist;
    int hist_cap, hist_n, hist_pos;
    /* per-call buffers, grown to the largest n_vocab seen */
    cand *cand, *cand2; /* candidates, and those of one radix bucket */
    uint8_t *flag;
    uint32_t *keys, *keys2; /* radix keys of the candidates, and of one bucket */
    double *w;              /* softmax weights */
    size_t cap;
    uint32_t bins[2048];
};

/* ---------------------------------------------------------------- PRNG */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}

static uint64_t xoshiro_next(uint64_t s[4]) {
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

static void rng_seed(chord_sampler *s) {
    uint64_t x = s->seed;
    for (int i = 0; i < 4; i++)
        s->rng[i] = splitmix64(&x);
}

/* Uniform in [0, 1). */
static double rng_uniform(chord_sampler *s) {
    return (double)(xoshiro_next(s->rng) >> 11) * (1.0 / 9007199254740992.0);
}

static uint64_t random_seed(void) {
    uint64_t x = 0;
    FILE *f = fopen("/dev/urandom", "rb");
    if (f) {
        if (fread(&x, sizeof x, 1, f) != 1) x = 0;
        fclose(f);
    }
    struct timespec ts;
    timespec_get(&ts, TIME_UTC);
    uint64_t t = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
    x ^= splitmix64(&t);
    uintptr_t addr = (uintptr_t)&x; /* a little per-process entropy (ASLR) */
    x ^= (uint64_t)addr;
    if (x == CHORD_SEED_RANDOM) x = 0x5EED;
    return x;
}

/* ------------------------------------------------------------- public API */

chord_sampler_params chord_sampler_default_params(void) {
    chord_sampler_params p = {
        .temperature = 0.8f,
        .top_k = 40,
        .top_p = 0.95f,
        .min_p = 0.05f,
        .repeat_penalty = 1.0f,
        .repeat_last_n = 64,
        .seed = CHORD_SEED_RANDOM,
    };
    return p;
}

chord_status chord_sampler_new(const chord_sampler_params *params, chord_sampler **out,
                               chord_error *err) {
    if (!out) return chord_fail(err, CHORD_E_INVALID_ARG, "chord_sampler_new: out is NULL");
    *out = NULL;
    chord_sampler_params p = params ? *params : chord_sampler_default_params();
    if (isnan(p.temperature) || isnan(p.top_p) || isnan(p.min_p))
        return chord_fail(err, CHORD_E_INVALID_ARG, "sampler: temperature/top_p/min_p is NaN");
    if (!(p.repeat_penalty > 0.0f) || isinf(p.repeat_penalty))
        return chord_fail(err, CHORD_E_INVALID_ARG,
                          "sampler: repeat_penalty must be a positive finite number (1 = off), "
                          "got %g",
                          (double)p.repeat_penalty);
    if (p.repeat_last_n < 0 || p.repeat_last_n > (1 << 20))
        return chord_fail(err, CHORD_E_INVALID_ARG,
                          "sampler: repeat_last_n must be in 0..1048576, got %d",
                          p.repeat_last_n);
    chord_sampler *s = calloc(1, sizeof *s);
    if (!s) return chord_fail(err, CHORD_E_NOMEM, "out of memory");
    s->p = p;
    if (p.repeat_last_n > 0) {
        s->hist = malloc((size_t)p.repeat_last_n * sizeof *s->hist);
        if (!s->hist) {
            free(s);
            return chord_fail(err, CHORD_E_NOMEM, "out of memory");
        }
        s->hist_cap = p.repeat_last_n;
    }
    s->seed = p.seed == CHORD_SEED_RANDOM ? random_seed() : p.seed;
    rng_seed(s);
    *out = s;
    return CHORD_OK;
}

void chord_sampler_free(chord_sampler *s) {
    if (!s) return;
    free(s->hist);
    free(s->cand);
    free(s->cand2);
    free(s->flag);
    free(s->keys);
    free(s->keys2);
    free(s->w);
    free(s);
}

uint64_t chord_sampler_seed(const chord_sampler *s) {
    return s ? s->seed : 0;
}

void chord_sampler_accept(chord_sampler *s, int32_t token) {
    if (!s || s->hist_cap == 0) return;
    s->hist[s->hist_pos] = token;
    s->hist_pos = (s->hist_pos + 1) % s->hist_cap;
    if (s->hist_n < s->hist_cap) s->hist_n++;
}

void chord_sampler_reset(chord_sampler *s) {
    if (!s) return;
    s->hist_n = 0;
    s->hist_pos = 0;
    rng_seed(s);
}

/* --------------------------------------------------------------- helpers */

/* Maps a finite or +inf logit to the value used for sampling. */
static inline float clamp_logit(float l) {
    return l > FLT_MAX ? FLT_MAX : l;
}

static inline bool usable(float l) {
    return !isnan(l) && l > -INFINITY;
}

static float penalize(float l, float penalty) {
    l = l > 0.0f ? l / penalty : l * penalty;
    return l < -FLT_MAX ? -FLT_MAX : l > FLT_MAX ? FLT_MAX : l;
}

static bool ensure_buffers(chord_sampler *s, size_t n) {
    if (n <= s->cap) return true;
    cand *c = realloc(s->cand, n * sizeof *c);
    if (!c) return false;
    s->cand = c;
    c = realloc(s->cand2, n * sizeof *c);
    if (!c) return false;
    s->cand2 = c;
    uint8_t *f = realloc(s->flag, n);
    if (!f) return false;
    memset(f, 0, n);
    s->flag = f;
    uint32_t *k1 = realloc(s->keys, n * sizeof *k1);
    if (!k1) return false;
    s->keys = k1;
    uint32_t *k2 = realloc(s->keys2, n * sizeof *k2);
    if (!k2) return false;
    s->keys2 = k2;
    double *w = realloc(s->w, n * sizeof *w);
    if (!w) return false;
    s->w = w;
    s->cap = n;
    return true;
}

/* Marks the distinct recent tokens in s->flag (cleared again by unmark_history). */
static bool mark_history(chord_sampler *s, int n_vocab) {
    if (s->p.repeat_penalty == 1.0f || s->hist_n == 0) return false;
    for (int i = 0; i < s->hist_n; i++) {
        int32_t t = s->hist[i];
        if (t >= 0 && t < n_vocab) s->flag[t] = 1;
    }
    return true;
}

static void unmark_history(chord_sampler *s, int n_vocab) {
    for (int i = 0; i < s->hist_n; i++) {
        int32_t t = s->hist[i];
        if (t >= 0 && t < n_vocab) s->flag[t] = 0;
    }
}

/* Order: larger logit first, then smaller id (a strict total order). */
static int cand_cmp(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->logit != y->logit) return x->logit > y->logit ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

/* Monotonic map of a (non-NaN) float onto uint32; -0 and +0 map alike (they compare
 * equal, and the GPU's selection keys them alike too). */
static inline uint32_t float_key(float f) {
    if (f == 0.0f) f = 0.0f;
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    uint32_t neg = 0u - (u >> 31); /* all ones for negative floats: branch-free */
    return u ^ (neg | 0x80000000u);
}

/* Bucket of the 11-bit histogram h[2048] that holds the `left`-th largest key; *left
 * becomes the rank within that bucket. */
static uint32_t find_bucket(const uint32_t *h, uint32_t top, size_t *left) {
    size_t acc = 0;
    uint32_t b = top;
    while (b > 0 && acc + h[b] < *left)
        acc += h[b--];
    *left -= acc;
    return b;
}

/* Refines a threshold known to its top 11 bits (prefix) over the keys sub[0..m) of that
 * bucket: 11 + 10 more bits. */
static void refine(uint32_t *h, const uint32_t *sub, size_t m, uint32_t prefix, size_t left,
                   uint32_t *thr, size_t *need) {
    static const int shift[2] = {10, 0};
    static const uint32_t width[2] = {0x7FF, 0x3FF};
    uint32_t mask = 0xFFE00000u;
    for (int pass = 0; pass < 2; pass++) {
        memset(h, 0, (width[pass] + 1) * sizeof *h);
        for (size_t i = 0; i < m; i++)
            if ((sub[i] & mask) == prefix) h[(sub[i] >> shift[pass]) & width[pass]]++;
        uint32_t b = find_bucket(h, width[pass], &left);
        prefix |= b << shift[pass];
        mask |= width[pass] << shift[pass];
    }
    *thr = prefix;
    *need = left;
}

/* Threshold of the k largest candidates (ties: smaller id first), read-only, O(n):
 * a radix selection over the float bits, 11 bits on the whole array, then 11 + 10 bits on
 * the candidates in the bucket that holds the k-th. On return every candidate with
 * key > *thr is in the top set, plus the first *need (in id order) with key == *thr.
 * Fills s->keys[0..n). Requires 0 < k <= n. */
static void top_k_threshold(chord_sampler *s, const cand *c, size_t n, size_t k, uint32_t *thr,
                            size_t *need) {
    uint32_t *h = s->bins, *keys = s->keys, *sub = s->keys2;
    memset(h, 0, 2048 * sizeof *h);
    for (size_t i = 0; i < n; i++) {
        uint32_t key = float_key(c[i].logit);
        keys[i] = key;
        h[key >> 21]++;
    }
    size_t left = k;
    uint32_t b = find_bucket(h, 2047, &left);
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if ((keys[i] >> 21) == b) sub[m++] = keys[i];
    refine(h, sub, m, b << 21, left, thr, need);
}

/* Top-k when candidate building already filled s->keys and the 11-bit histogram s->bins:
 * one pass moves the candidates of higher buckets to the front and gathers those of the
 * threshold bucket, which is then refined and appended. Ties at the threshold go to the
 * smaller ids. Returns k. */
static size_t top_k_fused(chord_sampler *s, cand *c, size_t n, size_t k) {
    size_t left = k;
    uint32_t b1 = find_bucket(s->bins, 2047, &left);
    cand *subc = s->cand2;
    uint32_t *subk = s->keys2;
    const uint32_t *keys = s->keys;
    size_t w = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t key = keys[i], b = key >> 21;
        if (b > b1) {
            c[w++] = c[i];
        } else if (b == b1) {
            subc[m] = c[i];
            subk[m++] = key;
        }
    }
    uint32_t thr;
    size_t need;
    refine(s->bins, subk, m, b1 << 21, left, &thr, &need);
    for (size_t j = 0; j < m && w < k; j++)
        if (subk[j] > thr || (subk[j] == thr && need > 0)) {
            if (subk[j] == thr) need--;
            c[w++] = subc[j];
        }
    return w;
}

/* Moves the top set described by (thr, need) to c[0..k), keeping id order. */
static size_t compact_top(chord_sampler *s, cand *c, size_t n, uint32_t thr, size_t need) {
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t key = s->keys[i];
        if (key > thr || (key == thr && need > 0)) {
            if (key == thr) need--;
            c[w++] = c[i];
        }
    }
    return w;
}

/* Keeps the smallest prefix of the sorted c[0..n) whose probability reaches top_p. */
static size_t cut_top_p(const cand *c, size_t n, float top_p, double max, double total) {
    double acc = 0.0, target = (double)top_p * total;
    for (size_t i = 0; i < n; i++) {
        acc += exp((double)c[i].logit - max);
        if (acc >= target) return i + 1;
    }
    return n;
}

static int32_t greedy(chord_sampler *s, const float *logits, int n_vocab, bool pen) {
    if (!pen) { /* NaN and -inf never compare greater; the first of equal maxima wins */
        int32_t best = 0;
        float best_l = -INFINITY;
        for (int i = 0; i < n_vocab; i++)
            if (clamp_logit(logits[i]) > best_l) {
                best_l = clamp_logit(logits[i]);
                best = i;
            }
        return best;
    }
    int32_t best = 0;
    float best_l = 0.0f;
    bool found = false;
    for (int i = 0; i < n_vocab; i++) {
        float l = logits[i];
        if (!usable(l)) continue;
        l = clamp_logit(l);
        if (pen && s->flag[i]) l = penalize(l, s->p.repeat_penalty);
        if (!found || l > best_l) {
            best = i;
            best_l = l;
            found = true;
        }
    }
    return best;
}

/* Nucleus of the whole candidate set (top-k off): total mass, then the mass of growing top
 * sets (256, 2048, ...) until one reaches top_p; only that set is sorted. */
static size_t top_p_all(chord_sampler *s, cand *c, size_t n, float top_p, double max) {
    double *w = s->w, total = 0.0;
    for (size_t i = 0; i < n; i++)
        total += w[i] = exp((double)c[i].logit - max);
    for (size_t k = 256;; k *= 8) {
        if (k >= n) {
            qsort(c, n, sizeof *c, cand_cmp);
            return cut_top_p(c, n, top_p, max, total);
        }
        uint32_t thr;
        size_t need;
        top_k_threshold(s, c, n, k, &thr, &need);
        double mass = 0.0;
        size_t ties = need;
        for (size_t i = 0; i < n; i++)
            if (s->keys[i] > thr || (s->keys[i] == thr && ties > 0)) {
                if (s->keys[i] == thr) ties--;
                mass += w[i];
            }
        if (mass >= (double)top_p * total) {
            compact_top(s, c, n, thr, need);
            qsort(c, k, sizeof *c, cand_cmp);
            return cut_top_p(c, k, top_p, max, total);
        }
    }
}

/* The chain after the candidates c[0..n) (usable, clamped, penalized, in id order) are
 * built: top-k, top-p, min-p, temperature, draw. With top-k, s->keys / s->bins must hold
 * the candidates' radix keys and their histogram (fill_keys). */
static int32_t sample_chain(chord_sampler *s, cand *c, size_t n, int n_vocab) {
    if (n == 0) return 0;
    if (n == 1) return c[0].id;
    const bool top_k = s->p.top_k > 0 && s->p.top_k < n_vocab;
    if (top_k && (size_t)s->p.top_k < n) n = top_k_fused(s, c, n, (size_t)s->p.top_k);
    float maxf = c[0].logit; /* after top-k: the max is among the survivors */
    for (size_t i = 1; i < n; i++)
        maxf = c[i].logit > maxf ? c[i].logit : maxf;
    double max = maxf;
    if (s->p.top_p < 1.0f) {
        if (n <= 1024) { /* after top-k, or a small vocabulary: sort it all */
            qsort(c, n, sizeof *c, cand_cmp);
            double total = 0.0;
            for (size_t i = 0; i < n; i++)
                total += exp((double)c[i].logit - max);
            n = cut_top_p(c, n, s->p.top_p, max, total);
        } else {
            n = top_p_all(s, c, n, s->p.top_p, max);
        }
    }
    if (s->p.min_p > 0.0f && n > 1) {
        /* p_i >= min_p * p_max  <=>  logit_i >= max + log(min_p); min_p >= 1 keeps the max */
        double floor_l = max + log(fmin((double)s->p.min_p, 1.0));
        size_t w = 0;
        for (size_t i = 0; i < n; i++)
            if ((double)c[i].logit >= floor_l) c[w++] = c[i];
        n = w; /* never 0: the max itself passes */
    }
    if (n == 1) return c[0].id;

    /* temperature + draw */
    double inv_t = 1.0 / (double)s->p.temperature;
    double *w = s->w, sum = 0.0;
    for (size_t i = 0; i < n; i++)
        sum += w[i] = exp(((double)c[i].logit - max) * inv_t);
    double r = rng_uniform(s) * sum;
    double acc = 0.0;
    for (size_t i = 0; i < n; i++) {
        acc += w[i];
        if (r < acc) return c[i].id;
    }
    /* rounding: r landed past the last partial sum; pick the last token with weight */
    for (size_t i = n; i-- > 0;)
        if (w[i] > 0.0) return c[i].id;
    return c[0].id;
}

int32_t chord_sampler_sample(chord_sampler *s, const float *logits, int n_vocab) {
    if (!s || !logits || n_vocab <= 0) return -1;
    if (!ensure_buffers(s, (size_t)n_vocab)) return greedy(s, logits, n_vocab, false);
    bool pen = mark_history(s, n_vocab);
    if (s->p.temperature <= 0.0f) {
        int32_t t = greedy(s, logits, n_vocab, pen);
        if (pen) unmark_history(s, n_vocab);
        return t;
    }

    /* candidates: usable tokens, penalized, in id order; for top-k also their radix keys
     * and the histogram of the keys' top 11 bits */
    cand *c = s->cand;
    size_t n = 0;
    bool top_k = s->p.top_k > 0 && s->p.top_k < n_vocab;
    const uint8_t *flag = s->flag;
    const float penalty = s->p.repeat_penalty;
    if (top_k) {
        uint32_t *keys = s->keys, *bins = s->bins;
        memset(bins, 0, sizeof s->bins);
        for (int i = 0; i < n_vocab; i++) {
            float l = logits[i];
            if (!usable(l)) continue;
            l = clamp_logit(l);
            if (pen && flag[i]) l = penalize(l, penalty);
            c[n].logit = l;
            c[n].id = i;
            uint32_t key = float_key(l);
            keys[n] = key;
            bins[key >> 21]++;
            n++;
        }
    } else {
        for (int i = 0; i < n_vocab; i++) {
            float l = logits[i];
            if (!usable(l)) continue;
            l = clamp_logit(l);
            if (pen && flag[i]) l = penalize(l, penalty);
            c[n].logit = l;
            c[n].id = i;
            n++;
        }
    }
    if (pen) unmark_history(s, n_vocab);
    return sample_chain(s, c, n, n_vocab);
}

int sampler_cands_needed(const chord_sampler *s, int n_vocab) {
    if (!s || n_vocab <= 0) return 0;
    /* a penalty above 1 only lowers logits: the best k after it are among the best
     * k + (penalized tokens) before it; one below 1 can lift any token */
    if (s->p.repeat_penalty < 1.0f && s->hist_n > 0) return 0;
    const int pen = s->p.repeat_penalty != 1.0f ? s->hist_n : 0;
    if (s->p.temperature <= 0.0f) return 1 + pen;
    /* one more than top_k: top_k_fused then sees more candidates than it keeps, as on the
     * whole vocabulary, and leaves the same order */
    if (s->p.top_k > 0 && s->p.top_k < n_vocab) return s->p.top_k + 1 + pen;
    return 0; /* top-p / min-p / the draw over the whole vocabulary need every logit */
}

static int cand_id_cmp(const void *a, const void *b) {
    const cand *x = a, *y = b;
    return (x->id > y->id) - (x->id < y->id);
}

int32_t sampler_sample_cands(chord_sampler *s, const int32_t *ids, const float *vals, int n_cand,
                             int n_vocab) {
    if (!s || !ids || !vals || n_cand <= 0 || n_vocab <= 0) return -1;
    if (!ensure_buffers(s, (size_t)n_vocab)) return ids[0]; /* the best one: greedy */
    bool pen = mark_history(s, n_vocab);
    cand *c = s->cand;
    size_t n = 0;
    for (int i = 0; i < n_cand; i++) {
        float l = vals[i];
        if (!usable(l) || ids[i] < 0 || ids[i] >= n_vocab) continue;
        l = clamp_logit(l);
        if (pen && s->flag[ids[i]]) l = penalize(l, s->p.repeat_penalty);
        c[n].logit = l;
        c[n].id = ids[i];
        n++;
    }
    if (pen) unmark_history(s, n_vocab);
    qsort(c, n, sizeof *c, cand_id_cmp); /* the dense path's order */
    memset(s->bins, 0, sizeof s->bins);
    for (size_t i = 0; i < n; i++) {
        s->keys[i] = float_key(c[i].logit);
        s->bins[s->keys[i] >> 21]++;
    }
    if (s->p.temperature <= 0.0f) { /* greedy: the first of equal maxima */
        if (n == 0) return 0;
        size_t best = 0;
        for (size_t i = 1; i < n; i++)
            if (c[i].logit > c[best].logit) best = i;
        return c[best].id;
    }
    return sample_chain(s, c, n, n_vocab);
}
