"""Every Redis key name vmpooler uses, in one place.

The names are the original vmpooler's (era A, `vmpooler__<kind>__<name>`), so an existing vmpooler Redis
can be read and taken over unchanged. Lua scripts receive the prefix and build the same names; the
`STATES` order here is the order the scripts use.
"""

from __future__ import annotations

from dataclasses import dataclass

# The per-pool sets a VM moves through, in lifecycle order.
STATES = ("pending", "ready", "running", "completed", "discovered")
# The API's task queues (`Keys.tasks`), as the original names them: `<prefix>__tasks__<queue>`.
TASK_QUEUES = ("disk", "snapshot", "snapshot-revert")
# Entries kept in a VM's history (`Keys.history`); lua/history.lua trims to the same number.
HISTORY_LENGTH = 50
# One-minute samples kept per pool (`Keys.samples`): a day's.
SAMPLES_KEPT = 1440
# Clone and boot times kept per pool (`Keys.recent`).
RECENT_KEPT = 100


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str = "vmpooler"

    def _k(self, *parts: str) -> str:
        return "__".join((self.prefix, *parts))

    # Per-pool sets and hashes.
    def state(self, state: str, pool: str) -> str:
        return self._k(state, pool)

    def pending(self, pool: str) -> str:
        return self._k("pending", pool)

    def ready(self, pool: str) -> str:
        return self._k("ready", pool)

    def running(self, pool: str) -> str:
        return self._k("running", pool)

    def completed(self, pool: str) -> str:
        return self._k("completed", pool)

    def discovered(self, pool: str) -> str:
        return self._k("discovered", pool)

    def active(self, pool: str) -> str:
        """Hash host -> checkout time; drives lifetime expiry."""
        return self._k("active", pool)

    def empty(self, pool: str) -> str:
        return self._k("empty", pool)

    # Per-VM and per-token hashes.
    def vm(self, host: str) -> str:
        return self._k("vm", host)

    def token(self, token: str) -> str:
        return self._k("token", token)

    def token_pattern(self) -> str:
        return self._k("token", "*")

    # Task queues (API -> manager) and counters.
    def clone_tasks(self) -> str:
        return self._k("tasks", "clone")

    def ondemand_clone_tasks(self) -> str:
        """String: the original's count of its on-demand clones in flight, beside `clone_tasks`; /status's
        `queue.cloning` adds the two, as the original's does. Ours count every clone in `clone_tasks`, and a
        manager of ours sets this one to 0 at its start, as the original's managers do at theirs."""
        return self._k("tasks", "ondemandclone")

    def disk_tasks(self) -> str:
        return self._k("tasks", "disk")

    def snapshot_tasks(self) -> str:
        return self._k("tasks", "snapshot")

    def revert_tasks(self) -> str:
        return self._k("tasks", "snapshot-revert")

    def tasks(self, queue: str) -> str:
        """One of the TASK_QUEUES: a set of "<host>:<argument>" (lua/take_tasks.lua builds the same)."""
        return self._k("tasks", queue)

    # Daily statistics.
    def tag_stats(self, date: str) -> str:
        return self._k("tag", date)

    def clone_stats(self, date: str) -> str:
        return self._k("clone", date)

    def boot_stats(self, date: str) -> str:
        return self._k("boot", date)

    # Today's original (API v3): run-time pool settings, kept across restarts, and the manager's records.
    def pool_settings(self, setting: str) -> str:
        """Hash pool -> value set through the pool configuration API: `setting` is `poolsize`, `template`
        or `clone_target` (`vmpooler__config__<setting>`); it wins over the configuration file."""
        return self._k("config", setting)

    def undo_override(self, setting: str) -> str:
        """Set of pools whose `size` or `template` override was deleted (`vmpooler__pool__undo_<setting>
        _override`): the manager goes back to the file's value."""
        return self._k("pool", f"undo_{setting}_override")

    def pool_reset(self) -> str:
        """Set of pools whose ready and pending VMs are to be replaced (POST /api/v3/poolreset)."""
        return self._k("poolreset")

    def prepared(self, setting: str) -> str:
        """Hash pool -> the template (`setting` "template": the original's `vmpooler__template__prepared`)
        or clone target ("clone_target": ours) the pool's VMs are being made from now."""
        return self._k(setting, "prepared")

    def pool_record(self, pool: str) -> str:
        """Hash: the pool's configuration as the manager runs it, for the original's API-only processes."""
        return self._k("pool", pool)

    def lastboot(self) -> str:
        """Hash pool -> when a VM of the pool last became ready (/api/v3/status's `lastBoot`)."""
        return self._k("lastboot")

    # On-demand requests (API v3's /ondemandvm), the original's keys and shapes (contract B3); the Lua
    # scripts (lua/ondemand.lua) build the same names.
    def ondemand_new(self) -> str:
        """Zset request id -> submit epoch: requests no manager has taken in yet."""
        return self._k("provisioning", "request")

    def ondemand_processing(self) -> str:
        """Zset request id -> submit epoch: requests being filled."""
        return self._k("provisioning", "processing")

    def ondemand_tasks(self) -> str:
        """Zset "<alias>:<pool>:<count>:<request id>" -> submit epoch: clones still to start for a request."""
        return self._k("odcreate", "task")

    def ondemand_request(self, request_id: str) -> str:
        """Hash: `requested` ("<alias>:<pool>:<count>,..."), `status` (ready, failed, deleted; unset while
        being filled), `token:token`, `token:user`, `retry_count`, `failure_reason`."""
        return self._k("odrequest", request_id)

    def ondemand_vms(self, request_id: str, alias: str, pool: str) -> str:
        """Set: the VMs of `pool` delivered to a request for `alias`."""
        return self._k(request_id, alias, pool)

    # Added by this implementation (names chosen not to collide with the original's).
    def pools(self) -> str:
        """Set of configured pool names, written by the manager (as the original's later versions)."""
        return self._k("pools")

    def lease(self, pool: str) -> str:
        """String: id of the manager working `pool`, with an expiry."""
        return self._k("lease", pool)

    def heartbeats(self) -> str:
        """Zset manager id -> last heartbeat epoch."""
        return self._k("heartbeats")

    def clone_counts(self) -> str:
        """Hash manager id -> clones it has in flight; `clone_tasks()` is kept equal to the sum over live
        managers (lua/presence.lua)."""
        return self._k("tasks", "clone", "managers")

    def taken_tasks(self, manager: str) -> str:
        """Hash "<queue>:<host>:<argument>" -> how many times taken: the tasks a manager took from the queues
        and has not finished; put back in their queues once that manager is dead (lua/take_tasks.lua)."""
        return self._k("tasks", "taken", manager)

    def task_takers(self) -> str:
        """Set of the manager ids that have a `taken_tasks` record."""
        return self._k("tasks", "takers")

    def pooler_id(self) -> str:
        """String: this pooler's identity, made once (SET NX) by the first manager on this Redis and read by
        every other. Each clone is marked with it, and a VM found in a pool folder that Redis does not know
        is destroyed only when it carries it (manager/ownership.py)."""
        return self._k("pooler_id")

    def spared(self, pool: str) -> str:
        """Hash host -> the pooler id marked on it ("" for none): VMs in the pool's folder that Redis does
        not know and that this pooler leaves alone (another pooler's, or unmarked without
        `purge_unconfigured`), so that each is reported once (lua/spare.lua)."""
        return self._k("spared", pool)

    def forget_vanished(self, pool: str) -> str:
        """String, expiring: an operator's word (`vmpoolerd --forget-vanished POOL`) that the VMs of `pool`
        that vanished from the provider all at once are gone for good: the manager forgets the ones it
        holds back (manager/reconcile.py), then deletes it."""
        return self._k("forget_vanished", pool)

    def provider_health(self, provider: str) -> str:
        """Hash manager id -> JSON: that manager's view of the provider's health, with the time it was
        written (vmpooler_core/provider_health.py); the key expires when no manager refreshes it."""
        return self._k("health", provider)

    def health(self) -> str:
        """String: written by each health check (a write Redis must accept), expiring by itself."""
        return self._k("health")

    def dummy_folder(self, provider: str, folder: str) -> str:
        """Hash VM name -> JSON record: the VMs of one folder (or pool) of a dummy provider."""
        return self._k("dummy", provider, folder)

    def ratelimit(self, bucket: str) -> str:
        """String: a rate-limit bucket's theoretical arrival time (epoch ms, lua/gcra.lua), expiring
        when the bucket is full again."""
        return self._k("ratelimit", bucket)

    def rate_bucket(self, request_class: str, kind: str, client: str) -> str:
        """`<prefix>__ratelimit__<class>__<token|address>__<token or address>`. (The original's counters
        were `<prefix>__ratelimit__<its class>__<token:t|ip:a>`: different names, so the two never
        read each other's values.)"""
        return self.ratelimit(f"{request_class}__{kind}__{client}")

    def failed_logins(self, kind: str, who: str) -> str:
        """Hash {n: failures counted, at: epoch ms of the last}: one user name's (`kind` "user", the name
        as login_throttle.py folds it) or one client address's ("address"), expiring `forget_after`
        seconds after the last failure (lua/login_attempt.lua, lua/login_outcome.lua)."""
        return self._k("login", kind, who)

    def directory_health(self) -> str:
        """Hash directory host -> JSON {ok, at, since, reason}: what the logins last saw of each LDAP host
        (directory_health.py); expires when no login has asked for a while."""
        return self._k("directory", "health")

    def history(self, host: str) -> str:
        """List of the VM's history entries (JSON, oldest first; audit.py), the newest HISTORY_LENGTH
        kept. Written by the scripts that change the VM's state, in the same step (lua/history.lua builds
        `<prefix>__history__<host>`); it expires with the VM's hash (forget.lua)."""
        return self._k("history", host)

    def held(self, token: str) -> str:
        """Set of the hosts checked out with `token` and still running: the per-token cap counts it.
        Kept by the scripts (checkout, return, move, forget); built in Lua as `<prefix>__held__<token>`."""
        return self._k("held", token)

    def held_sets(self) -> str:
        """String, present once every running VM checked out with a token is in its token's held set: the
        original's VMs (it kept no such sets) were put there (lua/held_sets.lua builds `<prefix>__held_sets`;
        a manager makes the sets complete again at its start, the first capped checkout if it is absent)."""
        return self._k("held_sets")

    # The dashboard's history (samples.py): kept by the managers, a capped list per pool.
    def samples(self, pool: str, minutes: int = 1) -> str:
        """List of the pool's one-minute samples, oldest first (pool_history.py says what one holds), the
        newest SAMPLES_KEPT kept; with `minutes` (one of pool_history.ROLLUPS), its samples of that many
        minutes each, a day of them (`<prefix>__samples<minutes>m__<pool>`). Written by the manager holding
        the pool (lua/sample.lua builds the names), expiring a while after the last, once no manager
        samples the pool any more."""
        return self._k("samples" if minutes == 1 else f"samples{minutes}m", pool)

    def tally(self) -> str:
        """Hash "checkout:<pool>" / "refused:<pool>" -> VMs checked out of the pool, and checkouts refused
        while it had none ready, since its last sample: counted by checkout.lua, taken (and cleared) by
        sample.lua into the pool's next sample."""
        return self._k("tally")

    def recent(self, phase: str, pool: str) -> str:
        """List of "<epoch> <seconds>" of the pool's last RECENT_KEPT clones (`phase` "clone") or boots
        ("boot"), oldest first: the dashboard's median and slowest, whatever the pool's churn."""
        return self._k("recent", phase, pool)

    def demand(self, pool: str) -> str:
        """Hash slot -> "<bucket> <served> <refused> <ondemand>": what a pool sized to demand was asked for,
        a ring of demand.RING buckets written by the checkout and on-demand scripts (lua/demand.lua builds
        `<prefix>__demand__<pool>`)."""
        return self._k("demand", pool)

    def sizing(self) -> str:
        """Hash pool -> JSON (demand.Target): the size each pool sized to demand is kept at, and why; written
        by the manager holding the pool."""
        return self._k("sizing")

    def replicas(self) -> str:
        """String "<replication id> <ip:port> ...": the replicas a primary must still have before a script
        may change anything (lua/fence.lua builds it as `<prefix>__replicas`)."""
        return self._k("replicas")
