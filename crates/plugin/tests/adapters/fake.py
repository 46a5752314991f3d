#!/usr/bin/env python3
"""A deliberately misbehaving switchyard adapter for supervisor tests.

`execute` does what params.action says: echo, sleep (honours cancel),
hang (ignores cancel), crash, garbage, huge, error, stderr, bad_result.
"""
import json
import os
import sys
import threading
import time

lock = threading.Lock()
cancelled = set()
config = {}


def send(obj):
    with lock:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()


def reply(rid, result=None, error=None):
    msg = {"jsonrpc": "2.0", "id": rid}
    if error is not None:
        msg["error"] = error
    else:
        msg["result"] = result
    send(msg)


def execute(rid, p):
    params = p.get("params", {})
    action = params.get("action", "echo")
    run = p.get("run_id", "")
    if action == "echo":
        reply(rid, {"ok": True, "output": json.dumps({"pid": os.getpid(), "host": p["host"], "params": params, "deadline_ms": p["deadline_ms"]})})
    elif action == "sleep":
        end = time.time() + params.get("ms", 0) / 1000
        while time.time() < end:
            if rid in cancelled:
                reply(rid, error={"code": -32003, "message": "cancelled"})
                return
            time.sleep(0.01)
        reply(rid, {"ok": True, "output": "slept %d" % os.getpid()})
    elif action == "hang":
        time.sleep(3600)
    elif action == "crash":
        sys.stderr.write("boom: giving up\n")
        sys.stderr.flush()
        time.sleep(0.05)
        os._exit(3)
    elif action == "garbage":
        with lock:
            sys.stdout.write("this is not json\n")
            sys.stdout.flush()
    elif action == "huge":
        with lock:
            sys.stdout.write("x" * params.get("bytes", 10) + "\n")
            sys.stdout.flush()
    elif action == "error":
        reply(rid, error={"code": params.get("code", -32002), "message": params.get("message", "nope")})
    elif action == "stderr":
        time.sleep(params.get("pre_ms", 0) / 1000)
        for line in params.get("tagged", []):
            sys.stderr.write("[%s] %s\n" % (run, line))
        for line in params.get("untagged", []):
            sys.stderr.write("%s\n" % line)
        sys.stderr.flush()
        time.sleep(params.get("hold_ms", 0) / 1000)
        reply(rid, {"ok": True})
    elif action == "long_stderr":
        sys.stderr.write("[%s] " % run + "e" * params.get("bytes", 10) + "\n")
        sys.stderr.flush()
        # stderr and stdout are read apart: let the line reach its run first.
        time.sleep(0.5)
        reply(rid, {"ok": True})
    elif action == "leak":
        secret = params.get("secret") or p["host"]["config"].get("token", "")
        sys.stderr.write("token is %s\n" % secret)
        sys.stderr.flush()
        time.sleep(0.05)
        reply(rid, {"ok": False, "output": "sent " + secret, "reason": "rejected " + secret})
    elif action == "leak_error":
        secret = params.get("secret") or p["host"]["config"].get("token", "")
        reply(rid, error={"code": -32002, "message": "bad token " + secret})
    elif action == "bad_result":
        reply(rid, {"okay": "maybe"})
    else:
        reply(rid, error={"code": -32004, "message": "unknown action " + action})


def handle(msg):
    method = msg.get("method")
    rid = msg.get("id")
    p = msg.get("params", {})
    if method == "initialize":
        global config
        config = p.get("driver_config") or {}
        if config.get("init_log"):
            with open(config["init_log"], "a") as f:
                f.write("%d\n" % os.getpid())
        if config.get("fail_init"):
            reply(rid, error={"code": -32603, "message": "cannot initialize: " + config["fail_init"]})
            return
        reply(rid, {"name": "fake", "version": "0.0.1"})
    elif method == "cancel":
        cancelled.add(p.get("id"))
    elif method == "health":
        reply(rid, {"ok": True, "detail": str(os.getpid())})
    elif method == "discover":
        reply(rid, {"items": [{"type": "vm", "id": "100", "name": "db-1", "labels": {"env": "prod"}}], "complete": True})
    elif method == "execute":
        execute(rid, p)
    else:
        reply(rid, error={"code": -32601, "message": "no method " + str(method)})


for line in sys.stdin:
    line = line.strip()
    if not line:
        continue
    threading.Thread(target=handle, args=(json.loads(line),), daemon=True).start()
