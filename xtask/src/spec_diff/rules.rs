//! The rule table: every finding names one of these rules, so a rule's level
//! and reason live in one place and `--rules` can print them.

use std::fmt;

/// How bad a change is for clients written against the base document.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Info,
    Warn,
    Err,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Err => "ERR",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

pub struct Rule {
    pub id: &'static str,
    pub level: Level,
    pub why: &'static str,
}

const fn r(id: &'static str, level: Level, why: &'static str) -> Rule {
    Rule { id, level, why }
}

use Level::{Err, Info, Warn};

pub const RULES: &[Rule] = &[
    // Paths and operations.
    r("path-removed", Err, "Clients calling the path get 404 instead of the documented answer."),
    r("path-added", Info, "A new path cannot affect existing calls."),
    r("operation-removed", Err, "Clients calling the method on the path get 404 or 405."),
    r("operation-added", Info, "A new operation cannot affect existing calls."),
    r(
        "operation-id-changed",
        Warn,
        "Generated clients name methods after operationId, so their callers stop compiling.",
    ),
    r("deprecated-added", Info, "Deprecation announces a future removal; nothing breaks yet."),
    // Parameters.
    r("request-parameter-removed", Err, "Existing clients still send it and the server now ignores or refuses it."),
    r("request-parameter-added", Info, "An optional parameter is simply not sent by existing clients."),
    r(
        "request-parameter-required-added",
        Err,
        "Existing clients do not send the new required parameter, so their requests are refused.",
    ),
    r("request-parameter-became-required", Err, "Existing clients that omit the parameter are now refused."),
    r("request-parameter-became-optional", Info, "Clients that send it keep working."),
    r(
        "request-parameter-style-changed",
        Err,
        "The parameter's serialization (style/explode) differs, so values sent the old way are misread.",
    ),
    // Request bodies.
    r("request-body-added", Info, "An optional body is simply not sent by existing clients."),
    r("request-body-required-added", Err, "Existing clients send no body and are refused."),
    r("request-body-became-required", Err, "Existing clients that send no body are refused."),
    r("request-body-removed", Err, "Existing clients still send a body the server no longer reads."),
    r("request-media-type-removed", Err, "Clients sending that content type are answered 415."),
    r("request-media-type-added", Info, "An extra accepted content type cannot affect existing calls."),
    // Request schemas: narrowed is ERR (valid old requests are refused), widened is INFO.
    r("request-property-removed", Err, "Existing clients still send the member and the server ignores or refuses it."),
    r("request-property-added", Info, "An optional member is simply not sent by existing clients."),
    r(
        "request-property-required-added",
        Err,
        "Existing clients do not send the new required member, so their requests are refused.",
    ),
    r("request-property-became-required", Err, "Existing clients that omit the member are refused."),
    r("request-property-became-optional", Info, "Clients that send the member keep working."),
    r("request-type-changed", Err, "Values of the old type that clients send are refused."),
    r("request-type-widened", Info, "Every value valid before is still valid."),
    r("request-format-changed", Err, "Values valid under the old format may be refused under the new one."),
    r("request-format-removed", Info, "Dropping a format accepts every value accepted before."),
    r("request-nullable-removed", Err, "Clients sending null are refused."),
    r("request-nullable-added", Info, "Accepting null keeps every old value valid."),
    r("request-enum-value-removed", Err, "Clients sending the removed value are refused."),
    r("request-enum-value-added", Info, "Every value valid before is still valid."),
    r("request-enum-added", Err, "A new enum restricts values that were accepted before."),
    r("request-enum-removed", Info, "Dropping the enum accepts every value accepted before."),
    r("request-pattern-added", Err, "Values that do not match the new pattern are refused."),
    r(
        "request-pattern-changed",
        Warn,
        "A changed pattern may refuse values the old one accepted; regex inclusion is not decided here.",
    ),
    r("request-pattern-removed", Info, "Dropping a pattern accepts every value accepted before."),
    r("request-max-length-decreased", Err, "Strings that were long enough before are refused."),
    r("request-max-length-increased", Info, "Every string valid before is still valid."),
    r("request-min-length-increased", Err, "Strings that were just long enough before are refused."),
    r("request-min-length-decreased", Info, "Every string valid before is still valid."),
    r("request-maximum-decreased", Err, "Numbers at the old upper end are refused."),
    r("request-maximum-increased", Info, "Every number valid before is still valid."),
    r("request-minimum-increased", Err, "Numbers at the old lower end are refused."),
    r("request-minimum-decreased", Info, "Every number valid before is still valid."),
    r("request-max-items-decreased", Err, "Arrays that were short enough before are refused."),
    r("request-max-items-increased", Info, "Every array valid before is still valid."),
    r("request-min-items-increased", Err, "Arrays that were just long enough before are refused."),
    r("request-min-items-decreased", Info, "Every array valid before is still valid."),
    r(
        "request-additional-properties-closed",
        Err,
        "Clients sending members beyond the listed ones (allowed before) are refused.",
    ),
    r("request-additional-properties-opened", Info, "Every object valid before is still valid."),
    r("request-union-member-removed", Err, "Clients sending a value of the removed oneOf/anyOf member are refused."),
    r("request-union-member-added", Info, "Every value valid before is still valid."),
    // Responses.
    r(
        "response-status-removed",
        Err,
        "Clients handling the documented status lose it; the server now answers otherwise.",
    ),
    r("response-status-added", Info, "A status the server may send; clients already had to handle undocumented ones."),
    r("response-media-type-removed", Err, "Clients asking for or parsing that content type no longer get it."),
    r("response-media-type-added", Info, "An extra content type is only sent to clients that ask for it."),
    r("response-header-removed", Err, "Clients reading the documented header no longer get it."),
    r("response-header-added", Info, "Clients ignore headers they do not know."),
    r("response-property-removed", Err, "Clients reading the member (or requiring it while parsing) break."),
    r(
        "response-property-added",
        Info,
        "Clients ignore members they do not know, unless the object was closed (see response-property-added-closed).",
    ),
    r(
        "response-property-added-closed",
        Err,
        "The base said additionalProperties: false, so strict clients refuse an object with the new member.",
    ),
    r(
        "response-property-became-optional",
        Err,
        "Clients that rely on the member being present break when it is absent.",
    ),
    r("response-property-became-required", Info, "A member that is always sent was allowed before."),
    r("response-type-changed", Err, "Clients parsing the old type cannot parse the new values."),
    r("response-type-narrowed", Info, "Every value sent now was valid before."),
    r("response-format-changed", Warn, "Clients parsing the old format (a date, a uuid) may fail on the new values."),
    r("response-format-added", Info, "Values of a format were valid before the format was named."),
    r("response-nullable-added", Err, "Clients that expect a value fail on null."),
    r("response-nullable-removed", Info, "Every value sent now was valid before."),
    r(
        "response-enum-value-added",
        Warn,
        "Generated clients with closed enums fail to deserialize the new value; open-enum clients are fine.",
    ),
    r("response-enum-value-removed", Info, "Every value sent now was valid before."),
    r("response-enum-removed", Warn, "Generated clients with closed enums fail on values outside the old list."),
    r("response-enum-added", Info, "Every value sent now was valid before."),
    r("response-pattern-changed", Info, "Few clients validate response patterns; listed so the change is seen."),
    r(
        "response-constraint-widened",
        Warn,
        "Values outside the old bounds (length, range, item count) can now be sent; validating clients refuse them.",
    ),
    r("response-constraint-narrowed", Info, "Every value sent now was valid before."),
    r(
        "response-additional-properties-opened",
        Warn,
        "Strict clients that relied on additionalProperties: false refuse objects with unknown members.",
    ),
    r("response-additional-properties-closed", Info, "Every object sent now was valid before."),
    r(
        "response-union-member-added",
        Warn,
        "Clients with a closed set of oneOf/anyOf variants fail to deserialize values of the new member.",
    ),
    r("response-union-member-removed", Info, "Every value sent now was valid before."),
    // Either side.
    r("default-changed", Warn, "Clients that omit the value get different behaviour, or read a different value."),
    r("default-removed", Warn, "Clients that relied on the documented default can no longer count on it."),
    r("default-added", Info, "Documenting a default for an absent value does not change any value sent."),
    r(
        "schema-ref-unresolved",
        Warn,
        "A $ref outside the document (or dangling) changed and cannot be compared; check its target by hand.",
    ),
    r("schema-depth-exceeded", Warn, "The comparison stopped at its depth bound, so deeper changes were not checked."),
    // Security.
    r("security-added", Err, "Clients calling without credentials are answered 401."),
    r("security-removed", Info, "Clients that send credentials keep working."),
    r("security-requirement-removed", Err, "Clients authenticating with the removed alternative are answered 401."),
    r("security-requirement-added", Info, "A new alternative does not affect clients using an old one."),
    r(
        "operation-security-scope-added",
        Err,
        "Tokens granted for the old scopes lack the new one and are answered 403.",
    ),
    r("operation-security-scope-removed", Info, "Tokens with the old scopes still carry the fewer required ones."),
    r(
        "security-scheme-changed",
        Err,
        "The scheme's type, location, name or HTTP scheme changed, so old credentials are sent the wrong way.",
    ),
    r(
        "security-scheme-scope-removed",
        Err,
        "Clients requesting the removed scope from the authorization server are refused.",
    ),
];

/// The rule with this id. Unknown ids are a programming error: every id used
/// in the checker is listed above (a test checks each one has a fixture).
pub fn rule(id: &str) -> &'static Rule {
    match RULES.iter().find(|r| r.id == id) {
        Some(r) => r,
        None => panic!("spec-diff rule {id:?} is missing from RULES"),
    }
}

/// The table as `--rules` prints it.
pub fn table() -> String {
    let width = RULES.iter().map(|r| r.id.len()).max().unwrap_or(0);
    let mut out = String::new();
    for r in RULES {
        out.push_str(&format!("{:<4} {:<width$}  {}\n", r.level.as_str(), r.id, r.why));
    }
    out
}
