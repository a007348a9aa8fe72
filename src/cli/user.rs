//! `djauth user …`: read users and their permissions the way Django's auth sees them.

use super::db::connect;
use super::{read_stdin, refused, strip_one_newline, CmdResult, Failure};
use crate::config::Settings;
use crate::db::perms::PermissionQueries;
use crate::db::users::{User, UserModel};
use clap::{Args, Subcommand};
use serde_json::json;

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Print a user as JSON.
    Show(Which),
    /// ModelBackend.authenticate with the password on stdin: exit 0 and the user as JSON, or
    /// exit 1. Rewrites the stored hash when Django would (must_update).
    Authenticate { username: String },
    /// The user's permissions (get_user_permissions, get_group_permissions,
    /// get_all_permissions) and, for each --perm / --module, has_perm / has_module_perms.
    Perms {
        #[command(flatten)]
        which: Which,
        #[arg(long = "perm")]
        perms: Vec<String>,
        #[arg(long = "module")]
        modules: Vec<String>,
    },
}

#[derive(Args, Debug)]
pub struct Which {
    /// The USERNAME_FIELD value.
    username: Option<String>,
    /// Select by primary key instead.
    #[arg(long, conflicts_with = "username")]
    id: Option<String>,
}

pub fn user_json(u: &User) -> serde_json::Value {
    u.as_json()
}

fn find(
    model: &UserModel,
    conn: &mut crate::db::DbConnection,
    which: &Which,
) -> Result<User, Failure> {
    let found = match (&which.username, &which.id) {
        (Some(name), None) => model.get_by_username(conn, name),
        (None, Some(pk)) => model.get_by_pk(conn, pk),
        _ => return Err(Failure::Config("name a user: USERNAME or --id PK".into())),
    }
    .map_err(refused)?;
    found.ok_or_else(|| refused("no such user"))
}

pub fn run(cmd: UserCommand, settings: &Settings) -> CmdResult {
    let (mut conn, backend) = connect(settings)?;
    let model =
        UserModel::load(&mut conn, backend, &settings.user_model_settings()).map_err(refused)?;
    match cmd {
        UserCommand::Show(which) => println!("{}", user_json(&find(&model, &mut conn, &which)?)),
        UserCommand::Authenticate { username } => {
            let hashers = settings.hashers()?;
            let input = read_stdin()?;
            match model
                .authenticate(&mut conn, &hashers, &username, strip_one_newline(&input))
                .map_err(refused)?
            {
                Some(u) => println!("{}", user_json(&u)),
                None => return Err(refused("authentication failed")),
            }
        }
        UserCommand::Perms {
            which,
            perms,
            modules,
        } => {
            let user = find(&model, &mut conn, &which)?;
            let p = PermissionQueries::new(&model)
                .load(&mut conn, &model, &user)
                .map_err(refused)?;
            let has_perm: serde_json::Map<String, serde_json::Value> = perms
                .iter()
                .map(|x| (x.clone(), p.has_perm(x).into()))
                .collect();
            let has_module: serde_json::Map<String, serde_json::Value> = modules
                .iter()
                .map(|x| (x.clone(), p.has_module_perms(x).into()))
                .collect();
            println!(
                "{}",
                json!({
                    "user_permissions": if p.is_active { p.user.iter().collect::<Vec<_>>() } else { vec![] },
                    "group_permissions": if p.is_active { p.group.iter().collect::<Vec<_>>() } else { vec![] },
                    "all_permissions": p.all(),
                    "has_perm": has_perm,
                    "has_perms": p.has_perms(&perms),
                    "has_module_perms": has_module,
                })
            );
        }
    }
    Ok(())
}
