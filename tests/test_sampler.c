/* Sampler: greedy, determinism, filters, penalty, distribution, non-finite input. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "chord.h"
#include "sample.h"
#include "testutil.h"

static chord_sampler *make(chord_sampler_params p) {
    chord_sampler *s = NULL;
    chord_error err = {0};
    chord_status st = chord_sampler_new(&p, &s, &err);
    CHECK(st == CHORD_OK && s, "chord_sampler_new: %s", err.message);
    return s;
}

static chord_sampler_params plain(float temperature, uint64_t seed) {
    chord_sampler_params p = chord_sampler_default_params();
    p.temperature = temperature;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.repeat_penalty = 1.0f;
    p.seed = seed;
    return p;
}

/* Deterministic pseudo-random logits. */
static void fill_logits(float *l, int n, uint32_t seed) {
    uint32_t x = seed * 2654435761u + 1;
    for (int i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        l[i] = (float)(x % 20000) / 1000.0f - 10.0f;
    }
}

static int argmax(const float *l, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (l[i] > l[b]) b = i;
    return b;
}

static void test_defaults(void) {
    chord_sampler_params p = chord_sampler_default_params();
    CHECK(p.temperature == 0.8f && p.top_k == 40 && p.top_p == 0.95f && p.min_p == 0.05f,
          "default filter params");
    CHECK(p.repeat_penalty == 1.0f && p.repeat_last_n == 64 && p.seed == CHORD_SEED_RANDOM,
          "default penalty/seed params");
    chord_sampler *s = make(p);
    CHECK(chord_sampler_seed(s) != CHORD_SEED_RANDOM, "random seed resolved");
    chord_sampler_free(s);
    chord_sampler_free(NULL);

    chord_sampler *bad = NULL;
    chord_error err = {0};
    p.repeat_penalty = 0.0f;
    CHECK(chord_sampler_new(&p, &bad, &err) == CHORD_E_INVALID_ARG && !bad,
          "repeat_penalty 0 rejected");
    p = chord_sampler_default_params();
    p.temperature = NAN;
    CHECK(chord_sampler_new(&p, &bad, &err) == CHORD_E_INVALID_ARG, "NaN temperature rejected");
    s = NULL;
    CHECK(chord_sampler_new(NULL, &s, &err) == CHORD_OK && s, "NULL params = defaults");
    chord_sampler_free(s);
}

static void test_greedy(void) {
    enum { N = 1000 };
    float l[N];
    fill_logits(l, N, 1);
    l[777] = 50.0f;
    chord_sampler *s = make(plain(0.0f, 1));
    for (int i = 0; i < 5; i++)
        CHECK(chord_sampler_sample(s, l, N) == 777, "greedy argmax");
    chord_sampler_free(s);

    /* top_k = 1 and tiny top_p behave like greedy at any temperature */
    for (int seed = 0; seed < 50; seed++) {
        fill_logits(l, N, (uint32_t)seed + 100);
        int am = argmax(l, N);
        chord_sampler_params p = plain(1.5f, (uint64_t)seed);
        p.top_k = 1;
        chord_sampler *a = make(p);
        p = plain(1.5f, (uint64_t)seed);
        p.top_p = 1e-6f;
        chord_sampler *b = make(p);
        p.top_k = 10; /* top-k then top-p */
        chord_sampler *c = make(p);
        CHECK(chord_sampler_sample(a, l, N) == am, "top_k=1 is greedy (seed %d)", seed);
        CHECK(chord_sampler_sample(b, l, N) == am, "tiny top_p is greedy (seed %d)", seed);
        CHECK(chord_sampler_sample(c, l, N) == am, "top_k+tiny top_p is greedy (seed %d)",
              seed);
        chord_sampler_free(a);
        chord_sampler_free(b);
        chord_sampler_free(c);
    }
}

static void test_determinism(void) {
    enum { N = 5000, T = 200 };
    float *l = malloc(N * sizeof *l);
    int32_t *sa = malloc(T * sizeof *sa), *sb = malloc(T * sizeof *sb);
    chord_sampler_params p = chord_sampler_default_params();
    p.seed = 42;
    p.temperature = 1.2f;
    chord_sampler *a = make(p), *b = make(p);
    p.seed = 43;
    chord_sampler *c = make(p);
    int same = 0, differ = 0;
    for (int i = 0; i < T; i++) {
        fill_logits(l, N, (uint32_t)i);
        for (int j = 0; j < N; j++)
            l[j] *= 0.2f; /* flatter: many candidates */
        sa[i] = chord_sampler_sample(a, l, N);
        sb[i] = chord_sampler_sample(b, l, N);
        int32_t tc = chord_sampler_sample(c, l, N);
        same += sa[i] == sb[i];
        differ += sa[i] != tc;
        CHECK(sa[i] >= 0 && sa[i] < N, "in range");
    }
    CHECK(same == T, "same seed, same sequence (%d/%d)", same, T);
    CHECK(differ > T / 4, "different seeds differ (%d/%d)", differ, T);
    /* reset restarts the sequence */
    chord_sampler_reset(a);
    int again = 0;
    for (int i = 0; i < T; i++) {
        fill_logits(l, N, (uint32_t)i);
        for (int j = 0; j < N; j++)
            l[j] *= 0.2f;
        again += chord_sampler_sample(a, l, N) == sa[i];
    }
    CHECK(again == T, "reset repeats the sequence (%d/%d)", again, T);
    CHECK(chord_sampler_seed(a) == 42, "seed reported");
    chord_sampler_free(a);
    chord_sampler_free(b);
    chord_sampler_free(c);
    free(l);
    free(sa);
    free(sb);
}

/* Frequencies of each token over n draws. */
static void histogram(chord_sampler *s, const float *l, int n_vocab, int n, int *counts) {
    memset(counts, 0, (size_t)n_vocab * sizeof *counts);
    for (int i = 0; i < n; i++) {
        int32_t t = chord_sampler_sample(s, l, n_vocab);
        if (t >= 0 && t < n_vocab) counts[t]++;
    }
}

static void test_distribution(void) {
    const float l[3] = {1.0f, 2.0f, 0.5f};
    double e[3], sum = 0;
    for (int i = 0; i < 3; i++)
        sum += e[i] = exp(l[i]);
    chord_sampler *s = make(plain(1.0f, 1234));
    int counts[3];
    const int n = 20000;
    histogram(s, l, 3, n, counts);
    for (int i = 0; i < 3; i++) {
        double want = e[i] / sum, got = (double)counts[i] / n;
        /* 4.5 sigma of a binomial proportion */
        double tol = 4.5 * sqrt(want * (1 - want) / n);
        CHECK(fabs(got - want) < tol, "token %d: freq %.4f want %.4f (tol %.4f)", i, got, want,
              tol);
    }
    chord_sampler_free(s);

    /* temperature 0.5 sharpens: p ~ exp(2 l) */
    s = make(plain(0.5f, 99));
    histogram(s, l, 3, n, counts);
    sum = 0;
    for (int i = 0; i < 3; i++)
        sum += e[i] = exp(2.0 * l[i]);
    for (int i = 0; i < 3; i++) {
        double want = e[i] / sum, got = (double)counts[i] / n;
        CHECK(fabs(got - want) < 4.5 * sqrt(want * (1 - want) / n) + 1e-9,
              "T=0.5 token %d: freq %.4f want %.4f", i, got, want);
    }
    chord_sampler_free(s);
}

static void test_filters(void) {
    /* min_p: probs ~ {0.6, 0.3, 0.07, 0.03}; min_p 0.2 keeps tokens 0,1 only */
    float l[4] = {logf(0.6f), logf(0.3f), logf(0.07f), logf(0.03f)};
    chord_sampler_params p = plain(1.0f, 7);
    p.min_p = 0.2f;
    chord_sampler *s = make(p);
    int counts[4];
    histogram(s, l, 4, 5000, counts);
    CHECK(counts[2] == 0 && counts[3] == 0, "min_p drops tail (%d %d)", counts[2], counts[3]);
    CHECK(counts[0] > 0 && counts[1] > 0, "min_p keeps head (%d %d)", counts[0], counts[1]);
    CHECK(abs(counts[0] - 2 * counts[1]) < 500, "min_p renormalizes (%d vs %d)", counts[0],
          counts[1]);
    chord_sampler_free(s);

    /* top_k = 2 keeps the two best */
    p = plain(1.0f, 8);
    p.top_k = 2;
    s = make(p);
    histogram(s, l, 4, 5000, counts);
    CHECK(counts[2] == 0 && counts[3] == 0 && counts[1] > 0, "top_k=2");
    chord_sampler_free(s);

    /* top_p 0.85: 0.6 + 0.3 = 0.9 >= 0.85 keeps tokens 0,1 */
    p = plain(1.0f, 9);
    p.top_p = 0.85f;
    s = make(p);
    histogram(s, l, 4, 5000, counts);
    CHECK(counts[2] == 0 && counts[3] == 0 && counts[1] > 0, "top_p=0.85");
    chord_sampler_free(s);
    /* top_p 0.95 also keeps token 2 */
    p.top_p = 0.95f;
    s = make(p);
    histogram(s, l, 4, 20000, counts);
    CHECK(counts[3] == 0 && counts[2] > 0, "top_p=0.95 (%d %d)", counts[2], counts[3]);
    chord_sampler_free(s);

    /* top-k on a large vocabulary with ties: only tokens from the top set appear */
    enum { N = 50000 };
    float *big = malloc(N * sizeof *big);
    for (int i = 0; i < N; i++)
        big[i] = (float)(i % 100); /* 500 copies of each value */
    p = plain(1.0f, 10);
    p.top_k = 700; /* all 500 tokens of 99 and the 200 smallest ids with 98 */
    s = make(p);
    int ok = 1;
    for (int i = 0; i < 300; i++) {
        int32_t t = chord_sampler_sample(s, big, N);
        if (t < 0 || t >= N || big[t] < 98.0f) ok = 0;
        if (big[t] == 98.0f && t / 100 >= 200) ok = 0;
    }
    CHECK(ok, "top_k on ties keeps the top set, smallest ids first");
    chord_sampler_free(s);

    /* top_p without top_k on a large vocabulary (growing selection) */
    for (int i = 0; i < N; i++)
        big[i] = -(float)i * 0.001f; /* smooth decay */
    p = plain(1.0f, 11);
    p.top_p = 0.5f;
    s = make(p);
    /* cumulative mass of tokens 0..m ~ (1 - e^{-0.001 m}) / (1 - e^{-50}): half at m ~ 693 */
    int maxt = 0;
    for (int i = 0; i < 500; i++) {
        int32_t t = chord_sampler_sample(s, big, N);
        if (t > maxt) maxt = t;
    }
    CHECK(maxt <= 694 && maxt > 550, "top_p nucleus over 50k tokens ends near 693 (%d)", maxt);
    chord_sampler_free(s);
    free(big);
}

typedef struct ref_cand {
    float l;
    int id;
} ref_cand;

static int ref_cmp(const void *a, const void *b) {
    const ref_cand *x = a, *y = b;
    if (x->l != y->l) return x->l > y->l ? -1 : 1;
    return x->id - y->id;
}

/* The kept set of top-k / top-p against a full sort: at a huge temperature the draw is
 * ~uniform over the kept tokens, so every draw must be in the reference set and (for
 * small sets) every member must show up. Logits are quantized to force many ties. */
static void test_sets_vs_reference(void) {
    enum { N = 4000, DRAWS = 1200 };
    float *l = malloc(N * sizeof *l);
    ref_cand *r = malloc(N * sizeof *r);
    char *in_set = malloc(N), *seen = malloc(N);
    for (int trial = 0; trial < 12; trial++) {
        fill_logits(l, N, 1000u + (uint32_t)trial);
        for (int i = 0; i < N; i++)
            l[i] = floorf(l[i] * (trial % 3 == 0 ? 2.0f : 20.0f)) / 10.0f;
        for (int i = 0; i < N; i++)
            r[i] = (ref_cand){l[i], i};
        qsort(r, N, sizeof *r, ref_cmp);
        chord_sampler_params p = plain(1e6f, (uint64_t)trial);
        size_t keep;
        if (trial % 2 == 0) {
            static const int ks[] = {1, 7, 40, 333, 1500, 3999};
            p.top_k = ks[(trial / 2) % 6];
            keep = (size_t)p.top_k;
        } else {
            p.top_p = trial < 6 ? 0.05f : 0.5f;
            double max = r[0].l, total = 0, acc = 0;
            for (int i = 0; i < N; i++)
                total += exp((double)l[i] - max);
            keep = N;
            for (int i = 0; i < N; i++) {
                acc += exp((double)r[i].l - max);
                if (acc >= (double)p.top_p * total) {
                    keep = (size_t)i + 1;
                    break;
                }
            }
        }
        memset(in_set, 0, N);
        memset(seen, 0, N);
        for (size_t i = 0; i < keep; i++)
            in_set[r[i].id] = 1;
        chord_sampler *s = make(p);
        int outside = 0;
        for (int d = 0; d < DRAWS; d++) {
            int32_t t = chord_sampler_sample(s, l, N);
            if (t < 0 || t >= N || !in_set[t])
                outside++;
            else
                seen[t] = 1;
        }
        size_t n_seen = 0;
        for (int i = 0; i < N; i++)
            n_seen += (size_t)seen[i];
        CHECK(outside == 0, "trial %d: %d draws outside the reference set of %zu", trial,
              outside, keep);
        if (keep <= 100)
            CHECK(n_seen == keep, "trial %d: saw %zu of %zu kept tokens", trial, n_seen, keep);
        chord_sampler_free(s);
    }
    free(l);
    free(r);
    free(in_set);
    free(seen);
}

static void test_penalty(void) {
    float l[4] = {3.0f, 2.8f, -1.0f, -1.1f};
    chord_sampler_params p = plain(0.0f, 1);
    p.repeat_penalty = 1.2f;
    p.repeat_last_n = 3;
    chord_sampler *s = make(p);
    CHECK(chord_sampler_sample(s, l, 4) == 0, "no history: argmax");
    chord_sampler_accept(s, 0); /* 3.0 / 1.2 = 2.5 < 2.8 */
    CHECK(chord_sampler_sample(s, l, 4) == 1, "penalized token 0 loses to token 1");
    chord_sampler_accept(s, 0); /* repeated: penalty applies once */
    chord_sampler_accept(s, 1); /* 2.8 / 1.2 = 2.33 < 2.5 */
    CHECK(chord_sampler_sample(s, l, 4) == 0, "both penalized: token 0 again");
    chord_sampler_accept(s, 5); /* out of range id: ignored, but pushes 0 out */
    chord_sampler_accept(s, 3);
    /* window now {1, 5, 3}: 0 unpenalized again */
    CHECK(chord_sampler_sample(s, l, 4) == 0, "window slides");
    chord_sampler_free(s);

    /* negative logits are multiplied: -1.0 * 1.2 = -1.2 < -1.1 */
    float neg[2] = {-1.0f, -1.1f};
    s = make(p);
    chord_sampler_accept(s, 0);
    CHECK(chord_sampler_sample(s, neg, 2) == 1, "negative logit penalized by multiplication");
    chord_sampler_reset(s);
    CHECK(chord_sampler_sample(s, neg, 2) == 0, "reset clears history");
    chord_sampler_free(s);

    /* penalty also applies when sampling (tokens 0 and 1 close; penalize 0 heavily) */
    float l2[3] = {5.0f, 4.9f, -20.0f};
    p = plain(1.0f, 3);
    p.repeat_penalty = 100.0f;
    s = make(p);
    chord_sampler_accept(s, 0);
    int counts[3];
    histogram(s, l2, 3, 2000, counts);
    CHECK(counts[1] > 1900, "heavy penalty steers sampling (%d)", counts[1]);
    chord_sampler_free(s);
}

static void test_nonfinite(void) {
    const float nan = NAN, inf = INFINITY;
    chord_sampler_params ps[3] = {plain(0.0f, 1), plain(1.0f, 2),
                                  chord_sampler_default_params()};
    ps[2].seed = 5;
    ps[2].repeat_penalty = 1.3f;
    for (int k = 0; k < 3; k++) {
        chord_sampler *s = make(ps[k]);
        chord_sampler_accept(s, 1);
        float all_nan[5] = {nan, nan, nan, nan, nan};
        int32_t t = chord_sampler_sample(s, all_nan, 5);
        CHECK(t >= 0 && t < 5, "all NaN in range (%d)", t);
        float all_ninf[3] = {-inf, -inf, -inf};
        t = chord_sampler_sample(s, all_ninf, 3);
        CHECK(t >= 0 && t < 3, "all -inf in range (%d)", t);
        float mix[6] = {nan, 1.0f, -inf, nan, 0.5f, -inf};
        for (int i = 0; i < 200; i++) {
            t = chord_sampler_sample(s, mix, 6);
            CHECK(t == 1 || t == 4, "NaN/-inf never picked (%d)", t);
        }
        float pinf[5] = {1.0f, inf, nan, 2.0f, inf};
        for (int i = 0; i < 200; i++) {
            t = chord_sampler_sample(s, pinf, 5);
            CHECK(t == 1 || t == 4, "+inf wins (%d)", t);
        }
        float huge[3] = {3e38f, -3e38f, 3.4e38f};
        for (int i = 0; i < 50; i++) {
            t = chord_sampler_sample(s, huge, 3);
            CHECK(t >= 0 && t < 3 && t != 1, "huge logits (%d)", t);
        }
        float one[1] = {nan};
        CHECK(chord_sampler_sample(s, one, 1) == 0, "n_vocab 1 NaN");
        float one2[1] = {-3.0f};
        for (int i = 0; i < 10; i++)
            CHECK(chord_sampler_sample(s, one2, 1) == 0, "n_vocab 1");
        CHECK(chord_sampler_sample(s, one2, 0) == -1, "n_vocab 0 -> -1");
        CHECK(chord_sampler_sample(s, NULL, 3) == -1, "NULL logits -> -1");
        chord_sampler_free(s);
    }
}

static void test_vocab_growth(void) {
    /* buffers grow when the vocabulary grows; smaller later calls reuse them */
    chord_sampler *s = make(chord_sampler_default_params());
    int sizes[4] = {10, 100000, 17, 150000};
    for (int k = 0; k < 4; k++) {
        float *l = malloc((size_t)sizes[k] * sizeof *l);
        fill_logits(l, sizes[k], (uint32_t)k);
        for (int i = 0; i < 5; i++) {
            int32_t t = chord_sampler_sample(s, l, sizes[k]);
            CHECK(t >= 0 && t < sizes[k], "in range for n_vocab %d", sizes[k]);
            chord_sampler_accept(s, t);
        }
        free(l);
    }
    chord_sampler_free(s);
}

/* Sampling from the best sampler_cands_needed() logits (in a shuffled order) draws what
 * sampling from all of them draws, for every filter chain, with ties, non-finite logits and
 * the repetition penalty; configurations without top-k ask for every logit. */
static void test_candidates(void) {
    enum { N = 3000, T = 300 };
    float *l = malloc(N * sizeof *l);
    int32_t *ref = malloc(N * sizeof *ref);
    int32_t *ids = malloc(N * sizeof *ids);
    float *vals = malloc(N * sizeof *vals);
    struct {
        float temp;
        int top_k;
        float top_p, min_p, pen;
    } cfg[] = {
        {0.0f, 0, 1.0f, 0.0f, 1.0f},    {0.0f, 0, 1.0f, 0.0f, 1.3f},
        {0.8f, 40, 0.95f, 0.05f, 1.0f}, {0.8f, 40, 0.95f, 0.05f, 1.2f},
        {1.5f, 7, 1.0f, 0.0f, 1.1f},    {0.7f, 1, 1.0f, 0.0f, 1.0f},
        {1.0f, 200, 0.5f, 0.0f, 1.05f}, {1.0f, 0, 0.9f, 0.0f, 1.0f},
        {1.0f, 50, 1.0f, 0.0f, 0.9f},
    };
    int same = 0, total = 0, dense_steps = 0;
    for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
        chord_sampler_params p = plain(cfg[c].temp, 77 + c);
        p.top_k = cfg[c].top_k;
        p.top_p = cfg[c].top_p;
        p.min_p = cfg[c].min_p;
        p.repeat_penalty = cfg[c].pen;
        p.repeat_last_n = 16;
        chord_sampler *a = make(p), *b = make(p);
        for (int t = 0; t < T; t++) {
            fill_logits(l, N, (uint32_t)(t * 31 + (int)c));
            for (int i = 0; i < N; i++) /* coarse values: many ties */
                l[i] = roundf(l[i] * 4.0f) / 4.0f;
            if (t % 5 == 1) l[t % N] = INFINITY, l[(t * 7) % N] = FLT_MAX;
            if (t % 7 == 2) l[(t * 3) % N] = NAN, l[(t * 11) % N] = -INFINITY;
            const int k = sampler_cands_needed(a, N);
            if (k == 0) { /* every logit needed: top-k off, or a penalty below 1 */
                CHECK((cfg[c].top_k == 0 && cfg[c].temp > 0) || cfg[c].pen < 1.0f,
                      "cfg %zu: needs every logit", c);
                dense_steps++;
                const int32_t tok = chord_sampler_sample(a, l, N);
                chord_sampler_accept(a, tok);
                chord_sampler_accept(b, chord_sampler_sample(b, l, N));
                continue;
            }
            CHECK(k <= N, "cfg %zu: k = %d", c, k);
            test_rank_logits(l, ref, N); /* the GPU's topk order */
            for (int i = 0; i < k; i++) { /* any order: reversed */
                ids[i] = ref[k - 1 - i];
                vals[i] = l[ref[k - 1 - i]];
            }
            const int32_t want = chord_sampler_sample(a, l, N);
            const int32_t got = sampler_sample_cands(b, ids, vals, k, N);
            same += want == got;
            total++;
            if (want != got)
                printf("  cfg %zu t %d k %d: full %d (%g) candidates %d (%g)\n", c, t, k, want,
                       want >= 0 ? l[want] : 0.0, got, got >= 0 ? l[got] : 0.0);
            chord_sampler_accept(a, want);
            chord_sampler_accept(b, want);
        }
        chord_sampler_free(a);
        chord_sampler_free(b);
    }
    CHECK(same == total && total > 0, "candidates draw what the full logits draw (%d of %d)", same,
          total);
    CHECK(dense_steps == 2 * T - 1, "steps that need every logit: %d", dense_steps);
    free(l);
    free(ref);
    free(ids);
    free(vals);
}

int main(void) {
    test_defaults();
    test_greedy();
    test_determinism();
    test_distribution();
    test_filters();
    test_sets_vs_reference();
    test_penalty();
    test_nonfinite();
    test_vocab_growth();
    test_candidates();
    return test_summary("test_sampler");
}
