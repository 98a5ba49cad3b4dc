"""Certificates for TLS on the hop between the sidecars in the end-to-end suite, made
with the openssl command line (no Python package needed): a CA, the inbound sidecar's
server certificate (for 127.0.0.1, the host the outbound dials, and a DNS name), and the
outbound sidecar's client certificate, whose identity is a SPIFFE ID.

    python3 hop_certs.py DIR     writes ca.crt, server.crt/.key, client.crt/.key to DIR
"""

import subprocess
import sys
from pathlib import Path

SERVER_NAME = "inbound.bloscar.e2e"
CLIENT_ID = "spiffe://bloscar.e2e/ns/e2e/sa/client"

CA_EXTENSIONS = """basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
"""
SERVER_EXTENSIONS = f"""basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:{SERVER_NAME}, IP:127.0.0.1
"""
CLIENT_EXTENSIONS = f"""basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectAltName = URI:{CLIENT_ID}
"""


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def request(name: str, subject: str, cwd: Path) -> None:
    """A P-256 key NAME.key (PKCS#8) and its certificate request NAME.csr."""
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject, cwd=cwd)


def make(directory: Path) -> dict:
    """Writes the files to DIRECTORY; returns their paths by role."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "ca.ext").write_text(CA_EXTENSIONS)
    (directory / "server.ext").write_text(SERVER_EXTENSIONS)
    (directory / "client.ext").write_text(CLIENT_EXTENSIONS)
    request("ca", "/CN=bloscar e2e CA", directory)
    openssl("x509", "-req", "-in", "ca.csr", "-signkey", "ca.key", "-days", "2", "-out", "ca.crt",
            "-extfile", "ca.ext", cwd=directory)
    for name, subject in (("server", "/CN=inbound sidecar"), ("client", "/CN=outbound sidecar")):
        request(name, subject, directory)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "2", "-out", f"{name}.crt", "-extfile", f"{name}.ext",
                cwd=directory)
    return {name: str(directory / name) for name in
            ("ca.crt", "server.crt", "server.key", "client.crt", "client.key")}


def sidecar_env(files: dict, mutual: bool) -> tuple:
    """The BLOSCAR_ variables of the inbound and of the outbound sidecar, for TLS on the
    hop (the outbound checks the server certificate for the host it dials, 127.0.0.1)
    and, with MUTUAL, a client certificate that the inbound checks for the SPIFFE ID."""
    inbound = {
        "BLOSCAR_INBOUND_TLS_CERT": files["server.crt"],
        "BLOSCAR_INBOUND_TLS_KEY": files["server.key"],
    }
    outbound = {"BLOSCAR_OUTBOUND_TLS_CA": files["ca.crt"]}
    if mutual:
        inbound["BLOSCAR_INBOUND_TLS_CLIENT_CA"] = files["ca.crt"]
        inbound["BLOSCAR_INBOUND_TLS_ALLOWED_SANS"] = CLIENT_ID
        outbound["BLOSCAR_OUTBOUND_TLS_CERT"] = files["client.crt"]
        outbound["BLOSCAR_OUTBOUND_TLS_KEY"] = files["client.key"]
    return inbound, outbound


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    for role, path in make(Path(sys.argv[1])).items():
        print(f"{role}: {path}")
