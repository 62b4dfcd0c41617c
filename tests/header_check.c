/* Compiled as C11: the public header must stand alone. */
#include "chord.h"
int chord_header_check_c(void) { return (int)CHORD_OK; }
