"""Test certificates made with the ``openssl`` CLI: a CA, a server certificate for 127.0.0.1/localhost, a client one.

A second, unrelated CA (``other_ca``) signs nothing the servers trust: a client
trusting only it must fail the handshake, and a client certificate it signed
(``rogue_cert``) must be refused by a server verifying clients.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.brokers.processes import skip_or_fail


@dataclass(frozen=True)
class Certificates:
    """Paths of PEM files generated for one test session."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path
    rogue_cert: Path
    rogue_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _ca(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.pem", directory / f"{name}-key.pem"
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN=choreograph test {name}",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip
    return cert, key


def _leaf(directory: Path, name: str, ca: tuple[Path, Path], extensions: str) -> tuple[Path, Path]:
    cert, key, csr, ext = (directory / f"{name}{s}" for s in (".pem", "-key.pem", ".csr", ".ext"))
    ext.write_text(extensions)
    _openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}", cwd=directory,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]), "-CAcreateserial",
        "-out", str(cert), "-days", "2", "-extfile", str(ext), cwd=directory,
    )  # fmt: skip
    return cert, key


def make_certificates(directory: Path) -> Certificates:
    """Generate every certificate into ``directory`` (skip, or fail with brokers required, without openssl)."""
    if shutil.which("openssl") is None:
        skip_or_fail("the openssl command is needed to generate test certificates: apt-get install openssl")
    ca = _ca(directory, "ca")
    other = _ca(directory, "other-ca")
    server = _leaf(
        directory, "server", ca,
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
    )  # fmt: skip
    client_ext = "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n"
    client = _leaf(directory, "client", ca, client_ext)
    rogue = _leaf(directory, "rogue", other, client_ext)
    return Certificates(ca[0], server[0], server[1], client[0], client[1], other[0], rogue[0], rogue[1])
