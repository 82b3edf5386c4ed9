"""The token-signing key: a P-256 private key in the workspace and its public JWK.

References: RFC 7518 §3.4 (ES256 on P-256), §6.2.1 (EC public JWK members); RFC 7517 (JWK);
RFC 7638 (JWK thumbprint, the ``kid``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

#: the one signature algorithm (RFC 7518 §3.4; RFC 8725 §3.1: pinned, never read from the token)
ALGORITHM = "ES256"


def token_key_path(workspace_root: Path) -> Path:
    """Where a workspace keeps its token-signing key: ``<workspace>/keys/token-es256.pem``."""
    return Path(workspace_root) / "keys" / "token-es256.pem"


# --------------------------------------------------------------------------- keys
def load_or_create_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """The P-256 signing key (RFC 7518 §3.4) in ``path``, created on first use.

    Parameters
    ----------
    path : Path
        Unencrypted PKCS#8 PEM file; created exclusively with mode 0600 (parent folders too)
        when missing.

    Returns
    -------
    ec.EllipticCurvePrivateKey
        The key, on curve SECP256R1.

    Raises
    ------
    ValueError
        The file exists but does not hold an unencrypted P-256 private key.
    """
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process created it first: use theirs
            return _load_key(path)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
            fh.flush()
            os.fsync(fh.fileno())
        return key
    return _load_key(path)


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """The P-256 private key in ``path``; ``ValueError`` naming the file otherwise."""
    data = path.read_bytes()
    what = "not an unencrypted PEM private key"
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:  # encrypted, or a password given for a plain key
        raise ValueError(f"{path}: {what} (it is encrypted); want P-256 in PKCS#8 PEM") from None
    except Exception:  # ValueError for junk, cryptography's UnsupportedAlgorithm and the like
        raise ValueError(f"{path}: {what}; want P-256 (ES256) in PKCS#8 PEM") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        kind = (f"an EC key on {key.curve.name}" if isinstance(key, ec.EllipticCurvePrivateKey)
                else f"a key of type {type(key).__name__.removesuffix('PrivateKey').lstrip('_')}")
        raise ValueError(f"{path}: holds {kind}, not a P-256 (ES256) key")
    return key


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _public_coordinates(public_key: ec.EllipticCurvePublicKey) -> dict[str, str]:
    """The required members of a P-256 public JWK (RFC 7518 §6.2.1), in RFC 7638 order."""
    if not isinstance(public_key.curve, ec.SECP256R1):
        raise ValueError(f"ES256 needs a P-256 key, not {public_key.curve.name}")
    numbers = public_key.public_numbers()
    return {"crv": "P-256", "kty": "EC",
            "x": _b64url(numbers.x.to_bytes(32, "big")), "y": _b64url(numbers.y.to_bytes(32, "big"))}


def jwk_thumbprint(public_key: ec.EllipticCurvePublicKey) -> str:
    """The RFC 7638 JWK thumbprint: base64url SHA-256 of ``{"crv","kty","x","y"}`` (sorted, no spaces)."""
    canonical = json.dumps(_public_coordinates(public_key), separators=(",", ":"), sort_keys=True)
    return _b64url(hashlib.sha256(canonical.encode("ascii")).digest())


def public_jwk(public_key: ec.EllipticCurvePublicKey) -> dict[str, str]:
    """The public key as a JWK (RFC 7517) for a JWKS endpoint, ``kid`` its RFC 7638 thumbprint."""
    return {**_public_coordinates(public_key), "kid": jwk_thumbprint(public_key),
            "alg": ALGORITHM, "use": "sig"}
