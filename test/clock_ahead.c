// clock_ahead.c — an LD_PRELOAD for a test's redis-server: its wall clock
// (gettimeofday, which Redis's TIME reads) runs CLOCK_AHEAD_S seconds ahead
// of the machine's, so one machine can hold two clocks that disagree, as a
// server and its Redis on two machines do. Straight to the system call: no
// dlsym, no allocation, nothing that could call back into the clock.
#define _GNU_SOURCE
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>

int gettimeofday(struct timeval* tv, void* tz) {
  int r = (int)syscall(SYS_gettimeofday, tv, tz);
  const char* ahead = getenv("CLOCK_AHEAD_S");
  if (r == 0 && ahead) tv->tv_sec += atol(ahead);
  return r;
}
