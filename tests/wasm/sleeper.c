/* Sleeps 60 s before answering: a long-running module that
 * spends its time blocked in the host (WASI poll_oneoff), not in wasm code. */
#include <stdio.h>
#include <unistd.h>

int main(void) {
    sleep(60);
    puts("{\"slept\":true}");
    return 0;
}
