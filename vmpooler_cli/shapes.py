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
             'degraded)}]}',
    "status": 'the server\'s /status document as sent: {"boot", "capacity", "clone", "pools", "queue", "status"}, '
              'and "providers" once a manager has reported on them',
    "watch": 'one line per refresh: {"time": "YYYY-MM-DDTHH:MM:SSZ", "pools": [...as pools...]}',
    "token create": '{"ok": true, "user": str, "token": str}',
    "token list": '{"user": str, "tokens": [{"token": str, "created": str, "last": str ("never" if unused)}]}',
    "token delete": '{"ok": true, "token": str}',
}


def epilog(command: str) -> str:
    return f"\b\nJSON (--json): {SHAPES[command]}"
