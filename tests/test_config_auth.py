"""The `auth:` section as the original's configurations write it (both eras) and as ours add to it:
every shape of `auth: ldap:`, the original's `encryption` hash, the certificate settings, the failed-login
throttle; and a clear error, naming the key, for anything else."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import make_config
from tests.tls_certs import make_tls_files
from vmpooler_core.config import FailedLogins, LdapSettings
from vmpooler_core.errors import ConfigError

POOLS = "providers: {dummy: {}}\npools: []\n"


def ldap_of(ldap: str, prefix: str = "auth:\n  provider: ldap\n  ldap:\n") -> LdapSettings:
    config = make_config(prefix + ldap + POOLS)
    assert config.auth is not None and config.auth.ldap is not None
    return config.auth.ldap


def error_of(ldap: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        make_config("auth:\n  provider: ldap\n  ldap:\n" + ldap + POOLS)
    return caught.value


def test_the_original_era_a_shape() -> None:
    # contract A5: one host, its port, one base, one user object, Ruby-symbol keys; STARTTLS by default.
    settings = ldap_of("    host: 'ldap.company.com'\n    port: 389\n    base: 'ou=users,dc=company,dc=com'\n"
                       "    user_object: 'uid'\n", prefix=":auth:\n  provider: 'ldap'\n  :ldap:\n")
    assert settings == LdapSettings(("ldap.company.com",), (389,), ("ou=users,dc=company,dc=com",), ("uid",),
                                    "start_tls", None, True, 5)


@pytest.mark.parametrize(("ldap", "host", "port", "base", "user_object"), [
    ("    host: [a.example, b.example]\n    port: [389, 3389]\n    base: ['ou=x,dc=e', 'ou=y,dc=e']\n"
     "    user_object: [uid, cn]\n",
     ("a.example", "b.example"), (389, 3389), ("ou=x,dc=e", "ou=y,dc=e"), ("uid", "cn")),
    # The original split a string on whitespace: several bases, several user objects.
    ("    host: a\n    base: 'ou=x,dc=e ou=y,dc=e'\n    user_object: 'uid cn'\n",
     ("a",), (389,), ("ou=x,dc=e", "ou=y,dc=e"), ("uid", "cn")),
    # ...but a DN may hold a space: split only where every piece is a DN.
    ("    host: a\n    base: 'ou=Domain Users,dc=e'\n", ("a",), (389,), ("ou=Domain Users,dc=e",), ("uid",)),
    ("    host: a\n    base: 'dc=example, dc=com'\n", ("a",), (389,), ("dc=example, dc=com",), ("uid",)),
    ("    host: a\n    port: '1389'\n", ("a",), (1389,), (), ("uid",)),
    # LDAPS is 636 unless told otherwise.
    ("    host: a\n    encryption: simple_tls\n", ("a",), (636,), (), ("uid",)),
])
def test_strings_and_lists(ldap: str, host: tuple[str, ...], port: tuple[int, ...], base: tuple[str, ...],
                           user_object: tuple[str, ...]) -> None:
    settings = ldap_of(ldap)
    assert (settings.host, settings.port, settings.base, settings.user_object) == (host, port, base, user_object)


def test_certificate_settings(tmp_path: Path) -> None:
    files = make_tls_files(tmp_path)
    settings = ldap_of(f"    host: a\n    encryption: ':simple_tls'\n    ca_file: {files.ca.name}\n    timeout: 2\n"
                       .replace(files.ca.name, str(files.ca)))
    assert (settings.encryption, settings.ca_file, settings.verify_certificate, settings.timeout) == (
        "simple_tls", str(files.ca), True, 2)
    assert ldap_of("    host: a\n    verify_certificate: false\n").verify_certificate is False
    # The original's Net::LDAP hash, its tls_options honoured where they mean something here.
    original = ldap_of(f"    host: a\n    encryption:\n      :method: :start_tls\n      :tls_options:\n"
                       f"        :ca_file: '{files.ca}'\n        :ssl_version: 'TLSv1'\n")
    assert (original.encryption, original.ca_file, original.verify_certificate) == ("start_tls", str(files.ca), True)
    assert ldap_of("    host: a\n    encryption: {method: start_tls, tls_options: {verify_mode: 0}}\n"
                   ).verify_certificate is False


@pytest.mark.parametrize(("ldap", "key", "message"), [
    ("    port: 389\n", "auth.ldap.host", "is required"),
    ("    host: ['']\n", "auth.ldap.host", "no empty one"),
    ("    host: a\n    encryption: tls\n", "auth.ldap.encryption", "must be start_tls, simple_tls or none"),
    ("    host: a\n    encryption: {tls_options: {}}\n", "auth.ldap.encryption.method", "is required"),
    ("    host: a\n    encryption: {method: start_tls, tls_options: {verify_mode: 2}}\n",
     "auth.ldap.encryption.tls_options.verify_mode", "must be 0 (VERIFY_NONE) or 1"),
    ("    host: a\n    encryption: {method: start_tls, tls_options: {ca_fil: x}}\n",
     "auth.ldap.encryption.tls_options.ca_fil", "did you mean `ca_file`?"),
    ("    host: a\n    port: [389, 0]\n", "auth.ldap.port", "between 1 and 65535"),
    ("    host: a\n    port: ldap\n", "auth.ldap.port", "must be a port number"),
    ("    host: a\n    base: people\n", "auth.ldap.base", "is not a distinguished name"),
    ("    host: a\n    user_object: 'u(id)'\n", "auth.ldap.user_object", "is not an attribute name"),
    ("    host: a\n    ca_file: /no/such/ca.pem\n", "auth.ldap.ca_file", "no such file"),
    ("    host: a\n    verify_certificate: perhaps\n", "auth.ldap.verify_certificate", "must be true or false"),
    ("    host: a\n    timeout: 0\n", "auth.ldap.timeout", "must be >= 1"),
    ("    host: a\n    timeout: 1.5\n", "auth.ldap.timeout", "must be a whole number"),
])
def test_errors_name_the_key(ldap: str, key: str, message: str) -> None:
    err = error_of(ldap)
    assert err.key == key and message in str(err), str(err)


def test_a_ca_file_that_holds_no_certificate_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("not a certificate\n")
    err = error_of(f"    host: a\n    ca_file: {tmp_path / 'ca.pem'}\n")
    assert err.key == "auth.ldap.ca_file" and "holds no certificate" in str(err)


def test_failed_logins() -> None:
    config = make_config("auth:\n  provider: ldap\n  ldap: {host: a}\n" + POOLS)
    assert config.auth is not None and config.auth.failed_logins == FailedLogins(5, 60, 900, 900)
    text = ("auth:\n  provider: users\n  users: {admin: x}\n  failed_logins:\n    allowed: 3\n"
            "    max_delay_user: 30\n    max_delay_address: 600\n    forget_after: 60\n")
    config = make_config(text + POOLS)
    assert config.auth is not None and config.auth.failed_logins == FailedLogins(3, 30, 600, 60)
    with pytest.raises(ConfigError, match="auth.failed_logins.alowed: unknown key; did you mean `allowed`"):
        make_config("auth:\n  provider: ldap\n  ldap: {host: a}\n  failed_logins: {alowed: 3}\n" + POOLS)


def test_the_originals_dummy_provider_is_refused_naming_the_fix() -> None:
    for env in ({}, {"VMPOOLER_DEBUG": "false"}):
        with pytest.raises(ConfigError) as caught:
            make_config("auth:\n  provider: dummy\n" + POOLS, **env)
        assert (caught.value.line, caught.value.key) == (2, "auth.provider")
        for fix in ("provider: users", "vmpooler hash-password", "VMPOOLER_DEBUG=true"):
            assert fix in caught.value.reason, fix
