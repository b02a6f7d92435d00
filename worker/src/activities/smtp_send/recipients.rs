//! Recipients and sender as the workflow gives them: `addr`, `addr:Display Name` (also
//! `Display Name <addr>`), one per value or several in one value separated by `,` or `;`.
use std::collections::HashSet;

use lettre::message::Mailbox;
use lettre::Address;

/// The three recipient lists after parsing, without duplicates, and what could not be read.
#[derive(Debug, Default)]
pub struct Recipients {
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    pub bcc: Vec<Mailbox>,
    /// The raw values that are not addresses, for the workflow log.
    pub invalid: Vec<String>,
}

impl Recipients {
    /// Parses the lists; an address already named in an earlier list (to, then cc, then
    /// bcc) is dropped from the later one so nobody gets the message twice.
    pub fn parse(to: &[String], cc: &[String], bcc: &[String]) -> Self {
        let mut seen = HashSet::new();
        let mut invalid = Vec::new();
        let mut take = |values: &[String]| -> Vec<Mailbox> {
            let mut list = Vec::new();
            for raw in values.iter().flat_map(|v| split_values(v)) {
                match parse_mailbox(&raw) {
                    Ok(mailbox) => {
                        if seen.insert(mailbox.email.to_string().to_lowercase()) {
                            list.push(mailbox);
                        }
                    }
                    Err(()) => invalid.push(raw),
                }
            }
            list
        };
        let to = take(to);
        let cc = take(cc);
        let bcc = take(bcc);
        Self {
            to,
            cc,
            bcc,
            invalid,
        }
    }

    /// Everybody the server is asked to deliver to.
    pub fn envelope(&self) -> Vec<Address> {
        self.to
            .iter()
            .chain(&self.cc)
            .chain(&self.bcc)
            .map(|m| m.email.clone())
            .collect()
    }
}

/// One mailbox: `addr`, `addr:Name` or `Name <addr>`, trimmed; an empty name is no name.
pub fn parse_mailbox(raw: &str) -> Result<Mailbox, ()> {
    let raw = raw.trim();
    if raw.contains('<') {
        return raw.parse::<Mailbox>().map_err(|_| ());
    }
    let (address, name) = match raw.split_once(':') {
        Some((address, name)) => (address.trim(), name.trim()),
        None => (raw, ""),
    };
    let address: Address = address.parse().map_err(|_| ())?;
    let name = (!name.is_empty()).then(|| name.to_string());
    Ok(Mailbox::new(name, address))
}

/// Splits `a@x.ru, b@y.ru` into two values; a piece without `@` belongs to the display
/// name before it (`a@x.ru:Doe, John` stays one value).
fn split_values(value: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for piece in value.split([',', ';']) {
        match out.last_mut() {
            Some(last) if !piece.contains('@') => {
                last.push(',');
                last.push_str(piece);
            }
            _ => out.push(piece.to_string()),
        }
    }
    out.into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn both_forms_are_read_and_trimmed() {
        let m = parse_mailbox("  anna@example.com : Анна Кох ").expect("mailbox");
        assert_eq!(m.email.to_string(), "anna@example.com");
        assert_eq!(m.name.as_deref(), Some("Анна Кох"));
        let m = parse_mailbox("ben@example.com:").expect("mailbox");
        assert_eq!(m.name, None);
        let m = parse_mailbox("Carl Doe <carl@example.com>").expect("mailbox");
        assert_eq!(
            (m.name.as_deref(), m.email.to_string().as_str()),
            (Some("Carl Doe"), "carl@example.com")
        );
        assert!(parse_mailbox("not an address").is_err());
        assert!(parse_mailbox("@example.com").is_err());
    }

    #[test]
    fn invalid_values_are_collected_and_duplicates_dropped() {
        let r = Recipients::parse(
            &strings(&[
                "a@example.com",
                "broken",
                "b@example.com:Doe, John; c@example.com",
            ]),
            &strings(&["A@example.com", "d@example.com"]),
            &strings(&["d@example.com", "e@example.com"]),
        );
        let emails =
            |list: &[Mailbox]| list.iter().map(|m| m.email.to_string()).collect::<Vec<_>>();
        assert_eq!(
            emails(&r.to),
            ["a@example.com", "b@example.com", "c@example.com"]
        );
        assert_eq!(r.to[1].name.as_deref(), Some("Doe, John"));
        assert_eq!(emails(&r.cc), ["d@example.com"]);
        assert_eq!(emails(&r.bcc), ["e@example.com"]);
        assert_eq!(r.invalid, ["broken"]);
        assert_eq!(r.envelope().len(), 5);
    }
}
