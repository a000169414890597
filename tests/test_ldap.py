"""The LDAP authenticator against a real slapd (tests.ldap_server): simple binds as the original makes
them, every host, port, base and user_object in turn, names escaped and returned as the directory spells
them, a host that cannot be asked told apart from wrong credentials, and no error of ldap3 or the socket
layer escaping."""

from __future__ import annotations

import pytest

from tests.conftest import make_config
from tests.ldap_server import PEOPLE, STAFF, SUFFIX, USERS, LdapServer
from tests.redis_server import free_port
from vmpooler_core import auth
from vmpooler_core.auth import Verdict
from vmpooler_core.config import Encryption, LdapSettings
from vmpooler_core.ldap_directory import LdapAuthenticator

PASSWORD = {user.name: user.password for user in USERS}
ANN = "ann*(ops)\\#;<>\""


def authenticator(port: int, base: tuple[str, ...] = (PEOPLE,), user_object: tuple[str, ...] = ("uid",),
                  encryption: Encryption = "none", host: str = "127.0.0.1", timeout: int = 5) -> LdapAuthenticator:
    return LdapAuthenticator(LdapSettings((host,), (port,), base, user_object, encryption, timeout=timeout))


def user_of(checker: auth.Authenticator, user: str, password: str) -> str | None:
    verdict = checker.check(user, password, 10)
    assert not verdict.faults, verdict
    return verdict.user


def test_the_right_password_binds(ldap_server: LdapServer) -> None:
    # Before the fix every bind raised struct.error: ldap3 packs the receive timeout as two C longs.
    assert user_of(authenticator(ldap_server.port), "jdoe", PASSWORD["jdoe"]) == "jdoe"


@pytest.mark.parametrize(("user", "password"), [("jdoe", "wrong"), ("jdoe", PASSWORD["alice"]),
                                                ("nobody", PASSWORD["jdoe"]), ("jdoe", ""), ("", "x")])
def test_a_wrong_password_an_unknown_user_or_an_empty_field_is_refused(ldap_server: LdapServer, user: str,
                                                                       password: str) -> None:
    # An empty password would be an unauthenticated bind, which slapd answers with success.
    verdict = authenticator(ldap_server.port).check(user, password, 10)
    assert verdict.user is None and not verdict.faults and not verdict.unavailable


@pytest.mark.parametrize("user", ["smith, j=r+x", ANN])
def test_a_name_full_of_dn_and_filter_syntax_is_escaped_and_binds(ldap_server: LdapServer, user: str) -> None:
    assert user_of(authenticator(ldap_server.port), user, PASSWORD[user]) == user
    assert user_of(authenticator(ldap_server.port), user.split(",")[0].split("*")[0], PASSWORD[user]) is None


@pytest.mark.parametrize("user", ["jdoe,ou=people", "jdoe,ou=people,dc=example,dc=test", "*)(uid=*",
                                  "jdoe)(uid=*", "jdoe\\", "jdoe+cn=jdoe", "jdoe;ou=people", "#jdoe", "*",
                                  "jdoe\x00", "ann*"])
def test_dn_syntax_in_a_name_cannot_reach_another_entry(ldap_server: LdapServer, user: str) -> None:
    # With the base dc=example,dc=test, `jdoe,ou=people` unescaped would be jdoe's own DN and bind.
    assert user_of(authenticator(ldap_server.port, base=(SUFFIX,)), user, PASSWORD["jdoe"]) is None


@pytest.mark.parametrize(("typed", "canonical"), [("jdoe", "jdoe"), ("JDOE", "jdoe"), (" jdoe", "jdoe"),
                                                  ("jDoe ", "jdoe"), ("maryann", "MaryAnn"), ("MARYANN", "MaryAnn")])
def test_the_name_is_returned_as_the_directory_spells_it(ldap_server: LdapServer, typed: str, canonical: str) -> None:
    # uid matches without regard to case or surrounding spaces, so each of these binds as the same entry:
    # one user, however typed.
    password = PASSWORD[canonical]
    assert user_of(authenticator(ldap_server.port), typed, password) == canonical


def test_every_base_is_tried_in_turn(ldap_server: LdapServer) -> None:
    assert user_of(authenticator(ldap_server.port, base=(PEOPLE,)), "alice", PASSWORD["alice"]) is None
    both = authenticator(ldap_server.port, base=(PEOPLE, STAFF))
    assert user_of(both, "alice", PASSWORD["alice"]) == "alice"
    assert user_of(both, "jdoe", PASSWORD["jdoe"]) == "jdoe"
    assert user_of(both, "alice", PASSWORD["jdoe"]) is None


def test_every_user_object_is_tried_in_turn(ldap_server: LdapServer) -> None:
    assert user_of(authenticator(ldap_server.port), "carol", PASSWORD["carol"]) is None
    both = authenticator(ldap_server.port, base=(STAFF, PEOPLE), user_object=("uid", "cn"))
    assert user_of(both, "carol", PASSWORD["carol"]) == "carol"
    assert user_of(both, "CAROL", PASSWORD["carol"]) == "carol"  # cn is read back as uid is
    assert user_of(both, "alice", PASSWORD["alice"]) == "alice"
    assert user_of(both, "carol", "wrong") is None


def ldap_yaml(ldap: str) -> str:
    return f"auth:\n  provider: ldap\n  ldap:\n{ldap}providers: {{dummy: {{}}}}\npools: []\n"


@pytest.mark.parametrize("shape", [
    # The original's era A: one of each, as strings.
    "    host: 127.0.0.1\n    port: {port}\n    base: '{people}'\n    user_object: uid\n",
    # Today's: lists.
    "    host: [127.0.0.1]\n    port: [{port}]\n    base: ['{staff}', '{people}']\n    user_object: [uid, cn]\n",
    # The original split strings on whitespace: two bases and two user objects in one string each.
    "    host: 127.0.0.1\n    port: {port}\n    base: '{staff} {people}'\n    user_object: 'uid cn'\n",
    # A host that refuses (nothing listens on 127.0.0.2) and a port nothing listens on, before the real one.
    "    host: [127.0.0.2, 127.0.0.1]\n    port: [{dead}, {port}]\n    base: ['{people}']\n    user_object: uid\n",
    # Without a base: the user object's DN alone (no entry is named so here).
    "    host: 127.0.0.1\n    port: {port}\n",
])
def test_every_config_shape_logs_in_against_the_directory(ldap_server: LdapServer, shape: str) -> None:
    text = shape.format(port=ldap_server.port, people=PEOPLE, staff=STAFF, dead=free_port())
    config = make_config(ldap_yaml(text + "    encryption: none\n"))
    checker = auth.from_settings(config.auth)
    assert checker is not None
    verdict = checker.check("JDOE", PASSWORD["jdoe"], 10)
    if "base" not in shape:
        assert verdict == Verdict(None, (), (f"ldap://127.0.0.1:{ldap_server.port}",))
        return
    assert verdict.user == "jdoe"
    if "dead" not in shape:
        assert not verdict.faults
    if "cn]" in shape or "uid cn" in shape:
        assert checker.check("carol", PASSWORD["carol"], 10).user == "carol"
        assert checker.check("alice", PASSWORD["alice"], 10).user == "alice"


def test_hosts_that_cannot_be_asked_are_named_with_their_reason(ldap_server: LdapServer) -> None:
    dead = free_port()
    checker = LdapAuthenticator(LdapSettings(("127.0.0.2", "127.0.0.1"), (dead, ldap_server.port), (PEOPLE,),
                                             encryption="none", timeout=2))
    verdict = checker.check("jdoe", PASSWORD["jdoe"], 10)
    assert verdict.user == "jdoe" and verdict.answered == (f"ldap://127.0.0.1:{ldap_server.port}",)
    assert [fault.host for fault in verdict.faults] == [
        f"ldap://127.0.0.2:{dead}", f"ldap://127.0.0.2:{ldap_server.port}", f"ldap://127.0.0.1:{dead}"]
    assert all("connecting: " in fault.reason and "refused" in fault.reason for fault in verdict.faults)
    # A wrong password on the one host that answers is a wrong password, not an outage.
    wrong = checker.check("jdoe", "wrong", 10)
    assert wrong.user is None and not wrong.unavailable


@pytest.mark.parametrize("encryption", ["start_tls", "simple_tls"])
def test_tls_the_directory_does_not_offer_makes_it_unavailable(ldap_server: LdapServer,
                                                               encryption: Encryption) -> None:
    # The test slapd has no certificate: StartTLS is refused by it, and a TLS handshake gets plain LDAP.
    verdict = authenticator(ldap_server.port, encryption=encryption).check("jdoe", PASSWORD["jdoe"], 10)
    assert verdict.unavailable and PASSWORD["jdoe"] not in repr(verdict)
    reason = verdict.faults[0].reason
    assert reason.startswith("StartTLS: startTLS failed" if encryption == "start_tls" else "connecting: "), reason


@pytest.mark.parametrize("encryption", ["none", "start_tls", "simple_tls"])
def test_a_directory_that_is_down_is_unavailable(encryption: Encryption) -> None:
    checker = authenticator(free_port(), base=(PEOPLE, STAFF), encryption=encryption)
    verdict = checker.check("jdoe", PASSWORD["jdoe"], 10)
    assert verdict.unavailable and len(verdict.faults) == 1 and "refused" in verdict.faults[0].reason
    assert PASSWORD["jdoe"] not in repr(verdict)


@pytest.mark.parametrize("host", ["ldap://[::1", "ldap://127.0.0.1:notaport"])
def test_a_host_ldap3_cannot_parse_is_unavailable_not_raised(host: str) -> None:
    verdict = LdapAuthenticator(LdapSettings((host,), (389,), (PEOPLE,), encryption="none")).check(
        "jdoe", PASSWORD["jdoe"], 10)
    assert verdict.unavailable and verdict.faults[0].host == host


def test_a_directory_stopped_after_a_bind_is_unavailable() -> None:
    server = LdapServer().start()
    try:
        checker = authenticator(server.port)
        assert user_of(checker, "jdoe", PASSWORD["jdoe"]) == "jdoe"
        server.stop()
        assert checker.check("jdoe", PASSWORD["jdoe"], 10).unavailable
    finally:
        server.remove()


def test_the_time_left_is_shared_by_the_hosts_and_the_last_ones_are_not_asked_when_it_runs_out() -> None:
    # Three hosts that refuse at once, with a second left: each one refused is cheap, so all are asked.
    dead = free_port()
    hosts = LdapAuthenticator(LdapSettings(("127.0.0.1", "127.0.0.2", "127.0.0.3"), (dead,), (PEOPLE,),
                                           encryption="none"))
    assert len(hosts.check("jdoe", "x", 1.5).faults) == 3
    # Less than half a second left: no host is asked (ldap3 takes whole seconds).
    verdict = hosts.check("jdoe", "x", 0.4)
    assert verdict.unavailable and all(fault.reason.startswith("not asked") for fault in verdict.faults)
