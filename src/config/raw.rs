//! serde structs that mirror the TOML files exactly: every key optional, unknown keys refused,
//! values that get checked later kept with their byte span so errors can point at them.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use toml::Spanned;

/// The config file (`config.toml`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub inbox: Option<Spanned<String>>,
    pub outbox: Option<Spanned<String>>,
    pub default_profile: Option<Spanned<String>>,
    pub settle_ms: Option<Spanned<Integer>>,
    pub after: Option<Spanned<String>>,
    pub max_file_mb: Option<Spanned<Integer>>,
    pub notifications: Option<bool>,
    pub gallery: Option<bool>,
    /// The single server (`[server]`); absent with a pool.
    pub server: Option<Spanned<RawServer>>,
    /// A pool of servers (`[[servers]]`), instead of `[server]`.
    pub servers: Option<Spanned<Vec<Spanned<RawServer>>>>,
}

/// The `[server]` table, or one `[[servers]]` entry.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    /// How logs and `status` call it; required in `[[servers]]`.
    pub name: Option<Spanned<String>>,
    /// Only these profiles are sent to this server.
    pub profiles: Option<Vec<Spanned<String>>>,
    pub url: Option<Spanned<String>>,
    pub api: Option<Spanned<String>>,
    pub timeout_s: Option<Spanned<Integer>>,
    pub max_attempts: Option<Spanned<Integer>>,
    pub concurrency: Option<Spanned<Integer>>,
    pub username: Option<Spanned<String>>,
    pub password_env: Option<Spanned<String>>,
    /// The environment variable holding Draw Things' shared secret (gRPC).
    pub shared_secret_env: Option<Spanned<String>>,
    /// A PEM certificate authority to trust for https.
    pub ca_file: Option<Spanned<String>>,
}

/// A profile file, or a per-image `.toml` sidecar.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSettings {
    pub prompt: Option<String>,
    pub negative_prompt: Option<String>,
    pub steps: Option<Spanned<Integer>>,
    pub strength: Option<Spanned<Number>>,
    pub guidance_scale: Option<Spanned<Number>>,
    pub seed: Option<Spanned<Integer>>,
    pub sampler: Option<Spanned<String>>,
    pub model: Option<Spanned<String>>,
    pub batch_count: Option<Spanned<Integer>>,
    pub width: Option<Spanned<Integer>>,
    pub height: Option<Spanned<Integer>>,
    pub max_megapixels: Option<Spanned<Number>>,
    pub loras: Option<Vec<Spanned<RawLora>>>,
    /// Profiles only: the servers of a pool this profile prefers, in order.
    pub servers: Option<Vec<Spanned<String>>>,
    /// Keys are spanned so that a refused key can be pointed at.
    pub extra: Option<BTreeMap<Spanned<String>, toml::Value>>,
    /// Profiles only: a ComfyUI workflow in API format, beside the profile.
    pub workflow: Option<Spanned<String>>,
    /// `[comfyui]`.
    pub comfyui: Option<RawComfyUi>,
}

/// The `[comfyui]` table of a profile or sidecar.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawComfyUi {
    /// "<node id>.<input>" = value.
    pub set: Option<BTreeMap<Spanned<String>, toml::Value>>,
}

/// One `[[loras]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLora {
    pub file: Spanned<String>,
    pub weight: Option<Spanned<Number>>,
}

/// A TOML integer, of any size TOML allows; ranges are checked afterwards so that the message
/// can name the allowed range instead of a Rust type such as `u32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Integer(pub i64);

/// A TOML float or integer (`strength = 1` is as good as `strength = 1.0`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Number(pub f64);

impl<'de> Deserialize<'de> for Integer {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IntegerVisitor;
        impl Visitor<'_> for IntegerVisitor {
            type Value = Integer;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer")
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<Integer, E> {
                Ok(Integer(value))
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<Integer, E> {
                i64::try_from(value)
                    .map(Integer)
                    .map_err(|_| E::custom(format!("{value} is too large")))
            }
        }
        deserializer.deserialize_i64(IntegerVisitor)
    }
}

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NumberVisitor;
        impl Visitor<'_> for NumberVisitor {
            type Value = Number;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number")
            }
            fn visit_f64<E: de::Error>(self, value: f64) -> Result<Number, E> {
                Ok(Number(value))
            }
            // Rounding above 2^53 does not matter: every range checked later is far smaller.
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<Number, E> {
                Ok(Number(value as f64))
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<Number, E> {
                Ok(Number(value as f64))
            }
        }
        deserializer.deserialize_f64(NumberVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_accept_integers_and_integers_refuse_floats() {
        let raw: RawSettings = toml::from_str("strength = 1\nsteps = 4").unwrap();
        assert_eq!(raw.strength.map(|s| s.into_inner()), Some(Number(1.0)));
        assert_eq!(raw.steps.map(|s| s.into_inner()), Some(Integer(4)));
        let error = toml::from_str::<RawSettings>("steps = 4.5").unwrap_err();
        assert!(error.message().contains("expected an integer"), "{error}");
        let error = toml::from_str::<RawSettings>("strength = \"x\"").unwrap_err();
        assert!(error.message().contains("expected a number"), "{error}");
    }
}
