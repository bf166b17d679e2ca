//! [`HttpOptions`]: the bearer token, the admin actions and the liveness
//! check of the endpoints, validated once when they are built.

use std::fmt;
use std::sync::Arc;

use crate::Registry;

/// The environment variable [`HttpOptions::from_env`] reads the bearer
/// token from.
///
/// ```
/// assert_eq!(fusebox_std::http::TOKEN_VAR, "FUSEBOX_HTTP_TOKEN");
/// ```
pub const TOKEN_VAR: &str = "FUSEBOX_HTTP_TOKEN";

/// The environment variable [`HttpOptions::from_env`] reads the admin
/// switch from (`true`/`1` or `false`/`0`).
///
/// ```
/// assert_eq!(fusebox_std::http::ADMIN_VAR, "FUSEBOX_HTTP_ADMIN");
/// ```
pub const ADMIN_VAR: &str = "FUSEBOX_HTTP_ADMIN";

/// The shortest bearer token accepted, in bytes.
///
/// ```
/// use fusebox_std::http::{HttpOptions, MIN_TOKEN_LEN};
///
/// assert!(HttpOptions::builder().bearer_token("x".repeat(MIN_TOKEN_LEN - 1)).build().is_err());
/// assert!(HttpOptions::builder().bearer_token("x".repeat(MIN_TOKEN_LEN)).build().is_ok());
/// ```
pub const MIN_TOKEN_LEN: usize = 16;

const MAX_TOKEN_LEN: usize = 4096;

type Liveness = Arc<dyn Fn(&Registry) -> bool + Send + Sync>;

/// How the endpoints are protected and what they allow; see the
/// [module docs](super).
///
/// The default is open: no token, no admin actions, always alive.
///
/// # Examples
///
/// ```
/// use fusebox_std::http::HttpOptions;
///
/// let open = HttpOptions::default();
/// assert!(!open.token_required() && !open.admin_enabled());
///
/// let ops = HttpOptions::builder().bearer_token("s3cr3t-t0ken-0f-16+").admin(true).build()?;
/// assert!(ops.token_required() && ops.admin_enabled());
/// assert!(!format!("{ops:?}").contains("s3cr3t"));
/// # Ok::<(), fusebox_std::http::HttpConfigError>(())
/// ```
#[derive(Clone, Default)]
pub struct HttpOptions {
    token: Option<Arc<str>>,
    admin: bool,
    liveness: Option<Liveness>,
}

/// Builds [`HttpOptions`]; [`build`](Self::build) validates them.
///
/// ```
/// use fusebox_std::http::{HttpConfigError, HttpOptions};
///
/// let err = HttpOptions::builder().admin(true).build().unwrap_err();
/// assert_eq!(err, HttpConfigError::AdminWithoutToken);
/// ```
#[derive(Clone, Default)]
#[must_use]
pub struct HttpOptionsBuilder {
    options: HttpOptions,
}

/// Why [`HttpOptions`] were refused.
///
/// ```
/// use fusebox_std::http::HttpConfigError;
///
/// assert_eq!(
///     HttpConfigError::AdminWithoutToken.to_string(),
///     "admin actions need a bearer token: set one or leave them off"
/// );
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HttpConfigError {
    /// Admin actions were switched on without a bearer token.
    AdminWithoutToken,
    /// The token is unusable (the reason never quotes it).
    InvalidToken {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// [`ADMIN_VAR`] holds something other than `true`, `1`, `false`, `0`.
    InvalidAdminFlag,
}

impl fmt::Display for HttpConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AdminWithoutToken => {
                f.write_str("admin actions need a bearer token: set one or leave them off")
            }
            Self::InvalidToken { reason } => write!(f, "invalid bearer token: {reason}"),
            Self::InvalidAdminFlag => write!(f, "{ADMIN_VAR} must be true, 1, false or 0"),
        }
    }
}

impl std::error::Error for HttpConfigError {}

impl HttpOptions {
    /// A builder, starting from the open defaults.
    ///
    /// ```
    /// use fusebox_std::http::HttpOptions;
    ///
    /// let options = HttpOptions::builder().build()?;
    /// assert!(!options.token_required());
    /// # Ok::<(), fusebox_std::http::HttpConfigError>(())
    /// ```
    pub fn builder() -> HttpOptionsBuilder {
        HttpOptionsBuilder::default()
    }

    /// Options from the process environment: the token from [`TOKEN_VAR`]
    /// (unset: none; surrounding whitespace, such as the newline a secret
    /// file ends with, is not part of it; set to nothing, or to whitespace
    /// alone, an error), admin actions from [`ADMIN_VAR`].
    ///
    /// # Errors
    ///
    /// As [`HttpOptionsBuilder::build`], and
    /// [`HttpConfigError::InvalidAdminFlag`]. A variable that is set but
    /// not Unicode is an error ([`HttpConfigError::InvalidToken`],
    /// [`HttpConfigError::InvalidAdminFlag`]), never read as unset: a
    /// token that cannot be read must not leave the endpoints open.
    ///
    /// ```
    /// use fusebox_std::http::HttpOptions;
    ///
    /// // Whatever the environment holds: options that are read never
    /// // allow admin actions without a token.
    /// if let Ok(options) = HttpOptions::from_env() {
    ///     assert!(!options.admin_enabled() || options.token_required());
    /// }
    /// ```
    pub fn from_env() -> Result<Self, HttpConfigError> {
        let token = env_var(
            TOKEN_VAR,
            HttpConfigError::InvalidToken {
                reason: "only visible ASCII is allowed",
            },
        )?;
        let admin = env_var(ADMIN_VAR, HttpConfigError::InvalidAdminFlag)?;
        Self::from_vars(|name| match name {
            TOKEN_VAR => token.clone(),
            ADMIN_VAR => admin.clone(),
            _ => None,
        })
    }

    /// Options from variables looked up by `var` (for tests and other
    /// configuration sources), read as [`from_env`](Self::from_env) does.
    ///
    /// # Errors
    ///
    /// As [`from_env`](Self::from_env).
    ///
    /// ```
    /// use fusebox_std::http::{HttpConfigError, HttpOptions};
    ///
    /// let vars = |name: &str| (name == "FUSEBOX_HTTP_ADMIN").then(|| "yes".to_owned());
    /// assert_eq!(HttpOptions::from_vars(vars).unwrap_err(), HttpConfigError::InvalidAdminFlag);
    /// ```
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, HttpConfigError> {
        let mut builder = Self::builder();
        if let Some(token) = var(TOKEN_VAR) {
            // A secret read from a file often ends in a newline: surrounding
            // whitespace is not part of it. A value that is empty, or
            // whitespace alone, is an error, never "no token": a secret
            // that did not render must not leave the endpoints open.
            let token = token.trim_ascii();
            if token.is_empty() {
                return Err(HttpConfigError::InvalidToken {
                    reason: "set but empty (unset the variable for no token)",
                });
            }
            builder = builder.bearer_token(token);
        }
        let admin = match var(ADMIN_VAR).as_deref().map(str::trim) {
            None | Some("" | "false" | "0") => false,
            Some("true" | "1") => true,
            Some(_) => return Err(HttpConfigError::InvalidAdminFlag),
        };
        builder.admin(admin).build()
    }

    /// Whether the detailed endpoints ask for the bearer token.
    ///
    /// ```
    /// use fusebox_std::http::HttpOptions;
    ///
    /// assert!(!HttpOptions::default().token_required());
    /// ```
    pub fn token_required(&self) -> bool {
        self.token.is_some()
    }

    /// Whether the admin routes are served.
    ///
    /// ```
    /// use fusebox_std::http::HttpOptions;
    ///
    /// assert!(!HttpOptions::default().admin_enabled());
    /// ```
    pub fn admin_enabled(&self) -> bool {
        self.admin
    }

    pub(super) fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The liveness verdict: the configured check's, or `true`.
    pub(super) fn alive(&self, registry: &Registry) -> bool {
        self.liveness.as_ref().is_none_or(|check| check(registry))
    }
}

/// The variable `name` (`None` when unset), or `error` when it is set
/// but not Unicode.
fn env_var(name: &str, error: HttpConfigError) -> Result<Option<String>, HttpConfigError> {
    match std::env::var(name) {
        Ok(value) => Ok(Some(value)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(error),
    }
}

impl fmt::Debug for HttpOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpOptions")
            .field("token", &self.token.as_ref().map(|_| crate::redact::MASK))
            .field("admin", &self.admin)
            .field("liveness", &self.liveness.as_ref().map(|_| "custom"))
            .finish()
    }
}

impl HttpOptionsBuilder {
    /// Protects `/health`, `/metrics` and the dashboard's data (and the
    /// admin routes) with `Authorization: Bearer <token>`. At least
    /// [`MIN_TOKEN_LEN`] bytes of visible ASCII.
    ///
    /// ```
    /// use fusebox_std::http::HttpOptions;
    ///
    /// let options = HttpOptions::builder().bearer_token("0123456789abcdef").build()?;
    /// assert!(options.token_required());
    /// # Ok::<(), fusebox_std::http::HttpConfigError>(())
    /// ```
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.options.token = Some(token.into().into());
        self
    }

    /// Serves the admin routes (force open, force close, reset a breaker);
    /// off by default, and refused without a bearer token.
    ///
    /// ```
    /// use fusebox_std::http::HttpOptions;
    ///
    /// assert!(HttpOptions::builder().admin(true).build().is_err());
    /// ```
    pub fn admin(mut self, enabled: bool) -> Self {
        self.options.admin = enabled;
        self
    }

    /// `/livez` answers 503 while `check` returns `false` (by default it
    /// always answers 200: the process serves requests).
    ///
    /// `check` runs on every `/livez` request, which needs no token: keep
    /// it cheap (a flag, not [`Registry::health`], which builds the whole
    /// report). And base it on nothing that only grows with traffic, such
    /// as the events' `lagged` count: one lost event would turn the
    /// process dead for good (a restart loop under an orchestrator).
    ///
    /// ```
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// use fusebox_std::http::HttpOptions;
    ///
    /// // Cleared by the service's worker loop if it ever stops.
    /// static WORKER_RUNNING: AtomicBool = AtomicBool::new(true);
    /// let options = HttpOptions::builder().liveness(|_| WORKER_RUNNING.load(Ordering::Relaxed)).build()?;
    /// # drop(options);
    /// # Ok::<(), fusebox_std::http::HttpConfigError>(())
    /// ```
    pub fn liveness(mut self, check: impl Fn(&Registry) -> bool + Send + Sync + 'static) -> Self {
        self.options.liveness = Some(Arc::new(check));
        self
    }

    /// The options, validated.
    ///
    /// # Errors
    ///
    /// [`HttpConfigError::AdminWithoutToken`];
    /// [`HttpConfigError::InvalidToken`] for a token shorter than
    /// [`MIN_TOKEN_LEN`], longer than 4096 bytes, or holding anything but
    /// visible ASCII.
    ///
    /// ```
    /// use fusebox_std::http::{HttpConfigError, HttpOptions};
    ///
    /// let err = HttpOptions::builder().bearer_token("has a space in it, no").build().unwrap_err();
    /// assert!(matches!(err, HttpConfigError::InvalidToken { .. }));
    /// ```
    pub fn build(self) -> Result<HttpOptions, HttpConfigError> {
        let options = self.options;
        match options.token.as_deref() {
            None if options.admin => return Err(HttpConfigError::AdminWithoutToken),
            Some(t) if t.len() < MIN_TOKEN_LEN => {
                return Err(HttpConfigError::InvalidToken {
                    reason: "shorter than 16 bytes",
                })
            }
            Some(t) if t.len() > MAX_TOKEN_LEN => {
                return Err(HttpConfigError::InvalidToken {
                    reason: "longer than 4096 bytes",
                })
            }
            Some(t) if !t.bytes().all(|b| b.is_ascii_graphic()) => {
                return Err(HttpConfigError::InvalidToken {
                    reason: "only visible ASCII is allowed",
                })
            }
            None | Some(_) => {}
        }
        Ok(options)
    }
}

impl fmt::Debug for HttpOptionsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("HttpOptionsBuilder")
            .field(&self.options)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn environment_sets_token_and_admin() {
        let o = HttpOptions::from_vars(vars(&[
            (TOKEN_VAR, "abcdefghijklmnopqrstuvwxyz"),
            (ADMIN_VAR, "1"),
        ]))
        .unwrap();
        assert_eq!(o.token(), Some("abcdefghijklmnopqrstuvwxyz"));
        assert!(o.admin_enabled());
    }

    /// A token from a secret file keeps its newline in the variable: it
    /// was refused as invalid (found by a hostile review). Whitespace
    /// alone is still refused, never read as "no token".
    #[test]
    fn environment_token_loses_surrounding_whitespace_only() {
        let o =
            HttpOptions::from_vars(vars(&[(TOKEN_VAR, " abcdefghijklmnopqrstuvwxyz\n")])).unwrap();
        assert_eq!(o.token(), Some("abcdefghijklmnopqrstuvwxyz"));
        let blanks: [&'static [(&str, &str)]; 3] = [
            &[(TOKEN_VAR, " ")],
            &[(TOKEN_VAR, "\n")],
            &[(TOKEN_VAR, " \t\r\n ")],
        ];
        for blank in blanks {
            let err = HttpOptions::from_vars(vars(blank)).unwrap_err();
            assert!(
                matches!(err, HttpConfigError::InvalidToken { .. }),
                "{blank:?}: {err:?}"
            );
        }
    }

    #[test]
    fn environment_refuses_admin_without_token() {
        let err = HttpOptions::from_vars(vars(&[(ADMIN_VAR, "true")]));
        assert_eq!(err.unwrap_err(), HttpConfigError::AdminWithoutToken);
    }

    /// A token variable set to nothing (`FUSEBOX_HTTP_TOKEN=` in a
    /// manifest whose secret did not render, `$(cat secret)` of an empty
    /// file or of one holding a newline alone, which the shell strips
    /// to nothing) was read as "no token": the detailed endpoints served
    /// anyone, with one `info` line, while the same file read with its
    /// newline was refused (found by a hostile review). Set but empty is
    /// an error now, as whitespace alone was; only an unset variable
    /// means no token.
    #[test]
    fn environment_refuses_a_token_set_to_nothing() {
        let empty: [&'static [(&str, &str)]; 3] = [
            &[(TOKEN_VAR, "")],
            &[(TOKEN_VAR, ""), (ADMIN_VAR, "false")],
            &[(TOKEN_VAR, ""), (ADMIN_VAR, "true")],
        ];
        for vars_set in empty {
            let err = HttpOptions::from_vars(vars(vars_set)).unwrap_err();
            assert!(
                matches!(err, HttpConfigError::InvalidToken { .. }),
                "{vars_set:?}: {err:?}"
            );
            assert!(err.to_string().contains("empty"), "{err}");
        }
        assert!(!HttpOptions::from_vars(vars(&[])).unwrap().token_required());
    }

    #[test]
    fn token_errors_never_quote_the_token() {
        for bad in [
            "short-secret",
            "secret with spaces inside",
            "sécret-sécret-sécret",
        ] {
            let err = HttpOptions::builder()
                .bearer_token(bad)
                .build()
                .unwrap_err();
            assert!(matches!(err, HttpConfigError::InvalidToken { .. }));
            assert!(!err.to_string().contains("secret"), "{err}");
        }
        let long = "a".repeat(MAX_TOKEN_LEN + 1);
        assert!(HttpOptions::builder().bearer_token(long).build().is_err());
    }

    #[test]
    fn debug_masks_the_token() {
        let o = HttpOptions::builder()
            .bearer_token("do-not-print-me-0123")
            .build()
            .unwrap();
        let shown = format!(
            "{o:?} {:?}",
            HttpOptions::builder().bearer_token("do-not-print-me-0123")
        );
        assert!(!shown.contains("do-not-print"), "{shown}");
        assert!(shown.contains("***"));
    }

    #[test]
    fn liveness_defaults_to_alive_and_follows_the_check() {
        let registry = Registry::new();
        assert!(HttpOptions::default().alive(&registry));
        let dead = HttpOptions::builder().liveness(|_| false).build().unwrap();
        assert!(!dead.alive(&registry));
    }
}
