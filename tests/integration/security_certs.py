"""Test certificates for the security suites: a CA, a server certificate for 127.0.0.1 and
localhost, and client certificates, made with the openssl command line into a directory.

Owns: nothing but files in the directory it is given; every key is a throw-away test key.
"""

import subprocess
from pathlib import Path


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certs(d: Path) -> dict:
    """Creates ca.pem, server.pem (chain + key), server-cert.pem, server-key.pem,
    server-key-enc.pem (PKCS#8 encrypted with 'keypass'), client.pem / client-key.pem
    (subject C=US,O=Acme,OU=eng,CN=alice) and returns their paths by name."""
    d.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca-key.pem",
             "-out", "ca.pem", "-days", "2", "-subj", "/CN=josefine-test-ca", cwd=d)
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    # Any extension makes a v3 certificate, which webpki requires of client certificates.
    (d / "client.ext").write_text("basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n")
    for name, subj, ext in [("server", "/CN=localhost", ["-extfile", "san.ext"]),
                            ("client", "/C=US/O=Acme/OU=eng/CN=alice", ["-extfile", "client.ext"])]:
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}-key.pem",
                 "-out", f"{name}.csr", "-subj", subj, cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem",
                 "-CAcreateserial", "-out", f"{name}-cert.pem", "-days", "2", *ext, cwd=d)
    _openssl("pkcs8", "-topk8", "-in", "server-key.pem", "-out", "server-key-enc.pem",
             "-v2", "aes-256-cbc", "-passout", "pass:keypass", cwd=d)
    (d / "server.pem").write_text((d / "server-key.pem").read_text()
                                  + (d / "server-cert.pem").read_text())
    (d / "client.pem").write_text((d / "client-cert.pem").read_text())
    return {p.stem: p for p in d.glob("*.pem")}
