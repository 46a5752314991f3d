#!/usr/bin/env python3
"""maintenance-flag: a switchyard adapter in plain Python (no dependencies).

Protocol (docs/DRIVERS.md): JSON-RPC 2.0, one JSON object per line on stdin
(requests, and the `cancel` notification) and stdout (responses). Log to
stderr; a line starting with "[<run_id>] " is attached to that run.
"""
import json
import os
import re
import sys

FLAG_ID = re.compile(r"^[a-z0-9_-]{1,64}$")
flag_dir = "/tmp/switchyard-maintenance"


class Fail(Exception):
    """An error reply: code -32001 not found, -32002 precondition, -32003 transient, -32004 unsupported."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


def log(run_id, message):
    sys.stderr.write("[%s] %s\n" % (run_id, message) if run_id else message + "\n")
    sys.stderr.flush()


def flag_path(target):
    if target.get("type") != "flag" or not FLAG_ID.match(target.get("id", "")):
        raise Fail(-32001, "no such flag target: %r" % target)
    return os.path.join(flag_dir, target["id"])


def initialize(p):
    global flag_dir
    flag_dir = (p.get("driver_config") or {}).get("flag_dir", flag_dir)
    os.makedirs(flag_dir, exist_ok=True)
    return {"name": "maintenance-flag", "version": "0.1.0"}


def discover(p):
    items = []
    for name in sorted(os.listdir(flag_dir)):
        if FLAG_ID.match(name):
            items.append({"type": "flag", "id": name, "name": name, "labels": {}, "state": {"raised": True}})
    return {"items": items, "complete": True}


def desired(verb):
    if verb not in ("raise", "lower"):
        raise Fail(-32004, "unknown verb %s" % verb)
    return verb == "raise"


def dry_run(p):
    path = flag_path(p["target"])
    want = desired(p["verb"])
    have = os.path.exists(path)
    writable = os.access(flag_dir, os.W_OK)
    result = {
        "ok": writable,
        "severity": "info" if writable else "error",
        "preconditions": [{"name": "flag_dir writable", "ok": writable, "detail": flag_dir}],
        "plan": [],
        "effects": [],
    }
    if not writable:
        result["reason"] = "%s is not writable" % flag_dir
    elif have == want:
        result["plan"] = ["nothing to do: flag %s is already %s" % (p["target"]["id"], "raised" if have else "lowered")]
    else:
        result["plan"] = ["%s %s" % ("create" if want else "remove", path)]
        result["effects"] = [{"target": p["target"]["id"], "field": "raised", "from": have, "to": want}]
    return result


def execute(p):
    path = flag_path(p["target"])
    want = desired(p["verb"])
    have = os.path.exists(path)
    if have == want:
        log(p["run_id"], "flag %s already in place" % p["target"]["id"])
        return {"ok": True, "effects": [], "output": "already %s" % ("raised" if want else "lowered")}
    if want:
        with open(path, "w") as f:
            f.write(p.get("params", {}).get("reason", "") + "\n")
    else:
        os.remove(path)
    log(p["run_id"], "%s %s" % ("raised" if want else "lowered", path))
    return {"ok": True, "effects": [{"target": p["target"]["id"], "field": "raised", "from": have, "to": want}], "output": path}


def health(p):
    ok = os.access(flag_dir, os.W_OK)
    return {"ok": ok, "detail": flag_dir}


METHODS = {"initialize": initialize, "discover": discover, "dry_run": dry_run, "execute": execute, "health": health}


def main():
    for line in sys.stdin:
        if not line.strip():
            continue
        msg = json.loads(line)
        if "id" not in msg:  # a notification: `cancel` (every request here is quick)
            continue
        reply = {"jsonrpc": "2.0", "id": msg["id"]}
        try:
            method = METHODS.get(msg.get("method"))
            if method is None:
                raise Fail(-32601, "unknown method %s" % msg.get("method"))
            reply["result"] = method(msg.get("params") or {})
        except Fail as e:
            reply["error"] = {"code": e.code, "message": str(e)}
        except Exception as e:  # never die on one bad request
            reply["error"] = {"code": -32603, "message": "%s: %s" % (type(e).__name__, e)}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
