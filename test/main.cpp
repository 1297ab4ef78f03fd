// The doctest main; the tests are in test_<file>.cpp, one per header, and
// test_server.cpp drives the real binary over sockets.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
