//! Typed extraction that reports every type error, not just the first. serde
//! stops at the first bad value, so a file with three mistakes would take
//! three runs of `check-config` to fix. Instead, each failure is recorded with
//! its path, the offending value is pruned from the merged tree (a field falls
//! back to its default; an element whose required field is bad is dropped)
//! and extraction runs again, until it succeeds. The pruned config is then
//! validated too, so semantic errors come in the same run.
//!
//! Pruning an array element shifts the indices after it, so every path is
//! mapped back to the index the operator wrote. Semantic errors caused only by
//! the pruning — a route naming an upstream that was dropped for a type error —
//! are left out: they are not the operator's mistakes.

use std::collections::{HashMap, HashSet};

use figment::error::Kind;
use figment::value::Value;
use figment::{Figment, Source};
use rhizome_proto::config::{unmodelled_key, ConfigError};
use rhizome_proto::Config;

/// One step of a path into the config tree.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Seg {
    Key(String),
    Index(usize),
}

/// The typed config of `value` (the merged `figment`) when it has no error at
/// all; otherwise every error found: type errors first, then the validation
/// errors of what remained.
pub(super) fn extract(figment: &Figment, value: Value) -> Result<Config, Vec<ConfigError>> {
    let mut tree = Pruned::new(value);
    let mut errors = Vec::new();
    let config = loop {
        match serde_path_to_error::deserialize::<_, Config>(&tree.value) {
            Ok(config) => break Some(config),
            Err(e) => {
                let Some(at) = segments(e.path()) else {
                    errors.push(ConfigError::new(
                        e.path().to_string(),
                        e.inner().to_string(),
                    ));
                    break None;
                };
                let inner = e.into_inner();
                if let Some(mut error) = tree.describe(&at, &inner) {
                    if let Some(origin) = tree.origin(figment, &at) {
                        error.message = format!("{} (set by {origin})", error.message);
                    }
                    errors.push(error);
                }
                if !tree.prune(&at) {
                    break None;
                }
            }
        }
    };
    if let Some(config) = config {
        if let Err(semantic) = config.validate() {
            errors.extend(tree.own_errors(semantic));
        }
        if errors.is_empty() {
            return Ok(config);
        }
    }
    Err(errors)
}

/// The merged tree being pruned, and what it takes to map its paths back.
struct Pruned {
    value: Value,
    /// Original indices removed from each array (keyed by the array's original path).
    removed: HashMap<Vec<Seg>, Vec<usize>>,
    /// Original paths pruned so far.
    pruned: HashSet<Vec<Seg>>,
    /// `name`s of the array elements dropped (their references are not errors).
    dropped_names: HashSet<String>,
}

impl Pruned {
    fn new(value: Value) -> Self {
        Pruned {
            value,
            removed: HashMap::new(),
            pruned: HashSet::new(),
            dropped_names: HashSet::new(),
        }
    }

    /// The error to report for a failure at `at`, or `None` when the failure
    /// only follows from an earlier pruning (a required field we removed).
    fn describe(&self, at: &[Seg], error: &figment::Error) -> Option<ConfigError> {
        let original = self.original(at);
        match &error.kind {
            Kind::MissingField(field) => {
                let mut field_path = original.clone();
                field_path.push(Seg::Key(field.to_string()));
                if self.pruned.contains(&field_path) {
                    return None;
                }
            }
            Kind::UnknownField(..) => {
                if let Some(refusal) = unmodelled_key(&display(&original)) {
                    return Some(refusal);
                }
            }
            _ => {}
        }
        Some(ConfigError::new(display(&original), error.to_string()))
    }

    /// Where the value at `at` came from, when not from the file the operator
    /// is looking at: an environment variable or a command-line flag.
    fn origin(&self, figment: &Figment, at: &[Seg]) -> Option<String> {
        let metadata = figment.get_metadata(lookup(&self.value, at)?.tag())?;
        match &metadata.source {
            Some(Source::File(_)) => None,
            Some(Source::Code(_)) => Some("a command-line flag".into()),
            _ => Some(metadata.name.to_string()),
        }
    }

    /// Removes the value at `at` (a path in the current tree). False when
    /// nothing can be removed (the root, or a path that is not there).
    fn prune(&mut self, at: &[Seg]) -> bool {
        let Some((last, parent)) = at.split_last() else {
            return false;
        };
        let original = self.original(at);
        let Some(container) = lookup_mut(&mut self.value, parent) else {
            return false;
        };
        match (container, last) {
            (Value::Dict(_, dict), Seg::Key(k)) => {
                if dict.remove(k).is_none() {
                    return false;
                }
            }
            (Value::Array(_, items), Seg::Index(i)) if *i < items.len() => {
                let item = items.remove(*i);
                if let Some(name) = item
                    .find_ref("name")
                    .and_then(|n| n.as_str().map(str::to_string))
                {
                    self.dropped_names.insert(name);
                }
                if let Some((Seg::Index(orig), array)) = original.split_last() {
                    let removed = self.removed.entry(array.to_vec()).or_default();
                    let pos = removed.partition_point(|r| r < orig);
                    removed.insert(pos, *orig);
                }
            }
            _ => return false,
        }
        self.pruned.insert(original);
        true
    }

    /// `at`, a path in the current tree, with the indices the operator wrote.
    fn original(&self, at: &[Seg]) -> Vec<Seg> {
        let mut out = Vec::with_capacity(at.len());
        for seg in at {
            let mapped = match seg {
                Seg::Key(k) => Seg::Key(k.clone()),
                Seg::Index(i) => {
                    let mut index = *i;
                    for r in self.removed.get(&out).into_iter().flatten() {
                        if *r <= index {
                            index += 1;
                        }
                    }
                    Seg::Index(index)
                }
            };
            out.push(mapped);
        }
        out
    }

    /// Validation errors of the pruned config, with original paths, minus
    /// those that only name an element dropped for a type error.
    fn own_errors(&self, errors: Vec<ConfigError>) -> Vec<ConfigError> {
        errors
            .into_iter()
            .filter_map(|e| {
                let Some(at) = parse(&e.path) else {
                    return Some(e);
                };
                let names_dropped = lookup(&self.value, &at)
                    .and_then(Value::as_str)
                    .is_some_and(|v| self.dropped_names.contains(v));
                (!names_dropped).then(|| ConfigError::new(display(&self.original(&at)), e.message))
            })
            .collect()
    }
}

fn lookup<'a>(mut value: &'a Value, at: &[Seg]) -> Option<&'a Value> {
    for seg in at {
        value = match (value, seg) {
            (Value::Dict(_, dict), Seg::Key(k)) => dict.get(k)?,
            (Value::Array(_, items), Seg::Index(i)) => items.get(*i)?,
            _ => return None,
        };
    }
    Some(value)
}

fn lookup_mut<'a>(mut value: &'a mut Value, at: &[Seg]) -> Option<&'a mut Value> {
    for seg in at {
        value = match (value, seg) {
            (Value::Dict(_, dict), Seg::Key(k)) => dict.get_mut(k)?,
            (Value::Array(_, items), Seg::Index(i)) => items.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(value)
}

/// A serde path as segments; `None` when it has steps the tree cannot have.
fn segments(path: &serde_path_to_error::Path) -> Option<Vec<Seg>> {
    path.iter()
        .map(|seg| match seg {
            serde_path_to_error::Segment::Map { key } => Some(Seg::Key(key.clone())),
            serde_path_to_error::Segment::Seq { index } => Some(Seg::Index(*index)),
            _ => None,
        })
        .collect()
}

/// `routes[0].sse.replay` as segments (the form of [`ConfigError::path`]).
fn parse(path: &str) -> Option<Vec<Seg>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (key, mut rest) = part.split_at(part.find('[').unwrap_or(part.len()));
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return None;
        }
        out.push(Seg::Key(key.to_string()));
        while let Some(r) = rest.strip_prefix('[') {
            let (index, after) = r.split_once(']')?;
            out.push(Seg::Index(index.parse().ok()?));
            rest = after;
        }
        if !rest.is_empty() {
            return None;
        }
    }
    Some(out)
}

/// Segments in the form of [`ConfigError::path`]; the root is `(root)`.
fn display(at: &[Seg]) -> String {
    if at.is_empty() {
        return "(root)".into();
    }
    let mut out = String::new();
    for seg in at {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_round_trip() {
        for p in ["node.listen", "routes[3].sse.replay", "a[1][2].b", "log"] {
            assert_eq!(display(&parse(p).expect("parses")), p);
        }
        assert_eq!(parse("(root)"), None);
        assert_eq!(parse("a[x]"), None);
    }

    #[test]
    fn indices_map_back_past_removed_elements() {
        let mut tree = Pruned::new(Value::from(0));
        let arr = vec![Seg::Key("routes".into())];
        tree.removed.insert(arr.clone(), vec![0, 2]);
        let at = |i| vec![Seg::Key("routes".into()), Seg::Index(i)];
        assert_eq!(tree.original(&at(0)), at(1));
        assert_eq!(tree.original(&at(1)), at(3));
        assert_eq!(tree.original(&at(2)), at(4));
    }
}
