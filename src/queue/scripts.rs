//! The Lua scripts (from `scripts/*.lua`) and the key layout they share.
//! Each script is the common prelude plus its body, run with EVALSHA and
//! reloaded automatically on NOSCRIPT (after a Redis restart or SCRIPT FLUSH).

use std::sync::LazyLock;

use redis::Script;

const COMMON: &str = include_str!("scripts/common.lua");

pub(super) fn with_prelude(body: &str) -> Script {
    Script::new(&format!("{COMMON}\n{body}"))
}

pub(crate) struct Scripts {
    pub enqueue: Script,
    pub dequeue: Script,
    pub ack: Script,
    pub fail: Script,
    pub extend: Script,
    pub requeue: Script,
    pub started: Script,
    pub reap: Script,
    pub janitor: Script,
    pub get: Script,
    pub stats: Script,
}

pub(crate) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    enqueue: with_prelude(include_str!("scripts/enqueue.lua")),
    dequeue: with_prelude(include_str!("scripts/dequeue.lua")),
    ack: with_prelude(include_str!("scripts/ack.lua")),
    fail: with_prelude(include_str!("scripts/fail.lua")),
    extend: with_prelude(include_str!("scripts/extend.lua")),
    requeue: with_prelude(include_str!("scripts/requeue.lua")),
    started: with_prelude(include_str!("scripts/started.lua")),
    reap: with_prelude(include_str!("scripts/reap.lua")),
    janitor: with_prelude(include_str!("scripts/janitor.lua")),
    get: with_prelude(include_str!("scripts/get.lua")),
    stats: with_prelude(include_str!("scripts/stats.lua")),
});

/// Key names, in the order `common.lua` reads them from KEYS. Every script
/// receives all of them, so no script can touch an undeclared key; `dequeue`
/// and `started` also get their call's key (`Keys::call`) as KEYS[18].
const NAMES: [&str; 17] = [
    "p:critical",
    "p:default",
    "p:low",
    "sched",
    "retry",
    "lease",
    "meta",
    "data",
    "done",
    "dead",
    "uniq",
    "uniqexp",
    "paused",
    "wake",
    "guards",
    "counters",
    "unstarted",
];

/// The keys of one queue, all under the hash tag `{<prefix>}`.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    pub all: Vec<String>,
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Keys { all: NAMES.iter().map(|n| format!("{{{prefix}}}:{n}")).collect(), prefix: prefix.to_owned() }
    }

    /// What one dequeue call (named by its token base) leased, kept for a
    /// lease length so a repeat of the call returns the same leases.
    pub fn call(&self, token_base: &str) -> String {
        format!("{{{}}}:call:{token_base}", self.prefix)
    }

    pub fn wake(&self) -> &str {
        &self.all[13]
    }

    pub fn paused(&self) -> &str {
        &self.all[12]
    }
}
