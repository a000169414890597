"""Start a throwaway OpenLDAP server (Debian's slapd) for tests: a real directory, never a fake.

Its own slapd.conf, data and port under a temporary directory, loaded with slapadd before it starts; the
system's slapd service and its /etc/ldap/slapd.d are never read or touched.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.processes import terminate
from tests.redis_server import free_port
from tests.tls_certs import TlsFiles

SUFFIX = "dc=example,dc=test"
PEOPLE = f"ou=people,{SUFFIX}"
STAFF = f"ou=staff,{SUFFIX}"
# Where Debian's slapd package puts its schema files and backend modules.
SCHEMA_DIR = Path("/etc/ldap/schema")
MODULE_DIR = Path("/usr/lib/ldap")


@dataclass(frozen=True)
class LdapUser:
    attribute: str  # the RDN attribute, e.g. uid or cn
    name: str
    parent: str
    password: str

    @property
    def dn(self) -> str:
        return f"{self.attribute}={hex_escape(self.name)},{self.parent}"


# jdoe, the names full of DN and filter syntax and MaryAnn (spelt with capitals) under people; alice only
# under staff; carol only by cn.
USERS = (
    LdapUser("uid", "jdoe", PEOPLE, "jdoe-ldap-secret"),
    LdapUser("uid", "smith, j=r+x", PEOPLE, "smith-ldap-secret"),
    LdapUser("uid", "ann*(ops)\\#;<>\"", PEOPLE, "ann-ldap-secret"),
    LdapUser("uid", "MaryAnn", PEOPLE, "maryann-ldap-secret"),
    LdapUser("uid", "alice", STAFF, "alice-ldap-secret"),
    LdapUser("cn", "carol", PEOPLE, "carol-ldap-secret"),
)


def hex_escape(value: str) -> str:
    """Every character outside [A-Za-z0-9.-] as \\XX (RFC 4514 allows it for any byte): written
    independently of the escaping the code under test uses, so slapd is the one that judges."""
    out = []
    for char in value:
        if char.isascii() and (char.isalnum() or char in ".-"):
            out.append(char)
        else:
            out.extend(f"\\{byte:02X}" for byte in char.encode())
    return "".join(out)


def ssha(password: str) -> str:
    """The {SSHA} userPassword slapd checks binds against: SHA-1 of password + salt, then the salt."""
    salt = secrets.token_bytes(8)
    return "{SSHA}" + base64.b64encode(hashlib.sha1(password.encode() + salt).digest() + salt).decode()


def ldif_line(attribute: str, value: str) -> str:
    # Base64 for every value, so commas, braces and non-ASCII need no LDIF quoting rules.
    return f"{attribute}:: {base64.b64encode(value.encode()).decode()}"


def entries_ldif(users: tuple[LdapUser, ...]) -> str:
    entries = [[ldif_line("dn", SUFFIX), "objectClass: dcObject", "objectClass: organization",
                "dc: example", "o: vmpooler tests"]]
    for ou in ("people", "staff"):
        entries.append([ldif_line("dn", f"ou={ou},{SUFFIX}"), "objectClass: organizationalUnit", f"ou: {ou}"])
    for user in users:
        entry = [ldif_line("dn", user.dn), "objectClass: inetOrgPerson", ldif_line("sn", user.name),
                 ldif_line("cn", user.name), ldif_line("userPassword", ssha(user.password))]
        if user.attribute == "uid":
            entry.append(ldif_line("uid", user.name))
        entries.append(entry)
    return "\n\n".join("\n".join(entry) for entry in entries) + "\n"


def binary(name: str) -> str:
    # slapd and slapadd live in /usr/sbin, which a non-root PATH may not hold.
    found = shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))
    if not found:
        raise RuntimeError(f"no {name}: run scripts/test, which installs slapd and ldap-utils")
    return found


class LdapServer:
    """`tls`: a certificate and key (from tests.tls_certs) for StartTLS on `port` and LDAPS on `tls_port`."""

    def __init__(self, users: tuple[LdapUser, ...] = USERS, tls: TlsFiles | None = None) -> None:
        self.users = users
        self.tls = tls
        self.port = free_port()
        self.tls_port = free_port() if tls else None
        self.dir = Path(tempfile.mkdtemp(prefix="vmpooler-slapd-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}/"

    @property
    def urls(self) -> str:
        return self.url + (f" ldaps://127.0.0.1:{self.tls_port}/" if self.tls_port else "")

    def _write_config(self) -> Path:
        (self.dir / "data").mkdir()
        modules = ""
        if any(MODULE_DIR.glob("back_mdb*")):  # Debian builds backends as modules; others build them in
            modules = f"modulepath {MODULE_DIR}\nmoduleload back_mdb\n"
        schemas = "".join(f"include {SCHEMA_DIR / name}.schema\n" for name in ("core", "cosine", "inetorgperson"))
        conf = self.dir / "slapd.conf"
        conf.write_text(
            f"{schemas}pidfile {self.dir / 'slapd.pid'}\nargsfile {self.dir / 'slapd.args'}\n{modules}"
            f"database mdb\nsuffix \"{SUFFIX}\"\nrootdn \"cn=admin,{SUFFIX}\"\n"
            f"rootpw {ssha(secrets.token_hex(16))}\ndirectory {self.dir / 'data'}\n{self._tls_lines()}"
            # Anyone may bind (auth) and read; nobody but the root DN writes.
            "access to * by * read\n")
        return conf

    def _tls_lines(self) -> str:
        if self.tls is None:
            return ""
        # Global directives in slapd.conf, but accepted after the database's; slapd reads them at start.
        return (f"TLSCACertificateFile {self.tls.ca}\nTLSCertificateFile {self.tls.server_cert}\n"
                f"TLSCertificateKeyFile {self.tls.server_key}\n")

    def start(self) -> LdapServer:
        conf = self._write_config()
        ldif = self.dir / "entries.ldif"
        ldif.write_text(entries_ldif(self.users))
        loaded = subprocess.run([binary("slapadd"), "-f", str(conf), "-l", str(ldif)], capture_output=True,
                                text=True, timeout=30)
        if loaded.returncode:
            raise RuntimeError(f"slapadd failed ({loaded.returncode}): {loaded.stderr.strip()}")
        log = self.dir / "slapd.log"
        with log.open("wb") as out:
            # -d 0: stay in the foreground (so terminate() stops it) without debug output.
            self.proc = subprocess.Popen([binary("slapd"), "-d", "0", "-f", str(conf), "-h", self.urls],
                                         stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if self._answers():
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"slapd did not start on port {self.port}: {log.read_text(errors='replace').strip()}")

    def _answers(self) -> bool:
        """An anonymous read of the suffix entry: slapd is listening and its database is open."""
        import ldap3
        from ldap3.core.exceptions import LDAPException

        try:
            conn = ldap3.Connection(ldap3.Server("127.0.0.1", port=self.port, connect_timeout=1),
                                    receive_timeout=1)
            try:
                return bool(conn.bind() and conn.search(SUFFIX, "(objectClass=*)", search_scope=ldap3.BASE))
            finally:
                conn.unbind()
        except (LDAPException, OSError):
            return False

    def freeze(self) -> None:
        """SIGSTOP: the kernel still accepts connections, nothing answers them (a hung directory)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)
        stat = Path(f"/proc/{self.proc.pid}/stat")
        deadline = time.monotonic() + 5
        # Stopped once the kernel says so (state T), not when the signal is sent.
        while stat.read_text().rsplit(")", 1)[1].split()[0] != "T":
            if time.monotonic() > deadline:
                raise RuntimeError("slapd did not stop on SIGSTOP")
            time.sleep(0.005)

    def thaw(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)

    def connections(self) -> int:
        """TCP connections to this server that are still established, counted on the server's side
        (local port = its port) from /proc/net/tcp: what a client that never unbinds leaves open."""
        ports = {f"{port:04X}" for port in (self.port, self.tls_port) if port}
        count = 0
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with open(table) as lines:
                for line in list(lines)[1:]:
                    local, state = line.split()[1], line.split()[3]
                    count += local.rsplit(":", 1)[1] in ports and state == "01"  # 01: ESTABLISHED
        return count

    def stop(self) -> None:
        if self.proc:
            self.thaw()  # a stopped process would take SIGTERM only once it runs again
            terminate(self.proc, 5)
            self.proc = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
