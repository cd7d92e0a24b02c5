/* Writes text that is not JSON to stdout and exits 0: a broken worker. */
#include <stdio.h>

int main(void) {
    puts("hello, this is not JSON");
    return 0;
}
