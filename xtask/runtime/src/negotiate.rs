//! Proactive content negotiation (RFC 9110 §12.5.1): which of the media
//! types an operation documents for its response the client's `Accept`
//! prefers. The generated glue asks before the handler runs and hands it
//! the choice, so a handler never parses `Accept`.

/// At most this many media ranges of an `Accept` are looked at; the rest
/// are ignored, so the cost is bounded by the number of offers times this,
/// whatever the header's length (which the header limit bounds anyway).
pub const MAX_ACCEPT_RANGES: usize = 64;

/// One media range of an `Accept`, with its weight in thousandths.
struct Range<'a> {
    kind: &'a str,
    subtype: &'a str,
    params: Vec<(&'a str, &'a str)>,
    q: u16,
}

/// `q=0.5` in thousandths; `None` when it is not a qvalue (RFC 9110 §12.4.2).
fn qvalue(v: &str) -> Option<u16> {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac_value = format!("{frac:0<3}").parse::<u16>().ok()?;
    match int {
        "0" => Some(frac_value),
        "1" if frac_value == 0 => Some(1000),
        _ => None,
    }
}

fn parse(accept: &str) -> Vec<Range<'_>> {
    let mut out = Vec::new();
    for element in accept.split(',').take(MAX_ACCEPT_RANGES) {
        let mut parts = element.split(';').map(str::trim);
        let Some((kind, subtype)) = parts.next().and_then(|m| m.split_once('/')) else { continue };
        let (kind, subtype) = (kind.trim(), subtype.trim());
        if kind.is_empty() || subtype.is_empty() || (kind == "*" && subtype != "*") {
            continue;
        }
        let mut range = Range { kind, subtype, params: Vec::new(), q: 1000 };
        let mut valid = true;
        for p in parts.filter(|p| !p.is_empty()) {
            let Some((name, value)) = p.split_once('=') else {
                valid = false;
                break;
            };
            let (name, value) = (name.trim(), value.trim().trim_matches('"'));
            if name.eq_ignore_ascii_case("q") {
                // Parameters after `q` are accept-ext, not media type ones.
                match qvalue(value) {
                    Some(q) => range.q = q,
                    None => valid = false,
                }
                break;
            }
            range.params.push((name, value));
        }
        if valid {
            out.push(range);
        }
    }
    out
}

/// How specifically `range` names `offer` (higher is more specific), or
/// `None` when it does not name it.
fn specificity(range: &Range<'_>, offer: &str) -> Option<u8> {
    let mut parts = offer.split(';').map(str::trim);
    let (kind, subtype) = parts.next()?.split_once('/')?;
    let offer_params: Vec<(&str, &str)> =
        parts.filter_map(|p| p.split_once('=')).map(|(n, v)| (n.trim(), v.trim().trim_matches('"'))).collect();
    if range.kind == "*" {
        return Some(0);
    }
    if !range.kind.eq_ignore_ascii_case(kind) {
        return None;
    }
    if range.subtype == "*" {
        return Some(1);
    }
    if !range.subtype.eq_ignore_ascii_case(subtype) {
        return None;
    }
    let all_there = range.params.iter().all(|(n, v)| {
        offer_params.iter().any(|(on, ov)| on.eq_ignore_ascii_case(n) && (ov == v || ov.eq_ignore_ascii_case(v)))
    });
    all_there.then_some(if range.params.is_empty() { 2 } else { 3 })
}

/// The index in `offers` (media types as the spec lists them, most
/// preferred by the server first) the client's `Accept` prefers: the
/// highest weight, each offer weighed by the most specific range naming
/// it, ties going to the earlier offer. No `Accept`, or one with no media
/// range this reads, accepts anything: the first offer. `None` when every
/// offer is excluded (`q=0`, or named by no range).
pub fn negotiate(accept: Option<&str>, offers: &[&str]) -> Option<usize> {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return (!offers.is_empty()).then_some(0);
    };
    let ranges = parse(accept);
    if ranges.is_empty() {
        return (!offers.is_empty()).then_some(0);
    }
    let mut best: Option<(usize, u16)> = None;
    for (i, offer) in offers.iter().enumerate() {
        let q = ranges
            .iter()
            .filter_map(|r| specificity(r, offer).map(|s| (s, r.q)))
            .max_by_key(|(s, _)| *s)
            .map_or(0, |(_, q)| q);
        if q > 0 && best.is_none_or(|(_, b)| q > b) {
            best = Some((i, q));
        }
    }
    best.map(|(i, _)| i)
}

/// The request's `Accept`, every field line joined, for the generated glue
/// (a poem extractor, so it is not listed as a parameter of the operation).
#[derive(Debug, Clone, Default)]
pub struct Accept(pub Option<String>);

impl<'a> poem::FromRequest<'a> for Accept {
    async fn from_request(req: &'a poem::Request, _body: &mut poem::RequestBody) -> poem::Result<Self> {
        let values: Vec<&str> =
            req.headers().get_all(poem::http::header::ACCEPT).iter().filter_map(|v| v.to_str().ok()).collect();
        Ok(Accept((!values.is_empty()).then(|| values.join(", "))))
    }
}

impl Accept {
    /// [`negotiate`] over this header.
    pub fn choose(&self, offers: &[&str]) -> Option<usize> {
        negotiate(self.0.as_deref(), offers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFERS: &[&str] = &["application/json", "text/csv", "application/octet-stream"];

    #[test]
    fn the_best_weighted_most_specific_range_wins() {
        assert_eq!(negotiate(None, OFFERS), Some(0));
        assert_eq!(negotiate(Some("text/csv"), OFFERS), Some(1));
        assert_eq!(negotiate(Some("text/*"), OFFERS), Some(1));
        assert_eq!(negotiate(Some("*/*"), OFFERS), Some(0), "ties go to the server's order");
        assert_eq!(negotiate(Some("application/json;q=0.5, text/csv"), OFFERS), Some(1));
        assert_eq!(negotiate(Some("application/*;q=0.9, application/json;q=0.1"), OFFERS), Some(2));
        // The most specific range decides an offer's weight, even a lower one.
        assert_eq!(negotiate(Some("*/*;q=1, application/json;q=0"), OFFERS), Some(1));
        assert_eq!(negotiate(Some("image/png"), OFFERS), None);
        assert_eq!(negotiate(Some("text/csv;q=0"), &["text/csv"]), None);
        assert_eq!(negotiate(Some("TEXT/CSV"), OFFERS), Some(1), "media types are case-insensitive");
        // Parameters on a range must be on the offer.
        assert_eq!(negotiate(Some("text/csv;header=present"), OFFERS), None);
        assert_eq!(negotiate(Some("text/csv;header=present"), &["text/csv; header=present"]), Some(0));
    }

    #[test]
    fn unreadable_accept_values_are_lenient_and_bounded() {
        // Nothing readable: as if there were no Accept.
        assert_eq!(negotiate(Some("garbage, ;;;"), OFFERS), Some(0));
        // A bad qvalue drops its range only.
        assert_eq!(negotiate(Some("text/csv;q=2, application/octet-stream"), OFFERS), Some(2));
        assert_eq!(qvalue("0.125"), Some(125));
        assert_eq!(qvalue("1.000"), Some(1000));
        assert_eq!(qvalue("1.5"), None);
        assert_eq!(qvalue("0.1234"), None);
        // Ranges past the bound are not looked at.
        let long = format!("{}text/csv", "image/png, ".repeat(MAX_ACCEPT_RANGES));
        assert_eq!(negotiate(Some(&long), OFFERS), None);
    }
}
