"""Seeded random sessions for the differential test: many small operations, every reply recorded.

Two clients (both asked for exceptions) submit jobs of every kind to two functions with a few
uniques; three workers (each with ONE function, so geartrain's global priorities cannot differ from
gearmand's per-function ones) grab, report progress, finish, fail or raise; an admin connection
asks for status listings; handles are queried. After every operation each connection is drained
with an ECHO round trip, so what it received is recorded without relying on timing.

Left out on purpose (deliberate differences, see test_deliberate.py): disconnects (requeue order,
merged background jobs), a background submission joining a foreground job (uniques "u1" and "-" are
used by one kind of submission only), CANT_DO, CAN_DO_TIMEOUT, workers with two functions, and the
default --worker-wakeup (both servers run with --worker-wakeup 0). Each unique belongs to one
function, so GET_STATUS_UNIQUE is never ambiguous (sessions.py has that case on its own).
"""

from __future__ import annotations

import random

from geartrain.protocol import T

from .differential import ANY, HELD, Admin, Drain, Open, Recv, Send, Session

CLIENTS = ("c1", "c2")
WORKERS = {"w1": b"a", "w2": b"b", "w3": b"a"}
FOREGROUND = (T.SUBMIT_JOB, T.SUBMIT_JOB_HIGH, T.SUBMIT_JOB_LOW)
BACKGROUND = (T.SUBMIT_JOB_BG, T.SUBMIT_JOB_HIGH_BG, T.SUBMIT_JOB_LOW_BG)
#: uniques by kind of submission; u1 is only ever a job of function a, u2 of function b
FG_UNIQUES = (b"", b"", b"u1")
BG_UNIQUES = (b"", b"", b"u2", b"-")


def random_session(seed: int, ops: int = 60) -> Session:
    rnd = random.Random(seed)
    conns = (*CLIENTS, *WORKERS, "o")
    steps: list = [Open(c) for c in conns]
    for c in CLIENTS:
        steps += [Send(c, T.OPTION_REQ, b"exceptions"), Recv(c, T.OPTION_RES)]
    for w, func in WORKERS.items():
        steps += [Send(w, T.CAN_DO, func)]
    seen_handles = 0
    for n in range(ops):
        kind = rnd.choices(["submit", "grab", "progress", "finish", "sleep", "status", "unique", "admin"],
                           weights=[30, 20, 10, 20, 5, 6, 4, 5])[0]
        if kind == "submit":
            c = rnd.choice(CLIENTS)
            data = b"d%d" % rnd.randrange(3)
            background = rnd.random() < 0.5
            ptype = rnd.choice(BACKGROUND if background else FOREGROUND)
            unique = rnd.choice(BG_UNIQUES if background else FG_UNIQUES)
            func = {b"u1": b"a", b"u2": b"b"}.get(unique) or rnd.choice((b"a", b"b"))
            steps += [Send(c, ptype, func, unique, data), Recv(c, T.JOB_CREATED)]
            seen_handles += 1
        elif kind == "grab":
            w = rnd.choice(list(WORKERS))
            steps += [Send(w, rnd.choice((T.GRAB_JOB, T.GRAB_JOB_UNIQ, T.GRAB_JOB_ALL))), Recv(w, ANY)]
        elif kind == "progress":
            w = rnd.choice(list(WORKERS))
            ptype = rnd.choice((T.WORK_STATUS, T.WORK_DATA, T.WORK_WARNING))
            args = (b"%d" % n, b"100") if ptype == T.WORK_STATUS else (b"p%d" % n,)
            steps += [Send(w, ptype, HELD, *args)]
        elif kind == "finish":
            w = rnd.choice(list(WORKERS))
            ptype = rnd.choices((T.WORK_COMPLETE, T.WORK_FAIL, T.WORK_EXCEPTION), weights=(6, 2, 2))[0]
            steps += [Send(w, ptype, HELD, b"r%d" % n) if ptype != T.WORK_FAIL else Send(w, ptype, HELD)]
        elif kind == "sleep":
            steps += [Send(rnd.choice(list(WORKERS)), T.PRE_SLEEP)]
        elif kind == "status" and seen_handles:
            c = rnd.choice(CLIENTS)
            steps += [Send(c, T.GET_STATUS, b"<H%d>" % rnd.randint(1, seen_handles)), Recv(c, T.STATUS_RES)]
        elif kind == "unique":
            c = rnd.choice(CLIENTS)
            steps += [Send(c, T.GET_STATUS_UNIQUE, rnd.choice((b"u1", b"u2"))), Recv(c, T.STATUS_RES_UNIQUE)]
        elif kind == "admin":
            steps += [Admin("o", rnd.choice((b"status", b"prioritystatus", b"show jobs", b"show unique jobs")),
                            listing=True)]
        steps += [Drain(c) for c in conns]
    return Session(f"random-{seed}", steps, args=("--worker-wakeup", "0"))


SEEDS = range(1, 9)
RANDOM_SESSIONS = {s.name: s for s in (random_session(seed) for seed in SEEDS)}
