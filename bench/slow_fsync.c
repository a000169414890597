/* A disk busy with other writes, for the soak run's Redis (bench/soak.py --slow-fsync-ms): preloaded
 * (LD_PRELOAD) into redis-server, it makes each fsync and fdatasync take SLOW_FSYNC_MS milliseconds
 * longer. With appendfsync everysec, Redis then holds back the AOF write while a background fsync is
 * still running (up to 2 s), and answers the clients meanwhile: what a kill -9 then loses is what it
 * had answered. Built by the soak run with the system's cc. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <unistd.h>

static void busy_disk(void) {
    const char *ms = getenv("SLOW_FSYNC_MS");
    if (ms) usleep((useconds_t)atoi(ms) * 1000);
}

int fsync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    busy_disk();
    return real(fd);
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    busy_disk();
    return real(fd);
}
