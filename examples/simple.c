/* Placeholder replaced when the C API lands. */
int main(void) { return 0; }
