//! Which fields differ between two values of one serialisable type, for
//! messages such as "--resume needs the same options".
use serde::Serialize;

/// `field: old → new` for every top-level field whose JSON differs; a value
/// that does not serialise to a JSON object is compared whole.
pub fn changed_fields<T: Serialize>(old: &T, new: &T) -> Vec<String> {
    let (Ok(old), Ok(new)) = (serde_json::to_value(old), serde_json::to_value(new)) else {
        return vec!["(cannot be compared)".to_string()];
    };
    let (Some(old_fields), Some(new_fields)) = (old.as_object(), new.as_object()) else {
        return if old == new {
            Vec::new()
        } else {
            vec![format!("{old} → {new}")]
        };
    };
    let mut names: Vec<&String> = old_fields.keys().chain(new_fields.keys()).collect();
    names.sort();
    names.dedup();
    let missing = serde_json::Value::String("(none)".into());
    names
        .into_iter()
        .filter_map(|name| {
            let a = old_fields.get(name).unwrap_or(&missing);
            let b = new_fields.get(name).unwrap_or(&missing);
            (a != b).then(|| format!("{name}: {a} → {b}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::changed_fields;

    #[derive(serde::Serialize)]
    struct Options {
        lr: f64,
        steps: usize,
        #[serde(skip_serializing_if = "Option::is_none")]
        init: Option<String>,
    }

    #[test]
    fn only_the_differing_fields_are_named() {
        let old = Options {
            lr: 0.001,
            steps: 10,
            init: None,
        };
        let new = Options {
            lr: 0.0005,
            steps: 10,
            init: Some("m".into()),
        };
        assert_eq!(
            changed_fields(&old, &new),
            vec!["init: \"(none)\" → \"m\"", "lr: 0.001 → 0.0005"]
        );
        assert!(changed_fields(&old, &old).is_empty());
    }
}
