"""How OAuth client secrets are stored: an HMAC-SHA256 digest, as API keys are.

django-oauth-toolkit hashes client secrets with a Django password hasher. A password hasher
is slow on purpose (PBKDF2's million rounds: 214 ms of CPU per check, measured here), which
protects short human secrets; a client secret is 128 random characters, so guessing it is
hopeless anyway, and a slow hash would only add that CPU to every token request a machine
client makes (and hand anyone sending bad secrets a cheap way to burn it). The digest is
keyed with API_KEY_HMAC_SECRET, so a copy of the table does not let anyone test guesses
offline; rotating that secret invalidates every client secret, as it does every API key.
"""

import hashlib
import hmac

from django.conf import settings
from django.contrib.auth.hashers import BasePasswordHasher, mask_hash
from django.utils.crypto import constant_time_compare


class ClientSecretHasher(BasePasswordHasher):
    algorithm = "hmac_sha256"

    def encode(self, password: str, salt: str) -> str:
        self._check_encode_args(password, salt)  # type: ignore[attr-defined]  # Django's, left out of the stubs
        key = settings.API_KEY_HMAC_SECRET.encode()
        digest = hmac.new(key, f"{salt}${password}".encode(), hashlib.sha256).hexdigest()
        return f"{self.algorithm}${salt}${digest}"

    def decode(self, encoded: str) -> dict:
        algorithm, salt, digest = encoded.split("$", 2)
        assert algorithm == self.algorithm
        return {"algorithm": algorithm, "hash": digest, "salt": salt}

    def verify(self, password: str, encoded: str) -> bool:
        return constant_time_compare(encoded, self.encode(password, self.decode(encoded)["salt"]))

    def safe_summary(self, encoded: str) -> dict:
        decoded = self.decode(encoded)
        return {"algorithm": decoded["algorithm"], "salt": mask_hash(decoded["salt"]), "hash": "…"}

    def must_update(self, encoded: str) -> bool:
        return False

    def harden_runtime(self, password: str, encoded: str) -> None:
        pass  # one HMAC takes the same time for every secret
