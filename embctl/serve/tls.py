"""``--ssl-certfile`` / ``--ssl-keyfile``: HTTPS, so that a bearer token does not cross a LAN
in clear text.

uvicorn loads the pair itself when the server starts; :func:`check_tls` loads it first, so
that every mistake is one line (exit 2) before anything listens: one file without the other,
a missing or unreadable file, a file that is not PEM, a key that does not belong to the
certificate, a key encrypted with a passphrase (which OpenSSL would otherwise ask for on the
terminal, or uvicorn fail on with a traceback).
"""

from __future__ import annotations

from pathlib import Path

from embctl.errors import UsageError


class _Encrypted(Exception):
    """Raised by the password callback: the key wants a passphrase."""


def _no_password() -> str:
    raise _Encrypted()


def check_pair(certfile: Path | None, keyfile: Path | None) -> None:
    """Both or neither."""
    if (certfile is None) != (keyfile is None):
        given, missing = (("--ssl-certfile", "--ssl-keyfile") if keyfile is None
                          else ("--ssl-keyfile", "--ssl-certfile"))
        raise UsageError(f"{given} needs {missing} too: HTTPS takes a certificate and its "
                         "private key")


def _read(flag: str, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{flag} {path}: {exc.strerror or exc}") from None


def check_tls(certfile: Path, keyfile: Path) -> None:
    """Load the certificate (chain) and its key as the server will, or raise a one-line
    UsageError saying what is wrong with which file."""
    import ssl

    if b"-----BEGIN CERTIFICATE-----" not in _read("--ssl-certfile", certfile):
        raise UsageError(f"--ssl-certfile {certfile}: not a PEM certificate (no "
                         "'-----BEGIN CERTIFICATE-----')")
    if b"PRIVATE KEY-----" not in _read("--ssl-keyfile", keyfile):
        raise UsageError(f"--ssl-keyfile {keyfile}: not a PEM private key (no "
                         "'-----BEGIN ... PRIVATE KEY-----')")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(certfile, keyfile, password=_no_password)
    except _Encrypted:
        raise UsageError(f"--ssl-keyfile {keyfile}: the key is encrypted with a passphrase; "
                         "give it unencrypted (readable by the server's user only), e.g. "
                         "`openssl pkey -in KEY -out KEY.plain`") from None
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise UsageError(f"--ssl-keyfile {keyfile} is not the private key of "
                             f"--ssl-certfile {certfile}") from None
        why = " ".join(str(exc.reason or exc).split())
        raise UsageError(f"--ssl-certfile {certfile}, --ssl-keyfile {keyfile}: OpenSSL cannot "
                         f"load them ({why})") from None
    except OSError as exc:
        raise UsageError(f"--ssl-certfile {certfile}, --ssl-keyfile {keyfile}: "
                         f"{exc.strerror or exc}") from None
