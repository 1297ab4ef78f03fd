// fail_fsync.c — an LD_PRELOAD for a server whose disk must fail at the
// worst moment: fsync and fdatasync of a file whose name ends in "-wal"
// (SQLite's write-ahead log) fail with EIO while the file named by
// $FAIL_FSYNC_WHEN exists, after the bytes were written: what a dying disk
// does at a commit. The test creates that file when the failures should
// begin. Any other call goes to the system call itself.
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static int failing(int fd) {
  const char* when = getenv("FAIL_FSYNC_WHEN");
  if (!when || access(when, F_OK) != 0) return 0;
  char link[64], path[4096];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, path, sizeof path - 1);
  return n >= 4 && memcmp(path + n - 4, "-wal", 4) == 0;
}

int fsync(int fd) {
  if (failing(fd)) return errno = EIO, -1;
  return (int)syscall(SYS_fsync, fd);
}

int fdatasync(int fd) {
  if (failing(fd)) return errno = EIO, -1;
  return (int)syscall(SYS_fdatasync, fd);
}
