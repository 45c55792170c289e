//! etcd's user and password auth: the password from the environment, and
//! the token `/v3/auth/authenticate` gives for it, sent with every request
//! and fetched again when etcd says it is no longer valid (a simple token
//! lapses after `--auth-token-ttl` unused, and a restarted member has
//! forgotten the ones it gave).

use parking_lot::Mutex;
use serde_json::{Value as Json, json};

use super::url::PASSWORD_VAR;

pub struct Auth {
    user: String,
    password: String,
    /// The token in use; `None` until the first request, and after etcd
    /// refused it. Held while one is fetched, so that threads that all
    /// found it stale fetch one between them.
    token: Mutex<Option<String>>,
}

impl Auth {
    /// `user`'s credentials, the password taken from `CASKFS_ETCD_PASSWORD`.
    pub fn from_env(user: &str) -> Result<Auth, String> {
        match std::env::var(PASSWORD_VAR) {
            Ok(password) => Ok(Auth {
                user: user.to_string(),
                password,
                token: Mutex::new(None),
            }),
            Err(std::env::VarError::NotPresent) => Err(format!(
                "etcd user {user}: its password is read from the environment variable \
                 {PASSWORD_VAR}, which is not set"
            )),
            Err(std::env::VarError::NotUnicode(_)) => {
                Err(format!("etcd user {user}: {PASSWORD_VAR} is not UTF-8"))
            }
        }
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    /// The body of `/v3/auth/authenticate`.
    pub fn request(&self) -> Json {
        json!({ "name": self.user, "password": self.password })
    }

    /// The token in use, or one `fetch` gets (then kept).
    pub fn token<E>(&self, fetch: impl FnOnce() -> Result<String, E>) -> Result<String, E> {
        let mut held = self.token.lock();
        if let Some(t) = held.as_ref() {
            return Ok(t.clone());
        }
        let t = fetch()?;
        *held = Some(t.clone());
        Ok(t)
    }

    /// etcd refused `stale`: the next request fetches another, unless
    /// another thread did already.
    pub fn forget(&self, stale: &str) {
        let mut held = self.token.lock();
        if held.as_deref() == Some(stale) {
            *held = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_fetched_once_and_again_after_it_is_refused() {
        let auth = Auth {
            user: "u".into(),
            password: "p".into(),
            token: Mutex::new(None),
        };
        let mut fetched = 0;
        let fetch = |n: &mut i32| -> Result<String, ()> {
            *n += 1;
            Ok(format!("t{n}"))
        };
        assert_eq!(auth.token(|| fetch(&mut fetched)), Ok("t1".into()));
        assert_eq!(auth.token(|| fetch(&mut fetched)), Ok("t1".into()));
        auth.forget("t0");
        assert_eq!(auth.token(|| fetch(&mut fetched)), Ok("t1".into()));
        auth.forget("t1");
        assert_eq!(auth.token(|| fetch(&mut fetched)), Ok("t2".into()));
        assert_eq!(auth.request()["name"], "u");
    }
}
