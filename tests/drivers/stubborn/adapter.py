#!/usr/bin/env python3
"""A switchyard adapter that does not stop with its engine.

It is the recording driver's `effect` written without the SDK, and wrong on
purpose: it ignores `cancel`, the end of its stdin and the death of the
process that started it, and carries every effect to its end. The system
tests use it to show that switchyard stops such an adapter itself before it
carries a run out again.
"""
import fcntl
import json
import os
import sys
import threading
import time

out = threading.Lock()
config = {}


def send(obj):
    with out:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()


def log(ev, p, tag):
    line = json.dumps({
        "ev": ev, "run": p["run_id"], "host": p["host"]["id"], "verb": p["verb"],
        "key": p["idempotency_key"], "tag": tag, "pid": os.getpid(),
        "t": int(time.time() * 1_000_000),
    }) + "\n"
    fd = os.open(config["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def execute(rid, p):
    params = p.get("params", {})
    tag = params.get("tag", "")
    path = os.path.join(config["locks"], p["host"]["id"] + ".lock")
    lock = open(path, "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        log("overlap", p, tag)
    log("start", p, tag)
    time.sleep(params.get("ms", 0) / 1000)
    log("end", p, tag)
    lock.close()
    send({"jsonrpc": "2.0", "id": rid, "result": {"ok": True, "output": "done"}})


threads = []
for line in sys.stdin:
    if not line.strip():
        continue
    msg = json.loads(line)
    method, rid, params = msg.get("method"), msg.get("id"), msg.get("params", {})
    if method == "initialize":
        config.update(params.get("driver_config") or {})
        os.makedirs(config["locks"], exist_ok=True)
        send({"jsonrpc": "2.0", "id": rid, "result": {"name": "stubborn", "version": "0.1.0"}})
    elif method == "execute":
        t = threading.Thread(target=execute, args=(rid, params))
        t.start()
        threads.append(t)
    elif rid is not None:
        send({"jsonrpc": "2.0", "id": rid, "error": {"code": -32004, "message": "unsupported"}})
# stdin closed: carry on regardless.
for t in threads:
    t.join()
