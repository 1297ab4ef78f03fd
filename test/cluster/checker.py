"""checker.py — the cluster test's invariants over the history, the events the
subscribers saw, and the state read from Redis (dump.lua) and the servers.

Each check is a pure function that returns (passed, detail): no sockets,
no namespaces, so --selftest can run them on a history and a state made up
to break one rule each, and show that each is caught by the check that
targets it.

What a history entry is: workload.History.run. What a state is: dump.lua's
reply, parsed. An operation whose outcome is "unknown" may or may not be in
the state, but at most once; every other outcome says exactly what the
state must hold:
  ok                its write is there, once, as its reply said
  refused, failed   nothing of it is there
Subscribers' events are (time, stream, version, data); one stream's
versions never go back on one subscriber, across its reconnects too, and
one (stream, version) is one text on every subscriber of every server.
"""
import json

# ---- The state, and what each operation left in it ---------------------------------------

def current_round(state):
    rp = state["redpacket"]
    return rp["rounds"].get(rp["current"]) if rp["current"] else None


def as_list(v):
    """cjson writes an empty Lua table as {}: an empty list here."""
    return v if isinstance(v, list) else []


def bookings_by_user(state):
    by_user = {}
    for bid, b in state["cinema"]["bookings"].items():
        by_user.setdefault(b["user"], []).append((bid, b))
    return by_user


def stored(op, state, by_user):
    """How many times op's write is in the state (0 or 1; a booking can be
    more), and whether what is there agrees with its reply (for ok ops)."""
    reply = op["reply"] if isinstance(op["reply"], dict) else {}
    if op["kind"] == "grab":
        r = state["redpacket"]["rounds"].get(str(reply.get("round", state["redpacket"]["current"])))
        packet = r["users"].get(op["who"]) if r else None
        if packet is None:
            return 0, True
        if op["outcome"] != "ok":
            return 1, True
        amounts = as_list(r["amounts"])
        agrees = int(packet) == reply.get("packet") and amounts[int(packet)] == reply.get("amount_cents")
        return 1, agrees
    if op["kind"] == "vote":
        index = state["poll"]["voters"].get(op["who"])
        if index is None:
            return 0, True
        if op["outcome"] != "ok":
            return 1, True
        return 1, state["poll"]["options"][int(index)] == reply.get("voted_for")
    mine = by_user.get(op["who"], [])
    if not mine or op["outcome"] != "ok":
        return len(mine), True
    bid, b = mine[0]
    agrees = (int(bid) == reply.get("booking") and int(b["showtime"]) == reply.get("showtime")
              and int(b["seats"]) == reply.get("seats") == int(op["form"]["seats"]))
    return len(mine), agrees


# ---- The invariants -----------------------------------------------------------------------

def check_ok_stored(ops, state):
    """Every write answered ok is in the state exactly once, as answered."""
    by_user, bad = bookings_by_user(state), []
    oks = [op for op in ops if op["outcome"] == "ok"]
    for op in oks:
        times, agrees = stored(op, state, by_user)
        if times != 1 or not agrees:
            bad.append(f"{op['kind']} {op['who']} via {op['server']}: stored {times}x{'' if agrees else ', not as answered'}")
    return not bad, f"{len(oks)} ok writes, {len(bad)} not stored once as answered" + (f": {bad[:3]}" if bad else "")


def check_none_stored(ops, state):
    """Nothing answered 'failed for sure' or refused (4xx) is in the state;
    an unknown write is in it at most once."""
    by_user, bad, counted, unknown, unknown_stored = bookings_by_user(state), [], 0, 0, 0
    for op in ops:
        if op["outcome"] == "ok":
            continue
        times, _ = stored(op, state, by_user)
        if op["outcome"] == "unknown":
            unknown += 1
            unknown_stored += times == 1
            if times <= 1:
                continue
        counted += op["outcome"] != "unknown"
        if times:
            bad.append(f"{op['kind']} {op['who']} ({op['outcome']} {op['status']}) via {op['server']}: stored {times}x")
    return not bad, (f"{counted} refused or failed writes, {len(bad)} stored; {unknown} unknown, {unknown_stored} of them stored"
                     + (f": {bad[:3]}" if bad else ""))


def check_holdings(ops, state):
    """No user holds two packets, no packet two users, every packet is one
    of the round's, the last winners are holders of what they won; and no
    two ok answers gave one packet."""
    bad = []
    for rid, r in state["redpacket"]["rounds"].items():
        holders = {}
        for user, packet in r["users"].items():
            holders.setdefault(int(packet), []).append(user)
        bad += [f"round {rid} packet {p}: {u}" for p, u in holders.items() if len(u) > 1]
        bad += [f"round {rid} packet {p} of {r['count']}" for p in holders if not 0 <= p < int(r["count"])]
        for w in as_list(r.get("winners")):
            packet, amount, _, user = w.split(" ", 3)
            if r["users"].get(user) != packet or as_list(r["amounts"])[int(packet)] != int(amount):
                bad.append(f"round {rid} winner {w!r} is not what the round holds")
    answered = {}
    for op in ops:
        if op["kind"] == "grab" and op["outcome"] == "ok":
            key = (op["reply"]["round"], op["reply"]["packet"])
            answered.setdefault(key, set()).add(op["who"])
    bad += [f"round {k[0]} packet {k[1]} answered to {sorted(u)}" for k, u in answered.items() if len(u) > 1]
    held = sum(len(r["users"]) for r in state["redpacket"]["rounds"].values())
    return not bad, f"{held} packets held" + (f"; {len(bad)} broken: {bad[:3]}" if bad else ", one each")


def check_seats(state, base):
    """No showtime sells more seats than it has: per showtime, seats left
    within 0..total, and the seats it lost since `base` (the state before
    the workload) are the seats of its bookings."""
    booked, bad = {}, []
    for b in state["cinema"]["bookings"].values():
        booked[b["showtime"]] = booked.get(b["showtime"], 0) + int(b["seats"])
    for sid, st in state["cinema"]["showtimes"].items():
        left, total = int(st["seats_left"]), int(st["seats_total"])
        was = int(base["cinema"]["showtimes"][sid]["seats_left"]) if sid in base["cinema"]["showtimes"] else total
        if not 0 <= left <= total or was - left != booked.get(sid, 0):
            bad.append(f"showtime {sid}: {left} of {total} left, was {was}, bookings hold {booked.get(sid, 0)}")
    per_person = {}
    for b in state["cinema"]["bookings"].values():
        k = (b["user"], b["showtime"])
        per_person[k] = per_person.get(k, 0) + int(b["seats"])
    bad += [f"{u} holds {n} seats of {s}" for (u, s), n in per_person.items() if n > 10]
    sold = sum(booked.values())
    return not bad, f"{sold} seats booked in {len(state['cinema']['bookings'])} bookings" + (f"; {bad[:3]}" if bad else ", none oversold")


def check_tallies(state):
    """Each option's count is the number of stored voters for it."""
    poll = state["poll"]
    by_option = [0] * len(poll["options"])
    for index in poll["voters"].values():
        by_option[int(index)] += 1
    counts = [int(poll["counts"].get(str(i), 0)) for i in range(len(poll["options"]))]
    ok = counts == by_option
    return ok, f"{len(poll['voters'])} voters, counts {counts}" + ("" if ok else f" but voters say {by_option}")


def check_versions(subscribers, since=0.0, malformed=()):
    """On every subscriber, a stream's versions never go back (events from
    `since` on are judged, against all before them), and every id names a
    version (`malformed`: those that did not)."""
    bad, judged = list(malformed), 0
    for name, events in subscribers.items():
        last = {}
        for t, stream, version, _ in events:
            if t >= since:
                judged += 1
                if version < last.get(stream, 0):
                    bad.append(f"{name}: {stream} {last[stream]} then {version}")
            last[stream] = max(version, last.get(stream, 0))
    return not bad, f"{judged} events on {len(subscribers)} subscribers" + (f"; {len(bad)} went back or name none: {bad[:3]}" if bad else "")


def check_same_bytes(subscribers):
    """One (stream, version) carries one text, on every subscriber of every server."""
    seen, bad = {}, []
    for name, events in subscribers.items():
        for _, stream, version, data in events:
            first = seen.setdefault((stream, version), (name, data))
            if first[1] != data:
                bad.append(f"{stream} {version}: {first[0]} and {name} differ")
    return not bad, f"{len(seen)} ids" + (f"; {len(bad)} with two texts: {bad[:2]}" if bad else ", one text each")


# ---- What a subscriber should show: the truth, per stream --------------------------------

def truth_views(state):
    """Per stream, the part of its data that the state decides."""
    r = current_round(state)
    poll = state["poll"]
    return {
        "redpacket": {"round": int(state["redpacket"]["current"]), "count": int(r["count"]),
                      "remaining": int(r["count"]) - len(r["users"]),
                      "winners": [[int(w.split()[0]), int(w.split()[1])] for w in as_list(r.get("winners"))]},
        "poll": {"poll": int(poll["current"]),
                 "counts": [int(poll["counts"].get(str(i), 0)) for i in range(len(poll["options"]))]},
        "cinema": {sid: [int(st["seats_total"]), int(st["seats_left"])] for sid, st in state["cinema"]["showtimes"].items()},
    }


def data_view(stream, data):
    d = json.loads(data)
    if stream == "redpacket":
        return {"round": d["round"], "count": d["count"], "remaining": d["remaining"],
                "winners": [[w["packet"], w["amount_cents"]] for w in d["winners"]]}
    if stream == "poll":
        return {"poll": d["poll"], "counts": [o["count"] for o in d["options"]]}
    return {str(s["id"]): [s["seats_total"], s["seats_left"]] for s in d["showtimes"]}


def stale_views(lasts, truth):
    """lasts: name -> {stream: data}. The (name, stream) whose data is not the truth."""
    return [(name, stream) for name, per_stream in lasts.items() for stream, data in per_stream.items()
            if data_view(stream, data) != truth[stream]]


# ---- --selftest: each check, shown to fail on what it targets ---------------------------

def selftest_case():
    """A small history, state and set of events that pass every check."""
    state = {
        "redpacket": {"current": "1", "rounds": {"1": {"count": "3", "total_cents": "300",
                                                       "users": {"g1": "0", "g2": "1"}, "amounts": [100, 150, 50],
                                                       "winners": ["1 150 2000 g2", "0 100 1000 g1"]}}},
        "poll": {"current": "1", "options": ["A", "B"], "voters": {"v1": "0", "v3": "1"}, "counts": {"0": "1", "1": "1"}},
        "cinema": {"listed": ["1"], "showtimes": {"1": {"seats_total": "10", "seats_left": "8"}},
                   "bookings": {"1": {"showtime": "1", "user": "b1", "seats": "2"}}},
    }
    base = {"cinema": {"showtimes": {"1": {"seats_total": "10", "seats_left": "10"}}}}

    def op(kind, who, outcome, reply, form=None, status=200):
        return {"kind": kind, "who": who, "server": "s1", "outcome": outcome, "status": status,
                "reply": reply, "form": form or {}}
    ops = [
        op("grab", "g1", "ok", {"round": 1, "packet": 0, "amount_cents": 100}),
        op("grab", "g2", "unknown", "timeout", status=None),
        op("grab", "g3", "failed", {"message": "nothing was changed"}, status=503),
        op("vote", "v1", "ok", {"voted_for": "A"}),
        op("vote", "v2", "failed", {"message": "nothing was changed"}, status=503),
        op("book", "b1", "ok", {"booking": 1, "showtime": 1, "seats": 2}, {"seats": "2"}),
        op("book", "b2", "refused", {"message": "sold out"}, {"seats": "9"}, status=409),
    ]
    rp = json.dumps({"round": 1, "count": 3, "remaining": 1, "winners": [{"packet": 1, "amount_cents": 150},
                                                                          {"packet": 0, "amount_cents": 100}]})
    subscribers = {"s1 /redpacket/events": [(1.0, "redpacket", 5, rp), (2.0, "redpacket", 5, rp)],
                   "s2 /redpacket/events": [(1.5, "redpacket", 5, rp)]}
    return state, base, ops, subscribers


def run_checks(state, base, ops, subscribers):
    lasts = {name: {ev[-1][1]: ev[-1][3]} for name, ev in subscribers.items() if ev}
    truth = truth_views(state)
    stale = stale_views(lasts, truth)
    return {
        "ok-writes-stored": check_ok_stored(ops, state),
        "failed-not-stored": check_none_stored(ops, state),
        "one-packet-each": check_holdings(ops, state),
        "seats-within": check_seats(state, base),
        "tallies-are-voters": check_tallies(state),
        "versions-forward": check_versions(subscribers),
        "one-id-one-text": check_same_bytes(subscribers),
        "subscribers-converge": (not stale, f"stale: {stale}" if stale else "all show the truth"),
    }


def doctorings():
    """(what is broken, the check it targets, how to break it)."""
    def set_outcome(who, outcome):
        return lambda s, b, ops, subs: [o.update(outcome=outcome) for o in ops if o["who"] == who]
    return [
        ("history: an ok grab Redis never stored", "ok-writes-stored",
         lambda s, b, ops, subs: ops.append({**ops[0], "who": "g9"})),
        ("history: a stored vote answered 'nothing was changed'", "failed-not-stored", set_outcome("v1", "failed")),
        ("state: one packet held by two users", "one-packet-each",
         lambda s, b, ops, subs: s["redpacket"]["rounds"]["1"]["users"].update(g2="0")),
        ("state: a seat sold without a booking", "seats-within",
         lambda s, b, ops, subs: s["cinema"]["showtimes"]["1"].update(seats_left="7")),
        ("state: a count one more than its voters", "tallies-are-voters",
         lambda s, b, ops, subs: s["poll"]["counts"].update({"1": "2"})),
        ("events: a version that goes back", "versions-forward",
         lambda s, b, ops, subs: subs["s1 /redpacket/events"].append((3.0, "redpacket", 4, subs["s1 /redpacket/events"][0][3]))),
        ("events: one id with two texts", "one-id-one-text",
         lambda s, b, ops, subs: subs["s2 /redpacket/events"].append((2.5, "redpacket", 5, '{"round":1,"count":3,"remaining":2,"winners":[]}'))),
        ("events: a subscriber left on a stale snapshot", "subscribers-converge",
         lambda s, b, ops, subs: subs["s2 /redpacket/events"].append((2.5, "redpacket", 6, '{"round":1,"count":3,"remaining":2,"winners":[]}'))),
    ]


def selftest():
    """Prints one line per doctoring; returns the number that were not caught."""
    missed = 0
    clean = run_checks(*selftest_case())
    for name, (ok, detail) in clean.items():
        if not ok:
            print(f"selftest: the clean case fails {name}: {detail}")
            missed += 1
    for what, target, doctor in doctorings():
        case = selftest_case()
        doctor(*case)
        results = run_checks(*case)
        caught = not results[target][0]
        others = [n for n, (ok, _) in results.items() if not ok and n != target]
        print(f"selftest: {what:<55} {'caught by ' + target if caught else 'MISSED by ' + target}"
              + (f" (also {', '.join(others)})" if others else ""))
        missed += not caught
    return missed
