//! What this build does not honour yet, in one table. A key the node would
//! accept and then ignore is a lie to the operator: it believes in a
//! limit or a log file it does not have. The keys of the contract that are
//! not built (none, in this build) are not in
//! the model, so the unknown-key rule refuses them; the loader turns that
//! error into a "not supported" message through [`unmodelled_key`], so the
//! operator learns the key is known but not built. The issue that
//! implements a feature deletes its rows.

use super::validate::ConfigError;

/// One key the build cannot honour yet.
struct NotYet {
    /// Path of the key; `[]` stands for any index (`clients[].rate`).
    path: &'static str,
    /// The missing feature, shown in parentheses.
    feature: &'static str,
}

/// The table. Delete a row when its feature lands.
const NOT_YET: &[NotYet] = &[];

fn refusal(path: String, feature: &str) -> ConfigError {
    ConfigError::new(path, format!("not supported by this build yet ({feature})"))
}

/// The refusal for `path`, an unknown key that the contract names but this
/// build does not model yet; `None` for a plain unknown key (a typo).
pub fn unmodelled_key(path: &str) -> Option<ConfigError> {
    let pattern = without_indices(path);
    NOT_YET
        .iter()
        .find(|row| row.path == pattern)
        .map(|row| refusal(path.to_string(), row.feature))
}

/// `clients[3].rate` → `clients[].rate`.
fn without_indices(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => {
                in_index = true;
                out.push('[');
            }
            ']' => {
                in_index = false;
                out.push(']');
            }
            _ if in_index => {}
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unmodelled_keys_of_the_contract_get_the_feature_named() {
        assert!(unmodelled_key("log").is_none(), "modelled");
        assert!(unmodelled_key("clients[2].rate").is_none(), "modelled");
        assert!(unmodelled_key("state.tls").is_none(), "modelled");
        assert!(unmodelled_key("limits.max_bodyy").is_none());
        assert!(unmodelled_key("routes[0].sse.replay").is_none(), "modelled");
    }
}
