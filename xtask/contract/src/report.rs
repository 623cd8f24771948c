//! What a contract run found: one check per request (passed, failed or
//! skipped with a reason), the coverage of operation × documented status and
//! the keyword coverage, rendered as tables for people and as JUnit XML for CI.

use std::fmt::Write as _;

use super::{checker::Contract, coverage::Coverage};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    /// Every reason, one line each (contract mismatches first).
    Fail(Vec<String>),
    Skip(String),
}

#[derive(Debug, Clone)]
pub struct Check {
    /// `operationId status what`, e.g. `createUser 409 duplicate username`.
    pub name: String,
    pub operation: String,
    /// The documented status this check aims at (credited only if it passed).
    pub status: Option<u16>,
    /// Against the spec alone: only this decides `Fail` and the coverage credit.
    pub outcome: Outcome,
    /// Where the response departs from a convention the spec declares (a
    /// registry code, the naming of a failing field, an expected value):
    /// reported apart, failing the run only with `strict_conventions`.
    pub conventions: Vec<String>,
}

/// One cell of the coverage table.
#[derive(Debug, Clone, Default)]
struct Cell {
    passed: usize,
    failed: usize,
    /// Not reachable from this run, and why: does not fail the run.
    unreachable: Option<String>,
    /// Why it was not exercised: fails the run.
    missing: Option<String>,
}

struct Row {
    operation: String,
    /// The operation's pointer, for keyword coverage.
    at: String,
    /// Documented status keys (`200`, `4XX`, `default`) and their cells.
    cells: Vec<(String, Cell)>,
}

pub struct Report {
    pub checks: Vec<Check>,
    rows: Vec<Row>,
    /// Which keywords of the contract the run exercised (thresholds included).
    pub coverage: Coverage,
    /// Convention findings fail the run too (`--strict-conventions`).
    pub strict_conventions: bool,
}

impl Report {
    /// Every documented status of every operation, none exercised yet.
    pub fn new(contract: &Contract) -> Report {
        let rows = contract
            .operations()
            .iter()
            .map(|op| Row {
                operation: op.id.clone(),
                at: op.at.clone(),
                cells: op.responses.iter().map(|(s, _)| (s.clone(), Cell::default())).collect(),
            })
            .collect();
        Report { checks: Vec::new(), rows, coverage: Coverage::inventory(contract), strict_conventions: false }
    }

    fn cell(&mut self, operation: &str, status: u16) -> Option<&mut Cell> {
        self.cell_at(operation, status).map(|(_, _, cell)| cell)
    }

    /// The cell with its operation's pointer and its status key.
    fn cell_at(&mut self, operation: &str, status: u16) -> Option<(&str, &str, &mut Cell)> {
        let row = self.rows.iter_mut().find(|r| r.operation == operation)?;
        let exact = status.to_string();
        let range = format!("{}XX", status / 100);
        let i = [exact.as_str(), range.as_str(), "default"]
            .iter()
            .find_map(|key| row.cells.iter().position(|(s, _)| s.eq_ignore_ascii_case(key)))?;
        let (key, cell) = &mut row.cells[i];
        Some((row.at.as_str(), key.as_str(), cell))
    }

    pub fn push(&mut self, check: Check) {
        if let Some(status) = check.status {
            let passed = check.outcome == Outcome::Pass;
            if let Some((at, key, cell)) = self.cell_at(&check.operation, status) {
                if passed {
                    cell.passed += 1;
                    let (at, key) = (at.to_owned(), key.to_owned());
                    self.coverage.status(&at, &key);
                } else {
                    cell.failed += 1;
                }
            }
        }
        self.checks.push(check);
    }

    /// A check that could not run here, with the reason (JUnit `skipped`).
    pub fn skip(&mut self, operation: &str, name: String, reason: impl Into<String>) {
        self.checks.push(Check {
            name,
            operation: operation.to_owned(),
            status: None,
            outcome: Outcome::Skip(reason.into()),
            conventions: Vec::new(),
        });
    }

    /// Marks a documented status as not reachable from this run (does not fail it).
    pub fn unreachable(&mut self, operation: &str, status: u16, reason: &str) {
        if let Some(cell) = self.cell(operation, status) {
            cell.unreachable = Some(reason.to_owned());
        }
    }

    /// Says why a documented status was not exercised (it still fails the run).
    pub fn not_exercised(&mut self, operation: &str, status: u16, reason: &str) {
        if let Some(cell) = self.cell(operation, status) {
            cell.missing = Some(reason.to_owned());
        }
    }

    /// Marks every documented status that no check got, and none aimed at
    /// and failed, as not reachable: the generic scenario knows no way to
    /// provoke it, which is a gap in the scenario, not in the deployment. A
    /// reason already given (`not_exercised`) is kept. An operation with a
    /// failed check keeps its gaps: what it answered instead may be why.
    pub fn unreached_not_failing(&mut self, reason: &str) {
        let failed: Vec<String> = self.failed_checks().map(|c| c.operation.clone()).collect();
        for row in self.rows.iter_mut().filter(|r| !failed.contains(&r.operation)) {
            for (_, cell) in &mut row.cells {
                if cell.passed == 0 && cell.failed == 0 && cell.unreachable.is_none() {
                    cell.unreachable = Some(cell.missing.take().unwrap_or_else(|| reason.to_owned()));
                }
            }
        }
    }

    pub fn failed_checks(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| matches!(c.outcome, Outcome::Fail(_)))
    }

    /// Checks whose response departs from a declared convention.
    pub fn convention_findings(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| !c.conventions.is_empty())
    }

    /// `operation status: reason` for every documented status neither
    /// exercised nor marked unreachable.
    pub fn gaps(&self) -> Vec<String> {
        let mut out = Vec::new();
        for row in &self.rows {
            for (status, cell) in &row.cells {
                if cell.passed == 0 && cell.unreachable.is_none() {
                    let why = match (&cell.missing, cell.failed) {
                        (Some(why), _) => why.clone(),
                        (None, 0) => "no check of this run aims at it".to_owned(),
                        (None, n) => format!("{n} check(s) aimed at it and failed"),
                    };
                    out.push(format!("{} {status}: {why}", row.operation));
                }
            }
        }
        out
    }

    /// True when every check passed (or was skipped), every documented
    /// status was exercised or marked unreachable, and keyword coverage
    /// reached its thresholds; with `strict_conventions`, also when no
    /// response departed from a declared convention.
    pub fn passed(&self) -> bool {
        self.failed_checks().next().is_none()
            && self.gaps().is_empty()
            && self.coverage.shortfalls().is_empty()
            && !(self.strict_conventions && self.convention_findings().next().is_some())
    }

    pub fn summary(&self) -> String {
        let count = |f: fn(&Outcome) -> bool| self.checks.iter().filter(|c| f(&c.outcome)).count();
        let mut out = format!(
            "{} spec failures, {} convention findings in {} checks ({} passed, {} skipped{}); {} documented statuses not exercised",
            count(|o| matches!(o, Outcome::Fail(_))),
            self.convention_findings().count(),
            self.checks.len(),
            count(|o| *o == Outcome::Pass),
            count(|o| matches!(o, Outcome::Skip(_))),
            if self.strict_conventions { "; conventions strict" } else { "" },
            self.gaps().len()
        );
        for s in self.coverage.shortfalls() {
            out.push_str("; ");
            out.push_str(&s);
        }
        out
    }

    /// Operation × status, `✓n` exercised n times, `✗` only failed attempts,
    /// `n/a` not reachable, `–` not exercised, `·` not documented; reasons below.
    pub fn table(&self) -> String {
        let mut statuses: Vec<&str> = self.rows.iter().flat_map(|r| r.cells.iter().map(|(s, _)| s.as_str())).collect();
        statuses.sort_unstable();
        statuses.dedup();
        let width = self.rows.iter().map(|r| r.operation.chars().count()).max().unwrap_or(9).max(9) + 2;
        let mut out = String::new();
        let _ = write!(out, "{:width$}", "operation");
        for s in &statuses {
            let _ = write!(out, "{s:<6}");
        }
        out.push('\n');
        let mut notes = Vec::new();
        for row in &self.rows {
            let _ = write!(out, "{:width$}", row.operation);
            for s in &statuses {
                let mark = match row.cells.iter().find(|(k, _)| k == s) {
                    None => "·".to_owned(),
                    Some((_, c)) if c.passed > 0 => format!("✓{}", c.passed),
                    Some((_, c)) => {
                        if let Some(why) = &c.unreachable {
                            notes.push(format!("  n/a {} {s}: not reachable: {why}", row.operation));
                            "n/a".to_owned()
                        } else if c.failed > 0 {
                            notes.push(format!("  ✗ {} {s}: every check aimed at it failed", row.operation));
                            "✗".to_owned()
                        } else {
                            let why = c.missing.as_deref().unwrap_or("no check of this run aims at it");
                            notes.push(format!("  – {} {s}: not exercised: {why}", row.operation));
                            "–".to_owned()
                        }
                    }
                };
                let _ = write!(out, "{mark:<6}");
            }
            out.push('\n');
        }
        out.push_str("✓n exercised n times (response conformed), ✗ failed, – not exercised, n/a not reachable, · not documented\n");
        for n in notes {
            out.push_str(&n);
            out.push('\n');
        }
        out
    }

    /// JUnit XML: one testcase per check, plus one per documented status.
    pub fn junit(&self) -> String {
        let mut cases = String::new();
        let (mut failures, mut skipped) = (0, 0);
        for c in &self.checks {
            let _ =
                write!(cases, r#"    <testcase classname="contract.{}" name="{}">"#, xml(&c.operation), xml(&c.name));
            match &c.outcome {
                Outcome::Pass => {}
                Outcome::Fail(lines) => {
                    failures += 1;
                    let first = lines.first().map(String::as_str).unwrap_or("failed");
                    let _ = write!(cases, r#"<failure message="{}">{}</failure>"#, xml(first), xml(&lines.join("\n")));
                }
                Outcome::Skip(why) => {
                    skipped += 1;
                    let _ = write!(cases, r#"<skipped message="{}"/>"#, xml(why));
                }
            }
            cases.push_str("</testcase>\n");
        }
        let mut coverage = String::new();
        let (mut cov_total, mut cov_failures, mut cov_skipped) = (0, 0, 0);
        for row in &self.rows {
            for (status, cell) in &row.cells {
                cov_total += 1;
                let _ = write!(
                    coverage,
                    r#"    <testcase classname="coverage.{}" name="{} {}">"#,
                    xml(&row.operation),
                    xml(&row.operation),
                    xml(status)
                );
                if cell.passed == 0 {
                    if let Some(why) = &cell.unreachable {
                        cov_skipped += 1;
                        let _ = write!(coverage, r#"<skipped message="not reachable: {}"/>"#, xml(why));
                    } else {
                        cov_failures += 1;
                        let why = cell.missing.as_deref().unwrap_or("not exercised");
                        let _ = write!(coverage, r#"<failure message="not exercised: {}"/>"#, xml(why));
                    }
                }
                coverage.push_str("</testcase>\n");
            }
        }
        let total = self.checks.len();
        let (keywords, kw_total, kw_failures) = self.coverage.junit_suite();
        let (conventions, conv_total, conv_failures) = self.junit_conventions();
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <testsuites name=\"contract\" tests=\"{}\" failures=\"{}\" skipped=\"{}\">\n\
             \x20 <testsuite name=\"contract.checks\" tests=\"{total}\" failures=\"{failures}\" skipped=\"{skipped}\">\n{cases}  </testsuite>\n\
             \x20 <testsuite name=\"contract.coverage\" tests=\"{cov_total}\" failures=\"{cov_failures}\" skipped=\"{cov_skipped}\">\n{coverage}  </testsuite>\n\
             {conventions}\
             {keywords}\
             </testsuites>\n",
            total + cov_total + kw_total + conv_total,
            failures + cov_failures + kw_failures + conv_failures,
            skipped + cov_skipped,
        )
    }
}

impl Report {
    /// The `contract-conventions` testsuite: one testcase per check that
    /// departed from a convention, a failure only when strict (else the
    /// findings go to `system-out`, so CI shows them without failing).
    fn junit_conventions(&self) -> (String, usize, usize) {
        let mut cases = String::new();
        let mut n = 0;
        for c in self.convention_findings() {
            n += 1;
            let _ = write!(
                cases,
                r#"    <testcase classname="conventions.{}" name="{}">"#,
                xml(&c.operation),
                xml(&c.name)
            );
            let all = xml(&c.conventions.join("\n"));
            if self.strict_conventions {
                let first = c.conventions.first().map(String::as_str).unwrap_or("convention");
                let _ = write!(cases, r#"<failure message="{}">{all}</failure>"#, xml(first));
            } else {
                let _ = write!(cases, "<system-out>{all}</system-out>");
            }
            cases.push_str("</testcase>\n");
        }
        let failures = if self.strict_conventions { n } else { 0 };
        let suite = format!(
            "  <testsuite name=\"contract-conventions\" tests=\"{n}\" failures=\"{failures}\" skipped=\"0\">\n{cases}  </testsuite>\n"
        );
        (suite, n, failures)
    }
}

fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Control characters are not allowed in XML 1.0 at all.
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const SPEC: &str = include_str!("../../../spec/openapi.yaml");

    #[test]
    fn coverage_gaps_fail_the_run_unless_unreachable() {
        let contract = Contract::from_yaml(SPEC).unwrap();
        let mut r = Report::new(&contract);
        assert!(!r.passed());
        for op in contract.operations() {
            for (status, _) in &op.responses {
                let status: u16 = status.parse().unwrap();
                if status == 503 {
                    r.unreachable(&op.id, status, "dependencies not controlled");
                } else {
                    r.push(Check {
                        name: format!("{} {status}", op.id),
                        operation: op.id.clone(),
                        status: Some(status),
                        outcome: Outcome::Pass,
                        conventions: Vec::new(),
                    });
                }
            }
        }
        assert!(r.passed(), "{}", r.table());
        assert!(r.table().contains("n/a healthCheck 503: not reachable: dependencies not controlled"));
        r.push(Check {
            name: "createUser 200 <x> & \"y\"".into(),
            operation: "createUser".into(),
            status: Some(200),
            outcome: Outcome::Fail(vec!["createUser 200 /data/id: expected integer, got null".into()]),
            conventions: Vec::new(),
        });
        assert!(!r.passed());
        let junit = r.junit();
        assert!(junit.contains(r#"name="createUser 200 &lt;x&gt; &amp; &quot;y&quot;"><failure message="createUser 200 /data/id: expected integer, got null">"#), "{junit}");
        assert!(junit.contains(r#"<skipped message="not reachable: dependencies not controlled"/>"#));
    }

    #[test]
    fn convention_findings_fail_only_when_strict() {
        let contract = Contract::from_yaml(SPEC).unwrap();
        let mut r = Report::new(&contract);
        r.push(Check {
            name: "getUserById 404 unknown id".into(),
            operation: "getUserById".into(),
            status: Some(404),
            outcome: Outcome::Pass,
            conventions: vec!["/code: expected 1003 (UserNotFound), got 4242".into()],
        });
        // Convention findings still credit the status: the spec was met.
        assert!(r.table().contains("✓1"), "{}", r.table());
        assert!(r.summary().starts_with("0 spec failures, 1 convention findings in 1 checks"), "{}", r.summary());
        let junit = r.junit();
        assert!(junit.contains(r#"<testsuite name="contract-conventions" tests="1" failures="0""#), "{junit}");
        assert!(junit.contains("<system-out>/code: expected 1003 (UserNotFound), got 4242</system-out>"));
        let gaps_only = r.failed_checks().next().is_none();
        assert!(gaps_only);
        r.strict_conventions = true;
        assert!(r.junit().contains(r#"<testsuite name="contract-conventions" tests="1" failures="1""#));
        assert!(!r.passed());
    }
}
