//! `ModelBackend`'s permission semantics: `has_perm`, `has_perms`, `has_module_perms`,
//! `get_user_permissions`, `get_group_permissions`, `get_all_permissions`, loaded for a user
//! in one query.

use super::users::{User, UserModel};
use super::{DbConnection, DbError};
use diesel::prelude::*;
use diesel::sql_types::Text;
use std::collections::BTreeSet;

/// A user's permissions as `"app_label.codename"` strings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions {
    pub is_active: bool,
    pub is_superuser: bool,
    pub user: BTreeSet<String>,
    pub group: BTreeSet<String>,
}

impl Permissions {
    /// `get_all_permissions()`: empty for inactive users (superuser or not); for an active
    /// superuser every permission in the database (ModelBackend loads them all).
    pub fn all(&self) -> BTreeSet<String> {
        if !self.is_active {
            return BTreeSet::new();
        }
        self.user.union(&self.group).cloned().collect()
    }

    /// `user.has_perm(perm)`: an active superuser has every permission, even ones that do
    /// not exist; an inactive user has none.
    pub fn has_perm(&self, perm: &str) -> bool {
        if self.is_active && self.is_superuser {
            return true;
        }
        self.is_active && (self.user.contains(perm) || self.group.contains(perm))
    }

    /// `user.has_perms(perm_list)`: all of them (true for an empty list).
    pub fn has_perms<S: AsRef<str>>(&self, perms: &[S]) -> bool {
        perms.iter().all(|p| self.has_perm(p.as_ref()))
    }

    /// `user.has_module_perms(app_label)`.
    pub fn has_module_perms(&self, app_label: &str) -> bool {
        if self.is_active && self.is_superuser {
            return true;
        }
        self.is_active
            && self
                .all()
                .iter()
                .any(|p| p.split_once('.').map(|(a, _)| a) == Some(app_label))
    }
}

#[derive(QueryableByName)]
struct PermRow {
    #[diesel(sql_type = Text)]
    source: String,
    #[diesel(sql_type = Text)]
    perm: String,
}

/// Builds the one statement that loads a user's permissions.
#[derive(Debug, Clone)]
pub struct PermissionQueries {
    for_user: String,
    all: String,
    groups: String,
}

impl PermissionQueries {
    pub fn new(model: &UserModel) -> Self {
        let d = model.dialect;
        let i = |s: &str| d.ident(s);
        let concat = match d.0 {
            super::Backend::Mysql => "CONCAT(ct.`app_label`, '.', p.`codename`)".to_owned(),
            _ => format!("ct.{} || '.' || p.{}", i("app_label"), i("codename")),
        };
        let perm_from = format!(
            "FROM {perm} p JOIN {ct} ct ON ct.{id} = p.{ctid}",
            perm = i("auth_permission"),
            ct = i("django_content_type"),
            id = i("id"),
            ctid = i("content_type_id"),
        );
        let pk = model.pk_param_sql().to_owned();
        // The pk parameter appears twice; PostgreSQL names it, the others need it bound twice.
        let pk2 = pk.replace("$1", "$2");
        let for_user = format!(
            "SELECT 'u' AS source, {concat} AS perm {perm_from} \
             WHERE p.{id} IN (SELECT {pid} FROM {up} WHERE {uid} = {pk}) \
             UNION ALL SELECT 'g' AS source, {concat} AS perm {perm_from} \
             WHERE p.{id} IN (SELECT gp.{pid} FROM {gp} gp JOIN {ug} ug ON ug.{gid} = gp.{gid} WHERE ug.{uid} = {pk2})",
            id = i("id"),
            pid = i("permission_id"),
            gid = i("group_id"),
            up = i(&model.permissions_table),
            uid = i(&model.m2m_column),
            gp = i("auth_group_permissions"),
            ug = i(&model.groups_table),
        );
        let all = format!("SELECT 'a' AS source, {concat} AS perm {perm_from}");
        let groups = format!(
            "SELECT 'n' AS source, g.{name} AS perm FROM {g} g JOIN {ug} ug ON ug.{gid} = g.{id} \
             WHERE ug.{uid} = {pk}",
            name = i("name"),
            g = i("auth_group"),
            ug = i(&model.groups_table),
            gid = i("group_id"),
            id = i("id"),
            uid = i(&model.m2m_column),
        );
        PermissionQueries {
            for_user,
            all,
            groups,
        }
    }

    /// The names of the user's groups, sorted.
    pub fn groups(
        &self,
        conn: &mut DbConnection,
        model: &UserModel,
        user: &User,
    ) -> Result<Vec<String>, DbError> {
        let key = model
            .pk_for_db(&user.pk)
            .ok_or_else(|| DbError::Schema("invalid primary key".into()))?;
        let rows: Vec<PermRow> = super::prepared(&self.groups).bind(&key).load(conn)?;
        // Sorted here, by code point as Python's sorted() does, not by the column collation.
        let mut names: Vec<String> = rows.into_iter().map(|r| r.perm).collect();
        names.sort();
        Ok(names)
    }

    /// Everything `ModelBackend` would answer for `user`, in one query (two for an active
    /// superuser, whose `get_all_permissions` is every permission).
    pub fn load(
        &self,
        conn: &mut DbConnection,
        model: &UserModel,
        user: &User,
    ) -> Result<Permissions, DbError> {
        let mut p = Permissions {
            is_active: user.is_active,
            is_superuser: user.is_superuser,
            ..Default::default()
        };
        if !user.is_active {
            return Ok(p);
        }
        if user.is_superuser {
            let rows: Vec<PermRow> = super::prepared(&self.all).load(conn)?;
            p.user = rows.into_iter().map(|r| r.perm).collect();
            p.group = p.user.clone();
            return Ok(p);
        }
        let key = model
            .pk_for_db(&user.pk)
            .ok_or_else(|| DbError::Schema("invalid primary key".into()))?;
        let rows: Vec<PermRow> = super::prepared(&self.for_user)
            .bind(&key)
            .bind(&key)
            .load(conn)?;
        for r in rows {
            if r.source == "u" {
                p.user.insert(r.perm);
            } else {
                p.group.insert(r.perm);
            }
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perms(active: bool, superuser: bool) -> Permissions {
        Permissions {
            is_active: active,
            is_superuser: superuser,
            user: ["auth.add_user".to_string()].into(),
            group: ["sessions.view_session".to_string()].into(),
        }
    }

    #[test]
    fn django_semantics() {
        let p = perms(true, false);
        assert!(p.has_perm("auth.add_user") && p.has_perm("sessions.view_session"));
        assert!(!p.has_perm("auth.delete_user"));
        assert!(p.has_perms(&["auth.add_user", "sessions.view_session"]));
        assert!(!p.has_perms(&["auth.add_user", "x.y"]));
        assert!(p.has_perms::<&str>(&[]));
        assert!(p.has_module_perms("auth") && !p.has_module_perms("admin"));
        assert_eq!(p.all().len(), 2);
        let inactive = perms(false, true);
        assert!(!inactive.has_perm("auth.add_user") && !inactive.has_module_perms("auth"));
        assert!(inactive.all().is_empty());
        let root = perms(true, true);
        assert!(root.has_perm("made.up") && root.has_module_perms("anything"));
    }
}
