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
"""

import argparse
import base64
import hashlib
import json
import os
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
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


def main():
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
