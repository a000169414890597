"""The `--json` output of every command: stable shapes that scripts may rely on.

Keys are only ever added, never renamed or removed, and every key listed is always present (null when
a server does not report the figure). Each command's `--help` shows its line from here.
"""

from __future__ import annotations

SHAPES = {
    "checkout": '{"ok": true, "domain": str|null, "vms": [{"pool": str, "hostname": str, "fqdn": str}], '
                '"request_id"?: str (with --ondemand)}',
    "request": '{"ok": true, "request_id": str, "domain": null, "vms": [{"pool": str, "hostname": str, '
               '"fqdn": str}]}; with --cancel {"ok": true, "request_id": str, "deleted": bool}',
    "return": '{"ok": bool, "vms": [{"hostname": str, "ok": bool, "error"?: str}]}',
    "show": '{"hostname": str, "fqdn": str, "domain": str|null, "template": str, "state": str, '
            '"lifetime": int|null, "running": float|null, "remaining": float|null, "tags": {str: str}, '
            '"snapshots": [str], "disk": [str], "ip": str, "history"?: [{"at": str, "event": str, ...}] '
            '(with --history)}',
    "lifetime": '{"ok": true, "hostname": str, "lifetime": int}',
    "tag": '{"ok": true, "hostname": str, "tags": {str: str}}',
    "snapshot": '{"ok": true, "hostname": str, "snapshot": str}',
    "revert": '{"ok": true, "hostname": str, "snapshot": str}',
    "disk": '{"ok": true, "hostname": str, "disk": str}',
    "pools": '{"pools": [{"name": str, "aliases": [str], "ready": int|null, "pending": int|null, '
             '"running": int|null, "size": int|null, "reason"?: str (why it is short, when its provider is '
             'degraded), "target"?: {"size": int, "why": str} (sized to demand: the size kept now)}]}',
    "status": 'the server\'s /status document as sent: {"boot", "capacity", "clone", "pools", "queue", "status"}, '
              'and "providers" once a manager has reported on them (API v3\'s also has "lastBoot" in each pool '
              'and "requested" in "queue")',
    "watch": 'one line per refresh: {"time": "YYYY-MM-DDTHH:MM:SSZ", "pools": [...as pools...], "error"?: str '
             '(the refresh failed: "pools" are the last figures)}',
    "summary": 'the server\'s /summary document as sent: {"boot", "clone", "tag", "daily"}',
    "mine": '{"vms": [...as show, one per VM your token holds...]}',
    "ssh": "none: the output is ssh's own, and the exit code too (with the group's --json, errors as below)",
    "hash-password": '{"ok": true, "user": str|null, "hash": str}',
    "token create": '{"ok": true, "user": str, "token": str}',
    "token list": '{"user": str, "tokens": [{"token": str, "created": str, "last": str ("never" if unused)}]}',
    "token delete": '{"ok": true, "token": str}',
}


# Every command's failure with --json: one object on stdout (beside the one line on stderr). `code` is the
# server's error code when there is one (vmpooler_core.errors.ErrorCode: "unknown_pool", "no_capacity",
# "not_configured", ...), else the exit code's name ("usage", "unreachable", "limited", "error", ...).
ERROR = '{"ok": false, "reason": str, "code": str, "exit": int}'


def epilog(command: str) -> str:
    return f"\b\nJSON (--json): {SHAPES[command]}"
