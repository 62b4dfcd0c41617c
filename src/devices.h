/* Which device runs each layer: the GPU when one is present and works, else the CPU. */
#ifndef CHORD_DEVICES_H
#define CHORD_DEVICES_H

#include "model.h"

/* Decides layer placement, uploads GPU weights; a GPU failure is a notice, not an error. */
chord_status devices_setup(chord_model *m, const chord_model_params *p, chord_error *err);
void devices_teardown(chord_model *m);

#endif
