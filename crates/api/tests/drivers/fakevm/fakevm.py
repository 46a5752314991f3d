#!/usr/bin/env python3
"""Test hypervisor adapter: VMs in a JSON state file; dry_run and execute of
vm.power shutdown/start answer as the adapter protocol specifies."""
import json
import sys
import threading

lock = threading.Lock()
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


def load():
    with open(config["state_file"]) as f:
        return json.load(f)


def save(state):
    with open(config["state_file"], "w") as f:
        json.dump(state, f)


def vm_of(p):
    vms = load().get(p["host"]["id"], {})
    return vms.get(p["target"]["id"])


def desired(verb):
    return {"shutdown": "stopped", "start": "running"}.get(verb)


def dry_run(rid, p):
    vm = vm_of(p)
    vmid = p["target"]["id"]
    if vm is None:
        reply(rid, error={"code": -32001, "message": "vm %s not found" % vmid})
        return
    if vm.get("lock"):
        reply(rid, {"ok": False, "severity": "error", "reason": "vm %s is locked (%s)" % (vmid, vm["lock"]),
                    "preconditions": [{"name": "unlocked", "ok": False, "detail": vm["lock"]}], "plan": [], "effects": []})
        return
    want = desired(p["verb"])
    if vm["status"] == want:
        reply(rid, {"ok": True, "severity": "info", "preconditions": [{"name": "unlocked", "ok": True}],
                    "plan": [], "effects": [], "reason": "already %s" % want})
        return
    reply(rid, {"ok": True, "severity": "info", "preconditions": [{"name": "unlocked", "ok": True}],
                "plan": ["%s vm %s" % (p["verb"], vmid)],
                "effects": [{"target": "vm:" + vmid, "field": "status", "from": vm["status"], "to": want}]})


def execute(rid, p):
    with lock:
        state = load()
        vm = state.get(p["host"]["id"], {}).get(p["target"]["id"])
        if vm is None:
            reply(rid, error={"code": -32001, "message": "vm not found"})
            return
        before = vm["status"]
        vm["status"] = desired(p["verb"]) or before
        save(state)
    reply(rid, {"ok": True, "effects": [{"target": "vm:" + p["target"]["id"], "field": "status", "from": before, "to": vm["status"]}]})


def handle(msg):
    method = msg.get("method")
    rid = msg.get("id")
    p = msg.get("params", {})
    if method == "initialize":
        global config
        config = p.get("driver_config") or {}
        reply(rid, {"name": "fakevm", "version": "0.1.0"})
    elif method == "health":
        reply(rid, {"ok": True})
    elif method == "discover":
        vms = load().get(p["host"]["id"], {})
        items = [{"type": "vm", "id": k, "name": v["name"], "labels": v.get("labels", {}), "state": {"status": v["status"]}}
                 for k, v in sorted(vms.items())]
        reply(rid, {"items": items, "complete": True})
    elif method == "dry_run":
        dry_run(rid, p)
    elif method == "execute":
        execute(rid, p)
    elif method == "cancel":
        pass
    else:
        reply(rid, error={"code": -32601, "message": "no method " + str(method)})


for line in sys.stdin:
    line = line.strip()
    if line:
        threading.Thread(target=handle, args=(json.loads(line),), daemon=True).start()
