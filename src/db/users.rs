//! The user model: `auth_user`, or a swapped model's table, found by introspection and
//! read and written with Django's semantics (`ModelBackend.authenticate`, `check_password`
//! with rehash-on-login, `update_last_login`, `set_password`).

use super::{datetime_to_text, now_utc, text_to_datetime, Backend, DbConnection, DbError, Dialect};
use crate::formats::hashers::Hashers;
use diesel::prelude::*;
use diesel::sql_types::{Nullable, Text};

/// How the user model is stored, from `AUTH_USER_MODEL` and friends plus the live table.
#[derive(Debug, Clone)]
pub struct UserModel {
    pub dialect: Dialect,
    /// `auth_user`, `accounts_user`, or `db_table`.
    pub table: String,
    /// `auth_user_groups` / `<table>_groups`.
    pub groups_table: String,
    /// `auth_user_user_permissions` / `<table>_user_permissions`.
    pub permissions_table: String,
    /// The M2M tables' column naming the user: `<model_name>_id`.
    pub m2m_column: String,
    pub pk_column: String,
    pub pk_kind: PkKind,
    pub username_field: String,
    pub email_field: String,
    /// Optional `AbstractUser` columns: `None` where the model does not have them.
    pub columns: OptionalColumns,
    sql: Sql,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PkKind {
    Integer,
    BigInt,
    /// Hyphenated in sessions (`value_to_string`), 32 hex chars in SQLite/MySQL `char(32)`,
    /// native `uuid` in PostgreSQL.
    Uuid,
}

#[derive(Debug, Clone, Default)]
pub struct OptionalColumns {
    pub is_active: bool,
    pub is_staff: bool,
    pub is_superuser: bool,
    pub last_login: bool,
    pub first_name: bool,
    pub last_name: bool,
    pub date_joined: bool,
}

/// One column of a live table.
#[derive(Debug, Clone, QueryableByName)]
pub struct ColumnInfo {
    #[diesel(sql_type = Text)]
    pub name: String,
    #[diesel(sql_type = Text)]
    pub data_type: String,
    #[diesel(sql_type = Text)]
    pub is_pk: String,
    #[diesel(sql_type = Text)]
    pub not_null: String,
    #[diesel(sql_type = Text)]
    pub has_default: String,
}

/// The columns of `table` (empty if it does not exist).
pub fn introspect(
    conn: &mut DbConnection,
    backend: Backend,
    table: &str,
) -> Result<Vec<ColumnInfo>, DbError> {
    let q = match backend {
        Backend::Sqlite => "SELECT name, lower(type) AS data_type, CAST(pk > 0 AS TEXT) AS is_pk, \
             CAST(\"notnull\" AS TEXT) AS not_null, CAST(dflt_value IS NOT NULL AS TEXT) AS has_default \
             FROM pragma_table_info(?) ORDER BY cid",
        Backend::Postgres => "SELECT c.column_name::text AS name, c.data_type::text AS data_type, \
             CASE WHEN EXISTS (SELECT 1 FROM information_schema.table_constraints tc \
               JOIN information_schema.key_column_usage k ON k.constraint_name = tc.constraint_name \
               AND k.table_schema = tc.table_schema AND k.table_name = tc.table_name \
               WHERE tc.constraint_type = 'PRIMARY KEY' AND tc.table_name = c.table_name \
               AND tc.table_schema = c.table_schema AND k.column_name = c.column_name) THEN '1' ELSE '0' END AS is_pk, \
             CASE WHEN c.is_nullable = 'NO' THEN '1' ELSE '0' END AS not_null, \
             CASE WHEN c.column_default IS NOT NULL OR c.is_identity = 'YES' THEN '1' ELSE '0' END AS has_default \
             FROM information_schema.columns c WHERE c.table_name = $1 AND c.table_schema = current_schema() \
             ORDER BY c.ordinal_position",
        Backend::Mysql => "SELECT CAST(column_name AS CHAR) AS name, CAST(lower(column_type) AS CHAR) AS data_type, \
             CASE WHEN column_key = 'PRI' THEN '1' ELSE '0' END AS is_pk, \
             CASE WHEN is_nullable = 'NO' THEN '1' ELSE '0' END AS not_null, \
             CASE WHEN column_default IS NOT NULL OR extra LIKE '%auto_increment%' THEN '1' ELSE '0' END AS has_default \
             FROM information_schema.columns WHERE table_name = ? AND table_schema = DATABASE() \
             ORDER BY ordinal_position",
    };
    Ok(diesel::sql_query(q).bind::<Text, _>(table).load(conn)?)
}

/// A user row as the auth machinery needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    /// `user._meta.pk.value_to_string(user)`: what `_auth_user_id` holds.
    pub pk: String,
    pub username: String,
    pub password: String,
    pub email: String,
    pub is_active: bool,
    pub is_staff: bool,
    pub is_superuser: bool,
    pub last_login: Option<chrono::NaiveDateTime>,
    pub first_name: String,
    pub last_name: String,
}

impl User {
    /// The user as the CLI prints it and templates see it (password hash included: this is
    /// operator output, never sent to a browser by djauth's own templates).
    pub fn as_json(&self) -> serde_json::Value {
        serde_json::json!({
            "pk": self.pk,
            "username": self.username,
            // Django templates call user.get_username (the USERNAME_FIELD value).
            "get_username": self.username,
            "email": self.email,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "is_active": self.is_active,
            "is_staff": self.is_staff,
            "is_superuser": self.is_superuser,
            "is_authenticated": true,
            "last_login": self.last_login.map(|t| super::datetime_to_text(Backend::Sqlite, t)),
            "password": self.password,
        })
    }
}

#[derive(QueryableByName)]
struct UserRow {
    #[diesel(sql_type = Text)]
    pk: String,
    #[diesel(sql_type = Text)]
    username: String,
    #[diesel(sql_type = Text)]
    password: String,
    #[diesel(sql_type = Text)]
    email: String,
    #[diesel(sql_type = Text)]
    is_active: String,
    #[diesel(sql_type = Text)]
    is_staff: String,
    #[diesel(sql_type = Text)]
    is_superuser: String,
    #[diesel(sql_type = Nullable<Text>)]
    last_login: Option<String>,
    #[diesel(sql_type = Text)]
    first_name: String,
    #[diesel(sql_type = Text)]
    last_name: String,
}

/// The statements, built once per model.
#[derive(Debug, Clone)]
struct Sql {
    select: String,
    by_username: String,
    by_pk: String,
    set_password: String,
    set_last_login: Option<String>,
    pk_param: String,
}

/// Settings that describe the user model (Django's names).
#[derive(Debug, Clone)]
pub struct UserModelSettings<'a> {
    /// `AUTH_USER_MODEL`, e.g. `auth.User` or `accounts.User`.
    pub auth_user_model: &'a str,
    /// The model's `db_table` when it is not `<app_label>_<model_name>`.
    pub table: Option<&'a str>,
    pub username_field: &'a str,
    pub email_field: &'a str,
}

impl UserModel {
    /// Introspects the live table; every problem found is reported with its fix.
    pub fn load(
        conn: &mut DbConnection,
        backend: Backend,
        s: &UserModelSettings,
    ) -> Result<UserModel, DbError> {
        let (app_label, model) = s.auth_user_model.split_once('.').ok_or_else(|| {
            DbError::Schema(format!(
                "AUTH_USER_MODEL: {:?} must be of the form 'app_label.ModelName'",
                s.auth_user_model
            ))
        })?;
        let model_name = model.to_lowercase();
        let table = s
            .table
            .map(str::to_owned)
            .unwrap_or_else(|| format!("{}_{model_name}", app_label.to_lowercase()));
        let cols = introspect(conn, backend, &table)?;
        if cols.is_empty() {
            return Err(DbError::Schema(format!(
                "the user table {table:?} does not exist: run `djauth migrate` (or Django's migrate), \
                 or set AUTH_USER_MODEL / AUTH_USER_TABLE to the model's table"
            )));
        }
        let has = |name: &str| cols.iter().any(|c| c.name == name);
        let pk = cols.iter().find(|c| c.is_pk == "1").ok_or_else(|| {
            DbError::Schema(format!("the user table {table:?} has no primary key"))
        })?;
        let t = pk.data_type.as_str();
        let pk_kind = if t.contains("uuid")
            || t.starts_with("char(32)")
            || t == "character"
            || t.starts_with("char")
        {
            PkKind::Uuid
        } else if t.contains("bigint") || t == "bigserial" {
            PkKind::BigInt
        } else if t.contains("int") || t == "serial" {
            // SQLite declares AutoField and BigAutoField alike as `integer`, and its integers
            // are 64-bit: read the key as the wider type.
            if backend == Backend::Sqlite {
                PkKind::BigInt
            } else {
                PkKind::Integer
            }
        } else {
            return Err(DbError::Schema(format!(
                "the user table's primary key {:?} has type {t:?}; djauth supports integer, bigint and UUID keys",
                pk.name
            )));
        };
        for (setting, field) in [
            ("USERNAME_FIELD", s.username_field),
            ("EMAIL_FIELD", s.email_field),
        ] {
            if !has(field) {
                return Err(DbError::Schema(format!(
                    "{setting}: the user table {table:?} has no column {field:?} (columns: {})",
                    cols.iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        if !has("password") {
            return Err(DbError::Schema(format!(
                "the user table {table:?} has no password column; the model must derive from AbstractBaseUser"
            )));
        }
        let columns = OptionalColumns {
            is_active: has("is_active"),
            is_staff: has("is_staff"),
            is_superuser: has("is_superuser"),
            last_login: has("last_login"),
            first_name: has("first_name"),
            last_name: has("last_name"),
            date_joined: has("date_joined"),
        };
        let dialect = Dialect(backend);
        let mut m = UserModel {
            dialect,
            groups_table: format!("{table}_groups"),
            permissions_table: format!("{table}_user_permissions"),
            m2m_column: format!("{model_name}_id"),
            table,
            pk_column: pk.name.clone(),
            pk_kind,
            username_field: s.username_field.to_owned(),
            email_field: s.email_field.to_owned(),
            columns,
            sql: Sql {
                select: String::new(),
                by_username: String::new(),
                by_pk: String::new(),
                set_password: String::new(),
                set_last_login: None,
                pk_param: String::new(),
            },
        };
        m.sql = m.build_sql();
        Ok(m)
    }

    fn build_sql(&self) -> Sql {
        let d = self.dialect;
        let col = |name: &str| d.ident(name);
        let flag = |present: bool, name: &str, absent: &str| {
            if present {
                format!("CASE WHEN {} THEN '1' ELSE '0' END", col(name))
            } else {
                format!("'{absent}'")
            }
        };
        let text_or_empty =
            |present: bool, name: &str| if present { col(name) } else { "''".into() };
        let c = &self.columns;
        let select = format!(
            "SELECT {pk} AS pk, {username} AS username, {password} AS password, {email} AS email, \
             {active} AS is_active, {staff} AS is_staff, {superuser} AS is_superuser, {last_login} AS last_login, \
             {first} AS first_name, {last} AS last_name FROM {table}",
            pk = d.as_text(&col(&self.pk_column)),
            username = col(&self.username_field),
            password = col("password"),
            email = col(&self.email_field),
            // A model without is_active counts as active (ModelBackend.user_can_authenticate).
            active = flag(c.is_active, "is_active", "1"),
            staff = flag(c.is_staff, "is_staff", "0"),
            superuser = flag(c.is_superuser, "is_superuser", "0"),
            last_login = if c.last_login { d.datetime_as_text(&col("last_login")) } else { "NULL".into() },
            first = text_or_empty(c.first_name, "first_name"),
            last = text_or_empty(c.last_name, "last_name"),
            table = col(&self.table),
        );
        let pk_param = self.pk_param(1);
        Sql {
            by_username: format!(
                "{select} WHERE {} = {}",
                col(&self.username_field),
                d.param(1)
            ),
            by_pk: format!("{select} WHERE {} = {pk_param}", col(&self.pk_column)),
            set_password: format!(
                "UPDATE {} SET {} = {} WHERE {} = {}",
                col(&self.table),
                col("password"),
                d.param(1),
                col(&self.pk_column),
                self.pk_param(2)
            ),
            set_last_login: c.last_login.then(|| {
                format!(
                    "UPDATE {} SET {} = {} WHERE {} = {}",
                    col(&self.table),
                    col("last_login"),
                    d.text_as_datetime(1),
                    col(&self.pk_column),
                    self.pk_param(2)
                )
            }),
            select,
            pk_param,
        }
    }

    /// A bind parameter holding a primary key as text, converted for the column.
    fn pk_param(&self, n: usize) -> String {
        let p = self.dialect.param(n);
        match (self.dialect.0, self.pk_kind) {
            (Backend::Postgres, PkKind::Integer) => format!("CAST({p} AS integer)"),
            (Backend::Postgres, PkKind::BigInt) => format!("CAST({p} AS bigint)"),
            (Backend::Postgres, PkKind::Uuid) => format!("CAST({p} AS uuid)"),
            (Backend::Mysql, PkKind::Integer | PkKind::BigInt) => format!("CAST({p} AS SIGNED)"),
            (Backend::Sqlite, PkKind::Integer | PkKind::BigInt) => format!("CAST({p} AS INTEGER)"),
            (_, PkKind::Uuid) => p,
        }
    }

    /// `pk.to_python(value)` then the column's storage form; `None` if Django would refuse it.
    pub fn pk_for_db(&self, pk: &str) -> Option<String> {
        match self.pk_kind {
            PkKind::Integer => pk.trim().parse::<i32>().ok().map(|v| v.to_string()),
            PkKind::BigInt => pk.trim().parse::<i64>().ok().map(|v| v.to_string()),
            PkKind::Uuid => {
                let hex: String = pk
                    .trim()
                    .chars()
                    .filter(|c| *c != '-')
                    .collect::<String>()
                    .to_lowercase();
                let ok = hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit());
                ok.then(|| match self.dialect.0 {
                    Backend::Postgres => hyphenate(&hex),
                    _ => hex,
                })
            }
        }
    }

    fn row_to_user(&self, r: UserRow) -> User {
        let pk = match self.pk_kind {
            PkKind::Uuid => hyphenate(&r.pk.replace('-', "").to_lowercase()),
            _ => r.pk,
        };
        User {
            pk,
            username: r.username,
            password: r.password,
            email: r.email,
            is_active: r.is_active == "1",
            is_staff: r.is_staff == "1",
            is_superuser: r.is_superuser == "1",
            last_login: r.last_login.as_deref().and_then(text_to_datetime),
            first_name: r.first_name,
            last_name: r.last_name,
        }
    }

    /// `get_by_natural_key`: exact match on USERNAME_FIELD (case follows the column's
    /// collation, as in Django).
    pub fn get_by_username(
        &self,
        conn: &mut DbConnection,
        username: &str,
    ) -> Result<Option<User>, DbError> {
        let rows: Vec<UserRow> = super::prepared(&self.sql.by_username)
            .bind(username)
            .load(conn)?;
        Ok(rows.into_iter().next().map(|r| self.row_to_user(r)))
    }

    /// The user a session's `_auth_user_id` names (`None` for a malformed or unknown key).
    pub fn get_by_pk(&self, conn: &mut DbConnection, pk: &str) -> Result<Option<User>, DbError> {
        let Some(key) = self.pk_for_db(pk) else {
            return Ok(None);
        };
        let rows: Vec<UserRow> = super::prepared(&self.sql.by_pk).bind(key).load(conn)?;
        Ok(rows.into_iter().next().map(|r| self.row_to_user(r)))
    }

    /// `PasswordResetForm.get_users`: active users with a usable password whose EMAIL_FIELD
    /// equals `email` case-insensitively (Django's `__iexact`, then its NFKC casefold check).
    pub fn get_by_email_for_reset(
        &self,
        conn: &mut DbConnection,
        email: &str,
    ) -> Result<Vec<User>, DbError> {
        use unicode_normalization::UnicodeNormalization;
        let fold = |s: &str| s.nfkc().collect::<String>().to_lowercase();
        let wanted = fold(email);
        Ok(self
            .get_by_email(conn, email)?
            .into_iter()
            .filter(|u| {
                u.is_active
                    && crate::formats::hashers::is_password_usable(&u.password)
                    && fold(&u.email) == wanted
            })
            .collect())
    }

    /// Users whose EMAIL_FIELD equals `email` case-insensitively (`__iexact`).
    pub fn get_by_email(&self, conn: &mut DbConnection, email: &str) -> Result<Vec<User>, DbError> {
        let d = self.dialect;
        let sql = format!(
            "{} WHERE LOWER({}) = LOWER({})",
            self.sql.select,
            d.ident(&self.email_field),
            d.param(1)
        );
        let rows: Vec<UserRow> = diesel::sql_query(sql).bind::<Text, _>(email).load(conn)?;
        Ok(rows.into_iter().map(|r| self.row_to_user(r)).collect())
    }

    /// Users whose USERNAME_FIELD or EMAIL_FIELD matches, for the operator commands.
    pub fn select_sql(&self) -> &str {
        &self.sql.select
    }

    pub fn set_password(
        &self,
        conn: &mut DbConnection,
        user: &mut User,
        encoded: String,
    ) -> Result<(), DbError> {
        let key = self
            .pk_for_db(&user.pk)
            .ok_or_else(|| DbError::Schema("invalid primary key".into()))?;
        super::prepared(&self.sql.set_password)
            .bind(&encoded)
            .bind(key)
            .execute(conn)?;
        user.password = encoded;
        Ok(())
    }

    /// `update_last_login` (connected only when the model has the column, as in Django).
    pub fn update_last_login(
        &self,
        conn: &mut DbConnection,
        user: &mut User,
    ) -> Result<(), DbError> {
        let Some(sql) = &self.sql.set_last_login else {
            return Ok(());
        };
        let now = now_utc();
        let key = self
            .pk_for_db(&user.pk)
            .ok_or_else(|| DbError::Schema("invalid primary key".into()))?;
        diesel::sql_query(sql)
            .bind::<Text, _>(datetime_to_text(self.dialect.0, now))
            .bind::<Text, _>(key)
            .execute(conn)?;
        user.last_login = Some(now);
        Ok(())
    }

    /// `ModelBackend.authenticate`: the password hasher runs once even for an unknown user, a
    /// correct password under outdated hashing is rewritten (even for an inactive user, as
    /// Django's setter does), and inactive users are refused.
    pub fn authenticate(
        &self,
        conn: &mut DbConnection,
        hashers: &Hashers,
        username: &str,
        password: &str,
    ) -> Result<Option<User>, DbError> {
        let Some(mut user) = self.get_by_username(conn, username)? else {
            hashers.fake_runtime();
            return Ok(None);
        };
        let v = hashers.verify_password(Some(password), &user.password);
        if v.valid && v.must_update {
            if let Ok(encoded) = hashers.make_password(password, None, None) {
                self.set_password(conn, &mut user, encoded)?;
            }
        }
        Ok((v.valid && user.is_active).then_some(user))
    }

    /// Inserts a user the way `UserManager._create_user` does (every NOT NULL column of
    /// AbstractUser filled, `date_joined` = now) and returns it.
    pub fn create_user(&self, conn: &mut DbConnection, new: &NewUser) -> Result<User, DbError> {
        let d = self.dialect;
        let mut cols: Vec<String> = vec![];
        let mut vals: Vec<String> = vec![];
        let mut binds: Vec<String> = vec![];
        let mut push = |name: &str, value: String, as_datetime: bool| {
            cols.push(d.ident(name));
            binds.push(value);
            let n = binds.len();
            vals.push(if as_datetime {
                d.text_as_datetime(n)
            } else {
                d.param(n)
            });
        };
        let c = &self.columns;
        if self.pk_kind == PkKind::Uuid {
            let id = uuid_v4_hex();
            push(
                &self.pk_column,
                if d.0 == Backend::Postgres {
                    hyphenate(&id)
                } else {
                    id
                },
                false,
            );
        }
        push("password", new.password.clone(), false);
        push(&self.username_field, new.username.clone(), false);
        if self.email_field != self.username_field {
            push(&self.email_field, new.email.clone(), false);
        }
        let bool_text = |b: bool| if b { "1" } else { "0" }.to_owned();
        let bools: Vec<(&str, bool, bool)> = vec![
            ("is_superuser", c.is_superuser, new.is_superuser),
            ("is_staff", c.is_staff, new.is_staff),
            ("is_active", c.is_active, true),
        ];
        let mut bool_cols = vec![];
        for (name, present, value) in bools {
            if present {
                bool_cols.push((name, value));
            }
        }
        for (name, present) in [("first_name", c.first_name), ("last_name", c.last_name)] {
            if present && name != self.username_field && name != self.email_field {
                push(name, String::new(), false);
            }
        }
        if c.date_joined {
            push("date_joined", datetime_to_text(d.0, now_utc()), true);
        }
        // Booleans are spelled as literals: their bound type differs per backend.
        for (name, value) in bool_cols {
            cols.push(d.ident(name));
            vals.push(match d.0 {
                Backend::Sqlite | Backend::Mysql => bool_text(value),
                Backend::Postgres => if value { "TRUE" } else { "FALSE" }.into(),
            });
        }
        let sql = format!(
            "INSERT INTO {} ({}) VALUES ({})",
            d.ident(&self.table),
            cols.join(", "),
            vals.join(", ")
        );
        let mut q = diesel::sql_query(sql).into_boxed();
        for b in binds {
            q = q.bind::<Text, _>(b);
        }
        q.execute(conn)?;
        self.get_by_username(conn, &new.username)?
            .ok_or_else(|| DbError::Schema("the new user could not be read back".into()))
    }

    pub fn pk_param_sql(&self) -> &str {
        &self.sql.pk_param
    }
}

/// What `create_user` / `create_superuser` take.
#[derive(Debug, Clone, Default)]
pub struct NewUser {
    pub username: String,
    pub email: String,
    /// Already encoded (or unusable).
    pub password: String,
    pub is_staff: bool,
    pub is_superuser: bool,
}

fn hyphenate(hex: &str) -> String {
    if hex.len() != 32 {
        return hex.to_owned();
    }
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// `uuid.uuid4().hex`.
fn uuid_v4_hex() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    crate::formats::crypto::hex_lower(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids() {
        let h = uuid_v4_hex();
        assert_eq!(h.len(), 32);
        assert_eq!(&h[12..13], "4");
        assert_eq!(
            hyphenate("12345678123456781234567812345678"),
            "12345678-1234-5678-1234-567812345678"
        );
    }
}
