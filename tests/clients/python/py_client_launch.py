"""Run a standalone launch of the SMART Python client (PyPI fhirclient) against Hearth.

The client finds Hearth's authorize and token endpoints in the CapabilityStatement's
oauth-uris extension and builds the authorization URL with PKCE. This script plays the
browser with plain HTTP: it signs in on Hearth's sign-in form, picks the patient when
Hearth shows its picker, approves, and hands the redirect with the code to the client.
Then it reads with the client's models, verifies the id_token against Hearth's JWKS,
refreshes, and checks that presenting the rotated refresh token again is rejected.

Usage: python py_client_launch.py '<JSON config>'
  fhir_base, client_id, client_secret (optional), redirect_uri, scope
  username, password, patient_id (picked when Hearth shows the picker)

Prints one JSON object on stdout; on failure it has "error" and the exit code is 1.
"""

import json
import sys
import urllib.parse
from html.parser import HTMLParser

import jwt
import requests
from fhirclient import client
from fhirclient.models.observation import Observation
from fhirclient.models.patient import Patient

TIMEOUT_SECONDS = 30


class FormParser(HTMLParser):
    """Parser for the first form of a page: its action, inputs and submit buttons."""

    def __init__(self):
        super().__init__()
        self.action = None
        self.fields = {}
        self.buttons = []
        self.title = ""
        self._in_title = False
        self._button = None

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "title":
            self._in_title = True
        elif tag == "form" and self.action is None:
            self.action = attributes.get("action")
        elif tag == "input" and attributes.get("name"):
            self.fields[attributes["name"]] = attributes.get("value") or ""
        elif tag == "button":
            self._button = {"name": attributes.get("name"), "value": attributes.get("value"), "text": ""}

    def handle_endtag(self, tag):
        if tag == "title":
            self._in_title = False
        elif tag == "button" and self._button is not None:
            self.buttons.append(self._button)
            self._button = None

    def handle_data(self, data):
        if self._in_title:
            self.title += data
        if self._button is not None:
            self._button["text"] += data


def parse_form(response):
    if response.status_code != 200:
        raise RuntimeError(f"{response.url} returned {response.status_code}: {response.text[:300]}")
    parser = FormParser()
    parser.feed(response.text)
    if parser.action is None:
        raise RuntimeError(f"{response.url} has no form: {response.text[:300]}")
    return parser


def post_form(session, form, extra):
    """Submit a Hearth page's form with its hidden fields plus `extra`, without following
    a redirect, so the redirect to the app can be captured."""
    fields = {name: value for name, value in form.fields.items() if name in ("request", "csrf")}
    fields.update(extra)
    return session.post(form.action, data=fields, allow_redirects=False, timeout=TIMEOUT_SECONDS)


def sign_in_and_approve(authorize_url, config, report):
    """Play the user's browser from the authorization URL to the redirect with the code."""
    browser = requests.Session()
    page = parse_form(browser.get(authorize_url, timeout=TIMEOUT_SECONDS))
    report["pages"].append(page.title)
    response = post_form(
        browser, page, {"username": config["username"], "password": config["password"]}
    )
    page = parse_form(response)
    report["pages"].append(page.title)

    patient_buttons = [b for b in page.buttons if b["name"] == "patient"]
    if "name" in page.fields or patient_buttons:
        report["picker"] = [{"id": b["value"], "name": b["text"].strip()} for b in patient_buttons]
        page = parse_form(post_form(browser, page, {"patient": config["patient_id"]}))
        report["pages"].append(page.title)

    decisions = [b["value"] for b in page.buttons if b["name"] == "decision"]
    if "approve" not in decisions:
        raise RuntimeError(f"the page '{page.title}' has no approve button")
    response = post_form(browser, page, {"decision": "approve"})
    if response.status_code not in (302, 303):
        raise RuntimeError(f"approving returned {response.status_code}: {response.text[:300]}")
    return response.headers["Location"]


def read_patient_data(smart):
    patient = Patient.read(smart.patient_id, smart.server)
    search = Observation.where(struct={"patient": smart.patient_id, "_count": "10"})
    observations = list(search.perform_resources_iter(smart.server))
    return {
        "id": patient.id,
        "name": smart.human_name(patient.name[0]),
        "birth_date": patient.birthDate.isostring,
        "observation_count": len(observations),
        "observation_subjects": sorted({o.subject.reference for o in observations}),
    }


def verify_id_token(id_token, client_id):
    """Verify the id_token's RS256 signature with the keys named by Hearth's OpenID
    configuration, and return its claims."""
    issuer = jwt.decode(id_token, options={"verify_signature": False})["iss"]
    configuration = requests.get(
        f"{issuer}/.well-known/openid-configuration", timeout=TIMEOUT_SECONDS
    ).json()
    signing_key = jwt.PyJWKClient(configuration["jwks_uri"]).get_signing_key_from_jwt(id_token)
    return jwt.decode(
        id_token,
        signing_key.key,
        algorithms=configuration["id_token_signing_alg_values_supported"],
        audience=client_id,
        issuer=configuration["issuer"],
    )


def run(config, report):
    settings = {
        "app_id": config["client_id"],
        "api_base": config["fhir_base"],
        "redirect_uri": config["redirect_uri"],
        "scope": config["scope"],
    }
    if config.get("client_secret"):
        settings["app_secret"] = config["client_secret"]
    smart = client.FHIRClient(settings=settings, save_func=lambda state: None)

    authorize_url = smart.authorize_url
    auth = smart.server.auth
    report["endpoints"] = {"authorize": auth._authorize_uri, "token": auth._token_uri}
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(authorize_url).query)
    report["authorize_request"] = {
        name: query[name][0]
        for name in ("scope", "aud", "code_challenge_method", "redirect_uri")
        if name in query
    }

    callback = sign_in_and_approve(authorize_url, config, report)
    smart.handle_callback(callback)
    context = smart.launch_context
    report["token_response"] = {
        name: context.get(name)
        for name in ("patient", "scope", "token_type", "need_patient_banner", "encounter")
        if name in context
    }
    report["token_response"]["has_refresh_token"] = auth.refresh_token is not None
    report["read"] = read_patient_data(smart)
    if context.get("id_token"):
        report["id_token"] = verify_id_token(context["id_token"], config["client_id"])

    first_access_token = auth.access_token
    first_refresh_token = auth.refresh_token
    refreshed = smart.reauthorize()
    report["refresh"] = {
        "succeeded": refreshed,
        "access_token_changed": auth.access_token != first_access_token,
        "refresh_token_changed": auth.refresh_token != first_refresh_token,
        "patient": smart.launch_context.get("patient"),
        "scope": smart.launch_context.get("scope"),
        "read": read_patient_data(smart),
    }
    report["rotated_refresh_token_reuse"] = reuse_refresh_token(smart, config, first_refresh_token)


def reuse_refresh_token(smart, config, old_refresh_token):
    """Present the refresh token that the refresh replaced, as a thief holding a copy
    would, then check whether the client's current access token still works."""
    auth = smart.server.auth
    response = requests.post(
        auth._token_uri,
        data={"grant_type": "refresh_token", "refresh_token": old_refresh_token},
        auth=(config["client_id"], config["client_secret"]) if config.get("client_secret") else None,
        timeout=TIMEOUT_SECONDS,
    )
    read_after = requests.get(
        f"{config['fhir_base']}/Patient/{smart.patient_id}",
        headers={"Authorization": f"Bearer {auth.access_token}"},
        timeout=TIMEOUT_SECONDS,
    )
    return {
        "status": response.status_code,
        "error": response.json().get("error"),
        "current_token_read_status": read_after.status_code,
    }


def main():
    config = json.loads(sys.argv[1])
    report = {"pages": []}
    try:
        run(config, report)
    except Exception as error:  # noqa: BLE001 - every failure goes into the report
        report["error"] = f"{type(error).__name__}: {error}"
        print(json.dumps(report))
        return 1
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
