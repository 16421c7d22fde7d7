#!/usr/bin/env python3
"""The soak's independent checkpoint verifier (PyPI aics-tlog, Python 3.12): one JSON request per line on
stdin, one JSON answer per line on stdout.

  {"vkey": "<Ed25519 vkey>", "note": "<checkpoint note>", "old": {"size": n, "root": "<base64>"} | null,
   "proof": ["<base64>", ...]}
  -> {"ok": true, "size": n, "root": "<base64>"} or {"ok": false, "error": "..."}

The note's Ed25519 signature is checked against the vkey, and, with an older checkpoint, the consistency
proof from it to the note's tree (RFC 9162 2.1.4.2).
"""
import base64
import json
import sys

import aics_tlog


def check(request):
    note_text = request["note"]
    origin = note_text.split("\n", 1)[0]
    result = aics_tlog.verify_checkpoint(aics_tlog.parse_note(note_text), aics_tlog.parse_vkey(request["vkey"]), expected_origin=origin)
    if not result.ok:
        return {"ok": False, "error": "checkpoint signature: %s" % result.error}
    lines = note_text.split("\n")
    size, root = int(lines[1]), base64.b64decode(lines[2])
    old = request.get("old")
    if old and old["size"] > 0:
        proof = [base64.b64decode(p) for p in request.get("proof", [])]
        if not aics_tlog.verify_consistency(old["size"], size, base64.b64decode(old["root"]), root, proof):
            return {"ok": False, "error": "no consistency from size %d to %d" % (old["size"], size)}
    return {"ok": True, "size": size, "root": base64.b64encode(root).decode()}


for line in sys.stdin:
    try:
        answer = check(json.loads(line))
    except Exception as error:  # a malformed note or proof is a failed check, reported, not a crash
        answer = {"ok": False, "error": "%s: %s" % (type(error).__name__, error)}
    print(json.dumps(answer), flush=True)
