// Compiled as C++17: the public header must stand alone and be extern "C".
#include "chord.h"
int chord_header_check_cxx() { return static_cast<int>(CHORD_OK) + static_cast<int>(sizeof(chord_error) > 0); }
