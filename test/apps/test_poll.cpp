// The live poll through the real binary: exact tallies on the stream under
// concurrent votes, one vote per voter, durability across kill -9, admin.
#include <doctest/doctest.h>

#include <map>

#include "../../apps/poll/poll.hpp"
#include "../harness.hpp"

namespace {

const std::string TOKEN = "poll-admin-token";

// The count of option `name` in a poll snapshot, or -1.
long long option_count(const std::string& json, const std::string& name) {
  size_t at = json.find("{\"name\":\"" + name + "\",\"count\":");
  return at == std::string::npos ? -1 : std::atoll(json.c_str() + at + name.size() + 19);
}


const std::vector<std::string> OPTIONS = {"Red", "Green", "Blue", "Gold"};

std::vector<std::string> poll_args() {
  return {"--quiet", "--poll-question", "Best colour?", "--poll-options", "Red,Green,Blue,Gold"};
}

}  // namespace

TEST_SUITE("poll") {

TEST_CASE("1,000 voters over 20 connections: exact counts on the stream within a second of the last vote") {
  ServerProcess srv(poll_args());
  Client sub(srv.port);
  sub.send(get_request("/vote/result-sse"));
  REQUIRE(sse_next(sub, [](const std::string& d) { return d.find("\"total\":0") != std::string::npos; }, 2000));
  std::vector<std::unique_ptr<Client>> clients;
  for (int k = 0; k < 20; k++) clients.push_back(std::make_unique<Client>(srv.port));
  std::map<std::string, long long> want;
  for (int round = 0; round < 10; round++) {  // 20 connections x 5 pipelined votes x 10 rounds
    for (int k = 0; k < 20; k++) {
      std::string wire;
      for (int j = 0; j < 5; j++) {
        int voter = round * 100 + k * 5 + j;
        const std::string& option = OPTIONS[size_t(voter * 7 % 4)];
        want[option]++;
        wire += post_request("/vote", "voter=v" + std::to_string(voter) + "&option=" + option);
      }
      clients[size_t(k)]->send(wire);
    }
    for (auto& c : clients)
      for (int j = 0; j < 5; j++) REQUIRE(c->response(3000).status == 200);
  }
  int64_t last_vote = now_ms();
  std::vector<std::string> seen;
  bool exact = sse_next(sub, [&](const std::string& d) {
    for (auto& [name, n] : want)
      if (option_count(d, name) != n) return false;
    return d.find("\"total\":1000}") != std::string::npos;
  }, 1000, &seen);
  REQUIRE_MESSAGE(exact, (seen.empty() ? "" : seen.back()));
  CHECK(now_ms() - last_vote <= 1000);
  CHECK(seen.back().find("{\"name\":\"Red\",\"count\":250,\"percent\":25.0}") != std::string::npos);
}

TEST_CASE("a voter votes once: a second vote is 409 and not counted") {
  ServerProcess srv(poll_args());
  Response first = http_post(srv.port, "/vote", "voter=ann&option=Green");
  CHECK(first.status == 200);
  CHECK(first.body == "{\"ok\":true,\"poll\":1,\"voted_for\":\"Green\",\"counts\":[0,1,0,0],\"total\":1}");
  REQUIRE(http_post(srv.port, "/vote", "voter=bo&option=Gold").status == 200);
  Response again = http_post(srv.port, "/vote", "voter=ann&option=Blue");
  CHECK(again.status == 409);
  CHECK(again.body == "{\"ok\":false,\"message\":\"already voted\",\"poll\":1,\"voted_for\":\"Green\",\"counts\":[0,1,0,1],\"total\":2}");
  CHECK(http_get(srv.port, "/vote/me", "Cookie: uid=ann\r\n").body == "{\"ok\":true,\"poll\":1,\"voted\":true,\"voted_for\":\"Green\"}");
  CHECK(http_get(srv.port, "/vote/me", "Cookie: uid=bob\r\n").body == "{\"ok\":true,\"poll\":1,\"voted\":false}");
  CHECK(http_get(srv.port, "/vote/me?voter=ann").status == 400);  // nobody looks up another's vote
}

TEST_CASE("bad votes: unknown option lists the valid ones, no identity, bad encoding") {
  ServerProcess srv(poll_args());
  Response unknown = http_post(srv.port, "/vote", "voter=a&option=Purple");
  CHECK(unknown.status == 400);
  CHECK(unknown.body.find("no option 'Purple'; the options are 'Red', 'Green', 'Blue', 'Gold'") != std::string::npos);
  CHECK(http_post(srv.port, "/vote", "voter=a&option=red").status == 400);  // names are exact
  Response missing = http_post(srv.port, "/vote", "voter=a");
  CHECK(missing.status == 400);
  CHECK(missing.body.find("send an 'option' field") != std::string::npos);
  Response nobody = http_post(srv.port, "/vote", "option=Red");
  CHECK(nobody.status == 400);
  CHECK(nobody.body.find("who are you") != std::string::npos);
  CHECK(http_post(srv.port, "/vote", "voter=a&option=%E0%A4").status == 400);
  CHECK(http_post(srv.port, "/vote", "voter=a&option=%zz").status == 400);
  // None of it counted; a good vote still works.
  Response ok = http_post(srv.port, "/vote", "voter=a&option=Red");
  CHECK(ok.status == 200);
  CHECK(ok.body.ends_with("\"total\":1}"));
}

TEST_CASE("a form value that is not UTF-8 is refused with 400, so every answer stays valid JSON") {
  ServerProcess srv(poll_args());
  for (const char* form : {"voter=v&option=%FF", "voter=v&option=Red%C3", "voter=%C0%AF&option=Red"}) {
    CAPTURE(form);
    Response r = http_post(srv.port, "/vote", form);
    CHECK(r.status == 400);
    CHECK(r.body.find("UTF-8") != std::string::npos);
    CHECK(valid_utf8(r.body));
  }
}

TEST_CASE("the uid cookie from a page load is a voter") {
  ServerProcess srv(poll_args());
  Response page = http_get(srv.port, "/vote");
  CHECK(page.status == 200);
  CHECK(page.header("content-type") == "text/html; charset=utf-8");
  std::string cookie = "Cookie: uid=" + page.header("set-cookie")->substr(4, 32) + "\r\n";
  CHECK(http_post(srv.port, "/vote", "option=Gold", cookie).status == 200);
  CHECK(http_post(srv.port, "/vote", "option=Red", cookie).status == 409);
  CHECK(http_get(srv.port, "/vote/me", cookie).body.find("\"voted_for\":\"Gold\"") != std::string::npos);
  Response wrong = http_get(srv.port, "/vote/polls");
  CHECK(wrong.status == 405);
  CHECK(wrong.header("allow") == "POST");
}

TEST_CASE("the stream pushes at once, on change, and every --vote-interval") {
  ServerProcess srv({"--quiet", "--vote-interval", "0.3"});
  Client sub(srv.port);
  sub.send(get_request("/vote/result-sse"));
  REQUIRE(sub.read_until("\r\n\r\n"));
  CHECK(sub.buf.find("Content-Type: text/event-stream") != std::string::npos);
  int64_t start = now_ms();
  int events = 0;
  CHECK(sse_next(sub, [&](const std::string&) { return ++events == 4; }, 3000));  // the first, then every 0.3 s
  CHECK(now_ms() - start >= 800);
  CHECK(sub.buf.find("event:") == std::string::npos);  // default type: addEventListener('message') works
}

TEST_CASE("durability: every acknowledged vote survives kill -9; voters still cannot vote twice") {
  TempDir dir;
  std::vector<std::string> args = poll_args();
  args.insert(args.end(), {"--db", dir.file("poll.db")});
  std::map<std::string, long long> want;
  {
    ServerProcess srv(args);
    std::vector<std::unique_ptr<Client>> clients;
    for (int k = 0; k < 10; k++) clients.push_back(std::make_unique<Client>(srv.port));
    for (int round = 0; round < 30; round++) {
      for (int k = 0; k < 10; k++)
        clients[size_t(k)]->send(post_request("/vote", "voter=d" + std::to_string(round * 10 + k) + "&option=" + OPTIONS[size_t(k % 4)]));
      for (int k = 0; k < 10; k++) {
        REQUIRE(clients[size_t(k)]->response(3000).status == 200);
        want[OPTIONS[size_t(k % 4)]]++;
      }
    }
    CHECK(srv.stop(SIGKILL) == 128 + SIGKILL);
  }
  ServerProcess again(args);
  Client sub(again.port);
  sub.send(get_request("/vote/result-sse"));
  std::vector<std::string> seen;
  CHECK(sse_next(sub, [&](const std::string& d) {
    for (auto& [name, n] : want)
      if (option_count(d, name) != n) return false;
    return d.find("\"total\":300}") != std::string::npos;
  }, 2000, &seen));
  for (int v = 0; v < 300; v += 37) CHECK(http_post(again.port, "/vote", "voter=d" + std::to_string(v) + "&option=Red").status == 409);
}

TEST_CASE("admin: a new poll needs the token, is validated, and replaces the current one") {
  ServerProcess srv({"--quiet", "--admin-token", TOKEN});
  REQUIRE(http_post(srv.port, "/vote", "voter=x&option=Auction").status == 200);
  CHECK(http_post(srv.port, "/vote/polls", "question=Q&options=A,B").status == 401);
  CHECK(http_post(srv.port, "/vote/polls", "question=Q&options=A,B&token=nope").status == 401);
  const std::pair<std::string, std::string> bad[] = {
      {"question=Q&options=A", "2 to 20"},        {"question=Q&options=A,A", "twice"},
      {"question=&options=A,B", "question"},      {"options=A,B", "question"},
      {"question=Q&options=A,,B", "1 to 100"},    {"question=Q&options=" + std::string(21 * 2, ','), "2 to 20"},
  };
  for (auto& [form, says] : bad) {
    CAPTURE(form);
    Response r = http_post(srv.port, "/vote/polls", form + "&token=" + TOKEN);
    CHECK(r.status == 400);
    CHECK(r.body.find(says) != std::string::npos);
  }
  Client sub(srv.port);
  sub.send(get_request("/vote/result-sse"));
  Response made = http_post(srv.port, "/vote/polls", "question=Tea+or+coffee%3F&options=Tea,+Coffee", "Authorization: Bearer " + TOKEN + "\r\n");
  CHECK(made.status == 200);
  CHECK(made.body.starts_with("{\"ok\":true,\"poll\":2,\"question\":\"Tea or coffee?\""));
  CHECK(sse_next(sub, [](const std::string& d) { return d.starts_with("{\"poll\":2,") && option_count(d, "Coffee") == 0; }, 2000));
  Response stale = http_post(srv.port, "/vote", "voter=y&option=Coffee&poll=1");  // sent from a page still showing poll 1
  CHECK(stale.status == 410);
  CHECK(stale.body.find("vote in poll 2") != std::string::npos);
  CHECK(http_post(srv.port, "/vote", "voter=y&option=Coffee&poll=2").status == 200);
  CHECK(http_post(srv.port, "/vote", "voter=x&option=Coffee").status == 200);  // a new poll: x votes again
  CHECK(http_post(srv.port, "/vote", "voter=x&option=Auction").status == 400);  // the old options are gone
}

TEST_CASE("--max-voters caps what one poll keeps: a new voter past it gets 503, everyone else is answered as before") {
  ServerProcess srv({"--quiet", "--admin-token", TOKEN, "--max-voters", "3"});
  for (const char* v : {"v1", "v2", "v3"}) REQUIRE(http_post(srv.port, "/vote", std::string("voter=") + v + "&option=Auction").status == 200);
  Response full = http_post(srv.port, "/vote", "voter=v4&option=Auction");
  CHECK(full.status == 503);
  CHECK(full.body.find("limit of 3 voters") != std::string::npos);
  CHECK(http_post(srv.port, "/vote", "voter=v1&option=Auction").status == 409);  // a voter it has is still told so
  Client sub(srv.port);
  sub.send(get_request("/vote/result-sse"));
  CHECK(sse_next(sub, [](const std::string& d) { return d.find("\"total\":3}") != std::string::npos; }, 2000));
  CHECK(http_post(srv.port, "/vote/polls", "question=Again&options=A,B", "Authorization: Bearer " + TOKEN + "\r\n").status == 200);
  CHECK(http_post(srv.port, "/vote", "voter=v4&option=A").status == 200);  // a new poll counts from zero
}

TEST_CASE("first start makes the poll the flags describe; refuses one they cannot") {
  ServerProcess srv(poll_args());
  Client sub(srv.port);
  sub.send(get_request("/vote/result-sse"));
  CHECK(sse_next(sub, [](const std::string& d) { return d.find("\"question\":\"Best colour?\"") != std::string::npos; }, 2000));
  TempDir dir;
  std::string cmd = std::string(getenv("SSE_SERVER") ? getenv("SSE_SERVER") : "./sse-server") + " --port 0 --db " +
                    dir.file("x.db") + " --poll-options Solo 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  char buf[512] = {};
  size_t n = fread(buf, 1, sizeof buf - 1, p);
  int status = pclose(p);
  CHECK(WEXITSTATUS(status) == 2);
  CHECK(std::string(buf, n).find("2 to 20 options") != std::string::npos);
}

TEST_CASE("with and without --redis, the same votes answer the same bytes") {
  auto ready = [](int port) {
    REQUIRE(wait_for([&] { return http_get(port, "/vote/me", "Cookie: uid=ready-check\r\n").status == 200; }, 5000));
  };
  std::vector<std::string> args = {"--admin-token", TOKEN, "--poll-question", "Best colour?", "--poll-options", "Red,Blue"};
  std::vector<std::string> said = same_in_both_modes(args, ready, [](int port) {
    std::vector<std::string> lines;
    auto note = [&](const Response& r) { lines.push_back(std::to_string(r.status) + " " + r.body); };
    for (const char* form : {"voter=alice&option=Red", "voter=alice&option=Blue", "voter=bob&option=Green", "voter=carol&option=Blue&poll=1",
                             "voter=dave&option=Blue&poll=", "voter=erin&option=Blue&poll=01", "voter=erin&option=Blue&poll=x"})
      note(http_post(port, "/vote", form));
    note(http_get(port, "/vote/me", "Cookie: uid=alice\r\n"));
    Client sub(port);
    sub.send(get_request("/vote/result-sse"));
    SseEvent first;
    CHECK(sse_next(sub, [](const SseEvent& e) { return json_int(e.data, "total") == 2; }, 3000, &first));  // alice's and carol's
    lines.push_back(first.data);
    note(http_post(port, "/vote/polls", "question=Q&options=X,Y&token=" + TOKEN));
    note(http_post(port, "/vote", "voter=gus&option=X&poll=1"));
    note(http_post(port, "/vote", "voter=gus&option=X&poll=2"));
    note(http_get(port, "/vote/me", "Cookie: uid=alice\r\n"));
    return lines;
  });
  REQUIRE(said.size() == 13);
  CHECK(said[1].starts_with("409 "));
  CHECK(said[2].starts_with("400 "));
  CHECK(said[3].starts_with("200 "));
  for (size_t i : {4, 5, 6}) {  // a poll field that names no poll: refused alike, never counted in either mode
    CAPTURE(i);
    CHECK(said[i] == "400 {\"ok\":false,\"message\":\"'poll' must be the number of the poll the page shows\"}");
  }
  CHECK(option_count(said[8], "Blue") == 1);
  CHECK(said[10].starts_with("410 "));
  CHECK(said[11].starts_with("200 "));
}

TEST_CASE("the handlers alone: a fabricated request, a :memory: store, no socket") {
  Store store;
  REQUIRE(store.open(":memory:", false));
  PollApp app;
  app.first_options = "Red,Blue";
  app.max_voters = 2;
  std::string why;
  REQUIRE(app.open(store, 1000, &why) == 0);
  HttpRequest http;
  http.method = HTTP_POST;
  Request req{http, 2000};
  http.body = "voter=a&option=Red";
  Answer a = app.vote(req);
  CHECK(a.status == 200);
  CHECK(a.then == Then::SendChange);
  CHECK(app.vote(req).then == Then::AfterCommit);  // its tallies would include a vote not stored yet
  REQUIRE(store.commit());
  app.committed();
  CHECK(app.vote(req).status == 409);
  http.body = "voter=b&option=Green";
  CHECK(app.vote(req).body.find("the options are 'Red', 'Blue'") != std::string::npos);
  http.body = "voter=b&option=Blue";
  CHECK(app.vote(req).status == 200);
  REQUIRE(store.commit());
  app.committed();
  http.body = "voter=c&option=Blue";
  CHECK(app.vote(req).status == 503);  // --max-voters 2
  HttpRequest me;
  me.fields[COOKIE] = "uid=b";
  CHECK(app.me(Request{me, 2000}).body == "{\"ok\":true,\"poll\":1,\"voted\":true,\"voted_for\":\"Blue\"}");
}

}  // TEST_SUITE
