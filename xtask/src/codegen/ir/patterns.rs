//! Patterns: OpenAPI's `pattern` is an ECMA-262 regular expression; the
//! server checks it with Rust's `regex` crate (linear time in the input, so
//! a hostile value cannot make a pattern backtrack for minutes). The two
//! dialects differ, so each pattern is *translated*: ECMA's meanings of
//! `\d`, `\w`, `\s`, `\b` and `.` (ASCII digits and word characters, its
//! own white space and line terminators) are spelled out, `\uXXXX` (and
//! surrogate pairs) become code points, characters that are literal in
//! ECMA but operators in `regex` (`[`, `&`, `~` in a class; a `{` that is no
//! quantifier) are escaped. What has no linear-time equivalent —
//! lookaround, backreferences — is refused with the pointer. Matching is
//! on code points, as ECMA-262 with the `u` flag (JSON Schema's advice).

use anyhow::{Result, bail};

/// ECMA-262 `WhiteSpace` and `LineTerminator`, the members of `\s`.
const SPACE: &str = r"\t\n\x0B\x0C\r \x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}\x{FEFF}";
const DIGIT: &str = "0-9";
const WORD: &str = "0-9A-Za-z_";

/// The `regex` crate's spelling of the ECMA-262 pattern `p`.
pub fn translate(p: &str) -> Result<String> {
    let chars: Vec<char> = p.chars().collect();
    let mut out = String::with_capacity(p.len() + 16);
    let mut i = 0;
    let mut in_class = false;
    // The class just opened (`[` or `[^` written): `]` right after is the
    // empty class in ECMA.
    let mut class_start = false;
    while i < chars.len() {
        let c = chars[i];
        let just_opened = std::mem::take(&mut class_start);
        match c {
            '\\' => {
                let Some(&e) = chars.get(i + 1) else { bail!("pattern {p:?} ends with a lone `\\`") };
                i += 2;
                match e {
                    'd' | 'w' | 's' => {
                        let set = match e {
                            'd' => DIGIT,
                            'w' => WORD,
                            _ => SPACE,
                        };
                        if in_class {
                            out.push_str(set);
                        } else {
                            out.push('[');
                            out.push_str(set);
                            out.push(']');
                        }
                    }
                    'D' | 'W' | 'S' => {
                        if in_class {
                            bail!("pattern {p:?}: `\\{e}` inside a character class is not supported");
                        }
                        let set = match e {
                            'D' => DIGIT,
                            'W' => WORD,
                            _ => SPACE,
                        };
                        out.push_str("[^");
                        out.push_str(set);
                        out.push(']');
                    }
                    'b' if in_class => out.push_str(r"\x08"),
                    // ECMA's word boundary is by ASCII word characters.
                    'b' => out.push_str(r"(?-u:\b)"),
                    'B' => out.push_str(r"(?-u:\B)"),
                    '1'..='9' => bail!("pattern {p:?}: backreferences (`\\{e}`) have no linear-time equivalent"),
                    'k' if chars.get(i) == Some(&'<') => {
                        bail!("pattern {p:?}: named backreferences have no linear-time equivalent")
                    }
                    '0' if !chars.get(i).is_some_and(char::is_ascii_digit) => out.push_str(r"\x00"),
                    'u' => {
                        let (cp, used) = unicode_escape(&chars[i..], p)?;
                        i += used;
                        out.push_str(&format!(r"\x{{{cp:X}}}"));
                    }
                    'x' => {
                        let hex: String = chars.get(i..i + 2).map(|h| h.iter().collect()).unwrap_or_default();
                        let Ok(v) = u8::from_str_radix(&hex, 16) else {
                            bail!("pattern {p:?}: `\\x` needs two hex digits");
                        };
                        i += 2;
                        out.push_str(&format!(r"\x{{{v:X}}}"));
                    }
                    'c' => match chars.get(i) {
                        Some(l) if l.is_ascii_alphabetic() => {
                            i += 1;
                            out.push_str(&format!(r"\x{{{:X}}}", (*l as u32) % 32));
                        }
                        _ => bail!("pattern {p:?}: `\\c` needs a letter"),
                    },
                    't' | 'n' | 'r' | 'f' | 'v' => {
                        out.push_str(match e {
                            't' => r"\t",
                            'n' => r"\n",
                            'r' => r"\r",
                            'f' => r"\x0C",
                            _ => r"\x0B",
                        });
                    }
                    // `\p{…}`: the same Unicode property syntax.
                    'p' | 'P' => {
                        out.push('\\');
                        out.push(e);
                    }
                    e if e.is_ascii_punctuation() => {
                        out.push('\\');
                        out.push(e);
                    }
                    e if e.is_ascii_alphanumeric() => {
                        bail!("pattern {p:?}: the escape `\\{e}` is not supported")
                    }
                    // An escaped non-ASCII character is itself.
                    e => push_literal(&mut out, e),
                }
                continue;
            }
            '[' if in_class => out.push_str(r"\["),
            '[' => {
                in_class = true;
                class_start = true;
                out.push('[');
                if chars.get(i + 1) == Some(&'^') {
                    out.push('^');
                    i += 1;
                }
            }
            ']' if in_class && just_opened => {
                // `[]` matches nothing, `[^]` anything.
                if out.ends_with("[^") {
                    out.truncate(out.len() - 2);
                    out.push_str("(?s:.)");
                } else {
                    bail!("pattern {p:?}: the empty class `[]` matches nothing");
                }
                in_class = false;
            }
            ']' if in_class => {
                in_class = false;
                out.push(']');
            }
            ']' => out.push_str(r"\]"),
            '&' | '~' if in_class => {
                out.push('\\');
                out.push(c);
            }
            '-' if in_class && chars.get(i + 1) == Some(&'-') => {
                bail!("pattern {p:?}: `--` inside a character class is not supported")
            }
            '.' if !in_class => out.push_str(r"[^\n\r\x{2028}\x{2029}]"),
            '(' if !in_class && chars.get(i + 1) == Some(&'?') => {
                let rest: String = chars[i + 2..].iter().take(2).collect();
                if rest.starts_with('=') || rest.starts_with('!') || rest == "<=" || rest == "<!" {
                    bail!("pattern {p:?}: lookaround (`(?{rest}`…) has no linear-time equivalent");
                }
                out.push('(');
            }
            '{' if !in_class && !is_quantifier(&chars[i..]) => out.push_str(r"\{"),
            '}' if !in_class && !closes_quantifier(&out) => out.push_str(r"\}"),
            c if in_class => push_literal(&mut out, c),
            c => out.push(c),
        }
        i += 1;
    }
    if in_class {
        bail!("pattern {p:?}: unclosed `[`");
    }
    Ok(out)
}

/// A character `regex` would read as syntax where ECMA reads it literally.
fn push_literal(out: &mut String, c: char) {
    if c.is_whitespace() || c == '#' {
        out.push_str(&format!(r"\x{{{:X}}}", c as u32));
    } else {
        out.push(c);
    }
}

/// `\uXXXX` (a surrogate pair of two of them is one code point) or
/// `\u{X…}`; returns the code point and the characters used after `u`.
fn unicode_escape(rest: &[char], p: &str) -> Result<(u32, usize)> {
    let hex4 = |s: &[char]| -> Option<u32> {
        if s.len() < 4 {
            return None;
        }
        u32::from_str_radix(&s[..4].iter().collect::<String>(), 16).ok()
    };
    if rest.first() == Some(&'{') {
        let end = rest.iter().position(|c| *c == '}');
        let cp = end.and_then(|e| u32::from_str_radix(&rest[1..e].iter().collect::<String>(), 16).ok());
        return match (cp, end) {
            (Some(cp), Some(e)) if char::from_u32(cp).is_some() => Ok((cp, e + 1)),
            _ => bail!("pattern {p:?}: bad `\\u{{…}}` escape"),
        };
    }
    let Some(hi) = hex4(rest) else { bail!("pattern {p:?}: `\\u` needs four hex digits") };
    if (0xD800..0xDC00).contains(&hi) {
        if rest.get(4) == Some(&'\\')
            && rest.get(5) == Some(&'u')
            && let Some(lo) = hex4(&rest[6..]).filter(|lo| (0xDC00..0xE000).contains(lo))
        {
            return Ok((0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00), 10));
        }
        bail!("pattern {p:?}: a lone surrogate `\\u{hi:04X}` matches no code point");
    }
    if char::from_u32(hi).is_none() {
        bail!("pattern {p:?}: a lone surrogate `\\u{hi:04X}` matches no code point");
    }
    Ok((hi, 4))
}

/// `{n}`, `{n,}` or `{n,m}` starts here.
fn is_quantifier(s: &[char]) -> bool {
    let Some(end) = s.iter().position(|c| *c == '}') else { return false };
    let body: String = s[1..end].iter().collect();
    let mut parts = body.splitn(2, ',');
    let first = parts.next().unwrap_or_default();
    let ok_num = |x: &str| !x.is_empty() && x.chars().all(|c| c.is_ascii_digit());
    ok_num(first) && parts.next().is_none_or(|m| m.is_empty() || ok_num(m))
}

/// Whether the `}` about to be written closes a quantifier `out` opened.
fn closes_quantifier(out: &str) -> bool {
    match out.rfind('{') {
        Some(i) if !out[..i].ends_with('\\') => {
            out[i + 1..].chars().all(|c| c.is_ascii_digit() || c == ',') && out.len() > i + 1
        }
        _ => false,
    }
}

/// Translates and compiles: the `regex` spelling of a pattern the server
/// will enforce, or why it cannot.
pub fn check(p: &str) -> Result<String> {
    let translated = translate(p)?;
    regex::Regex::new(&translated).map_err(|e| anyhow::anyhow!("pattern {p:?} (as {translated:?}): {e}"))?;
    Ok(translated)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(p: &str, s: &str) -> bool {
        regex::Regex::new(&check(p).unwrap()).unwrap().is_match(s)
    }

    #[test]
    fn ecma_meanings_hold() {
        // `\d` is ASCII only in ECMA; Rust's is every Unicode digit.
        assert!(!matches(r"^\d+$", "١٢"));
        assert!(matches(r"^\d{4}-\d{2}$", "2024-01"));
        assert!(!matches(r"^\w+$", "é"));
        assert!(matches(r"^\s$", "\u{feff}"));
        // `.` stops at every ECMA line terminator.
        assert!(!matches(r"^.$", "\r"));
        assert!(!matches(r"^.$", "\u{2028}"));
        assert!(matches(r"^[^]$", "\n"));
        assert!(matches(r"^\u00e9$", "é"));
        assert!(matches(r"^\uD83D\uDE00$", "😀"));
        // Literal in ECMA, syntax in `regex`.
        assert!(matches(r"^[[a]+$", "[a["));
        assert!(matches(r"^[a&&b]$", "&"));
        assert!(matches(r"^a{$", "a{"));
        assert!(matches(r"^a{2}$", "aa"));
        assert!(matches(r"^x]$", "x]"));
        assert!(matches(r"^[ #]$", " "));
        assert!(matches(r"^\/$", "/"));
        assert!(matches(r"^(?<y>\d+)$", "12"));
        // Word boundaries by ASCII word characters, as ECMA's.
        assert!(matches(r"\bcat\b", "a cat!"));
        assert!(!matches(r"\bcat\b", "concatenate"));
        assert!(matches(r"x\B", "xy"));
        assert!(matches(r"^[\b]$", "\u{8}"));
    }

    #[test]
    fn what_has_no_linear_equivalent_is_refused() {
        for p in [r"(?=a)", r"(?!a)", r"(?<=a)b", r"(?<!a)b", r"(a)\1", r"(?<n>a)\k<n>", r"[]", r"\uD800", "[a"] {
            assert!(check(p).is_err(), "{p}");
        }
    }
}
