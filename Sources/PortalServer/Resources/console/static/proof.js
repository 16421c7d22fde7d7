// The ledger page's own check of an entry's inclusion proof, so an auditor need not take the server's
// word: the entry's bytes hashed as an RFC 9162 leaf, the proof folded to a root, the root and size
// compared with the checkpoint's, and the checkpoint's Ed25519 signature checked against the verifier key,
// all with WebCrypto in this browser. The data comes from the page (#proof-data, data-proof); "Check again" rereads it.
"use strict";
(() => {
  const encoder = new TextEncoder();
  const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  const fromBase64 = (text) => Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  const concat = (...parts) => {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) { out.set(p, at); at += p.length; }
    return out;
  };
  const sha256 = async (bytes) => new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  const equal = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

  // RFC 8785: members sorted by UTF-16 code units, ECMAScript number and string serialization.
  const canonical = (value) => {
    if (value === null || typeof value !== "object") return JSON.stringify(value);
    if (Array.isArray(value)) return "[" + value.map(canonical).join(",") + "]";
    return "{" + Object.keys(value).sort().map((k) => JSON.stringify(k) + ":" + canonical(value[k])).join(",") + "}";
  };

  // RFC 9162 section 2.1.3.2.
  const rootFromInclusion = async (index, size, leaf, proof) => {
    if (index >= size) throw new Error("the entry's index is not below the tree size");
    let fn = index, sn = size - 1, r = leaf;
    for (const p of proof) {
      if (sn === 0) throw new Error("the proof is longer than the tree allows");
      if (fn % 2 === 1 || fn === sn) {
        r = await sha256(concat(Uint8Array.of(1), p, r));
        if (fn % 2 === 0) { while (fn % 2 === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); } }
      } else {
        r = await sha256(concat(Uint8Array.of(1), r, p));
      }
      fn = Math.floor(fn / 2); sn = Math.floor(sn / 2);
    }
    if (sn !== 0) throw new Error("the proof is shorter than the tree needs");
    return r;
  };

  // C2SP signed note: the Ed25519 signature line whose key ID matches a verifier key of type 0x01.
  const checkSignature = async (note, keysText) => {
    const split = note.indexOf("\n\n");
    if (split < 0) throw new Error("the checkpoint is not a signed note");
    const body = encoder.encode(note.slice(0, split + 1));
    const lines = note.slice(split + 2).split("\n").filter((l) => l.startsWith("\u2014 "));
    for (const keyLine of keysText.split("\n").filter((l) => l.trim() !== "")) {
      // name+keyID+base64: the base64 part may itself contain "+".
      const [name, id, ...rest] = keyLine.trim().split("+");
      const material = rest.join("+");
      const key = fromBase64(material || "");
      if (key.length !== 33 || key[0] !== 1) continue;
      const keyID = (await sha256(concat(encoder.encode(name + "\n"), key))).slice(0, 4);
      if (hex(keyID) !== id) throw new Error("the verifier key's ID does not match its name and key");
      for (const line of lines) {
        const [, signer, encoded] = line.split(" ");
        const signature = fromBase64(encoded || "");
        if (signer !== name || signature.length !== 68 || !equal(signature.slice(0, 4), keyID)) continue;
        let publicKey;
        try {
          publicKey = await crypto.subtle.importKey("raw", key.slice(1), { name: "Ed25519" }, false, ["verify"]);
        } catch (e) {
          return { checked: false, detail: "this browser's WebCrypto has no Ed25519; the signature was not checked here" };
        }
        const ok = await crypto.subtle.verify({ name: "Ed25519" }, publicKey, signature.slice(4), body);
        if (!ok) throw new Error("the checkpoint's Ed25519 signature does not verify with key " + id);
        return { checked: true, detail: "Ed25519 signature by " + name + " (key ID " + id + ") verifies" };
      }
    }
    throw new Error("no Ed25519 signature of the checkpoint matches a verifier key");
  };

  const run = async () => {
    const out = document.getElementById("proof-result");
    const source = document.getElementById("proof-data");
    if (!out || !source) return;
    const steps = [];
    const show = (verdict, message) => {
      out.className = "result " + verdict;
      out.dataset.verdict = verdict;
      out.replaceChildren();
      const head = document.createElement("p");
      const strong = document.createElement("strong");
      strong.textContent = message;
      head.append(strong);
      const list = document.createElement("ul");
      for (const s of steps) { const li = document.createElement("li"); li.textContent = s; list.append(li); }
      out.append(head, list);
    };
    try {
      const data = JSON.parse(source.dataset.proof);
      const entryBytes = encoder.encode(data.entryText);
      if (canonical(JSON.parse(data.entryText)) !== data.entryText) throw new Error("the entry is not in canonical form (RFC 8785)");
      steps.push("the entry is in canonical form (RFC 8785)");
      const leaf = await sha256(concat(Uint8Array.of(0), entryBytes));
      if (hex(leaf) !== data.hash) throw new Error("the entry's leaf hash is " + hex(leaf) + ", not the " + data.hash + " the server gave");
      steps.push("leaf hash SHA-256(0x00 ‖ entry) = " + hex(leaf));
      const note = data.checkpoint;
      const body = note.slice(0, note.indexOf("\n\n")).split("\n");
      const size = Number(body[1]);
      if (!Number.isSafeInteger(size) || size !== data.treeSize) throw new Error("the checkpoint's size " + body[1] + " is not the proof's tree size " + data.treeSize);
      const root = await rootFromInclusion(data.seq, data.treeSize, leaf, data.inclusionProof.map(fromBase64));
      if (!equal(root, fromBase64(body[2]))) throw new Error("the proof leads to root " + btoa(String.fromCharCode(...root)) + ", not the checkpoint's " + body[2]);
      steps.push("the inclusion proof (" + data.inclusionProof.length + " hashes) leads to the checkpoint's root at size " + size);
      const signature = await checkSignature(note, data.keys);
      steps.push(signature.detail);
      show(signature.checked ? "pass" : "partial", signature.checked
        ? "Verified in this browser: entry " + data.seq + " is in the signed ledger of " + size + " entries."
        : "Proof verified in this browser; the signature was not (see below).");
    } catch (e) {
      steps.push(String(e.message || e));
      show("fail", "The check failed: do not rely on this entry.");
    }
  };

  document.addEventListener("DOMContentLoaded", () => {
    const again = document.getElementById("check-proof");
    if (again) again.addEventListener("click", run);
    run();
  });
})();
