/* An LD_PRELOAD shim for tests/clock.rs: answers adjtimex(2) with what the
 * test wrote, and defines nothing else (libfaketime does not intercept
 * adjtimex; everything else stays glibc's).
 *
 * BSC_TEST_ADJTIMEX names a file read at every call: `sync MAXERROR_US`
 * (TIME_OK, STA_UNSYNC clear), `unsync MAXERROR_US` (TIME_ERROR, STA_UNSYNC
 * set), or anything else (the call fails with EPERM, as under a seccomp
 * filter). BSC_TEST_ADJTIMEX_CALLS, if set, names a file that gets one byte
 * per call, so a test can count them. A call that would change the clock
 * (modes != 0) fails: nothing is forwarded to the kernel.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timex.h>
#include <unistd.h>

int adjtimex(struct timex *tx) {
    const char *calls = getenv("BSC_TEST_ADJTIMEX_CALLS");
    if (calls) {
        int fd = open(calls, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
        if (fd >= 0) {
            ssize_t ignored = write(fd, ".", 1);
            (void)ignored;
            close(fd);
        }
    }
    const char *path = getenv("BSC_TEST_ADJTIMEX");
    FILE *f = path ? fopen(path, "re") : NULL;
    char word[16] = "";
    long maxerror = 0;
    int n = 0;
    if (f) {
        n = fscanf(f, "%15s %ld", word, &maxerror);
        fclose(f);
    }
    if (tx->modes != 0 || n != 2) {
        errno = EPERM;
        return -1;
    }
    memset(tx, 0, sizeof *tx);
    tx->maxerror = maxerror;
    tx->esterror = maxerror;
    if (strcmp(word, "sync") == 0) {
        return TIME_OK;
    }
    if (strcmp(word, "unsync") == 0) {
        tx->status = STA_UNSYNC;
        return TIME_ERROR;
    }
    errno = EPERM;
    return -1;
}
