//! Numbers and lists as the reports print them.

/// 1234567 -> "1,234,567".
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `"a", "b", ... (+N more)`, the distinct values in order.
pub fn quoted_list(values: &[String], show: usize) -> String {
    let mut distinct: Vec<&String> = Vec::new();
    for v in values {
        if !distinct.contains(&v) {
            distinct.push(v);
        }
    }
    let mut text: Vec<String> = distinct
        .iter()
        .take(show)
        .map(|v| format!("\"{v}\""))
        .collect();
    if distinct.len() > show {
        text.push(format!("+{} more", distinct.len() - show));
    }
    text.join(", ")
}

#[cfg(test)]
mod tests {
    use super::{quoted_list, thousands};

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }

    #[test]
    fn quoted_list_drops_repeats_and_counts_the_rest() {
        let v: Vec<String> = ["red", "red", "blue", "green", "cyan"]
            .map(String::from)
            .to_vec();
        assert_eq!(quoted_list(&v, 2), "\"red\", \"blue\", +2 more");
    }
}
