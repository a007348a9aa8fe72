//! `django.contrib.auth`'s session logic: which user a session belongs to (`get_user`,
//! with the session-auth-hash check and its fallbacks) and what `login()` writes.

use crate::db::users::User;
use crate::formats::session::{
    AuthHashCheck, SessionAuthHasher, SessionData, AUTH_BACKEND_KEY, AUTH_HASH_KEY,
    AUTH_USER_ID_KEY,
};
use serde_json::Value;

/// What `get_user(request)` decides for a session.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolution {
    /// No user; the session is left as it is (no keys, a backend Django does not list, an
    /// unknown or inactive user).
    Anonymous,
    /// The user, verified against the current `SECRET_KEY`.
    User(User),
    /// Verified with a `SECRET_KEY_FALLBACKS` entry: Django cycles the session key and
    /// stores the current hash (`new_hash`), and the user stays logged in.
    Rehash { user: User, new_hash: String },
    /// Missing or wrong hash: Django flushes the session (row deleted, cookie cleared).
    Flush,
}

/// The pk string a session names: Django writes a string and accepts a JSON integer.
pub fn session_user_id(data: &SessionData) -> Option<String> {
    match data.get(AUTH_USER_ID_KEY)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `get_user`: `load_user` fetches a user by pk string (`None` if there is no such row).
pub fn resolve<E>(
    data: &SessionData,
    authentication_backends: &[String],
    hasher: &SessionAuthHasher,
    load_user: impl FnOnce(&str) -> Result<Option<User>, E>,
) -> Result<Resolution, E> {
    let (Some(user_id), Some(Value::String(backend))) =
        (session_user_id(data), data.get(AUTH_BACKEND_KEY))
    else {
        return Ok(Resolution::Anonymous);
    };
    if !authentication_backends.iter().any(|b| b == backend) {
        return Ok(Resolution::Anonymous);
    }
    let Some(user) = load_user(&user_id)? else {
        return Ok(Resolution::Anonymous);
    };
    // ModelBackend.get_user drops inactive users; AllowAllUsersModelBackend keeps them.
    if !user.is_active && !backend.ends_with(".AllowAllUsersModelBackend") {
        return Ok(Resolution::Anonymous);
    }
    let stored = data.get(AUTH_HASH_KEY).and_then(Value::as_str);
    Ok(match hasher.check(stored, &user.password) {
        AuthHashCheck::Current => Resolution::User(user),
        AuthHashCheck::Fallback => Resolution::Rehash {
            new_hash: hasher.hash(&user.password),
            user,
        },
        AuthHashCheck::Mismatch => Resolution::Flush,
    })
}

/// The keys `login()` writes, appended after what the session already holds.
pub fn login_data(
    mut data: SessionData,
    user: &User,
    backend: &str,
    hasher: &SessionAuthHasher,
) -> SessionData {
    data.insert(AUTH_USER_ID_KEY.into(), Value::String(user.pk.clone()));
    data.insert(AUTH_BACKEND_KEY.into(), Value::String(backend.to_owned()));
    data.insert(
        AUTH_HASH_KEY.into(),
        Value::String(hasher.hash(&user.password)),
    );
    data
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const MODEL_BACKEND: &str = "django.contrib.auth.backends.ModelBackend";

    fn user(active: bool) -> User {
        User {
            pk: "7".into(),
            username: "u".into(),
            password: "md5$s$h".into(),
            email: String::new(),
            is_active: active,
            is_staff: false,
            is_superuser: false,
            last_login: None,
            first_name: String::new(),
            last_name: String::new(),
        }
    }

    fn resolve_with(data: &SessionData, hasher: &SessionAuthHasher, u: Option<User>) -> Resolution {
        resolve::<()>(data, &[MODEL_BACKEND.to_string()], hasher, |pk| {
            assert_eq!(pk, "7");
            Ok(u)
        })
        .unwrap()
    }

    #[test]
    fn follows_get_user() {
        let h = SessionAuthHasher::new(b"key", &[b"old"]);
        let good = login_data(SessionData::new(), &user(true), MODEL_BACKEND, &h);
        assert_eq!(
            resolve_with(&good, &h, Some(user(true))),
            Resolution::User(user(true))
        );
        assert_eq!(
            resolve_with(&good, &h, Some(user(false))),
            Resolution::Anonymous
        );
        assert_eq!(resolve_with(&good, &h, None), Resolution::Anonymous);
        let mut int_id = good.clone();
        int_id.insert(AUTH_USER_ID_KEY.into(), json!(7));
        assert_eq!(
            resolve_with(&int_id, &h, Some(user(true))),
            Resolution::User(user(true))
        );
        let mut foreign = good.clone();
        foreign.insert(AUTH_BACKEND_KEY.into(), json!("rust.Backend"));
        assert_eq!(
            resolve_with(&foreign, &h, Some(user(true))),
            Resolution::Anonymous
        );
        let mut no_hash = good.clone();
        no_hash.shift_remove(AUTH_HASH_KEY);
        assert_eq!(
            resolve_with(&no_hash, &h, Some(user(true))),
            Resolution::Flush
        );
        let mut changed = user(true);
        changed.password = "md5$s$other".into();
        assert_eq!(resolve_with(&good, &h, Some(changed)), Resolution::Flush);
        let old = login_data(
            SessionData::new(),
            &user(true),
            MODEL_BACKEND,
            &SessionAuthHasher::new::<&[u8]>(b"old", &[]),
        );
        assert!(matches!(
            resolve_with(&old, &h, Some(user(true))),
            Resolution::Rehash { .. }
        ));
        assert_eq!(
            resolve_with(&SessionData::new(), &h, None),
            Resolution::Anonymous
        );
    }

    #[test]
    fn login_appends_after_existing_keys() {
        let h = SessionAuthHasher::new::<&[u8]>(b"key", &[]);
        let mut d = SessionData::new();
        d.insert("cart".into(), json!([1, 2]));
        let d = login_data(d, &user(true), MODEL_BACKEND, &h);
        let keys: Vec<&str> = d.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["cart", AUTH_USER_ID_KEY, AUTH_BACKEND_KEY, AUTH_HASH_KEY]
        );
    }
}
