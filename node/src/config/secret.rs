//! Resolving secret references (`{ env }`, `{ file }`, inline) to values held in
//! [`SecretString`], whose `Debug` prints nothing. Errors name the reference,
//! never a value.

use rhizome_proto::Secret;
use secrecy::SecretString;

/// A secret reference that could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The environment variable is not set (or not UTF-8).
    #[error("environment variable {0} is not set")]
    MissingEnv(String),
    /// The file could not be read.
    #[error("cannot read secret file {path}: {source}")]
    File {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The value is empty.
    #[error("secret is empty")]
    Empty,
}

/// Resolves a secret reference to its value.
pub fn resolve(secret: &Secret) -> Result<SecretString, SecretError> {
    let value = match secret {
        Secret::Value(v) => v.clone(),
        Secret::Env { env } => SecretString::from(
            std::env::var(env).map_err(|_| SecretError::MissingEnv(env.clone()))?,
        ),
        Secret::File { file } => {
            let text = std::fs::read_to_string(file).map_err(|source| SecretError::File {
                path: file.display().to_string(),
                source,
            })?;
            SecretString::from(text.trim_end_matches(['\r', '\n']).to_string())
        }
    };
    use secrecy::ExposeSecret;
    if value.expose_secret().is_empty() {
        return Err(SecretError::Empty);
    }
    Ok(value)
}

/// Resolves an optional secret reference.
pub fn resolve_optional(secret: Option<&Secret>) -> Result<Option<SecretString>, SecretError> {
    secret.map(resolve).transpose()
}
