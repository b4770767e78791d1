#!/usr/bin/env python3
"""A tenant's identity provider as an attacker: what forged tokens naming its
issuer cost the reference server, and what they do to another tenant.

    cargo build --release -p tenancy-examples --bin tenancy-server
    python3 benches/idp_attack.py target/release/tenancy-server

Serves, over HTTPS on loopback (a throw-away CA made with openssl), two
Keycloak-shaped realms: `big`, whose JWK set holds 5,000 Ed25519 keys, and
`cap`, whose set holds 64 (the most a set may hold). Starts the server with
the CA as `auth.ca_file` and `TENANCY_EGRESS_ALLOW=127.0.0.1`, gives tenants
`big` and `cap` those realms, then:

1. times forged tokens (EdDSA, no `kid`, a random signature) naming each
   issuer, one after another on one connection;
2. sends such tokens for `cap` on four connections for ten seconds, with the
   failure throttle off (the raw cost; with it on, the address is refused
   after its burst), while a super_admin of the platform lists tenants on
   a fifth connection, and reports that caller's median;
3. the same super_admin calls with nobody attacking, as the baseline.

Prints one line per figure. Needs python3 with the `cryptography` package and
the openssl command.
"""

import base64
import http.client
import json
import os
import secrets
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

SECRET = "idp-attack-secret-0123456789abcdef0123"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256(claims: dict) -> str:
    import hashlib
    import hmac

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    sig = hmac.new(SECRET.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


def ed25519_jwks(count: int) -> dict:
    keys = []
    for _ in range(count):
        public = Ed25519PrivateKey.generate().public_key()
        raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
        keys.append({"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "x": b64(raw)})
    return {"keys": keys}


def make_ca(directory: str) -> tuple[str, str, str]:
    ca_key, ca_pem = f"{directory}/ca.key", f"{directory}/ca.pem"
    key, csr, pem = f"{directory}/idp.key", f"{directory}/idp.csr", f"{directory}/idp.pem"
    ext = f"{directory}/ext.cnf"
    run = lambda *args: subprocess.run(args, check=True, capture_output=True)
    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-nodes", "-keyout", ca_key, "-out", ca_pem, "-days", "1", "-subj", "/CN=attack CA")
    run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1")
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\n")
    run("openssl", "x509", "-req", "-in", csr, "-CA", ca_pem, "-CAkey", ca_key,
        "-CAcreateserial", "-out", pem, "-days", "1", "-extfile", ext)
    return ca_pem, pem, key


def serve_idp(cert: str, key: str, documents: dict) -> int:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = documents.get(self.path)
            if body is None:
                self.send_response(404)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1]


def start_server(binary: str, config: str, throttle: bool) -> tuple[subprocess.Popen, int]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "TENANCY_BIND": "127.0.0.1:0",
        "TENANCY_JWT_SECRET": SECRET,
        "TENANCY_CONFIG": config,
        "TENANCY_EGRESS_ALLOW": "127.0.0.1",
        "TENANCY_AUTH_THROTTLE": "true" if throttle else "false",
        "TENANCY_RATE_LIMITS": "false",
        "RUST_LOG": "warn",
    }
    process = subprocess.Popen([binary], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    for line in process.stdout:
        if "listening on " in line:
            port = int(line.rsplit(":", 1)[1].strip().rstrip("/"))
            threading.Thread(target=lambda: [None for _ in process.stdout], daemon=True).start()
            return process, port
    raise SystemExit("the server did not start")


def call(conn, method, path, token=None, body=None):
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    start = time.perf_counter()
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    response.read()
    return response.status, time.perf_counter() - start


def forged(issuer: str) -> str:
    head = b64(json.dumps({"alg": "EdDSA", "typ": "JWT"}).encode())
    body = b64(json.dumps({"iss": issuer, "sub": "x", "aud": "tenancy", "role": "admin",
                           "exp": int(time.time()) + 600}).encode())
    return f"{head}.{body}.{b64(secrets.token_bytes(64))}"


def main() -> None:
    binary = sys.argv[1] if len(sys.argv) > 1 else "target/release/tenancy-server"
    work = tempfile.mkdtemp(prefix="idp-attack-")
    ca, cert, key = make_ca(work)
    documents: dict = {}
    port = serve_idp(cert, key, documents)
    issuers = {}
    for realm, count in [("big", 5000), ("cap", 64)]:
        issuer = f"https://127.0.0.1:{port}/realms/{realm}"
        issuers[realm] = issuer
        documents[f"/realms/{realm}/.well-known/openid-configuration"] = json.dumps(
            {"issuer": issuer, "jwks_uri": f"{issuer}/certs"}).encode()
        documents[f"/realms/{realm}/certs"] = json.dumps(ed25519_jwks(count)).encode()
    print(f"JWK sets: big {len(documents['/realms/big/certs'])} bytes, "
          f"cap {len(documents['/realms/cap/certs'])} bytes")
    config = f"{work}/tenancy.toml"
    with open(config, "w") as f:
        f.write(f'[auth]\nca_file = "{ca}"\n')

    root = hs256({"iss": "tenancy-dev", "sub": "root", "role": "super_admin",
                  "tenant_id": "platform", "exp": int(time.time()) + 3600})
    for throttle in [False, True]:
        process, server_port = start_server(binary, config, throttle)
        try:
            conn = http.client.HTTPConnection("127.0.0.1", server_port)
            for tenant in ["big", "cap", "acme"]:
                call(conn, "POST", "/api/v1/tenants", root, json.dumps(
                    {"tenant_id": tenant, "name": tenant, "plan": "pro",
                     "contact_email": f"it@{tenant}.test"}))
            for realm in ["big", "cap"]:
                status, _ = call(conn, "PATCH", f"/api/v1/tenants/{realm}", root, json.dumps(
                    {"realm": {"issuer": issuers[realm], "discovery": True,
                               "audience": ["tenancy"]}}))
                assert status == 200, status
            label = "throttle on" if throttle else "throttle off"
            for realm in ["big", "cap"]:
                times, statuses = [], {}
                for _ in range(40):
                    status, seconds = call(conn, "GET", "/api/v1/metrics/query",
                                           forged(issuers[realm]))
                    statuses[status] = statuses.get(status, 0) + 1
                    times.append(seconds)
                print(f"[{label}] forged token naming {realm}'s issuer: median "
                      f"{statistics.median(times) * 1000:.2f} ms, max {max(times) * 1000:.2f} ms, "
                      f"answers {statuses}")
            if throttle:
                continue
            baseline = [call(conn, "GET", "/api/v1/tenants", root)[1] for _ in range(200)]
            stop = threading.Event()
            sent = [0]

            def attack():
                attacker = http.client.HTTPConnection("127.0.0.1", server_port)
                while not stop.is_set():
                    call(attacker, "GET", "/api/v1/metrics/query", forged(issuers["cap"]))
                    sent[0] += 1

            threads = [threading.Thread(target=attack) for _ in range(4)]
            for thread in threads:
                thread.start()
            during = []
            deadline = time.time() + 10
            while time.time() < deadline:
                status, seconds = call(conn, "GET", "/api/v1/tenants", root)
                assert status == 200, status
                during.append(seconds)
            stop.set()
            for thread in threads:
                thread.join()
            print(f"[{label}] another tenant's super_admin call: median "
                  f"{statistics.median(baseline) * 1000:.2f} ms alone, "
                  f"{statistics.median(during) * 1000:.2f} ms during the attack "
                  f"({sent[0] / 10:.0f} forged tokens/s on 4 connections)")
        finally:
            process.terminate()
            process.wait()


if __name__ == "__main__":
    main()
