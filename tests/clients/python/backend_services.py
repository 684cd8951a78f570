"""SMART Backend Services against Hearth: client_credentials tokens with signed client
assertions (private_key_jwt, RFC 7523), signed here with PyJWT.

Usage:
  python backend_services.py keys DIR
      Writes an RSA key (RS384) and a P-384 key (ES384) to DIR/private-keys.json, their
      public JWKS to DIR/jwks.json (to register inline or to serve as the JWKS URL), and a
      second RSA key that is registered nowhere.
  python backend_services.py run '<JSON config>'
      config: token_url, fhir_base, keys_dir, clients (a list of client ids whose
      registered keys are those of jwks.json), scope, patient_id
      Gets a token for each client with each algorithm and reads the patient and its
      Observations with it, then sends assertions that must be rejected.

Prints one JSON object on stdout; on failure it has "error" and the exit code is 1.
"""

import json
import sys
import time
import uuid
from pathlib import Path

import jwt
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

TIMEOUT_SECONDS = 30
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

# Key id and algorithm of each key in private-keys.json. The "unregistered" key is in no JWKS.
KEYS = {"rsa": ("rsa-1", "RS384"), "ec": ("ec-1", "ES384"), "unregistered": ("rsa-2", "RS384")}


def private_pem(key):
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def public_jwk(key, kid, alg):
    if alg.startswith("RS"):
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    else:
        jwk = jwt.algorithms.ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    jwk.update({"kid": kid, "alg": alg, "use": "sig"})
    return jwk


def write_keys(directory):
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    generated = {
        "rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "ec": ec.generate_private_key(ec.SECP384R1()),
        "unregistered": rsa.generate_private_key(public_exponent=65537, key_size=2048),
    }
    private = {name: private_pem(key) for name, key in generated.items()}
    registered = [public_jwk(generated[name], *KEYS[name]) for name in ("rsa", "ec")]
    (directory / "private-keys.json").write_text(json.dumps(private))
    (directory / "jwks.json").write_text(json.dumps({"keys": registered}))


class Backend:
    """Signer of client assertions for one client, which also requests tokens with them."""

    def __init__(self, config, client_id):
        self.config = config
        self.client_id = client_id
        keys_dir = Path(config["keys_dir"])
        self.private = json.loads((keys_dir / "private-keys.json").read_text())

    def assertion(self, key="rsa", alg=None, kid=None, signing_key=None, **overrides):
        """Return a client assertion that Hearth must accept, changed by the arguments."""
        default_kid, default_alg = KEYS[key]
        now = int(time.time())
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": self.config["token_url"],
            "exp": now + 240,
            "iat": now,
            "jti": str(uuid.uuid4()),
        }
        claims.update(overrides)
        headers = {"kid": kid or default_kid, "typ": "JWT"}
        return jwt.encode(
            claims,
            signing_key if signing_key is not None else self.private[key],
            algorithm=alg or default_alg,
            headers=headers,
        )

    def request_token(self, assertion, scope=None):
        response = requests.post(
            self.config["token_url"],
            data={
                "grant_type": "client_credentials",
                "scope": scope or self.config["scope"],
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": assertion,
            },
            timeout=TIMEOUT_SECONDS,
        )
        try:
            body = response.json()
        except ValueError:
            body = {"text": response.text[:300]}
        return response.status_code, body


def read_with(config, access_token):
    """Read the patient, count its Observations (following next links) and try a search
    that the scopes do not allow."""
    headers = {"Authorization": f"Bearer {access_token}", "Accept": "application/fhir+json"}
    fhir = config["fhir_base"]
    patient = requests.get(
        f"{fhir}/Patient/{config['patient_id']}", headers=headers, timeout=TIMEOUT_SECONDS
    )
    result = {"patient_status": patient.status_code}
    if patient.status_code == 200:
        name = patient.json()["name"][0]
        result["patient_name"] = " ".join(name.get("given", []) + [name.get("family", "")])
    url = f"{fhir}/Observation?patient={config['patient_id']}&_count=20"
    count = 0
    while url:
        page = requests.get(url, headers=headers, timeout=TIMEOUT_SECONDS)
        if page.status_code != 200:
            result["observation_status"] = page.status_code
            return result
        bundle = page.json()
        count += len(bundle.get("entry", []))
        url = next((link["url"] for link in bundle.get("link", []) if link["relation"] == "next"), None)
    result["observation_status"] = 200
    result["observation_count"] = count
    # The token's scopes name Patient and Observation only.
    encounters = requests.get(
        f"{fhir}/Encounter?patient={config['patient_id']}", headers=headers, timeout=TIMEOUT_SECONDS
    )
    result["out_of_scope_status"] = encounters.status_code
    return result


def accepted_tokens(config):
    """Get one token per registered client and algorithm, and read with each."""
    results = []
    for client_id in config["clients"]:
        backend = Backend(config, client_id)
        for key in ("rsa", "ec"):
            status, body = backend.request_token(backend.assertion(key=key))
            result = {"client_id": client_id, "alg": KEYS[key][1], "status": status}
            result.update({name: body.get(name) for name in ("scope", "token_type", "expires_in", "error", "error_description")})
            if status == 200:
                result.update(read_with(config, body["access_token"]))
            results.append(result)
    return results


def rejected_assertions(config):
    """Send assertions that break one rule each, and return each one's status and error."""
    backend = Backend(config, config["clients"][0])
    now = int(time.time())
    other_key = backend.private["unregistered"]
    cases = {
        "exp_more_than_5_minutes_ahead": backend.assertion(exp=now + 600),
        "expired": backend.assertion(exp=now - 120, iat=now - 180),
        "wrong_aud": backend.assertion(aud=config["fhir_base"]),
        "iss_differs_from_sub": backend.assertion(sub="someone-else"),
        "alg_rs256": backend.assertion(alg="RS256"),
        "alg_hs256": backend.assertion(alg="HS256", signing_key="a shared secret that nobody registered"),
        "unknown_kid": backend.assertion(kid="rsa-2", signing_key=other_key),
        "registered_kid_other_key": backend.assertion(kid="rsa-1", signing_key=other_key),
    }
    results = {}
    for case, assertion in cases.items():
        status, body = backend.request_token(assertion)
        results[case] = {"status": status, "error": body.get("error"), "description": body.get("error_description")}

    # The same assertion twice: the first use succeeds, the second reuses its jti.
    assertion = backend.assertion()
    first_status, _ = backend.request_token(assertion)
    status, body = backend.request_token(assertion)
    results["reused_jti"] = {
        "first_status": first_status,
        "status": status,
        "error": body.get("error"),
        "description": body.get("error_description"),
    }

    # A valid assertion asking only for a patient scope gets no token.
    status, body = backend.request_token(backend.assertion(), scope="patient/*.rs")
    results["non_system_scope"] = {"status": status, "error": body.get("error"), "description": body.get("error_description")}
    return results


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "keys":
        write_keys(sys.argv[2])
        return 0
    if len(sys.argv) != 3 or sys.argv[1] != "run":
        print(__doc__, file=sys.stderr)
        return 2
    config = json.loads(sys.argv[2])
    report = {}
    try:
        report["accepted"] = accepted_tokens(config)
        report["rejected"] = rejected_assertions(config)
    except Exception as error:  # noqa: BLE001 - every failure goes into the report
        report["error"] = f"{type(error).__name__}: {error}"
        print(json.dumps(report))
        return 1
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
