//! NATS-style subject matching, for the embedded broker's filters.

/// Whether `subject` matches `filter`: tokens are separated by `.`, `*` matches one token and
/// a final `>` one or more.
pub fn subject_matches(filter: &str, subject: &str) -> bool {
    let mut subject_tokens = subject.split('.');
    let mut filter_tokens = filter.split('.').peekable();
    while let Some(f) = filter_tokens.next() {
        if f == ">" && filter_tokens.peek().is_none() {
            return subject_tokens.next().is_some();
        }
        match subject_tokens.next() {
            Some(s) if f == "*" || f == s => {}
            _ => return false,
        }
    }
    subject_tokens.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::subject_matches;

    #[test]
    fn wildcards() {
        assert!(subject_matches("events.>", "events.policy.created.a"));
        assert!(!subject_matches("events.>", "events"));
        assert!(subject_matches(
            "events.*.created.*",
            "events.policy.created.a"
        ));
        assert!(!subject_matches(
            "events.*.created",
            "events.policy.created.a"
        ));
        assert!(subject_matches("a.b", "a.b"));
        assert!(!subject_matches("a.b", "a.b.c"));
        assert!(!subject_matches("a.b.c", "a.b"));
    }
}
