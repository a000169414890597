"""StartTLS and LDAPS against a real slapd with a certificate from a test CA made here (tests.tls_certs),
configured through the loader as an administrator would: refused without the CA (the system's CAs do not
know it), with another CA, or for a name the certificate does not hold; accepted with `ca_file`, or with
the explicit and logged `verify_certificate: false`. The original's Net::LDAP `encryption` hash works too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from tests.api.conftest import TestClient, config_text
from tests.api.helpers import basic, expect_json
from tests.conftest import make_config
from tests.ldap_server import PEOPLE, USERS, LdapServer
from tests.tls_certs import TlsFiles, make_tls_files
from vmpooler_core import auth
from vmpooler_core.auth import Verdict
from vmpooler_core.metrics import NullMetrics
from vmpoolerd.api import create_app

PASSWORD = {user.name: user.password for user in USERS}


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    # The certificate names localhost only, so that 127.0.0.1 is a name it does not hold.
    return make_tls_files(tmp_path_factory.mktemp("ldap-tls"), hosts=("localhost",))


@pytest.fixture(scope="module")
def tls_server(tls_files: TlsFiles) -> Iterator[LdapServer]:
    server = LdapServer(tls=tls_files).start()
    yield server
    server.remove()


def ldap_yaml(server: LdapServer, encryption: str, extra: str = "", host: str = "localhost") -> str:
    port = server.tls_port if "simple_tls" in encryption else server.port
    return (f"auth:\n  provider: ldap\n  ldap:\n    host: {host}\n    port: {port}\n    base: '{PEOPLE}'\n"
            f"    encryption: {encryption}\n    timeout: 2\n{extra}")


def check(text: str) -> Verdict:
    config = make_config(text + "providers: {dummy: {}}\npools: []\n")
    checker = auth.from_settings(config.auth)
    assert checker is not None
    return checker.check("jdoe", PASSWORD["jdoe"], 10)


def refused_for(verdict: Verdict) -> str:
    assert verdict.unavailable, verdict
    return verdict.faults[0].reason


@pytest.mark.parametrize("encryption", ["start_tls", "simple_tls"])
def test_the_certificate_is_verified_by_default(tls_server: LdapServer, tls_files: TlsFiles, encryption: str) -> None:
    assert "certificate verify failed" in refused_for(check(ldap_yaml(tls_server, encryption)))
    assert check(ldap_yaml(tls_server, encryption, f"    ca_file: {tls_files.ca}\n")).user == "jdoe"
    other = ldap_yaml(tls_server, encryption, f"    ca_file: {tls_files.other_ca}\n")
    assert "certificate verify failed" in refused_for(check(other))
    # The right CA, but a name the certificate does not hold.
    wrong_name = ldap_yaml(tls_server, encryption, f"    ca_file: {tls_files.ca}\n", host="127.0.0.1")
    assert "mismatch" in refused_for(check(wrong_name))


@pytest.mark.parametrize("encryption", ["start_tls", "simple_tls"])
def test_the_opt_out_is_explicit_and_logged(tls_server: LdapServer, encryption: str,
                                            caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="vmpooler.auth"):
        assert check(ldap_yaml(tls_server, encryption, "    verify_certificate: false\n")).user == "jdoe"
    assert "verify_certificate is false" in caplog.text


@pytest.mark.parametrize(("encryption", "logged"), [
    ("{method: ':start_tls', tls_options: {ca_file: '%s', ssl_version: TLSv1}}", ""),
    ("{':method': simple_tls, ':tls_options': {':ca_file': '%s'}}", ""),
    ("{method: start_tls, tls_options: {verify_mode: 0}}", "verify_certificate is false"),
])
def test_the_originals_encryption_hash(tls_server: LdapServer, tls_files: TlsFiles, encryption: str, logged: str,
                                       caplog: pytest.LogCaptureFixture) -> None:
    text = ldap_yaml(tls_server, encryption.replace("%s", str(tls_files.ca)))
    with caplog.at_level(logging.WARNING):
        assert check(text).user == "jdoe"
    assert logged in caplog.text
    if "ssl_version" in encryption:  # the original's, unused here: named in the one warning of such keys
        assert "auth.ldap.encryption.tls_options.ssl_version" in caplog.text


def test_tls_refused_is_503_with_the_reason_never_401(tls_server: LdapServer, redis_url: str) -> None:
    config = make_config(config_text(redis_url) + ldap_yaml(tls_server, "start_tls"))
    with TestClient(create_app(config, metrics=NullMetrics()), raise_server_exceptions=False) as client:
        body = expect_json(client.post("/api/v1/token", headers=basic("jdoe", PASSWORD["jdoe"])), False, 503)
        directory = client.get("/status").json()["directory"]
    assert body["code"] == "directory_unavailable" and "certificate verify failed" in body["reason"]
    assert directory["state"] == "unavailable" and "certificate verify failed" in str(directory["hosts"])
