"""The LDAP authenticator against a real slapd (tests.ldap_server): simple binds as the original makes
them, every base and user_object in turn, names escaped, and no error of ldap3 or the socket layer escaping."""

from __future__ import annotations

import logging
from typing import Literal

import pytest

from tests.ldap_server import PEOPLE, STAFF, SUFFIX, USERS, LdapServer
from tests.redis_server import free_port
from vmpooler_core.auth import LdapAuthenticator
from vmpooler_core.config import LdapSettings

PASSWORD = {user.name: user.password for user in USERS}


def authenticator(port: int, base: tuple[str, ...] = (PEOPLE,), user_object: tuple[str, ...] = ("uid",),
                  encryption: Literal["start_tls", "simple_tls", "none"] = "none") -> LdapAuthenticator:
    return LdapAuthenticator(LdapSettings("127.0.0.1", port, base, user_object, encryption))


def test_the_right_password_binds(ldap_server: LdapServer) -> None:
    # Before the fix every bind raised struct.error: ldap3 packs the receive timeout as two C longs.
    assert authenticator(ldap_server.port).authenticate("jdoe", PASSWORD["jdoe"]) is True


@pytest.mark.parametrize(("user", "password"), [("jdoe", "wrong"), ("jdoe", PASSWORD["alice"]),
                                                ("nobody", PASSWORD["jdoe"]), ("jdoe", ""), ("", "x")])
def test_a_wrong_password_an_unknown_user_or_an_empty_field_is_refused(ldap_server: LdapServer, user: str,
                                                                       password: str) -> None:
    # An empty password would be an unauthenticated bind, which slapd answers with success.
    assert authenticator(ldap_server.port).authenticate(user, password) is False


def test_a_name_full_of_dn_syntax_is_escaped_and_binds(ldap_server: LdapServer) -> None:
    assert authenticator(ldap_server.port).authenticate("smith, j=r+x", PASSWORD["smith, j=r+x"]) is True
    assert authenticator(ldap_server.port).authenticate("smith", PASSWORD["smith, j=r+x"]) is False


@pytest.mark.parametrize("user", ["jdoe,ou=people", "jdoe,ou=people,dc=example,dc=test", "*)(uid=*",
                                  "jdoe)(uid=*", "jdoe\\", "jdoe+cn=jdoe", "jdoe;ou=people", "#jdoe"])
def test_dn_syntax_in_a_name_cannot_reach_another_entry(ldap_server: LdapServer, user: str) -> None:
    # With the base dc=example,dc=test, `jdoe,ou=people` unescaped would be jdoe's own DN and bind.
    assert authenticator(ldap_server.port, base=(SUFFIX,)).authenticate(user, PASSWORD["jdoe"]) is False


def test_every_base_is_tried_in_turn(ldap_server: LdapServer) -> None:
    assert authenticator(ldap_server.port, base=(PEOPLE,)).authenticate("alice", PASSWORD["alice"]) is False
    both = authenticator(ldap_server.port, base=(PEOPLE, STAFF))
    assert both.authenticate("alice", PASSWORD["alice"]) is True
    assert both.authenticate("jdoe", PASSWORD["jdoe"]) is True
    assert both.authenticate("alice", PASSWORD["jdoe"]) is False


def test_every_user_object_is_tried_in_turn(ldap_server: LdapServer) -> None:
    assert authenticator(ldap_server.port).authenticate("carol", PASSWORD["carol"]) is False
    both = authenticator(ldap_server.port, base=(STAFF, PEOPLE), user_object=("uid", "cn"))
    assert both.authenticate("carol", PASSWORD["carol"]) is True
    assert both.authenticate("alice", PASSWORD["alice"]) is True
    assert both.authenticate("carol", "wrong") is False


@pytest.mark.parametrize("encryption", ["start_tls", "simple_tls"])
def test_tls_the_directory_does_not_offer_is_refused_not_raised(ldap_server: LdapServer, encryption: Literal[
        "start_tls", "simple_tls"], caplog: pytest.LogCaptureFixture) -> None:
    # The test slapd has no certificate: StartTLS is refused by it, and a TLS handshake gets plain LDAP.
    with caplog.at_level(logging.WARNING, logger="vmpooler.auth"):
        assert authenticator(ldap_server.port, encryption=encryption).authenticate("jdoe", PASSWORD["jdoe"]) is False
    assert_logged_without_secrets(caplog, PASSWORD["jdoe"])


@pytest.mark.parametrize("encryption", ["none", "start_tls", "simple_tls"])
def test_a_directory_that_is_down_is_logged_and_refused(caplog: pytest.LogCaptureFixture, encryption: Literal[
        "start_tls", "simple_tls", "none"]) -> None:
    with caplog.at_level(logging.WARNING, logger="vmpooler.auth"):
        checker = authenticator(free_port(), base=(PEOPLE, STAFF), encryption=encryption)
        assert checker.authenticate("jdoe", PASSWORD["jdoe"]) is False
    assert_logged_without_secrets(caplog, PASSWORD["jdoe"])


@pytest.mark.parametrize("host", ["ldap://[::1", "ldap://127.0.0.1:notaport"])
def test_a_host_ldap3_cannot_parse_is_logged_and_refused(caplog: pytest.LogCaptureFixture, host: str) -> None:
    checker = LdapAuthenticator(LdapSettings(host, 389, (PEOPLE,), ("uid",), "none"))
    with caplog.at_level(logging.WARNING, logger="vmpooler.auth"):
        assert checker.authenticate("jdoe", PASSWORD["jdoe"]) is False
    assert_logged_without_secrets(caplog, PASSWORD["jdoe"])


def test_a_directory_stopped_after_a_bind_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    server = LdapServer().start()
    try:
        checker = authenticator(server.port)
        assert checker.authenticate("jdoe", PASSWORD["jdoe"]) is True
        server.stop()
        with caplog.at_level(logging.WARNING, logger="vmpooler.auth"):
            assert checker.authenticate("jdoe", PASSWORD["jdoe"]) is False
    finally:
        server.remove()
    assert_logged_without_secrets(caplog, PASSWORD["jdoe"])


def assert_logged_without_secrets(caplog: pytest.LogCaptureFixture, password: str) -> None:
    """At least one warning from the authenticator; none with a traceback or the password."""
    records = [record for record in caplog.records if record.name == "vmpooler.auth"]
    assert records and all(record.levelno == logging.WARNING for record in records)
    assert all(record.exc_info is None for record in caplog.records)
    assert password not in caplog.text and "Traceback" not in caplog.text
