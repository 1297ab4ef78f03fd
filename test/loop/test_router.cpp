// router.hpp alone: which entry a path and a method find, the Allow list,
// and the admin token's two forms.
#include <doctest/doctest.h>

#include "../../router.hpp"

namespace {

Route::Entry handler_entry(int app) {
  return {HTTP_GET, [app](const Request&) { return json_answer(200, std::to_string(app)); }, app};
}

HttpRequest with(std::string_view authorization, std::string_view body = {}) {
  HttpRequest r;
  r.fields[AUTHORIZATION] = authorization;
  r.body = body;
  return r;
}

}  // namespace

TEST_SUITE("router") {

TEST_CASE("a path finds its own route, else the nearest folder above it; \"/\" answers for nothing under it") {
  Router r;
  r.add("/", "GET, HEAD", handler_entry(0));
  r.add("/cinema/showtimes", "GET", handler_entry(1));
  r.add("/cinema/showtimes/", "POST, DELETE", handler_entry(2));
  CHECK(r.find("/") != nullptr);
  CHECK(Router::entry(*r.find("/cinema/showtimes"), HTTP_GET)->app == 1);
  const Route* deep = r.find("/cinema/showtimes/42/book");
  REQUIRE(deep != nullptr);
  CHECK(Router::entry(*deep, HTTP_POST)->app == 2);
  CHECK(deep->allow == "POST, DELETE");
  CHECK(Router::entry(*deep, HTTP_GET) == nullptr);  // 405 with that Allow
  CHECK(r.find("/nowhere/at/all") == nullptr);        // not the home page's
  CHECK(r.find("/cinema") == nullptr);
}

TEST_CASE("a method a path answers already keeps its first entry: an app's route wins over a page of the same name") {
  Router r;
  r.add("/vote", "POST", handler_entry(1));
  r.add("/vote", "GET, HEAD", handler_entry(2));
  r.add("/vote", "GET, POST", handler_entry(3));
  const Route* route = r.find("/vote");
  CHECK(Router::entry(*route, HTTP_POST)->app == 1);
  CHECK(Router::entry(*route, HTTP_GET)->app == 2);
  CHECK(route->allow == "POST, GET, HEAD");
  CHECK_FALSE(Router::is_stream(*route));
  Route::Entry stream{HTTP_GET, {}, 4, 0};
  r.add("/events", "GET", stream);
  CHECK(Router::is_stream(*r.find("/events")));
}

TEST_CASE("the admin token: as a bearer token (any case of 'Bearer'), or the form field where a body may carry it") {
  Router r;
  r.admin_token = "s3cret";
  CHECK(r.bearer_ok(with("Bearer s3cret")));
  CHECK(r.bearer_ok(with("bEARER s3cret")));
  CHECK_FALSE(r.bearer_ok(with("Bearer s3cre")));
  CHECK_FALSE(r.bearer_ok(with("Bearer s3cret!")));
  CHECK_FALSE(r.bearer_ok(with("Basic s3cret")));
  CHECK(r.admin_ok(with("", "a=1&token=s3cret")));
  CHECK_FALSE(r.bearer_ok(with("", "token=s3cret")));  // with Expect: 100-continue the body is not read yet
  CHECK_FALSE(r.admin_ok(with("", "token=")));
  CHECK(token_equal("abc", "abc"));
  CHECK_FALSE(token_equal("", "abc"));
  CHECK_FALSE(token_equal("abcd", "abc"));
}

}  // TEST_SUITE
