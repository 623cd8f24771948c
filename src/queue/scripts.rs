//! The Lua scripts (from `scripts/*.lua`) and the key layout they share.
//! Each script is the common prelude plus its body, run with EVALSHA and
//! reloaded automatically on NOSCRIPT (after a Redis restart or SCRIPT FLUSH).

use std::sync::LazyLock;

use redis::{Script, ScriptInvocation};

const COMMON: &str = include_str!("scripts/common.lua");

pub(super) fn with_prelude(body: &str) -> Script {
    Script::new(&format!("{COMMON}\n{body}"))
}

/// A script with the name its calls are traced under (`queue.<name>` spans).
pub(crate) struct Named {
    pub name: &'static str,
    script: Script,
}

pub(crate) fn named(name: &'static str, script: Script) -> Named {
    Named { name, script }
}

impl Named {
    pub fn prepare_invoke(&self) -> Invocation<'_> {
        Invocation { name: self.name, inv: self.script.prepare_invoke() }
    }
}

/// A prepared call of a [`Named`] script: keys and arguments are added to it as to redis'
/// `ScriptInvocation`, which it derefs to.
pub(crate) struct Invocation<'a> {
    pub name: &'static str,
    inv: ScriptInvocation<'a>,
}

impl<'a> std::ops::Deref for Invocation<'a> {
    type Target = ScriptInvocation<'a>;
    fn deref(&self) -> &ScriptInvocation<'a> {
        &self.inv
    }
}

impl std::ops::DerefMut for Invocation<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.inv
    }
}

pub(crate) struct Scripts {
    pub enqueue: Named,
    pub dequeue: Named,
    pub ack: Named,
    pub fail: Named,
    pub extend: Named,
    pub requeue: Named,
    pub started: Named,
    pub reap: Named,
    pub janitor: Named,
    pub get: Named,
    pub stats: Named,
}

pub(crate) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    enqueue: named("enqueue", with_prelude(include_str!("scripts/enqueue.lua"))),
    dequeue: named("dequeue", with_prelude(include_str!("scripts/dequeue.lua"))),
    ack: named("ack", with_prelude(include_str!("scripts/ack.lua"))),
    fail: named("fail", with_prelude(include_str!("scripts/fail.lua"))),
    extend: named("extend", with_prelude(include_str!("scripts/extend.lua"))),
    requeue: named("requeue", with_prelude(include_str!("scripts/requeue.lua"))),
    started: named("started", with_prelude(include_str!("scripts/started.lua"))),
    reap: named("reap", with_prelude(include_str!("scripts/reap.lua"))),
    janitor: named("janitor", with_prelude(include_str!("scripts/janitor.lua"))),
    get: named("get", with_prelude(include_str!("scripts/get.lua"))),
    stats: named("stats", with_prelude(include_str!("scripts/stats.lua"))),
});

/// Key names, in the order `common.lua` reads them from KEYS. Every script
/// receives all of them, so no script can touch an undeclared key; `dequeue`
/// and `started` also get their call's key (`Keys::call`) as KEYS[20].
const NAMES: [&str; 19] = [
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
    "active",
    "fin",
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
