//! The difference between two versions of a record, field by field.

use serde::Serialize;
use serde_json::Value;

/// One field that differs: its path (`premium/amount`, `coverages/1/limit/amount`), the value
/// before (absent when added) and after (absent when removed).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Change {
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
}

/// Every leaf that differs between `before` and `after`, ordered by path. Objects are
/// compared key by key, lists position by position; a leaf is any other value.
pub fn diff(before: &Value, after: &Value) -> Vec<Change> {
    let mut out = Vec::new();
    walk(&mut String::new(), Some(before), Some(after), &mut out);
    out
}

fn walk(path: &mut String, before: Option<&Value>, after: Option<&Value>, out: &mut Vec<Change>) {
    match (before, after) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            let keys = a
                .keys()
                .chain(b.keys().filter(|k| !a.contains_key(*k)))
                .cloned()
                .collect::<Vec<_>>();
            for key in keys {
                descend(path, &key, a.get(&key), b.get(&key), out);
            }
        }
        (Some(Value::Array(a)), Some(Value::Array(b))) => {
            for i in 0..a.len().max(b.len()) {
                descend(path, &i.to_string(), a.get(i), b.get(i), out);
            }
        }
        (a, b) if a == b => {}
        (a, b) => out.push(Change {
            path: path.clone(),
            before: a.cloned(),
            after: b.cloned(),
        }),
    }
}

fn descend(
    path: &mut String,
    key: &str,
    before: Option<&Value>,
    after: Option<&Value>,
    out: &mut Vec<Change>,
) {
    let len = path.len();
    if !path.is_empty() {
        path.push('/');
    }
    path.push_str(key);
    walk(path, before, after, out);
    path.truncate(len);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn leaves_that_differ_are_listed_with_their_paths() {
        let a = json!({"premium": {"amount": "100", "currency": "EUR"}, "status": "active",
                       "coverages": [{"code": "A"}], "producer": null});
        let b = json!({"premium": {"amount": "120", "currency": "EUR"}, "status": "active",
                       "coverages": [{"code": "A"}, {"code": "B"}], "producer": "X"});
        let changes = diff(&a, &b);
        let paths: Vec<_> = changes.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(paths, ["coverages/1", "premium/amount", "producer"]);
        assert_eq!(changes[0].before, None);
        assert_eq!(changes[1].before, Some(json!("100")));
        assert_eq!(changes[2].after, Some(json!("X")));
        assert!(diff(&a, &a).is_empty());
    }
}
