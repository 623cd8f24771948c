//! Output formats for findings: text for people, markdown for PR comments,
//! json for tools, junit for CI test reports, github for workflow annotations.

use super::{Finding, Level};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Markdown,
    Json,
    Junit,
    Github,
}

/// What the report is about: the documents' names, the file annotations
/// point at, and the level from which a finding fails the run.
pub struct Meta<'a> {
    pub base: &'a str,
    pub head: &'a str,
    pub head_file: &'a str,
    /// HEAD's text, to put annotations on the line of the change.
    pub head_text: Option<&'a str>,
    pub fail_on: Level,
}

pub fn summary(findings: &[Finding]) -> String {
    let count = |l: Level| findings.iter().filter(|f| f.level == l).count();
    format!("{} ERR, {} WARN, {} INFO", count(Level::Err), count(Level::Warn), count(Level::Info))
}

pub fn render(format: Format, findings: &[Finding], meta: &Meta) -> String {
    match format {
        Format::Text => text(findings, meta),
        Format::Markdown => markdown(findings, meta),
        Format::Json => json(findings, meta),
        Format::Junit => junit(findings, meta),
        Format::Github => github(findings, meta),
    }
}

fn text(findings: &[Finding], meta: &Meta) -> String {
    let mut out = String::new();
    for f in findings {
        out.push_str(&format!("{:<4} {}: {}\n     {} -> {}\n", f.level.as_str(), f.rule, f.message, f.base, f.head));
    }
    out.push_str(&format!("spec-diff {} -> {}: {}\n", meta.base, meta.head, summary(findings)));
    out
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn markdown(findings: &[Finding], meta: &Meta) -> String {
    let mut out = format!("### spec-diff `{}` → `{}`\n\n{}\n", meta.base, meta.head, summary(findings));
    if !findings.is_empty() {
        out.push_str("\n| Level | Rule | Change | Base | Head |\n|---|---|---|---|---|\n");
        for f in findings {
            out.push_str(&format!(
                "| {} | `{}` | {} | `{}` | `{}` |\n",
                f.level,
                f.rule,
                md_cell(&f.message),
                md_cell(&f.base),
                md_cell(&f.head)
            ));
        }
    }
    out
}

fn json(findings: &[Finding], meta: &Meta) -> String {
    let items: Vec<_> = findings
        .iter()
        .map(|f| {
            serde_json::json!({
                "level": f.level.as_str(),
                "rule": f.rule,
                "message": f.message,
                "base_pointer": f.base,
                "head_pointer": f.head,
                "why": super::rules::rule(f.rule).why,
            })
        })
        .collect();
    let doc = serde_json::json!({
        "base": meta.base,
        "head": meta.head,
        "fail_on": meta.fail_on.as_str(),
        "failed": super::exit_code(findings, meta.fail_on) != 0,
        "findings": items,
    });
    let mut s = serde_json::to_string_pretty(&doc).unwrap_or_default();
    s.push('\n');
    s
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&apos;")
}

fn junit(findings: &[Finding], meta: &Meta) -> String {
    let failures = findings.iter().filter(|f| f.level >= meta.fail_on).count();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str(&format!(
        "<testsuites>\n  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\">\n",
        xml(&format!("spec-diff {} -> {}", meta.base, meta.head)),
        findings.len()
    ));
    for f in findings {
        let name = xml(&format!("{} {}", f.rule, f.head));
        out.push_str(&format!("    <testcase classname=\"spec-diff.{}\" name=\"{name}\"", f.rule));
        if f.level >= meta.fail_on {
            out.push_str(&format!(
                ">\n      <failure type=\"{}\" message=\"{}\">{}</failure>\n    </testcase>\n",
                f.level,
                xml(&f.message),
                xml(&format!("{}\nbase: {}\nhead: {}", super::rules::rule(f.rule).why, f.base, f.head))
            ));
        } else {
            out.push_str(&format!(
                ">\n      <system-out>{} {}</system-out>\n    </testcase>\n",
                f.level,
                xml(&f.message)
            ));
        }
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

/// Workflow commands: the data is escaped as GitHub documents (`%`, CR,
/// LF; and `,`/`:` in properties) so a message cannot end the command early.
fn gh_data(s: &str) -> String {
    s.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

fn gh_prop(s: &str) -> String {
    gh_data(s).replace(':', "%3A").replace(',', "%2C")
}

fn github(findings: &[Finding], meta: &Meta) -> String {
    let mut out = String::new();
    for f in findings {
        let cmd = match f.level {
            Level::Err => "error",
            Level::Warn => "warning",
            Level::Info => "notice",
        };
        let line = meta.head_text.and_then(|t| locate(t, &f.head)).map(|l| format!(",line={l}")).unwrap_or_default();
        out.push_str(&format!(
            "::{cmd} file={}{line},title={}::{}\n",
            gh_prop(meta.head_file),
            gh_prop(&format!("spec-diff {}", f.rule)),
            gh_data(&format!("{} ({} -> {})", f.message, f.base, f.head))
        ));
    }
    out
}

/// The 1-based line where `pointer` is written in a block-style YAML or
/// pretty-printed JSON document, as near as keys on their own lines tell:
/// each segment is the first key of that name below the previous one and
/// indented deeper. An array index is skipped (the line stays at the
/// array), `in:name` parameter segments look for the `name:` line, and the
/// walk stops at the deepest segment found (a flow-style `{…}` line).
pub fn locate(text: &str, pointer: &str) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    // A sequence item's `- ` counts as one more column: the item's first key
    // sits inside its parent even where the dash is not indented, and the
    // next item's dash ends the previous item.
    let indent = |l: &str| l.len() - l.trim_start().len() + usize::from(l.trim_start().starts_with("- "));
    let (mut at, mut depth): (Option<usize>, Option<usize>) = (None, None);
    for seg in pointer.trim_start_matches('#').split('/').skip(1) {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        let start = at.map_or(0, |a| a + 1);
        let keys: Vec<String> = match seg.split_once(':') {
            Some((_, name)) if at.is_some_and(|a| lines[a].trim_start().starts_with("parameters")) => {
                [format!("name: {name}"), format!("- name: {name}"), format!("\"name\": \"{name}\"")].into()
            }
            _ => [format!("{seg}:"), format!("'{seg}':"), format!("\"{seg}\":")].into(),
        };
        let found = lines.iter().enumerate().skip(start).find(|(_, l)| {
            let t = l.trim_start().trim_start_matches("- ");
            depth.is_none_or(|d| indent(l) > d) && keys.iter().any(|k| t.starts_with(k.trim_start_matches("- ")))
        });
        // Leaving the parent's block (a line indented no deeper) ends the search.
        let within =
            |i: usize| depth.is_none_or(|d| lines[start..i].iter().all(|l| l.trim().is_empty() || indent(l) > d));
        match found {
            Some((i, l)) if within(i) => {
                at = Some(i);
                depth = Some(indent(l));
            }
            // A status code is a key, an index is not: skipped, the line stays at the array.
            _ if seg.parse::<usize>().is_ok() => {}
            _ => break,
        }
    }
    at.map(|a| a + 1)
}
