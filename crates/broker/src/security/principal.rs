//! The principal of a TLS client: its certificate's subject DN as Kafka prints it (RFC 2253,
//! Java's `X500Principal.getName()`), then `ssl.principal.mapping.rules`.
//!
//! Owns: the DN formatting (most specific RDN first, `,` between RDNs, `+` inside one,
//! RFC 2253 escapes, unknown attribute types as `OID=#hex`) and Kafka's RULE syntax
//! (`RULE:pattern/replacement/[LU]`, `DEFAULT`, comma separated; a rule applies when its
//! pattern matches the whole DN; the first that applies wins; none applying fails the
//! connection, as Kafka's `NoMatchingRule`).
//! Must never: panic on a hostile certificate (every field comes from the client).

use regex::Regex;
use x509_parser::der_parser::asn1_rs::ToDer;
use x509_parser::prelude::*;

/// One `ssl.principal.mapping.rules` rule.
#[derive(Debug, Clone)]
pub enum Rule {
    Default,
    Rule {
        pattern: Regex,
        replacement: String,
        case: Option<char>,
    },
}

/// Parses Kafka's rule list. Errors name what is wrong.
pub fn parse_rules(text: &str) -> Result<Vec<Rule>, String> {
    let mut rules = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("DEFAULT") {
            rules.push(Rule::Default);
            rest = after;
        } else if let Some(after) = rest.strip_prefix("RULE:") {
            let (pattern, after) = until_slash(after).ok_or("a RULE needs pattern/replacement/")?;
            let (replacement, after) =
                until_slash(after).ok_or("a RULE needs pattern/replacement/")?;
            let (case, after) = match after.chars().next() {
                Some(c @ ('L' | 'U')) => (Some(c), &after[1..]),
                _ => (None, after),
            };
            let pattern = Regex::new(&format!("^(?:{pattern})$"))
                .map_err(|e| format!("bad pattern {pattern:?}: {e}"))?;
            // Java's `$1` is the regex crate's `${1}` (`$1a` would name a group "1a").
            let mut java = String::new();
            let mut chars = replacement.chars().peekable();
            while let Some(c) = chars.next() {
                if c == '$' && chars.peek().is_some_and(|d| d.is_ascii_digit()) {
                    java.push_str("${");
                    while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                        java.push(*d);
                        chars.next();
                    }
                    java.push('}');
                } else {
                    java.push(c);
                }
            }
            rules.push(Rule::Rule {
                pattern,
                replacement: java,
                case,
            });
            rest = after;
        } else {
            return Err(format!("expected DEFAULT or RULE:... at {rest:?}"));
        }
        rest = rest.trim_start();
        match rest.strip_prefix(',') {
            Some(after) => rest = after.trim_start(),
            None if rest.is_empty() => {}
            None => return Err(format!("expected `,` at {rest:?}")),
        }
    }
    if rules.is_empty() {
        rules.push(Rule::Default);
    }
    Ok(rules)
}

/// The text up to the first unescaped `/` (escapes `\/` kept for the regex), and what follows it.
fn until_slash(s: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, '/')) => out.push('/'),
                Some((_, other)) => {
                    out.push('\\');
                    out.push(other);
                }
                None => return None,
            },
            '/' => return Some((out, &s[i + 1..])),
            c => out.push(c),
        }
    }
    None
}

/// Applies the rules to a DN: the principal name, or None if no rule applies.
pub fn map(rules: &[Rule], dn: &str) -> Option<String> {
    for rule in rules {
        match rule {
            Rule::Default => return Some(dn.to_string()),
            Rule::Rule {
                pattern,
                replacement,
                case,
            } => {
                if pattern.is_match(dn) {
                    let mapped = pattern.replace(dn, replacement.as_str()).into_owned();
                    return Some(match case {
                        Some('L') => mapped.to_lowercase(),
                        Some('U') => mapped.to_uppercase(),
                        _ => mapped,
                    });
                }
            }
        }
    }
    None
}

/// The subject DN of a DER certificate in RFC 2253 form, or None if it does not parse.
pub fn subject_dn(der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let mut rdns: Vec<String> = Vec::new();
    for rdn in cert.subject().iter() {
        let parts: Vec<String> = rdn
            .iter()
            .map(|atv| {
                let oid = atv.attr_type().to_id_string();
                let name = match oid.as_str() {
                    "2.5.4.3" => Some("CN"),
                    "2.5.4.6" => Some("C"),
                    "2.5.4.7" => Some("L"),
                    "2.5.4.8" => Some("ST"),
                    "2.5.4.10" => Some("O"),
                    "2.5.4.11" => Some("OU"),
                    "2.5.4.9" => Some("STREET"),
                    "0.9.2342.19200300.100.1.25" => Some("DC"),
                    "0.9.2342.19200300.100.1.1" => Some("UID"),
                    _ => None,
                };
                match (name, atv.as_str()) {
                    (Some(n), Ok(v)) => format!("{n}={}", escape(v)),
                    _ => {
                        let der = atv.attr_value().to_der_vec().unwrap_or_default();
                        let hex: String = der.iter().map(|b| format!("{b:02x}")).collect();
                        format!("{oid}=#{hex}")
                    }
                }
            })
            .collect();
        rdns.push(parts.join("+"));
    }
    rdns.reverse();
    Some(rdns.join(","))
}

/// RFC 2253 escaping of an attribute value.
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let last = v.chars().count().saturating_sub(1);
    for (i, c) in v.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_rule_syntax() {
        let rules = parse_rules(
            r"RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/, RULE:^CN=(.*?),OU=(.*?),O=(.*?)$/$1@$2/L, RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/U, DEFAULT",
        )
        .unwrap();
        assert_eq!(rules.len(), 4);
        assert_eq!(
            map(&rules, "CN=kafka1,OU=ServiceUsers,O=Org,C=US").as_deref(),
            Some("kafka1")
        );
        assert_eq!(
            map(&rules, "CN=Duke,OU=JavaSoft,O=Sun").as_deref(),
            Some("duke@javasoft")
        );
        assert_eq!(map(&rules, "X=1,cn=abc.d,Y=2").as_deref(), Some("ABC.D"));
        assert_eq!(map(&rules, "O=only").as_deref(), Some("O=only"));
        let only = parse_rules(r"RULE:^CN=([^,]*)$/$1/").unwrap();
        assert_eq!(map(&only, "CN=x,O=y"), None, "whole-DN match, else no rule");
        assert_eq!(map(&only, "CN=x").as_deref(), Some("x"));
        let slash = parse_rules(r"RULE:^CN=a\/b$/ab/").unwrap();
        assert_eq!(map(&slash, "CN=a/b").as_deref(), Some("ab"));
        for bad in ["RULE:x", "RULE:(/a/", "NOPE", "DEFAULT DEFAULT"] {
            assert!(parse_rules(bad).is_err(), "{bad}");
        }
        assert!(matches!(parse_rules("").unwrap()[..], [Rule::Default]));
    }

    #[test]
    fn escapes_as_rfc_2253() {
        assert_eq!(escape("a,b+c"), r"a\,b\+c");
        assert_eq!(escape(" #x "), r"\ #x\ ");
        assert_eq!(escape("#x"), r"\#x");
    }
}
