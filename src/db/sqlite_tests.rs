//! The storage layer against a real SQLite file (the PostgreSQL and MySQL runs live in
//! compat-tests, next to the servers they start).

use super::django::{self, AutoField};
use super::perms::PermissionQueries;
use super::users::{NewUser, UserModel, UserModelSettings};
use super::{pool, Backend, PooledConn};
use crate::formats::hashers::{Hashers, Md5Hasher, PasswordHasher};
use crate::formats::DjangoVersion;
use diesel::connection::SimpleConnection;

const OPTS: django::MigrateOptions = django::MigrateOptions {
    auto: AutoField::AutoField,
    swapped_user_model: false,
    sorted_content_types: false,
};

const DEFAULT_MODEL: UserModelSettings<'static> = UserModelSettings {
    auth_user_model: "auth.User",
    table: None,
    username_field: "username",
    email_field: "email",
};

fn fresh() -> (PooledConn, tempfile_path::TempPath) {
    let path = tempfile_path::TempPath::new();
    let (pool, backend) = pool(&format!("sqlite://{}", path.0.display()), 2).unwrap();
    assert_eq!(backend, Backend::Sqlite);
    let mut conn = pool.get().unwrap();
    django::migrate(&mut conn, backend, OPTS).unwrap();
    (conn, path)
}

/// A temporary file removed on drop (no extra crate for one helper).
mod tempfile_path {
    pub struct TempPath(pub std::path::PathBuf);
    impl TempPath {
        pub fn new() -> Self {
            let name = format!(
                "djauth-test-{}-{}.sqlite3",
                std::process::id(),
                crate::formats::session::new_session_key()
            );
            TempPath(std::env::temp_dir().join(name))
        }
    }
    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

fn md5_first() -> Hashers {
    // A cheap preferred hasher keeps these tests fast; PBKDF2 is listed to test upgrades.
    Hashers::from_setting(
        &[
            "django.contrib.auth.hashers.MD5PasswordHasher",
            "django.contrib.auth.hashers.PBKDF2PasswordHasher",
        ],
        DjangoVersion::V5_2,
    )
    .unwrap()
}

#[test]
fn migrate_is_idempotent_and_refuses_partial_schemas() {
    let (mut conn, _path) = fresh();
    let again = django::migrate(&mut conn, Backend::Sqlite, OPTS).unwrap();
    assert!(!again.created_django_tables);
    assert!(again.djauth_migrations.is_empty());
    assert!(django::check_tables(&mut conn, Backend::Sqlite)
        .unwrap()
        .is_empty());
    conn.batch_execute("DROP TABLE django_session").unwrap();
    let err = django::migrate(&mut conn, Backend::Sqlite, OPTS).unwrap_err();
    assert!(err.to_string().contains("django_session"), "{err}");
    assert_eq!(
        django::check_tables(&mut conn, Backend::Sqlite)
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn users_authenticate_with_djangos_semantics() {
    let (mut conn, _path) = fresh();
    let model = UserModel::load(&mut conn, Backend::Sqlite, &DEFAULT_MODEL).unwrap();
    let hashers = md5_first();
    let password = hashers.make_password("s3cret pass", None, None).unwrap();
    let user = model
        .create_user(
            &mut conn,
            &NewUser {
                username: "alice".into(),
                email: "a@example.com".into(),
                password,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(user.pk, "1");
    assert!(user.is_active && !user.is_staff && user.last_login.is_none());
    assert!(model
        .authenticate(&mut conn, &hashers, "alice", "s3cret pass")
        .unwrap()
        .is_some());
    assert!(model
        .authenticate(&mut conn, &hashers, "alice", "wrong")
        .unwrap()
        .is_none());
    assert!(
        model
            .authenticate(&mut conn, &hashers, "Alice", "s3cret pass")
            .unwrap()
            .is_none(),
        "exact match"
    );
    assert!(model
        .authenticate(&mut conn, &hashers, "nobody", "x")
        .unwrap()
        .is_none());

    // A hash from a listed but non-preferred hasher is rewritten on a successful login.
    let mut u = model.get_by_pk(&mut conn, "1").unwrap().unwrap();
    let pbkdf2 = hashers
        .make_password("s3cret pass", None, Some("pbkdf2_sha256"))
        .unwrap();
    model
        .set_password(&mut conn, &mut u, pbkdf2.clone())
        .unwrap();
    model
        .authenticate(&mut conn, &hashers, "alice", "s3cret pass")
        .unwrap()
        .unwrap();
    let upgraded = model.get_by_pk(&mut conn, "1").unwrap().unwrap().password;
    assert!(upgraded.starts_with("md5$"), "{upgraded}");

    // last_login round-trips through Django's text format.
    let mut u = model.get_by_pk(&mut conn, "1").unwrap().unwrap();
    model.update_last_login(&mut conn, &mut u).unwrap();
    assert_eq!(
        model.get_by_pk(&mut conn, "1").unwrap().unwrap().last_login,
        u.last_login
    );

    // Inactive users cannot log in, but a rehash still happens (Django's setter runs first).
    conn.batch_execute("UPDATE auth_user SET is_active = 0")
        .unwrap();
    assert!(model
        .authenticate(&mut conn, &hashers, "alice", "s3cret pass")
        .unwrap()
        .is_none());
    for bad in ["", "x", "1.5", "99999999999999999999"] {
        assert!(
            model.get_by_pk(&mut conn, bad).unwrap().is_none(),
            "{bad:?}"
        );
    }
    assert_eq!(Md5Hasher.algorithm(), "md5");
}

#[test]
fn permissions_come_from_user_and_groups() {
    let (mut conn, _path) = fresh();
    let model = UserModel::load(&mut conn, Backend::Sqlite, &DEFAULT_MODEL).unwrap();
    let user = model
        .create_user(
            &mut conn,
            &NewUser {
                username: "bob".into(),
                password: "!".into(),
                ..Default::default()
            },
        )
        .unwrap();
    conn.batch_execute(
        "INSERT INTO auth_group (name) VALUES ('editors');
         INSERT INTO auth_user_groups (user_id, group_id) VALUES (1, 1);
         INSERT INTO auth_group_permissions (group_id, permission_id) SELECT 1, id FROM auth_permission WHERE codename = 'change_user';
         INSERT INTO auth_user_user_permissions (user_id, permission_id) SELECT 1, id FROM auth_permission WHERE codename = 'view_session';",
    )
    .unwrap();
    let q = PermissionQueries::new(&model);
    let p = q.load(&mut conn, &model, &user).unwrap();
    assert_eq!(p.user, ["sessions.view_session".to_string()].into());
    assert_eq!(p.group, ["auth.change_user".to_string()].into());
    assert!(p.has_perm("auth.change_user") && !p.has_perm("auth.add_user"));
    assert!(p.has_module_perms("sessions") && !p.has_module_perms("contenttypes"));
    conn.batch_execute("UPDATE auth_user SET is_superuser = 1")
        .unwrap();
    let root = model.get_by_pk(&mut conn, "1").unwrap().unwrap();
    let p = q.load(&mut conn, &model, &root).unwrap();
    assert_eq!(
        p.all().len(),
        20,
        "an active superuser has every permission in the table"
    );
}

mod session_index {
    use super::*;
    use crate::db::index::SessionIndex;
    use crate::db::sessions::SessionTable;
    use crate::formats::session::{SessionCodec, SessionData, AUTH_USER_ID_KEY};

    fn codec() -> SessionCodec {
        SessionCodec::new(b"index-test-secret", &[] as &[&str], 1_209_600)
    }

    /// Writes a row the way any writer (Django included) would: straight into django_session.
    fn session_of(conn: &mut PooledConn, codec: &SessionCodec, user: Option<&str>) -> String {
        let mut data = SessionData::new();
        if let Some(u) = user {
            data.insert(AUTH_USER_ID_KEY.into(), u.into());
        }
        let blob = codec.encode_db_at(&data, crate::formats::signing::now_unix());
        let expire = crate::db::now_utc() + chrono::Duration::days(1);
        SessionTable::new(Backend::Sqlite)
            .create(conn, &blob, expire)
            .unwrap()
    }

    fn count(conn: &mut PooledConn, sql: &str) -> i64 {
        #[derive(diesel::QueryableByName)]
        struct N {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        use diesel::RunQueryDsl;
        diesel::sql_query(sql).load::<N>(&mut ***conn).unwrap()[0].n
    }

    #[test]
    fn catch_up_indexes_only_authenticated_rows_and_revoke_ends_exactly_one_user() {
        let (mut conn, _path) = fresh();
        let codec = codec();
        let index = SessionIndex::new(Backend::Sqlite);
        let a: Vec<String> = (0..3)
            .map(|_| session_of(&mut conn, &codec, Some("1")))
            .collect();
        let b = session_of(&mut conn, &codec, Some("2"));
        session_of(&mut conn, &codec, None);
        assert_eq!(index.backlog(&mut conn).unwrap(), 5);
        let done = index.catch_up(&mut conn, &codec).unwrap();
        assert_eq!((done.queued, done.indexed), (5, 4));
        assert_eq!(index.backlog(&mut conn).unwrap(), 0);
        // Nothing queued: a second catch-up decodes nothing.
        assert_eq!(index.catch_up(&mut conn, &codec).unwrap().queued, 0);

        let ended = index
            .revoke(&mut conn, &codec, "1", Some(&a[0]), Some(100))
            .unwrap();
        assert_eq!(ended, 2);
        let left = count(&mut conn, "SELECT COUNT(*) AS n FROM django_session");
        assert_eq!(
            left, 3,
            "kept session, user 2's and the anonymous one remain"
        );
        assert_eq!(index.not_before(&mut conn, "1").unwrap(), Some(100));
        // not_before never moves back.
        index
            .revoke(&mut conn, &codec, "1", None, Some(50))
            .unwrap();
        assert_eq!(index.not_before(&mut conn, "1").unwrap(), Some(100));
        let sessions = index
            .sessions_of(&mut conn, "2", crate::db::now_utc())
            .unwrap();
        assert_eq!(sessions.len(), 1);
        assert_eq!(sessions[0].session_key, b);
    }

    #[test]
    fn a_revocation_sees_rows_written_before_it_without_a_prior_catch_up() {
        let (mut conn, _path) = fresh();
        let codec = codec();
        let index = SessionIndex::new(Backend::Sqlite);
        for _ in 0..600 {
            session_of(&mut conn, &codec, Some("7"));
        }
        // More rows than one parallel decode threshold and than one IN-list chunk.
        assert_eq!(
            index.revoke(&mut conn, &codec, "7", None, None).unwrap(),
            600
        );
        assert_eq!(
            count(&mut conn, "SELECT COUNT(*) AS n FROM django_session"),
            0
        );
        assert_eq!(
            count(&mut conn, "SELECT COUNT(*) AS n FROM djauth_session_index"),
            0
        );
    }

    #[test]
    fn logout_in_place_and_deletes_keep_the_index_exact() {
        let (mut conn, _path) = fresh();
        let codec = codec();
        let index = SessionIndex::new(Backend::Sqlite);
        let table = SessionTable::new(Backend::Sqlite);
        let key = session_of(&mut conn, &codec, Some("3"));
        index.catch_up(&mut conn, &codec).unwrap();
        // The row is rewritten without a user (queued by the update trigger) ...
        let blob = codec.encode_db_at(&SessionData::new(), 0.0);
        let expire = crate::db::now_utc() + chrono::Duration::days(1);
        table.save(&mut conn, &key, &blob, expire).unwrap();
        index.catch_up(&mut conn, &codec).unwrap();
        assert_eq!(
            count(&mut conn, "SELECT COUNT(*) AS n FROM djauth_session_index"),
            0
        );
        // ... and a deleted row takes its entry with it (delete trigger).
        let other = session_of(&mut conn, &codec, Some("3"));
        index.catch_up(&mut conn, &codec).unwrap();
        table.delete(&mut conn, &other).unwrap();
        assert_eq!(
            count(&mut conn, "SELECT COUNT(*) AS n FROM djauth_session_index"),
            0
        );
        // A tampered blob is not a user's session.
        conn.batch_execute(
            "INSERT INTO django_session VALUES ('abcdefghijklmnopqrstuvwxyz012345', 'garbage:1:x', '2999-01-01 00:00:00')",
        )
        .unwrap();
        assert_eq!(index.catch_up(&mut conn, &codec).unwrap().indexed, 0);
    }

    #[test]
    fn reindex_rebuilds_from_django_session() {
        let (mut conn, _path) = fresh();
        let codec = codec();
        let index = SessionIndex::new(Backend::Sqlite);
        for u in ["1", "1", "2"] {
            session_of(&mut conn, &codec, Some(u));
        }
        let anonymous = session_of(&mut conn, &codec, None);
        index.catch_up(&mut conn, &codec).unwrap();
        conn.batch_execute("DELETE FROM djauth_session_index")
            .unwrap();
        let done = index.reindex(&mut conn, &codec).unwrap();
        assert_eq!((done.indexed, done.queued), (3, 4));
        assert_eq!(
            count(&mut conn, "SELECT COUNT(*) AS n FROM djauth_session_index"),
            3
        );
        // Wrong owners, an entry for an anonymous session and one for a row that is gone are
        // all mended; the untouched entries keep their device details.
        conn.batch_execute(&format!(
            "UPDATE djauth_session_index SET user_id = '9' WHERE user_id = '2'; \
             UPDATE djauth_session_index SET user_agent = 'kept' WHERE user_id = '1'; \
             INSERT INTO djauth_session_index (session_key, user_id, created, last_seen) \
             VALUES ('{anonymous}', '1', '2020-01-01', '2020-01-01'), \
                    ('gone', '1', '2020-01-01', '2020-01-01');"
        ))
        .unwrap();
        let done = index.reindex(&mut conn, &codec).unwrap();
        assert_eq!((done.indexed, done.queued), (3, 4));
        assert_eq!(
            count(
                &mut conn,
                "SELECT COUNT(*) AS n FROM djauth_session_index WHERE user_id = '2'"
            ),
            1
        );
        assert_eq!(
            count(
                &mut conn,
                "SELECT COUNT(*) AS n FROM djauth_session_index WHERE user_id = '1' AND user_agent = 'kept'"
            ),
            2
        );
        assert_eq!(
            count(&mut conn, "SELECT COUNT(*) AS n FROM djauth_session_index"),
            3
        );
    }
}

mod lockout {
    use super::*;
    use crate::db::lockout::{Kind, Lockout, Policy};

    const POLICY: Policy = Policy {
        limit: 3,
        window: 60,
        cooloff: 100,
    };

    #[test]
    fn counts_reset_after_the_window_and_locks_until_the_cooloff() {
        let (mut conn, _path) = fresh();
        let l = Lockout::new(Backend::Sqlite, POLICY);
        let counts: Vec<i64> = (0..5)
            .map(|_| l.attempt(&mut conn, Kind::Username, "alice", 1000).unwrap())
            .collect();
        assert_eq!(counts, [1, 2, 3, 4, 5]);
        // Locked: attempts keep counting and push the cool-off forward.
        assert_eq!(
            l.attempt(&mut conn, Kind::Username, "alice", 1090).unwrap(),
            6
        );
        assert_eq!(
            l.attempt(&mut conn, Kind::Username, "alice", 1189).unwrap(),
            7
        );
        // A cool-off without attempts opens it again.
        assert_eq!(
            l.attempt(&mut conn, Kind::Username, "alice", 1289).unwrap(),
            1
        );
        // Under the limit, the window restarts the count.
        assert_eq!(
            l.attempt(&mut conn, Kind::Username, "alice", 1300).unwrap(),
            2
        );
        assert_eq!(
            l.attempt(&mut conn, Kind::Username, "alice", 1349).unwrap(),
            1
        );
        // Keys and kinds are counted apart; clear resets one.
        assert_eq!(
            l.attempt(&mut conn, Kind::Address, "alice", 1349).unwrap(),
            1
        );
        assert_eq!(l.clear(&mut conn, Kind::Username, "alice").unwrap(), 1);
        assert_eq!(
            l.attempt(&mut conn, Kind::Username, "alice", 1350).unwrap(),
            1
        );
        assert_eq!(
            l.attempt(&mut conn, Kind::Address, "alice", 1350).unwrap(),
            2
        );
    }

    #[test]
    fn a_concurrent_burst_gets_exactly_the_limit_through() {
        let path = super::tempfile_path::TempPath::new();
        let (pool, backend) = pool(&format!("sqlite://{}", path.0.display()), 8).unwrap();
        django::migrate(&mut pool.get().unwrap(), backend, OPTS).unwrap();
        let l = Lockout::new(backend, POLICY);
        let allowed = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    let mut conn = pool.get().unwrap();
                    for i in 0..25 {
                        // One username, many addresses: the username's count decides.
                        let ip = format!("192.0.2.{i}");
                        let keys = [(Kind::Username, "bob"), (Kind::Address, ip.as_str())];
                        if l.allow(&mut conn, &keys, 5000).unwrap() {
                            allowed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                    }
                });
            }
        });
        assert_eq!(allowed.into_inner(), 3);
    }
}
