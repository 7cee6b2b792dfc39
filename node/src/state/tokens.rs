//! Token records in Redis: `rz:tok:{cred}` is a hash holding the
//! token (AES-256-GCM encrypted when `state.encryption_key` is set), its
//! times, a cluster-wide `version` and the writer's fencing epoch
//! (`epoch_a`, `epoch_l`: see [`rhizome_proto::Epoch`]). It is
//! written only by a Lua script that refuses an epoch lower than the stored
//! one, so a stale writer (paused, then resumed) cannot overwrite a newer
//! token. Refreshes are single-flight cluster-wide under a fenced lease
//! ([`super::lease`]) whose acquisition takes the next fencing epoch. Invalidation after a 401 is
//! compare-and-set on the version. Taking the lock and writing a token carry
//! a deadline ([`Script::with_deadline`]): run after their caller gave up (a
//! frozen Redis resuming), they do nothing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use fred::interfaces::HashesInterface;
use rhizome_proto::records::{fence_key, lock_key, token_key};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

pub use super::lease::Lease;
use super::lease::{FencedLeases, LeaseKeys};
use super::redis::{Redis, Script, StateError};

/// Writes a record if the writer's epoch (assignment, lock) is not older than
/// the stored one; returns the new version, or -1 when fenced out. Run with a
/// deadline.
const WRITE: &str = r"
local sa = tonumber(redis.call('HGET', KEYS[1], 'epoch_a') or '0')
local sl = tonumber(redis.call('HGET', KEYS[1], 'epoch_l') or '0')
local a, l = tonumber(ARGV[1]), tonumber(ARGV[2])
if a < sa or (a == sa and l < sl) then return -1 end
local v = redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('HSET', KEYS[1], 'epoch_a', ARGV[1], 'epoch_l', ARGV[2], 'token', ARGV[3],
  'obtained_ms', ARGV[4], 'expires_ms', ARGV[5], 'claims', ARGV[6], 'writer', ARGV[7], 'valid', '1')
return v";

/// Marks the token invalid if it is still `version`; returns 1 if it did.
const INVALIDATE: &str = r"
if redis.call('HGET', KEYS[1], 'version') == ARGV[1] and redis.call('HGET', KEYS[1], 'valid') == '1' then
  redis.call('HSET', KEYS[1], 'valid', '0')
  redis.call('HDEL', KEYS[1], 'token')
  return 1
end
return 0";

/// A token record as read from Redis.
#[derive(Debug)]
pub struct Record {
    /// The token.
    pub value: SecretString,
    /// Cluster-wide version.
    pub version: u64,
    /// Obtained at, Unix ms.
    pub obtained_ms: u64,
    /// Expires at, Unix ms (none: never).
    pub expires_ms: Option<u64>,
    /// Non-secret claims, for the admin view.
    pub claims: Option<serde_json::Value>,
}

/// Token records, locks and fencing for one node.
#[derive(Debug)]
pub struct SharedTokens {
    redis: Arc<Redis>,
    node_id: String,
    cipher: Option<Cipher>,
    leases: FencedLeases,
    write: Script,
    invalidate: Script,
}

/// The lease keys of `cred`'s refresh lock (its record is the guarded one).
fn lease_keys(cred: &str) -> LeaseKeys {
    LeaseKeys {
        lease: lock_key(cred),
        fence: fence_key(cred),
        record: token_key(cred),
    }
}

impl SharedTokens {
    /// Records over `redis`; `lock_lease` bounds how long a dead refresher blocks others.
    pub fn new(
        redis: Arc<Redis>,
        node_id: &str,
        key: Option<&SecretString>,
        lock_lease: Duration,
    ) -> Result<Self, StateError> {
        Ok(SharedTokens {
            leases: FencedLeases::new(redis.clone(), node_id, lock_lease),
            redis,
            node_id: node_id.to_string(),
            cipher: key.map(Cipher::new).transpose()?,
            write: Script::with_deadline(WRITE),
            // Compare-and-set on the version: a late run still hits only the
            // version its caller saw rejected.
            invalidate: Script::new(INVALIDATE),
        })
    }

    /// The Redis client.
    pub fn redis(&self) -> &Arc<Redis> {
        &self.redis
    }

    /// Loads the Lua scripts (`SCRIPT LOAD`) so later calls are plain
    /// `EVALSHA`; a script flushed later is reloaded on `NOSCRIPT`.
    pub async fn preload(&self) -> Result<(), StateError> {
        let [acquire, release] = self.leases.scripts();
        for script in [&self.write, &self.invalidate, acquire, release] {
            self.redis.load(script).await?;
        }
        Ok(())
    }

    /// The valid record of `cred`, if any.
    pub async fn read(&self, cred: &str) -> Result<Option<Record>, StateError> {
        let client = self.redis.client();
        let h: HashMap<String, String> = self
            .redis
            .run("token_read", client.hgetall(token_key(cred)))
            .await?;
        if h.get("valid").map(String::as_str) != Some("1") {
            return Ok(None);
        }
        let num = |k: &str| h.get(k).and_then(|v| v.parse::<u64>().ok());
        // A record this node cannot use (no token, another encryption key,
        // sealed while this node has none) is treated as absent, so the lock
        // path overwrites it instead of failing every request.
        let opened = match (h.get("token"), &self.cipher) {
            (Some(t), Some(c)) => c.open(t, cred).ok(),
            (Some(t), None) if !t.starts_with(SEALED_PREFIX) => Some(SecretString::from(t.clone())),
            _ => None,
        };
        let Some(value) = opened else {
            tracing::warn!(credential = %cred, "shared token record unreadable with this node's state.encryption_key; it will be replaced");
            return Ok(None);
        };
        Ok(Some(Record {
            value,
            version: num("version").unwrap_or(0),
            obtained_ms: num("obtained_ms").unwrap_or(0),
            expires_ms: num("expires_ms").filter(|e| *e > 0),
            claims: h
                .get("claims")
                .and_then(|c| serde_json::from_str(c).ok())
                .filter(|c: &serde_json::Value| !c.is_null()),
        }))
    }

    /// Tries to take `cred`'s refresh lock under `assignment` (0 without a
    /// coordinator); `None` while somebody else holds it or the record was
    /// written under a newer assignment.
    pub async fn try_lock(&self, cred: &str, assignment: u64) -> Result<Option<Lease>, StateError> {
        let taken = self
            .leases
            .try_acquire(&lease_keys(cred), assignment)
            .await?;
        Ok(taken.ok())
    }

    /// The assignment the record was last written under (0: none).
    pub async fn stored_assignment(&self, cred: &str) -> Result<u64, StateError> {
        let client = self.redis.client();
        let a: Option<String> = self
            .redis
            .run("token_epoch", client.hget(token_key(cred), "epoch_a"))
            .await?;
        Ok(a.and_then(|a| a.parse().ok()).unwrap_or(0))
    }

    /// Releases a lock this node holds (best effort: it also expires).
    pub async fn unlock(&self, cred: &str, lease: &Lease) {
        self.leases.release(&lease_keys(cred), lease).await;
    }

    /// Writes a token under `lease`; returns its version, or `None` when a
    /// newer epoch has written since (this writer is stale).
    pub async fn write(
        &self,
        cred: &str,
        lease: &Lease,
        value: &SecretString,
        obtained_ms: u64,
        expires_ms: Option<u64>,
        claims: Option<&serde_json::Value>,
    ) -> Result<Option<u64>, StateError> {
        let token = match &self.cipher {
            Some(c) => c.seal(value, cred)?,
            None => value.expose_secret().to_string(),
        };
        let args = vec![
            lease.epoch.assignment.to_string(),
            lease.epoch.lock.to_string(),
            token,
            obtained_ms.to_string(),
            expires_ms.unwrap_or(0).to_string(),
            claims.map_or_else(|| "null".to_string(), ToString::to_string),
            self.node_id.clone(),
        ];
        let v: i64 = self
            .redis
            .eval("token_write", &self.write, vec![token_key(cred)], args)
            .await?;
        Ok(u64::try_from(v).ok())
    }

    /// Invalidates `version` of `cred` if it is still current (compare-and-set).
    pub async fn invalidate(&self, cred: &str, version: u64) -> Result<bool, StateError> {
        let n: i64 = self
            .redis
            .eval(
                "token_invalidate",
                &self.invalidate,
                vec![token_key(cred)],
                vec![version.to_string()],
            )
            .await?;
        Ok(n == 1)
    }
}

/// AES-256-GCM with a key derived from `state.encryption_key` (SHA-256).
/// Stored form: `enc1:` + base64(nonce ‖ ciphertext ‖ tag).
struct Cipher {
    key: LessSafeKey,
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cipher(***)")
    }
}

const SEALED_PREFIX: &str = "enc1:";

impl Cipher {
    fn new(secret: &SecretString) -> Result<Self, StateError> {
        let digest = Sha256::digest(secret.expose_secret().as_bytes());
        let key = UnboundKey::new(&AES_256_GCM, &digest)
            .map_err(|_| StateError::Protocol("encryption key rejected".into()))?;
        Ok(Cipher {
            key: LessSafeKey::new(key),
        })
    }

    /// The credential name is the associated data: a sealed token copied into
    /// another credential's record does not open there.
    fn seal(&self, value: &SecretString, cred: &str) -> Result<String, StateError> {
        let nonce_bytes: [u8; 12] = rand::random();
        let mut buf = value.expose_secret().as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce_bytes),
                Aad::from(cred.as_bytes()),
                &mut buf,
            )
            .map_err(|_| StateError::Protocol("token encryption failed".into()))?;
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&buf);
        Ok(format!(
            "{SEALED_PREFIX}{}",
            base64::engine::general_purpose::STANDARD.encode(out)
        ))
    }

    fn open(&self, stored: &str, cred: &str) -> Result<SecretString, StateError> {
        let bad = || {
            StateError::Protocol(
                "stored token cannot be decrypted with state.encryption_key".into(),
            )
        };
        let b64 = stored.strip_prefix(SEALED_PREFIX).ok_or_else(bad)?;
        let mut bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| bad())?;
        if bytes.len() < 12 + 16 {
            return Err(bad());
        }
        let mut nonce = [0u8; 12];
        nonce.copy_from_slice(&bytes[..12]);
        let plain = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(cred.as_bytes()),
                &mut bytes[12..],
            )
            .map_err(|_| bad())?;
        String::from_utf8(plain.to_vec())
            .map(SecretString::from)
            .map_err(|_| bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_tokens_round_trip_and_do_not_contain_the_token() {
        let c = Cipher::new(&SecretString::from("k".to_string())).expect("key");
        let sealed = c
            .seal(&SecretString::from("mocktok-secret".to_string()), "a")
            .expect("seal");
        assert!(sealed.starts_with(SEALED_PREFIX) && !sealed.contains("mocktok"));
        assert_eq!(
            c.open(&sealed, "a").expect("open").expose_secret(),
            "mocktok-secret"
        );
        let other = Cipher::new(&SecretString::from("other".to_string())).expect("key");
        assert!(
            other.open(&sealed, "a").is_err(),
            "wrong key is an error, not garbage"
        );
        assert!(c.open(&sealed, "b").is_err(), "bound to its credential");
    }
}
