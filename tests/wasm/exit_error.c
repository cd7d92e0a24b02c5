/* Fails the way a command does: a reason on stderr and a non-zero exit status. */
#include <stdio.h>

int main(void) {
    fputs("exit_error: the input could not be processed\n", stderr);
    return 3;
}
