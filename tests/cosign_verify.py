#!/usr/bin/env python3
"""Independent verifier of a cosign key-pair image signature.

Written from cosign's published format (sigstore/cosign specs/SIGNATURE_SPEC.md:
tag-based discovery, OCI image manifest storage, simple-signing payload,
ECDSA-P256/SHA-256 signature in the `dev.cosignproject.cosign/signature`
layer annotation), not from Metis's Rust code, so the two can disagree.

    cosign_verify.py --key cosign.pub --signature-manifest sig.json \
        --blobs DIR --image-manifest manifest.json [-a key=value ...]

DIR holds blobs as in an OCI image layout: DIR/sha256/<hex>.
Exit 0 and "Verified OK" when at least one signature layer checks out;
exit 1 with the reason otherwise.

    cosign_verify.py key --key cosign.key [--pub cosign.pub]   (password in COSIGN_PASSWORD)

decrypts a cosign encrypted private key the way go-securesystemslib's
`encrypted` package defines it (scrypt, then NaCl secretbox = XSalsa20 +
Poly1305, tag first; XSalsa20 written out below from the Salsa20 and
XSalsa20 papers, since `cryptography` lacks it) and checks it is the private
half of the public key. Exit 0 and "Key OK <fingerprint of the public half>",
or 1 with the reason.
"""

import argparse
import base64
import hashlib
import json
import os
import struct
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, poly1305, serialization
from cryptography.hazmat.primitives.asymmetric import ec

SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
PAYLOAD_TYPE = "cosign container image signature"


def digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def check_layer(key, layer, blobs, image_digest, claims):
    algo, _, hexpart = layer["digest"].partition(":")
    if algo != "sha256":
        return "layer digest algorithm %r unsupported" % algo
    path = os.path.join(blobs, "sha256", hexpart)
    try:
        with open(path, "rb") as f:
            payload = f.read()
    except OSError as e:
        return "payload blob not found: %s" % e
    if digest(payload) != layer["digest"] or len(payload) != layer["size"]:
        return "payload blob does not match its descriptor"
    sig_b64 = (layer.get("annotations") or {}).get(SIGNATURE_ANNOTATION)
    if not sig_b64:
        return "layer has no signature annotation"
    try:
        key.verify(base64.b64decode(sig_b64, validate=True), payload, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError) as e:
        return "signature does not verify: %r" % e
    doc = json.loads(payload)
    critical = doc["critical"]
    if critical["type"] != PAYLOAD_TYPE:
        return "payload type is %r" % critical["type"]
    if critical["image"]["docker-manifest-digest"] != image_digest:
        return "payload signs %s, image is %s" % (critical["image"]["docker-manifest-digest"], image_digest)
    optional = doc.get("optional") or {}
    for k, v in claims.items():
        if optional.get(k) != v:
            return "annotation %s is %r, wanted %r" % (k, optional.get(k), v)
    return None


MASK = 0xFFFFFFFF


def _rotl(v, c):
    return ((v << c) & MASK) | (v >> (32 - c))


def _rounds(x):
    def qr(a, b, c, d):
        x[b] ^= _rotl((x[a] + x[d]) & MASK, 7)
        x[c] ^= _rotl((x[b] + x[a]) & MASK, 9)
        x[d] ^= _rotl((x[c] + x[b]) & MASK, 13)
        x[a] ^= _rotl((x[d] + x[c]) & MASK, 18)

    for _ in range(10):
        qr(0, 4, 8, 12); qr(5, 9, 13, 1); qr(10, 14, 2, 6); qr(15, 3, 7, 11)
        qr(0, 1, 2, 3); qr(5, 6, 7, 4); qr(10, 11, 8, 9); qr(15, 12, 13, 14)


def _state(key, sixteen):
    k = struct.unpack("<8I", key)
    n = struct.unpack("<4I", sixteen)
    c = struct.unpack("<4I", b"expand 32-byte k")
    return [c[0], k[0], k[1], k[2], k[3], c[1], n[0], n[1],
            n[2], n[3], c[2], k[4], k[5], k[6], k[7], c[3]]


def _xsalsa20_stream(key, nonce, length):
    x = _state(key, nonce[:16])
    _rounds(x)  # HSalsa20: no feed-forward
    subkey = struct.pack("<8I", *(x[i] for i in (0, 5, 10, 15, 6, 7, 8, 9)))
    out = bytearray()
    counter = 0
    while len(out) < length:
        s = _state(subkey, nonce[16:24] + struct.pack("<Q", counter))
        x = list(s)
        _rounds(x)
        out += struct.pack("<16I", *((a + b) & MASK for a, b in zip(x, s)))
        counter += 1
    return bytes(out[:length])


def secretbox_open(box, nonce, key):
    tag, ciphertext = box[:16], box[16:]
    stream = _xsalsa20_stream(key, nonce, 32 + len(ciphertext))
    mac = poly1305.Poly1305(stream[:32])
    mac.update(ciphertext)
    mac.verify(tag)  # raises InvalidSignature
    return bytes(a ^ b for a, b in zip(ciphertext, stream[32:]))


def check_key(args):
    with open(args.key, "rb") as f:
        lines = f.read().decode().strip().splitlines()
    if lines[0] not in ("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----",
                        "-----BEGIN ENCRYPTED COSIGN PRIVATE KEY-----"):
        print("not a cosign encrypted private key: %s" % lines[0])
        return 1
    envelope = json.loads(base64.b64decode("".join(lines[1:-1])))
    kdf, cipher = envelope["kdf"], envelope["cipher"]
    if kdf["name"] != "scrypt" or cipher["name"] != "nacl/secretbox":
        print("unexpected kdf/cipher %s/%s" % (kdf["name"], cipher["name"]))
        return 1
    params = kdf["params"]
    key = hashlib.scrypt(os.environ.get("COSIGN_PASSWORD", "").encode(),
                         salt=base64.b64decode(kdf["salt"]), n=params["N"], r=params["r"],
                         p=params["p"], maxmem=256 * 1024 * 1024, dklen=32)
    try:
        der = secretbox_open(base64.b64decode(envelope["ciphertext"]),
                             base64.b64decode(cipher["nonce"]), key)
    except InvalidSignature:
        print("secretbox authentication failed (wrong password?)")
        return 1
    private = serialization.load_der_private_key(der, password=None)
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    derived = private.public_key().public_bytes(*spki)
    if args.pub:
        with open(args.pub, "rb") as f:
            public = serialization.load_pem_public_key(f.read())
        if derived != public.public_bytes(*spki):
            print("the private key is not the private half of %s" % args.pub)
            return 1
    print("Key OK %s" % hashlib.sha256(derived).hexdigest())
    return 0


def main():
    if sys.argv[1:2] == ["key"]:
        kp = argparse.ArgumentParser(prog="cosign_verify.py key")
        kp.add_argument("--key", required=True)
        kp.add_argument("--pub")
        return check_key(kp.parse_args(sys.argv[2:]))
    ap = argparse.ArgumentParser()
    ap.add_argument("--key", required=True)
    ap.add_argument("--signature-manifest", required=True)
    ap.add_argument("--blobs", required=True)
    ap.add_argument("--image-manifest", required=True)
    ap.add_argument("-a", action="append", default=[])
    args = ap.parse_args()

    with open(args.key, "rb") as f:
        key = serialization.load_pem_public_key(f.read())
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        print("key is not ECDSA P-256")
        return 1
    with open(args.image_manifest, "rb") as f:
        image_digest = digest(f.read())
    with open(args.signature_manifest, "rb") as f:
        manifest = json.load(f)
    claims = dict(a.split("=", 1) for a in args.a)

    layers = [l for l in manifest.get("layers", []) if l.get("mediaType") == SIMPLE_SIGNING]
    if not layers:
        print("no simple-signing layer")
        return 1
    reasons = []
    for layer in layers:
        reason = check_layer(key, layer, args.blobs, image_digest, claims)
        if reason is None:
            print("Verified OK")
            return 0
        reasons.append(reason)
    print("; ".join(reasons))
    return 1


if __name__ == "__main__":
    sys.exit(main())
