/* Sampling from the best candidates only (the GPU's top-k: only those cross the bus). */
#ifndef CHORD_SAMPLE_H
#define CHORD_SAMPLE_H

#include "chord.h"

/* How many of the best logits (value descending, then id ascending; NaN / -inf last) the
 * sampler's next draw needs so that sampler_sample_cands gives exactly what
 * chord_sampler_sample would with all of them; 0 when it needs every logit (top-k off
 * with temperature > 0). */
int sampler_cands_needed(const chord_sampler *s, int n_vocab);

/* chord_sampler_sample over the n best logits (ids[i], vals[i]), n >= what
 * sampler_cands_needed asked for, in any order. */
int32_t sampler_sample_cands(chord_sampler *s, const int32_t *ids, const float *vals, int n,
                             int n_vocab);

#endif
